//! Any other aggregate: DataFusion's own accumulator, one per group.
//!
//! This is the slow, general path, for the aggregates Vigil has no group accumulator of
//! its own for (`stddev`, `median`, `approx_distinct`, ...): rows are sorted by group and
//! each group's run is handed to its accumulator.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array, new_null_array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::{GroupAccumulator, GroupRows};
use crate::error::Result;
use crate::operators::AggregateCall;

/// A DataFusion accumulator per group, made when the group gets its first row.
pub struct PerGroup {
    function: Arc<AggregateFunctionExpr>,
    /// Retractable (sliding) accumulators, for an updating input.
    retracts: bool,
    accumulators: Vec<Option<Box<dyn Accumulator>>>,
}

impl PerGroup {
    /// Accumulators of `call`'s function; `retracts` for an input that takes rows back.
    pub fn new(call: &AggregateCall, retracts: bool) -> Result<Self> {
        Ok(Self {
            function: Arc::clone(&call.function),
            retracts,
            accumulators: Vec::new(),
        })
    }

    fn output_type(&self) -> DataType {
        self.function.field().data_type().clone()
    }

    fn accumulator(&mut self, g: usize) -> Result<&mut Box<dyn Accumulator>> {
        if self.accumulators[g].is_none() {
            let accumulator = if self.retracts {
                self.function.create_sliding_accumulator()?
            } else {
                self.function.create_accumulator()?
            };
            self.accumulators[g] = Some(accumulator);
        }
        Ok(self.accumulators[g].as_mut().expect("made above"))
    }
}

impl GroupAccumulator for PerGroup {
    fn update(&mut self, rows: &GroupRows<'_>) -> Result<()> {
        grow_with_none(&mut self.accumulators, rows.total_groups);
        // Rows by (group, weight), so each group's additions and retractions are runs.
        let mut order: Vec<u32> = (0..rows.groups.len() as u32)
            .filter(|&i| rows.weight(i as usize) != 0)
            .collect();
        order.sort_by_key(|&i| (rows.groups[i as usize], rows.weight(i as usize)));
        let order = UInt32Array::from(order);
        let sorted: Vec<ArrayRef> = rows
            .values
            .iter()
            .map(|v| take(v.as_ref(), &order, None))
            .collect::<std::result::Result<_, _>>()?;
        let key = |i: usize| {
            let row = order.value(i) as usize;
            (rows.groups[row], rows.weight(row))
        };
        let mut start = 0;
        while start < order.len() {
            let (g, weight) = key(start);
            let len = (start..order.len())
                .take_while(|&i| key(i) == (g, weight))
                .count();
            let slice: Vec<ArrayRef> = sorted.iter().map(|v| v.slice(start, len)).collect();
            let accumulator = self.accumulator(g)?;
            if weight > 0 {
                accumulator.update_batch(&slice)?;
            } else {
                accumulator.retract_batch(&slice)?;
            }
            start += len;
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[usize]) -> Result<ArrayRef> {
        let output = self.output_type();
        if groups.is_empty() {
            return Ok(new_null_array(&output, 0));
        }
        let values = groups
            .iter()
            .map(
                |&g| match self.accumulators.get_mut(g).and_then(Option::as_mut) {
                    Some(accumulator) => accumulator.evaluate(),
                    None => self.function.default_value(&output),
                },
            )
            .collect::<datafusion::error::Result<Vec<ScalarValue>>>()?;
        Ok(ScalarValue::iter_to_array(values)?)
    }

    fn reset(&mut self, groups: &[usize]) {
        for &g in groups {
            if let Some(slot) = self.accumulators.get_mut(g) {
                *slot = None;
            }
        }
    }

    fn compact(&mut self, keep: &[usize]) {
        let mut accumulators = std::mem::take(&mut self.accumulators);
        self.accumulators = keep.iter().map(|&g| accumulators[g].take()).collect();
    }

    fn size(&self) -> usize {
        self.accumulators.capacity() * size_of::<Option<Box<dyn Accumulator>>>()
            + self
                .accumulators
                .iter()
                .flatten()
                .map(|a| a.size())
                .sum::<usize>()
    }

    /// The accumulators' own state fields, one column each; an empty group writes the
    /// state of a fresh accumulator.
    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        grow_with_none(&mut self.accumulators, groups);
        let mut columns: Vec<Vec<ScalarValue>> = Vec::new();
        for g in 0..groups {
            let state = self.accumulator(g)?.state()?;
            if columns.is_empty() {
                columns = vec![Vec::with_capacity(groups); state.len()];
            }
            for (column, value) in columns.iter_mut().zip(state) {
                column.push(value);
            }
        }
        if groups == 0 {
            let fields = self.function.state_fields()?;
            return Ok(fields
                .iter()
                .map(|f| datafusion::arrow::array::new_empty_array(f.data_type()))
                .collect());
        }
        columns
            .into_iter()
            .map(|c| Ok(ScalarValue::iter_to_array(c)?))
            .collect()
    }

    fn restore(&mut self, state: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        grow_with_none(&mut self.accumulators, total);
        for (row, &g) in groups.iter().enumerate() {
            let slice: Vec<ArrayRef> = state.iter().map(|c| c.slice(row, 1)).collect();
            self.accumulator(g)?.merge_batch(&slice)?;
        }
        Ok(())
    }
}

fn grow_with_none(accumulators: &mut Vec<Option<Box<dyn Accumulator>>>, total: usize) {
    if accumulators.len() < total {
        accumulators.resize_with(total, || None);
    }
}
