//! Rows on which an expression fails are set aside, not the query stopped.
//!
//! DataFusion evaluates an expression over a whole batch and fails the batch when one row
//! fails (`v / h` with one `h = 0`). On that error, and only then, the batch is bisected
//! to find the rows that fail on their own; those are handed to the query's dead letters
//! with their errors, and the rest is evaluated again. Clean batches pay nothing.

use std::ops::Range;

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::compute::prep_null_mask_filter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::Context;
use crate::batch::{ChangeBatch, RejectedRows};
use crate::error::{Error, Result};

/// Evaluates `eval` over `batch`. When it fails, the rows it fails on alone are rejected
/// through `ctx` and `eval` runs again over the others; `None` when no row is left. An
/// error no single row causes fails the call, as before.
pub(crate) fn evaluate_or_reject<T>(
    operator: &'static str,
    batch: ChangeBatch,
    ctx: &mut Context,
    eval: impl Fn(&RecordBatch) -> Result<T>,
) -> Result<Option<(ChangeBatch, T)>> {
    Ok(evaluate_keeping(operator, batch, ctx, eval)?.map(|(_, kept, value)| (kept, value)))
}

/// [`evaluate_or_reject`], also giving which rows of `batch` were kept when some were
/// rejected (`None` when none were), for operators that keep state about each input row.
fn evaluate_keeping<T>(
    operator: &'static str,
    batch: ChangeBatch,
    ctx: &mut Context,
    eval: impl Fn(&RecordBatch) -> Result<T>,
) -> Result<Option<(Option<BooleanArray>, ChangeBatch, T)>> {
    let error = match eval(&batch.rows) {
        Ok(value) => return Ok(Some((None, batch, value))),
        Err(error) => error,
    };
    let failing = failing_rows(&batch.rows, &eval);
    if failing.is_empty() {
        return Err(error);
    }
    let mut keep = vec![true; batch.num_rows()];
    for (row, _) in &failing {
        keep[*row] = false;
    }
    let keep = BooleanArray::from(keep);
    let rejected = datafusion::arrow::compute::filter_record_batch(
        &batch.rows,
        &datafusion::arrow::compute::not(&keep)?,
    )?;
    ctx.reject(RejectedRows {
        operator,
        rows: rejected,
        errors: failing.into_iter().map(|(_, e)| e).collect(),
    });
    if keep.true_count() == 0 {
        return Ok(None);
    }
    let kept = batch.filter(&keep)?;
    let value = eval(&kept.rows)?;
    Ok(Some((Some(keep), kept, value)))
}

/// Which rows of `rows` `predicate` holds for (NULL does not hold); rows it fails on go to
/// the dead letters and count as not holding.
pub(crate) fn predicate_holds(
    operator: &'static str,
    predicate: &Arc<dyn PhysicalExpr>,
    rows: RecordBatch,
    ctx: &mut Context,
) -> Result<Vec<bool>> {
    let total = rows.num_rows();
    let evaluated = evaluate_keeping(operator, ChangeBatch::inserts(rows), ctx, |b| {
        let value = predicate.evaluate(b)?.into_array(b.num_rows())?;
        let holds = value.as_boolean();
        Ok(match holds.nulls() {
            Some(_) => prep_null_mask_filter(holds),
            None => holds.clone(),
        })
    })?;
    let Some((kept, _, holds)) = evaluated else {
        return Ok(vec![false; total]);
    };
    let mut holds = holds.values().iter();
    Ok((0..total)
        .map(|i| kept.as_ref().is_none_or(|k| k.value(i)) && holds.next().unwrap_or(false))
        .collect())
}

/// The rows of `rows` on which `eval` fails by themselves, in order, with the error of each.
fn failing_rows<T>(
    rows: &RecordBatch,
    eval: &impl Fn(&RecordBatch) -> Result<T>,
) -> Vec<(usize, String)> {
    let mut failing = Vec::new();
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..rows.num_rows());
    while let Some(range) = pending.pop() {
        let Err(error) = eval(&rows.slice(range.start, range.len())) else {
            continue;
        };
        if range.len() == 1 {
            failing.push((range.start, message(&error)));
        } else {
            let middle = range.start + range.len() / 2;
            // The second half first, so the first half is popped (and found) first.
            pending.push(middle..range.end);
            pending.push(range.start..middle);
        }
    }
    failing
}

/// An evaluation error as a user reads it: DataFusion's root cause, without its wrappers.
fn message(error: &Error) -> String {
    match error {
        Error::DataFusion(e) => e.find_root().message().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::compute::kernels::numeric::div;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::operators::OperatorCounters;

    #[test]
    fn only_the_rows_that_fail_are_rejected_and_the_rest_evaluated() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("h", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![10, 20, 30, 40, 50, 60, 70])),
                Arc::new(Int64Array::from(vec![1, 0, 3, 4, 0, 6, 7])),
            ],
        )
        .unwrap();
        let eval = |rows: &RecordBatch| -> Result<Vec<i64>> {
            let quotient = div(rows.column(0), rows.column(1))?;
            Ok(quotient.as_primitive::<Int64Type>().values().to_vec())
        };
        let (mut out, mut counters) = (Vec::new(), OperatorCounters::default());
        let mut ctx = Context::new(0, &[], &mut counters, &mut out);
        let (kept, quotients) =
            evaluate_or_reject("Project", ChangeBatch::inserts(rows), &mut ctx, eval)
                .unwrap()
                .unwrap();
        assert_eq!(quotients, vec![10, 10, 10, 10, 10]);
        assert_eq!(kept.num_rows(), 5);
        let rejected = ctx.take_rejected();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            rejected[0]
                .rows
                .column(0)
                .as_primitive::<Int64Type>()
                .values(),
            &[20, 50]
        );
        assert!(
            rejected[0].errors[0].contains("Divide by zero"),
            "{:?}",
            rejected[0].errors
        );
    }
}
