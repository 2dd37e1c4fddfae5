//! The HTTP API. [`ROUTES`] is the one list of routes: the router is built from it and the
//! OpenAPI document is generated from it, so the two cannot disagree.

pub mod catalog;
pub mod ops;
pub mod queries;
pub mod rules;
pub mod statements;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, post, put};

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
    /// Whether it is served without the token (health checks only).
    pub public: bool,
    /// The handler.
    pub handler: fn() -> MethodRouter<Arc<Service>>,
}

/// Every route the server has.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/statements",
        summary: "Run SQL statements: DDL changes the catalog, CREATE SINK and SELECT start queries",
        body: true,
        public: false,
        handler: || post(statements::submit),
    },
    Route {
        method: "POST",
        path: "/v1/validate",
        summary: "Parse and plan SQL without running it; errors with line and column",
        body: true,
        public: false,
        handler: || post(statements::validate),
    },
    Route {
        method: "GET",
        path: "/v1/queries",
        summary: "Every query with its status and live metrics",
        body: false,
        public: false,
        handler: || get(queries::list),
    },
    Route {
        method: "GET",
        path: "/v1/queries/{id}",
        summary: "One query with its status and live metrics",
        body: false,
        public: false,
        handler: || get(queries::get),
    },
    Route {
        method: "DELETE",
        path: "/v1/queries/{id}",
        summary: "Stop a query gracefully, flushing its windows and sink",
        body: false,
        public: false,
        handler: || delete(queries::stop),
    },
    Route {
        method: "GET",
        path: "/v1/queries/{id}/results",
        summary: "The query's rows as Server-Sent Events, or NDJSON with Accept: application/x-ndjson",
        body: false,
        public: false,
        handler: || get(queries::results),
    },
    Route {
        method: "GET",
        path: "/v1/queries/{id}/graph",
        summary: "The operator graph with live per-operator counters: rows in and out, watermark, state rows and bytes, late rows; as EXPLAIN ANALYZE text with Accept: text/plain",
        body: false,
        public: false,
        handler: || get(queries::graph),
    },
    Route {
        method: "GET",
        path: "/v1/rules",
        summary: "Deployed rule files with their content hashes, SQL and queries",
        body: false,
        public: false,
        handler: || get(rules::list),
    },
    Route {
        method: "PUT",
        path: "/v1/rules/{name}",
        summary: "Deploy a rule file, or replace the deployed version: new queries start before the old stop (with a state dir, after: they take over the old ones' state when the plan is the same)",
        body: true,
        public: false,
        handler: || put(rules::deploy),
    },
    Route {
        method: "POST",
        path: "/v1/rules/{name}/plan",
        summary: "What deploying a rule file would do, doing nothing: added, changed or unchanged, and per sink whether its checkpointed state is kept or reset",
        body: true,
        public: false,
        handler: || post(rules::plan),
    },
    Route {
        method: "DELETE",
        path: "/v1/rules/{name}",
        summary: "Stop a rule's queries and remove it",
        body: false,
        public: false,
        handler: || delete(rules::remove),
    },
    Route {
        method: "GET",
        path: "/v1/catalog",
        summary: "Sources, views and sinks with schemas and options, secrets masked",
        body: false,
        public: false,
        handler: || get(catalog::catalog),
    },
    Route {
        method: "GET",
        path: "/metrics",
        summary: "Per-query counters in Prometheus text format",
        body: false,
        public: false,
        handler: || get(ops::metrics),
    },
    Route {
        method: "GET",
        path: "/openapi.json",
        summary: "This document",
        body: false,
        public: false,
        handler: || get(ops::openapi),
    },
    Route {
        method: "GET",
        path: "/healthz",
        summary: "Liveness",
        body: false,
        public: true,
        handler: || get(ops::healthz),
    },
    Route {
        method: "GET",
        path: "/readyz",
        summary: "Readiness",
        body: false,
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
        .fallback(|| async { ApiError::not_found("no such route (GET /openapi.json lists them)") })
        .layer(DefaultBodyLimit::max(service.config.max_body_bytes))
        .with_state(service)
}
