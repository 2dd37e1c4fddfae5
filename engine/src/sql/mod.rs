//! Vigil's SQL dialect: parsing of `CREATE SOURCE` / `CREATE SINK`, `WATERMARK FOR` and
//! `EXPLAIN`; every other statement is sqlparser's.

mod foreign;
mod keywords;
pub mod limits;
pub mod locate;
mod options;
mod parser;
pub mod unsupported;

pub use keywords::KEYWORDS;
pub use options::{OptionReader, Options, parse_duration};
pub use parser::{
    CreateSink, CreateSource, CreateView, ParsedStatement, Statement, StreamParser, WatermarkDef,
};
