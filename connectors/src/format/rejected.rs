//! Rows an expression failed on, as the engine hands them to a dead-letter sink (see
//! `RejectedRows::to_dead_letters`), turned into JSON for a topic or a file.

use datafusion::arrow::array::{AsArray, RecordBatch, StructArray};
use serde_json::{Value, json};

use super::encode_json_lines;
use crate::ConnectorError;

/// One rejected row.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// The query it belonged to.
    pub query: String,
    /// The source whose batch it came from.
    pub source: String,
    /// The operator whose expression failed.
    pub operator: String,
    /// Why.
    pub error: String,
    /// The row as that operator received it, as a JSON object (timestamps in RFC 3339).
    pub row: Vec<u8>,
}

impl RejectedRow {
    /// The whole dead letter as one JSON object, for a dead-letter file.
    pub fn to_json(&self) -> Value {
        let row: Value = serde_json::from_slice(&self.row).unwrap_or(Value::Null);
        json!({
            "source": self.source,
            "query": self.query,
            "operator": self.operator,
            "error": self.error,
            "row": row,
        })
    }
}

/// The rows of a batch of rejections.
pub fn rejected_rows(batch: &RecordBatch) -> Result<Vec<RejectedRow>, ConnectorError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| ConnectorError::Format(format!("a rejection batch has no '{name}'")))
    };
    let text = |name: &str| -> Result<Vec<String>, ConnectorError> {
        let array = column(name)?;
        let strings = array
            .as_string_opt::<i32>()
            .ok_or_else(|| ConnectorError::Format(format!("'{name}' is not text")))?;
        Ok(strings
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect())
    };
    let rows = column("row")?
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| ConnectorError::Format("'row' is not a struct".into()))?
        .clone();
    let encoded = encode_json_lines(&RecordBatch::from(rows))?;
    let (query, source, operator, error) = (
        text("query")?,
        text("source")?,
        text("operator")?,
        text("error")?,
    );
    Ok(encoded
        .split(|b| *b == b'\n')
        .zip(
            query
                .into_iter()
                .zip(source)
                .zip(operator.into_iter().zip(error)),
        )
        .map(|(row, ((query, source), (operator, error)))| RejectedRow {
            query,
            source,
            operator,
            error,
            row: row.to_vec(),
        })
        .collect())
}
