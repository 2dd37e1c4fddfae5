//! The part of [`WindowAggregate`] that runs an emit policy
//! ([`crate::operators::EmitPolicy`]): batches cut where something is due, the changes since
//! a window was last emitted, and the emitted rows in checkpoints.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;

use super::WindowAggregate;
use super::rows::WindowRows;
use crate::error::{Error, Result};
use crate::operators::Context;
use crate::operators::emit_policy::{Emitted, WindowKey};
use crate::time::Timestamp;

/// Marks the rows an emit policy last emitted for a window (`end,start`).
const EMITTED_KEY: &str = "vigil.emitted_window";

impl WindowAggregate {
    /// Under an emit policy: adds rows up to each cut (see [`Emitted::cuts`]), then emits
    /// what is due at the watermark the cut names, as if the rows had come in batches
    /// ending there. `row_watermarks` are the rows' arrival watermarks.
    pub(super) fn accumulate_with_cuts(
        &mut self,
        ctx: &mut Context,
        rows: WindowRows,
        row_watermarks: &Int64Array,
    ) -> Result<()> {
        let Some(emitted) = &self.emitted else {
            return self.accumulate_rows(ctx.epoch, rows);
        };
        let open_ends = self.windows.keys().map(|(end, _)| *end);
        let cuts = emitted.cuts(
            self.watermark,
            open_ends,
            row_watermarks.values(),
            rows.ends.values(),
        );
        let mut from = 0;
        for (at, watermark) in cuts {
            self.accumulate_rows(ctx.epoch, rows.slice(from, at - from))?;
            self.emit_changes(watermark, ctx)?;
            from = at;
        }
        self.accumulate_rows(ctx.epoch, rows.slice(from, rows.ends.len() - from))
    }

    /// Under an emit policy: emits what changed of the windows due at `watermark` (ended
    /// ones, and open ones at an early tick), then frees the windows past their lateness.
    pub(super) fn emit_changes(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
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

    /// Under an emit policy, the wall clock: quiet input still gets its early rows.
    pub(super) fn emit_by_clock(
        &mut self,
        now: std::time::Instant,
        ctx: &mut Context,
    ) -> Result<()> {
        let Some(mut emitted) = self.emitted.take() else {
            return Ok(());
        };
        let due = emitted.due_by_clock(now, self.watermark);
        let result = self.emit_windows(&mut emitted, &due, self.watermark, ctx);
        self.emitted = Some(emitted);
        result
    }

    /// The rows last emitted of each window, as state batches.
    pub(super) fn emitted_state(&self) -> Result<Vec<RecordBatch>> {
        let Some(emitted) = &self.emitted else {
            return Ok(Vec::new());
        };
        let mut batches = Vec::new();
        for ((end, start), rows) in emitted.rows() {
            let metadata = HashMap::from([(EMITTED_KEY.to_string(), format!("{end},{start}"))]);
            let schema = Schema::clone(&rows.schema()).with_metadata(metadata);
            batches.push(rows.clone().with_schema(Arc::new(schema))?);
        }
        Ok(batches)
    }

    /// Takes back the rows a snapshot held as emitted, once the windows are restored.
    pub(super) fn restore_emitted(&mut self, rows: Vec<(WindowKey, RecordBatch)>) -> Result<()> {
        let Some(policy) = self.emitted.as_ref().map(|e| e.policy) else {
            return match rows.is_empty() {
                true => Ok(()),
                false => Err(Error::Internal("emitted rows for another plan".into())),
            };
        };
        let mut emitted = Emitted::resumed(policy, self.watermark);
        for (key, batch) in rows {
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

/// The window a state batch holds the emitted rows of, from its metadata; `None` for a
/// window's or pane's state.
pub(super) fn emitted_window(batch: &RecordBatch) -> Result<Option<WindowKey>> {
    let Some(window) = batch.schema().metadata().get(EMITTED_KEY).cloned() else {
        return Ok(None);
    };
    let key = window
        .split_once(',')
        .and_then(|(end, start)| Some((end.parse().ok()?, start.parse().ok()?)))
        .ok_or_else(|| Error::Internal(format!("bad emitted window {window}")))?;
    Ok(Some(key))
}
