//! [`JsonDecoder`]: JSON lines to Arrow with arrow-json, isolating malformed lines.

use std::sync::Arc;

use arrow_json::ReaderBuilder;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::ConnectorError;

/// A line that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Index of the line within the decoded chunk.
    pub index: usize,
    /// Why it failed.
    pub error: String,
}

/// Decodes newline-delimited JSON into batches of a declared schema.
///
/// Timestamps may be RFC 3339 strings (zone optional, UTC when absent) or integer epoch
/// milliseconds. A chunk decodes in one arrow-json pass; only when that fails is it decoded
/// line by line to find the bad lines, so clean input pays nothing for error handling.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
    wire_schema: SchemaRef,
    batch_size: usize,
}

impl JsonDecoder {
    /// A decoder producing rows of `schema`.
    pub fn new(schema: SchemaRef, batch_size: usize) -> Self {
        // Numbers in timestamp fields are epoch milliseconds, so decode them at that unit.
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(_, tz) => f
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Timestamp(TimeUnit::Millisecond, tz.clone())),
                _ => f.as_ref().clone(),
            })
            .collect();
        Self {
            schema,
            wire_schema: Arc::new(Schema::new(fields)),
            batch_size: batch_size.max(1),
        }
    }

    /// The schema of decoded rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a chunk of complete lines. Returns the good rows and the bad lines.
    pub fn decode(
        &self,
        chunk: &[u8],
    ) -> Result<(Vec<RecordBatch>, Vec<BadRecord>), ConnectorError> {
        match self.decode_all(chunk) {
            Ok(batches) => Ok((batches, Vec::new())),
            Err(_) => self.decode_line_by_line(chunk),
        }
    }

    /// Decodes `records` JSON values laid end to end in `buf`, record `i` starting at
    /// `starts[i]`: one row per good record, in order, and the bad records by index. Unlike
    /// [`JsonDecoder::decode`], a record may span lines, and a record holding two values is bad.
    pub fn decode_records(
        &self,
        buf: &[u8],
        starts: &[usize],
    ) -> Result<(Option<RecordBatch>, Vec<BadRecord>), ConnectorError> {
        if let Ok(batches) = self.decode_all(buf)
            && batches.iter().map(RecordBatch::num_rows).sum::<usize>() == starts.len()
        {
            return Ok((self.concat(&batches)?, Vec::new()));
        }
        let records = starts.iter().enumerate().map(|(index, &start)| {
            let end = starts.get(index + 1).copied().unwrap_or(buf.len());
            (index, &buf[start..end])
        });
        self.decode_each(records)
    }

    /// Decodes records one by one: one row per good record, and the bad ones by index.
    fn decode_each<'a>(
        &self,
        records: impl Iterator<Item = (usize, &'a [u8])>,
    ) -> Result<(Option<RecordBatch>, Vec<BadRecord>), ConnectorError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (index, record) in records {
            match self.decode_one(record) {
                Ok(Some(batch)) => good.push(batch),
                Ok(None) => bad.push(BadRecord {
                    index,
                    error: "not a single JSON object".into(),
                }),
                Err(e) => bad.push(BadRecord {
                    index,
                    error: e.to_string(),
                }),
            }
        }
        Ok((self.concat(&good)?, bad))
    }

    fn concat(&self, batches: &[RecordBatch]) -> Result<Option<RecordBatch>, ConnectorError> {
        match batches {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            many => Ok(Some(concat_batches(&self.schema, many)?)),
        }
    }

    fn decode_all(&self, chunk: &[u8]) -> Result<Vec<RecordBatch>, ConnectorError> {
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.wire_schema))
            .with_batch_size(self.batch_size)
            .build_decoder()?;
        let mut batches = Vec::new();
        let mut offset = 0;
        while offset < chunk.len() {
            let read = decoder.decode(&chunk[offset..])?;
            offset += read;
            if read == 0 || decoder.len() >= self.batch_size {
                if let Some(batch) = decoder.flush()? {
                    batches.push(self.to_declared(batch)?);
                }
                if read == 0 {
                    break;
                }
            }
        }
        if let Some(batch) = decoder.flush()? {
            batches.push(self.to_declared(batch)?);
        }
        Ok(batches)
    }

    fn decode_line_by_line(
        &self,
        chunk: &[u8],
    ) -> Result<(Vec<RecordBatch>, Vec<BadRecord>), ConnectorError> {
        let lines = chunk
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
        let (batch, bad) = self.decode_each(lines)?;
        Ok((batch.into_iter().collect(), bad))
    }

    fn decode_one(&self, line: &[u8]) -> Result<Option<RecordBatch>, ConnectorError> {
        let trimmed = line.trim_ascii();
        if !trimmed.starts_with(b"{") {
            return Ok(None);
        }
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.wire_schema))
            .with_batch_size(1)
            .build_decoder()?;
        let read = decoder.decode(trimmed)?;
        // A decoder of batch size one stops after the first value: anything left over
        // means the record holds more than one.
        if !trimmed[read..].iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match decoder.flush()? {
            Some(batch) if batch.num_rows() == 1 => Ok(Some(self.to_declared(batch)?)),
            _ => Ok(None),
        }
    }

    /// Casts wire columns (millisecond timestamps) to the declared types.
    fn to_declared(&self, batch: RecordBatch) -> Result<RecordBatch, ConnectorError> {
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(Arc::clone(c))
                } else {
                    cast(c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Float64Array};
    use datafusion::arrow::datatypes::TimestampNanosecondType;

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

    #[test]
    fn malformed_lines_are_isolated_and_good_ones_kept() {
        let input = b"{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":\n{\"id\":\"c\",\"v\":\"hot\"}\nnot json\n{\"id\":\"e\",\"v\":5}\n";
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
}
