//! Rules reading from a Kafka-protocol broker, next to the raw consume rate of the same topic.
//!
//! `cargo bench --bench kafka` starts a Tansu broker on 127.0.0.1 (see `vigil_tests::kafka`),
//! produces `VIGIL_BENCH_EVENTS` sensor readings (default 2,000,000) as JSON to a 4-partition
//! topic, then measures, each from the start of the topic:
//!
//! - raw: a librdkafka consumer alone, polling every message (no decoding), with the same
//!   fetch settings as Vigil's sources (`CONSUMER_DEFAULTS`);
//! - Q1: the sensor threshold rule (`queries/sensor_threshold.sql`), alerts to a topic;
//! - Q2: 1-minute tumbling count/avg/max per sensor, results to a topic.
//!
//! Rates are events read per second of wall time, broker included, on the same machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use vigil_engine::runtime::QueryMetrics;
use vigil_engine::{Engine, EngineConfig, StatementOutcome};
use vigil_tests::kafka::Broker;

const PARTITIONS: i32 = 4;

fn source(group: &str) -> String {
    format!(
        "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH (connector = 'kafka', topic = 'sensors', start = 'earliest', group_id = '{group}',
               partitioned_by = 'sensor_id');"
    )
}

const Q1_SINK: &str =
    "CREATE SINK sensor_alerts WITH (connector = 'kafka', topic = 'sensor_alerts');";

const Q2: &str =
    "CREATE SINK sensor_stats_1m WITH (connector = 'kafka', topic = 'sensor_stats_1m') AS
SELECT window_start, window_end, sensor_id, count(*) AS readings,
       avg(temperature) AS avg_temperature, max(temperature) AS max_temperature
FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, sensor_id;";

fn main() {
    let events: u64 = std::env::var("VIGIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(events));
}

async fn run(events: u64) {
    let broker = Broker::start();
    broker
        .create_topics(&["sensors", "sensor_alerts", "sensor_stats_1m"], PARTITIONS)
        .await;
    let started = Instant::now();
    produce(&broker, events).await;
    let produced = started.elapsed();
    println!(
        "produced {events} JSON events to 4 partitions in {:.1} s ({:.0} events/s)",
        produced.as_secs_f64(),
        events as f64 / produced.as_secs_f64()
    );

    let raw = raw_consume(&broker, events);
    let q1 = rule(
        &broker,
        events,
        "q1",
        &format!(
            "{}{Q1_SINK}{}",
            source("q1"),
            include_str!("../queries/sensor_threshold.sql")
        ),
    )
    .await;
    let q2 = rule(&broker, events, "q2", &format!("{}{Q2}", source("q2"))).await;
    println!();
    println!("| case | events/s |");
    println!("|---|---|");
    for (name, elapsed) in [
        ("raw librdkafka consume", raw),
        ("Q1 threshold from Kafka", q1),
        ("Q2 tumble 1m from Kafka", q2),
    ] {
        println!("| {name} | {:.0} |", events as f64 / elapsed.as_secs_f64());
    }
}

/// Produces `events` generated readings through Vigil itself: generator -> Kafka sink.
async fn produce(broker: &Broker, events: u64) {
    let mut engine = engine(broker);
    let sql = format!(
        "CREATE SOURCE generated (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP)
         WITH (connector = 'generator', kind = 'sensors', keys = '1000', count = '{events}');
         CREATE SINK load WITH (connector = 'kafka', topic = 'sensors', key = 'sensor_id',
             'properties.linger.ms' = '20', 'properties.batch.size' = '1000000')
         AS SELECT * FROM generated;"
    );
    for outcome in engine.execute(&sql).await.expect("producer plans") {
        if let StatementOutcome::SinkStarted { query, .. } = outcome {
            query.wait().await.expect("producing succeeds");
        }
    }
}

/// Time for a plain consumer, with the fetch settings Vigil's consumers use, to poll every
/// message of the topic.
fn raw_consume(broker: &Broker, events: u64) -> Duration {
    let mut config = broker.config();
    for (name, value) in vigil_connectors::kafka::CONSUMER_DEFAULTS {
        config.set(name, value);
    }
    let consumer: BaseConsumer = config
        .set("group.id", "bench-raw")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset("sensors", partition, Offset::Beginning)
            .unwrap();
    }
    let started = Instant::now();
    consumer.assign(&assignment).unwrap();
    let (mut seen, mut bytes) = (0u64, 0usize);
    while seen < events {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
            bytes += message.payload().map_or(0, <[u8]>::len);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "raw consume: {seen} messages, {} MB in {:.2} s",
        bytes / 1_000_000,
        elapsed.as_secs_f64()
    );
    elapsed
}

/// Time for a rule to read every event of the topic (its own consumer group).
async fn rule(broker: &Broker, events: u64, name: &str, sql: &str) -> Duration {
    let mut engine = engine(broker);
    let started = Instant::now();
    let mut queries = Vec::new();
    for outcome in engine.execute(sql).await.expect("the rule plans") {
        if let StatementOutcome::SinkStarted { query, .. } = outcome {
            queries.push(query);
        }
    }
    let metrics: Vec<Arc<QueryMetrics>> = queries.iter().map(|q| Arc::clone(q.metrics())).collect();
    let read = || {
        metrics
            .iter()
            .map(|m| m.snapshot().events_in)
            .min()
            .unwrap_or(0)
    };
    while read() < events {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "{name}: {} events in {:.2} s",
        read(),
        elapsed.as_secs_f64()
    );
    for query in queries {
        query.stop();
        query.wait().await.expect("the rule stops cleanly");
    }
    elapsed
}

fn engine(broker: &Broker) -> Engine {
    Engine::with_config(
        vigil_connectors::registry_with(broker.settings()),
        EngineConfig {
            batch_size: 8192,
            start_queries: true,
            ..EngineConfig::default()
        },
    )
}
