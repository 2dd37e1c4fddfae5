//! [`WindowAssign`]: `TUMBLE` and `HOP`, which give each event its windows.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Context, Operator};
use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::plan::window_table::describe_nanos;
use crate::time::{Timestamp, WATERMARK_MIN, WindowSpec};

/// Adds `window_start` and `window_end` to each event; a hopping window copies the event
/// into each of its windows.
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
}

impl WindowAssign {
    /// Windows of `spec` over the timestamp column `time_column`; `schema` is the input's
    /// columns plus `window_start` and `window_end`.
    pub fn new(time_column: usize, spec: WindowSpec, schema: SchemaRef) -> Self {
        Self {
            time_column,
            spec,
            schema,
            watermark: WATERMARK_MIN,
            emitted_until: WATERMARK_MIN,
        }
    }
}

impl Operator for WindowAssign {
    fn name(&self) -> &'static str {
        if self.spec.is_tumbling() {
            "Tumble"
        } else {
            "Hop"
        }
    }

    fn describe(&self) -> String {
        if self.spec.is_tumbling() {
            format!("size={}", describe_nanos(self.spec.size))
        } else {
            format!(
                "slide={} size={}",
                describe_nanos(self.spec.slide),
                describe_nanos(self.spec.size)
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
        let row_wm = |i: usize| {
            batch
                .row_watermarks
                .as_ref()
                .map_or(watermark, |w| w.value(i).max(watermark))
        };

        let per_event = self.spec.windows_per_event() as usize;
        let mut take = Vec::with_capacity(ts.len() * per_event);
        let mut starts = Vec::with_capacity(ts.len() * per_event);
        let mut late = Vec::new();
        for i in 0..ts.len() {
            if ts.is_null(i) {
                late.push(i as u32);
                continue;
            }
            let last_start = self.spec.last_start(ts.value(i));
            let wm = row_wm(i);
            let before = take.len();
            let mut only_delivered = true;
            // Oldest window first, so output rows are in window order per event.
            for k in (0..per_event as i64).rev() {
                let start = last_start - k * self.spec.slide;
                let end = start.saturating_add(self.spec.size);
                if end <= self.emitted_until {
                    continue;
                }
                only_delivered = false;
                if end > wm {
                    take.push(i as u32);
                    starts.push(start);
                }
            }
            if take.len() == before && !only_delivered {
                late.push(i as u32);
            }
        }

        if !late.is_empty() {
            let late_rows = take_record_batch(rows, &UInt32Array::from(late))?;
            ctx.emit_late(ChangeBatch::inserts(late_rows));
        }
        let input = if take.len() == rows.num_rows() && self.spec.is_tumbling() {
            rows.clone()
        } else {
            take_record_batch(rows, &UInt32Array::from(take))?
        };
        let size = self.spec.size;
        let start_arr = TimestampNanosecondArray::from(starts);
        let end_arr: TimestampNanosecondArray =
            datafusion::arrow::compute::kernels::arity::unary(&start_arr, |s| {
                s.saturating_add(size)
            });
        let mut columns: Vec<ArrayRef> = input.columns().to_vec();
        columns.push(Arc::new(start_arr));
        columns.push(Arc::new(end_arr));
        let out = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        ctx.emit(ChangeBatch {
            rows: out,
            ops: None,
            row_watermarks: None::<Int64Array>,
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
    fn event_whose_every_window_closed_is_late() {
        let spec = WindowSpec::tumbling(Duration::from_secs(60));
        let mut op = WindowAssign::new(0, spec, output_schema());
        let out = testing::batch(&mut op, input(&[59 * S, 61 * S], &[60 * S, 60 * S]));
        assert_eq!(out.late.len(), 1);
        assert_eq!(out.late[0].num_rows(), 1);
        assert_eq!(out.batches[0].num_rows(), 1);
    }
}
