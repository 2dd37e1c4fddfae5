//! [`Arrivals`]: rows an OVER operator holds, numbered in the order they arrived (ties in
//! its sorts keep that order), with the watermark, in and out of snapshots.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

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
