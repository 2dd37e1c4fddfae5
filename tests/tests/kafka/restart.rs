//! A windowed rule stopped mid-stream and started again, without state: the windows the
//! first run emitted are never emitted again with part of their events.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

/// Window size of the rule, in seconds.
const WINDOW: i64 = 10;

/// Event `i`: time `i` seconds, give or take four, so a window's events straddle batches.
fn event(i: i64) -> Value {
    json!({"id": i, "key": "k", "ts": at(event_second(i))})
}

fn event_second(i: i64) -> i64 {
    i + (i * 7) % 9 - 4
}

/// Events `0..n` per window start: what every emitted window must count.
fn truth(n: i64) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let start = event_second(i).div_euclid(WINDOW) * WINDOW;
        *counts.entry(at(start)).or_default() += 1;
    }
    counts
}

const RULE: &str = "CREATE SOURCE events (id BIGINT, key TEXT, ts TIMESTAMP,
        WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
     WITH (connector = 'kafka', topic = 'sensors', group_id = 'resume', idle_advance = 'none');
     CREATE SINK counts WITH (connector = 'kafka', topic = 'sensor_alerts') AS
     SELECT window_start, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '10' SECOND)
     GROUP BY window_start, window_end;";

async fn produce(broker: &Broker, range: std::ops::Range<i64>) {
    let values: Vec<String> = range.map(|i| event(i).to_string()).collect();
    let messages: Vec<(i32, Option<&str>, &str)> =
        values.iter().map(|v| (0, Some("k"), v.as_str())).collect();
    broker.produce("sensors", &messages).await;
}

/// The windows in the output so far: window start to every count emitted for it.
fn emitted(broker: &Broker) -> BTreeMap<String, Vec<i64>> {
    vigil_tests::kafka::window_counts(&broker.read_topic("sensor_alerts"), "n")
}

async fn wait_for_window(broker: &Broker, start: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !emitted(broker).contains_key(start) {
        assert!(
            std::time::Instant::now() < deadline,
            "window {start} never came"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_windowed_rule_emits_no_partial_window() {
    let broker = broker_with_topics().await;
    produce(&broker, 0..200).await;
    let mut first = engine_with_batches(&broker, 8);
    let queries = start(&mut first, RULE).await;
    // The window of event 180 closes once events of 190 and more are in.
    wait_for_window(&broker, &at(170)).await;
    stop(queries).await;

    produce(&broker, 200..400).await;
    let mut second = engine_with_batches(&broker, 8);
    let queries = start(&mut second, RULE).await;
    wait_for_window(&broker, &at(380)).await;
    stop(queries).await;

    let truth = truth(400);
    let windows = emitted(&broker);
    for (start, counts) in &windows {
        for n in counts {
            assert_eq!(Some(n), truth.get(start), "window {start}: {counts:?}");
        }
    }
    let last = at(380);
    let missing: Vec<&String> = truth
        .keys()
        .filter(|s| **s <= last && !windows.contains_key(*s))
        .collect();
    assert!(missing.is_empty(), "every window is present: {missing:?}");
}

/// The keys an upsert topic holds: the last record of each key, tombstones removing it.
fn live_keys(broker: &Broker, topic: &str) -> BTreeMap<String, Value> {
    let mut keys = BTreeMap::new();
    for record in broker.read_topic(topic) {
        let key = record.key.clone().expect("upserts are keyed");
        match &record.value {
            Some(value) => {
                keys.insert(key, serde_json::from_str(value).unwrap());
            }
            None => {
                keys.remove(&key);
            }
        }
    }
    keys
}

/// An updating rule restarted without state rebuilds it from the whole input; keys whose
/// rows the earlier run wrote and that the input since deleted get their tombstones once the
/// restarted run has caught up, even though the rebuild never emits a change for them.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_updating_rule_removes_the_keys_it_no_longer_holds() {
    let broker = broker_with_topics().await;
    let rule = "CREATE SOURCE payments (account TEXT, amount DOUBLE)
         WITH (connector = 'kafka', topic = 'payments', group_id = 'upserts');
         CREATE SINK owing WITH (connector = 'kafka', topic = 'payment_due_alerts', key = 'account') AS
         SELECT account, sum(amount) AS owed FROM payments GROUP BY account HAVING sum(amount) > 150;";
    let pay = |account: usize, amount: f64| {
        json!({"account": format!("a{account}"), "amount": amount}).to_string()
    };
    let owing: Vec<String> = (0..10).map(|a| pay(a, 200.0)).collect();
    let messages: Vec<(i32, Option<&str>, &str)> =
        owing.iter().map(|v| (0, None, v.as_str())).collect();
    broker.produce("payments", &messages).await;
    let mut first = engine_with_batches(&broker, 1);
    let queries = start(&mut first, rule).await;
    wait_until(|| live_keys(&broker, "payment_due_alerts").len() == 10).await;
    stop(queries).await;

    // Half the accounts pay back, while no rule runs.
    let refunds: Vec<String> = (0..5).map(|a| pay(a, -100.0)).collect();
    let messages: Vec<(i32, Option<&str>, &str)> =
        refunds.iter().map(|v| (0, None, v.as_str())).collect();
    broker.produce("payments", &messages).await;

    // Rebuilt in large batches, a0..a4 go from nothing to 100 owed: no change to emit.
    let mut second = engine_with_batches(&broker, 1024);
    let queries = start(&mut second, rule).await;
    let expected: Vec<String> = (5..10).map(|a| format!("a{a}")).collect();
    wait_until(|| {
        live_keys(&broker, "payment_due_alerts")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            == expected
    })
    .await;
    stop(queries).await;
    let keys = live_keys(&broker, "payment_due_alerts");
    assert_eq!(keys.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(keys.values().all(|v| v["owed"] == 200.0), "{keys:?}");
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
