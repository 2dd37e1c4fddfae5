//! [`WindowAggregate`]: GROUP BY window_start, window_end, keys over TUMBLE or HOP.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{SortOptions, cast, filter, sort_to_indices, take};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregate::AggregateSpec;
use super::{Context, Operator, evaluate_or_reject};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MIN};

/// Aggregates per window and group with DataFusion's `GroupsAccumulator`s, and emits each
/// window exactly once, when the watermark reaches its end. A window's state is freed when
/// it is emitted, so memory follows the number of open windows, not the stream's length.
pub struct WindowAggregate {
    spec: AggregateSpec,
    key_schema: SchemaRef,
    start_column: usize,
    end_column: usize,
    windows: BTreeMap<Timestamp, WindowGroups>,
    watermark: Timestamp,
}

/// The groups of one open window.
struct WindowGroups {
    start: Timestamp,
    /// `None` when the only GROUP BY columns are the window's.
    keys: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: usize,
    /// The first source batch that put rows here (0 for a restored window).
    first_epoch: u64,
}

impl WindowGroups {
    /// Group ids of `rows` rows with these key columns, adding new groups.
    fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let mut group_ids = Vec::with_capacity(rows);
        match &mut self.keys {
            Some(values) => {
                values.intern(keys, &mut group_ids)?;
                self.groups = values.len();
            }
            None => {
                group_ids.resize(rows, 0);
                self.groups = 1;
            }
        }
        Ok(group_ids)
    }

    /// Bytes of its group table and accumulators.
    fn size(&self) -> usize {
        let keys = self.keys.as_ref().map_or(0, |k| k.size());
        keys + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Takes the key columns of every group, in group id order.
    fn emit_keys(&mut self) -> Result<Vec<ArrayRef>> {
        match &mut self.keys {
            Some(values) => Ok(values.emit(EmitTo::All)?),
            None => Ok(Vec::new()),
        }
    }
}

impl WindowAggregate {
    /// An aggregate over an input whose window bounds are at `start_column` and `end_column`.
    pub fn try_new(
        spec: AggregateSpec,
        input_schema: &SchemaRef,
        start_column: usize,
        end_column: usize,
    ) -> Result<Self> {
        let key_schema = spec.key_schema(input_schema)?;
        Ok(Self {
            spec,
            key_schema,
            start_column,
            end_column,
            windows: BTreeMap::new(),
            watermark: WATERMARK_MIN,
        })
    }

    fn new_window(&self, start: Timestamp, epoch: u64) -> Result<WindowGroups> {
        let keys = if self.spec.keys.is_empty() {
            None
        } else {
            Some(new_group_values(
                self.key_schema.clone(),
                &GroupOrdering::None,
            )?)
        };
        let accumulators = self
            .spec
            .calls
            .iter()
            .map(|call| {
                let f = call.function.clone();
                if f.groups_accumulator_supported() {
                    f.create_groups_accumulator()
                } else {
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        f.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>)
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(WindowGroups {
            start,
            keys,
            accumulators,
            groups: 0,
            first_epoch: epoch,
        })
    }

    /// Adds rows that all belong to the window ending at `end`.
    fn accumulate(
        &mut self,
        epoch: u64,
        end: Timestamp,
        start: Timestamp,
        keys: &[ArrayRef],
        args: &[(Vec<ArrayRef>, Option<BooleanArray>)],
        rows: usize,
    ) -> Result<()> {
        if !self.windows.contains_key(&end) {
            let window = self.new_window(start, epoch)?;
            self.windows.insert(end, window);
        }
        let window = self.windows.get_mut(&end).expect("window inserted above");
        let group_ids = window.intern(keys, rows)?;
        for (acc, (values, mask)) in window.accumulators.iter_mut().zip(args) {
            acc.update_batch(values, &group_ids, mask.as_ref(), window.groups)?;
        }
        Ok(())
    }

    fn emit_window(
        &self,
        end: Timestamp,
        mut window: WindowGroups,
        ctx: &mut Context,
    ) -> Result<()> {
        let keys = window.emit_keys()?;
        let aggregates = window
            .accumulators
            .iter_mut()
            .map(|acc| acc.evaluate(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let rows =
            self.spec
                .assemble(Some((window.start, end)), keys, aggregates, window.groups)?;
        ctx.emit(ChangeBatch::inserts(rows));
        Ok(())
    }
}

impl Operator for WindowAggregate {
    fn name(&self) -> &'static str {
        "WindowAggregate"
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if batch.is_updating() {
            return Err(Error::Execution(
                "a window aggregate cannot take an updating input".into(),
            ));
        }
        let spec = &self.spec;
        let evaluated = evaluate_or_reject("WindowAggregate", batch, ctx, |rows| {
            Ok((spec.evaluate_keys(rows)?, spec.evaluate_args(rows)?))
        })?;
        let Some((batch, (keys, args))) = evaluated else {
            return Ok(());
        };
        let rows = &batch.rows;
        let ends = cast(rows.column(self.end_column), &DataType::Int64)?;
        let ends = ends.as_primitive::<Int64Type>().clone();
        let starts = cast(rows.column(self.start_column), &DataType::Int64)?;
        let starts = starts.as_primitive::<Int64Type>().clone();
        if ends.is_empty() {
            return Ok(());
        }

        // Rows for windows already emitted would break the emit-once contract. Upstream
        // window assignment drops them; count any that slip through rather than re-emit.
        let closed = ends
            .values()
            .iter()
            .filter(|&&e| e <= self.watermark)
            .count();
        let (ends, starts, keys, args) = if closed > 0 {
            ctx.counters.late_rows += closed as u64;
            let watermark = self.watermark;
            let mask: BooleanArray = ends.values().iter().map(|&e| Some(e > watermark)).collect();
            let keep = |a: &ArrayRef| filter(a.as_ref(), &mask);
            (
                filter(&ends, &mask)?.as_primitive::<Int64Type>().clone(),
                filter(&starts, &mask)?.as_primitive::<Int64Type>().clone(),
                keys.iter()
                    .map(keep)
                    .collect::<std::result::Result<Vec<_>, _>>()?,
                filter_args(&args, &mask)?,
            )
        } else {
            (ends, starts, keys, args)
        };
        if ends.is_empty() {
            return Ok(());
        }

        let (min, max) = ends
            .values()
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &e| (lo.min(e), hi.max(e)));
        if min == max {
            return self.accumulate(ctx.epoch, min, starts.value(0), &keys, &args, ends.len());
        }
        // Several windows in one batch: sort rows by window end, then feed each run.
        let order = sort_to_indices(&ends, Some(SortOptions::default()), None)?;
        let sorted_ends = take(&ends, &order, None)?;
        let sorted_ends = sorted_ends.as_primitive::<Int64Type>();
        let keys = keys
            .iter()
            .map(|k| take(k.as_ref(), &order, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let args = take_args(&args, &order)?;
        let values = sorted_ends.values();
        let mut run_start = 0;
        while run_start < values.len() {
            let end = values[run_start];
            let run_len = values[run_start..]
                .iter()
                .take_while(|&&e| e == end)
                .count();
            let slice = |a: &ArrayRef| a.slice(run_start, run_len);
            let run_keys: Vec<ArrayRef> = keys.iter().map(slice).collect();
            let run_args: Vec<(Vec<ArrayRef>, Option<BooleanArray>)> = args
                .iter()
                .map(|(vals, mask)| {
                    (
                        vals.iter().map(slice).collect(),
                        mask.as_ref().map(|m| m.slice(run_start, run_len)),
                    )
                })
                .collect();
            let start = starts.value(order.value(run_start) as usize);
            self.accumulate(ctx.epoch, end, start, &run_keys, &run_args, run_len)?;
            run_start += run_len;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.watermark = watermark;
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let (end, window) = entry.remove_entry();
            self.emit_window(end, window, ctx)?;
        }
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn state_rows(&self) -> usize {
        self.windows.values().map(|w| w.groups).sum()
    }

    fn state_bytes(&self) -> usize {
        self.windows.values().map(WindowGroups::size).sum()
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.windows.values().map(|w| w.first_epoch).min()
    }

    /// One batch per open window: `window_start`, `window_end`, the group keys, then each
    /// accumulator's state columns; the watermark rides in the schema metadata. Taking the
    /// state consumes DataFusion's accumulators, so each window is rebuilt from it at once.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let ends: Vec<Timestamp> = self.windows.keys().copied().collect();
        let mut batches = Vec::with_capacity(ends.len());
        for end in ends {
            let mut window = self.windows.remove(&end).expect("key listed above");
            let keys = window.emit_keys()?;
            let states = window
                .accumulators
                .iter_mut()
                .map(|acc| acc.state(EmitTo::All))
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let batch = state_batch(
                self.watermark,
                window.start,
                end,
                window.groups,
                &keys,
                &states,
            )?;
            self.restore_window(&batch)?;
            batches.push(batch);
        }
        Ok(batches)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in &state {
            if let Some(wm) = batch.schema().metadata().get(WATERMARK_KEY) {
                self.watermark = wm
                    .parse()
                    .map_err(|_| Error::Internal("bad watermark in window state".into()))?;
            }
            self.restore_window(batch)?;
        }
        Ok(())
    }
}

const WATERMARK_KEY: &str = "vigil.watermark";

/// Lays out one window's state as a batch.
fn state_batch(
    watermark: Timestamp,
    start: Timestamp,
    end: Timestamp,
    groups: usize,
    keys: &[ArrayRef],
    states: &[Vec<ArrayRef>],
) -> Result<RecordBatch> {
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    let mut fields = vec![
        Field::new("window_start", crate::time::TIMESTAMP_TYPE, false),
        Field::new("window_end", crate::time::TIMESTAMP_TYPE, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from_value(start, groups)),
        Arc::new(TimestampNanosecondArray::from_value(end, groups)),
    ];
    for (i, key) in keys.iter().enumerate() {
        fields.push(Field::new(
            format!("key_{i}"),
            key.data_type().clone(),
            true,
        ));
        columns.push(Arc::clone(key));
    }
    for (i, state) in states.iter().enumerate() {
        for (j, column) in state.iter().enumerate() {
            fields.push(Field::new(
                format!("agg_{i}_{j}"),
                column.data_type().clone(),
                true,
            ));
            columns.push(Arc::clone(column));
        }
    }
    let metadata = [(WATERMARK_KEY.to_string(), watermark.to_string())].into();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, metadata)),
        columns,
    )?)
}

impl WindowAggregate {
    /// Rebuilds one window from its state batch.
    fn restore_window(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let start = cast(batch.column(0), &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .value(0);
        let end = cast(batch.column(1), &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .value(0);
        let mut window = self.new_window(start, 0)?;
        let n_keys = self.spec.keys.len();
        let rows = batch.num_rows();
        let group_ids = window.intern(&batch.columns()[2..2 + n_keys], rows)?;
        let mut column = 2 + n_keys;
        for (acc, call) in window.accumulators.iter_mut().zip(&self.spec.calls) {
            let width = call.function.state_fields()?.len();
            acc.merge_batch(
                &batch.columns()[column..column + width],
                &group_ids,
                window.groups,
            )?;
            column += width;
        }
        self.windows.insert(end, window);
        Ok(())
    }
}

fn filter_args(
    args: &[(Vec<ArrayRef>, Option<BooleanArray>)],
    mask: &BooleanArray,
) -> Result<Vec<(Vec<ArrayRef>, Option<BooleanArray>)>> {
    args.iter()
        .map(|(vals, m)| {
            let vals = vals
                .iter()
                .map(|v| filter(v.as_ref(), mask))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let m = match m {
                Some(m) => Some(filter(m, mask)?.as_boolean().clone()),
                None => None,
            };
            Ok((vals, m))
        })
        .collect()
}

fn take_args(
    args: &[(Vec<ArrayRef>, Option<BooleanArray>)],
    order: &UInt32Array,
) -> Result<Vec<(Vec<ArrayRef>, Option<BooleanArray>)>> {
    args.iter()
        .map(|(vals, m)| {
            let vals = vals
                .iter()
                .map(|v| take(v.as_ref(), order, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let m = match m {
                Some(m) => Some(take(m, order, None)?.as_boolean().clone()),
                None => None,
            };
            Ok((vals, m))
        })
        .collect()
}
