//! The interactive loop: rustyline prompts, completion, history across runs, Ctrl-C and
//! Ctrl-D.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Editor};

use crate::ReplError;
use crate::helper::{CompletionState, ReplHelper};
use crate::script::run;
use crate::session::{Control, Session};
use crate::splitter::{Input, StatementSplitter};

/// Prompt at the start of a statement. A statement's later lines have none: they are lines
/// of the same edit buffer (see [`ReplHelper`]'s validator), which the arrow keys move through.
const PROMPT: &str = "vigil> ";

/// Greeting printed when the prompt opens.
const BANNER: &str = "\
Vigil SQL: statements end with ';'. Tab completes, \\help lists commands, \\quit or Ctrl-D leaves.";

/// Where history is kept: `VIGIL_HISTORY`, else `~/.vigil_history`.
pub fn history_path() -> Option<PathBuf> {
    std::env::var_os("VIGIL_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".vigil_history")))
}

/// Reads statements at a prompt until `\quit` or Ctrl-D. Errors are printed and the prompt
/// comes back; Ctrl-C clears the statement being typed (or stops a running SELECT).
pub async fn run_interactive(mut session: Session) -> Result<(), ReplError> {
    let state = Arc::new(Mutex::new(CompletionState {
        vocabulary: session.vocabulary(),
        statement: String::new(),
    }));
    let mut editor: Editor<ReplHelper, DefaultHistory> =
        Editor::new().map_err(|e| ReplError::Statement(format!("terminal: {e}")))?;
    editor.set_helper(Some(ReplHelper::new(Arc::clone(&state))));
    // First Tab completes what is common, the second lists the choices, as in psql.
    editor.set_completion_type(CompletionType::List);
    editor.set_auto_add_history(false);
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("{BANNER}");
    let mut splitter = StatementSplitter::new();
    // Lines of the statement being typed, kept in history as one entry once it is complete.
    let mut typed: Vec<String> = Vec::new();
    loop {
        let line = tokio::task::block_in_place(|| editor.readline(PROMPT));
        let text = match line {
            Ok(text) => text,
            Err(ReadlineError::Interrupted) => {
                splitter = StatementSplitter::new();
                typed.clear();
                state
                    .lock()
                    .expect("completion state lock")
                    .statement
                    .clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(ReplError::Statement(format!("terminal: {e}"))),
        };
        if !text.trim().is_empty() {
            typed.push(text.clone());
        }
        let mut quit = false;
        // A paste may bring several lines at once.
        for line in text.split('\n') {
            for piece in splitter.push_line(line) {
                if splitter.is_empty() && !typed.is_empty() {
                    let _ = editor.add_history_entry(typed.join("\n"));
                    typed.clear();
                }
                // Positions count from the statement's first line, as the user sees it.
                let piece = match piece {
                    Input::Sql { text, .. } => Input::Sql { text, line: 1 },
                    meta => meta,
                };
                match run(&mut session, piece).await {
                    Ok(Control::Quit) => quit = true,
                    Ok(_) => {}
                    Err(e) => eprintln!("{e}"),
                }
            }
        }
        {
            let mut state = state.lock().expect("completion state lock");
            state.statement = splitter.pending().to_string();
            state.vocabulary = session.vocabulary();
        }
        if quit {
            break;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    // The prompt is gone: its background queries go with it.
    session.stop_all();
    session.finish().await
}
