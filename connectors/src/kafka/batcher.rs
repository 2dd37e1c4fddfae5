//! [`PartitionBuffer`]: messages of one partition gathered and decoded into one Arrow batch,
//! with the metadata columns a source declares.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringBuilder, TimestampMillisecondArray, new_empty_array,
};
use datafusion::arrow::compute::{can_cast_types, cast, filter};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::tombstones::{TableKey, Tombstone, with_deletes};
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
    /// For a table: its primary key, so that a tombstone deletes its key's row.
    table_key: Option<TableKey>,
}

impl BatchLayout {
    /// The layout of `schema`: payload fields decoded from JSON (epoch numbers in timestamp
    /// fields read in `unit`), metadata columns by name.
    #[cfg(test)]
    pub fn new(schema: SchemaRef, batch_size: usize, unit: TimeUnit) -> Self {
        let all = vec![true; schema.fields().len()];
        Self::reading(schema, batch_size, unit, &all)
    }

    /// The same, decoding only the payload fields marked in `read` (by index in `schema`)
    /// and those that may not be null.
    pub fn reading(schema: SchemaRef, batch_size: usize, unit: TimeUnit, read: &[bool]) -> Self {
        let mut payload_fields: Vec<Field> = Vec::new();
        let mut payload_read = Vec::new();
        let columns: Vec<ColumnSource> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match ColumnSource::of(f.name()) {
                Some((source, _)) => source,
                None => {
                    payload_fields.push(f.as_ref().clone());
                    payload_read.push(read.get(i).copied().unwrap_or(true));
                    ColumnSource::Payload(payload_fields.len() - 1)
                }
            })
            .collect();
        Self {
            decoder: JsonDecoder::reading(
                Arc::new(Schema::new(payload_fields)),
                batch_size,
                unit,
                &payload_read,
            ),
            wants_timestamp: columns.contains(&ColumnSource::Timestamp),
            columns,
            schema,
            table_key: None,
        }
    }

    /// The same for a table keyed by `columns` (none: a stream), whose tombstones delete
    /// their key's row; epoch numbers in timestamp key columns are read in `unit`.
    pub fn for_table(mut self, columns: &[usize], unit: TimeUnit) -> Self {
        if !columns.is_empty() {
            self.table_key = Some(TableKey::new(&self.schema, columns, unit));
        }
        self
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
    held: Held,
    next_offset: Option<i64>,
    first_at: Option<Instant>,
}

/// What a buffer holds between two takes. Taken out whole, so a failure while decoding can
/// never leave half of it behind for the next batch.
#[derive(Debug, Default)]
struct Held {
    payloads: Vec<u8>,
    starts: Vec<usize>,
    offsets: Vec<i64>,
    /// Message keys laid end to end, and where each message's key lies in them: kept for
    /// the `_key` column and for dead letters.
    keys: Vec<u8>,
    key_spans: Vec<Option<Range<usize>>>,
    timestamps: Vec<Option<i64>>,
    bad: Vec<BadMessage>,
    tombstones: Vec<Tombstone>,
}

impl Held {
    /// The key of the `i`-th message held as a row.
    fn key(&self, i: usize) -> Option<&[u8]> {
        self.key_spans[i].clone().map(|span| &self.keys[span])
    }

    /// The value of the `i`-th message held as a row, without the newline that ends it.
    fn payload(&self, i: usize) -> &[u8] {
        let end = self
            .starts
            .get(i + 1)
            .copied()
            .unwrap_or(self.payloads.len());
        &self.payloads[self.starts[i]..end - 1]
    }

    /// Message `i` as a dead letter.
    fn bad_message(&self, i: usize, error: String) -> BadMessage {
        BadMessage {
            offset: self.offsets[i],
            error,
            payload: self.payload(i).to_vec(),
            key: self.key(i).map(<[u8]>::to_vec),
        }
    }
}

impl PartitionBuffer {
    /// An empty buffer for `partition`.
    pub fn new(partition: i32) -> Self {
        Self {
            partition,
            held: Held::default(),
            next_offset: None,
            first_at: None,
        }
    }

    /// Messages held (good or already known bad).
    pub fn len(&self) -> usize {
        self.held.offsets.len() + self.held.bad.len() + self.held.tombstones.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.next_offset.is_none()
    }

    /// When the oldest message held arrived.
    pub fn first_at(&self) -> Option<Instant> {
        self.first_at
    }

    /// Adds a message. A message without a value cannot be a row: for a table, a tombstone
    /// (a key and no value) deletes its key; anything else is held as bad at once.
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
        let held = &mut self.held;
        if let (None, Some(key), Some(_)) = (payload, key, &layout.table_key) {
            let key = key.to_vec();
            held.tombstones.push(Tombstone { offset, key });
            return;
        }
        let keyless_tombstone = payload.is_none() && layout.table_key.is_some();
        let payload = payload.unwrap_or_default();
        if payload.iter().all(u8::is_ascii_whitespace) {
            let error = if keyless_tombstone {
                "a tombstone without a key deletes nothing"
            } else {
                "message has no value"
            };
            held.bad.push(BadMessage {
                offset,
                error: error.into(),
                payload: payload.to_vec(),
                key: key.map(<[u8]>::to_vec),
            });
            return;
        }
        held.starts.push(held.payloads.len());
        held.payloads.extend_from_slice(payload);
        held.payloads.push(b'\n');
        held.offsets.push(offset);
        held.key_spans.push(key.map(|key| {
            let start = held.keys.len();
            held.keys.extend_from_slice(key);
            start..held.keys.len()
        }));
        if layout.wants_timestamp {
            held.timestamps.push(timestamp_ms);
        }
    }

    /// Decodes everything held and empties the buffer; `None` when it was empty.
    ///
    /// Every message taken ends up either a row or a [`BadMessage`]: a message whose payload
    /// does not decode, or whose metadata does not fit its declared column, is bad alone,
    /// and should the batch itself fail to assemble, every message in it is bad.
    pub fn take(&mut self, layout: &BatchLayout) -> Option<Decoded> {
        let next_offset = self.next_offset.take()?;
        self.first_at = None;
        let mut held = std::mem::take(&mut self.held);
        let mut bad = std::mem::take(&mut held.bad);
        let rows = match assemble_changes(layout, self.partition, &held, &mut bad) {
            Ok(rows) => rows,
            Err(e) => {
                let error = format!("cannot assemble a batch: {e}");
                bad.extend((0..held.offsets.len()).map(|i| held.bad_message(i, error.clone())));
                bad.extend(held.tombstones.iter().map(|t| t.bad(error.clone())));
                RecordBatch::new_empty(Arc::clone(&layout.schema))
            }
        };
        bad.sort_by_key(|b| b.offset);
        Some(Decoded {
            rows,
            bad,
            next_offset,
        })
    }
}

/// The rows of the messages `held`, with a table's deletes in changelog form when it holds
/// tombstones. Messages that cannot be rows are added to `bad`.
fn assemble_changes(
    layout: &BatchLayout,
    partition: i32,
    held: &Held,
    bad: &mut Vec<BadMessage>,
) -> Result<RecordBatch, ConnectorError> {
    let (rows, good) = assemble(layout, partition, held, bad)?;
    match &layout.table_key {
        Some(key) if !held.tombstones.is_empty() => {
            let offsets: Vec<i64> = (held.offsets.iter().zip(&good))
                .filter(|(_, g)| **g)
                .map(|(o, _)| *o)
                .collect();
            with_deletes(key, rows, &offsets, &held.tombstones, bad)
        }
        _ => Ok(rows),
    }
}

/// The rows of the messages `held`, in the declared schema, and per message held whether it
/// became a row. Messages that cannot be rows are added to `bad`.
fn assemble(
    layout: &BatchLayout,
    partition: i32,
    held: &Held,
    bad: &mut Vec<BadMessage>,
) -> Result<(RecordBatch, Vec<bool>), ConnectorError> {
    let received = held.offsets.len();
    let (payload, bad_records) = layout
        .decoder
        .decode_records(&held.payloads, &held.starts)?;
    let mut decoded = vec![true; received];
    for record in bad_records {
        decoded[record.index] = false;
        bad.push(held.bad_message(record.index, record.error));
    }
    // Metadata is converted for every message received; a message whose metadata does not
    // fit is bad, and only messages good on both counts become rows.
    let mut metadata = Vec::new();
    let mut good = decoded.clone();
    for (source, field) in layout.columns.iter().zip(layout.schema.fields()) {
        let Some(natural) = metadata_column(*source, partition, held) else {
            continue;
        };
        let converted = convert_metadata(&natural, field)?;
        // Only a null after conversion can be a bad value: most batches skip the check.
        if converted.null_count() > 0 {
            for (i, ok) in good.iter_mut().enumerate() {
                let present = match source {
                    ColumnSource::Key => held.key(i).is_some(),
                    _ => natural.is_valid(i),
                };
                if *ok
                    && converted.is_null(i)
                    && let Some(error) = metadata_error(present, field)
                {
                    *ok = false;
                    bad.push(held.bad_message(i, error));
                }
            }
        }
        metadata.push(converted);
    }
    let keep_rows = BooleanArray::from(good.clone());
    // Payload rows exist only for decoded messages.
    let keep_payload = BooleanArray::from(
        good.iter()
            .zip(&decoded)
            .filter(|(_, d)| **d)
            .map(|(g, _)| *g)
            .collect::<Vec<_>>(),
    );
    let kept = good.iter().filter(|g| **g).count();
    let mut metadata = metadata.into_iter();
    let mut columns = Vec::with_capacity(layout.columns.len());
    for (source, field) in layout.columns.iter().zip(layout.schema.fields()) {
        let column = match (source, &payload) {
            (ColumnSource::Payload(i), Some(batch)) => filter(batch.column(*i), &keep_payload)?,
            (ColumnSource::Payload(_), None) => new_empty_array(field.data_type()),
            _ => match metadata.next() {
                Some(column) => filter(&column, &keep_rows)?,
                None => new_empty_array(field.data_type()),
            },
        };
        columns.push(column);
    }
    let rows = RecordBatch::try_new_with_options(
        Arc::clone(&layout.schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(kept)),
    )?;
    Ok((rows, good))
}

/// A metadata column for every message held, in its natural type; `None` for a payload column.
fn metadata_column(source: ColumnSource, partition: i32, held: &Held) -> Option<ArrayRef> {
    let received = held.offsets.len();
    Some(match source {
        ColumnSource::Payload(_) => return None,
        ColumnSource::Partition => Arc::new(Int32Array::from(vec![partition; received])),
        ColumnSource::Offset => Arc::new(Int64Array::from(held.offsets.clone())),
        ColumnSource::Key => {
            // A key that is not UTF-8 is no text: it comes out null, and is caught below.
            let mut keys = StringBuilder::with_capacity(received, held.keys.len());
            for i in 0..received {
                keys.append_option(held.key(i).and_then(|k| std::str::from_utf8(k).ok()));
            }
            Arc::new(keys.finish())
        }
        ColumnSource::Timestamp => {
            Arc::new(TimestampMillisecondArray::from(held.timestamps.clone()))
        }
    })
}

/// Casts a metadata column to its declared type; a value that does not convert becomes null.
fn convert_metadata(natural: &ArrayRef, field: &Field) -> Result<ArrayRef, ConnectorError> {
    if natural.data_type() == field.data_type() {
        return Ok(Arc::clone(natural));
    }
    Ok(cast(natural, field.data_type())?)
}

/// Why a message whose metadata came out null cannot fill `field`, if it cannot: it had a
/// value that does not convert (`present`), or none where the column is NOT NULL.
fn metadata_error(present: bool, field: &Field) -> Option<String> {
    let name = field.name();
    if present {
        return Some(format!(
            "metadata column '{name}': the message's value is not a valid {}",
            field.data_type()
        ));
    }
    (!field.is_nullable()).then(|| {
        format!("metadata column '{name}' is NOT NULL and the message has no value for it")
    })
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
        BatchLayout::new(schema, 1024, TimeUnit::Millisecond)
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
        let decoded = buffer.take(&layout).unwrap();
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
        assert!(buffer.take(&layout).is_none());
    }

    /// A key that does not fit `_key BIGINT NOT NULL` makes its message bad alone; the
    /// buffer stays consistent for the batches after it.
    #[test]
    fn a_message_whose_metadata_does_not_fit_is_bad_alone() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, true),
            Field::new(KEY_COLUMN, DataType::Int64, false),
            Field::new(OFFSET_COLUMN, DataType::Int64, false),
        ]));
        let layout = BatchLayout::new(schema, 1024, TimeUnit::Millisecond);
        let mut buffer = PartitionBuffer::new(0);
        let messages: [(&[u8], Option<&[u8]>); 5] = [
            (br#"{"v":1}"#, Some(b"7")),
            (br#"{"v":2}"#, None),
            (br#"{"v":3}"#, Some(b"seven")),
            (br#"{"v":"#, Some(b"8")),
            (br#"{"v":5}"#, Some(b"\xff")),
        ];
        for (offset, (payload, key)) in messages.iter().enumerate() {
            buffer.push(&layout, offset as i64, Some(payload), *key, None);
        }
        let decoded = buffer.take(&layout).unwrap();
        assert_eq!(decoded.rows.num_rows(), 1);
        assert_eq!(
            decoded.rows.column(1).as_primitive::<Int64Type>().values(),
            &[7]
        );
        let bad: Vec<(i64, &str)> = decoded
            .bad
            .iter()
            .map(|b| {
                (
                    b.offset,
                    &b.error[..b.error.find(':').unwrap_or(b.error.len())],
                )
            })
            .collect();
        assert_eq!(bad.len(), 4, "{:?}", decoded.bad);
        assert_eq!(
            bad.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(
            decoded.bad[0].error.contains("NOT NULL"),
            "{:?}",
            decoded.bad[0]
        );
        assert!(
            decoded.bad[1].error.contains("not a valid Int64"),
            "{:?}",
            decoded.bad[1]
        );
        assert_eq!(decoded.bad[2].payload, br#"{"v":"#.to_vec());

        // The next batch decodes on its own, unaffected by the bad ones before it.
        buffer.push(&layout, 5, Some(br#"{"v":6}"#), Some(b"9"), None);
        buffer.push(&layout, 6, Some(b"not json"), Some(b"9"), None);
        let decoded = buffer.take(&layout).unwrap();
        assert_eq!(
            decoded.rows.column(0).as_primitive::<Int64Type>().values(),
            &[6]
        );
        assert_eq!(
            decoded.rows.column(2).as_primitive::<Int64Type>().values(),
            &[5]
        );
        assert_eq!(
            decoded.bad.iter().map(|b| b.offset).collect::<Vec<_>>(),
            vec![6]
        );
        assert_eq!(decoded.next_offset, 7);
    }

    #[test]
    fn metadata_columns_must_have_convertible_types() {
        let schema = Schema::new(vec![Field::new(TIMESTAMP_COLUMN, DataType::Boolean, true)]);
        assert!(check_metadata_columns(&schema).is_err());
    }
}
