//! [`Arrivals`]: rows an OVER operator holds, numbered in the order they arrived (ties in
//! its sorts keep that order), with the watermark, in and out of snapshots.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, not};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampNanosecondType};

use super::Context;
use crate::batch::{ChangeBatch, RejectedRows};
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MIN};

const ARRIVAL: &str = "vigil.arrival";
const WATERMARK_KEY: &str = "vigil.watermark";
const NEXT_KEY: &str = "vigil.next";

/// The schema of held rows (the input's columns and an arrival number), the next number and
/// the watermark.
pub(super) struct Arrivals {
    pub schema: SchemaRef,
    next: u64,
    pub watermark: Timestamp,
}

impl Arrivals {
    /// For rows of `input`.
    pub fn new(input: &Schema) -> Self {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(ARRIVAL, DataType::UInt64, false));
        Self {
            schema: Arc::new(Schema::new(fields)),
            next: 0,
            watermark: WATERMARK_MIN,
        }
    }

    /// The same, with no rows seen.
    pub fn fresh(&self) -> Self {
        Self {
            schema: Arc::clone(&self.schema),
            next: 0,
            watermark: WATERMARK_MIN,
        }
    }

    /// The index of the arrival number: the input's width.
    pub fn column(&self) -> usize {
        self.schema.fields().len() - 1
    }

    /// `rows` of the input with their arrival numbers.
    pub fn number(&mut self, rows: &RecordBatch) -> Result<RecordBatch> {
        let first = self.next;
        self.next += rows.num_rows() as u64;
        let numbers: ArrayRef = Arc::new(UInt64Array::from_iter_values(first..self.next));
        let mut columns = rows.columns().to_vec();
        columns.push(numbers);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The rows of `batch` after the watermark (each row's own, when it carries one), with
    /// their arrival numbers; `None` when there are none. Late rows go to the late port, rows
    /// without a time to the dead letters, both named after `operator`.
    pub fn admit(
        &mut self,
        batch: ChangeBatch,
        time_column: usize,
        operator: &'static str,
        ctx: &mut Context,
    ) -> Result<Option<RecordBatch>> {
        let times = event_times(&batch.rows, time_column)?;
        let own = self.watermark;
        let row_watermark =
            |i: usize| (batch.row_watermarks.as_ref()).map_or(own, |w| w.value(i).max(own));
        let no_time: Vec<bool> = times.iter().map(Option::is_none).collect();
        if no_time.contains(&true) {
            let rows = filter_record_batch(&batch.rows, &BooleanArray::from(no_time))?;
            let error = format!("NULL event time in the ORDER BY of {operator}");
            ctx.reject(RejectedRows {
                operator,
                errors: vec![error; rows.num_rows()],
                rows,
            });
        }
        let on_time: Vec<bool> = (times.iter().enumerate())
            .map(|(i, t)| t.is_some_and(|t| t > row_watermark(i)))
            .collect();
        // Late rows go to the late port (a source's late_sink, if it has one), counted there.
        let late: BooleanArray = (on_time.iter().zip(&times))
            .map(|(ok, t)| Some(!*ok && t.is_some()))
            .collect();
        if late.true_count() > 0 {
            let rows = filter_record_batch(&batch.rows, &late)?;
            ctx.emit_late(ChangeBatch::inserts(rows));
        }
        let rows = filter_record_batch(&batch.rows, &BooleanArray::from(on_time))?;
        if rows.num_rows() == 0 {
            return Ok(None);
        }
        self.number(&rows).map(Some)
    }

    /// Takes the rows of `waiting` at or below `watermark` out, as one batch, with the oldest
    /// source batch they came in.
    pub fn ready(
        &self,
        waiting: &mut Vec<(u64, RecordBatch)>,
        time_column: usize,
        watermark: Timestamp,
    ) -> Result<(RecordBatch, Option<u64>)> {
        let mut ready = Vec::new();
        let mut oldest: Option<u64> = None;
        for (epoch, rows) in std::mem::take(waiting) {
            let times = event_times(&rows, time_column)?;
            let due: BooleanArray = (times.iter())
                .map(|t| Some(t.is_some_and(|t| t <= watermark)))
                .collect();
            match due.true_count() {
                0 => {
                    waiting.push((epoch, rows));
                    continue;
                }
                n if n == rows.num_rows() => ready.push(rows),
                _ => {
                    waiting.push((epoch, filter_record_batch(&rows, &not(&due)?)?));
                    ready.push(filter_record_batch(&rows, &due)?);
                }
            }
            oldest = Some(oldest.map_or(epoch, |o| o.min(epoch)));
        }
        Ok((concat_batches(&self.schema, &ready)?, oldest))
    }

    /// Held `rows` for a snapshot, marked with `part` (under `key`), the watermark and the
    /// next number.
    pub fn marked(&self, rows: RecordBatch, key: &str, part: &str) -> Result<RecordBatch> {
        let metadata = HashMap::from([
            (key.to_string(), part.to_string()),
            (WATERMARK_KEY.to_string(), self.watermark.to_string()),
            (NEXT_KEY.to_string(), self.next.to_string()),
        ]);
        let schema = Schema::clone(&self.schema).with_metadata(metadata);
        Ok(rows.with_schema(Arc::new(schema))?)
    }

    /// Takes the watermark and next number back from a batch [`Arrivals::marked`] made;
    /// returns its rows.
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let metadata = batch.schema().metadata().clone();
        let number = |key: &str| -> Result<i64> {
            (metadata.get(key).and_then(|v| v.parse().ok()))
                .ok_or_else(|| Error::Internal(format!("held OVER rows without {key}")))
        };
        self.watermark = number(WATERMARK_KEY)?;
        self.next = number(NEXT_KEY)? as u64;
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            batch.columns().to_vec(),
        )?)
    }
}

/// The event times of `rows`, at `column`.
pub(super) fn event_times(rows: &RecordBatch, column: usize) -> Result<Vec<Option<i64>>> {
    let times = (rows
        .column(column)
        .as_primitive_opt::<TimestampNanosecondType>())
    .ok_or_else(|| Error::Internal("an event time not in nanoseconds".into()))?;
    Ok(times.iter().collect())
}
