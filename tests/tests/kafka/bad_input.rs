//! Bad records mixed into a topic: each is dead-lettered alone, everything else delivered,
//! and a bounded run commits and delivers its dead letters before it exits.

use serde_json::json;

use super::*;

/// A source with a `NOT NULL` key: messages without a key, or whose payload does not
/// decode, are dead-lettered one by one and every other message comes through, in batches
/// before and after them.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_whose_metadata_does_not_fit_is_dead_lettered_alone() {
    let broker = broker_with_topics().await;
    let mut messages: Vec<(i32, Option<String>, String)> = Vec::new();
    let mut expected_ids = Vec::new();
    let mut expected_bad = Vec::new();
    for id in 0..200i64 {
        let value = json!({"id": id}).to_string();
        let (key, value) = match id % 50 {
            // No key for a `_key TEXT NOT NULL` column.
            10 => (None, value),
            // A malformed payload right after it.
            11 => (Some(format!("k{id}")), "{\"id\":".to_string()),
            _ => (Some(format!("k{id}")), value),
        };
        if id % 50 == 10 || id % 50 == 11 {
            expected_bad.push(id);
        } else {
            expected_ids.push(id);
        }
        messages.push((0, key, value));
    }
    let borrowed: Vec<(i32, Option<&str>, &str)> = messages
        .iter()
        .map(|(p, k, v)| (*p, k.as_deref(), v.as_str()))
        .collect();
    broker.produce("sensors", &borrowed).await;

    // Several batches, so rows after the bad ones come in later batches.
    let mut engine = engine_with_batches(&broker, 16);
    let queries = start(
        &mut engine,
        "CREATE SOURCE events (id BIGINT, _key TEXT NOT NULL, _offset BIGINT)
         WITH (connector = 'kafka', topic = 'sensors', bounded = 'latest',
               dead_letter_topic = 'dead_letters');
         CREATE SINK copied WITH (connector = 'kafka', topic = 'sensor_alerts') AS
         SELECT id, _key FROM events;",
    )
    .await;
    let metrics = std::sync::Arc::clone(queries[0].metrics());
    finish(queries).await;

    let mut ids: Vec<i64> = values(&broker.read_topic("sensor_alerts"))
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, expected_ids, "every good record is delivered");
    let mut dead: Vec<i64> = broker
        .read_topic("dead_letters")
        .iter()
        .map(dead_letter_offset)
        .collect();
    dead.sort();
    assert_eq!(dead, expected_bad, "each bad record is dead-lettered alone");
    assert_eq!(metrics.snapshot().dead_letters, expected_bad.len() as u64);
}

/// A bounded run ends only once its dead letters are delivered and its offsets committed
/// to the end of every partition; the end of a partition is not a connector error.
#[tokio::test(flavor = "multi_thread")]
async fn a_bounded_run_delivers_its_dead_letters_and_commits_before_it_exits() {
    let broker = broker_with_topics().await;
    let mut messages: Vec<(i32, Option<&str>, String)> = Vec::new();
    for i in 0..102 {
        messages.push((i % PARTITIONS, None, format!("not json {i}")));
        messages.push((i % PARTITIONS, None, json!({"id": i}).to_string()));
    }
    let borrowed: Vec<(i32, Option<&str>, &str)> = messages
        .iter()
        .map(|(p, k, v)| (*p, *k, v.as_str()))
        .collect();
    broker.produce("sensors", &borrowed).await;

    let mut engine = engine(&broker);
    let queries = start(
        &mut engine,
        "CREATE SOURCE events (id BIGINT)
         WITH (connector = 'kafka', topic = 'sensors', bounded = 'latest',
               dead_letter_topic = 'dead_letters', group_id = 'bounded');
         CREATE SINK copied WITH (connector = 'kafka', topic = 'sensor_alerts') AS
         SELECT id FROM events;",
    )
    .await;
    let metrics = std::sync::Arc::clone(queries[0].metrics());
    finish(queries).await;

    // Read right after the run: nothing may still be on its way.
    let dead = broker.read_topic("dead_letters");
    assert_eq!(
        dead.len(),
        102,
        "every dead letter is delivered before the run exits"
    );
    assert_eq!(broker.read_topic("sensor_alerts").len(), 102);
    let committed = broker.committed_offsets("bounded.copied.events", "sensors");
    // Two messages for every i with i % PARTITIONS == p.
    let expected: std::collections::BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| {
            (
                p,
                2 * (0..102).filter(|i| i % PARTITIONS == p).count() as i64,
            )
        })
        .collect();
    assert_eq!(committed, expected, "offsets are committed to the end");
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.dead_letters, 102);
    assert_eq!(snapshot.connector_errors, 0, "{snapshot:?}");
}

fn dead_letter_offset(record: &Record) -> i64 {
    record
        .header("vigil.offset")
        .expect("an offset header")
        .parse()
        .expect("an offset")
}

/// A row whose expression fails goes to the source's dead-letter topic with the error, the
/// query and the row, and the query goes on; on a restart it does not fail again at the
/// same message. A key that is not a number is a dead letter for `_key BIGINT`.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_whose_expression_fails_is_dead_lettered_and_the_query_goes_on() {
    let broker = broker_with_topics().await;
    let mut messages: Vec<(i32, Option<String>, String)> = Vec::new();
    for i in 0..40i64 {
        let key = if i == 7 {
            "seven".to_string()
        } else {
            i.to_string()
        };
        messages.push((0, Some(key), json!({"v": i * 10, "h": i % 10}).to_string()));
    }
    let borrowed: Vec<(i32, Option<&str>, &str)> = messages
        .iter()
        .map(|(p, k, v)| (*p, k.as_deref(), v.as_str()))
        .collect();
    broker.produce("sensors", &borrowed).await;
    let rule = "CREATE SOURCE events (v BIGINT, h BIGINT, _key BIGINT, _offset BIGINT)
         WITH (connector = 'kafka', topic = 'sensors', bounded = 'latest',
               dead_letter_topic = 'dead_letters', group_id = 'division');
         CREATE SINK quotients WITH (connector = 'kafka', topic = 'sensor_alerts') AS
         SELECT _key, v / h AS q FROM events;";
    for run in 0..2 {
        let mut engine = engine(&broker);
        let queries = start(&mut engine, rule).await;
        let metrics = std::sync::Arc::clone(queries[0].metrics());
        finish(queries).await;
        if run == 0 {
            let snapshot = metrics.snapshot();
            assert_eq!(snapshot.row_errors, 4, "{snapshot:?}");
            assert_eq!(snapshot.dead_letters, 1, "{snapshot:?}");
        }
    }
    let mut keys: Vec<i64> = values(&broker.read_topic("sensor_alerts"))
        .iter()
        .map(|v| v["_key"].as_i64().unwrap())
        .collect();
    keys.sort();
    let expected: Vec<i64> = (0..40).filter(|i| i % 10 != 0 && *i != 7).collect();
    assert_eq!(
        keys, expected,
        "the good rows, once: the second run resumed past them"
    );
    // Four rows whose division failed, and the message with the bad key.
    let dead = broker
        .wait_for("dead_letters", 5, Duration::from_secs(20))
        .await;
    let mut failed: Vec<i64> = dead
        .iter()
        .filter(|r| r.header("vigil.operator") == Some("Project"))
        .map(|r| {
            assert_eq!(r.header("vigil.query"), Some("quotients"));
            assert!(r.header("vigil.error").unwrap().contains("Divide by zero"));
            let row: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
            row["_offset"].as_i64().unwrap()
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![0, 10, 20, 30],
        "each failing row once, with its offset"
    );
    let bad_key: Vec<i64> = dead
        .iter()
        .filter(|r| r.header("vigil.offset").is_some())
        .map(dead_letter_offset)
        .collect();
    assert_eq!(bad_key, vec![7], "the message whose key is not a number");
}

/// A bounded run over partitions filled beforehand, with a short idle timeout: a partition
/// whose backlog is not read yet never counts as idle, so no event is late and every window
/// counts all of its events.
#[tokio::test(flavor = "multi_thread")]
async fn partitions_with_a_backlog_are_never_idle() {
    let broker = broker_with_topics().await;
    const PER_PARTITION: i64 = 1500;
    let mut messages = Vec::new();
    for partition in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            messages.push((partition, json!({"id": i, "ts": at(i / 10)}).to_string()));
        }
    }
    let borrowed: Vec<(i32, Option<&str>, &str)> = messages
        .iter()
        .map(|(p, v)| (*p, None, v.as_str()))
        .collect();
    broker.produce("sensors", &borrowed).await;
    let mut engine = engine_with_batches(&broker, 64);
    let queries = start(
        &mut engine,
        "CREATE SOURCE events (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
         WITH (connector = 'kafka', topic = 'sensors', bounded = 'latest', idle_timeout = '1s');
         CREATE SINK counts WITH (connector = 'kafka', topic = 'sensor_alerts') AS
         SELECT window_start, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '10' SECOND)
         GROUP BY window_start, window_end;",
    )
    .await;
    let metrics = std::sync::Arc::clone(queries[0].metrics());
    finish(queries).await;
    assert_eq!(metrics.snapshot().late_events, 0);
    let counts: Vec<i64> = values(&broker.read_topic("sensor_alerts"))
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    // 100 events a window per partition.
    assert_eq!(counts.len() as i64, PER_PARTITION / 100);
    assert!(
        counts.iter().all(|n| *n == 100 * PARTITIONS as i64),
        "{counts:?}"
    );
}
