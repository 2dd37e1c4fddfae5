//! # Vigil REPL
//!
//! `vigil repl`: type Vigil SQL and watch streaming results arrive. Piped input runs as a
//! script: no prompts, rows printed as they come, the first error ends it.
//!
//! - [`splitter`]: cuts input into statements and meta commands.
//! - [`Session`]: executes them against an engine; SELECTs in the foreground with a status
//!   line, sinks in the background.
//! - [`completion`]: what Tab offers; the prompt loop feeds it through a rustyline helper.
//! - [`StreamingTable`]: rows aligned under a header that returns every screenful.
#![warn(missing_docs)]

pub mod completion;
mod error;
mod helper;
mod interactive;
mod live_table;
mod results;
mod rules;
mod script;
mod session;
mod settings;
pub mod splitter;
mod statements;
mod table;
mod terminal;

pub use error::ReplError;
pub use interactive::{history_path, run_interactive};
pub use results::{Display, Progress, ResultWriter};
pub use rules::{LoadedRules, load_rules};
pub use script::{run_file, run_script, run_script_text};
pub use session::{Control, HELP, Mode, Session};
pub use splitter::{Input, StatementSplitter};
pub use table::StreamingTable;
