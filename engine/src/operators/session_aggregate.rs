//! [`SessionAggregate`]: GROUP BY window_start, window_end, keys over `SESSION`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, SortField};

use super::aggregate::AggregateSpec;
use super::window_groups::{Frozen, GroupsFactory, WindowGroups};
use super::{Context, Operator, evaluate_or_reject};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};
use crate::time::{TIMESTAMP_TYPE, Timestamp, WATERMARK_MIN};

/// A session's group key, in Arrow's row format (empty without GROUP BY keys).
type Key = Vec<u8>;

/// The evaluated keys and aggregate arguments of the batch being placed.
struct BatchRows<'a> {
    keys: &'a [ArrayRef],
    args: &'a [(Vec<ArrayRef>, Option<BooleanArray>)],
}

/// Aggregates events into sessions per group key and emits each session once, when the
/// watermark reaches its end.
///
/// Its input rows come from a `SESSION` window assignment, each its own session `[ts, ts +
/// gap)`. A row joins every open session of its key it overlaps, merging them (an event
/// that arrives out of order may bridge two); sessions that only touch (`end == ts`) stay
/// apart, so an event exactly `gap` after the last one starts a new session. A session's
/// state is DataFusion's accumulators for its one group, merged through their state
/// columns when sessions merge, and freed when it is emitted.
///
/// A row is late, counted and dropped, when it meets no open session and its own session
/// has ended at the watermark that stood before it arrived, or when it would change a
/// session already emitted.
pub struct SessionAggregate {
    factory: GroupsFactory,
    start_column: usize,
    end_column: usize,
    key_fields: Vec<SortField>,
    /// The gap: a key's last emitted session matters until the watermark is a gap past it.
    gap: i64,
    sessions: HashMap<u64, Session>,
    /// Each key's open sessions by start; they are disjoint, so also ordered by end.
    by_key: HashMap<Key, BTreeMap<Timestamp, u64>>,
    /// Open sessions by end, to close them in order.
    by_end: BTreeSet<(Timestamp, u64)>,
    /// Per key, the end of its last emitted session, while an event could still overlap it.
    emitted: HashMap<Key, Timestamp>,
    /// `emitted`'s entries in order of expiry (end + gap), which is the order of emission.
    expiring: VecDeque<(Timestamp, Key)>,
    next_id: u64,
    watermark: Timestamp,
    /// The input columns a late row goes to the late port with, when the source has a
    /// late_sink; `None`: late rows are only counted.
    late_columns: Option<Vec<usize>>,
}

struct Session {
    key: Key,
    start: Timestamp,
    end: Timestamp,
    groups: WindowGroups,
    /// Rows of the current batch that belong to it, added once the batch is placed.
    pending: Vec<u32>,
}

impl SessionAggregate {
    /// An aggregate over rows whose own sessions' bounds are at `start_column` and
    /// `end_column`, for sessions of `gap`.
    pub fn try_new(
        spec: AggregateSpec,
        input_schema: &SchemaRef,
        start_column: usize,
        end_column: usize,
        gap: i64,
    ) -> Result<Self> {
        let key_schema = spec.key_schema(input_schema)?;
        let key_fields = key_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            factory: GroupsFactory::new(spec, key_schema),
            start_column,
            end_column,
            key_fields,
            gap,
            sessions: HashMap::new(),
            by_key: HashMap::new(),
            by_end: BTreeSet::new(),
            emitted: HashMap::new(),
            expiring: VecDeque::new(),
            next_id: 0,
            watermark: WATERMARK_MIN,
            late_columns: None,
        })
    }

    /// Sends late rows to the late port as the source had them: these input columns (the
    /// source's, without the window bounds).
    pub fn with_late_rows(mut self, columns: Vec<usize>) -> Self {
        self.late_columns = Some(columns);
        self
    }

    /// The rows' keys in row format.
    fn keys_of(&self, keys: &[ArrayRef], rows: usize) -> Result<Vec<Key>> {
        if keys.is_empty() {
            return Ok(vec![Key::new(); rows]);
        }
        let converter = RowConverter::new(self.key_fields.clone())?;
        let converted = converter.convert_columns(keys)?;
        Ok(converted.iter().map(|row| row.as_ref().to_vec()).collect())
    }

    /// The open sessions of `key` that `[start, end)` overlaps.
    fn met(&self, key: &Key, start: Timestamp, end: Timestamp) -> Vec<u64> {
        let Some(open) = self.by_key.get(key) else {
            return Vec::new();
        };
        open.range(..end)
            .rev()
            .map(|(_, id)| *id)
            .take_while(|id| self.sessions[id].end > start)
            .collect()
    }

    /// Places `[start, end)` of `key`, row `row` of the batch: into the session it and the
    /// sessions it meets make. Returns that session's id.
    fn place(
        &mut self,
        key: &Key,
        (start, end): (Timestamp, Timestamp),
        met: Vec<u64>,
        row: u32,
        epoch: u64,
    ) -> Result<u64> {
        let mut merged = Session {
            key: key.clone(),
            start,
            end,
            groups: self.factory.empty(epoch)?,
            pending: vec![row],
        };
        for id in met {
            let session = self.unlink(id);
            merged.start = merged.start.min(session.start);
            merged.end = merged.end.max(session.end);
            merged.groups.merge(&session.groups.freeze()?)?;
            merged.pending.extend(session.pending);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_key
            .entry(key.clone())
            .or_default()
            .insert(merged.start, id);
        self.by_end.insert((merged.end, id));
        self.sessions.insert(id, merged);
        Ok(id)
    }

    /// Takes session `id` out of every index.
    fn unlink(&mut self, id: u64) -> Session {
        let session = self.sessions.remove(&id).expect("indexed sessions exist");
        self.by_end.remove(&(session.end, id));
        if let Some(open) = self.by_key.get_mut(&session.key) {
            open.remove(&session.start);
            if open.is_empty() {
                self.by_key.remove(&session.key);
            }
        }
        session
    }

    /// Whether `[start, end)` of `key` is late at `watermark`: it would change the key's
    /// emitted session, or it meets no open one and has itself ended. (One that starts before
    /// the emitted session's end but does not overlap it has ended too.)
    fn is_late(
        &self,
        key: &Key,
        (start, end): (Timestamp, Timestamp),
        meets_open: bool,
        watermark: Timestamp,
    ) -> bool {
        let changes_emitted = self.emitted.get(key).is_some_and(|&e| start < e);
        changes_emitted || (!meets_open && end <= watermark)
    }

    /// Adds the rows of `batch` placed in session `id` to its accumulators.
    fn apply_pending(&mut self, id: u64, batch: &BatchRows) -> Result<()> {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Ok(()); // merged into another since
        };
        if session.pending.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(std::mem::take(&mut session.pending));
        let pick = |a: &ArrayRef| take(a.as_ref(), &indices, None);
        let keys: Vec<ArrayRef> = batch
            .keys
            .iter()
            .map(pick)
            .collect::<std::result::Result<_, _>>()?;
        let args = batch
            .args
            .iter()
            .map(|(values, mask)| {
                let values = values
                    .iter()
                    .map(pick)
                    .collect::<std::result::Result<_, _>>()?;
                let mask = match mask {
                    Some(m) => Some(take(m, &indices, None)?.as_boolean().clone()),
                    None => None,
                };
                Ok((values, mask))
            })
            .collect::<Result<Vec<_>>>()?;
        session.groups.update(&keys, &args, indices.len())
    }

    /// Emits every session ending at or before `watermark`, in order of end; rows of
    /// `batch` placed in them are added first.
    fn close_sessions(
        &mut self,
        watermark: Timestamp,
        batch: Option<&BatchRows>,
        ctx: &mut Context,
    ) -> Result<()> {
        let mut out = Vec::new();
        while let Some(&(end, id)) = self.by_end.first() {
            if end > watermark {
                break;
            }
            if let Some(batch) = batch {
                self.apply_pending(id, batch)?;
            }
            let session = self.unlink(id);
            let (keys, aggregates, groups) = session.groups.finish()?;
            if groups > 0 {
                let window = Some((session.start, session.end));
                out.push(
                    self.factory
                        .spec()
                        .assemble(window, keys, aggregates, groups)?,
                );
            }
            self.emitted.insert(session.key.clone(), session.end);
            self.expiring
                .push_back((session.end.saturating_add(self.gap), session.key));
        }
        while self
            .expiring
            .front()
            .is_some_and(|(at, _)| *at <= watermark)
        {
            let (at, key) = self.expiring.pop_front().expect("checked above");
            if self
                .emitted
                .get(&key)
                .is_some_and(|end| end.saturating_add(self.gap) == at)
            {
                self.emitted.remove(&key);
            }
        }
        if let Some(first) = out.first() {
            let rows = concat_batches(&first.schema(), &out)?;
            ctx.emit(ChangeBatch::inserts(rows));
        }
        Ok(())
    }
}

fn timestamps(column: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(column, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

impl Operator for SessionAggregate {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self {
            factory: self.factory.clone(),
            start_column: self.start_column,
            end_column: self.end_column,
            key_fields: self.key_fields.clone(),
            gap: self.gap,
            sessions: HashMap::new(),
            by_key: HashMap::new(),
            by_end: BTreeSet::new(),
            emitted: HashMap::new(),
            expiring: VecDeque::new(),
            next_id: 0,
            watermark: WATERMARK_MIN,
            late_columns: self.late_columns.clone(),
        }))
    }

    fn name(&self) -> &'static str {
        "SessionAggregate"
    }

    fn describe(&self) -> String {
        self.factory.spec().describe()
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if batch.is_updating() {
            return Err(Error::Execution(
                "a session aggregate cannot take an updating input".into(),
            ));
        }
        let watermark = self.watermark;
        let spec = self.factory.spec();
        let evaluated = evaluate_or_reject("SessionAggregate", batch, ctx, |rows| {
            Ok((spec.evaluate_keys(rows)?, spec.evaluate_args(rows)?))
        })?;
        let Some((batch, (keys, args))) = evaluated else {
            return Ok(());
        };
        let rows = batch.rows.num_rows();
        let starts = timestamps(batch.rows.column(self.start_column))?;
        let ends = timestamps(batch.rows.column(self.end_column))?;
        let row_keys = self.keys_of(&keys, rows)?;
        let row_wm = |i: usize| {
            batch
                .row_watermarks
                .as_ref()
                .map_or(watermark, |w| w.value(i).max(watermark))
        };
        let placed = BatchRows {
            keys: &keys,
            args: &args,
        };
        // Sessions are made event by event: which session a row joins depends on the rows
        // of its key before it, and on the sessions the watermark before it had closed.
        let mut touched = Vec::new();
        let mut late = Vec::new();
        let mut closed_at = watermark;
        for (i, key) in row_keys.iter().enumerate() {
            let before = row_wm(i);
            if before > closed_at {
                closed_at = before;
                self.close_sessions(closed_at, Some(&placed), ctx)?;
            }
            let bounds = (starts.value(i), ends.value(i));
            let met = self.met(key, bounds.0, bounds.1);
            if self.is_late(key, bounds, !met.is_empty(), before) {
                late.push(i as u32);
                continue;
            }
            touched.push(self.place(key, bounds, met, i as u32, ctx.epoch)?);
        }
        match &self.late_columns {
            Some(columns) if !late.is_empty() => {
                let rows = take_record_batch(&batch.rows, &UInt32Array::from(late))?;
                ctx.emit_late(ChangeBatch::inserts(rows.project(columns)?));
            }
            _ => ctx.counters.late_rows += late.len() as u64,
        }
        for id in touched {
            self.apply_pending(id, &placed)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.watermark = watermark;
        self.close_sessions(watermark, None, ctx)?;
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn state_rows(&self) -> usize {
        self.sessions.len()
    }

    fn state_bytes(&self) -> usize {
        self.sessions.values().map(|s| s.groups.size()).sum()
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.sessions.values().map(|s| s.groups.first_epoch).min()
    }

    /// One batch per open session: `window_start`, `window_end`, its group key columns and
    /// each accumulator's state columns; then one batch of the keys whose last emitted
    /// session an event could still change, with its end. The watermark is in the metadata.
    /// Freezing a session's accumulators consumes them, so each is rebuilt at once.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let ids: Vec<u64> = self.by_end.iter().map(|(_, id)| *id).collect();
        let mut batches = Vec::with_capacity(ids.len() + 1);
        for id in ids {
            let session = self.sessions.get_mut(&id).expect("indexed sessions exist");
            let epoch = session.groups.first_epoch;
            let live = std::mem::replace(&mut session.groups, self.factory.empty(epoch)?);
            let frozen = live.freeze()?;
            session.groups = self.factory.merged([&frozen])?;
            let bounds = (session.start, session.end);
            batches.push(self.state_batch(bounds, &frozen)?);
        }
        batches.push(self.emitted_batch()?);
        Ok(batches)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in &state {
            self.restore_batch(batch)?;
        }
        Ok(())
    }
}

const WATERMARK_KEY: &str = "vigil.watermark";
const EMITTED_KEY: &str = "vigil.emitted_sessions";

impl SessionAggregate {
    fn metadata(&self, emitted: bool) -> HashMap<String, String> {
        let mut metadata = HashMap::from([(WATERMARK_KEY.to_string(), self.watermark.to_string())]);
        if emitted {
            metadata.insert(EMITTED_KEY.into(), "true".into());
        }
        metadata
    }

    /// One open session as a state batch.
    fn state_batch(
        &self,
        (start, end): (Timestamp, Timestamp),
        groups: &Frozen,
    ) -> Result<RecordBatch> {
        let rows = groups.groups;
        let mut fields = vec![
            Field::new("window_start", TIMESTAMP_TYPE, false),
            Field::new("window_end", TIMESTAMP_TYPE, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from_value(start, rows)),
            Arc::new(TimestampNanosecondArray::from_value(end, rows)),
        ];
        let states = groups.states.iter().flatten();
        for (i, column) in groups.keys.iter().chain(states).enumerate() {
            fields.push(Field::new(
                format!("c{i}"),
                column.data_type().clone(),
                true,
            ));
            columns.push(Arc::clone(column));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let schema = Schema::new_with_metadata(fields, self.metadata(false));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(schema),
            columns,
            &options,
        )?)
    }

    /// The keys whose last emitted session an event could still change, with its end.
    fn emitted_batch(&self) -> Result<RecordBatch> {
        let keys: Vec<&[u8]> = self.emitted.keys().map(Vec::as_slice).collect();
        let ends: Vec<Timestamp> = self.emitted.values().copied().collect();
        let fields = vec![
            Field::new("key", DataType::Binary, false),
            Field::new("window_end", DataType::Int64, false),
        ];
        let schema = Schema::new_with_metadata(fields, self.metadata(true));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from(keys)),
            Arc::new(Int64Array::from(ends)),
        ];
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }

    /// Loads one state batch: an open session, or the emitted sessions' ends.
    fn restore_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let metadata = batch.schema().metadata().clone();
        if let Some(watermark) = metadata.get(WATERMARK_KEY) {
            self.watermark = watermark
                .parse()
                .map_err(|_| Error::Internal("bad watermark in session state".into()))?;
        }
        if metadata.contains_key(EMITTED_KEY) {
            let keys = batch.column(0).as_binary::<i32>();
            let ends = batch.column(1).as_primitive::<Int64Type>();
            for (key, end) in keys.iter().zip(ends.iter()) {
                if let (Some(key), Some(end)) = (key, end) {
                    self.emitted.insert(key.to_vec(), end);
                    self.expiring
                        .push_back((end.saturating_add(self.gap), key.to_vec()));
                }
            }
            self.expiring.make_contiguous().sort();
            return Ok(());
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let start = timestamps(batch.column(0))?.value(0);
        let end = timestamps(batch.column(1))?.value(0);
        let n_keys = self.factory.spec().keys.len();
        let mut states = Vec::new();
        let mut column = 2 + n_keys;
        for call in &self.factory.spec().calls {
            let width = call.function.state_fields()?.len();
            states.push(batch.columns()[column..column + width].to_vec());
            column += width;
        }
        let frozen = Frozen {
            keys: batch.columns()[2..2 + n_keys].to_vec(),
            states,
            groups: batch.num_rows(),
            first_epoch: 0,
        };
        let key = self.keys_of(&frozen.keys, 1)?.remove(0);
        let session = Session {
            key: key.clone(),
            start,
            end,
            groups: self.factory.merged([&frozen])?,
            pending: Vec::new(),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.by_key.entry(key).or_default().insert(start, id);
        self.by_end.insert((end, id));
        self.sessions.insert(id, session);
        Ok(())
    }
}
