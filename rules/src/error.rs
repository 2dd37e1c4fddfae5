//! The crate's error type.

/// What can stop a rules command before it has anything to report.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A rule test file is malformed.
    #[error("{file}:{line}: {message}")]
    Fixture {
        /// The test file.
        file: String,
        /// Its line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The directory is not laid out as a rules directory.
    #[error("{0}")]
    Layout(String),
    /// The engine refused something the runner built (not the rule's fault).
    #[error(transparent)]
    Engine(#[from] vigil_engine::Error),
}

impl RulesError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
