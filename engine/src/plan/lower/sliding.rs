//! Which OVER aggregates Vigil slides itself ([`SlidingAggregate`]) rather than leaving to
//! DataFusion's window expressions: plain `count`, `sum`, `avg`, `min`, `max` and the
//! variances and standard deviations of a DOUBLE column (any column, or `*`, for `count`),
//! without DISTINCT or FILTER, on a frame from a bounded PRECEDING to the current row.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{Expr, WindowFunctionDefinition};

use super::column_index;
use crate::operators::{Retention, SlidingAggregate, SlidingFrame, SlidingKind};

/// `function` (reaching back `reach`, giving values of `output`) as a sliding aggregate
/// over rows of `schema`, when it is one.
pub(super) fn sliding_aggregate(
    function: &WindowFunction,
    reach: Retention,
    schema: &DFSchema,
    output: &DataType,
) -> Option<SlidingAggregate> {
    let WindowFunctionDefinition::AggregateUDF(udf) = &function.fun else {
        return None;
    };
    let params = &function.params;
    if params.distinct || params.filter.is_some() || params.null_treatment.is_some() {
        return None;
    }
    let kind = SlidingKind::of(udf.name())?;
    let frame = match reach {
        Retention {
            range: Some(nanos),
            rows: None,
        } => SlidingFrame::Range(nanos),
        Retention {
            range: None,
            rows: Some(n),
        } => SlidingFrame::Rows(n),
        _ => return None,
    };
    let (arg, doubles) = match params.args.as_slice() {
        // count(*) is count of a constant.
        [Expr::Literal(value, _)] if kind == SlidingKind::Count && !value.is_null() => {
            (None, false)
        }
        [arg] => {
            let (column, doubles) = double_column(arg, schema)?;
            (Some(column), doubles)
        }
        _ => return None,
    };
    let typed = match kind {
        SlidingKind::Count => output == &DataType::Int64,
        _ => doubles && output == &DataType::Float64,
    };
    typed.then_some(SlidingAggregate { kind, arg, frame })
}

/// The input column `arg` reads, and whether it reads it as DOUBLE: a DOUBLE column, or a
/// number cast to DOUBLE (as DataFusion coerces `avg` of a BIGINT).
fn double_column(arg: &Expr, schema: &DFSchema) -> Option<(usize, bool)> {
    if let Expr::Cast(cast) = arg {
        let column = column_index(&cast.expr, schema)?;
        let numeric = schema.field(column).data_type().is_numeric();
        return Some((
            column,
            numeric && cast.field.data_type() == &DataType::Float64,
        ));
    }
    let column = column_index(arg, schema)?;
    Some((
        column,
        schema.field(column).data_type() == &DataType::Float64,
    ))
}
