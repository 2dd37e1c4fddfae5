//! [`Project`]: computes the SELECT list.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;

use super::{Context, Operator, evaluate_all, evaluate_or_reject, show_expr};
use crate::batch::ChangeBatch;
use crate::error::Result;

/// Evaluates one expression per output column; change kinds and row watermarks pass along.
#[derive(Debug)]
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Project {
    /// A projection producing `schema` from `exprs`.
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Self { exprs, schema }
    }
}

impl Operator for Project {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self::new(
            self.exprs.clone(),
            Arc::clone(&self.schema),
        )))
    }

    fn name(&self) -> &'static str {
        "Project"
    }

    fn describe(&self) -> String {
        // `expr AS name` where the SELECT list renamed it, as it was written.
        self.exprs
            .iter()
            .zip(self.schema.fields())
            .map(|(e, f)| {
                let sql = show_expr(e.as_ref());
                if &sql == f.name() {
                    sql
                } else {
                    format!("{sql} AS {}", f.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let evaluated = evaluate_or_reject("Project", batch, ctx, |rows| {
            evaluate_all(&self.exprs, rows)
        })?;
        let Some((batch, columns)) = evaluated else {
            return Ok(());
        };
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let rows = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        ctx.emit(ChangeBatch { rows, ..batch });
        Ok(())
    }
}
