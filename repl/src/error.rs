//! [`ReplError`]: what can go wrong in a REPL session.

/// An error of the REPL.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    /// A statement or command failed; the message is ready for the terminal.
    #[error("{0}")]
    Statement(String),
    /// Printing results failed.
    #[error("printing results: {0}")]
    Output(String),
    /// Reading input failed.
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
}
