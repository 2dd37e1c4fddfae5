//! `/readyz` of `vigil serve` tells the truth: not ready while a running query's Kafka
//! source cannot reach its broker, ready again once it can.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil_server::{Server, ServerConfig};
use vigil_tests::kafka::Broker;

use super::{INPUT_TOPICS, OUTPUT_TOPICS, PARTITIONS};

/// Polls `/readyz` at `base` until it answers `expected` with a body `also` accepts;
/// returns the body.
async fn wait_for_readiness(
    client: &reqwest::Client,
    base: &str,
    expected: StatusCode,
    also: impl Fn(&Value) -> bool,
) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let response = client.get(format!("{base}/readyz")).send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == expected && also(&body) {
                return body;
            }
            *last.lock().unwrap() = body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let last = last.lock().unwrap();
        panic!("/readyz did not answer {expected} within 60 s; it last answered {last}")
    })
}

/// Waits until the first query has read an event: its source has started.
async fn wait_for_first_event(client: &reqwest::Client, base: &str) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let queries: Value = (client.get(format!("{base}/v1/queries")).send().await)
                .unwrap()
                .json()
                .await
                .unwrap();
            if queries["queries"][0]["metrics"]["events_in"].as_u64() >= Some(1) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the query reads an event within 60 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_while_a_query_cannot_reach_its_broker_and_says_why() {
    let broker = Broker::start_relayed();
    let mut topics = INPUT_TOPICS.to_vec();
    topics.extend(OUTPUT_TOPICS);
    broker.create_topics(&topics, PARTITIONS).await;
    let settings = broker.settings();
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let new_engine = Arc::new(move || {
        vigil_engine::Engine::new(vigil_connectors::registry_with(settings.clone()))
    });
    let server = Server::bind(config, new_engine).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let sql = "CREATE SOURCE events (id BIGINT, key TEXT, ts TIMESTAMP) \
               WITH (connector = 'kafka', topic = 'sensors', group_id = 'readiness'); \
               CREATE SINK copied WITH (connector = 'kafka', topic = 'sensor_alerts') AS \
               SELECT id FROM events;";
    let response = client
        .post(format!("{base}/v1/statements"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ready = wait_for_readiness(&client, &base, StatusCode::OK, |_| true).await;
    assert_eq!(ready["running_queries"], 1, "{ready}");
    // A source that cannot reach its brokers while it starts fails the query (see
    // `unreachable_brokers_fail_the_query_at_start_naming_them`): cut only once it reads.
    broker
        .produce("sensors", &[(0, None, r#"{"id": 1, "key": "a"}"#)])
        .await;
    wait_for_first_event(&client, &base).await;

    broker.cut(true);
    let not_ready = tokio::spawn({
        let (client, base) = (client.clone(), base.clone());
        // The sink may say so first; wait for the source too.
        let source_says = |body: &Value| {
            (body["reasons"].as_array().into_iter().flatten())
                .any(|r| r["component"] == "source events")
        };
        async move {
            wait_for_readiness(&client, &base, StatusCode::SERVICE_UNAVAILABLE, source_says).await
        }
    })
    .await;
    let not_ready = match not_ready {
        Ok(body) => body,
        Err(panic) => {
            let queries = client
                .get(format!("{base}/v1/queries"))
                .send()
                .await
                .unwrap();
            panic!("{panic}; the queries: {}", queries.text().await.unwrap());
        }
    };
    assert_eq!(not_ready["status"], "not_ready");
    let reasons = not_ready["reasons"].as_array().unwrap();
    let source = reasons
        .iter()
        .find(|r| r["component"] == "source events")
        .unwrap_or_else(|| panic!("no reason for the source: {not_ready}"));
    assert_eq!(source["name"], "copied");
    assert!(
        source["reason"].as_str().unwrap().contains("cannot reach"),
        "{source}"
    );
    // Liveness is another question: the process still answers.
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    broker.cut(false);
    let ready = wait_for_readiness(&client, &base, StatusCode::OK, |_| true).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let _ = shutdown.send(());
    served.await.unwrap().unwrap();
}
