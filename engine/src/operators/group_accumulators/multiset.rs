//! A value → count multiset per group, for aggregates that must find what is left after a
//! value is taken back: `min`/`max` over an updating input, `count(DISTINCT)` and
//! `array_agg(DISTINCT)`.
//!
//! Values are kept in Arrow's row format in a `BTreeMap`, whose order is the values' order,
//! so the extreme is the first or last key and the distinct values come out sorted.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListArray, new_empty_array, new_null_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::arrow::row::{RowConverter, SortField};

use super::{GroupAccumulator, GroupRows, grow};
use crate::error::{Error, Result};

/// What an aggregate reads from its multiset.
#[derive(Debug, Clone)]
pub enum Reading {
    /// The least value: `min`.
    Least,
    /// The greatest value: `max`.
    Greatest,
    /// How many distinct values: `count(DISTINCT)`.
    Count,
    /// The distinct values in order, as a list of this type: `array_agg(DISTINCT)`.
    List(DataType),
}

impl Reading {
    /// `max` when `greatest`, else `min`.
    pub fn extreme(greatest: bool) -> Self {
        if greatest {
            Reading::Greatest
        } else {
            Reading::Least
        }
    }
}

/// Per group, each value present and how many times (always above zero).
pub struct Multiset {
    reading: Reading,
    value_type: DataType,
    /// NULL is a value (`array_agg` keeps it), or is skipped (every other reading).
    keeps_nulls: bool,
    converter: RowConverter,
    groups: Vec<BTreeMap<Box<[u8]>, i64>>,
    bytes: usize,
}

impl Multiset {
    /// A multiset of `value_type` values read as `reading`.
    pub fn new(reading: Reading, value_type: DataType, keeps_nulls: bool) -> Result<Self> {
        // NULLS LAST, as `array_agg(DISTINCT x)` sorts by `x` ascending.
        let options = SortOptions {
            descending: false,
            nulls_first: false,
        };
        let field = SortField::new_with_options(value_type.clone(), options);
        Ok(Self {
            reading,
            value_type,
            keeps_nulls,
            converter: RowConverter::new(vec![field])?,
            groups: Vec::new(),
            bytes: 0,
        })
    }

    /// Adds `weight` occurrences (negative: removes) of `value` to group `g`.
    fn add(&mut self, g: usize, value: &[u8], weight: i64) {
        let values = &mut self.groups[g];
        match values.get_mut(value) {
            Some(count) => {
                *count += weight;
                if *count == 0 {
                    values.remove(value);
                    self.bytes -= value.len();
                }
            }
            None => {
                values.insert(value.into(), weight);
                self.bytes += value.len();
            }
        }
    }

    /// The row bytes group `g` reads as, in order: one for an extreme, all for a list.
    fn present(&self, g: usize) -> impl Iterator<Item = &[u8]> {
        // A count below zero is a retraction whose insert has not arrived; not a value.
        self.groups
            .get(g)
            .into_iter()
            .flat_map(|values| values.iter())
            .filter(|(_, count)| **count > 0)
            .map(|(value, _)| value.as_ref())
    }

    fn extreme(&self, g: usize) -> Option<&[u8]> {
        match self.reading {
            Reading::Greatest => {
                let values = self.groups.get(g)?;
                values
                    .iter()
                    .rev()
                    .find(|(_, count)| **count > 0)
                    .map(|(v, _)| v.as_ref())
            }
            _ => self.present(g).next(),
        }
    }

    fn decode<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Result<ArrayRef> {
        let parser = self.converter.parser();
        let rows: Vec<_> = rows.map(|bytes| parser.parse(bytes)).collect();
        if rows.is_empty() {
            return Ok(new_empty_array(&self.value_type));
        }
        let mut columns = self.converter.convert_rows(rows)?;
        Ok(columns.remove(0))
    }

    fn evaluate_extremes(&self, groups: &[usize]) -> Result<ArrayRef> {
        let found: Vec<Option<&[u8]>> = groups.iter().map(|&g| self.extreme(g)).collect();
        let values = self.decode(found.iter().flatten().copied())?;
        if values.is_empty() {
            return Ok(new_null_array(&self.value_type, groups.len()));
        }
        // Put each group's value at its place, NULL where it has none.
        let mut next = 0u32;
        let indices: datafusion::arrow::array::UInt32Array = found
            .iter()
            .map(|f| {
                f.map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        Ok(datafusion::arrow::compute::take(&values, &indices, None)?)
    }

    fn evaluate_list(&self, groups: &[usize], list: &DataType) -> Result<ArrayRef> {
        let item: FieldRef = match list {
            DataType::List(item) => Arc::clone(item),
            _ => Arc::new(Field::new("item", self.value_type.clone(), true)),
        };
        let mut lengths = Vec::with_capacity(groups.len());
        let mut valid = Vec::with_capacity(groups.len());
        let mut all = Vec::new();
        for &g in groups {
            let before = all.len();
            all.extend(self.present(g));
            lengths.push(all.len() - before);
            valid.push(all.len() > before);
        }
        let values = self.decode(all.into_iter())?;
        let values = datafusion::arrow::compute::cast(&values, item.data_type())?;
        Ok(Arc::new(ListArray::try_new(
            item,
            OffsetBuffer::from_lengths(lengths),
            values,
            Some(NullBuffer::from(valid)),
        )?))
    }
}

impl GroupAccumulator for Multiset {
    fn update(&mut self, rows: &GroupRows<'_>) -> Result<()> {
        grow(&mut self.groups, rows.total_groups, BTreeMap::new());
        let values = &rows.values[0];
        let encoded = self
            .converter
            .convert_columns(std::slice::from_ref(values))?;
        for (i, &g) in rows.groups.iter().enumerate() {
            let weight = rows.weight(i);
            if weight != 0 && (self.keeps_nulls || values.is_valid(i)) {
                self.add(g, encoded.row(i).as_ref(), weight);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[usize]) -> Result<ArrayRef> {
        match &self.reading {
            Reading::Least | Reading::Greatest => self.evaluate_extremes(groups),
            Reading::Count => Ok(Arc::new(
                groups
                    .iter()
                    .map(|&g| self.present(g).count() as i64)
                    .collect::<Int64Array>(),
            )),
            Reading::List(list) => self.evaluate_list(groups, &list.clone()),
        }
    }

    fn reset(&mut self, groups: &[usize]) {
        for &g in groups {
            if let Some(values) = self.groups.get_mut(g) {
                self.bytes -= values.keys().map(|k| k.len()).sum::<usize>();
                values.clear();
            }
        }
    }

    fn compact(&mut self, keep: &[usize]) {
        let mut groups = std::mem::take(&mut self.groups);
        self.groups = keep
            .iter()
            .map(|&g| std::mem::take(&mut groups[g]))
            .collect();
        self.bytes = self
            .groups
            .iter()
            .flat_map(|v| v.keys())
            .map(|k| k.len())
            .sum();
    }

    fn size(&self) -> usize {
        let entries: usize = self.groups.iter().map(BTreeMap::len).sum();
        self.groups.capacity() * size_of::<BTreeMap<Box<[u8]>, i64>>()
            + entries * (size_of::<Box<[u8]>>() + size_of::<i64>())
            + self.bytes
    }

    /// Two list columns: each group's values and their counts, in order.
    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        let mut lengths = Vec::with_capacity(groups);
        let mut values = Vec::new();
        let mut counts = Vec::new();
        for g in 0..groups {
            let entries = self.groups.get(g).into_iter().flatten();
            let before = values.len();
            for (value, &count) in entries {
                values.push(value.as_ref());
                counts.push(count);
            }
            lengths.push(values.len() - before);
        }
        let values = self.decode(values.into_iter())?;
        let offsets = OffsetBuffer::from_lengths(lengths);
        let list = |values: ArrayRef| -> Result<ArrayRef> {
            let field = Arc::new(Field::new("item", values.data_type().clone(), true));
            Ok(Arc::new(ListArray::try_new(
                field,
                offsets.clone(),
                values,
                None,
            )?))
        };
        Ok(vec![
            list(values)?,
            list(Arc::new(Int64Array::from(counts)))?,
        ])
    }

    fn restore(&mut self, state: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        grow(&mut self.groups, total, BTreeMap::new());
        let (values, counts) = match state {
            [values, counts] => (values.as_list::<i32>(), counts.as_list::<i32>()),
            _ => return Err(Error::Internal("a multiset's state has two columns".into())),
        };
        for (row, &g) in groups.iter().enumerate() {
            let group_values = values.value(row);
            let group_counts = counts.value(row);
            let group_counts = group_counts.as_primitive::<Int64Type>();
            let encoded = self.converter.convert_columns(&[group_values])?;
            for (i, &count) in group_counts.values().iter().enumerate() {
                self.add(g, encoded.row(i).as_ref(), count);
            }
        }
        Ok(())
    }
}
