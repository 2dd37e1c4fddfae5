//! `sum` and `avg`: a running sum and count of non-null values per group.
//!
//! Integer and decimal sums wrap as DataFusion's do, which also makes taking a value back
//! exact whatever came between. A float sum subtracts, exact up to rounding, as in Flink.

use std::marker::PhantomData;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, PrimitiveArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowNativeTypeOp, ArrowPrimitiveType, DataType, Decimal128Type, Float64Type, Int64Type,
    UInt64Type,
};

use super::{GroupAccumulator, GroupRows, compact_vec, grow};
use crate::error::Result;

/// The sum accumulator for output type `output`, where Vigil has one.
pub fn create_sum(output: &DataType) -> Option<Box<dyn GroupAccumulator>> {
    match output {
        DataType::Int64 => Some(Box::new(Sum::<Int64Type>::new(output))),
        DataType::UInt64 => Some(Box::new(Sum::<UInt64Type>::new(output))),
        DataType::Float64 => Some(Box::new(Sum::<Float64Type>::new(output))),
        DataType::Decimal128(_, _) => Some(Box::new(Sum::<Decimal128Type>::new(output))),
        _ => None,
    }
}

/// Sums and counts of type `T` per group.
#[derive(Debug)]
struct Totals<T: ArrowPrimitiveType> {
    sums: Vec<T::Native>,
    counts: Vec<i64>,
}

impl<T: ArrowPrimitiveType> Default for Totals<T> {
    fn default() -> Self {
        Self {
            sums: Vec::new(),
            counts: Vec::new(),
        }
    }
}

impl<T: ArrowPrimitiveType> Totals<T> {
    /// Adds the weighted values (already of type `T`) to their groups.
    fn update(&mut self, values: &PrimitiveArray<T>, rows: &GroupRows<'_>) {
        grow(&mut self.sums, rows.total_groups, T::Native::ZERO);
        grow(&mut self.counts, rows.total_groups, 0);
        let data = values.values();
        if values.null_count() == 0 && rows.weights.is_none() {
            for (&g, &v) in rows.groups.iter().zip(data.iter()) {
                self.sums[g] = self.sums[g].add_wrapping(v);
                self.counts[g] += 1;
            }
            return;
        }
        for (i, &g) in rows.groups.iter().enumerate() {
            let weight = rows.weight(i);
            if weight == 0 || values.is_null(i) {
                continue;
            }
            if weight > 0 {
                self.sums[g] = self.sums[g].add_wrapping(data[i]);
            } else {
                self.sums[g] = self.sums[g].sub_wrapping(data[i]);
            }
            self.counts[g] += weight;
            if self.counts[g] == 0 {
                // Nothing left: drop the rounding a float sum kept.
                self.sums[g] = T::Native::ZERO;
            }
        }
    }

    fn reset(&mut self, groups: &[usize]) {
        for &g in groups {
            if g < self.sums.len() {
                self.sums[g] = T::Native::ZERO;
                self.counts[g] = 0;
            }
        }
    }

    fn compact(&mut self, keep: &[usize]) {
        compact_vec(&mut self.sums, keep);
        compact_vec(&mut self.counts, keep);
    }

    fn size(&self) -> usize {
        self.sums.capacity() * size_of::<T::Native>() + self.counts.capacity() * size_of::<i64>()
    }

    fn get(&self, group: usize) -> Option<(T::Native, i64)> {
        let count = *self.counts.get(group)?;
        (count > 0).then(|| (self.sums[group], count))
    }

    fn state(&mut self, groups: usize, data_type: &DataType) -> Result<Vec<ArrayRef>> {
        grow(&mut self.sums, groups, T::Native::ZERO);
        grow(&mut self.counts, groups, 0);
        let sums = PrimitiveArray::<T>::from_iter_values(self.sums[..groups].iter().copied())
            .with_data_type(data_type.clone());
        let counts = PrimitiveArray::<Int64Type>::from(self.counts[..groups].to_vec());
        Ok(vec![Arc::new(sums), Arc::new(counts)])
    }

    fn restore(&mut self, state: &[ArrayRef], groups: &[usize], total: usize) {
        grow(&mut self.sums, total, T::Native::ZERO);
        grow(&mut self.counts, total, 0);
        let sums = state[0].as_primitive::<T>();
        let counts = state[1].as_primitive::<Int64Type>();
        for (row, &g) in groups.iter().enumerate() {
            self.sums[g] = sums.value(row);
            self.counts[g] = counts.value(row);
        }
    }
}

/// What a running total reads as.
pub trait TotalReading<T: ArrowPrimitiveType>: Send {
    /// The value of groups with `totals` (sum and count of values; `None`: no value).
    fn read(totals: impl Iterator<Item = Option<(T::Native, i64)>>, output: &DataType) -> ArrayRef;
}

/// `sum(x)`, NULL for a group without a non-null value.
pub struct SumOf;

impl<T: ArrowPrimitiveType> TotalReading<T> for SumOf {
    fn read(totals: impl Iterator<Item = Option<(T::Native, i64)>>, output: &DataType) -> ArrayRef {
        let sums: PrimitiveArray<T> = totals.map(|t| t.map(|(sum, _)| sum)).collect();
        Arc::new(sums.with_data_type(output.clone()))
    }
}

/// `avg(x)` as a DOUBLE: sum over count.
pub struct MeanOf;

impl TotalReading<Float64Type> for MeanOf {
    fn read(totals: impl Iterator<Item = Option<(f64, i64)>>, _: &DataType) -> ArrayRef {
        let means: Float64Array = totals.map(|t| t.map(|(sum, n)| sum / n as f64)).collect();
        Arc::new(means)
    }
}

/// A running sum and count per group, read as `R`.
pub struct Running<T: ArrowPrimitiveType, R> {
    /// The type values are summed in, and (for a sum) the output's.
    output: DataType,
    totals: Totals<T>,
    reading: PhantomData<R>,
}

/// `sum` with output type `output`.
pub type Sum<T> = Running<T, SumOf>;
/// `avg` over numbers.
pub type Average = Running<Float64Type, MeanOf>;

impl<T: ArrowPrimitiveType, R> Running<T, R> {
    /// Totals summed in type `output`.
    pub fn new(output: &DataType) -> Self {
        Self {
            output: output.clone(),
            totals: Totals::default(),
            reading: PhantomData,
        }
    }
}

impl<T: ArrowPrimitiveType, R: TotalReading<T>> GroupAccumulator for Running<T, R> {
    fn update(&mut self, rows: &GroupRows<'_>) -> Result<()> {
        let values = cast(&rows.values[0], &self.output)?;
        self.totals.update(values.as_primitive::<T>(), rows);
        Ok(())
    }

    fn evaluate(&mut self, groups: &[usize]) -> Result<ArrayRef> {
        let totals = groups.iter().map(|&g| self.totals.get(g));
        Ok(R::read(totals, &self.output))
    }

    fn reset(&mut self, groups: &[usize]) {
        self.totals.reset(groups);
    }

    fn compact(&mut self, keep: &[usize]) {
        self.totals.compact(keep);
    }

    fn size(&self) -> usize {
        self.totals.size()
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        self.totals.state(groups, &self.output)
    }

    fn restore(&mut self, state: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        self.totals.restore(state, groups, total);
        Ok(())
    }
}
