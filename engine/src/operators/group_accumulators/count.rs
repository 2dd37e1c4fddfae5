//! `count(x)` and `count(*)`: a running count per group.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::Int64Type;

use super::{GroupAccumulator, GroupRows, compact_vec, grow};
use crate::error::Result;

/// Non-null rows added minus those taken back, per group.
#[derive(Debug, Default)]
pub struct Count {
    counts: Vec<i64>,
}

impl GroupAccumulator for Count {
    fn update(&mut self, rows: &GroupRows<'_>) -> Result<()> {
        grow(&mut self.counts, rows.total_groups, 0);
        let nulls = rows.values.first().and_then(|v| v.logical_nulls());
        match (&nulls, rows.weights) {
            (None, None) => {
                for &g in rows.groups {
                    self.counts[g] += 1;
                }
            }
            _ => {
                for (i, &g) in rows.groups.iter().enumerate() {
                    if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                        self.counts[g] += rows.weight(i);
                    }
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[usize]) -> Result<ArrayRef> {
        let counts: Int64Array = groups
            .iter()
            .map(|&g| self.counts.get(g).copied().unwrap_or(0))
            .collect();
        Ok(Arc::new(counts))
    }

    fn reset(&mut self, groups: &[usize]) {
        for &g in groups {
            if let Some(count) = self.counts.get_mut(g) {
                *count = 0;
            }
        }
    }

    fn compact(&mut self, keep: &[usize]) {
        compact_vec(&mut self.counts, keep);
    }

    fn size(&self) -> usize {
        self.counts.capacity() * size_of::<i64>()
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        grow(&mut self.counts, groups, 0);
        Ok(vec![Arc::new(Int64Array::from(
            self.counts[..groups].to_vec(),
        ))])
    }

    fn restore(&mut self, state: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        grow(&mut self.counts, total, 0);
        let counts = state[0].as_primitive::<Int64Type>();
        for (row, &g) in groups.iter().enumerate() {
            self.counts[g] = counts.value(row);
        }
        Ok(())
    }
}
