//! Non-interactive use: statements from a pipe or file, no prompts, stop at the first error.

use std::io::BufRead;

use crate::ReplError;
use crate::session::{Control, Session};
use crate::splitter::{Input, StatementSplitter};

/// Runs every statement of `input` in order, then waits for the background queries. Returns
/// the first error.
pub async fn run_script(mut session: Session, input: impl BufRead) -> Result<(), ReplError> {
    let mut splitter = StatementSplitter::new();
    for line in input.lines() {
        for piece in splitter.push_line(&line?) {
            if run(&mut session, piece).await? == Control::Quit {
                return session.finish().await;
            }
        }
    }
    if let Some(piece) = splitter.finish() {
        run(&mut session, piece).await?;
    }
    session.finish().await
}

/// Runs the statements of the file at `path` without waiting for the background queries
/// they start; errors name the file.
pub async fn run_file(session: &mut Session, path: &str) -> Result<(), ReplError> {
    let sql = std::fs::read_to_string(path)
        .map_err(|e| ReplError::Statement(format!("cannot read {path}: {e}")))?;
    let previous = session.set_origin(path);
    let result = run_script_text(session, &sql).await;
    session.set_origin(&previous);
    result
}

/// Runs the statements of `sql` without waiting for the background queries they start.
pub async fn run_script_text(session: &mut Session, sql: &str) -> Result<(), ReplError> {
    let mut splitter = StatementSplitter::new();
    let mut pieces: Vec<Input> = sql.lines().flat_map(|l| splitter.push_line(l)).collect();
    pieces.extend(splitter.finish());
    for piece in pieces {
        // `\quit` inside a file ends the file, not the session.
        if run(session, piece).await? == Control::Quit {
            break;
        }
    }
    Ok(())
}

/// Runs one statement or meta command; `\i FILE` runs the file's statements.
pub(crate) async fn run(session: &mut Session, piece: Input) -> Result<Control, ReplError> {
    match piece {
        Input::Sql { text, line } => session
            .execute(&text, line)
            .await
            .map(|()| Control::Continue),
        Input::Meta(command) => match session.meta(&command).await? {
            // Boxed: a file may include another.
            Control::Include(path) => Box::pin(run_file(session, &path))
                .await
                .map(|()| Control::Continue),
            control => Ok(control),
        },
    }
}
