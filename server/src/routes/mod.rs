//! The HTTP API. [`ROUTES`] is the one list of API routes: the router is built from it and
//! the OpenAPI document is generated from it, so the two cannot disagree. The web console's
//! files (`/`, `/console/...`) are merged in beside them; they are pages, not API.

mod body;
pub mod catalog;
mod extract;
pub mod ops;
pub mod queries;
pub mod rules;
pub mod statements;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, post, put};
use schemars::{Schema, SchemaGenerator};

use crate::auth::require_token;
use crate::error::ApiError;
use crate::service::Service;

/// One route of the API.
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path, with `{id}` for a query id.
    pub path: &'static str,
    /// What it does, for the OpenAPI document.
    pub summary: &'static str,
    /// Whether it takes a JSON body `{"sql": ...}`.
    pub body: bool,
    /// What it answers with on success.
    pub answer: Answer,
    /// Whether it is served without the token (health checks only).
    pub public: bool,
    /// The handler.
    pub handler: fn() -> MethodRouter<Arc<Service>>,
}

/// What a route answers with on success, for the OpenAPI document.
#[derive(Clone, Copy)]
pub enum Answer {
    /// JSON of the schema this gives, derived from the type the handler answers with.
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// Text of this media type.
    Text(&'static str),
    /// Result rows streamed as Server-Sent Events, or NDJSON on request.
    Rows,
}

/// Every route the server has.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/statements",
        summary: "Run SQL statements: DDL changes the catalog, CREATE SINK and SELECT start queries",
        body: true,
        answer: Answer::Json(|g| g.subschema_for::<statements::StatementsResponse>()),
        public: false,
        handler: || post(statements::submit),
    },
    Route {
        method: "POST",
        path: "/v1/query",
        summary: "Start one SELECT and stream its rows on the response (SSE, or NDJSON)",
        body: true,
        answer: Answer::Rows,
        public: false,
        handler: || post(statements::query),
    },
    Route {
        method: "POST",
        path: "/v1/validate",
        summary: "Parse and plan SQL without running it; errors with line and column",
        body: true,
        answer: Answer::Json(|g| g.subschema_for::<statements::ValidateResponse>()),
        public: false,
        handler: || post(statements::validate),
    },
    Route {
        method: "GET",
        path: "/v1/queries",
        summary: "Every query with its status and live metrics",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<queries::QueryList>()),
        public: false,
        handler: || get(queries::list),
    },
    Route {
        method: "GET",
        path: "/v1/queries/{id}",
        summary: "One query with its status and live metrics",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<queries::QueryView>()),
        public: false,
        handler: || get(queries::get),
    },
    Route {
        method: "DELETE",
        path: "/v1/queries/{id}",
        summary: "Stop a query gracefully, flushing its windows and sink",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<queries::QueryView>()),
        public: false,
        handler: || delete(queries::stop),
    },
    Route {
        method: "GET",
        path: "/v1/queries/{id}/results",
        summary: "The query's rows as Server-Sent Events, or NDJSON with Accept: application/x-ndjson",
        body: false,
        answer: Answer::Rows,
        public: false,
        handler: || get(queries::results),
    },
    Route {
        method: "GET",
        path: "/v1/queries/{id}/graph",
        summary: "The operator graph with live per-operator counters: rows in and out, watermark, state rows and bytes, late rows; as EXPLAIN ANALYZE text with Accept: text/plain",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<queries::GraphView>()),
        public: false,
        handler: || get(queries::graph),
    },
    Route {
        method: "GET",
        path: "/v1/rules",
        summary: "Deployed rule files with their content hashes, SQL and queries",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<rules::RulesResponse>()),
        public: false,
        handler: || get(rules::list),
    },
    Route {
        method: "PUT",
        path: "/v1/rules/{name}",
        summary: "Deploy a rule file, or replace the deployed version: new queries start before the old stop (with a state dir, after: they take over the old ones' state when the plan is the same)",
        body: true,
        answer: Answer::Json(|g| g.subschema_for::<crate::rules::RuleDeployment>()),
        public: false,
        handler: || put(rules::deploy),
    },
    Route {
        method: "POST",
        path: "/v1/rules/{name}/plan",
        summary: "What deploying a rule file would do, doing nothing: added, changed or unchanged, and per sink whether its checkpointed state is kept or reset",
        body: true,
        answer: Answer::Json(|g| g.subschema_for::<crate::rules::RulePlan>()),
        public: false,
        handler: || post(rules::plan),
    },
    Route {
        method: "DELETE",
        path: "/v1/rules/{name}",
        summary: "Stop a rule's queries and remove it",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<crate::rules::RuleView>()),
        public: false,
        handler: || delete(rules::remove),
    },
    Route {
        method: "GET",
        path: "/v1/catalog",
        summary: "Sources, views and sinks with schemas and options, secrets masked",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<catalog::CatalogView>()),
        public: false,
        handler: || get(catalog::catalog),
    },
    Route {
        method: "GET",
        path: "/metrics",
        summary: "Per-query counters in Prometheus text format",
        body: false,
        answer: Answer::Text("text/plain; version=0.0.4"),
        public: false,
        handler: || get(ops::metrics),
    },
    Route {
        method: "GET",
        path: "/openapi.json",
        summary: "This document",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<serde_json::Value>()),
        public: false,
        handler: || get(ops::openapi),
    },
    Route {
        method: "GET",
        path: "/healthz",
        summary: "Liveness",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<ops::Liveness>()),
        public: true,
        handler: || get(ops::healthz),
    },
    Route {
        method: "GET",
        path: "/readyz",
        summary: "Readiness: 503, with the reasons, while a running query's source or sink cannot reach its broker",
        body: false,
        answer: Answer::Json(|g| g.subschema_for::<ops::Readiness>()),
        public: true,
        handler: || get(ops::readyz),
    },
];

/// The router over `service`: token-checked routes, public health checks, a body limit.
pub fn router(service: Arc<Service>) -> Router {
    let (public, protected): (Vec<&Route>, Vec<&Route>) = ROUTES.iter().partition(|r| r.public);
    let build = |routes: Vec<&Route>| {
        routes.into_iter().fold(Router::new(), |router, r| {
            router.route(r.path, (r.handler)())
        })
    };
    let protected = build(protected).route_layer(middleware::from_fn_with_state(
        Arc::clone(&service),
        require_token,
    ));
    build(public)
        .merge(protected)
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::not_found("no such route (GET /openapi.json lists them)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (GET /openapi.json lists them)",
            )
        })
        .layer(DefaultBodyLimit::max(service.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            service.config.max_body_bytes,
            body::read_body_first,
        ))
        .with_state(service)
}
