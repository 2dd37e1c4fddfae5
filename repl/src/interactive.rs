//! The interactive loop: rustyline prompts, history across runs, Ctrl-C and Ctrl-D.

use std::path::PathBuf;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::ReplError;
use crate::script::run;
use crate::session::{Control, Session};
use crate::splitter::StatementSplitter;

/// Prompt at the start of a statement.
const PROMPT: &str = "vigil> ";
/// Prompt while a statement continues.
const CONTINUATION: &str = "  ...> ";

/// Where history is kept: `VIGIL_HISTORY`, else `~/.vigil_history`.
pub fn history_path() -> Option<PathBuf> {
    std::env::var_os("VIGIL_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".vigil_history")))
}

/// Reads statements at a prompt until `\quit` or Ctrl-D. Errors are printed and the prompt
/// comes back; Ctrl-C clears the statement being typed (or stops a running SELECT).
pub async fn run_interactive(mut session: Session) -> Result<(), ReplError> {
    let mut editor =
        DefaultEditor::new().map_err(|e| ReplError::Statement(format!("terminal: {e}")))?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("Vigil SQL. Statements end with ';'. \\help for commands, \\quit or Ctrl-D to leave.");
    let mut splitter = StatementSplitter::new();
    loop {
        let prompt = if splitter.is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        let line = tokio::task::block_in_place(|| editor.readline(prompt));
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                splitter = StatementSplitter::new();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(ReplError::Statement(format!("terminal: {e}"))),
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        let mut quit = false;
        for piece in splitter.push_line(&line) {
            match run(&mut session, piece).await {
                Ok(Control::Quit) => quit = true,
                Ok(Control::Continue) => {}
                Err(e) => eprintln!("{e}"),
            }
        }
        if quit {
            break;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    session.finish().await
}
