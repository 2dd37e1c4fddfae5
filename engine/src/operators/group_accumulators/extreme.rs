//! `min` and `max` over an append-only input: the current extreme per group. (Rows with
//! weight zero, outside the call's FILTER, are skipped; no row is ever taken back.)
//!
//! Values are compared in Arrow's row format, whose bytes sort as the values do, so one
//! implementation serves every type `min` and `max` accept.

use datafusion::arrow::array::{Array, ArrayRef, new_null_array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};

use super::{GroupAccumulator, GroupRows, compact_vec, grow};
use crate::error::Result;

/// The least or greatest value seen per group, as row bytes; `None` before any.
pub struct Extreme {
    greatest: bool,
    data_type: DataType,
    converter: RowConverter,
    best: Vec<Option<Box<[u8]>>>,
    bytes: usize,
}

impl Extreme {
    /// `max` when `greatest`, else `min`, of values of `data_type`.
    pub fn new(greatest: bool, data_type: DataType) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new(data_type.clone())])?;
        Ok(Self {
            greatest,
            data_type,
            converter,
            best: Vec::new(),
            bytes: 0,
        })
    }

    fn beats(&self, candidate: &[u8], current: &[u8]) -> bool {
        if self.greatest {
            candidate > current
        } else {
            candidate < current
        }
    }
}

impl GroupAccumulator for Extreme {
    fn update(&mut self, rows: &GroupRows<'_>) -> Result<()> {
        grow(&mut self.best, rows.total_groups, None);
        let values = &rows.values[0];
        let encoded = self
            .converter
            .convert_columns(std::slice::from_ref(values))?;
        for (i, &g) in rows.groups.iter().enumerate() {
            if rows.weight(i) == 0 || values.is_null(i) {
                continue;
            }
            let row = encoded.row(i);
            let better = match &self.best[g] {
                None => true,
                Some(current) => self.beats(row.as_ref(), current),
            };
            if better {
                let old = self.best[g].replace(row.as_ref().into());
                self.bytes = self.bytes + row.as_ref().len() - old.map_or(0, |o| o.len());
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[usize]) -> Result<ArrayRef> {
        let parser = self.converter.parser();
        let present: Vec<Option<&[u8]>> = groups
            .iter()
            .map(|&g| self.best.get(g).and_then(|b| b.as_deref()))
            .collect();
        if present.iter().all(Option::is_none) {
            return Ok(new_null_array(&self.data_type, groups.len()));
        }
        let null = self
            .converter
            .convert_columns(&[new_null_array(&self.data_type, 1)])?;
        let rows = present
            .iter()
            .map(|bytes| bytes.map_or_else(|| null.row(0), |b| parser.parse(b)));
        let mut columns = self.converter.convert_rows(rows)?;
        Ok(columns.remove(0))
    }

    fn reset(&mut self, groups: &[usize]) {
        for &g in groups {
            if let Some(old) = self.best.get_mut(g).and_then(Option::take) {
                self.bytes -= old.len();
            }
        }
    }

    fn compact(&mut self, keep: &[usize]) {
        compact_vec(&mut self.best, keep);
        self.bytes = self.best.iter().flatten().map(|b| b.len()).sum();
    }

    fn size(&self) -> usize {
        self.best.capacity() * size_of::<Option<Box<[u8]>>>() + self.bytes
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        let ids: Vec<usize> = (0..groups).collect();
        Ok(vec![self.evaluate(&ids)?])
    }

    fn restore(&mut self, state: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        grow(&mut self.best, total, None);
        let encoded = self.converter.convert_columns(&state[..1])?;
        for (row, &g) in groups.iter().enumerate() {
            if state[0].is_valid(row) {
                let bytes: Box<[u8]> = encoded.row(row).as_ref().into();
                self.bytes += bytes.len();
                self.best[g] = Some(bytes);
            }
        }
        Ok(())
    }
}
