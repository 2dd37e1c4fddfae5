//! `vigil produce`: generator events to a Kafka topic, for demos and load tests.
//!
//! It is a Vigil query itself: a generator source and a Kafka sink keyed by the kind's id
//! column, so the topic is partitioned the way the rules in `queries/` expect.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use vigil_connectors::generator::Kind;
use vigil_connectors::kafka::{self, KafkaSettings};
use vigil_engine::Engine;
use vigil_engine::runtime::RunningQuery;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceArgs {
    /// Target topic.
    pub topic: String,
    /// Event kind.
    pub kind: Kind,
    /// Events per second; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Distinct sensors, accounts or users.
    pub keys: u64,
    /// Share of anomalous events.
    pub anomaly_ratio: f64,
    /// Generator seed.
    pub seed: u64,
}

impl ProduceArgs {
    /// The generator source and the Kafka sink, as SQL.
    pub fn sql(&self) -> String {
        let source = format!("produce_{}", self.kind.name());
        let mut options = vec![
            "connector = 'generator'".to_string(),
            format!("kind = '{}'", self.kind.name()),
            format!("keys = '{}'", self.keys),
            format!("anomaly_ratio = '{}'", self.anomaly_ratio),
            format!("seed = '{}'", self.seed),
        ];
        if let Some(rate) = self.rate {
            options.push(format!("rate = '{rate}'"));
        }
        if let Some(count) = self.count {
            options.push(format!("count = '{count}'"));
        }
        format!(
            "CREATE SOURCE {source} ({columns}) WITH ({options});\n\
             CREATE SINK {source}_to_kafka WITH (connector = 'kafka', topic = '{topic}', \
             key = '{key}') AS SELECT * FROM {source};",
            columns = self.kind.columns_sql(),
            options = options.join(", "),
            topic = self.topic.replace('\'', "''"),
            key = self.kind.key_column(),
        )
    }
}

/// Starts producing into `engine`; returns the running query.
pub async fn start(engine: &mut Engine, args: &ProduceArgs) -> Result<RunningQuery> {
    let outcomes = engine
        .execute(&args.sql())
        .await
        .context("planning the producer")?;
    outcomes
        .into_iter()
        .find_map(|o| match o {
            vigil_engine::StatementOutcome::SinkStarted { query, .. } => Some(query),
            _ => None,
        })
        .context("the producer did not start")
}

/// `vigil produce`: creates the topic if needed and produces until the count or Ctrl-C,
/// printing progress every second.
pub async fn run(settings: KafkaSettings, args: ProduceArgs, partitions: i32) -> Result<()> {
    kafka::check_brokers(&settings)?;
    kafka::create_topics(&settings, &[&args.topic], partitions).await?;
    let mut engine = Engine::new(vigil_connectors::registry_with(settings.clone()));
    let query = start(&mut engine, &args).await?;
    let metrics = std::sync::Arc::clone(query.metrics());
    let started = std::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let sent = metrics.snapshot().rows_out;
                let rate = sent as f64 / started.elapsed().as_secs_f64();
                eprintln!("{sent} events to '{}' ({rate:.0}/s)", args.topic);
                if query.is_finished() {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                query.stop();
                break;
            }
        }
    }
    let sent = metrics.snapshot().rows_out;
    if let Err(e) = query.wait().await {
        bail!(
            "producing to '{}' failed after {sent} events: {e}",
            args.topic
        );
    }
    eprintln!(
        "{sent} events to '{}' in {:.1} s, at {}",
        args.topic,
        started.elapsed().as_secs_f64(),
        settings.brokers
    );
    Ok(())
}
