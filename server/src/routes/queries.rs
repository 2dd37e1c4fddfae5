//! `/v1/queries`: list, inspect, stop, and stream a query's results.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use vigil_engine::runtime::OperatorStats;
use vigil_engine::time::format_rfc3339;

use super::extract::{ApiPath, ApiQuery, accepts};
use crate::error::ApiError;
use crate::queries::{QueryEntry, QueryStatus};
use crate::results::ResultEvent;
use crate::service::{STOP_TIMEOUT, Service};

/// A query as the API shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QueryView {
    id: u64,
    name: String,
    kind: &'static str,
    sql: String,
    status: QueryStatus,
    started_at: String,
    metrics: MetricsView,
}

/// A query's live counters.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MetricsView {
    events_in: u64,
    rows_out: u64,
    /// Events read per second since the query started.
    events_per_second: f64,
    /// The output watermark (RFC 3339), absent before the first.
    watermark: Option<String>,
    late_events: u64,
    dead_letters: u64,
    row_errors: u64,
    state_rows: u64,
    state_bytes: u64,
    connector_errors: u64,
    /// Messages in the query's Kafka partitions not yet read, per source, where known.
    consumer_lag: std::collections::BTreeMap<String, u64>,
    /// The last checkpoint, with a state dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<CheckpointView>,
    checkpoint_failures: u64,
}

/// The last checkpoint of a query.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckpointView {
    epoch: u64,
    /// When it was taken (RFC 3339); absent for the checkpoint restored at the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    taken_at: Option<String>,
    bytes: u64,
    duration_ms: u64,
    /// True when this is the checkpoint the query resumed from.
    restored: bool,
}

impl CheckpointView {
    fn of(report: vigil_engine::runtime::CheckpointReport) -> Self {
        Self {
            epoch: report.epoch,
            taken_at: (!report.restored)
                .then(|| format_rfc3339(report.taken_at_ms.saturating_mul(1_000_000)))
                .flatten(),
            bytes: report.bytes,
            duration_ms: report.duration_ms,
            restored: report.restored,
        }
    }
}

impl QueryView {
    /// The view of `entry` now.
    pub fn of(entry: &QueryEntry) -> Self {
        let m = entry.metrics.snapshot();
        let seconds = entry.started.elapsed().map_or(0.0, |d| d.as_secs_f64());
        let started_ns = (entry.started_epoch_seconds() * 1e9) as i64;
        Self {
            id: entry.id,
            name: entry.name.clone(),
            kind: entry.kind,
            sql: entry.sql.clone(),
            status: entry.status(),
            started_at: format_rfc3339(started_ns).unwrap_or_default(),
            metrics: MetricsView {
                events_in: m.events_in,
                rows_out: m.rows_out,
                events_per_second: if seconds > 0.0 {
                    (m.events_in as f64 / seconds).round()
                } else {
                    0.0
                },
                watermark: format_rfc3339(m.watermark),
                late_events: m.late_events,
                dead_letters: m.dead_letters,
                row_errors: m.row_errors,
                state_rows: m.state_rows,
                state_bytes: m.state_bytes,
                connector_errors: m.connector_errors,
                consumer_lag: entry.metrics.consumer_lags(),
                checkpoint: entry.metrics.last_checkpoint().map(CheckpointView::of),
                checkpoint_failures: entry
                    .metrics
                    .checkpoint_failures
                    .load(std::sync::atomic::Ordering::Relaxed),
            },
        }
    }
}

/// What the last checkpoint held, as `EXPLAIN ANALYZE` shows it above the operators.
fn checkpoint_line(c: &vigil_engine::runtime::CheckpointReport) -> String {
    let view = CheckpointView::of(*c);
    match view.taken_at {
        Some(at) => format!(
            "last checkpoint: epoch {}, {} bytes, written in {} ms at {at}\n",
            c.epoch, c.bytes, c.duration_ms
        ),
        None => format!("resumed from checkpoint epoch {}\n", c.epoch),
    }
}

/// The list of queries.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QueryList {
    queries: Vec<QueryView>,
}

/// `GET /v1/queries`.
pub async fn list(State(service): State<Arc<Service>>) -> Json<QueryList> {
    let queries = service
        .queries
        .all()
        .iter()
        .map(|q| QueryView::of(q))
        .collect();
    Json(QueryList { queries })
}

fn find(service: &Service, id: u64) -> Result<Arc<QueryEntry>, ApiError> {
    service
        .queries
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no query {id}")))
}

/// `GET /v1/queries/{id}`.
pub async fn get(
    State(service): State<Arc<Service>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<QueryView>, ApiError> {
    let entry = find(&service, id)?;
    Ok(Json(QueryView::of(&entry)))
}

/// `DELETE /v1/queries/{id}`: stops a running query gracefully (windows and sinks flushed)
/// and answers with its final state; an ended query is taken out of the list, freeing its
/// results.
pub async fn stop(
    State(service): State<Arc<Service>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<QueryView>, ApiError> {
    let entry = find(&service, id)?;
    if entry.ended() {
        service.queries.remove_ended(id);
    } else {
        entry.stop(STOP_TIMEOUT).await;
    }
    service.forget_run(id).await;
    Ok(Json(QueryView::of(&entry)))
}

/// Where a results client resumes: `?after=N`, or the SSE `Last-Event-ID` header.
#[derive(Debug, Default, Deserialize)]
pub struct ResultsParams {
    /// The id of the last row the client saw.
    after: Option<u64>,
}

/// `GET /v1/queries/{id}/results`: Server-Sent Events, or NDJSON when the client asks for
/// `application/x-ndjson`. Rows carry their change kind in `op` and their number as the
/// event id; a client resuming after a row gets only later ones; a client that falls behind
/// gets a gap marker; the stream ends with the query.
pub async fn results(
    State(service): State<Arc<Service>>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<ResultsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let entry = find(&service, id)?;
    let after = match params.after {
        Some(after) => Some(after),
        None => last_event_id(&headers)?,
    };
    Ok(stream_results(&entry, &headers, after, None))
}

/// The `Last-Event-ID` a reconnecting SSE client sends.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "Last-Event-ID '{text}' is not a row id this server sent (ids are whole numbers)"
        ))
    })
}

/// A response streaming `entry`'s results after row `after`, as SSE or NDJSON per the
/// `Accept` header; `first`, when given, is sent before the rows.
pub(crate) fn stream_results(
    entry: &QueryEntry,
    headers: &HeaderMap,
    after: Option<u64>,
    first: Option<serde_json::Value>,
) -> Response {
    let events = events(entry, after);
    let query_id = [("vigil-query-id", entry.id.to_string())];
    if accepts(headers, "application/x-ndjson") {
        let first = first.map(|value| format!("{value}\n"));
        let lines = stream::iter(first)
            .chain(events.map(|event| ndjson_line(&event)))
            .map(Ok::<_, Infallible>);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            query_id,
            Body::from_stream(lines),
        )
            .into_response();
    }
    let first = first.map(|value| Event::default().event("query").data(value.to_string()));
    let sse = stream::iter(first)
        .chain(events.map(|event| sse_event(&event)))
        .map(Ok::<_, Infallible>);
    (query_id, Sse::new(sse).keep_alive(KeepAlive::default())).into_response()
}

/// The replayed events, then the live ones until the end. The stream counts as one of the
/// query's watchers while it lives.
fn events(
    entry: &QueryEntry,
    after: Option<u64>,
) -> impl Stream<Item = ResultEvent> + Send + 'static {
    let subscription = entry.results.subscribe(after);
    let replay = stream::iter(subscription.replay);
    let live = stream::unfold(
        (subscription.live, subscription.watching),
        |(receiver, watching)| async move {
            let mut receiver = receiver?;
            let event = match receiver.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(skipped)) => ResultEvent::Gap(skipped),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let next = (!matches!(event, ResultEvent::End(_))).then_some(receiver);
            Some((event, (next, watching)))
        },
    );
    replay.chain(live)
}

fn ndjson_line(event: &ResultEvent) -> String {
    match event {
        ResultEvent::Row { row, .. } => format!("{row}\n"),
        ResultEvent::Gap(skipped) => format!("{}\n", serde_json::json!({ "gap": skipped })),
        ResultEvent::End(status) => format!("{}\n", serde_json::json!({ "end": &**status })),
    }
}

fn sse_event(event: &ResultEvent) -> Event {
    match event {
        ResultEvent::Row { id, row } => Event::default()
            .event("row")
            .id(id.to_string())
            .data(&**row),
        ResultEvent::Gap(skipped) => Event::default()
            .event("gap")
            .data(serde_json::json!({ "skipped": skipped }).to_string()),
        ResultEvent::End(status) => Event::default()
            .event("end")
            .data(serde_json::json!({ "status": &**status }).to_string()),
    }
}

/// One operator with its live counters.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OperatorView {
    id: usize,
    operator: &'static str,
    /// What it does, as EXPLAIN shows it.
    detail: String,
    inputs: Vec<usize>,
    rows_in: u64,
    rows_out: u64,
    late_rows: u64,
    /// Its watermark (RFC 3339), absent before the first.
    watermark: Option<String>,
    state_rows: u64,
    state_bytes: u64,
}

/// A query's operator graph.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GraphView {
    id: u64,
    sql: String,
    status: QueryStatus,
    /// Operators by id; the result is the one no other operator reads.
    operators: Vec<OperatorView>,
}

/// `GET /v1/queries/{id}/graph`: the operator graph with live per-operator counters, as
/// JSON, or as the text of `EXPLAIN ANALYZE` when the client accepts `text/plain`.
pub async fn graph(
    State(service): State<Arc<Service>>,
    ApiPath(id): ApiPath<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let entry = find(&service, id)?;
    let stats = entry.metrics.operators();
    if accepts(&headers, "text/plain") {
        let checkpoint = entry
            .metrics
            .last_checkpoint()
            .map(|c| checkpoint_line(&c))
            .unwrap_or_default();
        let text = format!(
            "query {} ({}), {}\n{checkpoint}{}",
            entry.id,
            entry.name,
            entry.status().label(),
            OperatorStats::render_tree(&stats)
        );
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let operators = stats
        .into_iter()
        .map(|op| OperatorView {
            id: op.id,
            operator: op.operator,
            detail: op.detail,
            inputs: op.inputs,
            rows_in: op.rows_in,
            rows_out: op.rows_out,
            late_rows: op.late_rows,
            watermark: format_rfc3339(op.watermark),
            state_rows: op.state_rows,
            state_bytes: op.state_bytes,
        })
        .collect();
    Ok(Json(GraphView {
        id: entry.id,
        sql: entry.sql.clone(),
        status: entry.status(),
        operators,
    })
    .into_response())
}
