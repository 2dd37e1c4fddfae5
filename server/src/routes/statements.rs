//! `POST /v1/statements` and `POST /v1/validate`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorBody};
use crate::service::{Service, StatementResult};

/// A request carrying SQL.
#[derive(Debug, Deserialize)]
pub struct SqlRequest {
    /// One or more statements separated by `;`.
    pub sql: String,
}

/// What the statements did, in order.
#[derive(Debug, Serialize)]
pub struct StatementsResponse {
    /// One result per statement.
    pub results: Vec<StatementResult>,
}

/// Runs statements: DDL changes the catalog, CREATE SINK and SELECT start queries.
pub async fn submit(
    State(service): State<Arc<Service>>,
    request: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<StatementsResponse>), ApiError> {
    let Json(request) = request.map_err(rejected)?;
    let results = service.submit(&request.sql).await?;
    Ok((StatusCode::OK, Json(StatementsResponse { results })))
}

/// The verdict of `/v1/validate`.
#[derive(Debug, Serialize)]
pub struct ValidateResponse {
    /// True when every statement parses and plans.
    pub valid: bool,
    /// What is wrong, with positions.
    pub errors: Vec<ErrorBody>,
}

/// Parses and plans statements without running them.
pub async fn validate(
    State(service): State<Arc<Service>>,
    request: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Json<ValidateResponse>, ApiError> {
    let Json(request) = request.map_err(rejected)?;
    let errors = service.validate(&request.sql).await;
    Ok(Json(ValidateResponse {
        valid: errors.is_empty(),
        errors,
    }))
}

/// A body that is not `{"sql": "..."}` JSON, or too large, as a JSON error.
pub(crate) fn rejected(rejection: JsonRejection) -> ApiError {
    let code = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    ApiError::new(
        rejection.status(),
        code,
        format!(
            "{} (the body is JSON: {{\"sql\": \"...\"}})",
            rejection.body_text()
        ),
    )
}
