//! `POST /v1/statements` and `POST /v1/validate`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::accepts;
use super::queries::stream_results;
use crate::error::{ApiError, ErrorBody};
use crate::service::{Service, StatementResult};

/// A request carrying SQL.
#[derive(Debug, Deserialize)]
pub struct SqlRequest {
    /// One or more statements separated by `;`.
    pub sql: String,
}

/// What the statements did, in order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatementsResponse {
    /// One result per statement.
    pub results: Vec<StatementResult>,
}

/// Runs statements: DDL changes the catalog, CREATE SINK and SELECT start queries. A
/// client accepting `text/event-stream` sends one SELECT and gets its results on the
/// response, as from `POST /v1/query`.
pub async fn submit(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    request: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request.map_err(rejected)?;
    if accepts(&headers, "text/event-stream") {
        return stream_select(&service, &headers, &request.sql).await;
    }
    let results = service.submit(&request.sql).await?;
    Ok((StatusCode::OK, Json(StatementsResponse { results })).into_response())
}

/// `POST /v1/query`: starts one SELECT and streams its rows on the response, as SSE or (for
/// `Accept: application/x-ndjson`) NDJSON, led by an event naming the query's id. The query
/// stops once nobody has watched it for the grace period, so closing the response ends it.
pub async fn query(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    request: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request.map_err(rejected)?;
    stream_select(&service, &headers, &request.sql).await
}

async fn stream_select(
    service: &Service,
    headers: &HeaderMap,
    sql: &str,
) -> Result<Response, ApiError> {
    let entry = service.start_select(sql).await?;
    let first = serde_json::json!({ "query_id": entry.id });
    Ok(stream_results(&entry, headers, None, Some(first)))
}

/// The verdict of `/v1/validate`.
#[derive(Debug, Serialize, JsonSchema)]
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
