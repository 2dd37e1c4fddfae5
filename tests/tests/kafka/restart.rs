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
    let mut windows: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for value in values(&broker.read_topic("sensor_alerts")) {
        let start = value["window_start"].as_str().unwrap().to_string();
        windows
            .entry(start)
            .or_default()
            .push(value["n"].as_i64().unwrap());
    }
    windows
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
    let small_batches = || {
        Engine::with_config(
            vigil_connectors::registry_with(broker.settings()),
            EngineConfig {
                batch_size: 8,
                ..EngineConfig::default()
            },
        )
    };
    produce(&broker, 0..200).await;
    let mut first = small_batches();
    let queries = start(&mut first, RULE).await;
    // The window of event 180 closes once events of 190 and more are in.
    wait_for_window(&broker, &at(170)).await;
    stop(queries).await;

    produce(&broker, 200..400).await;
    let mut second = small_batches();
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
