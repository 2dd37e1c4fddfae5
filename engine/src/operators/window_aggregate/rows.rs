//! [`WindowRows`]: an input batch's rows as a window aggregate reads them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{SortColumn, cast, filter, lexsort_to_indices, take};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::error::ArrowError;

use crate::error::Result;
use crate::time::Timestamp;

/// The rows of one input batch, with their window (or pane) bounds.
pub(super) struct WindowRows {
    pub starts: Int64Array,
    pub ends: Int64Array,
    pub keys: Vec<ArrayRef>,
    pub args: Vec<(Vec<ArrayRef>, Option<BooleanArray>)>,
}

impl WindowRows {
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        self.map(|a| filter(a, mask))
    }

    pub fn take(&self, indices: &UInt32Array) -> Result<Self> {
        self.map(|a| take(a, indices, None))
    }

    /// Every column through `f` (a kernel that picks rows).
    fn map(
        &self,
        f: impl Fn(&dyn Array) -> std::result::Result<ArrayRef, ArrowError>,
    ) -> Result<Self> {
        Ok(Self {
            starts: f(&self.starts)?.as_primitive::<Int64Type>().clone(),
            ends: f(&self.ends)?.as_primitive::<Int64Type>().clone(),
            keys: self
                .keys
                .iter()
                .map(|k| f(k.as_ref()))
                .collect::<std::result::Result<_, _>>()?,
            args: map_args(&self.args, &f)?,
        })
    }

    pub fn slice(&self, offset: usize, len: usize) -> Self {
        Self {
            starts: self.starts.slice(offset, len),
            ends: self.ends.slice(offset, len),
            keys: self.keys.iter().map(|k| k.slice(offset, len)).collect(),
            args: self
                .args
                .iter()
                .map(|(values, mask)| {
                    let values = values.iter().map(|v| v.slice(offset, len)).collect();
                    (values, mask.as_ref().map(|m| m.slice(offset, len)))
                })
                .collect(),
        }
    }

    /// The rows split by window: one run per (start, end), in order of end.
    pub fn runs(self) -> Result<Vec<((Timestamp, Timestamp), WindowRows)>> {
        let n = self.ends.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let bounds = |rows: &WindowRows, i: usize| (rows.starts.value(i), rows.ends.value(i));
        let first = bounds(&self, 0);
        if (1..n).all(|i| bounds(&self, i) == first) {
            return Ok(vec![(first, self)]);
        }
        let columns = [
            SortColumn {
                values: Arc::new(self.ends.clone()),
                options: None,
            },
            SortColumn {
                values: Arc::new(self.starts.clone()),
                options: None,
            },
        ];
        let sorted = self.take(&lexsort_to_indices(&columns, None)?)?;
        let mut runs = Vec::new();
        let mut run_start = 0;
        while run_start < n {
            let window = bounds(&sorted, run_start);
            let len = (run_start..n)
                .take_while(|&i| bounds(&sorted, i) == window)
                .count();
            runs.push((window, sorted.slice(run_start, len)));
            run_start += len;
        }
        Ok(runs)
    }
}

fn map_args(
    args: &[(Vec<ArrayRef>, Option<BooleanArray>)],
    f: impl Fn(&dyn Array) -> std::result::Result<ArrayRef, ArrowError>,
) -> Result<Vec<(Vec<ArrayRef>, Option<BooleanArray>)>> {
    args.iter()
        .map(|(values, mask)| {
            let values = values
                .iter()
                .map(|v| f(v.as_ref()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let mask = match mask {
                Some(m) => Some(f(m)?.as_boolean().clone()),
                None => None,
            };
            Ok((values, mask))
        })
        .collect()
}

/// A timestamp column as nanoseconds.
pub(super) fn timestamps(column: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(column, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}
