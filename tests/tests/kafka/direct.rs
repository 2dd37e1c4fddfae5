//! A source without a consumer group assigns its partitions itself: all of them, or those
//! `partitions` names; it commits nothing, so every run reads from its start again.

use serde_json::json;

use super::{PARTITIONS, broker_with_topics, engine, finish, start};

#[tokio::test(flavor = "multi_thread")]
async fn a_source_without_a_group_reads_the_partitions_it_names_and_commits_nothing() {
    let broker = broker_with_topics().await;
    let values: Vec<(i32, String)> = (0..40)
        .map(|i| (i % PARTITIONS, json!({"id": i}).to_string()))
        .collect();
    let messages: Vec<(i32, Option<&str>, &str)> =
        values.iter().map(|(p, v)| (*p, None, v.as_str())).collect();
    broker.produce("sensors", &messages).await;

    let run = |partitions: &str, sink_topic: &str| {
        let partitions = match partitions {
            "" => String::new(),
            list => format!(", partitions = '{list}'"),
        };
        format!(
            "CREATE OR REPLACE SOURCE events (id BIGINT, _partition INT)
             WITH (connector = 'kafka', topic = 'sensors', bounded = 'latest'{partitions});
             CREATE OR REPLACE SINK copied WITH (connector = 'kafka', topic = '{sink_topic}') AS
             SELECT id, _partition FROM events;"
        )
    };
    let mut engine = engine(&broker);
    finish(start(&mut engine, &run("0, 2", "sensor_alerts")).await).await;
    let chosen = broker.read_topic("sensor_alerts");
    let partitions: std::collections::BTreeSet<i64> = chosen
        .iter()
        .map(|r| {
            let value: serde_json::Value = serde_json::from_str(r.value.as_ref().unwrap()).unwrap();
            value["_partition"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(partitions, [0, 2].into(), "only the partitions named");
    assert_eq!(chosen.len(), 20);

    // All partitions, from the start again: nothing was committed by the first run.
    finish(start(&mut engine, &run("", "sensor_stats_1m")).await).await;
    assert_eq!(broker.read_topic("sensor_stats_1m").len(), 40);
    for group in ["vigil.copied.events", "vigil.direct.copied.events"] {
        assert!(
            broker.committed_offsets(group, "sensors").is_empty(),
            "{group} committed nothing"
        );
    }
}
