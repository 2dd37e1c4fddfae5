//! [`WindowAggregate`]: GROUP BY window_start, window_end, keys over TUMBLE, HOP or CUMULATE.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{SortColumn, cast, filter, lexsort_to_indices, take};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::aggregate::AggregateSpec;
use super::emit_policy::{EmitPolicy, Emitted, WindowKey};
use super::pane_windows::PaneWindows;
use super::window_groups::{Frozen, GroupsFactory, WindowGroups};
use super::{Context, Operator, evaluate_or_reject};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MIN, WindowSpec};

/// Aggregates per window and group with DataFusion's `GroupsAccumulator`s, and emits each
/// window exactly once, when the watermark reaches its end. A window's state is freed when
/// it is emitted, so memory follows the number of open windows, not the stream's length.
///
/// Over `HOP` by panes ([`WindowAggregate::with_panes`]), the rows carry their pane's start
/// and the end of the first window they count in instead of a window's bounds; panes are
/// aggregated like tumbling windows and merged into windows as these close
/// ([`PaneWindows`]).
pub struct WindowAggregate {
    factory: GroupsFactory,
    start_column: usize,
    end_column: usize,
    /// Open windows (or panes) by (end, start).
    windows: BTreeMap<(Timestamp, Timestamp), WindowGroups>,
    watermark: Timestamp,
    panes: Option<PaneWindows>,
    /// With an emit policy: what was emitted of each window (see [`EmitPolicy`]).
    emitted: Option<Emitted>,
}

impl WindowAggregate {
    /// An aggregate over an input whose window bounds are at `start_column` and `end_column`.
    pub fn try_new(
        spec: AggregateSpec,
        input_schema: &SchemaRef,
        start_column: usize,
        end_column: usize,
    ) -> Result<Self> {
        let key_schema = spec.key_schema(input_schema)?;
        Ok(Self {
            factory: GroupsFactory::new(spec, key_schema),
            start_column,
            end_column,
            windows: BTreeMap::new(),
            watermark: WATERMARK_MIN,
            panes: None,
            emitted: None,
        })
    }

    /// The same aggregate emitting by `policy` (not over panes): its output is a changelog.
    pub fn with_emit(mut self, policy: EmitPolicy) -> Self {
        self.emitted = (!policy.is_once()).then(|| Emitted::new(policy));
        self
    }

    fn lateness(&self) -> i64 {
        self.emitted
            .as_ref()
            .map_or(0, |e| e.policy.allowed_lateness)
    }

    /// The same aggregate over the panes of `HOP(slide, size)` (see [`WindowAssign`]'s pane
    /// mode): it emits the windows the panes make.
    ///
    /// [`WindowAssign`]: super::WindowAssign
    pub fn with_panes(mut self, window: WindowSpec) -> Self {
        self.panes = Some(PaneWindows::new(window.slide, window.size));
        self
    }

    fn spec(&self) -> &AggregateSpec {
        self.factory.spec()
    }

    /// Adds rows that all belong to the window (or pane) `start`..`end`.
    fn accumulate(
        &mut self,
        epoch: u64,
        (start, end): (Timestamp, Timestamp),
        keys: &[ArrayRef],
        args: &[(Vec<ArrayRef>, Option<BooleanArray>)],
        rows: usize,
    ) -> Result<()> {
        if let Some(emitted) = &mut self.emitted {
            emitted.touch((end, start));
        }
        let window = match self.windows.entry((end, start)) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(self.factory.empty(epoch)?),
        };
        window.update(keys, args, rows)
    }

    fn emit(
        &self,
        (start, end): (Timestamp, Timestamp),
        window: WindowGroups,
        ctx: &mut Context,
    ) -> Result<()> {
        let (keys, aggregates, groups) = window.finish()?;
        if groups == 0 {
            return Ok(());
        }
        let rows = self
            .spec()
            .assemble(Some((start, end)), keys, aggregates, groups)?;
        ctx.emit(ChangeBatch::inserts(rows));
        Ok(())
    }

    /// Adds rows of any windows.
    fn accumulate_rows(&mut self, epoch: u64, rows: WindowRows) -> Result<()> {
        for (bounds, run) in rows.runs()? {
            let n = run.ends.len();
            self.accumulate(epoch, bounds, &run.keys, &run.args, n)?;
        }
        Ok(())
    }

    /// Under an emit policy: adds rows up to each cut, then emits what is due at the
    /// watermark the cut names, as if the rows had come in batches ending there.
    fn accumulate_with_cuts(
        &mut self,
        ctx: &mut Context,
        rows: WindowRows,
        cuts: &[(usize, Timestamp)],
    ) -> Result<()> {
        let mut from = 0;
        for &(at, watermark) in cuts {
            self.accumulate_rows(ctx.epoch, rows.slice(from, at - from))?;
            self.emit_changes(watermark, ctx)?;
            from = at;
        }
        self.accumulate_rows(ctx.epoch, rows.slice(from, rows.ends.len() - from))
    }

    /// Under an emit policy: emits what changed of the windows due at `watermark` (ended
    /// ones, and open ones at an early tick), then frees the windows past their lateness.
    fn emit_changes(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        let Some(mut emitted) = self.emitted.take() else {
            return Ok(());
        };
        let due = emitted.due(watermark);
        let result = self.emit_windows(&mut emitted, &due, watermark, ctx);
        let lateness = emitted.policy.allowed_lateness;
        let expired: Vec<WindowKey> = (self.windows.keys())
            .take_while(|(end, _)| end.saturating_add(lateness) <= watermark)
            .copied()
            .collect();
        for key in expired {
            self.windows.remove(&key);
        }
        emitted.forget_expired(watermark);
        self.emitted = Some(emitted);
        result
    }

    /// Emits what changed of windows `keys` since they were last emitted; a window past
    /// its lateness at `watermark` is read for the last time.
    fn emit_windows(
        &mut self,
        emitted: &mut Emitted,
        keys: &[WindowKey],
        watermark: Timestamp,
        ctx: &mut Context,
    ) -> Result<()> {
        for &key in keys {
            let Some(window) = self.windows.remove(&key) else {
                continue;
            };
            let (end, start) = key;
            let (keys, values) = if end.saturating_add(emitted.policy.allowed_lateness) <= watermark
            {
                let (keys, values, _) = window.finish()?;
                (keys, values)
            } else {
                let (kept, keys, values) = window.read(&self.factory)?;
                self.windows.insert(key, kept);
                (keys, values)
            };
            let groups = values.first().map_or(0, |v| v.len());
            let rows = (self.spec()).assemble(Some((start, end)), keys, values, groups)?;
            let changes = emitted.changes(key, rows)?;
            if changes.num_rows() > 0 {
                ctx.emit(changes);
            }
        }
        Ok(())
    }

    /// Emits every window ending at or before `watermark`, in order.
    fn close_windows(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        if self.emitted.is_some() {
            return self.emit_changes(watermark, ctx);
        }
        if self.panes.is_some() {
            return self.close_pane_windows(watermark, ctx);
        }
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let ((end, start), window) = entry.remove_entry();
            self.emit((start, end), window, ctx)?;
        }
        Ok(())
    }

    /// Over panes: each window that closes takes in the panes whose first window it is, then
    /// is the merge of its panes.
    fn close_pane_windows(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        let Some(mut panes) = self.panes.take() else {
            return Ok(());
        };
        let result = (|| {
            loop {
                let open = self.windows.first_key_value().map(|((end, _), _)| *end);
                let next = match (open, panes.next_end()) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => match a.or(b) {
                        Some(end) => end,
                        None => return panes.forget_emitted(&self.factory),
                    },
                };
                if next > watermark {
                    return panes.forget_emitted(&self.factory);
                }
                while let Some(entry) = self.windows.first_entry() {
                    if entry.key().0 > next {
                        break;
                    }
                    let ((first_end, start), pane) = entry.remove_entry();
                    panes.close_pane(start, first_end, pane.freeze()?, &self.factory)?;
                }
                let window = panes.window(next, &self.factory)?;
                panes.emitted_through = next;
                let start = next.saturating_sub(panes.window_size());
                self.emit((start, next), window, ctx)?;
            }
        })();
        self.panes = Some(panes);
        result
    }
}

impl Operator for WindowAggregate {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self {
            factory: self.factory.clone(),
            start_column: self.start_column,
            end_column: self.end_column,
            windows: BTreeMap::new(),
            watermark: WATERMARK_MIN,
            panes: self.panes.as_ref().map(PaneWindows::empty_copy),
            emitted: self.emitted.as_ref().map(|e| Emitted::new(e.policy)),
        }))
    }

    fn name(&self) -> &'static str {
        "WindowAggregate"
    }

    fn describe(&self) -> String {
        match (&self.panes, &self.emitted) {
            (Some(_), _) => format!("{} by panes", self.spec().describe()),
            (None, Some(emitted)) => {
                format!("{} {}", self.spec().describe(), emitted.policy.describe())
            }
            (None, None) => self.spec().describe(),
        }
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if batch.is_updating() {
            return Err(Error::Execution(
                "a window aggregate cannot take an updating input".into(),
            ));
        }
        let spec = self.spec();
        let evaluated = evaluate_or_reject("WindowAggregate", batch, ctx, |rows| {
            Ok((spec.evaluate_keys(rows)?, spec.evaluate_args(rows)?))
        })?;
        let Some((batch, (keys, args))) = evaluated else {
            return Ok(());
        };
        let rows = WindowRows {
            starts: timestamps(batch.rows.column(self.start_column))?,
            ends: timestamps(batch.rows.column(self.end_column))?,
            keys,
            args,
        };
        // Rows for windows already emitted (past their allowed lateness) would break the
        // contract. Upstream window assignment drops them; count any that slip through.
        let watermark = self.watermark.saturating_sub(self.lateness());
        let closed = rows
            .ends
            .values()
            .iter()
            .filter(|&&e| e <= watermark)
            .count();
        let mut row_watermarks = batch.row_watermarks;
        let rows = if closed > 0 {
            ctx.counters.late_rows += closed as u64;
            let mask: BooleanArray = rows
                .ends
                .values()
                .iter()
                .map(|&e| Some(e > watermark))
                .collect();
            if let Some(w) = &row_watermarks {
                row_watermarks = Some(filter(w, &mask)?.as_primitive::<Int64Type>().clone());
            }
            rows.filter(&mask)?
        } else {
            rows
        };
        match (&self.emitted, row_watermarks) {
            (Some(emitted), Some(row_watermarks)) => {
                let ends = self.windows.keys().map(|(end, _)| *end);
                let cuts = emitted.cuts(
                    self.watermark,
                    ends,
                    row_watermarks.values(),
                    rows.ends.values(),
                );
                self.accumulate_with_cuts(ctx, rows, &cuts)
            }
            _ => self.accumulate_rows(ctx.epoch, rows),
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.watermark = watermark;
        self.close_windows(watermark, ctx)?;
        ctx.emit_watermark(watermark);
        Ok(())
    }

    /// Under `EMIT EARLY`, quiet input still gets its early rows, on wall time.
    fn on_clock(&mut self, now: std::time::Instant, ctx: &mut Context) -> Result<()> {
        let Some(mut emitted) = self.emitted.take() else {
            return Ok(());
        };
        let due = emitted.due_by_clock(now, self.watermark);
        let result = self.emit_windows(&mut emitted, &due, self.watermark, ctx);
        self.emitted = Some(emitted);
        result
    }

    fn state_rows(&self) -> usize {
        let closed = self.panes.as_ref().map_or(0, PaneWindows::groups);
        let emitted = self.emitted.as_ref().map_or(0, Emitted::held_rows);
        closed + emitted + self.windows.values().map(|w| w.groups).sum::<usize>()
    }

    fn state_bytes(&self) -> usize {
        let closed = self.panes.as_ref().map_or(0, PaneWindows::bytes);
        let emitted = self.emitted.as_ref().map_or(0, Emitted::held_bytes);
        closed + emitted + self.windows.values().map(WindowGroups::size).sum::<usize>()
    }

    fn retained_epoch(&self) -> Option<u64> {
        let open = self.windows.values().map(|w| w.first_epoch);
        let closed = self.panes.as_ref().and_then(PaneWindows::first_epoch);
        open.chain(closed).min()
    }

    /// One batch per open window (or pane) and per closed pane: `window_start`,
    /// `window_end` (for a pane, the end of its first window), the group keys, then each
    /// accumulator's state columns. Schema metadata carries the watermark, the last window
    /// emitted and whether the pane is closed. Reading a live window's state consumes
    /// DataFusion's accumulators, so each is rebuilt from its batch at once.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let bounds: Vec<(Timestamp, Timestamp)> = self.windows.keys().copied().collect();
        let mut batches = Vec::with_capacity(bounds.len());
        for (end, start) in bounds {
            let window = self
                .windows
                .remove(&(end, start))
                .expect("key listed above");
            let batch = self.state_batch((start, end), &window.freeze()?, false)?;
            self.restore_batch(&batch)?;
            batches.push(batch);
        }
        if let Some(panes) = &self.panes {
            for (start, first_end, pane) in panes.panes() {
                batches.push(self.state_batch((start, first_end), pane, true)?);
            }
        }
        if let Some(emitted) = &self.emitted {
            for ((end, start), rows) in emitted.rows() {
                let metadata = HashMap::from([(EMITTED_KEY.to_string(), format!("{end},{start}"))]);
                let schema = Schema::clone(&rows.schema()).with_metadata(metadata);
                batches.push(rows.clone().with_schema(Arc::new(schema))?);
            }
        }
        Ok(batches)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        let mut emitted_rows = Vec::new();
        for batch in state {
            match batch.schema().metadata().get(EMITTED_KEY) {
                Some(window) => emitted_rows.push((emitted_window(window)?, batch.clone())),
                None => self.restore_batch(&batch)?,
            }
        }
        let Some(policy) = self.emitted.as_ref().map(|e| e.policy) else {
            return match emitted_rows.is_empty() {
                true => Ok(()),
                false => Err(Error::Internal("emitted rows for another plan".into())),
            };
        };
        let mut emitted = Emitted::resumed(policy, self.watermark);
        for (key, batch) in emitted_rows {
            let schema = Schema::clone(&batch.schema()).with_metadata(HashMap::new());
            let rows = RecordBatch::try_new(Arc::new(schema), batch.columns().to_vec())?;
            emitted.restore(key, rows);
        }
        // What the windows took since they were last emitted is emitted when next due.
        for key in self.windows.keys() {
            emitted.touch(*key);
        }
        self.emitted = Some(emitted);
        Ok(())
    }
}

/// The window an emitted-rows state batch is for, from its `end,start` metadata.
fn emitted_window(window: &str) -> Result<WindowKey> {
    window
        .split_once(',')
        .and_then(|(end, start)| Some((end.parse().ok()?, start.parse().ok()?)))
        .ok_or_else(|| Error::Internal(format!("bad emitted window {window}")))
}

/// The rows of one input batch, with their window (or pane) bounds.
struct WindowRows {
    starts: Int64Array,
    ends: Int64Array,
    keys: Vec<ArrayRef>,
    args: Vec<(Vec<ArrayRef>, Option<BooleanArray>)>,
}

impl WindowRows {
    fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        self.map(|a| filter(a, mask))
    }

    fn take(&self, indices: &UInt32Array) -> Result<Self> {
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

    fn slice(&self, offset: usize, len: usize) -> Self {
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
    fn runs(self) -> Result<Vec<((Timestamp, Timestamp), WindowRows)>> {
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
fn timestamps(column: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(column, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

const WATERMARK_KEY: &str = "vigil.watermark";
const EMITTED_THROUGH_KEY: &str = "vigil.emitted_through";
const CLOSED_PANE_KEY: &str = "vigil.closed_pane";
/// Marks the rows an emit policy last emitted for a window (`end,start`).
const EMITTED_KEY: &str = "vigil.emitted_window";

impl WindowAggregate {
    /// Lays out one window's (or pane's) groups as a state batch.
    fn state_batch(
        &self,
        (start, end): (Timestamp, Timestamp),
        groups: &Frozen,
        closed_pane: bool,
    ) -> Result<RecordBatch> {
        let rows = groups.groups;
        let mut fields = vec![
            Field::new("window_start", crate::time::TIMESTAMP_TYPE, false),
            Field::new("window_end", crate::time::TIMESTAMP_TYPE, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from_value(start, rows)),
            Arc::new(TimestampNanosecondArray::from_value(end, rows)),
        ];
        for (i, key) in groups.keys.iter().enumerate() {
            fields.push(Field::new(
                format!("key_{i}"),
                key.data_type().clone(),
                true,
            ));
            columns.push(Arc::clone(key));
        }
        for (i, state) in groups.states.iter().enumerate() {
            for (j, column) in state.iter().enumerate() {
                fields.push(Field::new(
                    format!("agg_{i}_{j}"),
                    column.data_type().clone(),
                    true,
                ));
                columns.push(Arc::clone(column));
            }
        }
        let mut metadata = HashMap::from([(WATERMARK_KEY.to_string(), self.watermark.to_string())]);
        if let Some(panes) = &self.panes {
            metadata.insert(
                EMITTED_THROUGH_KEY.into(),
                panes.emitted_through.to_string(),
            );
            metadata.insert(CLOSED_PANE_KEY.into(), closed_pane.to_string());
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new_with_metadata(fields, metadata)),
            columns,
            &options,
        )?)
    }

    /// Loads one state batch: an open window or pane, or a closed pane.
    fn restore_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let metadata = batch.schema().metadata().clone();
        let number = |key: &str| -> Result<Option<Timestamp>> {
            metadata
                .get(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| Error::Internal(format!("bad {key} in window state")))
                })
                .transpose()
        };
        if let Some(watermark) = number(WATERMARK_KEY)? {
            self.watermark = watermark;
        }
        if let (Some(panes), Some(through)) = (&mut self.panes, number(EMITTED_THROUGH_KEY)?) {
            panes.emitted_through = through;
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let start = timestamps(batch.column(0))?.value(0);
        let end = timestamps(batch.column(1))?.value(0);
        let n_keys = self.spec().keys.len();
        let mut states = Vec::with_capacity(self.spec().calls.len());
        let mut column = 2 + n_keys;
        for call in &self.spec().calls {
            let width = call.function.state_fields()?.len();
            states.push(batch.columns()[column..column + width].to_vec());
            column += width;
        }
        let groups = Frozen {
            keys: batch.columns()[2..2 + n_keys].to_vec(),
            states,
            groups: batch.num_rows(),
            first_epoch: 0,
        };
        let closed = metadata.get(CLOSED_PANE_KEY).is_some_and(|v| v == "true");
        match &mut self.panes {
            Some(panes) if closed => panes.close_pane(start, end, groups, &self.factory),
            _ => {
                let window = self.factory.merged([&groups])?;
                self.windows.insert((end, start), window);
                Ok(())
            }
        }
    }
}
