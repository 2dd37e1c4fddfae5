//! [`ReplHelper`]: what rustyline asks while a line is edited; here, tab completion.

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::completion::Vocabulary;

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

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}
