//! Rule tests: the `.test` file format.
//!
//! A test file sits in the rules directory's `tests/`, named after its rule
//! (`tests/payment_due.test` tests `payment_due.sql`), and holds one or more cases:
//!
//! ```text
//! # Lines starting with # are comments.
//! test: paying off the dues retracts the alert
//!
//! input dues
//!   account_id | amount | ts
//!   1          | 200.0  | 2024-01-01T00:00:01Z
//!
//! input payments
//!   account_id | amount | ts
//!   1          | 200.0  | 2024-01-01T00:00:05Z
//!
//! expect payment_due_alerts
//!   op | account_id | outstanding
//!   +I | 1          | 200.0
//!   -D | 1          | 200.0
//!
//! expect late: 0
//! ```
//!
//! Input blocks arrive in the order written, rows in order within a block. A block names the
//! columns it sets; the others are NULL. `NULL` is a null, `(empty)` the empty string.
//! `expect SINK` lists every row the rule writes to the sink, in order, with its change kind
//! in `op` for updating rules; a block with a header and no rows expects none.
//! `expect late: N` counts the events the rule's windows dropped as late.

use std::path::Path;

use crate::RulesError;

/// A test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The file, as given.
    pub file: String,
    /// Its cases, in order.
    pub cases: Vec<TestCase>,
}

/// One test case.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Its name (after `test:`).
    pub name: String,
    /// The line of `test:`.
    pub line: usize,
    /// Input blocks, in arrival order.
    pub inputs: Vec<Table>,
    /// Expected sink outputs.
    pub expects: Vec<Table>,
    /// Expected count of late events, when given.
    pub late: Option<(u64, usize)>,
}

/// A named table block: `input NAME` or `expect NAME`, a header and rows.
#[derive(Debug, Clone)]
pub struct Table {
    /// The source or sink.
    pub name: String,
    /// The line of the block's first line.
    pub line: usize,
    /// Column names.
    pub header: Vec<String>,
    /// Rows, each with its line.
    pub rows: Vec<(usize, Vec<String>)>,
}

impl TestFile {
    /// Reads and parses a test file.
    pub fn read(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses a test file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, RulesError> {
        let error = |line: usize, message: String| RulesError::Fixture {
            file: file.to_string(),
            line,
            message,
        };
        let mut cases: Vec<TestCase> = Vec::new();
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).peekable();
        while let Some((number, line)) = lines.next() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                return Err(error(
                    number,
                    "an indented line outside an input or expect block".into(),
                ));
            }
            if let Some(name) = trimmed.strip_prefix("test:") {
                cases.push(TestCase {
                    name: name.trim().to_string(),
                    line: number,
                    inputs: Vec::new(),
                    expects: Vec::new(),
                    late: None,
                });
                continue;
            }
            let case = cases
                .last_mut()
                .ok_or_else(|| error(number, "expected `test: NAME` first".into()))?;
            if let Some(count) = trimmed.strip_prefix("expect late:") {
                let count = count.trim().parse().map_err(|_| {
                    error(
                        number,
                        format!("`expect late: N` needs a number, got '{}'", count.trim()),
                    )
                })?;
                case.late = Some((count, number));
                continue;
            }
            let (keyword, name) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            let name = name.trim().to_ascii_lowercase();
            if !matches!(keyword, "input" | "expect") || name.is_empty() || name.contains(' ') {
                return Err(error(
                    number,
                    format!(
                        "expected `test: NAME`, `input SOURCE`, `expect SINK` or `expect late: N`, \
                         got '{trimmed}'"
                    ),
                ));
            }
            // The block: indented lines up to a blank or unindented one.
            let mut block = Vec::new();
            while let Some(&(n, l)) = lines.peek() {
                if l.trim().is_empty() || !l.starts_with(char::is_whitespace) {
                    break;
                }
                lines.next();
                if !l.trim().starts_with('#') {
                    block.push((n, split_cells(l)));
                }
            }
            let mut block = block.into_iter();
            let (_, header) = block.next().ok_or_else(|| {
                error(
                    number,
                    format!("`{trimmed}` needs a header line of column names, indented"),
                )
            })?;
            let rows: Vec<(usize, Vec<String>)> = block.collect();
            for (n, row) in &rows {
                if row.len() != header.len() {
                    return Err(error(
                        *n,
                        format!(
                            "{} cells, but the header names {} columns",
                            row.len(),
                            header.len()
                        ),
                    ));
                }
            }
            let table = Table {
                name,
                line: number,
                header: header.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
                rows,
            };
            if keyword == "input" {
                case.inputs.push(table);
            } else {
                case.expects.push(table);
            }
        }
        if cases.is_empty() {
            return Err(error(1, "no test cases (`test: NAME`)".into()));
        }
        for case in &cases {
            if case.expects.is_empty() && case.late.is_none() {
                return Err(error(
                    case.line,
                    format!("test '{}' expects nothing", case.name),
                ));
            }
        }
        Ok(Self {
            file: file.to_string(),
            cases,
        })
    }
}

/// The cells of a table line, trimmed: `a | b c | d` has three.
fn split_cells(line: &str) -> Vec<String> {
    line.split('|').map(|c| c.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
test: one
input dues
  account_id | amount | ts
  1          | 200.0  | 2024-01-01T00:00:01Z

expect payment_due_alerts
  op | account_id | outstanding
  +I | 1          | 200.0
expect late: 0

test: two
expect payment_due_alerts
  op | account_id | outstanding
";

    #[test]
    fn cases_blocks_and_rows_are_read_with_their_lines() {
        let file = TestFile::parse("t.test", TEXT).unwrap();
        assert_eq!(file.cases.len(), 2);
        let one = &file.cases[0];
        assert_eq!((one.name.as_str(), one.line), ("one", 2));
        assert_eq!(one.inputs[0].name, "dues");
        assert_eq!(one.inputs[0].header, ["account_id", "amount", "ts"]);
        assert_eq!(
            one.inputs[0].rows[0],
            (
                5,
                vec!["1".into(), "200.0".into(), "2024-01-01T00:00:01Z".into()]
            )
        );
        assert_eq!(one.expects[0].rows[0].1, ["+I", "1", "200.0"]);
        assert_eq!(one.late, Some((0, 10)));
        assert!(file.cases[1].expects[0].rows.is_empty());
    }

    #[test]
    fn mistakes_name_their_line() {
        let err = TestFile::parse("t.test", "test: x\ninput dues\n  a | b\n  1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.test:4: 1 cells, but the header names 2 columns"
        );
        let err = TestFile::parse("t.test", "input dues\n").unwrap_err();
        assert_eq!(err.to_string(), "t.test:1: expected `test: NAME` first");
        let err = TestFile::parse("t.test", "test: x\nexpct alerts\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.test:2: expected `test: NAME`"),
            "{err}"
        );
    }
}
