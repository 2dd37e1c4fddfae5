//! [`PartitionBuffer`]: messages of one partition gathered and decoded into one Arrow batch,
//! with the metadata columns a source declares.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringBuilder,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::{can_cast_types, cast, filter};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::ConnectorError;
use crate::format::JsonDecoder;

/// Column names that select message metadata instead of a payload field.
pub const PARTITION_COLUMN: &str = "_partition";
/// The message offset.
pub const OFFSET_COLUMN: &str = "_offset";
/// The message key, as text.
pub const KEY_COLUMN: &str = "_key";
/// The message timestamp (producer or broker time).
pub const TIMESTAMP_COLUMN: &str = "_timestamp";

/// Where a column of the declared schema comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnSource {
    Payload(usize),
    Partition,
    Offset,
    Key,
    Timestamp,
}

impl ColumnSource {
    fn of(name: &str) -> Option<(Self, DataType)> {
        match name {
            PARTITION_COLUMN => Some((Self::Partition, DataType::Int32)),
            OFFSET_COLUMN => Some((Self::Offset, DataType::Int64)),
            KEY_COLUMN => Some((Self::Key, DataType::Utf8)),
            TIMESTAMP_COLUMN => Some((
                Self::Timestamp,
                DataType::Timestamp(TimeUnit::Millisecond, None),
            )),
            _ => None,
        }
    }
}

/// Checks that metadata columns are declared with types their values convert to.
pub fn check_metadata_columns(schema: &Schema) -> Result<(), ConnectorError> {
    for field in schema.fields() {
        if let Some((_, natural)) = ColumnSource::of(field.name())
            && !can_cast_types(&natural, field.data_type())
        {
            return Err(ConnectorError::Schema(format!(
                "metadata column '{}' holds {natural}, which cannot become {}",
                field.name(),
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// How messages become rows of a source's declared schema.
#[derive(Debug)]
pub struct BatchLayout {
    schema: SchemaRef,
    decoder: JsonDecoder,
    columns: Vec<ColumnSource>,
    wants_timestamp: bool,
}

impl BatchLayout {
    /// The layout of `schema`: payload fields decoded from JSON, metadata columns by name.
    pub fn new(schema: SchemaRef, batch_size: usize) -> Self {
        let mut payload_fields: Vec<Field> = Vec::new();
        let columns: Vec<ColumnSource> = schema
            .fields()
            .iter()
            .map(|f| match ColumnSource::of(f.name()) {
                Some((source, _)) => source,
                None => {
                    payload_fields.push(f.as_ref().clone());
                    ColumnSource::Payload(payload_fields.len() - 1)
                }
            })
            .collect();
        Self {
            decoder: JsonDecoder::new(Arc::new(Schema::new(payload_fields)), batch_size),
            wants_timestamp: columns.contains(&ColumnSource::Timestamp),
            columns,
            schema,
        }
    }
}

/// A message that could not become a row.
#[derive(Debug, Clone)]
pub struct BadMessage {
    /// Its offset in the partition.
    pub offset: i64,
    /// Why.
    pub error: String,
    /// The message value as received (empty for none).
    pub payload: Vec<u8>,
    /// The message key.
    pub key: Option<Vec<u8>>,
}

/// The decoded content of a buffer.
#[derive(Debug)]
pub struct Decoded {
    /// Good messages as rows of the declared schema.
    pub rows: RecordBatch,
    /// Messages that could not be decoded.
    pub bad: Vec<BadMessage>,
    /// The offset after the last message taken: what to commit once `rows` are delivered.
    pub next_offset: i64,
}

/// Messages of one partition waiting to be decoded together.
#[derive(Debug)]
pub struct PartitionBuffer {
    partition: i32,
    payloads: Vec<u8>,
    starts: Vec<usize>,
    offsets: Vec<i64>,
    /// Message keys laid end to end, and where each message's key lies in them: kept for
    /// the `_key` column and for dead letters.
    keys: Vec<u8>,
    key_spans: Vec<Option<Range<usize>>>,
    timestamps: Vec<Option<i64>>,
    bad: Vec<BadMessage>,
    next_offset: Option<i64>,
    first_at: Option<Instant>,
}

impl PartitionBuffer {
    /// An empty buffer for `partition`.
    pub fn new(partition: i32) -> Self {
        Self {
            partition,
            payloads: Vec::new(),
            starts: Vec::new(),
            offsets: Vec::new(),
            keys: Vec::new(),
            key_spans: Vec::new(),
            timestamps: Vec::new(),
            bad: Vec::new(),
            next_offset: None,
            first_at: None,
        }
    }

    /// Messages held (good or already known bad).
    pub fn len(&self) -> usize {
        self.offsets.len() + self.bad.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.next_offset.is_none()
    }

    /// When the oldest message held arrived.
    pub fn first_at(&self) -> Option<Instant> {
        self.first_at
    }

    /// Adds a message. A message without a value cannot be a row and is held as bad at once.
    pub fn push(
        &mut self,
        layout: &BatchLayout,
        offset: i64,
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) {
        self.first_at.get_or_insert_with(Instant::now);
        self.next_offset = Some(offset + 1);
        let payload = payload.unwrap_or_default();
        if payload.iter().all(u8::is_ascii_whitespace) {
            self.bad.push(BadMessage {
                offset,
                error: "message has no value".into(),
                payload: payload.to_vec(),
                key: key.map(<[u8]>::to_vec),
            });
            return;
        }
        self.starts.push(self.payloads.len());
        self.payloads.extend_from_slice(payload);
        self.payloads.push(b'\n');
        self.offsets.push(offset);
        self.key_spans.push(key.map(|key| {
            let start = self.keys.len();
            self.keys.extend_from_slice(key);
            start..self.keys.len()
        }));
        if layout.wants_timestamp {
            self.timestamps.push(timestamp_ms);
        }
    }

    /// The key of the `i`-th message held as a row.
    fn key(&self, i: usize) -> Option<&[u8]> {
        self.key_spans[i].clone().map(|span| &self.keys[span])
    }

    /// Decodes everything held and empties the buffer; `None` when it was empty.
    pub fn take(&mut self, layout: &BatchLayout) -> Result<Option<Decoded>, ConnectorError> {
        let Some(next_offset) = self.next_offset.take() else {
            return Ok(None);
        };
        self.first_at = None;
        let (payload, bad_records) = layout
            .decoder
            .decode_records(&self.payloads, &self.starts)?;
        let mut bad = std::mem::take(&mut self.bad);
        let offsets = std::mem::take(&mut self.offsets);
        let received = offsets.len();
        let mut good_mask = None;
        if !bad_records.is_empty() {
            let mut mask = vec![true; received];
            for record in &bad_records {
                mask[record.index] = false;
                // Every record is followed by a newline of ours.
                let start = self.starts[record.index];
                let end = self
                    .starts
                    .get(record.index + 1)
                    .copied()
                    .unwrap_or(self.payloads.len())
                    - 1;
                bad.push(BadMessage {
                    offset: offsets[record.index],
                    error: record.error.clone(),
                    payload: self.payloads[start..end].to_vec(),
                    key: self.key(record.index).map(<[u8]>::to_vec),
                });
            }
            bad.sort_by_key(|b| b.offset);
            good_mask = Some(BooleanArray::from(mask));
        }
        // Metadata is gathered for every message taken; only good rows are kept.
        let good = |array: ArrayRef| -> Result<ArrayRef, ConnectorError> {
            Ok(match &good_mask {
                Some(mask) => filter(&array, mask)?,
                None => array,
            })
        };
        let rows = received - bad_records.len();
        let mut offsets = Some(offsets);
        let mut columns = Vec::with_capacity(layout.columns.len());
        for (source, field) in layout.columns.iter().zip(layout.schema.fields()) {
            let column: ArrayRef = match source {
                ColumnSource::Payload(i) => match &payload {
                    Some(batch) => Arc::clone(batch.column(*i)),
                    None => datafusion::arrow::array::new_empty_array(field.data_type()),
                },
                ColumnSource::Partition => {
                    good(Arc::new(Int32Array::from(vec![self.partition; received])))?
                }
                ColumnSource::Offset => good(Arc::new(Int64Array::from(
                    offsets.take().unwrap_or_default(),
                )))?,
                ColumnSource::Key => {
                    let mut keys = StringBuilder::with_capacity(received, self.keys.len());
                    for i in 0..received {
                        keys.append_option(self.key(i).map(String::from_utf8_lossy));
                    }
                    good(Arc::new(keys.finish()))?
                }
                ColumnSource::Timestamp => good(Arc::new(TimestampMillisecondArray::from(
                    std::mem::take(&mut self.timestamps),
                )))?,
            };
            let column = if column.data_type() == field.data_type() {
                column
            } else {
                cast(&column, field.data_type())?
            };
            columns.push(column);
        }
        let rows = RecordBatch::try_new_with_options(
            Arc::clone(&layout.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        self.payloads.clear();
        self.starts.clear();
        self.keys.clear();
        self.key_spans.clear();
        self.timestamps.clear();
        Ok(Some(Decoded {
            rows,
            bad,
            next_offset,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};

    fn layout() -> BatchLayout {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new(OFFSET_COLUMN, DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
            Field::new(KEY_COLUMN, DataType::Utf8, true),
            Field::new(
                TIMESTAMP_COLUMN,
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                true,
            ),
            Field::new(PARTITION_COLUMN, DataType::Int32, true),
        ]));
        BatchLayout::new(schema, 1024)
    }

    #[test]
    fn metadata_columns_line_up_with_good_rows() {
        let layout = layout();
        let mut buffer = PartitionBuffer::new(3);
        buffer.push(
            &layout,
            10,
            Some(br#"{"id":"a","v":1}"#),
            Some(b"k1"),
            Some(1000),
        );
        buffer.push(&layout, 11, Some(b"{broken"), Some(b"k2"), Some(2000));
        buffer.push(&layout, 12, None, None, Some(3000));
        buffer.push(&layout, 13, Some(br#"{"id":"d","v":4}"#), None, Some(4000));
        assert_eq!(buffer.len(), 4);
        let decoded = buffer.take(&layout).unwrap().unwrap();
        assert!(buffer.is_empty());
        assert_eq!(decoded.next_offset, 14);
        let rows = &decoded.rows;
        assert_eq!(rows.num_rows(), 2);
        assert_eq!(
            rows.column(1).as_primitive::<Int64Type>().values(),
            &[10, 13]
        );
        assert_eq!(
            rows.column(3).as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("k1"), None]
        );
        assert_eq!(
            rows.column(4)
                .as_primitive::<TimestampNanosecondType>()
                .values(),
            &[1_000_000_000, 4_000_000_000]
        );
        assert_eq!(rows.column(5).as_primitive::<Int32Type>().values(), &[3, 3]);
        let bad: Vec<_> = decoded
            .bad
            .iter()
            .map(|b| (b.offset, b.payload.clone(), b.key.clone()))
            .collect();
        assert_eq!(
            bad,
            vec![
                (11, b"{broken".to_vec(), Some(b"k2".to_vec())),
                (12, Vec::new(), None)
            ]
        );
        assert!(buffer.take(&layout).unwrap().is_none());
    }

    #[test]
    fn metadata_columns_must_have_convertible_types() {
        let schema = Schema::new(vec![Field::new(TIMESTAMP_COLUMN, DataType::Boolean, true)]);
        assert!(check_metadata_columns(&schema).is_err());
    }
}
