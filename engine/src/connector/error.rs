//! [`ConnectorError`]: what sources and sinks report.

/// An error of a source or sink.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// An option is missing or wrong.
    #[error("option '{key}': {message}")]
    Config {
        /// The option.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The declared schema does not fit the connector.
    #[error("schema: {0}")]
    Schema(String),
    /// The connector cannot play this role.
    #[error("{0}")]
    Unsupported(String),
    /// A file or socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Data could not be encoded or decoded.
    #[error("{0}")]
    Format(String),
    /// The external system failed.
    #[error("{0}")]
    External(String),
}

impl ConnectorError {
    /// A [`ConnectorError::Config`] for `key`.
    pub fn config(key: &str, message: impl Into<String>) -> Self {
        ConnectorError::Config {
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A [`ConnectorError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ConnectorError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for ConnectorError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        ConnectorError::Format(e.to_string())
    }
}
