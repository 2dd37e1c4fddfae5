//! [`OverWindow`]: `agg(x) OVER (PARTITION BY k ORDER BY ts RANGE|ROWS BETWEEN ... PRECEDING
//! AND CURRENT ROW)` over a stream, DataFusion's window functions evaluated per partition.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BinaryArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::utils::evaluate_partition_ranges;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::window::WindowExpr;

use super::arrivals::Arrivals;
use super::over_partitions::OverPartitions;
use super::sliding_frames::{SlidingAggregate, SlidingFrames};
use super::{Context, Operator, evaluate_all, show_exprs};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MAX};

const PART_KEY: &str = "vigil.over";

/// How much of a partition's past the frames still need once the watermark is at `w`: the
/// rows after `w - range`, and the last `rows` rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// For RANGE frames: how far back, in nanoseconds.
    pub range: Option<i64>,
    /// For ROWS frames and LAG: how many rows back.
    pub rows: Option<usize>,
}

/// Computes each row's OVER values once the watermark passes its time: by then every row
/// of its partition up to that time (its RANGE peers included) has arrived, so the result
/// is final and the output append-only. Rows at or below the watermark when they arrive
/// are late, counted and dropped. Between watermarks rows wait; after, a partition keeps
/// only the past its frames reach.
pub struct OverWindow {
    exprs: Vec<Arc<dyn WindowExpr>>,
    /// Each expression as EXPLAIN shows it.
    labels: Vec<String>,
    /// Which expressions are `ROW_NUMBER()`, numbered from the rows emitted before.
    row_numbers: Vec<bool>,
    /// Per partition key (Arrow's row format), the rows emitted so far: what a
    /// `ROW_NUMBER()` goes on from.
    emitted: HashMap<Box<[u8]>, u64>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    time_column: usize,
    /// Held rows' layout, arrival numbers and the watermark.
    arrivals: Arrivals,
    schema: SchemaRef,
    /// Rows waiting for the watermark, with the source batch they came in.
    waiting: Vec<(u64, RecordBatch)>,
    /// The past each partition's frames still reach, and the state of the expressions
    /// (ROW_NUMBER apart) over it.
    frames: Frames,
    /// The partition keys' types, and their converter to Arrow's row format, for
    /// ROW_NUMBER and sliding frames; `None` without PARTITION BY.
    key_fields: Vec<SortField>,
    key_converter: Option<RowConverter>,
}

/// How the OVER expressions other than ROW_NUMBER are computed.
enum Frames {
    /// DataFusion's window expressions, evaluated incrementally on the rows they reach.
    DataFusion(OverPartitions),
    /// Aggregates Vigil slides itself (see [`SlidingFrames`]): every expression is one.
    Sliding(SlidingFrames),
}

impl Frames {
    fn fresh(&self) -> Self {
        match self {
            Self::DataFusion(p) => Self::DataFusion(p.fresh()),
            Self::Sliding(s) => Self::Sliding(s.fresh()),
        }
    }

    /// One column per expression over the rows of `sorted`.
    fn advance(
        &mut self,
        sorted: &RecordBatch,
        ranges: &[Range<usize>],
        keys: (&[ArrayRef], Option<&Rows>),
        watermark: Timestamp,
    ) -> Result<Vec<ArrayRef>> {
        match self {
            Self::Sliding(frames) => frames.advance(sorted, ranges, keys.1),
            Self::DataFusion(partitions) => {
                let per_range = partitions.advance(sorted, ranges, keys.0, watermark)?;
                let width = per_range.first().map_or(0, Vec::len);
                (0..width)
                    .map(|e| {
                        let pieces: Vec<&dyn datafusion::arrow::array::Array> =
                            per_range.iter().map(|r| r[e].as_ref()).collect();
                        Ok(datafusion::arrow::compute::concat(&pieces)?)
                    })
                    .collect()
            }
        }
    }

    fn forget_quiet(&mut self, watermark: Timestamp) {
        match self {
            Self::DataFusion(p) => p.forget_quiet(watermark),
            Self::Sliding(s) => s.forget_quiet(watermark),
        }
    }

    fn rows(&self) -> usize {
        match self {
            Self::DataFusion(p) => p.rows(),
            Self::Sliding(s) => s.rows(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::DataFusion(p) => p.bytes(),
            Self::Sliding(s) => s.bytes(),
        }
    }
}

/// One OVER expression of an [`OverWindow`].
pub struct OverFunction {
    /// DataFusion's window expression.
    pub expr: Arc<dyn WindowExpr>,
    /// How EXPLAIN shows it.
    pub label: String,
    /// Whether it is `ROW_NUMBER()`, numbered on from the rows emitted before.
    pub row_number: bool,
    /// The same aggregate as Vigil slides it, when it is one it can (see
    /// [`SlidingFrames`]); used when every expression but ROW_NUMBER is.
    pub sliding: Option<SlidingAggregate>,
}

impl OverWindow {
    /// OVER expressions sharing `partition_by` and an ORDER BY on `time_column` of the
    /// input, giving rows of `schema` (the input's columns, then one per expression).
    pub fn try_new(
        functions: Vec<OverFunction>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        time_column: usize,
        retention: Retention,
        input_schema: &Schema,
        schema: SchemaRef,
    ) -> Result<Self> {
        let arrivals = Arrivals::new(input_schema);
        let evaluated: Vec<&OverFunction> = functions.iter().filter(|f| !f.row_number).collect();
        // ROW_NUMBER alone keeps no rows: DataFusion's path then holds nothing.
        let sliding: Option<Vec<SlidingAggregate>> = if evaluated.is_empty() {
            None
        } else {
            evaluated.iter().map(|f| f.sliding).collect()
        };
        let frames = match sliding {
            Some(aggregates) => {
                Frames::Sliding(SlidingFrames::new(aggregates, time_column, retention))
            }
            None => Frames::DataFusion(OverPartitions::new(
                evaluated.iter().map(|f| Arc::clone(&f.expr)).collect(),
                Arc::clone(&arrivals.schema),
                time_column,
                retention,
            )),
        };
        let key_fields = (partition_by.iter())
            .map(|e| Ok(SortField::new(e.data_type(input_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        let key_converter = key_converter(&key_fields)?;
        Ok(Self {
            exprs: functions.iter().map(|f| Arc::clone(&f.expr)).collect(),
            labels: functions.iter().map(|f| f.label.clone()).collect(),
            row_numbers: functions.iter().map(|f| f.row_number).collect(),
            emitted: HashMap::new(),
            partition_by,
            time_column,
            arrivals,
            schema,
            waiting: Vec::new(),
            frames,
            key_fields,
            key_converter,
        })
    }

    fn input_width(&self) -> usize {
        self.arrivals.column()
    }

    /// `rows` sorted by partition, time and arrival, with each partition's range and the
    /// partition keys.
    fn by_partition(
        &self,
        rows: &RecordBatch,
    ) -> Result<(RecordBatch, Vec<Range<usize>>, Vec<ArrayRef>)> {
        let mut sort: Vec<SortColumn> = evaluate_all(&self.partition_by, rows)?
            .into_iter()
            .map(|values| SortColumn {
                values,
                options: None,
            })
            .collect();
        for column in [self.time_column, self.input_width()] {
            sort.push(SortColumn {
                values: Arc::clone(rows.column(column)),
                options: None,
            });
        }
        let order = lexsort_to_indices(&sort, None)?;
        let sorted = take_record_batch(rows, &order)?;
        let keys = evaluate_all(&self.partition_by, &sorted)?;
        let columns: Vec<SortColumn> = (keys.iter())
            .map(|k| SortColumn {
                values: Arc::clone(k),
                options: None,
            })
            .collect();
        let ranges = evaluate_partition_ranges(sorted.num_rows(), &columns)?;
        Ok((sorted, ranges, keys))
    }

    /// Evaluates the OVER expressions for the ready rows, each partition's state going on
    /// from its earlier rows.
    fn compute(&mut self, ready: RecordBatch, watermark: Timestamp) -> Result<RecordBatch> {
        let (sorted, ranges, keys) = self.by_partition(&ready)?;
        let key_rows = self.key_rows(&keys)?;
        let mut values = self
            .frames
            .advance(&sorted, &ranges, (&keys, key_rows.as_ref()), watermark)?
            .into_iter();
        let numbers = self.number_rows(&ranges, key_rows.as_ref());
        let mut columns = sorted.columns()[..self.input_width()].to_vec();
        for numbered in &self.row_numbers {
            columns.push(match numbered {
                true => Arc::clone(&numbers),
                false => values.next().ok_or_else(|| {
                    Error::Internal("an OVER expression without its values".into())
                })?,
            });
        }
        columns.push(Arc::clone(sorted.column(self.input_width())));
        self.frames.forget_quiet(watermark);
        self.in_time_order(columns)
    }

    /// The ready rows (each with its arrival number last) as one batch in event-time
    /// order, then partition and arrival: the order the rows would have come out in had
    /// each watermark passed one time at a time, whatever the batching.
    fn in_time_order(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        let width = self.schema.fields().len();
        if columns[0].is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        // Columns: the input's, the window values, then the arrival number.
        let arrival = width;
        let keys = RecordBatch::try_new(
            Arc::clone(&self.arrivals.schema),
            (0..self.input_width())
                .map(|i| Arc::clone(&columns[i]))
                .chain([Arc::clone(&columns[arrival])])
                .collect(),
        )?;
        let mut sort = vec![SortColumn {
            values: Arc::clone(&columns[self.time_column]),
            options: None,
        }];
        sort.extend(
            evaluate_all(&self.partition_by, &keys)?
                .into_iter()
                .map(|values| SortColumn {
                    values,
                    options: None,
                }),
        );
        sort.push(SortColumn {
            values: Arc::clone(&columns[arrival]),
            options: None,
        });
        let order = lexsort_to_indices(&sort, None)?;
        let sorted = (columns[..width].iter())
            .map(|c| datafusion::arrow::compute::take(c, &order, None))
            .collect::<std::result::Result<_, _>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), sorted)?)
    }

    /// The partition keys in Arrow's row format, when ROW_NUMBER or sliding frames need
    /// them; `None` without PARTITION BY.
    fn key_rows(&self, keys: &[ArrayRef]) -> Result<Option<Rows>> {
        let needed = self.row_numbers.contains(&true) || matches!(self.frames, Frames::Sliding(_));
        match &self.key_converter {
            Some(converter) if needed => Ok(Some(converter.convert_columns(keys)?)),
            _ => Ok(None),
        }
    }

    /// `ROW_NUMBER()` for the rows of each partition in `ranges` emitted now, going on
    /// from the rows of its key emitted before.
    fn number_rows(&mut self, ranges: &[Range<usize>], keys: Option<&Rows>) -> ArrayRef {
        if !self.row_numbers.contains(&true) {
            return Arc::new(UInt64Array::from(Vec::<u64>::new()));
        }
        let mut numbers = Vec::with_capacity(ranges.last().map_or(0, |r| r.end));
        for range in ranges {
            let key = keys.map_or(&[][..], |k| k.row(range.start).data());
            let before = self.emitted.entry(key.into()).or_insert(0);
            numbers.extend(*before + 1..=*before + range.len() as u64);
            *before += range.len() as u64;
        }
        Arc::new(UInt64Array::from(numbers))
    }

    /// The rows emitted per partition key, as a batch of (key, count).
    fn emitted_batch(&self) -> Result<RecordBatch> {
        let keys = BinaryArray::from_iter_values(self.emitted.keys());
        let counts = UInt64Array::from_iter_values(self.emitted.values().copied());
        let schema = Schema::new(vec![
            Field::new("key", DataType::Binary, false),
            Field::new("emitted", DataType::UInt64, false),
        ])
        .with_metadata([(PART_KEY.to_string(), "emitted".to_string())].into());
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(keys), Arc::new(counts)],
        )?)
    }

    fn restore_emitted(&mut self, batch: &RecordBatch) -> Result<()> {
        let (Some(keys), Some(counts)) = (
            batch.column(0).as_binary_opt::<i32>(),
            batch
                .column(1)
                .as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>(),
        ) else {
            return Err(Error::Internal(
                "OVER window counts of another shape".into(),
            ));
        };
        for (key, count) in keys.iter().zip(counts.iter()) {
            if let (Some(key), Some(count)) = (key, count) {
                self.emitted.insert(key.into(), count);
            }
        }
        Ok(())
    }
}

/// A converter of partition keys of `fields` to Arrow's row format; `None` for no key.
fn key_converter(fields: &[SortField]) -> Result<Option<RowConverter>> {
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(RowConverter::new(fields.to_vec())?))
}

impl Operator for OverWindow {
    fn name(&self) -> &'static str {
        "OverWindow"
    }

    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self {
            exprs: self.exprs.clone(),
            labels: self.labels.clone(),
            row_numbers: self.row_numbers.clone(),
            emitted: HashMap::new(),
            partition_by: self.partition_by.clone(),
            arrivals: self.arrivals.fresh(),
            schema: Arc::clone(&self.schema),
            waiting: Vec::new(),
            frames: self.frames.fresh(),
            key_fields: self.key_fields.clone(),
            key_converter: key_converter(&self.key_fields)?,
            ..*self
        }))
    }

    fn describe(&self) -> String {
        let mut text = self.labels.join(", ");
        if !self.partition_by.is_empty() {
            text.push_str(&format!(
                " partition by [{}]",
                show_exprs(&self.partition_by)
            ));
        }
        let field = self.arrivals.schema.field(self.time_column).name();
        text.push_str(&format!(" order by {field}"));
        if matches!(self.frames, Frames::Sliding(_)) {
            text.push_str(" by sliding");
        }
        text
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if batch.is_updating() {
            return Err(Error::Execution(
                "an OVER window cannot take an updating input".into(),
            ));
        }
        if let Some(rows) = self
            .arrivals
            .admit(batch, self.time_column, "OverWindow", ctx)?
        {
            self.waiting.push((ctx.epoch, rows));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.arrivals.watermark = watermark;
        if !self.waiting.is_empty() {
            let (ready, _) =
                (self.arrivals).ready(&mut self.waiting, self.time_column, watermark)?;
            if ready.num_rows() > 0 {
                let rows = self.compute(ready, watermark)?;
                ctx.emit(ChangeBatch::inserts(rows));
            }
        }
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context) -> Result<()> {
        self.on_watermark(WATERMARK_MAX, ctx)
    }

    fn state_rows(&self) -> usize {
        let waiting: usize = self.waiting.iter().map(|(_, b)| b.num_rows()).sum();
        waiting + self.frames.rows() + self.emitted.len()
    }

    fn state_bytes(&self) -> usize {
        let waiting: usize = (self.waiting.iter())
            .map(|(_, b)| b.get_array_memory_size())
            .sum();
        waiting + self.frames.bytes()
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.waiting.iter().map(|(epoch, _)| *epoch).min()
    }

    /// The waiting rows and the kept past, each marked in its schema's metadata, with the
    /// watermark and the next arrival number.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let waiting: Vec<RecordBatch> = self.waiting.iter().map(|(_, b)| b.clone()).collect();
        let waiting = concat_batches(&self.arrivals.schema, &waiting)?;
        let mut out = vec![self.arrivals.marked(waiting, PART_KEY, "waiting")?];
        match &self.frames {
            Frames::DataFusion(partitions) => {
                let history = partitions.snapshot()?;
                out.push(self.arrivals.marked(history, PART_KEY, "history")?);
            }
            Frames::Sliding(frames) => {
                let held = frames.snapshot()?;
                let metadata = [(PART_KEY.to_string(), "sliding".to_string())].into();
                let schema = Schema::clone(&held.schema()).with_metadata(metadata);
                out.push(held.with_schema(Arc::new(schema))?);
            }
        }
        if !self.emitted.is_empty() {
            out.push(self.emitted_batch()?);
        }
        Ok(out)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in state {
            let metadata = batch.schema().metadata().clone();
            match (metadata.get(PART_KEY).map(String::as_str), &mut self.frames) {
                (Some("emitted"), _) => {
                    self.restore_emitted(&batch)?;
                    continue;
                }
                (Some("sliding"), Frames::Sliding(frames)) => {
                    frames.restore(&batch)?;
                    continue;
                }
                (Some("sliding"), _) => {
                    return Err(Error::Internal(
                        "sliding OVER state for another plan".into(),
                    ));
                }
                _ => {}
            }
            let rows = self.arrivals.restore(&batch)?;
            if rows.num_rows() == 0 {
                continue;
            }
            match metadata.get(PART_KEY).map(String::as_str) {
                Some("waiting") => self.waiting.push((0, rows)),
                Some("history") => {
                    let (sorted, ranges, keys) = self.by_partition(&rows)?;
                    let Frames::DataFusion(partitions) = &mut self.frames else {
                        return Err(Error::Internal("OVER rows for another plan".into()));
                    };
                    partitions.restore(&sorted, &ranges, &keys)?;
                }
                _ => return Err(Error::Internal("OVER window state without its part".into())),
            }
        }
        Ok(())
    }
}
