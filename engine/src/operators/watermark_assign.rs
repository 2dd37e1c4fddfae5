//! [`WatermarkAssign`]: turns a source's `WATERMARK FOR` declaration into watermarks.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::physical_expr::PhysicalExpr;

use super::{Context, Operator};
use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::time::{Timestamp, WATERMARK_MIN};

/// The watermark is the largest value of the watermark expression seen so far (so
/// `max(ts) - delay`); it never goes backwards.
///
/// Each batch leaves with a per-row watermark, the one that stood just before the row
/// arrived. Window operators decide lateness with it, so a batch of 1,000 rows gives the
/// same results as 1,000 batches of one row.
#[derive(Debug)]
pub struct WatermarkAssign {
    expr: Arc<dyn PhysicalExpr>,
    current: Timestamp,
}

impl WatermarkAssign {
    /// Watermarks from `expr`, a timestamp expression over the source's rows.
    pub fn new(expr: Arc<dyn PhysicalExpr>) -> Self {
        Self {
            expr,
            current: WATERMARK_MIN,
        }
    }
}

impl Operator for WatermarkAssign {
    fn name(&self) -> &'static str {
        "WatermarkAssign"
    }

    fn describe(&self) -> String {
        self.expr.to_string()
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let marks = self
            .expr
            .evaluate(&batch.rows)?
            .into_array(batch.num_rows())?;
        let marks = cast(&marks, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let marks = cast(&marks, &DataType::Int64)?;
        let marks = marks.as_primitive::<Int64Type>();
        // Exclusive running maximum: row i sees the watermark made by rows before it.
        let mut running = self.current;
        let before: Int64Array = if marks.null_count() == 0 {
            marks
                .values()
                .iter()
                .map(|&m| {
                    let seen = running;
                    running = running.max(m);
                    seen
                })
                .collect::<Vec<_>>()
                .into()
        } else {
            marks
                .iter()
                .map(|m| {
                    let seen = running;
                    if let Some(m) = m {
                        running = running.max(m);
                    }
                    Some(seen)
                })
                .collect()
        };
        ctx.emit(ChangeBatch {
            row_watermarks: Some(before),
            ..batch
        });
        if running > self.current {
            self.current = running;
            ctx.emit_watermark(running);
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        super::watermark_state(self.current)
    }

    fn restore(&mut self, state: Vec<datafusion::arrow::record_batch::RecordBatch>) -> Result<()> {
        if let Some(watermark) = super::restore_watermark(&state)? {
            self.current = watermark;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        // Only the end of input arrives from upstream: +inf.
        if watermark > self.current {
            self.current = watermark;
            ctx.emit_watermark(watermark);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing;
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::Column;

    fn batch(ts: &[i64]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            crate::time::TIMESTAMP_TYPE,
            true,
        )]));
        let col = TimestampNanosecondArray::from(ts.to_vec());
        ChangeBatch::inserts(RecordBatch::try_new(schema, vec![Arc::new(col)]).unwrap())
    }

    #[test]
    fn row_watermarks_are_the_running_maximum_before_each_row() {
        let mut op = WatermarkAssign::new(Arc::new(Column::new("ts", 0)));
        let out = testing::batch(&mut op, batch(&[10, 30, 20, 40]));
        let wms = out.batches[0].row_watermarks.clone().unwrap();
        assert_eq!(wms.value(0), WATERMARK_MIN);
        assert_eq!(&wms.values()[1..], &[10, 30, 30]);
        assert_eq!(out.watermarks, vec![40]);
        // Never backwards.
        let out = testing::batch(&mut op, batch(&[5]));
        assert!(out.watermarks.is_empty());
        assert_eq!(out.batches[0].row_watermarks.as_ref().unwrap().value(0), 40);
    }
}
