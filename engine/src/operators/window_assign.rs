//! [`WindowAssign`]: `TUMBLE`, `HOP` and `CUMULATE`, which give each event its windows.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Context, EmitPolicy, Operator};
use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::time::{
    Timestamp, WATERMARK_MIN, WINDOW_END, WINDOW_START, WindowKind, WindowSpec, describe_nanos,
};

/// Adds `window_start` and `window_end` to each event (replacing the input's own, when it
/// has them: a window over a windowed view); a hopping window copies the event
/// into each of its windows. By panes ([`WindowAssign::by_panes`]), for an aggregate that
/// builds hopping windows from panes, each event is kept once instead, with its pane's start
/// (the latest window start at or before it) and the end of the first of its windows it
/// counts in.
///
/// This is where lateness is decided: a copy whose window already ended at the watermark
/// that stood before the event arrived is dropped, and an event left with no window is late:
/// counted and sent to the late port with its original columns. Events without a time are
/// late too, since they belong to no window.
#[derive(Debug)]
pub struct WindowAssign {
    time_column: usize,
    spec: WindowSpec,
    schema: SchemaRef,
    watermark: Timestamp,
    /// Windows ending at or before this were emitted and delivered by an earlier run of the
    /// query (see [`Operator::resume`]): their events are not counted again, nor late.
    emitted_until: Timestamp,
    panes: bool,
    /// How long after its end a window still takes events (`ALLOWED LATENESS`).
    lateness: i64,
    /// Whether output rows carry the watermark each event came with, for an aggregate that
    /// emits early or late (see [`EmitPolicy`]) to emit the same whatever the batch size.
    row_watermarks: bool,
}

impl WindowAssign {
    /// Windows of `spec` over the timestamp column `time_column`; `schema` is the input's
    /// columns with `window_start` and `window_end` after them or in place of the input's.
    pub fn new(time_column: usize, spec: WindowSpec, schema: SchemaRef) -> Self {
        Self {
            time_column,
            spec,
            schema,
            watermark: WATERMARK_MIN,
            emitted_until: WATERMARK_MIN,
            panes: false,
            lateness: 0,
            row_watermarks: false,
        }
    }

    /// The same windows for an aggregate emitting by `policy`: they take events until
    /// the allowed lateness after their end.
    pub fn with_emit(mut self, policy: EmitPolicy) -> Self {
        self.lateness = policy.allowed_lateness;
        self.row_watermarks = !policy.is_once();
        self
    }

    /// The same windows by panes: one row per event, see the type's docs.
    pub fn by_panes(mut self) -> Self {
        self.panes = true;
        self
    }

    /// The windows of the event at `ts`, which arrived at watermark `watermark`, that it
    /// counts in (oldest first), or why none.
    fn windows_of(&self, ts: Timestamp, watermark: Timestamp) -> Placement {
        match self.spec.kind {
            WindowKind::Cumulating => return self.cumulative_windows_of(ts, watermark),
            // Whether it is late depends on the sessions it meets: the aggregate decides.
            WindowKind::Session => return Placement::Alone,
            WindowKind::Sliding => {}
        }
        let last_start = self.spec.last_start(ts);
        let first_start = last_start - (self.spec.windows_per_event() - 1) * self.spec.slide;
        let last_end = last_start.saturating_add(self.spec.size);
        if last_end <= self.emitted_until {
            return Placement::Delivered;
        }
        if last_end <= watermark {
            return Placement::Late;
        }
        // The first window ending after both the watermark and what was delivered.
        let floor = watermark.max(self.emitted_until);
        let first_end = first_start.saturating_add(self.spec.size);
        let skipped = if floor < first_end {
            0
        } else {
            (floor - first_end) / self.spec.slide + 1
        };
        Placement::From {
            start: first_start + skipped * self.spec.slide,
            pane: last_start,
        }
    }
}

impl WindowAssign {
    /// [`Self::windows_of`] for `CUMULATE`: the windows of the event's period that end after
    /// it, less those closed before it arrived.
    fn cumulative_windows_of(&self, ts: Timestamp, watermark: Timestamp) -> Placement {
        let start = self.spec.last_start(ts);
        let last_end = start.saturating_add(self.spec.size);
        if last_end <= self.emitted_until {
            return Placement::Delivered;
        }
        if last_end <= watermark {
            return Placement::Late;
        }
        let step = self.spec.slide;
        // The first window holding the event ends after it; the first still open ends after
        // both the watermark and what was delivered.
        let holding = (ts - start) / step + 1;
        let floor = watermark.max(self.emitted_until);
        let open = if floor < start {
            1
        } else {
            (floor - start) / step + 1
        };
        Placement::Growing {
            start,
            first_end: start.saturating_add(holding.max(open) * step),
            last_end,
        }
    }
}

/// Where an event goes.
enum Placement {
    /// Every window of it was delivered by an earlier run.
    Delivered,
    /// Every window of it has closed.
    Late,
    /// It counts in the windows from the one starting at `start` to the latest, which starts
    /// at `pane`.
    From { start: Timestamp, pane: Timestamp },
    /// It is a session of its own, `[ts, ts + gap)`, to be merged with the sessions it meets.
    Alone,
    /// It counts in the cumulating windows from `start` that end every step from
    /// `first_end` to `last_end`.
    Growing {
        start: Timestamp,
        first_end: Timestamp,
        last_end: Timestamp,
    },
}

impl Operator for WindowAssign {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        let fresh = Self::new(self.time_column, self.spec, Arc::clone(&self.schema));
        Ok(Box::new(Self {
            panes: self.panes,
            lateness: self.lateness,
            row_watermarks: self.row_watermarks,
            ..fresh
        }))
    }

    fn name(&self) -> &'static str {
        if self.spec.kind == WindowKind::Cumulating {
            "Cumulate"
        } else if self.spec.is_session() {
            "Session"
        } else if self.spec.is_tumbling() {
            "Tumble"
        } else {
            "Hop"
        }
    }

    fn describe(&self) -> String {
        if self.spec.is_session() {
            format!("gap={}", describe_nanos(self.spec.size))
        } else if self.spec.kind == WindowKind::Cumulating {
            format!(
                "step={} size={}",
                describe_nanos(self.spec.slide),
                describe_nanos(self.spec.size)
            )
        } else if self.spec.is_tumbling() {
            format!("size={}", describe_nanos(self.spec.size))
        } else {
            format!(
                "slide={} size={}{}",
                describe_nanos(self.spec.slide),
                describe_nanos(self.spec.size),
                if self.panes { " by panes" } else { "" }
            )
        }
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let rows = &batch.rows;
        let ts = cast(
            rows.column(self.time_column),
            &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
        )?;
        let ts = cast(&ts, &DataType::Int64)?;
        let ts = ts.as_primitive::<Int64Type>();
        let watermark = self.watermark;
        // The watermark as it stood before row `i`, and the same less the allowed lateness,
        // before which a window takes no more rows.
        let arrived_at = |i: usize| {
            (batch.row_watermarks.as_ref()).map_or(watermark, |w| w.value(i).max(watermark))
        };
        let row_wm = |i: usize| arrived_at(i).saturating_sub(self.lateness);

        let mut take = Vec::with_capacity(ts.len());
        let mut starts = Vec::with_capacity(ts.len());
        let mut ends = Vec::with_capacity(ts.len());
        let mut late = Vec::new();
        // Sessions are merged downstream, where lateness is decided: each row goes with the
        // watermark that stood before it.
        let mut session_watermarks = Vec::new();
        for i in 0..ts.len() {
            if ts.is_null(i) {
                late.push(i as u32);
                continue;
            }
            match self.windows_of(ts.value(i), row_wm(i)) {
                Placement::Delivered => {}
                Placement::Late => late.push(i as u32),
                Placement::From { start, pane } if self.panes => {
                    take.push(i as u32);
                    starts.push(pane);
                    ends.push(start.saturating_add(self.spec.size));
                }
                Placement::Alone => {
                    session_watermarks.push(row_wm(i));
                    take.push(i as u32);
                    starts.push(ts.value(i));
                    ends.push(ts.value(i).saturating_add(self.spec.size));
                }
                Placement::Growing {
                    start,
                    first_end,
                    last_end,
                } => {
                    let copies = (last_end - first_end) / self.spec.slide + 1;
                    for k in 0..copies {
                        take.push(i as u32);
                        starts.push(start);
                        ends.push(first_end + k * self.spec.slide);
                    }
                }
                Placement::From { start, pane } => {
                    // Oldest window first, so output rows are in window order per event.
                    let copies = (pane - start) / self.spec.slide + 1;
                    for k in 0..copies {
                        let window = start + k * self.spec.slide;
                        take.push(i as u32);
                        starts.push(window);
                        ends.push(window.saturating_add(self.spec.size));
                    }
                }
            }
        }

        if !late.is_empty() {
            let late_rows = take_record_batch(rows, &UInt32Array::from(late))?;
            ctx.emit_late(ChangeBatch::inserts(late_rows));
        }
        let row_watermarks = if self.row_watermarks {
            Some(take.iter().map(|i| arrived_at(*i as usize)).collect())
        } else {
            (self.spec.is_session()).then(|| Int64Array::from(session_watermarks))
        };
        // One row per event at most, unless copied: then every row kept is the identity.
        let at_most_once = self.panes || self.spec.is_tumbling() || self.spec.is_session();
        let input = if at_most_once && take.len() == rows.num_rows() {
            rows.clone()
        } else {
            take_record_batch(rows, &UInt32Array::from(take))?
        };
        let mut columns: Vec<ArrayRef> = input.columns().to_vec();
        for (name, bounds) in [(WINDOW_START, starts), (WINDOW_END, ends)] {
            let bounds: ArrayRef = Arc::new(TimestampNanosecondArray::from(bounds));
            match self.schema.index_of(name)? {
                index if index < columns.len() => columns[index] = bounds,
                _ => columns.push(bounds),
            }
        }
        let out = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        ctx.emit(ChangeBatch {
            rows: out,
            ops: None,
            row_watermarks,
        });
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        super::watermark_state(self.watermark)
    }

    fn restore(&mut self, state: Vec<datafusion::arrow::record_batch::RecordBatch>) -> Result<()> {
        if let Some(watermark) = super::restore_watermark(&state)? {
            self.watermark = watermark;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.watermark = watermark;
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn resume(&mut self, emitted_until: Timestamp) {
        self.emitted_until = self.emitted_until.max(emitted_until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing;
    use crate::time::TIMESTAMP_TYPE;
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::time::Duration;

    const S: i64 = 1_000_000_000;

    fn input(ts: &[i64], wms: &[i64]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", TIMESTAMP_TYPE, true)]));
        let rows = RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampNanosecondArray::from(ts.to_vec()))],
        )
        .unwrap();
        ChangeBatch {
            rows,
            ops: None,
            row_watermarks: Some(Int64Array::from(wms.to_vec())),
        }
    }

    fn output_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", TIMESTAMP_TYPE, true),
            Field::new("window_start", TIMESTAMP_TYPE, false),
            Field::new("window_end", TIMESTAMP_TYPE, false),
        ]))
    }

    #[test]
    fn hop_copies_events_into_open_windows_and_drops_closed_ones() {
        let spec = WindowSpec::hopping(Duration::from_secs(10), Duration::from_secs(30));
        let mut op = WindowAssign::new(0, spec, output_schema());
        // Event at 25s: windows [0,30), [10,40), [20,50). The watermark before it is 35s, so
        // [0,30) is closed; the event still counts in the two open windows.
        let out = testing::batch(&mut op, input(&[25 * S], &[35 * S]));
        let starts = out.batches[0]
            .rows
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(starts.values().to_vec(), vec![10 * S, 20 * S]);
        assert!(out.late.is_empty());
    }

    #[test]
    fn by_panes_an_event_is_kept_once_with_its_pane_and_first_open_window() {
        let spec = WindowSpec::hopping(Duration::from_secs(10), Duration::from_secs(30));
        let mut op = WindowAssign::new(0, spec, output_schema()).by_panes();
        // At 25s with the watermark at 35s: pane [20,30); [0,30) is closed, so the first
        // window it counts in is [10,40). At 27s with no watermark yet: [0,30) is open.
        let out = testing::batch(&mut op, input(&[25 * S, 27 * S], &[35 * S, i64::MIN]));
        let rows = &out.batches[0].rows;
        let column = |i: usize| {
            rows.column(i)
                .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
                .values()
                .to_vec()
        };
        assert_eq!(column(1), vec![20 * S, 20 * S], "pane starts");
        assert_eq!(column(2), vec![40 * S, 30 * S], "first window ends");
        assert!(out.late.is_empty());
    }

    #[test]
    fn cumulate_puts_an_event_in_the_growing_windows_of_its_period_still_open() {
        let spec = WindowSpec::cumulating(Duration::from_secs(10), Duration::from_secs(30));
        let mut op = WindowAssign::new(0, spec, output_schema());
        // At 65s (period [60,90)): windows [60,70), [60,80), [60,90). At 15s with the
        // watermark at 40s, its period has ended: late. At 85s with the watermark at 72s:
        // only [60,90) holds it.
        let out = testing::batch(
            &mut op,
            input(&[65 * S, 15 * S, 85 * S], &[i64::MIN, 40 * S, 72 * S]),
        );
        let rows = &out.batches[0].rows;
        let column = |i: usize| {
            rows.column(i)
                .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
                .values()
                .to_vec()
        };
        assert_eq!(
            column(1),
            vec![60 * S; 4],
            "every window starts with the period"
        );
        assert_eq!(column(2), vec![70 * S, 80 * S, 90 * S, 90 * S]);
        assert_eq!(out.late.len(), 1);
        assert_eq!(out.late[0].num_rows(), 1);
    }

    #[test]
    fn event_whose_every_window_closed_is_late() {
        let spec = WindowSpec::tumbling(Duration::from_secs(60));
        let mut op = WindowAssign::new(0, spec, output_schema());
        let out = testing::batch(&mut op, input(&[59 * S, 61 * S], &[60 * S, 60 * S]));
        assert_eq!(out.late.len(), 1);
        assert_eq!(out.late[0].num_rows(), 1);
        assert_eq!(out.batches[0].num_rows(), 1);
    }
}
