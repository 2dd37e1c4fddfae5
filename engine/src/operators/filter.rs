//! [`Filter`]: keeps the rows a predicate holds for (WHERE and HAVING).

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::physical_expr::PhysicalExpr;

use super::{Context, Operator, evaluate_or_reject, show_expr};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};

/// Keeps rows where the predicate is true; on a changelog it keeps update pairs well formed
/// (see [`ChangeBatch::filter`]). Stateless, so late rows pass like any other.
#[derive(Debug)]
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    /// A filter on `predicate`, which must be boolean.
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

impl Operator for Filter {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self::new(Arc::clone(&self.predicate))))
    }

    fn name(&self) -> &'static str {
        "Filter"
    }

    fn describe(&self) -> String {
        show_expr(self.predicate.as_ref())
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let evaluated = evaluate_or_reject("Filter", batch, ctx, |rows| {
            Ok(self.predicate.evaluate(rows)?.into_array(rows.num_rows())?)
        })?;
        let Some((batch, mask)) = evaluated else {
            return Ok(());
        };
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                Error::Internal(format!("filter predicate returned {}", mask.data_type()))
            })?;
        if mask.true_count() == batch.num_rows() {
            ctx.emit(batch);
        } else if mask.true_count() > 0 {
            ctx.emit(batch.filter(mask)?);
        }
        Ok(())
    }
}
