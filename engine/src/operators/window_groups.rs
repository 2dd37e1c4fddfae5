//! The groups of one window or pane, live ([`WindowGroups`]: DataFusion's `GroupValues` and
//! `GroupsAccumulator`s) or frozen ([`Frozen`]: key and state columns, merged into others).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregate::AggregateSpec;
use crate::error::Result;

/// Makes empty [`WindowGroups`] for one aggregation.
#[derive(Clone)]
pub(crate) struct GroupsFactory {
    spec: AggregateSpec,
    key_schema: SchemaRef,
}

impl GroupsFactory {
    /// Groups keyed by `spec`'s keys, whose types are `key_schema`'s.
    pub fn new(spec: AggregateSpec, key_schema: SchemaRef) -> Self {
        Self { spec, key_schema }
    }

    /// The aggregation.
    pub fn spec(&self) -> &AggregateSpec {
        &self.spec
    }

    /// Empty groups, first written by source batch `epoch`.
    pub fn empty(&self, epoch: u64) -> Result<WindowGroups> {
        let keys = if self.spec.keys.is_empty() {
            None
        } else {
            Some(new_group_values(
                Arc::clone(&self.key_schema),
                &GroupOrdering::None,
            )?)
        };
        let accumulators = self
            .spec
            .calls
            .iter()
            .map(|call| {
                let f = Arc::clone(&call.function);
                if f.groups_accumulator_supported() {
                    f.create_groups_accumulator()
                } else {
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        f.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>)
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(WindowGroups {
            keys,
            accumulators,
            groups: 0,
            first_epoch: epoch,
        })
    }

    /// The merge of `parts` as new live groups.
    pub fn merged<'a>(&self, parts: impl IntoIterator<Item = &'a Frozen>) -> Result<WindowGroups> {
        let mut parts = parts.into_iter().peekable();
        let epoch = parts.peek().map_or(0, |p| p.first_epoch);
        let mut merged = self.empty(epoch)?;
        for part in parts {
            merged.merge(part)?;
        }
        Ok(merged)
    }
}

/// Live groups: rows are added, and reading them out consumes them.
pub(crate) struct WindowGroups {
    /// `None` when the only GROUP BY columns are the window's.
    keys: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// How many groups.
    pub groups: usize,
    /// The first source batch that put rows here (0 for restored state).
    pub first_epoch: u64,
}

impl WindowGroups {
    /// Group ids of `rows` rows with these key columns, adding new groups.
    pub fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let mut group_ids = Vec::with_capacity(rows);
        match &mut self.keys {
            Some(values) => {
                values.intern(keys, &mut group_ids)?;
                self.groups = values.len();
            }
            None => {
                group_ids.resize(rows, 0);
                self.groups = self.groups.max(usize::from(rows > 0));
            }
        }
        Ok(group_ids)
    }

    /// Adds rows: their keys, and per call its arguments and FILTER mask.
    pub fn update(
        &mut self,
        keys: &[ArrayRef],
        args: &[(Vec<ArrayRef>, Option<BooleanArray>)],
        rows: usize,
    ) -> Result<()> {
        let group_ids = self.intern(keys, rows)?;
        for (acc, (values, mask)) in self.accumulators.iter_mut().zip(args) {
            acc.update_batch(values, &group_ids, mask.as_ref(), self.groups)?;
        }
        Ok(())
    }

    /// Merges frozen groups in.
    pub fn merge(&mut self, part: &Frozen) -> Result<()> {
        let group_ids = self.intern(&part.keys, part.groups)?;
        for (acc, state) in self.accumulators.iter_mut().zip(&part.states) {
            acc.merge_batch(state, &group_ids, self.groups)?;
        }
        self.first_epoch = self.first_epoch.min(part.first_epoch);
        Ok(())
    }

    /// Bytes of its group table and accumulators.
    pub fn size(&self) -> usize {
        let keys = self.keys.as_ref().map_or(0, |k| k.size());
        keys + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// The key columns and final aggregate values of every group, in group id order.
    pub fn finish(mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>, usize)> {
        let keys = self.emit_keys()?;
        let aggregates = self
            .accumulators
            .iter_mut()
            .map(|acc| acc.evaluate(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok((keys, aggregates, self.groups))
    }

    /// The key columns and current values of every group, leaving the groups as they were:
    /// DataFusion's accumulators give their values up only once, so the groups are rebuilt
    /// from their state, with the same group ids.
    pub fn read(self, factory: &GroupsFactory) -> Result<(Self, Vec<ArrayRef>, Vec<ArrayRef>)> {
        let frozen = self.freeze()?;
        let kept = factory.merged([&frozen])?;
        let (keys, values, _) = factory.merged([&frozen])?.finish()?;
        Ok((kept, keys, values))
    }

    /// The key and state columns, which can be merged into other groups any number of times.
    pub fn freeze(mut self) -> Result<Frozen> {
        let keys = self.emit_keys()?;
        let states = self
            .accumulators
            .iter_mut()
            .map(|acc| acc.state(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(Frozen {
            keys,
            states,
            groups: self.groups,
            first_epoch: self.first_epoch,
        })
    }

    fn emit_keys(&mut self) -> Result<Vec<ArrayRef>> {
        match &mut self.keys {
            Some(values) => Ok(values.emit(EmitTo::All)?),
            None => Ok(Vec::new()),
        }
    }
}

/// Groups as columns: the keys, then per aggregate call its state columns.
#[derive(Clone)]
pub(crate) struct Frozen {
    /// Group key columns (none when the only GROUP BY columns are the window's).
    pub keys: Vec<ArrayRef>,
    /// Per call, the accumulator's state columns.
    pub states: Vec<Vec<ArrayRef>>,
    /// How many groups (rows of every column).
    pub groups: usize,
    /// The first source batch whose rows are in it.
    pub first_epoch: u64,
}

impl Frozen {
    /// Bytes of its columns.
    pub fn size(&self) -> usize {
        let states = self.states.iter().flatten();
        self.keys
            .iter()
            .chain(states)
            .map(|c| c.get_array_memory_size())
            .sum()
    }
}
