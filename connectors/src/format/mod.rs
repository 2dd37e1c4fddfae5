//! Wire formats: JSON lines in and out, and aligned tables for terminals.

mod json_decode;
mod json_encode;
mod rejected;
mod table;

pub use json_decode::{BadRecord, JsonDecoder};
pub use json_encode::{encode_json_lines, timestamps_as_text};
pub use rejected::{RejectedRow, rejected_rows};
pub use table::format_table;

use datafusion::arrow::datatypes::TimeUnit;

use crate::ConnectorError;

/// The `timestamp_unit` option: the unit of epoch numbers in timestamp fields of JSON
/// input, milliseconds when not given.
pub fn timestamp_unit(value: Option<String>) -> Result<TimeUnit, ConnectorError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("millisecond" | "ms") => Ok(TimeUnit::Millisecond),
        Some("second" | "s") => Ok(TimeUnit::Second),
        Some("microsecond" | "us") => Ok(TimeUnit::Microsecond),
        Some("nanosecond" | "ns") => Ok(TimeUnit::Nanosecond),
        Some(other) => Err(ConnectorError::config(
            "timestamp_unit",
            format!("'{other}' is not a unit; use second, millisecond, microsecond or nanosecond"),
        )),
    }
}
