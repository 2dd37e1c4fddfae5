//! [`WindowedOver`]: OVER windows partitioned by a window's bounds, such as Top-N per window
//! (`ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY n DESC) <= 3`).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{Schema, SchemaRef, TimestampNanosecondType};
use datafusion::common::utils::evaluate_partition_ranges;
use datafusion::physical_expr::window::WindowExpr;

use super::arrivals::Arrivals;
use super::{Context, Operator, evaluate_all};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MAX, WATERMARK_MIN};

const END_KEY: &str = "vigil.window_end";

/// Holds each window's rows until the watermark reaches its end, then evaluates the OVER
/// expressions over the whole window, partition by partition, and frees it. Every window
/// function works here, since a window's rows are all known once it closes: ranks, Top-N,
/// LEAD, frames to either end. Ties in ORDER BY keep the order the rows arrived in.
pub struct WindowedOver {
    exprs: Vec<Arc<dyn WindowExpr>>,
    labels: Vec<String>,
    end_column: usize,
    arrivals: Arrivals,
    schema: SchemaRef,
    windows: BTreeMap<Timestamp, Vec<(u64, RecordBatch)>>,
}

impl WindowedOver {
    /// OVER expressions whose PARTITION BY holds the window bounds of the input, whose
    /// `window_end` is column `end_column`; rows of `schema` out.
    pub fn new(
        exprs: Vec<Arc<dyn WindowExpr>>,
        labels: Vec<String>,
        end_column: usize,
        input_schema: &Schema,
        schema: SchemaRef,
    ) -> Self {
        Self {
            exprs,
            labels,
            end_column,
            arrivals: Arrivals::new(input_schema),
            schema,
            windows: BTreeMap::new(),
        }
    }

    fn input_width(&self) -> usize {
        self.arrivals.column()
    }

    /// Files the rows of `batch` under their windows; rows of a window already closed are
    /// late.
    fn take_in(&mut self, rows: &RecordBatch, ctx: &mut Context) -> Result<()> {
        let ends = rows
            .column(self.end_column)
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| Error::Internal("window_end is not a timestamp".into()))?
            .clone();
        let stored = self.arrivals.number(rows)?;
        let mut distinct: Vec<Timestamp> = ends.iter().flatten().collect();
        distinct.sort_unstable();
        distinct.dedup();
        for end in distinct {
            let mask: BooleanArray = ends.iter().map(|e| Some(e == Some(end))).collect();
            let part = filter_record_batch(&stored, &mask)?;
            if end <= self.arrivals.watermark {
                ctx.counters.late_rows += part.num_rows() as u64;
                continue;
            }
            self.windows.entry(end).or_default().push((ctx.epoch, part));
        }
        Ok(())
    }

    /// One closed window's rows with their OVER values.
    fn evaluate(&self, parts: Vec<(u64, RecordBatch)>) -> Result<RecordBatch> {
        let rows: Vec<RecordBatch> = parts.into_iter().map(|(_, b)| b).collect();
        let all = concat_batches(&self.arrivals.schema, &rows)?;
        let first = &self.exprs[0];
        let partition: Vec<SortColumn> = evaluate_all(first.partition_by(), &all)?
            .into_iter()
            .map(|values| SortColumn {
                values,
                options: None,
            })
            .collect();
        let mut sort = partition.clone();
        sort.extend(first.order_by_columns(&all)?);
        sort.push(SortColumn {
            values: Arc::clone(all.column(self.input_width())),
            options: None,
        });
        let order = lexsort_to_indices(&sort, None)?;
        let sorted = take_record_batch(&all, &order)?;
        let keys: Vec<SortColumn> = (partition.iter())
            .map(|c| {
                Ok(SortColumn {
                    values: datafusion::arrow::compute::take(&c.values, &order, None)?,
                    options: None,
                })
            })
            .collect::<Result<_>>()?;
        let input: Vec<usize> = (0..self.input_width()).collect();
        let mut out = Vec::new();
        for range in evaluate_partition_ranges(sorted.num_rows(), &keys)? {
            let rows = sorted.slice(range.start, range.len()).project(&input)?;
            let mut columns = rows.columns().to_vec();
            for expr in &self.exprs {
                columns.push(expr.evaluate(&rows)?);
            }
            out.push(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
        }
        Ok(concat_batches(&self.schema, &out)?)
    }
}

impl Operator for WindowedOver {
    fn name(&self) -> &'static str {
        "WindowedOver"
    }

    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self {
            exprs: self.exprs.clone(),
            labels: self.labels.clone(),
            arrivals: self.arrivals.fresh(),
            schema: Arc::clone(&self.schema),
            windows: BTreeMap::new(),
            ..*self
        }))
    }

    fn describe(&self) -> String {
        format!("{} per window", self.labels.join(", "))
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if batch.is_updating() {
            return Err(Error::Execution(
                "an OVER window per window cannot take an updating input".into(),
            ));
        }
        self.take_in(&batch.rows, ctx)
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.arrivals.watermark = watermark;
        while let Some((&end, _)) = self.windows.first_key_value()
            && end <= watermark
        {
            let parts = self.windows.remove(&end).unwrap_or_default();
            let rows = self.evaluate(parts)?;
            ctx.emit(ChangeBatch::inserts(rows));
        }
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context) -> Result<()> {
        self.on_watermark(WATERMARK_MAX, ctx)
    }

    fn state_rows(&self) -> usize {
        self.windows
            .values()
            .flatten()
            .map(|(_, b)| b.num_rows())
            .sum()
    }

    fn state_bytes(&self) -> usize {
        (self.windows.values().flatten())
            .map(|(_, b)| b.get_array_memory_size())
            .sum()
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.windows
            .values()
            .flatten()
            .map(|(epoch, _)| *epoch)
            .min()
    }

    /// Each open window's rows, marked with its end, the watermark and next arrival number.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        // An empty batch first, so that the watermark is restored without open windows too.
        let empty = RecordBatch::new_empty(Arc::clone(&self.arrivals.schema));
        let mut out = vec![
            self.arrivals
                .marked(empty, END_KEY, &WATERMARK_MIN.to_string())?,
        ];
        for (end, parts) in &self.windows {
            for (_, rows) in parts {
                out.push(
                    self.arrivals
                        .marked(rows.clone(), END_KEY, &end.to_string())?,
                );
            }
        }
        Ok(out)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in state {
            let rows = self.arrivals.restore(&batch)?;
            if rows.num_rows() == 0 {
                continue;
            }
            let end = (batch.schema().metadata().get(END_KEY))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Internal("held window rows without their end".into()))?;
            self.windows.entry(end).or_default().push((0, rows));
        }
        Ok(())
    }
}
