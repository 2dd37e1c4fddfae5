//! [`ApiError`]: every failure a client sees, as JSON with a stable code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use vigil_engine::Error as EngineError;

/// An error answered to a client: `{"error": {"code", "message", "line", "column"}}`.
///
/// 4xx codes are the client's to fix; 5xx only Vigil's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`sql_error`, `not_found`, ...).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// For SQL errors, where.
    pub line: Option<u64>,
    /// For SQL errors, where.
    pub column: Option<u64>,
}

impl ApiError {
    /// An error without a position.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    /// 404 for a missing query or object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 for a request the server cannot use.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 500 for a failure that is Vigil's, not the client's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The body of the response, also listed by `/v1/validate`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

/// The JSON of an error.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Line, for SQL errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Column, for SQL errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match &e {
            EngineError::Sql(_) => (StatusCode::BAD_REQUEST, "sql_error"),
            EngineError::Plan(_) => (StatusCode::BAD_REQUEST, "plan_error"),
            EngineError::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            EngineError::Connector(_) => (StatusCode::BAD_REQUEST, "connector_error"),
            EngineError::DataFusion(_) | EngineError::Arrow(_) => {
                (StatusCode::BAD_REQUEST, "plan_error")
            }
            EngineError::Execution(_) => (StatusCode::INTERNAL_SERVER_ERROR, "execution_error"),
            // A checkpoint of another plan, or a state dir that cannot be read.
            EngineError::State(_) => (StatusCode::CONFLICT, "state_error"),
            EngineError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        let location = e.as_sql().and_then(|s| s.location);
        let message = match &e {
            EngineError::Sql(s) => match &s.help {
                Some(help) => format!("{} ({help})", s.message),
                None => s.message.clone(),
            },
            other => other.to_string(),
        };
        Self {
            status,
            code,
            message,
            line: location.map(|l| l.line),
            column: location.map(|l| l.column),
        }
    }
}

impl From<vigil_engine::connector::ConnectorError> for ApiError {
    fn from(e: vigil_engine::connector::ConnectorError) -> Self {
        EngineError::from(e).into()
    }
}

/// How every error is answered.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ErrorEnvelope {
    error: ErrorBody,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        (self.status, Json(ErrorEnvelope { error: self.body() })).into_response()
    }
}

/// An error starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A rule file failed to load.
    #[error("{0}")]
    Rule(String),
    /// Binding or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}
