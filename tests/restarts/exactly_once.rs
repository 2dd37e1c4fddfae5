//! A Kafka sink with `delivery = 'exactly_once'`, killed 20 times: what its committed
//! transactions hold is every result exactly once. With `at_least_once`, every result is
//! there and the repeats are counted.
//!
//! Tansu 0.6 has no `EndTxn`, so these run on librdkafka's mock cluster. It runs the
//! producer's side of transactions (ids, fencing, `EndTxn`) but keeps no commit or abort
//! markers, so its consumers read aborted messages too. The test therefore reads what a
//! `read_committed` consumer reads on a real broker by the sink's own account: each
//! committed transaction carries an epoch record listing the offsets it wrote, and only the
//! messages listed there count.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

use vigil_connectors::kafka::EpochRecord;

use super::durable::{finish, kill_loop, lost_and_duplicated, start};
use super::scratch;

const PARTITIONS: i32 = 2;

fn profile(topic: &str, delivery: &str) -> String {
    format!(
        "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH (connector = 'generator', kind = 'sensors', count = '3000000', keys = '20',
               disorder_ms = '2000', seed = '11');
         CREATE SINK counts WITH (connector = 'kafka', topic = '{topic}', key = 'sensor_id',
               delivery = '{delivery}');"
    )
}

const RULE: &str = "CREATE SINK counts AS
    SELECT window_start, sensor_id, count(*) AS n, max(temperature) AS hi
    FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, sensor_id;";

/// Every message of `topic`: partition, offset and text. A `read_committed` consumer, but
/// the mock cluster keeps no transaction markers: aborted messages are read too.
fn read_all(brokers: &str, topic: &str, partitions: i32) -> Vec<(i32, i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap();
        ends.push(high);
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let text = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            values.push((message.partition(), message.offset(), text));
        }
        let positions = consumer.position().unwrap();
        let reached = positions.elements().iter().all(|e| match e.offset() {
            Offset::Offset(at) => at >= ends[e.partition() as usize],
            _ => ends[e.partition() as usize] == 0,
        });
        if reached {
            return values;
        }
        assert!(Instant::now() < deadline, "cannot read {topic} to its end");
    }
}

/// What a `read_committed` consumer of `topic` would read on a broker that isolates
/// transactions: the messages of the transactions whose epoch record was committed with
/// them (the epoch records list the offsets each transaction wrote).
fn committed(brokers: &str, topic: &str) -> Vec<String> {
    let records: Vec<EpochRecord> = read_all(brokers, "vigil.counts.epochs", 1)
        .into_iter()
        .map(|(_, _, text)| EpochRecord::parse(text.as_bytes()).expect("an epoch record"))
        .collect();
    if std::env::var_os("VIGIL_DEBUG_EPOCHS").is_some() {
        for r in &records {
            eprintln!("epoch {} {:?}", r.epoch, r.written);
        }
    }
    let committed = |partition: i32, offset: i64| {
        records.iter().any(|r| {
            r.written
                .get(&partition)
                .is_some_and(|(first, last)| (*first..=*last).contains(&offset))
        })
    };
    read_all(brokers, topic, PARTITIONS)
        .into_iter()
        .filter(|(partition, offset, _)| committed(*partition, *offset))
        .map(|(_, _, text)| text)
        .collect()
}

fn read_values(brokers: &str, topic: &str) -> Vec<String> {
    read_all(brokers, topic, PARTITIONS)
        .into_iter()
        .map(|(_, _, text)| text)
        .collect()
}

fn run_args(brokers: &str, state: bool) -> Vec<String> {
    let mut args = vec!["--brokers".to_string(), brokers.to_string(), "run".into()];
    if state {
        args.extend(["--state-dir", "state", "--checkpoint-interval", "100ms"].map(String::from));
    }
    args.extend(["profile.sql", "rule.sql"].map(String::from));
    args
}

#[test]
fn an_exactly_once_kafka_sink_killed_twenty_times_delivers_every_result_once() {
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["truth", "exactly", "at_least"] {
        cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    }
    // Where the exactly-once sink of query `counts` records its committed epochs.
    cluster.create_topic("vigil.counts.epochs", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let base = scratch("exactly-once");

    let truth_dir = base.join("truth");
    std::fs::create_dir_all(&truth_dir).unwrap();
    std::fs::write(
        truth_dir.join("profile.sql"),
        profile("truth", "at_least_once"),
    )
    .unwrap();
    std::fs::write(truth_dir.join("rule.sql"), RULE).unwrap();
    let args = run_args(&brokers, false);
    finish(start(
        &truth_dir,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let mut truth = read_values(&brokers, "truth");
    assert!(truth.len() > 1000, "{} results", truth.len());
    truth.sort();

    for (topic, delivery, seed) in [
        ("exactly", "exactly_once", 3),
        ("at_least", "at_least_once", 4),
    ] {
        let dir = base.join(topic);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("profile.sql"), profile(topic, delivery)).unwrap();
        std::fs::write(dir.join("rule.sql"), RULE).unwrap();
        let args = run_args(&brokers, true);
        let tally = kill_loop(
            &dir,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            seed,
        );
        let mut actual = if delivery == "exactly_once" {
            committed(&brokers, topic)
        } else {
            read_values(&brokers, topic)
        };
        actual.sort();
        let (lost, duplicated) = lost_and_duplicated(&truth, &actual);
        eprintln!(
            "kafka {delivery}: {} kills ({} during a checkpoint write), {} results, {lost} lost, {duplicated} duplicated",
            tally.kills,
            tally.mid_checkpoint,
            truth.len()
        );
        assert_eq!(lost, 0, "{delivery}: results lost");
        if delivery == "exactly_once" {
            assert_eq!(duplicated, 0, "exactly once, yet results repeat");
            assert!(actual == truth, "another output than one uninterrupted run");
        }
    }
}
