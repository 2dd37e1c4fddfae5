//! Wire formats: JSON lines in and out, and aligned tables for terminals.

mod json_decode;
mod json_encode;
mod table;

pub use json_decode::{BadRecord, JsonDecoder};
pub use json_encode::{encode_json_lines, timestamps_as_text};
pub use table::format_table;
