//! [`MatchRecognize`]: `MATCH_RECOGNIZE` over a stream, a pattern matched per partition key
//! over the rows in event-time order.
//!
//! Rows wait until the watermark passes them (rows at or below the watermark when they come
//! are late), then, a batch at a time: they are sorted by key, time and arrival, the
//! `PREV` values of the DEFINE conditions are read from each key's earlier rows, and every
//! condition is evaluated by DataFusion over the whole batch into one bit per variable and
//! row. The pattern's program then runs over each touched key's bits from the first row a
//! match may still start at. A match is emitted once no more preferred match can come: when
//! the rows after it are known, when `WITHIN` rules out any later row, or at the end of the
//! input. A key keeps its rows from that first row on (bounded by `WITHIN` or the state TTL),
//! and as many rows before it as `PREV` looks back.

mod matcher;
mod measures;
mod pattern;
mod store;

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array, new_null_array,
};
use datafusion::arrow::compute::{
    SortColumn, lexsort_to_indices, prep_null_mask_filter, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::utils::evaluate_partition_ranges;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

pub use measures::{AggregateAtom, Measures, Navigation, NavigationAtom};
pub use pattern::{MAX_VARIABLES, Pattern, Program};

use self::matcher::{Candidates, Matcher, Outcome};
use self::measures::Found;
use self::store::{Partition, Pick, RowRef, RowStore};
use super::arrivals::{Arrivals, event_times};
use super::{Context, Operator, evaluate_all, evaluate_or_reject, show_exprs};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MAX, describe_nanos};

const PART_KEY: &str = "vigil.match";

/// `PREV(x, n)` in a DEFINE condition: `x` of the row `n` rows before, in the partition.
#[derive(Debug, Clone)]
pub struct PrevColumn {
    /// The value, over the input's columns.
    pub arg: Arc<dyn PhysicalExpr>,
    /// How many rows back.
    pub offset: usize,
}

/// Where the search for the next match starts after one is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterMatch {
    /// After the match's last row.
    PastLastRow,
    /// At the row after the match's first.
    ToNextRow,
    /// At the first row mapped to the variable.
    ToFirst(u8),
    /// At the last row mapped to the variable.
    ToLast(u8),
}

/// What the planner works out of a `MATCH_RECOGNIZE` clause.
#[derive(Debug, Clone)]
pub struct MatchSpec {
    /// PARTITION BY, over the input's columns.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The ORDER BY's event time: a column of the input.
    pub time_column: usize,
    /// Further ORDER BY keys, for rows at the same time.
    pub order_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The `PREV` values the conditions read: columns after the input's.
    pub prevs: Vec<PrevColumn>,
    /// Each variable's name.
    pub variables: Vec<String>,
    /// Each variable's condition over the input's columns and then the `PREV` values;
    /// `None` is true.
    pub defines: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The pattern over variable numbers.
    pub pattern: Pattern,
    /// AFTER MATCH SKIP.
    pub after_match: AfterMatch,
    /// WITHIN, in nanoseconds.
    pub within: Option<i64>,
    /// The query's state TTL: a pattern without WITHIN finds matches shorter than it.
    pub state_ttl: Option<i64>,
    /// The output row of a match.
    pub measures: Measures,
    /// The MEASURES as written, for EXPLAIN.
    pub measure_labels: Vec<String>,
}

impl MatchSpec {
    /// How much of a match's span may be waited for: WITHIN, else the state TTL.
    fn bound(&self) -> Option<i64> {
        self.within.or(self.state_ttl)
    }

    /// The most rows before a match's first that `PREV` reads.
    fn look_back(&self) -> usize {
        self.prevs.iter().map(|p| p.offset).max().unwrap_or(0)
    }

    /// What each key holds, in EXPLAIN's words.
    fn state_per_key(&self) -> String {
        let held = match (self.bound(), self.pattern.max_rows()) {
            (Some(bound), _) => format!("rows of the last {}", describe_nanos(bound)),
            (None, Some(rows)) => format!("at most {rows} rows"),
            (None, None) => "unbounded".into(),
        };
        match self.look_back() {
            0 => held,
            n => format!("{held}, and {n} before for PREV"),
        }
    }
}

/// The operator. See the module docs.
pub struct MatchRecognize {
    spec: Arc<MatchSpec>,
    program: Program,
    /// Held rows' layout (the input's columns and an arrival number) and the watermark.
    arrivals: Arrivals,
    /// Rows waiting for the watermark, with the source batch they came in.
    waiting: Vec<(u64, RecordBatch)>,
    /// The layout of ready rows: the input's, the PREV values, the arrival number, then
    /// each PREV's argument (what later rows' PREV reads).
    stored_schema: SchemaRef,
    store: RowStore,
    /// Partition keys to dense ids; `None` without PARTITION BY.
    keys: Option<Box<dyn GroupValues>>,
    key_schema: SchemaRef,
    partitions: Vec<Partition>,
    /// Keys with new rows since they were last searched.
    touched: Vec<usize>,
    /// (time, key): the key's first undecided start is decided once the watermark is there.
    wake: BTreeSet<(Timestamp, usize)>,
    matcher: Matcher,
    ended: bool,
}

impl MatchRecognize {
    /// The operator for `spec` over rows of `input`.
    pub fn try_new(spec: MatchSpec, input: &Schema) -> Result<Self> {
        let program = Program::compile(&spec.pattern)?;
        let arrivals = Arrivals::new(input);
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let prev_types = (spec.prevs.iter())
            .map(|p| p.arg.data_type(input))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for (i, t) in prev_types.iter().enumerate() {
            fields.push(Field::new(format!("__prev{i}"), t.clone(), true));
        }
        fields.push(arrivals.schema.field(arrivals.column()).clone());
        for (i, t) in prev_types.iter().enumerate() {
            fields.push(Field::new(format!("__prev_arg{i}"), t.clone(), true));
        }
        let key_fields = (spec.partition_by.iter().enumerate())
            .map(|(i, k)| Ok(Field::new(format!("k{i}"), k.data_type(input)?, true)))
            .collect::<Result<Vec<_>>>()?;
        let mut operator = Self {
            spec: Arc::new(spec),
            program,
            arrivals,
            waiting: Vec::new(),
            stored_schema: Arc::new(Schema::new(fields)),
            store: RowStore::default(),
            keys: None,
            key_schema: Arc::new(Schema::new(key_fields)),
            partitions: Vec::new(),
            touched: Vec::new(),
            wake: BTreeSet::new(),
            matcher: Matcher::default(),
            ended: false,
        };
        operator.keys = operator.new_keys()?;
        Ok(operator)
    }

    fn new_keys(&self) -> Result<Option<Box<dyn GroupValues>>> {
        if self.spec.partition_by.is_empty() {
            return Ok(None);
        }
        Ok(Some(new_group_values(
            Arc::clone(&self.key_schema),
            &GroupOrdering::None,
        )?))
    }

    fn input_width(&self) -> usize {
        self.arrivals.column()
    }

    /// `rows` (input columns and arrival) sorted by key, time, the further ORDER BY keys and
    /// arrival.
    fn sorted(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let mut columns = evaluate_all(&self.spec.partition_by, rows)?;
        columns.push(Arc::clone(rows.column(self.spec.time_column)));
        columns.extend(evaluate_all(&self.spec.order_by, rows)?);
        columns.push(Arc::clone(rows.column(self.input_width())));
        let sort: Vec<SortColumn> = (columns.into_iter())
            .map(|values| SortColumn {
                values,
                options: None,
            })
            .collect();
        let order = lexsort_to_indices(&sort, None)?;
        Ok(take_record_batch(rows, &order)?)
    }

    /// Each key's range of sorted `rows` and its id, new keys getting new partitions.
    fn key_ranges(&mut self, rows: &RecordBatch) -> Result<Vec<(Range<usize>, usize)>> {
        let keys = evaluate_all(&self.spec.partition_by, rows)?;
        let columns: Vec<SortColumn> = (keys.iter())
            .map(|values| SortColumn {
                values: Arc::clone(values),
                options: None,
            })
            .collect();
        let ranges = evaluate_partition_ranges(rows.num_rows(), &columns)?;
        let firsts: Vec<ArrayRef> = match ranges.len() {
            0 => return Ok(Vec::new()),
            _ => {
                let starts = UInt64Array::from_iter_values(ranges.iter().map(|r| r.start as u64));
                (keys.iter())
                    .map(|k| Ok(datafusion::arrow::compute::take(k, &starts, None)?))
                    .collect::<Result<_>>()?
            }
        };
        let mut ids = Vec::with_capacity(ranges.len());
        match &mut self.keys {
            Some(values) => values.intern(&firsts, &mut ids)?,
            None => ids.resize(ranges.len(), 0),
        }
        let count = ids.iter().max().map_or(0, |m| m + 1);
        if self.partitions.len() < count {
            self.partitions.resize_with(count, Partition::default);
        }
        Ok(ranges.into_iter().zip(ids).collect())
    }

    /// Ready rows into their keys' partitions, with each row's conditions.
    fn ingest(&mut self, ready: RecordBatch, epoch: u64, ctx: &mut Context) -> Result<()> {
        let sorted = self.sorted(&ready)?;
        let ranges = self.key_ranges(&sorted)?;
        let full = self.with_prevs(&sorted, &ranges)?;
        let defined = evaluate_or_reject("MatchRecognize", ChangeBatch::inserts(full), ctx, |b| {
            self.masks(b)
        })?;
        let Some((kept, masks)) = defined else {
            return Ok(());
        };
        let (rows, ranges) = match kept.num_rows() == sorted.num_rows() {
            true => (kept.rows, ranges),
            // Rejected rows leave gaps: the ranges are worked out again.
            false => {
                let ranges = self.key_ranges(&kept.rows)?;
                (kept.rows, ranges)
            }
        };
        let times: Vec<i64> = (event_times(&rows, self.spec.time_column)?.into_iter())
            .map(|t| t.unwrap_or_default())
            .collect();
        let refs = self.store.push(rows, epoch);
        for (range, id) in ranges {
            self.touched.push(id);
            self.partitions[id].extend(&masks[range.clone()], &times[range.clone()], &refs[range]);
        }
        Ok(())
    }

    /// `sorted` with the PREV values (after the input's columns) and each PREV's argument
    /// (after the arrival number): the stored layout.
    fn with_prevs(
        &self,
        sorted: &RecordBatch,
        ranges: &[(Range<usize>, usize)],
    ) -> Result<RecordBatch> {
        let width = self.input_width();
        let args = evaluate_all(
            &(self.spec.prevs.iter())
                .map(|p| Arc::clone(&p.arg))
                .collect::<Vec<_>>(),
            sorted,
        )?;
        let mut columns = sorted.columns()[..width].to_vec();
        for (i, prev) in self.spec.prevs.iter().enumerate() {
            let stored = width + self.spec.prevs.len() + 1 + i;
            columns.push(self.previous(&args[i], stored, prev.offset, ranges)?);
        }
        columns.push(Arc::clone(sorted.column(width)));
        columns.extend(args);
        Ok(RecordBatch::try_new(
            Arc::clone(&self.stored_schema),
            columns,
        )?)
    }

    /// For each row, `values` of the row `offset` before it in its partition: in this
    /// batch, else among the partition's held rows (their column `stored`), else NULL.
    fn previous(
        &self,
        values: &ArrayRef,
        stored: usize,
        offset: usize,
        ranges: &[(Range<usize>, usize)],
    ) -> Result<ArrayRef> {
        let null = new_null_array(values.data_type(), 1);
        let mut picks: Vec<Pick> = Vec::with_capacity(values.len());
        for (range, id) in ranges {
            let held = self.partitions.get(*id).map_or(&[][..], |p| &p.refs[..]);
            for (j, row) in range.clone().enumerate() {
                picks.push(match j.checked_sub(offset) {
                    Some(_) => Pick::Batch(row - offset),
                    None => match held.len().checked_sub(offset - j) {
                        Some(k) => Pick::Held(held[k]),
                        None => Pick::Null,
                    },
                });
            }
        }
        self.store
            .interleave_column(stored, &[values.as_ref(), null.as_ref()], &picks)
    }

    /// Each row's conditions as bits.
    fn masks(&self, rows: &RecordBatch) -> Result<Vec<u64>> {
        let n = rows.num_rows();
        let mut masks = vec![0u64; n];
        for (var, define) in self.spec.defines.iter().enumerate() {
            let bit = 1u64 << var;
            let Some(define) = define else {
                masks.iter_mut().for_each(|m| *m |= bit);
                continue;
            };
            let values = define.evaluate(rows)?.into_array(n)?;
            let values = (values.as_boolean_opt())
                .ok_or_else(|| Error::Plan("a DEFINE condition that is not boolean".into()))?;
            let values = match values.null_count() {
                0 => values.clone(),
                _ => prep_null_mask_filter(values),
            };
            for i in values.values().set_indices() {
                masks[i] |= bit;
            }
        }
        Ok(masks)
    }

    /// Searches the touched and woken keys; the matches they complete.
    fn search(&mut self, watermark: Timestamp) -> Vec<Found> {
        let mut keys = std::mem::take(&mut self.touched);
        while let Some(&(at, id)) = self.wake.first() {
            if at > watermark {
                break;
            }
            self.wake.pop_first();
            keys.push(id);
        }
        if self.ended {
            keys = (0..self.partitions.len()).collect();
        }
        keys.sort_unstable();
        keys.dedup();
        let mut found: Vec<(i64, i64, Found)> = Vec::new();
        for id in keys {
            self.search_key(id, watermark, &mut found);
        }
        found.sort_by_key(|(last, first, _)| (*last, *first));
        found.into_iter().map(|(_, _, m)| m).collect()
    }

    /// Runs the program over one key from its first undecided start.
    fn search_key(&mut self, id: usize, watermark: Timestamp, found: &mut Vec<(i64, i64, Found)>) {
        let bound = self.spec.bound();
        let partition = &mut self.partitions[id];
        while partition.next < partition.len() {
            let start = partition.next;
            let first = partition.times[start];
            let deadline = bound.map(|b| first.saturating_add(b - 1));
            let rows = Candidates {
                masks: &partition.masks[start..],
                times: &partition.times[start..],
                within: bound,
                complete: self.ended || deadline.is_some_and(|d| watermark >= d),
            };
            match self.matcher.find(&self.program, rows) {
                Outcome::Undecided => {
                    if let Some(deadline) = deadline {
                        self.wake.insert((deadline, id));
                    }
                    return;
                }
                Outcome::NoMatch => partition.next += 1,
                Outcome::Matched(vars) => {
                    let end = start + vars.len();
                    let last = partition.times[end - 1];
                    partition.next = start + skip(self.spec.after_match, &vars);
                    let rows = partition.refs[start..end].to_vec();
                    found.push((last, first, Found { rows, vars }));
                }
            }
        }
    }

    /// Frees what no match can use any more.
    fn trim(&mut self) {
        let keep = self.spec.look_back();
        for partition in &mut self.partitions {
            partition.trim(keep, &mut self.store);
        }
    }

    /// Forgets keys whose last row is older than the state TTL (their PREV rows with them).
    fn forget_quiet(&mut self, watermark: Timestamp) {
        let Some(ttl) = self.spec.state_ttl else {
            return;
        };
        for partition in &mut self.partitions {
            let quiet = (partition.times.last()).is_some_and(|t| {
                t.saturating_add(ttl) < watermark && partition.next >= partition.len()
            });
            if quiet {
                partition.clear(&mut self.store);
            }
        }
    }

    /// The held rows of every key, in key order, with each row's bits and whether a match
    /// may still start at or before it.
    fn held_batch(&self) -> Result<RecordBatch> {
        let mut refs: Vec<RowRef> = Vec::new();
        let mut masks = Vec::new();
        let mut pending = Vec::new();
        for partition in &self.partitions {
            refs.extend_from_slice(&partition.refs);
            masks.extend_from_slice(&partition.masks);
            pending.extend((0..partition.len()).map(|i| i >= partition.next));
        }
        let rows = match refs.is_empty() {
            true => RecordBatch::new_empty(Arc::clone(&self.stored_schema)),
            false => self.store.gather(&refs)?,
        };
        let mut fields: Vec<Field> = (self.stored_schema.fields().iter())
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("__mask", DataType::UInt64, false));
        fields.push(Field::new("__pending", DataType::Boolean, false));
        let metadata = [(PART_KEY.to_string(), "held".to_string())].into();
        let schema = Schema::new(fields).with_metadata(metadata);
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(masks)));
        columns.push(Arc::new(BooleanArray::from(pending)));
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }

    fn restore_held(&mut self, batch: &RecordBatch) -> Result<()> {
        let width = self.stored_schema.fields().len();
        let (Some(masks), Some(pending)) = (
            batch.column(width).as_primitive_opt::<UInt64Type>(),
            batch.column(width + 1).as_boolean_opt(),
        ) else {
            return Err(Error::Internal(
                "MATCH_RECOGNIZE rows of another shape".into(),
            ));
        };
        let (masks, pending) = (masks.values().to_vec(), pending.clone());
        let rows = RecordBatch::try_new(
            Arc::clone(&self.stored_schema),
            batch.columns()[..width].to_vec(),
        )?;
        let ranges = self.key_ranges(&rows)?;
        let times: Vec<i64> = (event_times(&rows, self.spec.time_column)?.into_iter())
            .map(|t| t.unwrap_or_default())
            .collect();
        let refs = self.store.push(rows, 0);
        for (range, id) in ranges {
            let partition = &mut self.partitions[id];
            let settled = range.clone().take_while(|i| !pending.value(*i)).count();
            partition.next = partition.len() + settled;
            partition.extend(&masks[range.clone()], &times[range.clone()], &refs[range]);
            self.touched.push(id);
        }
        Ok(())
    }
}

/// How far past a match's first row the next search starts.
fn skip(after: AfterMatch, vars: &[u8]) -> usize {
    let at = match after {
        AfterMatch::PastLastRow => vars.len(),
        AfterMatch::ToNextRow => 1,
        AfterMatch::ToFirst(v) => vars.iter().position(|x| *x == v).unwrap_or(0),
        AfterMatch::ToLast(v) => vars.iter().rposition(|x| *x == v).unwrap_or(0),
    };
    // Skipping to the match's own first row would find the same match again.
    at.max(1)
}

impl Operator for MatchRecognize {
    fn name(&self) -> &'static str {
        "MatchRecognize"
    }

    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        let input = Schema::new(self.arrivals.schema.fields()[..self.input_width()].to_vec());
        Ok(Box::new(Self::try_new(
            MatchSpec::clone(&self.spec),
            &input,
        )?))
    }

    fn describe(&self) -> String {
        let spec = &self.spec;
        let mut text = String::new();
        if !spec.partition_by.is_empty() {
            text.push_str(&format!(
                "partition by [{}] ",
                show_exprs(&spec.partition_by)
            ));
        }
        let time = self.arrivals.schema.field(spec.time_column).name();
        text.push_str(&format!(
            "order by {time} pattern ({})",
            spec.pattern.display(&spec.variables)
        ));
        if let Some(within) = spec.within {
            text.push_str(&format!(" within {}", describe_nanos(within)));
        }
        text.push_str(&format!(
            " measures [{}] state per key: {}",
            spec.measure_labels.join(", "),
            spec.state_per_key()
        ));
        text
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if batch.is_updating() {
            return Err(Error::Execution(
                "MATCH_RECOGNIZE cannot take an updating input".into(),
            ));
        }
        let admitted =
            (self.arrivals).admit(batch, self.spec.time_column, "MATCH_RECOGNIZE", ctx)?;
        if let Some(rows) = admitted {
            self.waiting.push((ctx.epoch, rows));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.arrivals.watermark = watermark;
        if !self.waiting.is_empty() {
            let time = self.spec.time_column;
            let (ready, epoch) = self.arrivals.ready(&mut self.waiting, time, watermark)?;
            if ready.num_rows() > 0 {
                self.ingest(ready, epoch.unwrap_or(ctx.epoch), ctx)?;
            }
        }
        let found = self.search(watermark);
        if !found.is_empty() {
            let rows = self.spec.measures.evaluate(&found, &self.store)?;
            ctx.emit(ChangeBatch::inserts(rows));
        }
        self.trim();
        self.forget_quiet(watermark);
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context) -> Result<()> {
        self.ended = true;
        self.on_watermark(WATERMARK_MAX, ctx)
    }

    fn state_rows(&self) -> usize {
        let waiting: usize = self.waiting.iter().map(|(_, b)| b.num_rows()).sum();
        waiting + self.store.live_rows()
    }

    fn state_bytes(&self) -> usize {
        let waiting: usize = (self.waiting.iter())
            .map(|(_, b)| b.get_array_memory_size())
            .sum();
        let keys = self.keys.as_ref().map_or(0, |k| k.size());
        waiting + self.store.bytes() + keys
    }

    fn retained_epoch(&self) -> Option<u64> {
        let waiting = self.waiting.iter().map(|(epoch, _)| *epoch).min();
        waiting.into_iter().chain(self.store.oldest_epoch()).min()
    }

    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let waiting: Vec<RecordBatch> = self.waiting.iter().map(|(_, b)| b.clone()).collect();
        let waiting = datafusion::arrow::compute::concat_batches(&self.arrivals.schema, &waiting)?;
        Ok(vec![
            self.arrivals.marked(waiting, PART_KEY, "waiting")?,
            self.held_batch()?,
        ])
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in state {
            let part = batch.schema().metadata().get(PART_KEY).cloned();
            match part.as_deref() {
                Some("waiting") => {
                    let rows = self.arrivals.restore(&batch)?;
                    if rows.num_rows() > 0 {
                        self.waiting.push((0, rows));
                    }
                }
                Some("held") => self.restore_held(&batch)?,
                _ => {
                    return Err(Error::Internal(
                        "MATCH_RECOGNIZE state without its part".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
