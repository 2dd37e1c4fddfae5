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

/// Runs the statements of `sql` (a file given with `--init`) without waiting for the
/// background queries they start.
pub async fn run_script_text(session: &mut Session, sql: &str) -> Result<(), ReplError> {
    let mut splitter = StatementSplitter::new();
    let mut pieces: Vec<Input> = sql.lines().flat_map(|l| splitter.push_line(l)).collect();
    pieces.extend(splitter.finish());
    for piece in pieces {
        run(session, piece).await?;
    }
    Ok(())
}

/// Runs one statement or meta command.
pub(crate) async fn run(session: &mut Session, piece: Input) -> Result<Control, ReplError> {
    match piece {
        Input::Sql { text, line } => session
            .execute(&text, line)
            .await
            .map(|()| Control::Continue),
        Input::Meta(command) => session.meta(&command).await,
    }
}
