//! Operations: health, readiness, Prometheus metrics and the OpenAPI document.

use std::fmt::Write;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Value, json};
use vigil_engine::runtime::OperatorStats;
use vigil_engine::time::WATERMARK_MIN;

use crate::error::ErrorEnvelope;
use crate::queries::{QueryEntry, QueryStatus};
use crate::routes::{Answer, ROUTES};
use crate::service::Service;

/// The answer of `/healthz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Liveness {
    /// Always `ok`: the process answers.
    status: &'static str,
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Readiness {
    /// `ready`, or `not_ready` (with status 503).
    status: &'static str,
    running_queries: usize,
    /// Why not ready: each source or sink of a running query that cannot reach its broker.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<Unreachable>,
}

/// A running query's source or sink that cannot reach its broker.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Unreachable {
    query_id: u64,
    /// The query's name (its sink, or `select`).
    name: String,
    /// `source NAME`, `sink`, `late events sink` or `dead letters`.
    component: String,
    reason: String,
}

/// `GET /readyz`: ready when every running query's sources and sinks reach their brokers;
/// 503 with the reasons while one cannot.
pub async fn readyz(State(service): State<Arc<Service>>) -> Response {
    let running: Vec<Arc<QueryEntry>> = service
        .queries
        .all()
        .into_iter()
        .filter(|q| !q.ended())
        .collect();
    let reasons: Vec<Unreachable> = running
        .iter()
        .flat_map(|q| {
            q.metrics
                .unreachable()
                .into_iter()
                .map(|(component, reason)| Unreachable {
                    query_id: q.id,
                    name: q.name.clone(),
                    component,
                    reason,
                })
        })
        .collect();
    let (code, status) = if reasons.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let readiness = Readiness {
        status,
        running_queries: running.len(),
        reasons,
    };
    (code, Json(readiness)).into_response()
}

/// A per-query series: name, help text, and how to read it from a snapshot.
type Counter = (
    &'static str,
    &'static str,
    fn(&vigil_engine::runtime::MetricsSnapshot) -> u64,
);

/// The last checkpoint of each query that has one: epoch, size, how long it took.
fn checkpoint_metrics(queries: &[Arc<QueryEntry>], out: &mut String) {
    type Read = fn(&vigil_engine::runtime::CheckpointReport) -> f64;
    let gauges: [(&str, &str, Read); 3] = [
        (
            "vigil_query_checkpoint_epoch",
            "The last checkpoint's number.",
            |c| c.epoch as f64,
        ),
        (
            "vigil_query_checkpoint_bytes",
            "Bytes the last checkpoint wrote.",
            |c| c.bytes as f64,
        ),
        (
            "vigil_query_checkpoint_duration_seconds",
            "How long writing the last checkpoint took.",
            |c| c.duration_ms as f64 / 1e3,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for query in queries {
            if let Some(report) = query.metrics.last_checkpoint() {
                let labels = labels(query.id, &query.name);
                let _ = writeln!(out, "{name}{{{labels}}} {}", value(&report));
            }
        }
    }
}

/// `GET /metrics`: Prometheus text format, per query.
pub async fn metrics(State(service): State<Arc<Service>>) -> impl IntoResponse {
    let queries = service.queries.all();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP vigil_queries_running Queries running now.");
    let _ = writeln!(out, "# TYPE vigil_queries_running gauge");
    let _ = writeln!(out, "vigil_queries_running {}", service.queries.running());
    let counters: [Counter; 8] = [
        (
            "vigil_query_events_in_total",
            "Events read from sources.",
            |m| m.events_in,
        ),
        (
            "vigil_query_rows_out_total",
            "Rows written to the query's sink.",
            |m| m.rows_out,
        ),
        (
            "vigil_query_late_events_total",
            "Events that arrived after their windows closed.",
            |m| m.late_events,
        ),
        (
            "vigil_query_dead_letters_total",
            "Malformed input records sent to dead letters.",
            |m| m.dead_letters,
        ),
        (
            "vigil_query_row_errors_total",
            "Rows an expression failed on, sent to dead letters.",
            |m| m.row_errors,
        ),
        (
            "vigil_query_connector_errors_total",
            "Connector errors recovered by retrying.",
            |m| m.connector_errors,
        ),
        (
            "vigil_query_state_rows",
            "Rows held in operator state.",
            |m| m.state_rows,
        ),
        (
            "vigil_query_state_bytes",
            "Bytes held in operator state.",
            |m| m.state_bytes,
        ),
    ];
    let snapshots: Vec<_> = queries
        .iter()
        .map(|q| (labels(q.id, &q.name), q.metrics.snapshot(), q.status()))
        .collect();
    for (name, help, value) in counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, m, _) in &snapshots {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(m));
        }
    }
    checkpoint_metrics(&queries, &mut out);
    let _ = writeln!(
        out,
        "# HELP vigil_query_watermark_seconds The query's output watermark."
    );
    let _ = writeln!(out, "# TYPE vigil_query_watermark_seconds gauge");
    for (labels, m, _) in &snapshots {
        if m.watermark != WATERMARK_MIN {
            let _ = writeln!(
                out,
                "vigil_query_watermark_seconds{{{labels}}} {}",
                m.watermark as f64 / 1e9
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP vigil_query_watermark_lag_seconds How far the output watermark is behind the wall clock."
    );
    let _ = writeln!(out, "# TYPE vigil_query_watermark_lag_seconds gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for (labels, m, status) in &snapshots {
        if m.watermark != WATERMARK_MIN && *status == QueryStatus::Running {
            let lag = now - m.watermark as f64 / 1e9;
            let _ = writeln!(
                out,
                "vigil_query_watermark_lag_seconds{{{labels}}} {lag:.3}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP vigil_source_consumer_lag_messages Messages in a Kafka source's partitions not yet read."
    );
    let _ = writeln!(out, "# TYPE vigil_source_consumer_lag_messages gauge");
    for q in &queries {
        for (source, lag) in q.metrics.consumer_lags() {
            let _ = writeln!(
                out,
                "vigil_source_consumer_lag_messages{{{},source=\"{}\"}} {lag}",
                labels(q.id, &q.name),
                escape(&source)
            );
        }
    }
    operator_series(&queries, &mut out);
    let _ = writeln!(
        out,
        "# HELP vigil_query_running Whether the query is running (1) or ended (0)."
    );
    let _ = writeln!(out, "# TYPE vigil_query_running gauge");
    for (labels, _, status) in &snapshots {
        let running = u8::from(*status == QueryStatus::Running);
        let _ = writeln!(out, "vigil_query_running{{{labels}}} {running}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// A per-operator series: name, help, type, and how to read it.
type OperatorSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&OperatorStats) -> u64,
);

/// Per-operator counters of every query.
fn operator_series(queries: &[Arc<QueryEntry>], out: &mut String) {
    let series: [OperatorSeries; 5] = [
        (
            "vigil_operator_rows_in_total",
            "Rows an operator received.",
            "counter",
            |o| o.rows_in,
        ),
        (
            "vigil_operator_rows_out_total",
            "Rows an operator emitted.",
            "counter",
            |o| o.rows_out,
        ),
        (
            "vigil_operator_late_rows_total",
            "Late rows an operator dropped.",
            "counter",
            |o| o.late_rows,
        ),
        (
            "vigil_operator_state_rows",
            "Rows an operator holds in state.",
            "gauge",
            |o| o.state_rows,
        ),
        (
            "vigil_operator_state_bytes",
            "Bytes an operator holds in state.",
            "gauge",
            |o| o.state_bytes,
        ),
    ];
    let operators: Vec<(String, Vec<OperatorStats>)> = queries
        .iter()
        .map(|q| (labels(q.id, &q.name), q.metrics.operators()))
        .collect();
    for (name, help, kind, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, ops) in &operators {
            for op in ops {
                let _ = writeln!(
                    out,
                    "{name}{{{labels},operator=\"{}\",node=\"{}\"}} {}",
                    op.operator,
                    op.id,
                    value(op)
                );
            }
        }
    }
}

/// Prometheus labels of a query, with the name's quotes and backslashes escaped.
fn labels(id: u64, name: &str) -> String {
    format!("query=\"{id}\",name=\"{}\"", escape(name))
}

/// A label value with its quotes and backslashes escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `GET /openapi.json`: the API's routes, from the same table the router is built from,
/// with the schema of each answer derived from the type its handler answers with.
pub async fn openapi() -> Json<Value> {
    let mut schemas = SchemaSettings::openapi3().into_generator();
    let error = schemas.subschema_for::<ErrorEnvelope>();
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let path = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        let mut operation = json!({
            "summary": route.summary,
            "responses": {
                "200": success(route.answer, &mut schemas),
                "default": {
                    "description": "an error, with a stable code",
                    "content": { "application/json": { "schema": error } }
                },
            },
        });
        if let Some(parameter) = path_parameter(route.path) {
            operation["parameters"] = json!([parameter]);
        }
        if route.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": {
                    "type": "object", "required": ["sql"],
                    "properties": { "sql": { "type": "string" } }
                } } }
            });
        }
        if !route.public {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        path[route.method.to_ascii_lowercase()] = operation;
    }
    Json(json!({
        "openapi": "3.0.3",
        "info": { "title": "Vigil", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "schemas": schemas.take_definitions(true),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        },
        "paths": paths,
    }))
}

/// The success response of a route answering `answer`.
fn success(answer: Answer, schemas: &mut SchemaGenerator) -> Value {
    let content = match answer {
        Answer::Json(schema) => json!({ "application/json": { "schema": schema(schemas) } }),
        Answer::Text(media_type) => {
            let text = json!({ "schema": { "type": "string" } });
            Value::Object([(media_type.to_string(), text)].into_iter().collect())
        }
        Answer::Rows => json!({
            "text/event-stream": { "schema": {
                "type": "string",
                "description": "events `row` (data: the row as JSON with its change kind in \
                    `op`; id: its number, for Last-Event-ID), `gap` (rows skipped), `end` \
                    (the query's final status)"
            } },
            "application/x-ndjson": { "schema": {
                "type": "string",
                "description": "one row per line; {\"gap\": n} and {\"end\": status} lines"
            } },
        }),
    };
    json!({ "description": "success", "content": content })
}

/// The `{id}` or `{name}` parameter of a path.
fn path_parameter(path: &str) -> Option<Value> {
    let (name, kind) = if path.contains("{id}") {
        ("id", "integer")
    } else if path.contains("{name}") {
        ("name", "string")
    } else {
        return None;
    };
    Some(json!({ "name": name, "in": "path", "required": true, "schema": { "type": kind } }))
}
