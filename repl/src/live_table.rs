//! [`LiveTable`]: an updating query's current rows, kept from its changelog and drawn as
//! one table that changes in place (Flink's table result mode), for people watching it.

use datafusion::arrow::array::{AsArray, RecordBatch};

use crate::ReplError;
use crate::table::{StreamingTable, cells, columns_of};

/// The rows an updating query's changes add up to, in the order they were first inserted.
#[derive(Debug, Default)]
pub struct LiveTable {
    /// Column names, without `op`.
    names: Vec<String>,
    right_aligned: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl LiveTable {
    /// Applies a batch of changes (first column `op`): `+I` and `+U` add their row, `-U` and
    /// `-D` take away one row equal to theirs.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<(), ReplError> {
        let ops = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| ReplError::Output("a changelog without an op column".into()))?
            .clone();
        let values = batch
            .project(&(1..batch.num_columns()).collect::<Vec<_>>())
            .map_err(|e| ReplError::Output(e.to_string()))?;
        if self.names.is_empty() {
            (self.names, self.right_aligned) = columns_of(&values);
        }
        for (op, row) in ops.iter().zip(cells(&values)?) {
            match op {
                Some("-U" | "-D") => {
                    if let Some(at) = self.rows.iter().position(|r| *r == row) {
                        self.rows.remove(at);
                    }
                }
                _ => self.rows.push(row),
            }
        }
        Ok(())
    }

    /// The current rows as an aligned table, with how many there are.
    pub fn render(&self) -> String {
        let mut table = StreamingTable::new(None);
        let mut text = table.render_cells(&self.names, &self.right_aligned, &self.rows);
        text.push_str(&format!("({} rows)\n", self.rows.len()));
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn changes(rows: &[(&str, &str, i64)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("op", DataType::Utf8, false),
            Field::new("account", DataType::Utf8, false),
            Field::new("owed", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn changes_add_up_to_the_current_rows() {
        let mut table = LiveTable::default();
        table
            .apply(&changes(&[("+I", "a", 10), ("+I", "b", 20)]))
            .unwrap();
        table
            .apply(&changes(&[
                ("-U", "a", 10),
                ("+U", "a", 30),
                ("-D", "b", 20),
            ]))
            .unwrap();
        assert_eq!(
            table.render(),
            " account | owed\n\
             ---------+------\n \
             a       |   30\n\
             (1 rows)\n"
        );
    }
}
