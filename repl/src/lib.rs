//! # Vigil REPL
//!
//! `vigil repl`: type Vigil SQL and watch streaming results arrive. Piped input runs as a
//! script: no prompts, rows printed as they come, the first error ends it.
//!
//! - [`splitter`]: cuts input into statements and meta commands.
//! - [`Session`]: executes them against an engine; SELECTs in the foreground, sinks in the
//!   background.
#![warn(missing_docs)]

mod error;
mod interactive;
mod script;
mod session;
pub mod splitter;

pub use error::ReplError;
pub use interactive::{history_path, run_interactive};
pub use script::{run_script, run_script_text};
pub use session::{Control, HELP, Session};
pub use splitter::{Input, StatementSplitter};
