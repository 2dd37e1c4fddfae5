//! [`JsonDecoder`]: JSON records to Arrow with arrow-json, isolating bad records.
//!
//! A record is accepted or refused on its own content alone, never on its neighbours': it
//! must hold exactly one JSON object, and every value must fit its declared type exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_json::ReaderBuilder;
use arrow_json::reader::Decoder;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, new_null_array,
};
use datafusion::arrow::compute::kernels::boolean::{and, is_not_null, is_null, or};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, min};
use datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Schema, SchemaRef, TimeUnit,
    TimestampMillisecondType,
};

use crate::ConnectorError;

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Index of the record (for [`JsonDecoder::decode`], of the line) within the input.
    pub index: usize,
    /// Why it failed.
    pub error: String,
}

/// Epoch milliseconds below this (March 1973) look like epoch seconds read as milliseconds.
const SUSPICIOUS_EPOCH_MILLIS: i64 = 100_000_000_000;

/// Decodes JSON records into batches of a declared schema.
///
/// Timestamps may be RFC 3339 strings (zone optional, UTC when absent) or integer epoch
/// numbers in `timestamp_unit` (milliseconds unless told otherwise). Integers must be
/// integers (`1.9` is no BIGINT), floats finite (`1e400` is no DOUBLE), timestamps within
/// the representable range; numbers and booleans in a TEXT field are kept as their JSON text.
///
/// Records decode in one arrow-json pass, fed one by one so that each is seen to hold exactly
/// one whole object. A bad record splits the pass around itself (see `decode_runs`), so clean
/// input pays nothing for error handling and a bad line costs about one line.
#[derive(Debug)]
pub struct JsonDecoder {
    schema: SchemaRef,
    /// The declared schema with every field nullable: rows being converted may hold nulls
    /// where a value did not fit, until they are filtered out.
    lenient_schema: SchemaRef,
    /// The fields decoded from JSON (those the query reads, and those that may not be
    /// null), as arrow-json reads them.
    wire_schema: SchemaRef,
    /// The index in `schema` of each field of `wire_schema`.
    decoded: Vec<usize>,
    batch_size: usize,
    timestamp_unit: TimeUnit,
    warned_epoch_unit: AtomicBool,
}

impl JsonDecoder {
    /// A decoder producing rows of `schema`, epoch numbers in milliseconds.
    pub fn new(schema: SchemaRef, batch_size: usize) -> Self {
        Self::with_timestamp_unit(schema, batch_size, TimeUnit::Millisecond)
    }

    /// A decoder producing rows of `schema`, reading epoch numbers in timestamp fields in `unit`.
    pub fn with_timestamp_unit(schema: SchemaRef, batch_size: usize, unit: TimeUnit) -> Self {
        let all = vec![true; schema.fields().len()];
        Self::reading(schema, batch_size, unit, &all)
    }

    /// A decoder that decodes only the fields marked in `read` (by index in `schema`), and
    /// the fields that may not be null; the others are left null without being looked at,
    /// for a query that never reads them.
    pub fn reading(schema: SchemaRef, batch_size: usize, unit: TimeUnit, read: &[bool]) -> Self {
        let mut decoded: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, f)| read.get(*i).copied().unwrap_or(true) || !f.is_nullable())
            .map(|(i, _)| i)
            .collect();
        // At least one field, so that decoded batches know their row count.
        if decoded.is_empty() && !schema.fields().is_empty() {
            decoded.push(0);
        }
        let fields: Vec<Field> = decoded
            .iter()
            .map(|&i| {
                let f = schema.field(i);
                f.clone().with_data_type(wire_type(f.data_type(), unit))
            })
            .collect();
        let lenient: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        Self {
            lenient_schema: Arc::new(Schema::new(lenient)),
            schema,
            wire_schema: Arc::new(Schema::new(fields)),
            decoded,
            batch_size: batch_size.max(1),
            timestamp_unit: unit,
            warned_epoch_unit: AtomicBool::new(false),
        }
    }

    /// The schema of decoded rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a chunk of complete lines, one record per line (blank lines are skipped).
    /// Returns the good rows and the bad lines, by line index within the chunk.
    pub fn decode(
        &self,
        chunk: &[u8],
    ) -> Result<(Vec<RecordBatch>, Vec<BadRecord>), ConnectorError> {
        let (starts, lines) = line_records(chunk);
        let mut batches = Vec::new();
        let mut bad = Vec::new();
        // At most `batch_size` records a pass, so a large chunk is never one large tape.
        for first in (0..starts.len()).step_by(self.batch_size) {
            let group = &starts[first..starts.len().min(first + self.batch_size)];
            let end = starts
                .get(first + group.len())
                .copied()
                .unwrap_or(chunk.len());
            let (rows, group_bad) = self.decode_records(&chunk[..end], group)?;
            batches.extend(rows);
            bad.extend(group_bad.into_iter().map(|record| BadRecord {
                index: lines[first + record.index],
                error: record.error,
            }));
        }
        Ok((batches, bad))
    }

    /// Decodes JSON records laid end to end in `buf`, record `i` starting at `starts[i]`:
    /// one row per good record, in order, and the bad records by index. A record may span
    /// lines; a record holding two objects, or part of one, is bad.
    pub fn decode_records(
        &self,
        buf: &[u8],
        starts: &[usize],
    ) -> Result<(Option<RecordBatch>, Vec<BadRecord>), ConnectorError> {
        let records: Vec<(usize, &[u8])> = starts
            .iter()
            .enumerate()
            .map(|(index, &start)| {
                let end = starts.get(index + 1).copied().unwrap_or(buf.len());
                (index, &buf[start..end])
            })
            .collect();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        self.decode_runs(&records, &mut good, &mut bad)?;
        let rows = match good.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(concat_batches(&self.schema, many)?),
        };
        Ok((rows.filter(|r| r.num_rows() > 0), bad))
    }

    /// Decodes `records` in as few passes as their bad records allow: one pass up to the
    /// first record that is not exactly one object, that record alone, then the rest the
    /// same way. A pass whose values fail to decode is halved until the culprits stand
    /// alone. A bad record costs a pass over its run, not a record-by-record decode.
    fn decode_runs(
        &self,
        records: &[(usize, &[u8])],
        good: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let mut rest = records;
        while !rest.is_empty() {
            match self.decode_pass(rest)? {
                Pass::Whole(wire) => {
                    let (rows, row_errors) = self.to_declared(wire)?;
                    good.push(rows);
                    bad.extend(row_errors.into_iter().map(|e| BadRecord {
                        index: rest[e.index].0,
                        error: e.error,
                    }));
                    return Ok(());
                }
                Pass::NotOneObject(at) => {
                    self.decode_runs(&rest[..at], good, bad)?;
                    self.decode_alone(rest[at], good, bad)?;
                    rest = &rest[at + 1..];
                }
                Pass::ValuesFailed if rest.len() == 1 => {
                    return self.decode_alone(rest[0], good, bad);
                }
                Pass::ValuesFailed => {
                    let (left, right) = rest.split_at(rest.len() / 2);
                    self.decode_runs(left, good, bad)?;
                    rest = right;
                }
            }
        }
        Ok(())
    }

    /// One arrow-json pass over `records`.
    fn decode_pass(&self, records: &[(usize, &[u8])]) -> Result<Pass, ConnectorError> {
        let mut decoder = self.decoder(records.len().max(1))?;
        for (i, (_, record)) in records.iter().enumerate() {
            if !feed(&mut decoder, record) || decoder.len() != i + 1 {
                return Ok(Pass::NotOneObject(i));
            }
        }
        Ok(match decoder.flush() {
            Ok(Some(wire)) => Pass::Whole(wire),
            Ok(None) => Pass::Whole(RecordBatch::new_empty(Arc::clone(&self.wire_schema))),
            Err(_) => Pass::ValuesFailed,
        })
    }

    /// Decodes one record by itself: a row, or a bad record.
    fn decode_alone(
        &self,
        (index, record): (usize, &[u8]),
        good: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let error = match self.decode_one(record) {
            Ok(wire) => match self.to_declared(wire)? {
                (rows, errors) if errors.is_empty() => {
                    good.push(rows);
                    return Ok(());
                }
                (_, mut errors) => errors.swap_remove(0).error,
            },
            Err(error) => error,
        };
        bad.push(BadRecord { index, error });
        Ok(())
    }

    /// One record as one wire row, or why it is not one.
    fn decode_one(&self, record: &[u8]) -> Result<RecordBatch, String> {
        let trimmed = record.trim_ascii();
        if !trimmed.starts_with(b"{") {
            return Err("not a single JSON object".into());
        }
        let mut decoder = self.decoder(1).map_err(|e| e.to_string())?;
        if !feed(&mut decoder, trimmed) || decoder.len() != 1 {
            return Err("not a single JSON object".into());
        }
        match decoder.flush() {
            Ok(Some(batch)) if batch.num_rows() == 1 => Ok(batch),
            Ok(_) => Err("not a single JSON object".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn decoder(&self, batch_size: usize) -> Result<Decoder, ConnectorError> {
        Ok(ReaderBuilder::new(Arc::clone(&self.wire_schema))
            .with_batch_size(batch_size)
            // Integers arrive as their text and are parsed exactly in `to_declared`.
            .with_coerce_primitive(true)
            .build_decoder()?)
    }

    /// Converts wire rows to the declared types. Rows with a value that does not fit its
    /// type exactly are left out and returned as bad records, by row index.
    fn to_declared(
        &self,
        wire: RecordBatch,
    ) -> Result<(RecordBatch, Vec<BadRecord>), ConnectorError> {
        let rows = wire.num_rows();
        let mut columns: Vec<Option<ArrayRef>> = vec![None; self.schema.fields().len()];
        let mut bad: Option<Vec<Option<String>>> = None;
        for (column, &index) in wire.columns().iter().zip(&self.decoded) {
            let field = self.schema.field(index);
            let declared = convert(column, field.data_type())?;
            self.warn_on_epoch_seconds(column, field);
            if let Some(problem) = unfit_values(column, &declared) {
                let errors = bad.get_or_insert_with(|| vec![None; rows]);
                for (i, error) in errors.iter_mut().enumerate() {
                    if error.is_none() && problem.value(i) {
                        *error = Some(unfit_message(column, field, i));
                    }
                }
            }
            columns[index] = Some(declared);
        }
        // The fields the query does not read: nulls, which cost no decoding.
        let columns: Vec<ArrayRef> = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| c.unwrap_or_else(|| new_null_array(f.data_type(), rows)))
            .collect();
        let Some(errors) = bad else {
            return Ok((
                RecordBatch::try_new(Arc::clone(&self.schema), columns)?,
                Vec::new(),
            ));
        };
        // Bad rows go before the batch is built: a NOT NULL column may hold their nulls.
        let keep = BooleanArray::from(errors.iter().map(Option::is_none).collect::<Vec<_>>());
        let wire_rows = RecordBatch::try_new_with_options(
            Arc::clone(&self.lenient_schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(wire.num_rows())),
        )?;
        let kept = filter_record_batch(&wire_rows, &keep)?;
        let rows = RecordBatch::try_new(Arc::clone(&self.schema), kept.columns().to_vec())?;
        let bad = errors
            .into_iter()
            .enumerate()
            .filter_map(|(index, error)| {
                Some(BadRecord {
                    index,
                    error: error?,
                })
            })
            .collect();
        Ok((rows, bad))
    }

    /// Epoch seconds read as milliseconds land in January 1970: say so, once.
    fn warn_on_epoch_seconds(&self, wire: &ArrayRef, field: &Field) {
        if self.timestamp_unit != TimeUnit::Millisecond
            || self.warned_epoch_unit.load(Ordering::Relaxed)
        {
            return;
        }
        let Some(millis) = wire.as_primitive_opt::<TimestampMillisecondType>() else {
            return;
        };
        if min(millis).is_some_and(|m| (0..SUSPICIOUS_EPOCH_MILLIS).contains(&m)) {
            self.warned_epoch_unit.store(true, Ordering::Relaxed);
            tracing::warn!(
                column = field.name(),
                "timestamps fall in 1970-1973: numbers are read as epoch milliseconds; \
                 if they are epoch seconds, set timestamp_unit = 'second'"
            );
        }
    }
}

/// How one arrow-json pass over a run of records went.
enum Pass {
    /// Every record was one object and every value decoded.
    Whole(RecordBatch),
    /// The record at this position was not exactly one object; those before it were.
    NotOneObject(usize),
    /// Some value did not decode; which record is not known.
    ValuesFailed,
}

/// Feeds one record to `decoder`; false when the decoder did not take it whole or was left
/// part way through an object (a record holding part of one).
fn feed(decoder: &mut Decoder, record: &[u8]) -> bool {
    match decoder.decode(record) {
        Ok(read) => read == record.len() && !decoder.has_partial_record(),
        Err(_) => false,
    }
}

/// The start of every non-blank line of `chunk`, and each one's line index.
fn line_records(chunk: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let mut starts = Vec::new();
    let mut lines = Vec::new();
    let mut start = 0;
    for (line, text) in chunk.split(|b| *b == b'\n').enumerate() {
        if !text.iter().all(u8::is_ascii_whitespace) {
            starts.push(start);
            lines.push(line);
        }
        start += text.len() + 1;
    }
    (starts, lines)
}

/// How a declared type travels from arrow-json: integers as text (arrow-json would truncate
/// `1.9` to 1), timestamps at the unit of epoch numbers.
fn wire_type(declared: &DataType, unit: TimeUnit) -> DataType {
    match declared {
        t if t.is_integer() => DataType::Utf8,
        DataType::Timestamp(_, tz) => DataType::Timestamp(unit, tz.clone()),
        other => other.clone(),
    }
}

/// Casts a wire column to its declared type; a value that does not convert becomes null.
fn convert(wire: &ArrayRef, declared: &DataType) -> Result<ArrayRef, ConnectorError> {
    if wire.data_type() == declared {
        return Ok(Arc::clone(wire));
    }
    Ok(cast(wire, declared)?)
}

/// Rows whose value did not survive conversion (null after, not before) or is not finite;
/// `None` when every row is fine, the common case, found without a pass over the rows.
fn unfit_values(wire: &ArrayRef, declared: &ArrayRef) -> Option<BooleanArray> {
    let lost = (declared.null_count() > wire.null_count())
        .then(|| and(&is_not_null(wire).ok()?, &is_null(declared).ok()?).ok())
        .flatten();
    let infinite = match declared.data_type() {
        DataType::Float64 => Some(infinite(
            declared.as_primitive::<Float64Type>().values(),
            f64::is_infinite,
        )),
        DataType::Float32 => Some(infinite(
            declared.as_primitive::<Float32Type>().values(),
            f32::is_infinite,
        )),
        _ => None,
    }
    .filter(|mask| mask.true_count() > 0);
    match (lost, infinite) {
        (None, None) => None,
        (Some(mask), None) | (None, Some(mask)) => Some(mask),
        (Some(a), Some(b)) => or(&a, &b).ok(),
    }
}

/// Where a float is infinite: JSON has no infinity, so the number overflowed.
fn infinite<T: Copy>(values: &[T], is_infinite: impl Fn(T) -> bool) -> BooleanArray {
    values.iter().map(|v| Some(is_infinite(*v))).collect()
}

/// Why row `i`'s value of `wire` does not fit `field`.
fn unfit_message(wire: &ArrayRef, field: &Field, i: usize) -> String {
    let value = match wire.as_string_opt::<i32>() {
        Some(text) => format!("'{}'", text.value(i)),
        None => "the value".to_string(),
    };
    let name = field.name();
    match field.data_type() {
        t if t.is_integer() => format!("field '{name}': {value} is not a valid {t}"),
        t if t.is_floating() => format!("field '{name}': the number is out of range for {t}"),
        t => format!("field '{name}': {value} is out of range for {t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Float64Array};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};

    fn decoder() -> JsonDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]));
        JsonDecoder::new(schema, 1024)
    }

    #[test]
    fn timestamps_accept_rfc3339_with_and_without_zone_and_epoch_millis() {
        let input = br#"{"id":"a","v":1.5,"ts":"2024-01-01T00:00:01Z"}
{"id":"b","v":2,"ts":"2024-01-01T00:00:01.250"}
{"id":"c","v":3,"ts":"2024-01-01T02:00:01+02:00"}
{"id":"d","v":4,"ts":1704067201000}
"#;
        let (batches, bad) = decoder().decode(input).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let ts = batches[0]
            .column(2)
            .as_primitive::<TimestampNanosecondType>();
        let base = 1_704_067_201_000_000_000i64;
        assert_eq!(
            ts.values().to_vec(),
            vec![base, base + 250_000_000, base, base]
        );
    }

    #[test]
    fn epoch_numbers_are_read_in_the_unit_asked_for() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        )]));
        let seconds = JsonDecoder::with_timestamp_unit(schema, 16, TimeUnit::Second);
        let (batches, bad) = seconds.decode(b"{\"ts\":1704067201}\n").unwrap();
        assert!(bad.is_empty());
        assert_eq!(
            batches[0]
                .column(0)
                .as_primitive::<TimestampNanosecondType>()
                .values(),
            &[1_704_067_201_000_000_000]
        );
    }

    #[test]
    fn records_may_span_lines_and_must_hold_one_object_each() {
        let records: [&[u8]; 4] = [
            b"{\"id\":\"a\",\n \"v\":1}",
            b"{\"id\":\"b\",\"v\":2}{\"id\":\"x\"}",
            b"{\"id\":\"c\",\"v\":\"warm\"}",
            b"{\"id\":\"d\",\"v\":4}",
        ];
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for record in records {
            starts.push(buf.len());
            buf.extend_from_slice(record);
            buf.push(b'\n');
        }
        let (batch, bad) = decoder().decode_records(&buf, &starts).unwrap();
        let ids = batch.unwrap().column(0).as_string::<i32>().clone();
        assert_eq!(ids.iter().flatten().collect::<Vec<_>>(), vec!["a", "d"]);
        assert_eq!(bad.iter().map(|b| b.index).collect::<Vec<_>>(), vec![1, 2]);

        // Clean input takes the one-pass path and keeps every record.
        let (batch, bad) = decoder().decode_records(&buf[starts[3]..], &[0]).unwrap();
        assert_eq!(batch.unwrap().num_rows(), 1);
        assert!(bad.is_empty());
    }

    /// Two objects on one line and one object split over two lines are bad whatever else
    /// is in the chunk: clean around them, or next to another bad line.
    #[test]
    fn a_line_is_judged_on_its_own_content_not_its_neighbours() {
        let two_on_a_line = "{\"id\":\"a\"}{\"id\":\"b\"}";
        let split = "{\"id\":\"c\",\n\"v\":3}";
        for neighbours in ["", "not json\n"] {
            let input = format!(
                "{{\"id\":\"x\"}}\n{two_on_a_line}\n{split}\n{neighbours}{{\"id\":\"y\"}}\n"
            );
            let (batches, bad) = decoder().decode(input.as_bytes()).unwrap();
            let ids: Vec<String> = batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(ids, vec!["x", "y"], "with {neighbours:?}");
            let lines: Vec<usize> = bad.iter().map(|b| b.index).collect();
            let expected: Vec<usize> = if neighbours.is_empty() {
                vec![1, 2, 3]
            } else {
                vec![1, 2, 3, 4]
            };
            assert_eq!(lines, expected, "with {neighbours:?}");
        }
    }

    #[test]
    fn values_that_do_not_fit_their_type_exactly_are_bad() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let decoder = JsonDecoder::new(schema, 64);
        let input = br#"{"n":1,"x":1.5,"ts":"2024-01-01T00:00:00Z","s":"a"}
{"n":1.9}
{"x":1e400}
{"ts":"3000-01-01T00:00:00Z"}
{"n":"12","x":-2,"s":42}
{"n":99999999999999999999}
{"n":true}
"#;
        let (batches, bad) = decoder.decode(input).unwrap();
        let rows = &batches[0];
        assert_eq!(rows.num_rows(), 2);
        assert_eq!(
            rows.column(0).as_primitive::<Int64Type>().values(),
            &[1, 12]
        );
        assert_eq!(rows.column(3).as_string::<i32>().value(1), "42");
        let bad: Vec<(usize, &str)> = bad.iter().map(|b| (b.index, b.error.as_str())).collect();
        assert_eq!(
            bad.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 5, 6],
            "{bad:?}"
        );
        assert!(bad[0].1.contains("'1.9' is not a valid Int64"), "{bad:?}");
        assert!(bad[1].1.contains("out of range for Float64"), "{bad:?}");
        assert!(bad[2].1.contains("out of range"), "{bad:?}");
    }

    #[test]
    fn malformed_lines_are_isolated_and_good_ones_kept() {
        let input = b"{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":\n{\"id\":\"c\",\"v\":\"hot\"}\nnot json\n\n{\"id\":\"e\",\"v\":5}\n";
        let (batches, bad) = decoder().decode(input).unwrap();
        let values = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(values.values().to_vec(), vec![1.0, 5.0]);
        assert_eq!(
            bad.iter().map(|b| b.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn bad_lines_anywhere_in_a_long_chunk_cost_only_themselves() {
        // Bad first, last, adjacent, and of both kinds: not one object, and a value that
        // does not decode.
        let bad_at = [0, 1, 2, 500, 501, 2047, 4095];
        let mut input = String::new();
        for i in 0..4096 {
            match bad_at.iter().position(|&b| b == i) {
                Some(k) if k % 2 == 0 => input.push_str("{\"id\":\"x\",\"v\":\n"),
                Some(_) => input.push_str("{\"id\":\"x\",\"v\":[1]}\n"),
                None => input.push_str(&format!("{{\"id\":\"{i}\",\"v\":{i}}}\n")),
            }
        }
        let (batches, bad) = JsonDecoder::new(decoder().schema().clone(), 1024)
            .decode(input.as_bytes())
            .unwrap();
        assert_eq!(
            bad.iter().map(|b| b.index).collect::<Vec<_>>(),
            bad_at.to_vec()
        );
        let values: Vec<f64> = batches
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Float64Type>().values().to_vec())
            .collect();
        let expected: Vec<f64> = (0..4096u32)
            .filter(|i| !bad_at.contains(&(*i as usize)))
            .map(f64::from)
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn fields_the_query_does_not_read_are_left_null_unchecked() {
        let schema = decoder().schema().clone();
        let reading_v = JsonDecoder::reading(schema, 16, TimeUnit::Millisecond, &[false, true]);
        // "id" is not read: its value is not even looked at, so a number there is no error.
        let (batches, bad) = reading_v
            .decode(b"{\"id\":\"a\",\"v\":1}\n{\"id\":[1,2],\"v\":2}\n")
            .unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(batches[0].column(0).null_count(), 2);
        let v = batches[0].column(1).as_primitive::<Float64Type>();
        assert_eq!(v.values().to_vec(), vec![1.0, 2.0]);
    }
}
