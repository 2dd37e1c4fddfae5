//! A table on a Kafka topic is followed as it changes: each reading meets the row its
//! sensor had in the topic when the reading came, and a tombstone deletes its key's row.

use std::time::Duration;

use serde_json::{Value, json};
use vigil_tests::kafka::Broker;

use super::{engine, start, stop};

/// Waits until the query's lookup join has taken in `rows` rows from its two inputs.
async fn joined_inputs(query: &vigil_engine::runtime::RunningQuery, rows: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let operators = query.metrics().operators();
        let seen = (operators.iter())
            .find(|o| o.operator == "LookupJoin")
            .map_or(0, |o| o.rows_in);
        if seen >= rows {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lookup join took in {seen} rows, expected {rows}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn produce(broker: &Broker, topic: &str, value: Value) {
    broker
        .produce(topic, &[(0, None, &value.to_string())])
        .await;
}

/// The first `count` messages of `topic`, parsed, once they have arrived.
async fn json_values(broker: &Broker, topic: &str, count: usize) -> Vec<Value> {
    let records = broker.wait_for(topic, count, Duration::from_secs(30)).await;
    (records.iter())
        .map(|r| serde_json::from_str(r.value.as_deref().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_table_is_followed_as_its_topic_changes() {
    let broker = Broker::start();
    broker
        .create_topics(&["sites", "readings", "enriched"], 1)
        .await;
    let mut engine = engine(&broker);
    let queries = start(
        &mut engine,
        "CREATE SOURCE readings (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
             WATERMARK FOR ts AS ts) WITH (connector = 'kafka', topic = 'readings');
         CREATE TABLE sites (sensor_id TEXT PRIMARY KEY, site TEXT)
             WITH (connector = 'kafka', topic = 'sites');
         CREATE SINK enriched WITH (connector = 'kafka', topic = 'enriched') AS
         SELECT r.sensor_id, t.site, r.temperature
         FROM readings r LEFT JOIN sites FOR SYSTEM_TIME AS OF r.ts AS t
           ON r.sensor_id = t.sensor_id;",
    )
    .await;
    let query = &queries[0];
    let reading = |temperature: f64, second: u32| {
        json!({"sensor_id": "s1", "temperature": temperature,
               "ts": format!("2024-01-01T00:00:{second:02}Z")})
    };

    produce(
        &broker,
        "sites",
        json!({"sensor_id": "s1", "site": "north"}),
    )
    .await;
    joined_inputs(query, 1).await;
    produce(&broker, "readings", reading(20.0, 1)).await;
    joined_inputs(query, 2).await;
    // The row of s1 changes, then s2's comes after it on the same partition.
    produce(
        &broker,
        "sites",
        json!({"sensor_id": "s1", "site": "south"}),
    )
    .await;
    produce(&broker, "sites", json!({"sensor_id": "s2", "site": "east"})).await;
    joined_inputs(query, 4).await;
    produce(&broker, "readings", reading(21.0, 2)).await;

    let values = json_values(&broker, "enriched", 2).await;
    assert_eq!(
        values,
        vec![
            json!({"sensor_id": "s1", "site": "north", "temperature": 20.0}),
            json!({"sensor_id": "s1", "site": "south", "temperature": 21.0}),
        ]
    );
    stop(queries).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tombstone_in_a_table_topic_deletes_its_key() {
    let broker = Broker::start();
    broker
        .create_topics(&["limits", "payments", "checked"], 1)
        .await;
    let mut engine = engine(&broker);
    let queries = start(
        &mut engine,
        "CREATE SOURCE payments (account BIGINT, amount DOUBLE, ts TIMESTAMP,
             WATERMARK FOR ts AS ts) WITH (connector = 'kafka', topic = 'payments');
         CREATE TABLE limits (account BIGINT PRIMARY KEY, credit_limit DOUBLE)
             WITH (connector = 'kafka', topic = 'limits');
         CREATE SINK checked WITH (connector = 'kafka', topic = 'checked') AS
         SELECT p.account, p.amount, l.credit_limit
         FROM payments p LEFT JOIN limits FOR SYSTEM_TIME AS OF p.ts AS l
           ON p.account = l.account;",
    )
    .await;
    let query = &queries[0];
    let payment = |amount: f64, second: u32| {
        json!({"account": 7, "amount": amount,
               "ts": format!("2024-01-01T00:00:{second:02}Z")})
    };
    let limit = |credit_limit: f64| json!({"account": 7, "credit_limit": credit_limit}).to_string();

    broker
        .produce("limits", &[(0, Some("7"), &limit(500.0))])
        .await;
    joined_inputs(query, 1).await;
    produce(&broker, "payments", payment(10.0, 1)).await;
    joined_inputs(query, 2).await;
    // The key is the account's text, as Vigil's upsert sink writes it.
    broker.produce_tombstone("limits", 0, "7").await;
    joined_inputs(query, 3).await;
    produce(&broker, "payments", payment(20.0, 2)).await;
    joined_inputs(query, 4).await;
    broker
        .produce("limits", &[(0, Some("7"), &limit(900.0))])
        .await;
    joined_inputs(query, 5).await;
    produce(&broker, "payments", payment(30.0, 3)).await;

    let values = json_values(&broker, "checked", 3).await;
    assert_eq!(
        values,
        vec![
            json!({"account": 7, "amount": 10.0, "credit_limit": 500.0}),
            json!({"account": 7, "amount": 20.0, "credit_limit": null}),
            json!({"account": 7, "amount": 30.0, "credit_limit": 900.0}),
        ]
    );
    assert_eq!(query.metrics().snapshot().dead_letters, 0);
    stop(queries).await;
}
