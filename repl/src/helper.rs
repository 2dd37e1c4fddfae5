//! [`ReplHelper`]: what rustyline asks while a line is edited: tab completion, and whether
//! Enter ends the statement or opens another line of it.

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::completion::Vocabulary;
use crate::splitter::StatementSplitter;

/// What completion knows, updated by the prompt loop between lines.
#[derive(Debug, Default)]
pub struct CompletionState {
    /// Names from the catalog and the session.
    pub vocabulary: Vocabulary,
    /// The earlier lines of the statement being typed.
    pub statement: String,
}

/// Completes SQL words, and file names after `\i`.
pub struct ReplHelper {
    state: Arc<Mutex<CompletionState>>,
    files: FilenameCompleter,
}

impl ReplHelper {
    /// A helper reading `state`.
    pub fn new(state: Arc<Mutex<CompletionState>>) -> Self {
        Self {
            state,
            files: FilenameCompleter::new(),
        }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let state = self.state.lock().expect("completion state lock");
        let command = line.trim_start();
        if state.statement.is_empty()
            && (command.starts_with("\\i ") || command.starts_with("\\include "))
        {
            return self.files.complete(line, pos, ctx);
        }
        let (start, words) = state.vocabulary.complete(&state.statement, line, pos);
        let pairs = words
            .into_iter()
            .map(|word| Pair {
                display: word.clone(),
                replacement: word,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

/// Enter on a statement without its `;` opens a new line in the same buffer, so the arrow
/// keys move up into the lines typed before, as in DuckDB's and IPython's prompts.
impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

/// Whether `buffer` holds only whole statements and meta commands (or nothing).
fn is_complete(buffer: &str) -> bool {
    let mut splitter = StatementSplitter::new();
    for line in buffer.split('\n') {
        splitter.push_line(line);
    }
    splitter.is_empty()
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::is_complete;

    #[test]
    fn a_buffer_is_complete_at_its_semicolon_or_a_meta_command() {
        assert!(is_complete(""));
        assert!(is_complete("\\d sensors"));
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT a\nFROM t;"));
        assert!(!is_complete("SELECT a\nFROM t"));
        assert!(!is_complete("SELECT ';'"));
        assert!(!is_complete("SELECT 1; SELECT"));
    }
}
