//! [`EmitPolicy`]: when a window aggregate emits, besides once at the window's end, and
//! [`Emitted`]: what it has emitted of each window, to send only what changed since.
//!
//! With `EMIT EARLY EVERY p` an open window's running result is emitted each time the
//! watermark crosses a multiple of `p`; with `ALLOWED LATENESS l` a window's state is kept
//! until the watermark passes its end plus `l`, and a late row inside that time corrects the
//! row emitted. Either way the output is a changelog: a window's first row is `+I`, a changed
//! one `-U` (the row emitted before) then `+U`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Int8Array, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::compute::kernels::boolean::or;
use datafusion::arrow::compute::kernels::cmp::distinct;

use crate::batch::{ChangeBatch, ChangeKind};
use crate::error::Result;
use crate::time::{Timestamp, WATERMARK_MAX, WATERMARK_MIN, describe_nanos};

/// A window aggregate's emit policy; the default emits each window once, at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitPolicy {
    /// Emit open windows' running results this often, in event time (nanoseconds).
    pub early_every: Option<i64>,
    /// Keep a window this long after its end for late rows to correct it (nanoseconds).
    pub allowed_lateness: i64,
}

impl EmitPolicy {
    /// Whether the aggregate emits each window once: its output stays append-only.
    pub fn is_once(&self) -> bool {
        self.early_every.is_none() && self.allowed_lateness == 0
    }

    /// The policy as EXPLAIN shows it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(every) = self.early_every {
            parts.push(format!("emit early every {}", describe_nanos(every)));
        }
        if self.allowed_lateness > 0 {
            parts.push(format!(
                "allowed lateness {}",
                describe_nanos(self.allowed_lateness)
            ));
        }
        parts.join(", ")
    }
}

/// A window as the aggregate keys it: (end, start).
pub(crate) type WindowKey = (Timestamp, Timestamp);

/// The rows last emitted for each window, and the windows changed since.
#[derive(Debug, Default)]
pub(crate) struct Emitted {
    pub policy: EmitPolicy,
    rows: HashMap<WindowKey, RecordBatch>,
    dirty: BTreeSet<WindowKey>,
    /// The multiple of `early_every` the watermark last reached; `None` before the first
    /// watermark, which only sets it: early rows come from the next multiple on.
    last_tick: Option<i64>,
    /// When open windows were last emitted early (by event time or the wall clock).
    early_at: Option<Instant>,
    /// Whether rows came since the wall clock was last heard.
    touched_since_clock: bool,
}

impl Emitted {
    /// For `policy`, with nothing emitted.
    pub fn new(policy: EmitPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// For `policy`, resuming at `watermark` (from a snapshot): early ticks go on from there.
    pub fn resumed(policy: EmitPolicy, watermark: Timestamp) -> Self {
        let mut emitted = Self::new(policy);
        if watermark > WATERMARK_MIN {
            emitted.last_tick = policy.early_every.map(|p| watermark.div_euclid(p));
        }
        emitted
    }

    /// Window `key` took rows.
    pub fn touch(&mut self, key: WindowKey) {
        self.dirty.insert(key);
        self.touched_since_clock = true;
    }

    /// The windows to emit now that the wall clock reads `now` and the watermark stands at
    /// `watermark`: every changed one when `early_every` of wall time passed without early
    /// rows (event time stands still while the input is quiet), and the corrections of
    /// ended ones when no rows came since the clock was last heard.
    pub fn due_by_clock(&mut self, now: Instant, watermark: Timestamp) -> Vec<WindowKey> {
        let quiet = !std::mem::take(&mut self.touched_since_clock);
        let early = match (self.policy.early_every, self.early_at) {
            (Some(every), Some(at)) => {
                now.saturating_duration_since(at) >= Duration::from_nanos(every.unsigned_abs())
            }
            _ => false,
        };
        if early || (self.policy.early_every.is_some() && self.early_at.is_none()) {
            self.early_at = Some(now);
        }
        self.take_dirty(early, quiet.then_some(watermark))
    }

    /// The windows to emit now that the watermark is at `watermark`: the changed ones that
    /// have ended, and, when the watermark reached a new multiple of `early_every`, the
    /// changed open ones.
    pub fn due(&mut self, watermark: Timestamp) -> Vec<WindowKey> {
        let tick = self.policy.early_every.map(|p| watermark.div_euclid(p));
        let ticked = matches!((tick, self.last_tick), (Some(t), Some(last)) if t > last);
        if tick > self.last_tick {
            self.last_tick = tick;
        }
        if ticked {
            self.early_at = Some(Instant::now());
        }
        self.take_dirty(ticked, Some(watermark))
    }

    /// Takes the changed windows: all of them, or those ended by `ended_by`, in order.
    fn take_dirty(&mut self, all: bool, ended_by: Option<Timestamp>) -> Vec<WindowKey> {
        if all {
            return std::mem::take(&mut self.dirty).into_iter().collect();
        }
        let Some(watermark) = ended_by else {
            return Vec::new();
        };
        let open = (self.dirty).split_off(&(watermark.saturating_add(1), WATERMARK_MIN));
        std::mem::replace(&mut self.dirty, open)
            .into_iter()
            .collect()
    }

    /// Where to cut a batch so that what is emitted does not depend on how rows were
    /// batched: before each row at which the watermark (`row_watermarks`, as it stood
    /// before each row) moves past an early tick or a window's end, or moves at all while a
    /// late row's correction waits; with the watermark there. `ends` are the rows' windows'
    /// ends; `open_ends` those of the windows already open at `watermark`.
    pub fn cuts(
        &self,
        watermark: Timestamp,
        open_ends: impl Iterator<Item = Timestamp>,
        row_watermarks: &[i64],
        ends: &[i64],
    ) -> Vec<(usize, Timestamp)> {
        let mut open: BTreeSet<Timestamp> = open_ends.filter(|e| *e > watermark).collect();
        let mut tick = self.last_tick;
        let mut waiting = self.dirty.iter().any(|(end, _)| *end <= watermark);
        let mut wm = watermark;
        let mut cuts = Vec::new();
        let mut last_end = None;
        for (i, (&row_wm, &end)) in row_watermarks.iter().zip(ends).enumerate() {
            if row_wm > wm {
                let next_end = open.first().copied().unwrap_or(WATERMARK_MAX);
                if waiting || row_wm >= next_end || row_wm >= self.next_tick(tick) {
                    cuts.push((i, row_wm));
                    waiting = false;
                    tick = self.policy.early_every.map(|p| row_wm.div_euclid(p));
                    open = open.split_off(&row_wm.saturating_add(1));
                }
                wm = row_wm;
            }
            if end <= wm {
                waiting = true;
            } else if last_end != Some(end) {
                open.insert(end);
                last_end = Some(end);
            }
        }
        cuts
    }

    /// The watermark at which the tick after `tick` comes.
    fn next_tick(&self, tick: Option<i64>) -> Timestamp {
        match (self.policy.early_every, tick) {
            (None, _) => WATERMARK_MAX,
            // The first watermark sets the ticks' base.
            (Some(_), None) => WATERMARK_MIN,
            (Some(p), Some(t)) => t.saturating_add(1).saturating_mul(p),
        }
    }

    /// The changes from what was emitted of window `key` to `rows` (its groups in id order,
    /// which only grow), remembered for next time.
    pub fn changes(&mut self, key: WindowKey, rows: RecordBatch) -> Result<ChangeBatch> {
        let changes = diff(self.rows.get(&key), &rows)?;
        self.rows.insert(key, rows);
        Ok(changes)
    }

    /// Forgets the windows past their allowed lateness at `watermark`: their state is gone.
    pub fn forget_expired(&mut self, watermark: Timestamp) {
        let lateness = self.policy.allowed_lateness;
        let live = |(end, _): &WindowKey| end.saturating_add(lateness) > watermark;
        self.rows.retain(|key, _| live(key));
        self.dirty.retain(live);
    }

    /// How many emitted rows are kept.
    pub fn held_rows(&self) -> usize {
        self.rows.values().map(RecordBatch::num_rows).sum()
    }

    /// The memory the kept rows take.
    pub fn held_bytes(&self) -> usize {
        (self.rows.values())
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    /// The rows emitted of each window, for a snapshot.
    pub fn rows(&self) -> impl Iterator<Item = (&WindowKey, &RecordBatch)> {
        self.rows.iter()
    }

    /// Takes back what a snapshot held for window `key`.
    pub fn restore(&mut self, key: WindowKey, rows: RecordBatch) {
        self.rows.insert(key, rows);
    }
}

/// `-U` and `+U` for each row of `old` that `new` changes, `+I` for each row `new` adds.
fn diff(old: Option<&RecordBatch>, new: &RecordBatch) -> Result<ChangeBatch> {
    let before = old.map_or(0, RecordBatch::num_rows);
    let mut changed = vec![false; before];
    if let Some(old) = old {
        let head = new.slice(0, before);
        let mut any: Option<datafusion::arrow::array::BooleanArray> = None;
        for (a, b) in old.columns().iter().zip(head.columns()) {
            let d = distinct(a, b)?;
            any = Some(match any {
                Some(previous) => or(&previous, &d)?,
                None => d,
            });
        }
        if let Some(any) = any {
            changed = (0..before).map(|i| any.value(i)).collect();
        }
    }
    let mut indices = Vec::new();
    let mut ops = Vec::new();
    for (i, _) in changed.iter().enumerate().filter(|(_, c)| **c) {
        indices.extend([(0, i), (1, i)]);
        ops.extend([
            ChangeKind::UpdateBefore as i8,
            ChangeKind::UpdateAfter as i8,
        ]);
    }
    for i in before..new.num_rows() {
        indices.push((1, i));
        ops.push(ChangeKind::Insert as i8);
    }
    let empty = new.slice(0, 0);
    let sources = [old.unwrap_or(&empty), new];
    let rows = interleave_record_batch(&sources, &indices)?;
    Ok(ChangeBatch {
        rows,
        ops: Some(Int8Array::from(ops)),
        row_watermarks: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(keys: &[&str], counts: &[i64]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn only_changed_and_new_groups_are_emitted() {
        let mut emitted = Emitted::new(EmitPolicy {
            early_every: Some(10),
            allowed_lateness: 0,
        });
        let first = emitted
            .changes((100, 0), rows(&["a", "b"], &[1, 1]))
            .unwrap();
        assert_eq!(first.num_rows(), 2);
        assert!((0..2).all(|i| first.kind(i) == ChangeKind::Insert));
        let next = (emitted.changes((100, 0), rows(&["a", "b", "c"], &[1, 2, 1]))).unwrap();
        let kinds: Vec<ChangeKind> = (0..next.num_rows()).map(|i| next.kind(i)).collect();
        assert_eq!(
            kinds,
            [
                ChangeKind::UpdateBefore,
                ChangeKind::UpdateAfter,
                ChangeKind::Insert
            ]
        );
        let counts = next
            .rows
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(counts.values(), &[1, 2, 1]);
    }

    #[test]
    fn early_windows_are_due_once_per_tick_and_ended_ones_at_once() {
        let mut emitted = Emitted::new(EmitPolicy {
            early_every: Some(60),
            allowed_lateness: 0,
        });
        emitted.touch((3600, 0));
        assert!(
            emitted.due(30).is_empty(),
            "the first watermark sets the base"
        );
        assert_eq!(emitted.due(61), vec![(3600, 0)]);
        emitted.touch((3600, 0));
        assert!(emitted.due(100).is_empty(), "the same minute");
        assert_eq!(emitted.due(130), vec![(3600, 0)]);
        emitted.touch((3600, 0));
        assert_eq!(emitted.due(3600), vec![(3600, 0)], "its end");
    }

    #[test]
    fn quiet_input_emits_open_windows_on_wall_time() {
        let mut emitted = Emitted::new(EmitPolicy {
            early_every: Some(60_000_000_000),
            allowed_lateness: 0,
        });
        let start = Instant::now();
        emitted.due(0);
        emitted.touch((3_600_000_000_000, 0));
        assert!(
            emitted.due_by_clock(start, 0).is_empty(),
            "the clock starts"
        );
        let later = start + Duration::from_secs(30);
        assert!(
            emitted.due_by_clock(later, 0).is_empty(),
            "half the interval"
        );
        let after = start + Duration::from_secs(61);
        assert_eq!(emitted.due_by_clock(after, 0), vec![(3_600_000_000_000, 0)]);
        emitted.touch((3_600_000_000_000, 0));
        let soon = after + Duration::from_secs(1);
        assert!(
            emitted.due_by_clock(soon, 0).is_empty(),
            "at most once a minute"
        );
    }

    #[test]
    fn corrections_wait_for_the_watermark_or_a_quiet_clock() {
        let mut emitted = Emitted::new(EmitPolicy {
            early_every: None,
            allowed_lateness: 100,
        });
        let now = Instant::now();
        emitted.touch((50, 0));
        emitted.touch((150, 100));
        assert!(emitted.due_by_clock(now, 120).is_empty(), "rows just came");
        assert_eq!(
            emitted.due_by_clock(now, 120),
            vec![(50, 0)],
            "the ended one"
        );
    }

    #[test]
    fn batches_are_cut_where_the_watermark_passes_a_tick_an_end_or_a_late_row() {
        let mut emitted = Emitted::new(EmitPolicy {
            early_every: Some(60),
            allowed_lateness: 1000,
        });
        emitted.due(0);
        // Rows of window (0, 100) then (100, 200); the watermark passes 60 (a tick), 100
        // (an end), then a late row for (0, 100) waits for the next move.
        let row_watermarks = [0, 10, 59, 61, 70, 100, 150, 150, 155];
        let ends = [100, 100, 100, 100, 100, 200, 200, 100, 200];
        let cuts = emitted.cuts(0, std::iter::empty(), &row_watermarks, &ends);
        assert_eq!(cuts, vec![(3, 61), (5, 100), (6, 150), (8, 155)]);
    }
}
