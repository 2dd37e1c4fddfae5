//! JSON-lines encoding of result batches.

use std::sync::Arc;

use arrow_json::LineDelimitedWriter;
use arrow_json::writer::WriterBuilder;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::FormatOptions;

use crate::ConnectorError;

/// RFC 3339 in UTC with milliseconds, the format of every timestamp Vigil writes.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// Replaces timestamp columns with their RFC 3339 text (UTC, milliseconds).
pub fn timestamps_as_text(batch: &RecordBatch) -> Result<RecordBatch, ConnectorError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
    {
        return Ok(batch.clone());
    }
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::new()
            .with_timestamp_format(Some(TIMESTAMP_FORMAT))
            .with_timestamp_tz_format(Some(TIMESTAMP_FORMAT)),
    };
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                // Normalise to UTC before formatting, so the `Z` is true.
                let utc = DataType::Timestamp(*unit, Some("+00:00".into()));
                let column = cast_with_options(column, &utc, &options)?;
                columns.push(cast_with_options(&column, &DataType::Utf8, &options)?);
                fields.push(Field::new(
                    field.name(),
                    DataType::Utf8,
                    field.is_nullable(),
                ));
            }
            DataType::Timestamp(_, None) => {
                columns.push(cast_with_options(column, &DataType::Utf8, &options)?);
                fields.push(Field::new(
                    field.name(),
                    DataType::Utf8,
                    field.is_nullable(),
                ));
            }
            _ => {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Encodes a batch as JSON lines, nulls written explicitly.
pub fn encode_json_lines(batch: &RecordBatch) -> Result<Vec<u8>, ConnectorError> {
    let batch = timestamps_as_text(batch)?;
    let mut writer: LineDelimitedWriter<Vec<u8>> = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build(Vec::with_capacity(batch.num_rows() * 96));
    writer.write(&batch)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds_and_nulls_explicit() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("v", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![
                    1_704_067_201_250_000_000,
                ])),
                Arc::new(Float64Array::from(vec![None])),
            ],
        )
        .unwrap();
        let text = String::from_utf8(encode_json_lines(&batch).unwrap()).unwrap();
        assert_eq!(text, "{\"ts\":\"2024-01-01T00:00:01.250Z\",\"v\":null}\n");
    }
}
