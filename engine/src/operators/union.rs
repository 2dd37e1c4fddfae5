//! [`Union`]: UNION ALL of streams with one schema.

use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::compute::kernels::arity::unary;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use super::{Context, Operator};
use crate::batch::ChangeBatch;
use crate::error::Result;

/// Merges its inputs. A row's watermark is lowered to the slowest other input's, since the
/// merged watermark downstream is the minimum over inputs.
#[derive(Debug)]
pub struct Union {
    schema: SchemaRef,
}

impl Union {
    /// A union producing `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }
}

impl Operator for Union {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self::new(Arc::clone(&self.schema))))
    }

    fn name(&self) -> &'static str {
        "Union"
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let rows = RecordBatch::try_new(Arc::clone(&self.schema), batch.rows.columns().to_vec())?;
        let others = ctx
            .input_watermarks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != ctx.input)
            .map(|(_, w)| *w)
            .min();
        let row_watermarks = match (batch.row_watermarks, others) {
            (Some(w), Some(floor)) => {
                Some(unary::<_, _, _>(&w, |v: i64| v.min(floor)) as Int64Array)
            }
            (w, _) => w,
        };
        ctx.emit(ChangeBatch {
            rows,
            ops: batch.ops,
            row_watermarks,
        });
        Ok(())
    }
}
