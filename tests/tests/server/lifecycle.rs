//! Transient queries live while watched; results resume after the last event id; one call
//! submits and streams; every error is JSON, and the OpenAPI document describes the answers.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil_server::ServerConfig;
use vigil_server::queries::TransientLifetime;

use super::{PACED_SOURCE, Running};

/// Transient queries that stop half a second after their last client leaves, and stay
/// listed two seconds once ended.
fn short_lived() -> ServerConfig {
    ServerConfig {
        transient: TransientLifetime {
            grace: Duration::from_millis(500),
            retention: Duration::from_secs(2),
        },
        ..ServerConfig::default()
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    id: Option<u64>,
    data: String,
}

/// The events of a streaming response, parsed as they arrive.
struct Events {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

impl Events {
    fn of(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map(|b| b.to_vec())),
            ),
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), waiting up to 30 s.
    async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    if let Some(event) = parse_event(&block) {
                        return event;
                    }
                    continue;
                }
                let chunk = self.body.next().await.expect("the stream goes on").unwrap();
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event within 30 s")
    }

    /// The next `row` event.
    async fn next_row(&mut self) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event == "row" {
                return event;
            }
        }
    }
}

fn parse_event(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent {
        event: String::new(),
        id: None,
        data: String::new(),
    };
    for line in block.lines() {
        if let Some(name) = line.strip_prefix("event: ") {
            event.event = name.to_string();
        } else if let Some(id) = line.strip_prefix("id: ") {
            event.id = Some(id.parse().expect("a numeric id"));
        } else if let Some(data) = line.strip_prefix("data: ") {
            event.data.push_str(data);
        }
    }
    (!event.event.is_empty()).then_some(event)
}

impl Running {
    /// The results of query `id` as SSE, resuming after `last_event_id` when given.
    async fn results(&self, id: u64, last_event_id: Option<&str>) -> Events {
        let mut request = self.request(reqwest::Method::GET, &format!("/v1/queries/{id}/results"));
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Events::of(response)
    }

    /// Waits until query `id` reaches status `state`; returns its status.
    async fn wait_for_state(&self, id: u64, state: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (status, query) = self.get_json(&format!("/v1/queries/{id}")).await;
                assert_eq!(status, StatusCode::OK, "{query}");
                if query["status"]["state"] == state {
                    return query["status"].clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("query {id} is not {state} within 30 s"))
    }

    /// Waits until query `id` has left the list.
    async fn wait_until_gone(&self, id: u64) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while self.get_json(&format!("/v1/queries/{id}")).await.0 != StatusCode::NOT_FOUND {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("query {id} is still listed after 30 s"));
    }

    /// Waits until query `id` has written at least `rows` rows.
    async fn wait_for_rows(&self, id: u64, rows: u64) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (_, query) = self.get_json(&format!("/v1/queries/{id}")).await;
                if query["metrics"]["rows_out"].as_u64().unwrap_or(0) >= rows {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("query {id} wrote fewer than {rows} rows in 30 s"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_query_stops_once_nobody_watches_it_and_frees_its_place() {
    let server = Running::start(ServerConfig {
        max_queries: 2,
        ..short_lived()
    })
    .await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let watched = server.start_query("SELECT sensor_id FROM sensors").await;
    let mut rows = server.results(watched, None).await;
    rows.next_row().await;
    let unwatched = server.start_query("SELECT temperature FROM sensors").await;
    let (status, body) = server
        .sql("/v1/statements", "SELECT humidity FROM sensors")
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_queries");

    // Nobody connects to the second: it stops once the grace has passed, and says why.
    let stopped = server.wait_for_state(unwatched, "stopped").await;
    let reason = stopped["reason"].as_str().unwrap();
    assert!(reason.contains("no results client"), "{reason}");
    // The first, watched all along, runs on; and the place is free again.
    let (_, query) = server.get_json(&format!("/v1/queries/{watched}")).await;
    assert_eq!(query["status"]["state"], "running", "{query}");
    server.start_query("SELECT humidity FROM sensors").await;

    // The first stops once its client leaves.
    drop(rows);
    server.wait_for_state(watched, "stopped").await;
    // An ended transient query leaves the list after its retention...
    server.wait_until_gone(unwatched).await;
    // ...and DELETE takes one out at once, answering its final state.
    let (status, body) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/queries/{watched}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["state"], "stopped");
    let (status, _) = server.get_json(&format!("/v1/queries/{watched}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_queries_count_against_the_cap_whichever_route_starts_them() {
    let server = Running::start(ServerConfig {
        max_queries: 1,
        ..short_lived()
    })
    .await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let rule = |threshold: u32| {
        format!(
            "CREATE SINK hot WITH (connector = 'stdout') AS \
             SELECT sensor_id FROM sensors WHERE temperature > {threshold};"
        )
    };
    let (status, body) = server.put_sql("/v1/rules/hot", &rule(30)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .sql("/v1/statements", "SELECT sensor_id FROM sensors")
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // A new version replaces the running one: the count stays at one.
    let (status, body) = server.put_sql("/v1/rules/hot", &rule(40)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let other = "CREATE SINK cold WITH (connector = 'stdout') AS \
                 SELECT sensor_id FROM sensors WHERE temperature < 0;";
    let (status, body) = server.put_sql("/v1/rules/cold", other).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_queries");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_resume_after_the_last_event_id_without_duplicates() {
    let server = Running::default().await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let id = server
        .start_query("SELECT sensor_id, ts FROM sensors")
        .await;
    let mut first = server.results(id, None).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(first.next_row().await);
    }
    let ids: Vec<Option<u64>> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids, [Some(1), Some(2), Some(3)]);
    drop(first);

    // Reconnecting after row 2 gives row 3 again, then the later ones, each once.
    let mut again = server.results(id, Some("2")).await;
    let resumed = again.next_row().await;
    assert_eq!((resumed.id, &resumed.data), (Some(3), &seen[2].data));
    for expected in 4..8 {
        assert_eq!(again.next_row().await.id, Some(expected));
    }
    drop(again);

    // An id the server never sent, or a bad ?after=, is a JSON error.
    let response = server
        .request(reqwest::Method::GET, &format!("/v1/queries/{id}/results"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    let (status, body) = server
        .get_json(&format!("/v1/queries/{id}/results?after=abc"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_query_string", "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_after_rows_no_longer_kept_is_told_of_the_gap() {
    let server = Running::default().await;
    let fast = PACED_SOURCE.replace("rate = '500'", "rate = '20000'");
    server.sql("/v1/statements", &fast).await;
    let id = server.start_query("SELECT sensor_id FROM sensors").await;
    // Watched, so it runs on while the rows pile up past what is kept for replay.
    let mut watching = server.results(id, None).await;
    watching.next_row().await;
    server.wait_for_rows(id, 3000).await;
    let mut resumed = server.results(id, Some("1")).await;
    let gap = resumed.next().await;
    assert_eq!(gap.event, "gap", "{gap:?}");
    let skipped: Value = serde_json::from_str(&gap.data).unwrap();
    let skipped = skipped["skipped"].as_u64().unwrap();
    assert!(skipped > 0);
    // The first row after the gap is the one after those skipped.
    let row = resumed.next_row().await;
    assert_eq!(row.id, Some(1 + skipped + 1));
    drop((watching, resumed));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_submits_a_select_and_streams_its_rows_until_the_client_leaves() {
    let server = Running::start(short_lived()).await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let response = server
        .request(reqwest::Method::POST, "/v1/query")
        .json(&json!({ "sql": "SELECT sensor_id, temperature FROM sensors" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let id: u64 = response.headers()["vigil-query-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut events = Events::of(response);
    let first = events.next().await;
    assert_eq!(first.event, "query");
    assert_eq!(
        serde_json::from_str::<Value>(&first.data).unwrap(),
        json!({ "query_id": id })
    );
    let row = events.next_row().await;
    assert_eq!(row.id, Some(1));
    let row: Value = serde_json::from_str(&row.data).unwrap();
    assert!(row["sensor_id"].as_str().unwrap().starts_with("sensor-"));
    // Closing the response ends the query.
    drop(events);
    server.wait_for_state(id, "stopped").await;

    // NDJSON on request, and the same from /v1/statements for a client accepting SSE.
    let ndjson = server
        .request(reqwest::Method::POST, "/v1/query")
        .header("accept", "application/x-ndjson")
        .json(&json!({ "sql": "SELECT sensor_id FROM sensors" }))
        .send()
        .await
        .unwrap();
    let mut lines = ndjson.bytes_stream();
    let mut text = String::new();
    while text.lines().count() < 3 {
        let chunk = lines.next().await.expect("more lines").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let lines: Vec<Value> = text
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines[0]["query_id"].is_u64(), "{lines:?}");
    assert_eq!(lines[1]["op"], "+I", "{lines:?}");
    let statements = server
        .request(reqwest::Method::POST, "/v1/statements")
        .header("accept", "text/event-stream")
        .json(&json!({ "sql": "SELECT sensor_id FROM sensors" }))
        .send()
        .await
        .unwrap();
    assert_eq!(Events::of(statements).next().await.event, "query");

    // Only one SELECT streams.
    let (status, body) = server.sql("/v1/query", PACED_SOURCE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "not_a_select", "{body}");
    server.stop().await;
}

/// An event pattern submitted over HTTP runs and streams its matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_recognize_query_streams_its_matches() {
    let server = Running::default().await;
    server
        .sql(
            "/v1/statements",
            "CREATE SOURCE logins (user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT, \
             new_device BOOLEAN, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) \
             WITH (connector = 'generator', kind = 'logins', rate = '20000', keys = '20', \
             anomaly_ratio = '0.2')",
        )
        .await;
    let id = server
        .start_query(
            "SELECT user_id, failures FROM logins MATCH_RECOGNIZE (PARTITION BY user_id \
             ORDER BY ts MEASURES COUNT(F.*) AS failures PATTERN (F{5,} S) \
             WITHIN INTERVAL '2' MINUTE DEFINE F AS F.event_type = 'login_failed', \
             S AS S.event_type = 'login_success')",
        )
        .await;
    let mut rows = server.results(id, None).await;
    for _ in 0..3 {
        let row: Value = serde_json::from_str(&rows.next_row().await.data).unwrap();
        assert!(row["failures"].as_i64().unwrap() >= 5, "{row}");
    }
    drop(rows);
    server.stop().await;
}

/// A window emitting early, over HTTP: an open hour's running count streams as a changelog,
/// each update taking back the row before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_emitting_early_streams_its_updates() {
    let server = Running::default().await;
    server
        .sql(
            "/v1/statements",
            "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, \
             ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'generator', kind = 'sensors', rate = '20000', keys = '1')",
        )
        .await;
    let id = server
        .start_query(
            "SELECT window_start, count(*) AS n FROM TUMBLE(sensors, ts, INTERVAL '1' HOUR) \
             GROUP BY window_start, window_end EMIT EARLY EVERY INTERVAL '1' SECOND",
        )
        .await;
    let mut rows = server.results(id, None).await;
    // The row each window last emitted, by its start (an hour may turn during the test).
    let mut emitted: std::collections::HashMap<String, i64> = Default::default();
    let mut updates = 0;
    while updates < 2 {
        let row: Value = serde_json::from_str(&rows.next_row().await.data).unwrap();
        let window = row["window_start"].to_string();
        let n = row["n"].as_i64().unwrap();
        match row["op"].as_str() {
            Some("+I") => assert!(emitted.insert(window, n).is_none(), "{row}"),
            Some("-U") => {
                assert_eq!(emitted.remove(&window), Some(n), "{row}");
                let after: Value = serde_json::from_str(&rows.next_row().await.data).unwrap();
                assert_eq!(
                    (&after["op"], &after["window_start"]),
                    (&json!("+U"), &row["window_start"])
                );
                let grown = after["n"].as_i64().unwrap();
                assert!(grown > n, "{grown} after {n}");
                emitted.insert(window, grown);
                updates += 1;
            }
            _ => panic!("unexpected change {row}"),
        }
    }
    drop(rows);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_router_cannot_read_are_answered_in_json() {
    let server = Running::default().await;
    let (status, body) = server.get_json("/v1/queries/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_path", "{body}");
    let (status, body) = server
        .call(reqwest::Method::PATCH, "/v1/queries", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let (status, body) = server
        .call(reqwest::Method::DELETE, "/v1/rules/no%2", None)
        .await;
    assert!(status.is_client_error(), "{status}");
    assert!(body["error"]["code"].is_string(), "{body}");
    server.stop().await;
}

/// The schema `reference` (`{"$ref": "#/components/schemas/X"}`) points at.
fn resolve<'a>(doc: &'a Value, reference: &Value) -> &'a Value {
    let name = reference["$ref"]
        .as_str()
        .unwrap_or_else(|| panic!("not a reference: {reference}"))
        .strip_prefix("#/components/schemas/")
        .unwrap();
    &doc["components"]["schemas"][name]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_gives_the_schema_of_each_answer_and_the_answers_fit_it() {
    let server = Running::default().await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let id = server.start_query("SELECT sensor_id FROM sensors").await;
    let (_, doc) = server.get_json("/openapi.json").await;
    let operation = |method: &str, path: &str| doc["paths"][path][method].clone();
    let json_schema = |method: &str, path: &str| {
        let schema =
            &operation(method, path)["responses"]["200"]["content"]["application/json"]["schema"];
        resolve(&doc, schema).clone()
    };
    // Every JSON answer names a schema that exists; every route documents its errors.
    for route in vigil_server::routes::ROUTES {
        let method = route.method.to_ascii_lowercase();
        let op = operation(&method, route.path);
        let error = &op["responses"]["default"]["content"]["application/json"]["schema"];
        assert!(
            resolve(&doc, error)["properties"]["error"].is_object(),
            "{op}"
        );
        if let vigil_server::routes::Answer::Json(_) = route.answer
            && route.path != "/openapi.json"
        {
            let schema = json_schema(&method, route.path);
            assert!(
                schema.is_object() && schema != Value::Null,
                "{method} {}",
                route.path
            );
        }
    }
    // A live answer has every property its schema requires.
    let view = json_schema("get", "/v1/queries/{id}");
    let (_, query) = server.get_json(&format!("/v1/queries/{id}")).await;
    let required = view["required"].as_array().expect("required properties");
    assert!(required.iter().any(|p| p == "metrics"), "{view}");
    for property in required {
        assert!(
            !query[property.as_str().unwrap()].is_null(),
            "{property} in {query}"
        );
    }
    let readiness = json_schema("get", "/readyz");
    assert!(
        readiness["properties"]["reasons"].is_object(),
        "{readiness}"
    );
    let rows = &operation("post", "/v1/query")["responses"]["200"]["content"];
    assert!(rows["text/event-stream"].is_object(), "{rows}");
    server.stop().await;
}
