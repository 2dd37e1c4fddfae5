//! What reaches the output and what is acknowledged: dead letters, restarts, consumer groups.

use serde_json::{Value, json};

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_go_to_the_dead_letter_topic_and_good_ones_through() {
    let broker = broker_with_topics().await;
    let good = |t: i64| {
        json!({"sensor_id": "s1", "temperature": 20.0 + t as f64, "humidity": 50.0, "ts": at(t)})
            .to_string()
    };
    let (g0, g2, g5, g9, g10) = (good(0), good(2), good(5), good(9), good(10));
    let bad = [
        (1, "not json"),
        (
            3,
            r#"{"sensor_id": "s1", "temperature": "hot", "ts": "2024-01-01T00:00:03Z"}"#,
        ),
        (4, ""),
        (
            6,
            r#"{"sensor_id": "s1", "temperature": 21}{"sensor_id": "s2"}"#,
        ),
        (7, "[1, 2, 3]"),
        (8, r#"{"temperature": 22.5, "ts": "2024-01-01T00:00:08Z"}"#),
    ];
    let mut messages: Vec<(i32, Option<&str>, &str)> = vec![(0, Some("k0"), g0.as_str())];
    messages.push((0, Some("k1"), bad[0].1));
    messages.push((0, Some("k2"), g2.as_str()));
    for (_, value) in &bad[1..] {
        messages.push((0, None, value));
    }
    messages.insert(5, (0, Some("k5"), g5.as_str()));
    messages.push((0, Some("k9"), g9.as_str()));
    messages.push((1, Some("k10"), g10.as_str()));
    broker.produce("sensors", &messages).await;

    let mut engine = engine(&broker);
    start(
        &mut engine,
        "CREATE SOURCE sensors (
            sensor_id TEXT NOT NULL, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
            _partition INT, _offset BIGINT, _key TEXT
         ) WITH (connector = 'kafka', topic = 'sensors', bounded = 'latest',
                 dead_letter_topic = 'dead_letters')",
    )
    .await;
    let queries = start(
        &mut engine,
        "CREATE SINK readings WITH (connector = 'kafka', topic = 'sensor_alerts') AS
         SELECT temperature, _partition, _offset, _key FROM sensors",
    )
    .await;
    let metrics = std::sync::Arc::clone(queries[0].metrics());
    finish(queries).await;

    let row = |temperature: f64, partition: i32, offset: i64, key: &str| json!({"temperature": temperature, "_partition": partition, "_offset": offset, "_key": key});
    assert_eq!(
        values(&broker.read_topic("sensor_alerts")),
        sorted(vec![
            row(20.0, 0, 0, "k0"),
            row(22.0, 0, 2, "k2"),
            row(25.0, 0, 5, "k5"),
            row(29.0, 0, 9, "k9"),
            row(30.0, 1, 0, "k10"),
        ])
    );

    let dead = broker.read_topic("dead_letters");
    let header = |r: &Record, name: &str| {
        r.header(name)
            .map(String::from)
            .unwrap_or_else(|| panic!("no header {name} in {r:?}"))
    };
    let mut seen: Vec<(i64, String)> = dead
        .iter()
        .map(|r| {
            assert_eq!(header(r, "vigil.topic"), "sensors");
            assert_eq!(header(r, "vigil.partition"), "0");
            assert_eq!(header(r, "vigil.source"), "sensors");
            assert!(!header(r, "vigil.error").is_empty());
            let offset: i64 = header(r, "vigil.offset").parse().unwrap();
            (offset, r.value.clone().unwrap_or_default())
        })
        .collect();
    seen.sort();
    let expected: Vec<(i64, String)> = bad.iter().map(|(o, v)| (*o, v.to_string())).collect();
    assert_eq!(
        seen, expected,
        "every malformed message, with its original bytes"
    );
    let first = dead
        .iter()
        .find(|r| header(r, "vigil.offset") == "1")
        .unwrap();
    assert_eq!(first.key.as_deref(), Some("k1"), "the original key is kept");
    assert_eq!(metrics.snapshot().dead_letters, bad.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_fails_the_query_at_start_with_a_clear_error() {
    let broker = broker_with_topics().await;
    let message = start_failure(
        &mut engine(&broker),
        "CREATE SOURCE nowhere (v BIGINT) WITH (connector = 'kafka', topic = 'no_such_topic');
         CREATE SINK out WITH (connector = 'kafka', topic = 'sensor_alerts') AS SELECT v FROM nowhere;",
    )
    .await;
    assert!(
        message.contains("'no_such_topic' does not exist"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_brokers_fail_the_query_at_start_naming_them() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut engine = Engine::with_config(
        vigil_connectors::registry_with(vigil_connectors::kafka::KafkaSettings {
            brokers: format!("127.0.0.1:{port}"),
        }),
        EngineConfig::default(),
    );
    let message = start_failure(
        &mut engine,
        "CREATE SOURCE s (v BIGINT) WITH (connector = 'kafka', topic = 't');
         CREATE SINK out WITH (connector = 'stdout') AS SELECT v FROM s;",
    )
    .await;
    assert!(
        message.contains(&format!("cannot reach Kafka brokers at 127.0.0.1:{port}")),
        "{message}"
    );
}

/// Starts `sql`'s query, which must fail promptly; returns the error.
async fn start_failure(engine: &mut Engine, sql: &str) -> String {
    let query = start(engine, sql)
        .await
        .into_iter()
        .next()
        .expect("a query");
    tokio::time::timeout(Duration::from_secs(60), query.wait())
        .await
        .expect("the query fails within the metadata timeout")
        .expect_err("the query fails")
        .to_string()
}

/// `count` events `{"id", "key", "ts"}` from `first` on, keyed over 8 keys.
fn numbered(first: i64, count: i64) -> Vec<Value> {
    (first..first + count)
        .map(|id| json!({"id": id, "key": format!("k{}", id % 8), "ts": at(id % 3000)}))
        .collect()
}

/// A pass-through rule over topic `sensors`, in consumer group prefix `group`.
fn copy_rule(group: &str) -> String {
    format!(
        "CREATE SOURCE events (id BIGINT, key TEXT, ts TIMESTAMP)
         WITH (connector = 'kafka', topic = 'sensors', group_id = '{group}');
         CREATE SINK copied WITH (connector = 'kafka', topic = 'sensor_alerts') AS
         SELECT id FROM events;"
    )
}

/// Produces `values` keyed by their `key` one every `pause`, in the background.
fn produce_slowly(
    broker: &Broker,
    values: Vec<Value>,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let producer = broker.producer();
    tokio::spawn(async move {
        for value in values {
            let key = value["key"].as_str().unwrap().to_string();
            let payload = value.to_string();
            let record = rdkafka::producer::FutureRecord::to("sensors")
                .partition(partition_of(&key))
                .key(&key)
                .payload(&payload);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("producing: {e}"));
            tokio::time::sleep(pause).await;
        }
    })
}

/// Waits until the output holds every id below `count`; returns how often each appears.
async fn wait_for_ids(broker: &Broker, count: i64) -> std::collections::BTreeMap<i64, usize> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts = id_counts(&broker.read_topic("sensor_alerts"));
        let complete = (0..count).all(|id| counts.contains_key(&id));
        if complete || std::time::Instant::now() > deadline {
            let missing: Vec<i64> = (0..count).filter(|id| !counts.contains_key(id)).collect();
            assert!(missing.is_empty(), "lost events: {missing:?}");
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ids in the output, with how often each appears.
fn id_counts(records: &[Record]) -> std::collections::BTreeMap<i64, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for value in values(records) {
        *counts.entry(value["id"].as_i64().unwrap()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_stopped_mid_stream_and_restarted_loses_no_event() {
    let broker = broker_with_topics().await;
    produce_keyed(&broker, "sensors", "key", &numbered(0, 300)).await;
    let mut first = engine(&broker);
    let queries = start(&mut first, &copy_rule("restart")).await;
    // More input arrives while the first run is going, and after it stopped.
    let producing = produce_slowly(&broker, numbered(300, 300), Duration::from_millis(40));
    broker
        .wait_for("sensor_alerts", 100, Duration::from_secs(30))
        .await;
    stop(queries).await;
    let after_first = broker.read_topic("sensor_alerts").len();
    assert!(
        after_first < 600,
        "the first run was stopped mid-stream ({after_first} copied)"
    );

    let mut second = engine(&broker);
    let queries = start(&mut second, &copy_rule("restart")).await;
    producing.await.unwrap();
    let counts = wait_for_ids(&broker, 600).await;
    stop(queries).await;
    // The second run resumed from the committed offsets instead of reading everything again.
    let repeated = counts.values().filter(|n| **n > 1).count();
    assert!(repeated < 300, "{repeated} events were read twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_move_as_processes_join_and_leave_and_no_event_is_lost() {
    let broker = broker_with_topics().await;
    let producing = produce_slowly(&broker, numbered(0, 400), Duration::from_millis(25));
    let mut first = engine(&broker);
    let first_queries = start(&mut first, &copy_rule("moving")).await;
    broker
        .wait_for("sensor_alerts", 50, Duration::from_secs(30))
        .await;
    // A second process joins: the group rebalances and the partitions are shared.
    let mut second = engine(&broker);
    let second_queries = start(&mut second, &copy_rule("moving")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The first leaves: its partitions move to the second.
    stop(first_queries).await;
    producing.await.unwrap();
    wait_for_ids(&broker, 400).await;
    let second_read = second_queries[0].metrics().snapshot().events_in;
    stop(second_queries).await;
    assert!(second_read > 0, "the joining process took partitions over");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_outage_is_retried_and_the_query_resumes_without_loss() {
    let broker = Broker::start_relayed();
    let mut topics = INPUT_TOPICS.to_vec();
    topics.extend(OUTPUT_TOPICS);
    broker.create_topics(&topics, PARTITIONS).await;
    produce_keyed(&broker, "sensors", "key", &numbered(0, 20)).await;
    let mut engine = engine(&broker);
    let queries = start(&mut engine, &copy_rule("outage")).await;
    wait_for_ids(&broker, 20).await;

    broker.cut(true);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let metrics = queries[0].metrics().snapshot();
    assert!(!queries[0].is_finished(), "the query survives the outage");
    assert!(
        metrics.connector_errors > 0,
        "the outage is visible: {metrics:?}"
    );

    broker.cut(false);
    produce_keyed(&broker, "sensors", "key", &numbered(20, 20)).await;
    wait_for_ids(&broker, 40).await;
    stop(queries).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_lag_is_reported_per_source_and_drops_to_zero_once_caught_up() {
    let broker = broker_with_topics().await;
    produce_keyed(&broker, "sensors", "key", &numbered(0, 200)).await;
    let mut engine = engine(&broker);
    let queries = start(&mut engine, &copy_rule("lag")).await;
    let metrics = std::sync::Arc::clone(queries[0].metrics());
    wait_for_ids(&broker, 200).await;
    // librdkafka reports statistics every second; the read position reaches the high
    // watermark of every partition.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let lags = loop {
        let lags = metrics.consumer_lags();
        if lags.get("events") == Some(&0) || std::time::Instant::now() > deadline {
            break lags;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop(queries).await;
    assert_eq!(
        lags.into_iter().collect::<Vec<_>>(),
        vec![("events".to_string(), 0)]
    );
}
