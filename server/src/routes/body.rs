//! Reading the whole request body before the request is routed.
//!
//! A server that answers before reading the body (no such route, a missing token, a route
//! that takes no body) and then closes the connection leaves the client's write unfinished:
//! the client sees a broken pipe instead of the answer. Reading the body first, up to the
//! body limit, lets every client read its answer.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Middleware: buffers the body (at most `limit` bytes) and hands the request on.
pub(crate) async fn read_body_first(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(error) => unreadable(limit, &error).into_response(),
    }
}

/// A body over the limit is 413; one the connection could not deliver is 400.
fn unreadable(limit: usize, error: &axum::Error) -> ApiError {
    let too_large = std::error::Error::source(error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
    if too_large {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    } else {
        ApiError::bad_request(format!("the body could not be read: {error}"))
    }
}
