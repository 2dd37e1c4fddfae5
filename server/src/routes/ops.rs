//! Operations: health, readiness, Prometheus metrics and the OpenAPI document.

use std::fmt::Write;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use vigil_engine::runtime::OperatorStats;
use vigil_engine::time::WATERMARK_MIN;

use crate::queries::{QueryEntry, QueryStatus};
use crate::routes::ROUTES;
use crate::service::Service;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the rules are loaded and requests are served.
pub async fn readyz(State(service): State<Arc<Service>>) -> Json<Value> {
    Json(json!({ "status": "ready", "running_queries": service.queries.running() }))
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

/// `GET /openapi.json`: the API's routes, from the same table the router is built from.
pub async fn openapi() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let path = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        let mut operation = json!({
            "summary": route.summary,
            "responses": { "200": { "description": "success" } },
        });
        if route.path.contains("{id}") {
            operation["parameters"] = json!([{
                "name": "id", "in": "path", "required": true,
                "schema": { "type": "integer" }
            }]);
        }
        if route.path.contains("{name}") {
            operation["parameters"] = json!([{
                "name": "name", "in": "path", "required": true,
                "schema": { "type": "string" }
            }]);
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
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": paths,
    }))
}
