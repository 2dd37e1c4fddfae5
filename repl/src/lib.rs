//! # Vigil REPL
//!
//! `vigil repl`: type Vigil SQL and watch streaming results arrive. This crate holds the
//! input handling and the session; the binary wires it to the terminal.
#![warn(missing_docs)]

pub mod splitter;

pub use splitter::{Input, StatementSplitter};
