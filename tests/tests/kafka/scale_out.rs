//! Several processes running one rule in one consumer group share the topic's partitions.

use serde_json::{Value, json};

use super::*;

/// Per-sensor counts per minute over topic `sensors` into `sink_topic`: unbounded in group
/// `scale`, or bounded.
fn counts_rule(sink_topic: &str, bounded: bool) -> String {
    let reading = if bounded {
        "bounded = 'latest'"
    } else {
        "group_id = 'scale', idle_timeout = '1s'"
    };
    format!(
        "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH (connector = 'kafka', topic = 'sensors', partitioned_by = 'sensor_id', {reading});
         CREATE SINK per_minute WITH (connector = 'kafka', topic = '{sink_topic}') AS
         SELECT window_start, sensor_id, count(*) AS readings, max(temperature) AS hottest
         FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE)
         GROUP BY window_start, window_end, sensor_id;"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_in_one_group_together_produce_what_one_produces() {
    let broker = broker_with_topics().await;
    // Two engines stand for two vigil processes: separate consumers in one group.
    let mut first = engine(&broker);
    let mut second = engine(&broker);
    let mut queries = start(&mut first, &counts_rule("sensor_stats_1m", false)).await;
    queries.extend(start(&mut second, &counts_rule("sensor_stats_1m", false)).await);
    // Let the group settle before data flows, so no partition is read twice.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let mut readings: Vec<Value> = Vec::new();
    let mut windows = std::collections::BTreeSet::new();
    for i in 0..240 {
        let sensor = format!("s{}", i % 8);
        let t = i * 3 / 2;
        windows.insert((sensor.clone(), t / 60));
        readings.push(json!({"sensor_id": sensor, "temperature": (i % 40) as f64, "ts": at(t)}));
    }
    produce_keyed(&broker, "sensors", "sensor_id", &readings).await;
    // Wall-clock advance closes the last minute once the topic is quiet.
    let shared = broker
        .wait_for("sensor_stats_1m", windows.len(), Duration::from_secs(60))
        .await;
    for query in &queries {
        assert_eq!(query.metrics().snapshot().late_events, 0);
    }
    stop(queries).await;

    let mut alone = engine(&broker);
    finish(start(&mut alone, &counts_rule("sensor_stats_5m", true)).await).await;
    let single = broker.read_topic("sensor_stats_5m");
    assert_eq!(single.len(), windows.len());
    assert_eq!(values(&shared), values(&single));
}
