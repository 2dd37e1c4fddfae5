//! Aligned tables for terminals.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::timestamps_as_text;
use crate::ConnectorError;

/// Renders batches as one aligned table with a header.
pub fn format_table(batches: &[RecordBatch]) -> Result<String, ConnectorError> {
    let texts = batches
        .iter()
        .map(timestamps_as_text)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pretty_format_batches(&texts)?.to_string())
}
