//! [`SlidingFrames`]: OVER aggregates (`count`, `sum`, `avg`, `min`, `max`, variances and
//! standard deviations over DOUBLE) on frames that reach back a time (`RANGE`) or a number
//! of rows (`ROWS`) and end at the current row, computed by sliding.
//!
//! Each partition holds the times and argument values its frames still reach, and one
//! running accumulator per aggregate: rows entering a frame are added, rows leaving it
//! taken away. Rows come in per watermark, each partition's in time order, all of a
//! time's rows together, so a `RANGE` frame's peers are all there when it is computed.
//! One pass over a batch fills one column per aggregate; nothing is built per row.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array, RecordBatch,
    TimestampNanosecondArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
use datafusion::arrow::row::Rows;

use super::over_window::Retention;
use super::sliding_accumulators::{Accumulator, SlidingKind};
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// How far back a sliding frame reaches; it ends at the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingFrame {
    /// `RANGE BETWEEN <nanoseconds> PRECEDING AND CURRENT ROW`: rows at most this long
    /// before the current row's time, and the rows at its time.
    Range(i64),
    /// `ROWS BETWEEN <n> PRECEDING AND CURRENT ROW`.
    Rows(usize),
}

/// One OVER aggregate that slides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingAggregate {
    /// What it computes.
    pub kind: SlidingKind,
    /// Its argument's column in the input: DOUBLE, or a number read as DOUBLE (any type
    /// for `count`); `None` for `count(*)`.
    pub arg: Option<usize>,
    /// Its frame.
    pub frame: SlidingFrame,
}

/// Where one aggregate's frame stands in its partition, by row sequence numbers.
#[derive(Debug, Clone)]
struct FrameState {
    /// The first row in the frame.
    start: u64,
    /// The row after the last one added.
    end: u64,
    acc: Accumulator,
}

/// The rows of one partition that its frames still reach, oldest first.
#[derive(Debug, Clone)]
struct Partition {
    times: VecDeque<i64>,
    /// Per argument column, each held row's value.
    values: Vec<VecDeque<Option<f64>>>,
    /// The sequence number of the first held row.
    first: u64,
    frames: Vec<FrameState>,
}

/// The argument values of a batch being computed, per argument column.
struct BatchValues<'a> {
    times: &'a [i64],
    args: Vec<ArgValues>,
}

enum ArgValues {
    /// DOUBLE values, or numbers cast to DOUBLE as the aggregate reads them.
    Double(Float64Array),
    /// A `count` argument of another type: only whether it is NULL matters.
    Presence(ArrayRef),
}

impl ArgValues {
    #[inline]
    fn get(&self, i: usize) -> Option<f64> {
        match self {
            Self::Double(a) => a.is_valid(i).then(|| a.value(i)),
            Self::Presence(a) => a.is_valid(i).then_some(0.0),
        }
    }
}

/// One output column being filled, in the batch's row order.
enum Output {
    Counts(Vec<i64>),
    Doubles(Vec<f64>, Vec<bool>),
}

/// The sliding OVER aggregates of an operator, over every partition.
pub(super) struct SlidingFrames {
    aggregates: Vec<SlidingAggregate>,
    /// The distinct argument columns, and which one each aggregate reads.
    arg_columns: Vec<usize>,
    arg_of: Vec<Option<usize>>,
    time_column: usize,
    retention: Retention,
    partitions: HashMap<Box<[u8]>, Partition>,
}

impl SlidingFrames {
    /// State for `aggregates` over rows ordered by `time_column`.
    pub fn new(
        aggregates: Vec<SlidingAggregate>,
        time_column: usize,
        retention: Retention,
    ) -> Self {
        let mut arg_columns: Vec<usize> = Vec::new();
        let arg_of = (aggregates.iter())
            .map(|a| {
                a.arg.map(
                    |column| match arg_columns.iter().position(|c| *c == column) {
                        Some(slot) => slot,
                        None => {
                            arg_columns.push(column);
                            arg_columns.len() - 1
                        }
                    },
                )
            })
            .collect();
        Self {
            aggregates,
            arg_columns,
            arg_of,
            time_column,
            retention,
            partitions: HashMap::new(),
        }
    }

    /// The same, holding nothing.
    pub fn fresh(&self) -> Self {
        Self::new(self.aggregates.clone(), self.time_column, self.retention)
    }

    /// Computes the rows of `sorted`, cut into partitions by `ranges` (keyed by `keys`, in
    /// Arrow's row format; `None` without PARTITION BY): one column per aggregate.
    pub fn advance(
        &mut self,
        sorted: &RecordBatch,
        ranges: &[Range<usize>],
        keys: Option<&Rows>,
    ) -> Result<Vec<ArrayRef>> {
        let values = self.batch_values(sorted)?;
        let n = sorted.num_rows();
        let mut outputs: Vec<Output> = (self.aggregates.iter())
            .map(|a| match a.kind {
                SlidingKind::Count => Output::Counts(vec![0; n]),
                _ => Output::Doubles(vec![0.0; n], vec![false; n]),
            })
            .collect();
        for range in ranges {
            let key = keys.map_or(&[][..], |k| k.row(range.start).data());
            let partition = match self.partitions.get_mut(key) {
                Some(partition) => partition,
                None => self.partitions.entry(key.into()).or_insert_with(|| {
                    Partition::new(self.aggregates.len(), self.arg_columns.len())
                }),
            };
            partition.advance(
                range.clone(),
                &values,
                &self.aggregates,
                &self.arg_of,
                &mut outputs,
            );
        }
        Ok(outputs.into_iter().map(finish).collect())
    }

    fn batch_values<'a>(&self, rows: &'a RecordBatch) -> Result<BatchValues<'a>> {
        let times = (rows.column(self.time_column))
            .as_primitive_opt::<datafusion::arrow::datatypes::TimestampNanosecondType>()
            .ok_or_else(|| Error::Internal("an OVER window's time is not in nanoseconds".into()))?;
        let args = (self.arg_columns.iter())
            .map(|&c| {
                let column = rows.column(c);
                if let Some(doubles) = column.as_primitive_opt::<Float64Type>() {
                    return Ok(ArgValues::Double(doubles.clone()));
                }
                if !column.data_type().is_numeric() {
                    return Ok(ArgValues::Presence(Arc::clone(column)));
                }
                let doubles = cast(column, &DataType::Float64)?;
                Ok(ArgValues::Double(
                    doubles.as_primitive::<Float64Type>().clone(),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(BatchValues {
            times: times.values(),
            args,
        })
    }

    /// Forgets partitions whose rows are all out of reach of any later row's RANGE frame:
    /// a partition that goes quiet frees its state as the watermark passes.
    pub fn forget_quiet(&mut self, watermark: Timestamp) {
        let (Some(range), None) = (self.retention.range, self.retention.rows) else {
            return;
        };
        let horizon = watermark.saturating_sub(range);
        self.partitions
            .retain(|_, p| p.times.back().is_some_and(|t| *t > horizon));
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.partitions.values().map(|p| p.times.len()).sum()
    }

    /// Bytes held by the rows.
    pub fn bytes(&self) -> usize {
        let per_row = 8 + 16 * self.arg_columns.len();
        (self.partitions.iter())
            .map(|(key, p)| key.len() + p.times.len() * per_row)
            .sum()
    }

    /// Every held row, for a checkpoint: its partition key, time and argument values.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let mut keys = Vec::new();
        let mut times = Vec::new();
        let mut values: Vec<Vec<Option<f64>>> = vec![Vec::new(); self.arg_columns.len()];
        for (key, partition) in &self.partitions {
            keys.extend(std::iter::repeat_n(&key[..], partition.times.len()));
            times.extend(partition.times.iter().copied());
            for (out, held) in values.iter_mut().zip(&partition.values) {
                out.extend(held.iter().copied());
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_iter_values(keys)),
            Arc::new(TimestampNanosecondArray::from(times)),
        ];
        columns.extend((values.into_iter()).map(|v| Arc::new(Float64Array::from(v)) as ArrayRef));
        Ok(RecordBatch::try_new(self.snapshot_schema(), columns)?)
    }

    fn snapshot_schema(&self) -> Arc<Schema> {
        let mut fields = vec![
            Field::new("key", DataType::Binary, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
        ];
        for i in 0..self.arg_columns.len() {
            fields.push(Field::new(format!("arg{i}"), DataType::Float64, true));
        }
        Arc::new(Schema::new(fields))
    }

    /// Holds the rows of a [`SlidingFrames::snapshot`] again, replayed through the frames
    /// so each accumulator stands where it stood.
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let shape = || Error::Internal("sliding OVER state of another shape".into());
        let keys = batch.column(0).as_binary_opt::<i32>().ok_or_else(shape)?;
        let times = (batch.column(1))
            .as_primitive_opt::<datafusion::arrow::datatypes::TimestampNanosecondType>()
            .ok_or_else(shape)?;
        let args = (2..batch.num_columns())
            .map(|i| {
                let column = batch.column(i).as_primitive_opt::<Float64Type>();
                column.map(|c| ArgValues::Double(c.clone()))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(shape)?;
        let values = BatchValues {
            times: times.values(),
            args,
        };
        let mut scratch: Vec<Output> = (self.aggregates.iter())
            .map(|_| Output::Doubles(vec![0.0; batch.num_rows()], vec![false; batch.num_rows()]))
            .collect();
        let mut start = 0;
        while start < batch.num_rows() {
            let key = keys.value(start);
            let end = (start..batch.num_rows())
                .find(|&i| keys.value(i) != key)
                .unwrap_or(batch.num_rows());
            let partition = (self.partitions.entry(key.into()))
                .or_insert_with(|| Partition::new(self.aggregates.len(), self.arg_columns.len()));
            partition.advance(
                start..end,
                &values,
                &self.aggregates,
                &self.arg_of,
                &mut scratch,
            );
            start = end;
        }
        Ok(())
    }
}

impl Partition {
    fn new(aggregates: usize, args: usize) -> Self {
        Self {
            times: VecDeque::new(),
            values: vec![VecDeque::new(); args],
            first: 0,
            frames: Vec::with_capacity(aggregates),
        }
    }

    /// The row after the last held one.
    fn next_seq(&self) -> u64 {
        self.first + self.times.len() as u64
    }

    fn value(&self, slot: Option<usize>, seq: u64) -> Option<f64> {
        let i = (seq - self.first) as usize;
        slot.map_or(Some(0.0), |slot| self.values[slot][i])
    }

    /// Takes in rows `range` of the batch (this partition's, in time order) and writes each
    /// aggregate's value for them into `outputs`.
    fn advance(
        &mut self,
        range: Range<usize>,
        batch: &BatchValues,
        aggregates: &[SlidingAggregate],
        arg_of: &[Option<usize>],
        outputs: &mut [Output],
    ) {
        if self.frames.is_empty() {
            self.frames = (aggregates.iter())
                .map(|a| FrameState {
                    start: self.first,
                    end: self.first,
                    acc: Accumulator::new(a.kind),
                })
                .collect();
        }
        let first_new = self.next_seq();
        let base = range.start;
        for i in range.clone() {
            self.times.push_back(batch.times[i]);
            for (held, arg) in self.values.iter_mut().zip(&batch.args) {
                held.push_back(arg.get(i));
            }
        }
        for (a, aggregate) in aggregates.iter().enumerate() {
            let rows = first_new..self.next_seq();
            match aggregate.frame {
                SlidingFrame::Range(reach) => {
                    self.slide_range(a, aggregate, arg_of[a], reach, rows, base, &mut outputs[a])
                }
                SlidingFrame::Rows(preceding) => self.slide_rows(
                    a,
                    aggregate,
                    arg_of[a],
                    preceding,
                    rows,
                    base,
                    &mut outputs[a],
                ),
            }
        }
        self.drop_unreached();
    }

    /// A RANGE frame over new rows `rows`: per group of rows at one time, adds them, takes
    /// away the rows more than `reach` before that time, and writes the value for each.
    #[allow(clippy::too_many_arguments)]
    fn slide_range(
        &mut self,
        a: usize,
        aggregate: &SlidingAggregate,
        slot: Option<usize>,
        reach: i64,
        rows: Range<u64>,
        base: usize,
        output: &mut Output,
    ) {
        let mut group = rows.start;
        while group < rows.end {
            let time = self.times[(group - self.first) as usize];
            let mut group_end = group + 1;
            while group_end < rows.end && self.times[(group_end - self.first) as usize] == time {
                group_end += 1;
            }
            self.add_until(a, aggregate, slot, group_end);
            let from = time.saturating_sub(reach);
            while self.times[(self.frames[a].start - self.first) as usize] < from {
                self.retract_first(a, aggregate, slot);
            }
            let value = &self.frames[a].acc;
            for seq in group..group_end {
                write(
                    output,
                    (seq - rows.start) as usize + base,
                    value,
                    aggregate.kind,
                );
            }
            group = group_end;
        }
    }

    /// A ROWS frame over new rows `rows`: per row, adds it, takes away the rows more than
    /// `preceding` before it, and writes its value.
    #[allow(clippy::too_many_arguments)]
    fn slide_rows(
        &mut self,
        a: usize,
        aggregate: &SlidingAggregate,
        slot: Option<usize>,
        preceding: usize,
        rows: Range<u64>,
        base: usize,
        output: &mut Output,
    ) {
        for seq in rows.clone() {
            self.add_until(a, aggregate, slot, seq + 1);
            while self.frames[a].end - self.frames[a].start > preceding as u64 + 1 {
                self.retract_first(a, aggregate, slot);
            }
            write(
                output,
                (seq - rows.start) as usize + base,
                &self.frames[a].acc,
                aggregate.kind,
            );
        }
    }

    /// Adds the held rows before `end` that aggregate `a` has not added yet.
    fn add_until(&mut self, a: usize, aggregate: &SlidingAggregate, slot: Option<usize>, end: u64) {
        let counts_rows = aggregate.arg.is_none();
        while self.frames[a].end < end {
            let seq = self.frames[a].end;
            let value = self.value(slot, seq);
            let frame = &mut self.frames[a];
            frame.acc.add(seq, value, counts_rows);
            frame.end += 1;
        }
    }

    /// Takes aggregate `a`'s oldest row out of its frame, recomputing the running value
    /// from the frame's rows when it asks to be.
    fn retract_first(&mut self, a: usize, aggregate: &SlidingAggregate, slot: Option<usize>) {
        let seq = self.frames[a].start;
        let value = self.value(slot, seq);
        let len = (self.frames[a].end - seq) as usize;
        let frame = &mut self.frames[a];
        frame.start += 1;
        if frame.acc.retract(seq, value, aggregate.arg.is_none(), len) {
            let (start, end) = (frame.start, frame.end);
            let values = (start..end).map(|s| self.value(slot, s));
            self.frames[a].acc = self.frames[a].acc.rebuilt(values);
        }
    }

    /// Frees the rows before every frame's start.
    fn drop_unreached(&mut self) {
        let keep_from = (self.frames.iter())
            .map(|f| f.start)
            .min()
            .unwrap_or(self.next_seq());
        let n = (keep_from - self.first) as usize;
        if n == 0 {
            return;
        }
        self.times.drain(..n);
        for held in &mut self.values {
            held.drain(..n);
        }
        self.first = keep_from;
    }
}

#[inline]
fn write(output: &mut Output, i: usize, acc: &Accumulator, kind: SlidingKind) {
    match output {
        Output::Counts(counts) => counts[i] = acc.count(),
        Output::Doubles(values, valid) => {
            if let Some(v) = acc.value(kind) {
                values[i] = v;
                valid[i] = true;
            }
        }
    }
}

fn finish(output: Output) -> ArrayRef {
    match output {
        Output::Counts(counts) => Arc::new(Int64Array::from(counts)),
        Output::Doubles(values, valid) => {
            let nulls = NullBuffer::new(BooleanBuffer::from(valid));
            Arc::new(Float64Array::new(values.into(), Some(nulls)))
        }
    }
}
