//! A table's tombstones (messages with a key and no value) read as deletes of their key.
//!
//! The key is read the way Vigil's upsert sink writes it: the text of a single key column,
//! or a JSON object of several. A batch holding deletes leaves in changelog form (see
//! [`CHANGELOG_METADATA_KEY`]): `+I` for each row, `-D` for each tombstone, in offset order.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array, new_null_array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use vigil_engine::connector::CHANGELOG_METADATA_KEY;

use super::batcher::BadMessage;
use crate::ConnectorError;
use crate::format::JsonDecoder;

/// A tombstone waiting in a partition's buffer.
#[derive(Debug, Clone)]
pub struct Tombstone {
    /// Its offset in the partition.
    pub offset: i64,
    /// Its message key.
    pub key: Vec<u8>,
}

impl Tombstone {
    /// The tombstone as a dead letter.
    pub fn bad(&self, error: String) -> BadMessage {
        BadMessage {
            offset: self.offset,
            error,
            payload: Vec::new(),
            key: Some(self.key.clone()),
        }
    }
}

/// How a table's tombstone keys become rows: its primary key's columns, and a decoder of
/// just those columns.
#[derive(Debug)]
pub struct TableKey {
    columns: Vec<usize>,
    decoder: JsonDecoder,
}

impl TableKey {
    /// The key of a table of `schema` whose primary key is `columns`; epoch numbers in
    /// timestamp columns are read in `unit`.
    pub fn new(schema: &Schema, columns: &[usize], unit: TimeUnit) -> Self {
        let fields: Vec<Field> = columns.iter().map(|&i| schema.field(i).clone()).collect();
        Self {
            columns: columns.to_vec(),
            decoder: JsonDecoder::with_timestamp_unit(Arc::new(Schema::new(fields)), 1024, unit),
        }
    }

    /// One JSON object per tombstone, of its key columns: a single column's value is the
    /// key's text, several come as the object the key holds. `None` for a key that is not
    /// UTF-8 text.
    fn as_json(&self, key: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(key).ok()?;
        if self.columns.len() > 1 {
            return Some(text.as_bytes().to_vec());
        }
        let name = self.decoder.schema().field(0).name();
        let object = serde_json::json!({ name: text });
        Some(object.to_string().into_bytes())
    }

    /// The delete rows of `tombstones`, in `schema`: key columns from the keys, every
    /// other column null (or its type's default where it may not be null), with the offset
    /// of each. A tombstone whose key does not decode goes to `bad`.
    fn deletes(
        &self,
        schema: &SchemaRef,
        tombstones: &[Tombstone],
        bad: &mut Vec<BadMessage>,
    ) -> Result<(RecordBatch, Vec<i64>), ConnectorError> {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        let mut readable = Vec::new();
        for tombstone in tombstones {
            match self.as_json(&tombstone.key) {
                Some(json) => {
                    starts.push(buf.len());
                    buf.extend_from_slice(&json);
                    buf.push(b'\n');
                    readable.push(tombstone);
                }
                None => bad.push(tombstone.bad("a tombstone's key is not UTF-8 text".into())),
            }
        }
        let (keys, bad_keys) = self.decoder.decode_records(&buf, &starts)?;
        let mut decoded = vec![true; readable.len()];
        for record in bad_keys {
            decoded[record.index] = false;
            let error = format!("a tombstone's key is not the table's key: {}", record.error);
            bad.push(readable[record.index].bad(error));
        }
        let offsets: Vec<i64> = (readable.iter().zip(&decoded))
            .filter(|(_, ok)| **ok)
            .map(|(t, _)| t.offset)
            .collect();
        let rows = offsets.len();
        let columns = (schema.fields().iter().enumerate())
            .map(
                |(i, field)| match self.columns.iter().position(|c| *c == i) {
                    Some(k) => Ok(keys.as_ref().map_or_else(
                        || new_null_array(field.data_type(), 0),
                        |keys| Arc::clone(keys.column(k)),
                    )),
                    None => filler(field, rows),
                },
            )
            .collect::<Result<Vec<ArrayRef>, ConnectorError>>()?;
        Ok((RecordBatch::try_new(Arc::clone(schema), columns)?, offsets))
    }
}

/// A column of `rows` values for a delete row's non-key column: null, or the type's
/// default where the column may not be null.
fn filler(field: &Field, rows: usize) -> Result<ArrayRef, ConnectorError> {
    if field.is_nullable() {
        return Ok(new_null_array(field.data_type(), rows));
    }
    let value = ScalarValue::new_default(field.data_type())
        .map_err(|e| ConnectorError::Schema(e.to_string()))?;
    value
        .to_array_of_size(rows)
        .map_err(|e| ConnectorError::Schema(e.to_string()))
}

/// `upserts` (rows at `upsert_offsets`) and `tombstones` as one batch in changelog form,
/// in offset order. Tombstones whose key does not decode go to `bad`.
pub fn with_deletes(
    key: &TableKey,
    upserts: RecordBatch,
    upsert_offsets: &[i64],
    tombstones: &[Tombstone],
    bad: &mut Vec<BadMessage>,
) -> Result<RecordBatch, ConnectorError> {
    let schema = upserts.schema();
    let (deletes, delete_offsets) = key.deletes(&schema, tombstones, bad)?;
    let both = concat_batches(&schema, [&upserts, &deletes])?;
    let (order, ops) = merge_by_offset(upsert_offsets, &delete_offsets);
    let rows = take_record_batch(&both, &order)?;
    let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, false))];
    fields.extend(schema.fields().iter().cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ops)];
    columns.extend(rows.columns().iter().cloned());
    let metadata = [(CHANGELOG_METADATA_KEY.to_string(), "true".to_string())];
    let schema = Schema::new(fields).with_metadata(metadata.into());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// The order of rows `0..upserts.len()` followed by `deletes` (both ascending offsets)
/// merged by offset, with each row's change kind.
fn merge_by_offset(upserts: &[i64], deletes: &[i64]) -> (UInt32Array, StringArray) {
    let (mut u, mut d) = (0, 0);
    let mut order = Vec::with_capacity(upserts.len() + deletes.len());
    let mut ops = Vec::with_capacity(order.capacity());
    while u < upserts.len() || d < deletes.len() {
        if d == deletes.len() || (u < upserts.len() && upserts[u] < deletes[d]) {
            order.push(u as u32);
            ops.push("+I");
            u += 1;
        } else {
            order.push((upserts.len() + d) as u32);
            ops.push("-D");
            d += 1;
        }
    }
    (UInt32Array::from(order), StringArray::from(ops))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
            Field::new("zone", DataType::Int64, false),
            Field::new("limit", DataType::Float64, false),
        ]))
    }

    fn tombstone(offset: i64, key: &[u8]) -> Tombstone {
        Tombstone {
            offset,
            key: key.to_vec(),
        }
    }

    #[test]
    fn a_single_column_key_is_its_text_and_rows_keep_offset_order() {
        let schema = schema();
        let key = TableKey::new(&schema, &[1], TimeUnit::Millisecond);
        let upserts = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![0, 0])),
                Arc::new(datafusion::arrow::array::Float64Array::from(vec![1.0, 2.0])),
            ],
        )
        .unwrap();
        let tombstones = [
            tombstone(11, b"7"),
            tombstone(13, b"x"),
            tombstone(14, b"2"),
        ];
        let mut bad = Vec::new();
        let batch = with_deletes(&key, upserts, &[10, 12], &tombstones, &mut bad).unwrap();
        let ops: Vec<_> = batch
            .column(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ops, ["+I", "-D", "+I", "-D"]);
        let ids = batch.column(2).as_primitive::<Int64Type>().values();
        assert_eq!(ids, &[1, 7, 2, 2]);
        assert_eq!(
            batch.column(1).null_count(),
            2,
            "a delete's other columns are null"
        );
        assert!(
            batch
                .schema()
                .metadata()
                .contains_key(CHANGELOG_METADATA_KEY)
        );
        assert_eq!(bad.len(), 1, "the key 'x' is no BIGINT");
        assert_eq!(bad[0].offset, 13);
    }

    #[test]
    fn several_key_columns_come_as_a_json_object() {
        let schema = schema();
        let key = TableKey::new(&schema, &[1, 2], TimeUnit::Millisecond);
        let upserts = RecordBatch::new_empty(Arc::clone(&schema));
        let tombstones = [
            tombstone(3, br#"{"id":5,"zone":6}"#),
            tombstone(4, br#"{"id":5}"#),
        ];
        let mut bad = Vec::new();
        let batch = with_deletes(&key, upserts, &[], &tombstones, &mut bad).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column(3).as_primitive::<Int64Type>().value(0), 6);
        assert_eq!(bad.len(), 1, "a key without zone names no row: {bad:?}");
    }
}
