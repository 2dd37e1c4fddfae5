//! [`WindowAggregate`]: GROUP BY window_start, window_end, keys over TUMBLE, HOP or CUMULATE.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

mod emitting;
mod rows;
mod state;

use emitting::emitted_window;
use rows::{WindowRows, timestamps};

use super::aggregate::AggregateSpec;
use super::emit_policy::{EmitPolicy, Emitted};
use super::pane_windows::PaneWindows;
use super::window_groups::{GroupsFactory, WindowGroups};
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
///
/// With an emit policy ([`WindowAggregate::with_emit`]) a window is also emitted early and
/// corrected late, as a changelog (see `emitting.rs`).
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
            (Some(_), Some(row_watermarks)) => {
                self.accumulate_with_cuts(ctx, rows, &row_watermarks)
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
        self.emit_by_clock(now, ctx)
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
        batches.extend(self.emitted_state()?);
        Ok(batches)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        let mut emitted_rows = Vec::new();
        for batch in state {
            match emitted_window(&batch)? {
                Some(window) => emitted_rows.push((window, batch)),
                None => self.restore_batch(&batch)?,
            }
        }
        self.restore_emitted(emitted_rows)
    }
}
