//! Each rule of `queries/` on Kafka: known events in, the exact alerts out.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

fn reading(sensor: &str, temperature: f64, humidity: f64, t: i64) -> Value {
    json!({"sensor_id": sensor, "temperature": temperature, "humidity": humidity, "ts": at(t)})
}

#[tokio::test(flavor = "multi_thread")]
async fn sensor_threshold_alerts_on_scored_readings() {
    let broker = broker_with_topics().await;
    produce_keyed(
        &broker,
        "sensors",
        "sensor_id",
        &[
            reading("s1", 20.0, 50.0, 1),
            reading("s1", 36.0, 50.0, 2),
            reading("s2", 31.0, 90.0, 3),
            reading("s3", 8.0, 40.0, 4),
            reading("s2", 25.0, 86.0, 5),
            reading("s3", 12.0, 60.0, 6),
        ],
    )
    .await;
    let mut engine = engine(&broker);
    start(&mut engine, &kafka_profile(true)).await;
    finish(start(&mut engine, &read("queries/sensor_threshold.sql")).await).await;

    let alerts = broker.read_topic("sensor_alerts");
    for alert in &alerts {
        let value: Value = serde_json::from_str(alert.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            alert.key.as_deref(),
            value["sensor_id"].as_str(),
            "keyed by sensor"
        );
    }
    let alert = |sensor, temperature, humidity, t, score, level, reasons: &[&str], prediction| {
        json!({
            "sensor_id": sensor, "temperature": temperature, "humidity": humidity, "ts": at(t),
            "score": score, "level": level, "reasons": reasons, "prediction": prediction,
        })
    };
    assert_eq!(
        values(&alerts),
        sorted(vec![
            alert(
                "s1",
                36.0,
                50.0,
                2,
                3,
                "CRITICAL",
                &["HIGH_TEMPERATURE"],
                "ANOMALY_DETECTED"
            ),
            alert(
                "s2",
                31.0,
                90.0,
                3,
                3,
                "WARNING",
                &["TEMP_WARNING", "HIGH_HUMIDITY"],
                "ANOMALY_DETECTED"
            ),
            alert(
                "s3",
                8.0,
                40.0,
                4,
                1,
                "WARNING",
                &["TEMP_WARNING"],
                "WARNING_DETECTED"
            ),
            alert(
                "s2",
                25.0,
                86.0,
                5,
                2,
                "WARNING",
                &["HIGH_HUMIDITY"],
                "WARNING_DETECTED"
            ),
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sensor_windows_emit_tumbling_and_hopping_statistics() {
    let broker = broker_with_topics().await;
    produce_keyed(
        &broker,
        "sensors",
        "sensor_id",
        &[
            reading("s1", 20.0, 50.0, 10),
            reading("s2", 10.0, 50.0, 20),
            reading("s1", 30.0, 50.0, 50),
            reading("s1", 25.0, 50.0, 70),
        ],
    )
    .await;
    let mut engine = engine(&broker);
    start(&mut engine, &kafka_profile(true)).await;
    finish(start(&mut engine, &read("queries/sensor_windows.sql")).await).await;

    let stats = |start: i64, size: i64, sensor, readings, avg: f64, max: f64| {
        json!({
            "window_start": at(start), "window_end": at(start + size), "sensor_id": sensor,
            "readings": readings, "avg_temperature": avg, "max_temperature": max,
        })
    };
    assert_eq!(
        values(&broker.read_topic("sensor_stats_1m")),
        sorted(vec![
            stats(0, 60, "s1", 2, 25.0, 30.0),
            stats(0, 60, "s2", 1, 10.0, 10.0),
            stats(60, 60, "s1", 1, 25.0, 25.0),
        ])
    );
    // 5-minute windows every minute: the first two s1 readings fall in the windows starting
    // 4 minutes before to 0 minutes after midnight, the third in those from -3 to +1.
    let mut expected = Vec::new();
    for start in -4..=1 {
        let s1: Vec<f64> = [(10, 20.0), (50, 30.0), (70, 25.0)]
            .iter()
            .filter(|(t, _)| (start * 60..start * 60 + 300).contains(t))
            .map(|(_, v)| *v)
            .collect();
        let avg = s1.iter().sum::<f64>() / s1.len() as f64;
        let max = s1.iter().cloned().fold(f64::MIN, f64::max);
        expected.push(stats(start * 60, 300, "s1", s1.len(), avg, max));
        if start <= 0 {
            expected.push(stats(start * 60, 300, "s2", 1, 10.0, 10.0));
        }
    }
    assert_eq!(
        values(&broker.read_topic("sensor_stats_5m")),
        sorted(expected)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sensor_hourly_keeps_an_upsert_topic_of_each_sensors_hours() {
    let broker = broker_with_topics().await;
    // One sensor per partition, so that every partition's watermark moves; s1's 00:58
    // reading comes after its 01:00:30 one, within the 10 minutes allowed.
    let mut readings = Vec::new();
    for t in [600, 2400, 3630] {
        for sensor in ["s1", "s2", "s3", "s4"] {
            readings.push(reading(sensor, 20.0, 50.0, t));
        }
    }
    readings.push(reading("s1", 26.0, 50.0, 3480));
    for sensor in ["s1", "s2", "s3", "s4"] {
        readings.push(reading(sensor, 20.0, 50.0, 4320));
    }
    produce_keyed(&broker, "sensors", "sensor_id", &readings).await;
    let mut engine = engine(&broker);
    start(&mut engine, &kafka_profile(true)).await;
    finish(start(&mut engine, &read("queries/sensor_hourly.sql")).await).await;

    // Early rows and corrections replace each other under the sensor's and hour's key.
    let mut table = BTreeMap::new();
    for record in broker.read_topic("sensor_stats_hourly") {
        let key: Value = serde_json::from_str(&record.key.expect("upserts are keyed")).unwrap();
        let value: Value = serde_json::from_str(&record.value.expect("no deletes")).unwrap();
        let expected_key =
            json!({"sensor_id": value["sensor_id"], "window_start": value["window_start"]});
        assert_eq!(key, expected_key);
        table.insert(key.to_string(), value);
    }
    let hour = |sensor: &str, start: i64, readings: i64, avg: f64, max: f64| {
        json!({
            "window_start": at(start), "window_end": at(start + 3600), "sensor_id": sensor,
            "readings": readings, "avg_temperature": avg, "max_temperature": max,
        })
    };
    let mut expected = vec![
        hour("s1", 0, 3, 22.0, 26.0),
        hour("s1", 3600, 2, 20.0, 20.0),
    ];
    for sensor in ["s2", "s3", "s4"] {
        expected.extend([
            hour(sensor, 0, 2, 20.0, 20.0),
            hour(sensor, 3600, 2, 20.0, 20.0),
        ]);
    }
    assert_eq!(sorted(table.into_values().collect()), sorted(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_due_keeps_an_upsert_topic_of_accounts_owing_over_150() {
    let broker = broker_with_topics().await;
    let event = |account: i64, amount: f64, t: i64| json!({"account_id": account, "amount": amount, "ts": at(t)});
    produce_keyed(
        &broker,
        "dues",
        "account_id",
        &[
            event(2, 500.0, 0),
            event(1, 200.0, 3),
            event(1, 211.0, 4),
            event(3, 20.0, 5),
            event(1, 212.0, 6),
            event(4, 300.0, 7),
        ],
    )
    .await;
    produce_keyed(
        &broker,
        "payments",
        "account_id",
        &[event(1, 100.0, 1), event(1, 101.0, 2), event(2, 400.0, 8)],
    )
    .await;
    let mut engine = engine(&broker);
    start(&mut engine, &kafka_profile(true)).await;
    finish(start(&mut engine, &read("queries/payment_due.sql")).await).await;

    // A consumer of the upsert topic keeps the last value per key; a tombstone deletes it.
    let records = broker.read_topic("payment_due_alerts");
    let mut table = BTreeMap::new();
    for record in &records {
        let key = record.key.clone().expect("upserts are keyed");
        match &record.value {
            Some(value) => {
                let value: Value = serde_json::from_str(value).unwrap();
                assert_eq!(value["account_id"].to_string(), key);
                table.insert(key, value);
            }
            None => {
                assert!(table.remove(&key).is_some(), "a tombstone deletes a row");
            }
        }
    }
    // Account 2 owed 500 until its payment of 400 arrived, whichever topic was read first.
    assert_eq!(
        table,
        BTreeMap::from([
            (
                "1".to_string(),
                json!({"account_id": 1, "outstanding": 422.0})
            ),
            (
                "4".to_string(),
                json!({"account_id": 4, "outstanding": 300.0})
            ),
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn brute_force_alerts_on_five_failed_logins_in_a_minute() {
    let broker = broker_with_topics().await;
    let login = |user: &str, event: &str, ip: &str, t: i64| json!({"user_id": user, "event_type": event, "ip": ip, "ts": at(t)});
    let mut events = Vec::new();
    for t in 1..=6 {
        let ip = if t % 2 == 0 { "10.0.0.2" } else { "10.0.0.1" };
        events.push(login("u1", "login_failed", ip, t));
    }
    for t in 1..=4 {
        events.push(login("u2", "login_failed", "10.0.0.9", t));
    }
    events.push(login("u2", "login_success", "10.0.0.9", 5));
    events.push(login("u1", "login_success", "10.0.0.1", 7));
    produce_keyed(&broker, "logins", "user_id", &events).await;
    let mut engine = engine(&broker);
    start(&mut engine, &kafka_profile(true)).await;
    finish(start(&mut engine, &read("queries/brute_force.sql")).await).await;

    // Every 10-second hop whose minute covers seconds 1 to 6: starts -50 s to 0 s.
    let expected: Vec<Value> = (-5..=0)
        .map(|hop| {
            json!({
                "window_start": at(hop * 10), "window_end": at(hop * 10 + 60), "user_id": "u1",
                "failed_logins": 6, "ips": ["10.0.0.1", "10.0.0.2"],
            })
        })
        .collect();
    assert_eq!(
        values(&broker.read_topic("brute_force_alerts")),
        sorted(expected)
    );
}
