//! [`OverPartitions`]: per partition of an OVER window, the rows its frames still reach and
//! DataFusion's incremental window state over them (`WindowExpr::evaluate_stateful`, the
//! machinery of its `BoundedWindowAggExec`): a sliding accumulator adds the rows entering a
//! frame and retracts those leaving it, so each row is computed once, never the past again.
//!
//! Rows come in per watermark, each partition's in time order: every row at or below the
//! watermark has arrived, and every later row will be after it. A synthetic "most recent row"
//! at the watermark's next instant tells DataFusion so, which lets it finish a `RANGE ...
//! CURRENT ROW` frame (its peers all here) without waiting for the partition's next row.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::window_state::{PartitionBatchState, WindowAggState};
use datafusion::physical_expr::window::{
    PartitionBatches, PartitionKey, PartitionWindowAggStates, WindowEvalContext, WindowExpr,
    WindowState,
};

use super::over_window::Retention;
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MAX};

/// The partitions of an OVER window and DataFusion's state of each expression over them.
pub(super) struct OverPartitions {
    exprs: Vec<Arc<dyn WindowExpr>>,
    batches: PartitionBatches,
    /// One map per expression, keyed like `batches`.
    states: Vec<PartitionWindowAggStates>,
    /// Held rows' schema: the input's columns and the arrival number.
    schema: SchemaRef,
    time_column: usize,
    retention: Retention,
}

impl OverPartitions {
    /// State for `exprs` over rows of `schema` ordered by `time_column`.
    pub fn new(
        exprs: Vec<Arc<dyn WindowExpr>>,
        schema: SchemaRef,
        time_column: usize,
        retention: Retention,
    ) -> Self {
        let states = exprs.iter().map(|_| Default::default()).collect();
        Self {
            exprs,
            batches: Default::default(),
            states,
            schema,
            time_column,
            retention,
        }
    }

    /// The same, holding nothing.
    pub fn fresh(&self) -> Self {
        Self::new(
            self.exprs.clone(),
            Arc::clone(&self.schema),
            self.time_column,
            self.retention,
        )
    }

    /// Appends the rows of `sorted` (cut into partitions by `ranges`, keyed by `keys`), all
    /// at or below `watermark`, and evaluates them: per range, one column per expression.
    pub fn advance(
        &mut self,
        sorted: &RecordBatch,
        ranges: &[Range<usize>],
        keys: &[ArrayRef],
        watermark: Timestamp,
    ) -> Result<Vec<Vec<ArrayRef>>> {
        if self.exprs.is_empty() {
            return Ok(vec![Vec::new(); ranges.len()]);
        }
        let mut touched = Vec::with_capacity(ranges.len());
        for range in ranges {
            let key = partition_key(keys, range.start)?;
            let rows = sorted.slice(range.start, range.len());
            match self.batches.get_mut(&key) {
                Some(partition) => partition.extend(&rows)?,
                None => {
                    let mut partition = PartitionBatchState::new_with_batch(rows);
                    partition.is_end = watermark == WATERMARK_MAX;
                    self.batches.insert(key.clone(), partition);
                }
            }
            touched.push(key);
        }
        let ended = watermark == WATERMARK_MAX;
        if ended {
            self.batches.values_mut().for_each(|p| p.is_end = true);
        }
        let next = (!ended)
            .then(|| self.instant_after(watermark))
            .transpose()?;
        let context = WindowEvalContext::default().with_most_recent_row(next.as_ref());
        for (expr, states) in self.exprs.iter().zip(&mut self.states) {
            expr.evaluate_stateful(&self.batches, states, &context)?;
        }
        let values = (touched.iter().zip(ranges))
            .map(|(key, range)| self.take_values(key, range.len()))
            .collect::<Result<_>>()?;
        for key in &touched {
            self.prune(key);
        }
        Ok(values)
    }

    /// A row of no partition at the instant after `watermark`: no row to come is before it.
    fn instant_after(&self, watermark: Timestamp) -> Result<RecordBatch> {
        let columns = (self.schema.fields().iter().enumerate())
            .map(|(i, field)| match i == self.time_column {
                true => {
                    let time = TimestampNanosecondArray::from(vec![watermark + 1]);
                    Ok(Arc::new(time.with_data_type(field.data_type().clone())) as ArrayRef)
                }
                false => Ok(datafusion::arrow::array::new_null_array(
                    field.data_type(),
                    1,
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        // Its other columns are NULL, so its schema lets every column be.
        let fields = (self.schema.fields().iter())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// The values computed for the `n` rows just appended to partition `key`, taken out of
    /// each expression's state.
    fn take_values(&mut self, key: &PartitionKey, n: usize) -> Result<Vec<ArrayRef>> {
        let mut values = Vec::with_capacity(self.states.len());
        for states in &mut self.states {
            let state = &mut states
                .get_mut(key)
                .ok_or_else(|| Error::Internal("an OVER partition without its state".into()))?
                .state;
            if state.out_col.len() != n {
                return Err(Error::Internal(format!(
                    "an OVER window computed {} of {n} ready rows",
                    state.out_col.len()
                )));
            }
            values.push(Arc::clone(&state.out_col));
            state.out_col = state.out_col.slice(n, 0);
        }
        Ok(values)
    }

    /// Drops the rows of partition `key` that no frame reaches any more, as DataFusion's
    /// bounded window operator does: those before every expression's current frame.
    fn prune(&mut self, key: &PartitionKey) {
        let n = (self.states.iter())
            .filter_map(|states| states.get(key))
            .map(|s| {
                s.state
                    .window_frame_range
                    .start
                    .min(s.state.last_calculated_index)
            })
            .min()
            .unwrap_or(0);
        let Some(partition) = self.batches.get_mut(key) else {
            return;
        };
        if partition.is_end {
            self.batches.swap_remove(key);
            self.states.iter_mut().for_each(|s| {
                s.swap_remove(key);
            });
            return;
        }
        if n == 0 {
            return;
        }
        let rows = &partition.record_batch;
        partition.record_batch = rows.slice(n, rows.num_rows() - n);
        for states in &mut self.states {
            if let Some(state) = states.get_mut(key) {
                state.state.prune_state(n);
            }
        }
    }

    /// Forgets partitions whose rows are all out of reach of any later row's RANGE frame:
    /// a partition that goes quiet frees its state as the watermark passes.
    pub fn forget_quiet(&mut self, watermark: Timestamp) {
        let (Some(range), None) = (self.retention.range, self.retention.rows) else {
            return;
        };
        let horizon = watermark.saturating_sub(range);
        let time_column = self.time_column;
        let quiet: Vec<PartitionKey> = (self.batches.iter())
            .filter(|(_, p)| last_time(&p.record_batch, time_column).is_none_or(|t| t <= horizon))
            .map(|(key, _)| key.clone())
            .collect();
        for key in quiet {
            self.batches.swap_remove(&key);
            self.states.iter_mut().for_each(|s| {
                s.swap_remove(&key);
            });
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.batches
            .values()
            .map(|p| p.record_batch.num_rows())
            .sum()
    }

    /// Bytes held by the rows.
    pub fn bytes(&self) -> usize {
        (self.batches.values())
            .map(|p| p.record_batch.get_array_memory_size())
            .sum()
    }

    /// Every held row, for a checkpoint.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let batches: Vec<&RecordBatch> = self.batches.values().map(|p| &p.record_batch).collect();
        Ok(concat_batches(&self.schema, batches)?)
    }

    /// Holds rows a checkpoint took (cut into partitions like [`OverPartitions::advance`]'s
    /// input) as already computed: the next rows' frames reach them.
    pub fn restore(
        &mut self,
        sorted: &RecordBatch,
        ranges: &[Range<usize>],
        keys: &[ArrayRef],
    ) -> Result<()> {
        for range in ranges {
            let key = partition_key(keys, range.start)?;
            let rows = sorted.slice(range.start, range.len());
            self.batches
                .insert(key.clone(), PartitionBatchState::new_with_batch(rows));
            for (expr, states) in self.exprs.iter().zip(&mut self.states) {
                let mut state = WindowAggState::new(expr.field()?.data_type())?;
                state.last_calculated_index = range.len();
                let window_fn = expr.create_window_fn()?;
                states.insert(
                    key.clone(),
                    WindowState {
                        state,
                        window_fn,
                        published: false,
                    },
                );
            }
        }
        Ok(())
    }
}

/// The partition key of row `row`: its PARTITION BY values (one per partition, not per row).
fn partition_key(keys: &[ArrayRef], row: usize) -> Result<PartitionKey> {
    Ok(keys
        .iter()
        .map(|k| ScalarValue::try_from_array(k, row))
        .collect::<datafusion::common::Result<_>>()?)
}

/// The time of a partition's last row (its latest: rows are in time order).
fn last_time(rows: &RecordBatch, time_column: usize) -> Option<Timestamp> {
    let n = rows.num_rows().checked_sub(1)?;
    let times = rows
        .column(time_column)
        .as_primitive::<TimestampNanosecondType>();
    Some(times.value(n))
}
