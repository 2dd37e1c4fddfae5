//! Vigil's SQL dialect: parsing of `CREATE SOURCE` / `CREATE SINK`, `WATERMARK FOR` and
//! `EXPLAIN`; every other statement is sqlparser's.

pub mod emit_clause;
mod flink_windows;
mod foreign;
mod keywords;
pub mod limits;
pub mod locate;
pub mod match_within;
mod options;
mod parser;
mod token_rewrite;
pub mod unsupported;

pub use keywords::KEYWORDS;
pub use options::{OptionReader, Options, parse_duration};
pub use parser::{
    CreateSink, CreateSource, CreateView, ParsedStatement, Statement, StreamParser, WatermarkDef,
};

/// The window table functions, as users may spell them in any case.
pub const WINDOW_FUNCTIONS: [&str; 4] = ["tumble", "hop", "cumulate", "session"];

/// Whether `name` is a window table function (`TUMBLE`, `HOP`, `CUMULATE`, `SESSION`).
pub fn is_window_function(name: &str) -> bool {
    WINDOW_FUNCTIONS
        .iter()
        .any(|function| function.eq_ignore_ascii_case(name))
}
