//! The engine's error type.

use std::fmt;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::connector::ConnectorError;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
///
/// `Sql`, `Plan` and `Unsupported` are the user's to fix; `Internal` is a broken invariant,
/// i.e. a bug in Vigil.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text could not be parsed or planned; carries the position.
    #[error("{0}")]
    Sql(SqlError),
    /// The statement is valid SQL but cannot be planned as a stream.
    #[error("{0}")]
    Plan(String),
    /// A construct Vigil does not run (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A running query failed.
    #[error("execution error: {0}")]
    Execution(String),
    /// A broken invariant.
    #[error("internal error (this is a bug in Vigil): {0}")]
    Internal(String),
    /// An error from DataFusion that was not turned into a [`SqlError`].
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// An Arrow compute error.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// Checkpointed state could not be written, read or used.
    #[error("state: {0}")]
    State(String),
    /// A connector failed.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

impl Error {
    /// The SQL error, when this is one.
    pub fn as_sql(&self) -> Option<&SqlError> {
        match self {
            Error::Sql(e) => Some(e),
            _ => None,
        }
    }

    /// The error as a terminal shows it: for SQL errors the file, line and column with the
    /// line quoted and a caret under the spot (`sql` is the text the error points into).
    pub fn report(self, file: &str, sql: &str) -> String {
        match self.in_file(file) {
            Error::Sql(e) => e.render(sql).trim_end().to_string(),
            other => format!("{file}: {other}"),
        }
    }

    /// Attaches a source file name to SQL errors, for `file:line:column` reports.
    pub fn in_file(self, file: &str) -> Self {
        match self {
            Error::Sql(mut e) => {
                e.file = Some(file.to_string());
                Error::Sql(e)
            }
            other => other,
        }
    }
}

/// A position in SQL text, 1-based as editors count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number, from 1.
    pub line: u64,
    /// Column number, from 1.
    pub column: u64,
}

/// An error in the user's SQL, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where, when known.
    pub location: Option<Location>,
    /// The file the SQL came from, when it came from one.
    pub file: Option<String>,
    /// A hint on how to fix it.
    pub help: Option<String>,
}

impl SqlError {
    /// An error at an optional location.
    pub fn new(message: impl Into<String>, location: Option<Location>) -> Self {
        Self {
            message: message.into(),
            location,
            file: None,
            help: None,
        }
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the error compiler-style with the offending line and a caret under the spot.
    pub fn render(&self, sql: &str) -> String {
        let mut out = String::new();
        let prefix = match (&self.file, self.location) {
            (Some(f), Some(l)) => format!("{f}:{}:{}: ", l.line, l.column),
            (Some(f), None) => format!("{f}: "),
            (None, Some(l)) => format!("line {}, column {}: ", l.line, l.column),
            (None, None) => String::new(),
        };
        out.push_str(&format!("error: {prefix}{}\n", self.message));
        if let Some(loc) = self.location
            && let Some(text) = sql.lines().nth(loc.line.saturating_sub(1) as usize)
        {
            let number = loc.line.to_string();
            let pad = " ".repeat(number.len());
            let caret_pad: String = text
                .chars()
                .take(loc.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!(
                "{pad} |\n{number} | {text}\n{pad} | {caret_pad}^\n"
            ));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("help: {help}\n"));
        }
        out
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
            if let Some(l) = self.location {
                write!(f, "{}:{}:", l.line, l.column)?;
            }
            write!(f, " ")?;
        }
        write!(f, "{}", self.message)?;
        if self.file.is_none()
            && let Some(l) = self.location
        {
            write!(f, " (line {}, column {})", l.line, l.column)?;
        }
        Ok(())
    }
}

/// Returns early with an [`Error::Plan`].
#[macro_export]
macro_rules! plan_err {
    ($($arg:tt)*) => { return Err($crate::Error::Plan(format!($($arg)*))) };
}

/// Returns early with an [`Error::Internal`].
#[macro_export]
macro_rules! internal_err {
    ($($arg:tt)*) => { return Err($crate::Error::Internal(format!($($arg)*))) };
}
