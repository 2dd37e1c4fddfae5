//! The HTTP server on a loopback port, called with a real HTTP client.

mod console;
mod lifecycle;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil_connectors::kafka::KafkaSettings;
use vigil_engine::checkpoint::{StateConfig, StateLocation};
use vigil_engine::{Engine, EngineConfig};
use vigil_server::{Server, ServerConfig};

/// A paced generator, so a query is still running while the test looks at it.
const PACED_SOURCE: &str = "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, \
    humidity DOUBLE, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
    WITH (connector = 'generator', kind = 'sensors', rate = '500', keys = '2');";

/// A server running in this process, and a client for it.
struct Running {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(config: ServerConfig) -> Self {
        Self::with_state(config, None).await
    }

    /// A server whose queries checkpoint to `state`.
    async fn with_state(config: ServerConfig, state: Option<StateConfig>) -> Self {
        Self::restoring(config, state).await.0
    }

    /// [`Running::with_state`], replaying first the catalog a server kept under `state`
    /// (as `vigil serve` does), with the report of what came back.
    async fn restoring(
        config: ServerConfig,
        state: Option<StateConfig>,
    ) -> (Self, vigil_server::CatalogRestore) {
        let config = ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            data_dir: std::env::temp_dir().join("vigil-server-data"),
            ..config
        };
        let token = config.token.clone();
        let new_engine = Arc::new(move || {
            let registry = vigil_connectors::registry_with(KafkaSettings::from_env(None));
            let config = EngineConfig {
                state: state.clone(),
                ..EngineConfig::default()
            };
            Engine::with_config(registry, config)
        });
        let server = Server::bind(config, new_engine).await.expect("binds");
        let restored = server.service().restore_catalog().await.expect("restores");
        let base = format!("http://{}", server.local_addr());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serves");
        });
        let running = Self {
            base,
            client: reqwest::Client::new(),
            token,
            shutdown: Some(shutdown),
            served,
        };
        (running, restored)
    }

    async fn default() -> Self {
        Self::start(ServerConfig::default()).await
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request with an optional JSON body; the status and the JSON answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    async fn sql(&self, path: &str, sql: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(json!({ "sql": sql })))
            .await
    }

    async fn put_sql(&self, path: &str, sql: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(json!({ "sql": sql })))
            .await
    }

    /// The body of `GET path` asking for `accept`, as text.
    async fn get_text(&self, path: &str, accept: &str) -> String {
        let response = self
            .request(reqwest::Method::GET, path)
            .header("accept", accept);
        response.send().await.unwrap().text().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Submits a statement that starts one query; returns its id.
    async fn start_query(&self, sql: &str) -> u64 {
        let (status, body) = self.sql("/v1/statements", sql).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["results"][0]["query_id"].as_u64().expect("a query id")
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.served)
            .await
            .expect("the server stops in time")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_query_streams_its_results_as_server_sent_events() {
    let server = Running::default().await;
    let (status, body) = server.sql("/v1/statements", PACED_SOURCE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["results"][0],
        json!({"result": "created", "object": "source", "name": "sensors"})
    );
    let id = server
        .start_query(
            "SELECT window_start, window_end, sensor_id, count(*) AS readings \
             FROM TUMBLE(sensors, ts, INTERVAL '1' SECOND) \
             GROUP BY window_start, window_end, sensor_id",
        )
        .await;
    let response = server
        .request(reqwest::Method::GET, &format!("/v1/queries/{id}/results"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    // Read until four window rows have arrived.
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let rows = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let chunk = body.next().await.expect("the stream goes on").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            // Whole events only: a chunk may end inside one.
            let complete = &text[..text.rfind("\n\n").unwrap_or(0)];
            let rows: Vec<Value> = complete
                .split("\n\n")
                .filter(|event| event.starts_with("event: row\n"))
                .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
                .map(|data| serde_json::from_str(data).unwrap())
                .collect();
            if rows.len() >= 4 {
                return rows;
            }
        }
    })
    .await
    .expect("window rows within 30 s");
    for row in &rows {
        assert_eq!(row["op"], "+I");
        assert!(row["sensor_id"].as_str().unwrap().starts_with("sensor-000"));
        assert!(row["readings"].as_i64().unwrap() > 0);
        assert!(row["window_start"].as_str().unwrap() < row["window_end"].as_str().unwrap());
    }
    // The query shows up with live metrics.
    let (status, query) = server.get_json(&format!("/v1/queries/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(query["status"]["state"], "running");
    assert_eq!(query["kind"], "transient");
    assert!(query["metrics"]["events_in"].as_u64().unwrap() > 0);
    assert!(query["metrics"]["rows_out"].as_u64().unwrap() >= 4);
    assert!(query["metrics"]["watermark"].is_string());
    // The graph: a window aggregate fed by the window assigner, fed by the source, each
    // with live counters, refreshed twice a second: wait for them to show the four rows.
    let named = |graph: &Value, name: &str| {
        graph["operators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operator"] == name)
            .unwrap_or_else(|| panic!("no {name} in {graph}"))
            .clone()
    };
    let graph = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (status, graph) = server.get_json(&format!("/v1/queries/{id}/graph")).await;
            assert_eq!(status, StatusCode::OK, "{graph}");
            if named(&graph, "WindowAggregate")["rows_out"]
                .as_u64()
                .unwrap()
                >= 4
            {
                return graph;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the counters catch up within 10 s");
    let operators = graph["operators"].as_array().unwrap();
    let aggregate = named(&graph, "WindowAggregate");
    assert!(aggregate["rows_in"].as_u64().unwrap() > 0, "{aggregate}");
    assert!(aggregate["rows_out"].as_u64().unwrap() >= 4, "{aggregate}");
    assert!(aggregate["watermark"].is_string(), "{aggregate}");
    let source = operators
        .iter()
        .find(|o| o["inputs"].as_array().unwrap().is_empty())
        .unwrap();
    assert!(
        source["detail"].as_str().unwrap().contains("sensors"),
        "{source}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_results_of_an_updating_query_carry_change_kinds_and_end_with_the_query() {
    let server = Running::default().await;
    server
        .sql(
            "/v1/statements",
            "CREATE SOURCE logins (user_id TEXT, event_type TEXT, ip TEXT, ts TIMESTAMP) \
             WITH (connector = 'generator', kind = 'logins', keys = '1', count = '3')",
        )
        .await;
    let id = server
        .start_query("SELECT user_id, count(*) AS attempts FROM logins GROUP BY user_id")
        .await;
    let text = server
        .get_text(&format!("/v1/queries/{id}/results"), "application/x-ndjson")
        .await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The bounded source ended before the client came: the rows are replayed, then the end.
    let last = lines.last().unwrap();
    assert_eq!(last, &json!({"end": "finished"}));
    let ops: Vec<&str> = lines[..lines.len() - 1]
        .iter()
        .map(|row| row["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops.first(), Some(&"+I"));
    assert!(
        ops[1..].chunks(2).all(|pair| pair == ["-U", "+U"]),
        "{ops:?}"
    );
    let final_count = lines[lines.len() - 2]["attempts"].as_i64().unwrap();
    assert_eq!(final_count, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sql_is_reported_with_line_and_column_and_validation_runs_nothing() {
    let server = Running::default().await;
    let (status, body) = server
        .sql(
            "/v1/validate",
            &format!("{PACED_SOURCE}\nSELECT sensor_id,\n  temprature FROM sensors"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["valid"], false);
    let error = &body["errors"][0];
    assert_eq!(error["code"], "sql_error");
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(
        error["message"].as_str().unwrap().contains("temprature"),
        "{error}"
    );
    // Validation declared nothing.
    let (_, catalog) = server.get_json("/v1/catalog").await;
    assert_eq!(catalog["sources"], json!([]));

    let (status, body) = server.sql("/v1/validate", PACED_SOURCE).await;
    assert_eq!(
        (status, &body["valid"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );

    // Submitting bad SQL is a 400 with the position.
    let (status, body) = server.sql("/v1/statements", "SELECT FROM WHERE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "sql_error");
    assert_eq!(body["error"]["line"], 1);
    assert!(body["error"]["column"].as_u64().is_some(), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_query_flushes_and_reports_stopped() {
    let server = Running::default().await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let id = server.start_query("SELECT sensor_id FROM sensors").await;
    let (status, listed) = server.get_json("/v1/queries").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["queries"][0]["id"], id);
    let response = server
        .request(reqwest::Method::DELETE, &format!("/v1/queries/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stopped: Value = response.json().await.unwrap();
    assert_eq!(stopped["status"]["state"], "stopped");
    let (status, body) = server.get_json("/v1/queries/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route_but_health() {
    let server = Running::start(ServerConfig {
        token: Some("s3cret-token".into()),
        ..ServerConfig::default()
    })
    .await;
    let anonymous = reqwest::Client::new();
    for path in ["/v1/queries", "/v1/catalog", "/metrics", "/openapi.json"] {
        let response = anonymous
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let wrong = anonymous
        .get(format!("{}/v1/queries", server.base))
        .bearer_auth("s3cret-tokem")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let health = anonymous
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (status, _) = server.get_json("/v1/queries").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_files_outside_the_data_directory_are_refused() {
    let server = Running::start(ServerConfig {
        max_body_bytes: 4096,
        ..ServerConfig::default()
    })
    .await;
    let huge = format!("SELECT 1 /* {} */", "x".repeat(10_000));
    let response = server
        .request(reqwest::Method::POST, "/v1/statements")
        .json(&json!({ "sql": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
    // Not JSON: a JSON error all the same.
    let response = server
        .request(reqwest::Method::POST, "/v1/statements")
        .header("content-type", "application/json")
        .body("{\"sql\": \"SELECT\n1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let (status, body) = server
        .sql(
            "/v1/statements",
            "CREATE SOURCE secrets (line TEXT) WITH (connector = 'file', path = '/etc/passwd', format = 'json')",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "path_not_allowed");

    // A link inside the data directory cannot lead a new file out of it.
    let data = std::env::temp_dir().join("vigil-server-data");
    let outside = std::env::temp_dir().join(format!("vigil-outside-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let link = data.join(format!("link-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let (status, body) = server
        .sql(
            "/v1/statements",
            &format!(
                "CREATE SINK escape WITH (connector = 'file', path = '{}/alerts.jsonl')",
                link.display()
            ),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "path_not_allowed");
    std::fs::remove_file(&link).unwrap();
    server.stop().await;
}

/// librdkafka properties that would load code or read files on the server are refused
/// over HTTP; the operator may allow one by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_properties_that_touch_the_host_are_refused_unless_allowed() {
    let server = Running::start(ServerConfig::default()).await;
    let source = |property: &str| {
        format!(
            "CREATE SOURCE s (v BIGINT) WITH (connector = 'kafka', topic = 't', \
             properties.{property} = '/tmp/x')"
        )
    };
    for property in [
        "plugin.library.paths",
        "ssl.ca.location",
        "sasl.kerberos.kinit.cmd",
    ] {
        let (status, body) = server.sql("/v1/statements", &source(property)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{property}: {body}");
        assert_eq!(body["error"]["code"], "property_not_allowed");
        let (_, body) = server.sql("/v1/validate", &source(property)).await;
        assert!(
            body.to_string().contains("property_not_allowed"),
            "validation refuses {property} too: {body}"
        );
    }
    server.stop().await;

    let server = Running::start(ServerConfig {
        allowed_kafka_properties: vec!["ssl.ca.location".into()],
        ..ServerConfig::default()
    })
    .await;
    let (status, body) = server
        .sql("/v1/statements", &source("ssl.ca.location"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

/// Statements built to be deep get a 400 naming the limit, and the server lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_too_deep_to_plan_are_refused_and_the_server_lives_on() {
    let server = Running::start(ServerConfig::default()).await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let chain = |op: &str, n: usize| vec!["1"; n].join(op);
    let union = vec!["SELECT 1 FROM sensors"; 2000].join(" UNION ALL ");
    let deep = [
        format!("SELECT {} FROM sensors", chain("+", 2000)),
        format!(
            "SELECT * FROM sensors WHERE {}",
            vec!["true"; 2000].join(" AND ")
        ),
        format!(
            "SELECT * FROM sensors WHERE {}",
            vec!["false"; 2000].join(" OR ")
        ),
        format!("SELECT {} FROM sensors", vec!["'a'"; 2000].join(" || ")),
        union,
        format!("{}SELECT 1 FROM sensors", "EXPLAIN ".repeat(5000)),
    ];
    for sql in &deep {
        for route in ["/v1/statements", "/v1/validate"] {
            let (status, body) = server.sql(route, sql).await;
            assert!(
                status.is_client_error() || status == StatusCode::OK && route == "/v1/validate",
                "{route}: {status} {body}"
            );
            let text = body.to_string();
            assert!(
                text.contains("limit") || text.contains("EXPLAIN"),
                "{route}: {text}"
            );
        }
    }
    // A long chain within the limit plans and runs.
    let (status, body) = server
        .sql(
            "/v1/statements",
            &format!("SELECT {} AS n FROM sensors", chain("+", 200)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.get_json("/v1/queries").await;
    assert_eq!(status, StatusCode::OK, "the server is alive");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_submissions_are_all_answered_and_the_cap_holds() {
    let server = Running::start(ServerConfig {
        max_queries: 20,
        ..ServerConfig::default()
    })
    .await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let server = Arc::new(server);
    let submissions = (0..50).map(|i| {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            server
                .sql(
                    "/v1/statements",
                    &format!("SELECT sensor_id, temperature + {i} AS t FROM sensors"),
                )
                .await
        })
    });
    let answers = futures_util::future::join_all(submissions).await;
    let mut started = 0;
    let mut refused = 0;
    for answer in answers {
        let (status, body) = answer.unwrap();
        match status {
            StatusCode::OK => started += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "too_many_queries");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((started, refused), (20, 30));
    let server = Arc::into_inner(server).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_as_prometheus_text() {
    let server = Running::default().await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let id = server.start_query("SELECT sensor_id FROM sensors").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = server
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    // Every line is a comment or `name{labels} value` with a number.
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples += 1;
    }
    assert!(samples > 5, "{text}");
    let events = text
        .lines()
        .find(|l| l.starts_with(&format!("vigil_query_events_in_total{{query=\"{id}\"")))
        .expect("the query's events counter");
    assert!(
        events.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap() > 0.0,
        "{events}"
    );
    // Per operator too.
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "vigil_operator_rows_in_total{{query=\"{id}\",name=\"select\",operator=\"Project\""
        ))),
        "{text}"
    );
    assert!(
        text.contains("vigil_query_watermark_lag_seconds{"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_each_is_served() {
    let server = Running::default().await;
    let (status, doc) = server.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    let mut routed: Vec<(String, String)> = vigil_server::routes::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);
    // Each documented route answers: never the router's "no such route".
    for (method, path) in documented {
        let path = path.replace("{id}", "1").replace("{name}", "x");
        let response = server
            .request(method.parse().unwrap(), &path)
            .json(&json!({ "sql": "SELECT 1" }))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::NOT_FOUND {
            let body: Value = response.json().await.unwrap();
            assert_ne!(
                body["error"]["message"], "no such route (GET /openapi.json lists them)",
                "{method} {path}"
            );
        }
    }
    let (status, body) = server.get_json("/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_are_deployed_replaced_and_removed_by_name_and_hash() {
    let server = Running::default().await;
    let (status, body) = server.sql("/v1/statements", PACED_SOURCE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hot = "CREATE VIEW hot AS SELECT * FROM sensors WHERE temperature > 30;\n\
               CREATE SINK hot_alerts WITH (connector = 'stdout') AS SELECT sensor_id FROM hot;\n";
    let (status, body) = server.put_sql("/v1/rules/hot", hot).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"], "added");
    assert_eq!(body["rule"]["hash"], vigil_rules::layout::content_hash(hot));
    assert_eq!(body["rule"]["views"], json!(["hot"]));
    let first = body["rule"]["queries"][0].as_u64().expect("a query");

    // The same text again changes nothing.
    let (_, body) = server.put_sql("/v1/rules/hot", hot).await;
    assert_eq!(body["action"], "unchanged");

    // A broken version is refused where it breaks, and the deployed one keeps running.
    let broken = hot.replace("temperature > 30", "temprature > 30");
    let (status, body) = server.put_sql("/v1/rules/hot", &broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (
            body["error"]["line"].as_u64(),
            body["error"]["column"].as_u64()
        ),
        (Some(1), Some(48))
    );
    let (_, query) = server.get_json(&format!("/v1/queries/{first}")).await;
    assert_eq!(query["status"]["state"], "running");

    // A new version replaces the view and the sink's query: the new one starts, the old stops.
    let cooler = hot.replace("temperature > 30", "temperature > 25");
    let (status, body) = server.put_sql("/v1/rules/hot", &cooler).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"], "changed");
    assert_eq!(body["stopped"], json!([first]));
    let second = body["rule"]["queries"][0].as_u64().unwrap();
    assert_ne!(second, first);
    let (_, query) = server.get_json(&format!("/v1/queries/{second}")).await;
    assert_eq!(query["status"]["state"], "running");
    assert!(
        query["sql"].as_str().unwrap().contains("FROM hot"),
        "{query}"
    );
    let (_, catalog) = server.get_json("/v1/catalog").await;
    assert!(
        catalog.to_string().contains("temperature > 25"),
        "the view was replaced: {catalog}"
    );

    // Another rule may not take over a sink this one writes.
    let thief =
        "CREATE SINK hot_alerts WITH (connector = 'stdout') AS SELECT sensor_id FROM sensors;";
    let (status, body) = server.put_sql("/v1/rules/thief", thief).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "sink_taken");

    let (_, list) = server.get_json("/v1/rules").await;
    assert_eq!(list["rules"].as_array().unwrap().len(), 1);
    assert_eq!(list["rules"][0]["name"], "hot");
    assert_eq!(list["rules"][0]["sql"], cooler);

    let (status, body) = server
        .call(reqwest::Method::DELETE, "/v1/rules/hot", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, query) = server.get_json(&format!("/v1/queries/{second}")).await;
    assert_eq!(query["status"]["state"], "stopped");
    let (_, list) = server.get_json("/v1/rules").await;
    assert_eq!(list["rules"], json!([]));
    // Removed, the rule deploys again from scratch.
    let (status, body) = server.put_sql("/v1/rules/hot", hot).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"], "added");
    server.stop().await;
}

/// A request the server refuses without needing its body (no such route, no token) is still
/// answered after its body has arrived in pieces, not cut off while the client writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_answered_after_their_whole_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Running::start(ServerConfig::default()).await;
    let address = server.base.trim_start_matches("http://").to_string();
    for path in ["/v1/statements/extra", "/v1/no-such-route"] {
        const PIECES: usize = 400;
        let piece = "x".repeat(256);
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            PIECES * piece.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        for i in 0..PIECES {
            stream
                .write_all(piece.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("{path}: piece {i} of the body not written: {e}"));
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(answer.contains("\"not_found\""), "{path}: {answer}");
    }
    server.stop().await;
}

/// Generated requests (methods, paths, content types and bodies, statements among them)
/// never get a 5xx, and the server answers a health check afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_never_get_a_server_error() {
    use vigil_tests::fuzz::{Rng, SqlGen, seeds};
    const REQUESTS: usize = 300;
    let server = Running::start(ServerConfig {
        max_body_bytes: 64 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
        reqwest::Method::OPTIONS,
    ];
    let ids = [
        "1",
        "0",
        "-1",
        "18446744073709551616",
        "abc",
        "%00",
        "..%2F..",
        "\u{e9}t\u{e9}",
        "a b",
        "",
    ];
    let content_types = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin1",
        "",
    ];
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        let mut statements = SqlGen::new(seed, Vec::new());
        for _ in 0..REQUESTS {
            let route = rng.pick(vigil_server::routes::ROUTES);
            let mut path = route
                .path
                .replace("{id}", rng.word(&ids))
                .replace("{name}", rng.word(&ids));
            match rng.below(8) {
                0 => path.push_str("/extra"),
                1 => path = format!("/v1/{}", rng.word(&ids)),
                2 => path.push_str("?format=nope&after=-5"),
                3 => path.push_str(&"x".repeat(rng.below(5000))),
                _ => {}
            }
            let method = if rng.one_in(3) {
                rng.pick(&methods[..]).clone()
            } else {
                route.method.parse().unwrap()
            };
            let sql = statements.statement();
            let body: Vec<u8> = match rng.below(7) {
                0 => Vec::new(),
                1 => b"{\"sql\": ".to_vec(),
                2 => json!({ "sql": 5, "extra": [1, 2] })
                    .to_string()
                    .into_bytes(),
                3 => (0..rng.below(300)).map(|_| rng.below(256) as u8).collect(),
                4 => format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
                _ => json!({ "sql": sql }).to_string().into_bytes(),
            };
            let mut request = server.request(method.clone(), &path).body(body);
            let content_type = rng.word(&content_types);
            if !content_type.is_empty() {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.expect("the server answers");
            *statuses.entry(response.status().as_u16()).or_default() += 1;
            assert!(
                !response.status().is_server_error(),
                "seed {seed}: {method} {path} got {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
    }
    eprintln!("statuses: {statuses:?}");
    assert!(
        statuses.keys().any(|s| *s < 300),
        "some requests succeed: {statuses:?}"
    );
    assert!(statuses.len() > 3, "requests of many kinds: {statuses:?}");
    let health = server
        .request(reqwest::Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_show_the_last_checkpoint() {
    let dir = std::env::temp_dir().join(format!("vigil-server-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = StateConfig {
        interval: Duration::from_millis(100),
        ..StateConfig::new(StateLocation::local(&dir).unwrap())
    };
    let server = Running::with_state(ServerConfig::default(), Some(state)).await;
    let (status, body) = server.sql("/v1/statements", PACED_SOURCE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = std::env::temp_dir().join("vigil-server-data/counts.jsonl");
    let sql = format!(
        "CREATE SINK counts WITH (connector = 'file', path = '{}');
         CREATE SINK counts AS SELECT sensor_id, count(*) AS n FROM sensors GROUP BY sensor_id;",
        output.display()
    );
    let (status, body) = server.sql("/v1/statements", &sql).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["results"][1]["query_id"].as_u64().expect("a query id");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let checkpoint = loop {
        let (_, view) = server.get_json(&format!("/v1/queries/{id}")).await;
        let checkpoint = view["metrics"]["checkpoint"].clone();
        if checkpoint["epoch"].as_u64().unwrap_or(0) >= 2 {
            break checkpoint;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(checkpoint["bytes"].as_u64().unwrap() > 0, "{checkpoint}");
    assert_eq!(checkpoint["restored"], json!(false));
    assert!(checkpoint["taken_at"].as_str().is_some(), "{checkpoint}");
    let metrics = server.get_text("/metrics", "text/plain").await;
    let epoch = metrics
        .lines()
        .find(|l| l.starts_with("vigil_query_checkpoint_epoch{") && l.contains("counts"))
        .unwrap_or_else(|| panic!("no checkpoint gauge in {metrics}"));
    let epoch: f64 = epoch.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(epoch >= 2.0, "{epoch}");
    assert!(dir.join("queries/counts/checkpoints").is_dir());
    let graph = server
        .get_text(&format!("/v1/queries/{id}/graph"), "text/plain")
        .await;
    assert!(graph.contains("last checkpoint: epoch "), "{graph}");
    server.stop().await;
}

/// The query of `name` in `GET /v1/queries`, if listed.
async fn query_named(server: &Running, name: &str) -> Option<Value> {
    let (_, list) = server.get_json("/v1/queries").await;
    let queries = list["queries"].as_array().cloned().unwrap_or_default();
    queries.into_iter().find(|q| q["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_keeps_its_catalog_rules_and_running_queries() {
    let dir = std::env::temp_dir().join(format!("vigil-server-kept-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = StateConfig {
        interval: Duration::from_millis(100),
        ..StateConfig::new(StateLocation::local(&dir).unwrap())
    };
    let server = Running::with_state(ServerConfig::default(), Some(state.clone())).await;
    let output =
        std::env::temp_dir().join(format!("vigil-server-data/kept-{}", std::process::id()));
    let sql = format!(
        "{PACED_SOURCE}
         CREATE SINK counts WITH (connector = 'file', path = '{0}-counts.jsonl');
         CREATE SINK readings WITH (connector = 'file', path = '{0}-readings.jsonl');
         CREATE SINK counts AS SELECT sensor_id, count(*) AS n FROM sensors GROUP BY sensor_id;
         CREATE SINK readings AS SELECT sensor_id FROM sensors;",
        output.display()
    );
    let (status, body) = server.sql("/v1/statements", &sql).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let readings = body["results"][4]["query_id"].as_u64().expect("a query id");
    let hot = "CREATE SINK hot_alerts WITH (connector = 'stdout') AS \
               SELECT sensor_id FROM sensors WHERE temperature > 30;";
    let (status, body) = server.put_sql("/v1/rules/hot", hot).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Stopped by hand, a query stays stopped after the restart.
    let (status, body) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/queries/{readings}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let counted = loop {
        let counts = query_named(&server, "counts").await.expect("counts runs");
        let epoch = counts["metrics"]["checkpoint"]["epoch"]
            .as_u64()
            .unwrap_or(0);
        let events = counts["metrics"]["events_in"].as_u64().unwrap_or(0);
        if epoch >= 2 && events > 0 {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: {counts}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    server.stop().await;

    let (server, restored) = Running::restoring(ServerConfig::default(), Some(state)).await;
    assert_eq!(
        (restored.rules, restored.queries, restored.failures.len()),
        (1, 2, 0),
        "{restored:?}"
    );
    let (_, catalog) = server.get_json("/v1/catalog").await;
    let catalog = catalog.to_string();
    assert!(
        catalog.contains("sensors") && catalog.contains("readings"),
        "{catalog}"
    );
    let (_, rules) = server.get_json("/v1/rules").await;
    assert_eq!(rules["rules"][0]["sql"], hot);
    let counts = query_named(&server, "counts")
        .await
        .expect("counts runs again");
    assert_eq!(counts["status"]["state"], "running", "{counts}");
    // Resumed from its checkpoint: its counters go on from where they were.
    let events = counts["metrics"]["events_in"].as_u64().unwrap();
    assert!(events >= counted, "{events} < {counted}: {counts}");
    let hot = query_named(&server, "hot_alerts")
        .await
        .expect("the rule runs");
    assert_eq!(hot["status"]["state"], "running", "{hot}");
    assert!(
        query_named(&server, "readings").await.is_none(),
        "stopped by hand"
    );
    server.stop().await;
}
