//! Cells as text: what rule tests write and how results are shown.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// How a NULL is written.
pub const NULL: &str = "NULL";

/// Every row of `batches` as text: NULL as `NULL`, an empty string as `(empty)`, timestamps
/// as RFC 3339 with milliseconds and `Z`, lists as `[a, b]`.
pub fn format_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for batch in batches {
        let mut columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| format_column(c).into_iter())
            .collect();
        for _ in 0..batch.num_rows() {
            rows.push(columns.iter_mut().filter_map(Iterator::next).collect());
        }
    }
    rows
}

/// Every value of one column as text (see [`format_rows`]).
pub fn format_column(column: &ArrayRef) -> Vec<String> {
    let options = FormatOptions::new()
        .with_null(NULL)
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let is_text = matches!(
        column.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    match ArrayFormatter::try_new(column.as_ref(), &options) {
        Ok(formatter) => (0..column.len())
            .map(|i| {
                let text = formatter.value(i).to_string();
                if is_text && column.is_valid(i) && text.is_empty() {
                    "(empty)".to_string()
                } else {
                    text
                }
            })
            .collect(),
        Err(_) => vec![format!("<{}>", column.data_type()); column.len()],
    }
}

/// Cells written in a test as a column of `data_type`: `NULL` is null, `(empty)` the empty
/// string, anything else is cast from text by Arrow (numbers, booleans, RFC 3339 times).
pub fn parse_column(cells: &[&str], data_type: &DataType) -> Result<ArrayRef, String> {
    let text: StringArray = cells
        .iter()
        .map(|c| match *c {
            NULL => None,
            "(empty)" => Some(""),
            other => Some(other),
        })
        .collect();
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(&(Arc::new(text) as ArrayRef), data_type, &options).map_err(|e| e.to_string())
}

/// Expected cells in the form the actual ones are shown in, so `210` matches `210.0` and
/// `2024-01-01T00:01:00Z` matches `2024-01-01T00:01:00.000Z`. Cells Arrow cannot read as
/// `data_type` (lists, for one) stay as written.
pub fn normalize(cells: &[&str], data_type: &DataType) -> Vec<String> {
    if data_type.is_nested() {
        // Arrow would wrap the text in a one-element list rather than read it.
        return cells.iter().map(|c| c.to_string()).collect();
    }
    match parse_column(cells, data_type) {
        Ok(array) => format_column(&array),
        Err(_) => cells
            .iter()
            .map(|c| match parse_column(&[c], data_type) {
                Ok(one) => format_column(&one).remove(0),
                Err(_) => c.to_string(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn written_values_meet_shown_values() {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        assert_eq!(
            normalize(&["2024-01-01T00:01:00Z", "NULL"], &ts),
            ["2024-01-01T00:01:00.000Z", "NULL"]
        );
        assert_eq!(
            normalize(&["210", "1.5"], &DataType::Float64),
            ["210.0", "1.5"]
        );
        assert_eq!(normalize(&["[a, b]"], &DataType::Int64), ["[a, b]"]);
        let list = DataType::new_list(DataType::Utf8, true);
        assert_eq!(normalize(&["[a, b]"], &list), ["[a, b]"]);
        assert!(parse_column(&["hot"], &DataType::Float64).is_err());
    }
}
