//! Kafka connector tests against a real Kafka-protocol broker (Tansu, see
//! `vigil_tests::kafka`): the rules of `queries/` end to end, idle partitions, quiet
//! inputs, dead letters, restarts and consumer groups.

mod bad_input;
mod delivery;
mod direct;
mod readiness;
mod restart;
mod rules;
mod scale_out;
mod tables;
mod watermarks;

use std::time::Duration;

use serde_json::Value;
use vigil_engine::runtime::RunningQuery;
use vigil_engine::{Engine, EngineConfig, StatementOutcome};
use vigil_tests::kafka::{Broker, Record};
use vigil_tests::workspace_root;

/// The input topics of `queries/profiles/kafka.sql`, and its other topics.
const INPUT_TOPICS: [&str; 6] = [
    "sensors",
    "payments",
    "dues",
    "logins",
    "transfers",
    "city_events",
];
const OUTPUT_TOPICS: [&str; 12] = [
    "sensor_alerts",
    "sensor_stats_1m",
    "sensor_stats_5m",
    "sensor_stats_hourly",
    "payment_due_alerts",
    "brute_force_alerts",
    "temperature_zscore_alerts",
    "silent_sensor_alerts",
    "rapid_activity_alerts",
    "city_event_counts",
    "login_then_transfer_alerts",
    "dead_letters",
];

/// Partitions of every test topic.
const PARTITIONS: i32 = 4;

/// A broker with the profile's topics.
async fn broker_with_topics() -> Broker {
    let broker = Broker::start();
    let mut topics = INPUT_TOPICS.to_vec();
    topics.extend(OUTPUT_TOPICS);
    broker.create_topics(&topics, PARTITIONS).await;
    broker
}

/// An engine whose Kafka connector talks to `broker`. Logs (warnings, or `VIGIL_LOG`) go to
/// the test's output, shown when it fails.
fn engine(broker: &Broker) -> Engine {
    vigil_tests::test_logging();
    engine_with_batches(broker, 1024)
}

/// An engine talking to `broker` whose sources cut batches of `batch_size` rows: small
/// batches spread a test's input over many batches and commits.
fn engine_with_batches(broker: &Broker, batch_size: usize) -> Engine {
    Engine::with_config(
        vigil_connectors::registry_with(broker.settings()),
        EngineConfig {
            batch_size,
            ..EngineConfig::default()
        },
    )
}

/// `queries/profiles/kafka.sql`, with every source made bounded (`bounded = 'latest'`) when
/// asked, so a rule reads what is in its topics and ends.
fn kafka_profile(bounded: bool) -> String {
    let profile = read("queries/profiles/kafka.sql");
    if !bounded {
        return profile;
    }
    let first_sink = profile
        .find("CREATE SINK")
        .expect("the profile declares sinks");
    let (sources, sinks) = profile.split_at(first_sink);
    let sources = sources.replace(
        "connector = 'kafka',",
        "connector = 'kafka', bounded = 'latest',",
    );
    format!("{sources}{sinks}")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).expect("a file of the workspace")
}

/// Runs SQL and returns the queries it started.
async fn start(engine: &mut Engine, sql: &str) -> Vec<RunningQuery> {
    engine
        .execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter_map(|outcome| match outcome {
            StatementOutcome::SinkStarted { query, .. } => Some(query),
            _ => None,
        })
        .collect()
}

/// Waits for queries of bounded sources to end.
async fn finish(queries: Vec<RunningQuery>) {
    for query in queries {
        tokio::time::timeout(Duration::from_secs(60), query.wait())
            .await
            .expect("the bounded query ends")
            .expect("the query succeeds");
    }
}

/// Stops running queries and waits for them.
async fn stop(queries: Vec<RunningQuery>) {
    for query in &queries {
        query.stop();
    }
    finish(queries).await;
}

/// The partition a key goes to in these tests (any stable function will do).
fn partition_of(key: &str) -> i32 {
    key.bytes().map(i32::from).sum::<i32>() % PARTITIONS
}

/// Messages keyed by `key_field` of each JSON value, each to its key's partition.
async fn produce_keyed(broker: &Broker, topic: &str, key_field: &str, values: &[Value]) {
    let messages: Vec<(i32, String, String)> = values
        .iter()
        .map(|v| {
            let key = match &v[key_field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (partition_of(&key), key, v.to_string())
        })
        .collect();
    let borrowed: Vec<(i32, Option<&str>, &str)> = messages
        .iter()
        .map(|(p, k, v)| (*p, Some(k.as_str()), v.as_str()))
        .collect();
    broker.produce(topic, &borrowed).await;
}

/// The JSON values of records, sorted by their text so comparisons ignore partition order.
fn values(records: &[Record]) -> Vec<Value> {
    let mut values: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_str(r.value.as_deref().expect("a value")).expect("JSON"))
        .collect();
    values.sort_by_key(|v| v.to_string());
    values
}

/// Sorted copy, for comparing with [`values`].
fn sorted(mut expected: Vec<Value>) -> Vec<Value> {
    expected.sort_by_key(|v| v.to_string());
    expected
}

/// Event time `seconds` after 2024-01-01T00:00:00Z, as written in events.
fn at(seconds: i64) -> String {
    let (m, s) = (seconds.div_euclid(60), seconds.rem_euclid(60));
    if m < 0 {
        // Only window starts go before midnight, at most an hour.
        format!("2023-12-31T23:{:02}:{s:02}.000Z", 60 + m)
    } else {
        format!("2024-01-01T{:02}:{:02}:{s:02}.000Z", m / 60, m % 60)
    }
}
