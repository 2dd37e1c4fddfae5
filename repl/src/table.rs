//! [`StreamingTable`]: rows printed as they arrive, aligned under a header that comes back
//! every screenful and whenever a wider value makes the columns grow.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use vigil_connectors::format::timestamps_as_text;

use crate::ReplError;

/// Text of an SQL NULL.
const NULL: &str = "NULL";

/// An aligned table printed a batch at a time.
#[derive(Debug)]
pub struct StreamingTable {
    /// Rows of data between two headers; `None` prints the header once.
    page_rows: Option<usize>,
    names: Vec<String>,
    right_aligned: Vec<bool>,
    widths: Vec<usize>,
    rows_on_page: usize,
    /// Whether a header has been printed.
    started: bool,
    /// Rows printed expanded so far, to number the next.
    records: usize,
}

impl StreamingTable {
    /// A table that repeats its header after `page_rows` rows (a screenful), or never.
    pub fn new(page_rows: Option<usize>) -> Self {
        Self {
            page_rows: page_rows.map(|rows| rows.max(1)),
            names: Vec::new(),
            right_aligned: Vec::new(),
            widths: Vec::new(),
            rows_on_page: 0,
            started: false,
            records: 0,
        }
    }

    /// Renders a batch's rows, preceded by the header when a page starts or the columns
    /// widened.
    pub fn render(&mut self, batch: &RecordBatch) -> Result<String, ReplError> {
        if self.names.is_empty() {
            let (names, right_aligned) = columns_of(batch);
            self.start(names, right_aligned);
        }
        Ok(self.render_rows(cells(batch)?))
    }

    /// Renders rows already turned into text, under columns `names` (right-aligned where
    /// `right_aligned` says).
    pub fn render_cells(
        &mut self,
        names: &[String],
        right_aligned: &[bool],
        rows: &[Vec<String>],
    ) -> String {
        if self.names.is_empty() {
            self.start(names.to_vec(), right_aligned.to_vec());
        }
        self.render_rows(rows.to_vec())
    }

    /// Renders a batch's rows expanded, one field per line under a numbered record
    /// marker, as psql's `\x` does: for results too wide for a line.
    pub fn render_expanded(&mut self, batch: &RecordBatch) -> Result<String, ReplError> {
        let (names, _) = columns_of(batch);
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for row in cells(batch)? {
            self.records += 1;
            out.push_str(&format!("-[ RECORD {} ]-\n", self.records));
            for (name, value) in names.iter().zip(row) {
                out.push_str(&format!("{name:<width$} | {value}\n"));
            }
        }
        Ok(out)
    }

    fn start(&mut self, names: Vec<String>, right_aligned: Vec<bool>) {
        self.widths = names.iter().map(|n| n.chars().count()).collect();
        self.names = names;
        self.right_aligned = right_aligned;
    }

    fn render_rows(&mut self, rows: Vec<Vec<String>>) -> String {
        let mut widened = false;
        for row in &rows {
            for (width, cell) in self.widths.iter_mut().zip(row) {
                let len = cell.chars().count();
                if len > *width {
                    *width = len;
                    widened = true;
                }
            }
        }
        let mut out = String::new();
        if !self.started || widened {
            self.header(&mut out);
        }
        for row in rows {
            if self.page_rows.is_some_and(|page| self.rows_on_page >= page) {
                self.header(&mut out);
            }
            self.line(&row, &mut out);
            self.rows_on_page += 1;
        }
        out
    }

    /// Starts a page: a blank line after earlier rows, the names, a rule.
    fn header(&mut self, out: &mut String) {
        if self.started {
            out.push('\n');
        }
        self.started = true;
        self.rows_on_page = 0;
        let names: Vec<String> = self.names.clone();
        let left = vec![false; names.len()];
        push_line(out, &names, &self.widths, &left);
        let rule: Vec<String> = self.widths.iter().map(|w| "-".repeat(*w)).collect();
        let joined: Vec<String> = rule.iter().map(|r| format!("-{r}-")).collect();
        out.push_str(joined.join("+").trim_end());
        out.push('\n');
    }

    fn line(&self, row: &[String], out: &mut String) {
        push_line(out, row, &self.widths, &self.right_aligned);
    }
}

fn push_line(out: &mut String, cells: &[String], widths: &[usize], right: &[bool]) {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(right)
        .map(|((cell, width), right)| {
            if *right {
                format!(" {cell:>width$} ")
            } else {
                format!(" {cell:<width$} ")
            }
        })
        .collect();
    out.push_str(padded.join("|").trim_end());
    out.push('\n');
}

/// A batch's column names, and which are right-aligned (numbers and booleans).
pub(crate) fn columns_of(batch: &RecordBatch) -> (Vec<String>, Vec<bool>) {
    let schema = batch.schema();
    let names = schema.fields().iter().map(|f| f.name().clone()).collect();
    let right_aligned = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric() || *f.data_type() == DataType::Boolean)
        .collect();
    (names, right_aligned)
}

/// The batch's values as text, row by row; timestamps in Vigil's RFC 3339 form.
pub(crate) fn cells(batch: &RecordBatch) -> Result<Vec<Vec<String>>, ReplError> {
    let batch = timestamps_as_text(batch).map_err(|e| ReplError::Output(e.to_string()))?;
    let options = FormatOptions::new().with_null(NULL);
    let formatters = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ReplError::Output(e.to_string()))?;
    Ok((0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(ids: &[&str], counts: &[Option<i64>]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("readings", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn header_once_then_rows_aligned() {
        let mut table = StreamingTable::new(None);
        let first = table
            .render(&batch(&["s1", "s2"], &[Some(3), None]))
            .unwrap();
        let second = table.render(&batch(&["s3"], &[Some(12)])).unwrap();
        assert_eq!(
            format!("{first}{second}"),
            " sensor_id | readings\n\
             -----------+----------\n \
             s1        |        3\n \
             s2        |     NULL\n \
             s3        |       12\n"
        );
    }

    #[test]
    fn a_wider_value_reprints_the_header() {
        let mut table = StreamingTable::new(None);
        table.render(&batch(&["s1"], &[Some(1)])).unwrap();
        let wider = table.render(&batch(&["sensor-0001"], &[Some(2)])).unwrap();
        assert_eq!(
            wider,
            "\n sensor_id   | readings\n\
             -------------+----------\n \
             sensor-0001 |        2\n"
        );
    }

    #[test]
    fn expanded_rows_print_one_field_per_line() {
        let mut table = StreamingTable::new(None);
        table.render_expanded(&batch(&["s1"], &[Some(3)])).unwrap();
        let text = table.render_expanded(&batch(&["s2"], &[None])).unwrap();
        assert_eq!(text, "-[ RECORD 2 ]-\nsensor_id | s2\nreadings  | NULL\n");
    }

    #[test]
    fn the_header_comes_back_every_page() {
        let mut table = StreamingTable::new(Some(2));
        let text = table
            .render(&batch(&["a", "b", "c", "d", "e"], &[Some(1); 5]))
            .unwrap();
        assert_eq!(text.matches("sensor_id").count(), 3, "{text}");
        // `e` started a page that `f` fills; `g` starts the next.
        let text = table.render(&batch(&["f", "g"], &[Some(1); 2])).unwrap();
        assert!(text.starts_with(" f "), "{text}");
        assert_eq!(text.matches("sensor_id").count(), 1, "{text}");
    }
}
