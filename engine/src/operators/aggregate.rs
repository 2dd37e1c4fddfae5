//! [`AggregateSpec`]: what the windowed and the updating aggregate share: group keys,
//! DataFusion aggregate functions, and how output rows are laid out.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::{evaluate_all, show_exprs};
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// Where each GROUP BY column of the output comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputColumn {
    /// The window's start.
    WindowStart,
    /// The window's end.
    WindowEnd,
    /// The i-th group key.
    Key(usize),
}

/// One aggregate function with its optional `FILTER (WHERE ...)`.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    /// DataFusion's aggregate, which makes accumulators.
    pub function: Arc<AggregateFunctionExpr>,
    /// Rows the aggregate considers.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// Group keys, aggregates and output layout of an aggregation.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// Group key expressions, window columns excluded.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Aggregate calls, in output order.
    pub calls: Vec<AggregateCall>,
    /// The GROUP BY columns of the output, in order; aggregates follow them.
    pub layout: Vec<OutputColumn>,
    /// The output schema: GROUP BY columns, then aggregates.
    pub schema: SchemaRef,
}

impl AggregateSpec {
    /// The schema of the group keys.
    pub fn key_schema(&self, input: &Schema) -> Result<SchemaRef> {
        let fields = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| Ok(Field::new(format!("k{i}"), k.data_type(input)?, true)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Evaluates the group keys over a batch.
    pub fn evaluate_keys(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        evaluate_all(&self.keys, batch)
    }

    /// Evaluates each call's arguments and filter over a batch.
    pub fn evaluate_args(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<(Vec<ArrayRef>, Option<BooleanArray>)>> {
        self.calls
            .iter()
            .map(|call| {
                let args = evaluate_all(&call.function.expressions(), batch)?;
                let filter = match &call.filter {
                    None => None,
                    Some(f) => {
                        let mask = f.evaluate(batch)?.into_array(batch.num_rows())?;
                        let mask = mask
                            .as_any()
                            .downcast_ref::<BooleanArray>()
                            .ok_or_else(|| {
                                Error::Internal("aggregate FILTER is not boolean".into())
                            })?
                            .clone();
                        Some(mask)
                    }
                };
                Ok((args, filter))
            })
            .collect()
    }

    /// Lays out an output batch of `rows` rows.
    pub fn assemble(
        &self,
        window: Option<(Timestamp, Timestamp)>,
        keys: Vec<ArrayRef>,
        aggregates: Vec<ArrayRef>,
        rows: usize,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for column in &self.layout {
            let array: ArrayRef = match (column, window) {
                (OutputColumn::WindowStart, Some((start, _))) => {
                    Arc::new(TimestampNanosecondArray::from_value(start, rows))
                }
                (OutputColumn::WindowEnd, Some((_, end))) => {
                    Arc::new(TimestampNanosecondArray::from_value(end, rows))
                }
                (OutputColumn::Key(i), _) => Arc::clone(&keys[*i]),
                _ => {
                    return Err(Error::Internal(
                        "window column outside a window aggregate".into(),
                    ));
                }
            };
            columns.push(array);
        }
        columns.extend(aggregates);
        // Types may differ in details DataFusion does not care about (e.g. list field names).
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| align_type(c, f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?)
    }

    /// For EXPLAIN.
    pub fn describe(&self) -> String {
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|c| c.function.name().to_string())
            .collect();
        format!(
            "keys=[{}] aggregates=[{}]",
            show_exprs(&self.keys),
            calls.join(", ")
        )
    }
}

fn align_type(array: ArrayRef, expected: &DataType) -> Result<ArrayRef> {
    if array.data_type() == expected {
        Ok(array)
    } else {
        Ok(datafusion::arrow::compute::cast(&array, expected)?)
    }
}
