//! `vigil demo`: the rules of `queries/` on paced generators, alerts on the terminal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use vigil_connectors::generator::Kind;
use vigil_connectors::kafka::{self, KafkaSettings};
use vigil_connectors::stdout::StdoutFormat;
use vigil_engine::Engine;

use crate::produce::{self, ProduceArgs};
use crate::{execute_file, supervise};

/// The demo profile and the rules, compiled in so the demo needs no files.
const DEMO_PROFILE: (&str, &str) = (
    "queries/profiles/demo.sql",
    include_str!("../queries/profiles/demo.sql"),
);

/// The profile of `vigil demo --kafka`.
const KAFKA_PROFILE: (&str, &str) = (
    "queries/profiles/kafka.sql",
    include_str!("../queries/profiles/kafka.sql"),
);

/// The rules of `queries/`.
const RULES: [(&str, &str); 12] = [
    (
        "queries/sensor_threshold.sql",
        include_str!("../queries/sensor_threshold.sql"),
    ),
    (
        "queries/sensor_windows.sql",
        include_str!("../queries/sensor_windows.sql"),
    ),
    (
        "queries/payment_due.sql",
        include_str!("../queries/payment_due.sql"),
    ),
    (
        "queries/brute_force.sql",
        include_str!("../queries/brute_force.sql"),
    ),
    (
        "queries/temperature_zscore.sql",
        include_str!("../queries/temperature_zscore.sql"),
    ),
    (
        "queries/silent_sensor.sql",
        include_str!("../queries/silent_sensor.sql"),
    ),
    (
        "queries/rapid_activity.sql",
        include_str!("../queries/rapid_activity.sql"),
    ),
    (
        "queries/city_events.sql",
        include_str!("../queries/city_events.sql"),
    ),
    (
        "queries/login_then_transfer.sql",
        include_str!("../queries/login_then_transfer.sql"),
    ),
    (
        "queries/sensor_hourly.sql",
        include_str!("../queries/sensor_hourly.sql"),
    ),
    (
        "queries/rising_temperature.sql",
        include_str!("../queries/rising_temperature.sql"),
    ),
    (
        "queries/login_burst_then_success.sql",
        include_str!("../queries/login_burst_then_success.sql"),
    ),
];

pub async fn run(limit: Option<Duration>) -> Result<()> {
    say!(
        "Vigil demo: the rules in queries/ on generated events (profile queries/profiles/demo.sql)."
    );
    say!("  sensor_threshold  alerts on readings over thresholds, as they arrive");
    say!("  sensor_windows    per-sensor stats, 1-minute tumbling and 5-minute hopping windows");
    say!("  payment_due       accounts owing more than 150 (changelog: +I -U +U -D)");
    say!("  brute_force       5+ failed logins per user in a minute, every 10 s");
    say!(
        "  temperature_zscore  readings 3 standard deviations from their sensor's last 10 minutes"
    );
    say!("  silent_sensor     sensors quiet for 2 minutes after reporting");
    say!("  rapid_activity    users logging in 10 times their hourly rate in a minute");
    say!("  city_events       5-minute incident counts per city with a high or critical one");
    say!("  login_then_transfer  transfers over 1,000 within 5 minutes of a new-device login");
    say!("  sensor_hourly     hourly stats per sensor, updated every minute (changelog: +I -U +U)");
    say!(
        "  rising_temperature  three rising readings ending above 30 within 2 minutes (a pattern)"
    );
    say!("  login_burst_then_success  5 failed logins then a success within 2 minutes (a pattern)");
    say!("Windows close 5 s after they end (the watermark delay). Ctrl-C stops.\n");
    let mut engine = Engine::new(vigil_connectors::registry());
    let mut queries = Vec::new();
    for (file, sql) in std::iter::once(DEMO_PROFILE).chain(RULES) {
        queries.extend(execute_file(&mut engine, file, sql, StdoutFormat::Table).await?);
    }
    supervise(queries, limit).await
}

/// Input topics, with the generator kind and rate feeding each.
const KAFKA_INPUTS: [(Kind, f64, u64, f64); 6] = [
    (Kind::Sensors, 20.0, 5, 0.05),
    (Kind::Payments, 5.0, 10, 0.02),
    (Kind::Dues, 5.0, 10, 0.1),
    (Kind::Logins, 20.0, 30, 0.02),
    (Kind::Transfers, 5.0, 30, 0.05),
    (Kind::CityEvents, 5.0, 8, 0.05),
];

/// Alert topics the demo prints.
const ALERT_TOPICS: [&str; 13] = [
    "sensor_alerts",
    "sensor_stats_1m",
    "sensor_stats_5m",
    "sensor_stats_hourly",
    "payment_due_alerts",
    "brute_force_alerts",
    "temperature_zscore_alerts",
    "silent_sensor_alerts",
    "rapid_activity_alerts",
    "city_event_counts",
    "login_then_transfer_alerts",
    "rising_temperature_alerts",
    "login_burst_alerts",
];

/// Partitions of the topics the demo creates.
const PARTITIONS: i32 = 4;

/// `vigil demo --kafka`: generators produce to the input topics, the rules read them and
/// write alert topics, and the alert topics are printed as they fill.
pub async fn run_kafka(settings: KafkaSettings, limit: Option<Duration>) -> Result<()> {
    kafka::check_brokers(&settings)?;
    let mut topics: Vec<&str> = KAFKA_INPUTS.iter().map(|(k, ..)| k.name()).collect();
    topics.extend(ALERT_TOPICS);
    topics.push("dead_letters");
    kafka::create_topics(&settings, &topics, PARTITIONS).await?;
    say!(
        "Vigil demo on Kafka at {}: generators -> topics {} -> the rules in queries/ (profile queries/profiles/kafka.sql) -> alert topics, printed below. Ctrl-C stops.\n",
        settings.brokers,
        topics[..KAFKA_INPUTS.len()].join(", ")
    );
    let mut engine = Engine::new(vigil_connectors::registry_with(settings.clone()));
    let mut queries = Vec::new();
    for (kind, rate, keys, anomaly_ratio) in KAFKA_INPUTS {
        let args = ProduceArgs {
            topic: kind.name().to_string(),
            kind,
            rate: Some(rate),
            count: None,
            keys,
            anomaly_ratio,
            seed: 42,
        };
        queries.push((
            format!("produce {}", kind.name()),
            produce::start(&mut engine, &args).await?,
        ));
    }
    for (file, sql) in std::iter::once(KAFKA_PROFILE).chain(RULES) {
        queries.extend(execute_file(&mut engine, file, sql, StdoutFormat::Table).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let printer = {
        let (settings, stop) = (settings.clone(), Arc::clone(&stop));
        std::thread::spawn(move || print_topics(&settings, &ALERT_TOPICS, &stop))
    };
    let result = supervise(queries, limit).await;
    stop.store(true, Ordering::Relaxed);
    printer
        .join()
        .map_err(|_| anyhow::anyhow!("the alert printer panicked"))??;
    result
}

/// Prints messages arriving in `topics` from now on, as `topic key value`; a tombstone
/// (an upsert topic's delete) prints as `(deleted)`.
fn print_topics(settings: &KafkaSettings, topics: &[&str], stop: &AtomicBool) -> Result<()> {
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", "vigil-demo-printer")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the alert printer")?;
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("reading metadata of '{topic}'"))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(topic, partition.id(), Offset::End)?;
        }
    }
    consumer.assign(&assignment)?;
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        say!(
            "{:<20} {:<8} {}",
            message.topic(),
            message.key().map(text).unwrap_or_default(),
            message
                .payload()
                .map(text)
                .unwrap_or_else(|| "(deleted)".into())
        );
    }
    Ok(())
}
