//! Event time on unbounded topics: idle partitions and quiet inputs must not keep windows
//! open forever.

use serde_json::{Value, json};

use super::*;

/// The sensor source and the sinks of `queries/sensor_windows.sql`, unbounded, with `options`.
fn sensors_profile(options: &str) -> String {
    format!(
        "CREATE SOURCE sensors (
            sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
         ) WITH (connector = 'kafka', topic = 'sensors', {options});
         CREATE SINK sensor_stats_1m WITH (connector = 'kafka', topic = 'sensor_stats_1m');
         CREATE SINK sensor_stats_5m WITH (connector = 'kafka', topic = 'sensor_stats_5m');"
    )
}

/// Readings of s1, s2 and s3 (partitions 0, 1, 2; partition 3 gets none) in the first
/// and second minute.
async fn three_of_four_partitions(broker: &Broker) {
    let mut readings = Vec::new();
    for t in [10, 80] {
        for sensor in ["s1", "s2", "s3"] {
            readings.push(
                json!({"sensor_id": sensor, "temperature": 20.0, "humidity": 50.0, "ts": at(t)}),
            );
        }
    }
    let partitions: Vec<i32> = ["s1", "s2", "s3"].iter().map(|s| partition_of(s)).collect();
    assert_eq!(
        partitions,
        vec![0, 1, 2],
        "the test needs partition 3 empty"
    );
    produce_keyed(broker, "sensors", "sensor_id", &readings).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_partition_stops_holding_windows_open() {
    let broker = broker_with_topics().await;
    three_of_four_partitions(&broker).await;
    let mut engine = engine(&broker);
    start(
        &mut engine,
        &sensors_profile("idle_timeout = '1s', idle_advance = 'none'"),
    )
    .await;
    let queries = start(&mut engine, &read("queries/sensor_windows.sql")).await;

    // Partitions 0-2 are at 00:01:20 - 5 s; partition 3 is empty and idle after a second.
    let records = broker
        .wait_for("sensor_stats_1m", 3, Duration::from_secs(20))
        .await;
    let window = |v: &Value| (v["window_start"].clone(), v["readings"].clone());
    let windows: Vec<_> = values(&records).iter().map(window).collect();
    assert_eq!(windows, vec![(json!(at(0)), json!(1)); 3]);
    // The second minute stays open: there is no later data and no wall-clock advance.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker.read_topic("sensor_stats_1m").len(), 3);
    stop(queries).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_idleness_an_empty_partition_holds_every_window() {
    let broker = broker_with_topics().await;
    three_of_four_partitions(&broker).await;
    let mut engine = engine(&broker);
    start(
        &mut engine,
        &sensors_profile("idle_timeout = '1h', idle_advance = 'none'"),
    )
    .await;
    let queries = start(&mut engine, &read("queries/sensor_windows.sql")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(broker.read_topic("sensor_stats_1m").is_empty());
    stop(queries).await;
}

/// Three failed logins in the last seconds of a minute, then silence; an alert on three
/// failures per minute, with a watermark without delay.
async fn quiet_after_three_failures(broker: &Broker, idle_advance: &str) -> Vec<RunningQuery> {
    let logins: Vec<Value> = (57..=59)
        .map(|t| json!({"user_id": "u1", "event_type": "login_failed", "ip": "10.0.0.1", "ts": at(t)}))
        .collect();
    produce_keyed(broker, "logins", "user_id", &logins).await;
    let mut engine = engine(broker);
    let sql = format!(
        "CREATE SOURCE logins (
            user_id TEXT, event_type TEXT, ip TEXT, ts TIMESTAMP,
            WATERMARK FOR ts AS ts
         ) WITH (connector = 'kafka', topic = 'logins', idle_timeout = '1s', idle_advance = '{idle_advance}');
         CREATE SINK brute_force_alerts WITH (connector = 'kafka', topic = 'brute_force_alerts') AS
         SELECT window_start, user_id, count(*) AS failed_logins
         FROM TUMBLE(logins, ts, INTERVAL '1' MINUTE)
         GROUP BY window_start, window_end, user_id
         HAVING count(*) >= 3;"
    );
    start(&mut engine, &sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_input_moves_event_time_with_the_wall_clock_so_the_last_alert_fires() {
    let broker = broker_with_topics().await;
    let queries = quiet_after_three_failures(&broker, "wall_clock").await;
    let records = broker
        .wait_for("brute_force_alerts", 1, Duration::from_secs(15))
        .await;
    assert_eq!(
        values(&records),
        vec![json!({"window_start": at(0), "user_id": "u1", "failed_logins": 3})]
    );
    stop(queries).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_wall_clock_advance_a_quiet_input_keeps_its_last_window_open() {
    let broker = broker_with_topics().await;
    let queries = quiet_after_three_failures(&broker, "none").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(broker.read_topic("brute_force_alerts").is_empty());
    stop(queries).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn event_time_may_come_from_the_kafka_message_timestamp() {
    let broker = broker_with_topics().await;
    let producer = broker.producer();
    let midnight_ms = 1_704_067_200_000_i64; // 2024-01-01T00:00:00Z
    for (seconds, sensor) in [(10, "s1"), (20, "s1"), (70, "s1")] {
        let payload = json!({"sensor_id": sensor}).to_string();
        let record = rdkafka::producer::FutureRecord::to("sensors")
            .partition(0)
            .key(sensor)
            .payload(&payload)
            .timestamp(midnight_ms + seconds * 1000);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing: {e}"));
    }
    let mut engine = engine(&broker);
    let queries = start(
        &mut engine,
        "CREATE SOURCE sensors (sensor_id TEXT, _timestamp TIMESTAMP,
            WATERMARK FOR _timestamp AS _timestamp - INTERVAL '5' SECOND)
         WITH (connector = 'kafka', topic = 'sensors', bounded = 'latest');
         CREATE SINK per_minute WITH (connector = 'kafka', topic = 'sensor_stats_1m') AS
         SELECT window_start, sensor_id, count(*) AS readings
         FROM TUMBLE(sensors, _timestamp, INTERVAL '1' MINUTE)
         GROUP BY window_start, window_end, sensor_id;",
    )
    .await;
    finish(queries).await;
    assert_eq!(
        values(&broker.read_topic("sensor_stats_1m")),
        sorted(vec![
            json!({"window_start": at(0), "sensor_id": "s1", "readings": 2}),
            json!({"window_start": at(60), "sensor_id": "s1", "readings": 1}),
        ])
    );
}

/// `EMIT EARLY` over a quiet input: event time stands still (the other partitions hold the
/// watermark back, with no idle advance), so an hour's running count comes on wall time,
/// and again once another reading arrives. Without a key the sink writes each change with
/// its `op`.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_input_gets_its_early_rows_on_wall_time() {
    let broker = broker_with_topics().await;
    let readings = |n: usize| {
        let reading =
            json!({"sensor_id": "s1", "temperature": 20.0, "humidity": 50.0, "ts": at(10)});
        vec![reading; n]
    };
    produce_keyed(&broker, "sensors", "sensor_id", &readings(3)).await;
    let mut engine = engine(&broker);
    start(
        &mut engine,
        &sensors_profile("idle_timeout = '1h', idle_advance = 'none'"),
    )
    .await;
    let queries = start(
        &mut engine,
        "CREATE SINK sensor_stats_1m AS
         SELECT window_start, sensor_id, count(*) AS readings
         FROM TUMBLE(sensors, ts, INTERVAL '1' HOUR)
         GROUP BY window_start, window_end, sensor_id
         EMIT EARLY EVERY INTERVAL '1' SECOND;",
    )
    .await;
    let count = |op: &str, n: i64| json!({"op": op, "window_start": at(0), "sensor_id": "s1", "readings": n});
    let records = broker
        .wait_for("sensor_stats_1m", 1, Duration::from_secs(20))
        .await;
    assert_eq!(values(&records), vec![count("+I", 3)]);

    produce_keyed(&broker, "sensors", "sensor_id", &readings(1)).await;
    let records = broker
        .wait_for("sensor_stats_1m", 3, Duration::from_secs(20))
        .await;
    let expected = vec![count("+I", 3), count("-U", 3), count("+U", 4)];
    assert_eq!(values(&records), sorted(expected));
    stop(queries).await;
}
