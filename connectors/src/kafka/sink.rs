//! [`KafkaSink`]: rows as JSON messages; updating queries as upserts keyed by `key`.

use std::collections::{HashSet, VecDeque};

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use vigil_engine::connector::{Health, Sink, is_changelog};

use super::KafkaSettings;
use super::config::SinkConfig;
use super::health::{ProducerHealth, STATISTICS_INTERVAL_MS};
use super::topic_keys::live_keys;
use super::transactions::Transactions;
use crate::ConnectorError;
use crate::format::{encode_json_lines, timestamps_as_text};

/// Messages awaiting their delivery report before the producer waits for the oldest.
const MAX_IN_FLIGHT: usize = 100_000;

/// How rows become messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One message per row.
    Append,
    /// Updating query with a key: the new row for `+I`/`+U`, a tombstone for `-D`, nothing
    /// for `-U` (the `+U` that follows replaces it under the same key).
    Upsert,
    /// Updating query without a key: every change as a row with its `op`.
    Changelog,
}

/// Produces query results to a topic, with acks from all in-sync replicas and an idempotent
/// producer. `flush` returns only once every message is acknowledged, so the offsets the
/// query's sources commit afterwards never cover an undelivered alert.
pub struct KafkaSink {
    settings: KafkaSettings,
    /// Upsert mode: the keys an earlier run left in the topic that this run has not written
    /// again (see [`Sink::caught_up`]).
    leftover: Leftover,
    /// Settings of the producer, made on the first write: creating a sink only checks its
    /// options (the engine does that to validate a CREATE SINK), and a librdkafka client
    /// would start connecting at once.
    client: ClientConfig,
    producer: Option<FutureProducer<ProducerHealth>>,
    /// Where the producer reports whether it reaches the brokers.
    health: Option<Health>,
    topic: String,
    mode: Mode,
    /// Key columns.
    key: Vec<String>,
    in_flight: VecDeque<DeliveryFuture>,
    /// `delivery = 'exactly_once'`.
    exactly_once: bool,
    /// The transactions of an exactly-once sink, once the query said it checkpoints.
    transactions: Option<Transactions>,
    epochs_topic: Option<String>,
    /// Exactly once: per partition, the first and last offset the open transaction wrote.
    written: Option<Ranges>,
}

/// Per partition, the first and last offset written.
pub type Ranges = std::collections::BTreeMap<i32, (i64, i64)>;

impl KafkaSink {
    /// A sink for rows of `schema`; connects lazily.
    pub fn new(
        settings: &KafkaSettings,
        config: SinkConfig,
        schema: SchemaRef,
    ) -> Result<Self, ConnectorError> {
        let changelog = is_changelog(&schema);
        let mode = match (changelog, config.key.is_empty()) {
            (false, _) => Mode::Append,
            (true, false) => Mode::Upsert,
            (true, true) => Mode::Changelog,
        };
        let mut client = settings.client_config();
        client
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        for (name, value) in &config.properties {
            client.set(name, value);
        }
        Ok(Self {
            settings: settings.clone(),
            client,
            leftover: Leftover::Unread,
            producer: None,
            health: None,
            topic: config.topic,
            mode,
            key: config.key,
            in_flight: VecDeque::new(),
            exactly_once: config.exactly_once,
            transactions: None,
            epochs_topic: config.epochs_topic,
            written: config.exactly_once.then(Ranges::new),
        })
    }

    /// Creates the producer if this is the first write, and opens a transaction when the
    /// sink is exactly once.
    async fn open(&mut self) -> Result<(), ConnectorError> {
        if self.exactly_once && self.transactions.is_none() {
            return Err(ConnectorError::config(
                "delivery",
                "'exactly_once' commits at checkpoints: start Vigil with --state-dir",
            ));
        }
        if self.producer.is_none() {
            let mut client = self.client.clone();
            if let Some(transactions) = &self.transactions {
                transactions.configure(&mut client);
            }
            if self.health.is_some() {
                client.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
            }
            let producer = client
                .create_with_context(ProducerHealth::new(self.health.clone()))
                .map_err(|e| ConnectorError::External(format!("Kafka producer: {e}")))?;
            if let Some(transactions) = &mut self.transactions {
                transactions.init(&producer).await?;
            }
            self.producer = Some(producer);
        }
        if let (Some(transactions), Some(producer)) = (&mut self.transactions, &self.producer) {
            transactions.begin(producer)?;
        }
        Ok(())
    }

    /// Queues one message, waiting for earlier deliveries while librdkafka's queue is full.
    async fn produce(
        &mut self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<(), ConnectorError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        loop {
            let producer = self.producer.as_ref().expect("opened by write");
            match producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    if !await_oldest(&mut self.in_flight, &self.topic, self.written.as_mut())
                        .await?
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
                Err((e, _)) => return Err(delivery_failed(&self.topic, e)),
            }
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            await_oldest(&mut self.in_flight, &self.topic, self.written.as_mut()).await?;
        }
        Ok(())
    }

    /// Message keys of each row, from the key columns.
    fn keys(&self, batch: &RecordBatch) -> Result<Option<Vec<Option<Vec<u8>>>>, ConnectorError> {
        let schema = batch.schema();
        let indices = self
            .key
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<Result<Vec<_>, _>>()?;
        match indices.as_slice() {
            [] => Ok(None),
            [single] => {
                let column = timestamps_as_text(&batch.project(&[*single])?)?;
                let text = cast(column.column(0), &DataType::Utf8)?;
                let text: &StringArray = text.as_string();
                Ok(Some(
                    text.iter()
                        .map(|v| v.map(|s| s.as_bytes().to_vec()))
                        .collect(),
                ))
            }
            several => {
                let lines = encode_json_lines(&batch.project(several)?)?;
                Ok(Some(
                    split_lines(&lines).map(|l| Some(l.to_vec())).collect(),
                ))
            }
        }
    }
}

/// Waits for the oldest message in flight, noting where it went in `written`; false when
/// there is none.
async fn await_oldest(
    in_flight: &mut VecDeque<DeliveryFuture>,
    topic: &str,
    written: Option<&mut Ranges>,
) -> Result<bool, ConnectorError> {
    let Some(delivery) = in_flight.pop_front() else {
        return Ok(false);
    };
    match delivery.await {
        Ok(Ok(delivered)) => {
            if let Some(written) = written {
                let (partition, offset) = (delivered.partition, delivered.offset);
                let range = written.entry(partition).or_insert((offset, offset));
                *range = (range.0.min(offset), range.1.max(offset));
            }
            Ok(true)
        }
        Ok(Err((e, _))) => Err(delivery_failed(topic, e)),
        Err(_) => Err(ConnectorError::External(format!(
            "Kafka producer for '{topic}' shut down before delivering"
        ))),
    }
}

fn delivery_failed(topic: &str, e: KafkaError) -> ConnectorError {
    ConnectorError::External(format!("delivery to Kafka topic '{topic}' failed: {e}"))
}

/// The lines of JSON-lines output, one per row.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .strip_suffix(b"\n")
        .unwrap_or(bytes)
        .split(|b| *b == b'\n')
}

/// What an upsert sink knows of the keys already in its topic.
enum Leftover {
    /// Not read yet: the topic is read on the first write (or at catch-up).
    Unread,
    /// Keys in the topic this run has not written yet.
    Keys(HashSet<Vec<u8>>),
    /// Reconciled: whatever this run did not write again was removed.
    Done,
}

impl KafkaSink {
    /// Upsert mode: reads the keys the topic holds before this run writes any.
    async fn read_leftover(&mut self) -> Result<(), ConnectorError> {
        if self.mode != Mode::Upsert || !matches!(self.leftover, Leftover::Unread) {
            return Ok(());
        }
        let (settings, topic) = (self.settings.clone(), self.topic.clone());
        let keys = tokio::task::spawn_blocking(move || live_keys(&settings, &topic))
            .await
            .map_err(|e| ConnectorError::External(format!("reading topic keys: {e}")))??;
        self.leftover = Leftover::Keys(keys);
        Ok(())
    }

    fn written(&mut self, key: Option<&[u8]>) {
        if let (Leftover::Keys(keys), Some(key)) = (&mut self.leftover, key) {
            keys.remove(key);
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn report_health(&mut self, health: Health) {
        self.health = Some(health);
    }

    /// One transactional id per query: only one process may write it.
    fn single_writer(&self) -> bool {
        self.exactly_once
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.open().await?;
        self.read_leftover().await?;
        let keys = self.keys(&batch)?;
        let key = |i: usize| keys.as_ref().and_then(|k| k[i].as_deref());
        match self.mode {
            Mode::Append | Mode::Changelog => {
                let lines = encode_json_lines(&batch)?;
                for (i, line) in split_lines(&lines).enumerate() {
                    self.produce(key(i), Some(line)).await?;
                }
            }
            Mode::Upsert => {
                let ops = batch.column(0).as_string::<i32>().clone();
                let values: Vec<usize> = (1..batch.num_columns()).collect();
                let lines = encode_json_lines(&batch.project(&values)?)?;
                for (i, line) in split_lines(&lines).enumerate() {
                    match ops.value(i) {
                        "-U" => {}
                        "-D" => self.produce(key(i), None).await?,
                        _ => self.produce(key(i), Some(line)).await?,
                    }
                    self.written(key(i));
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        while await_oldest(&mut self.in_flight, &self.topic, self.written.as_mut()).await? {}
        Ok(())
    }

    /// An exactly-once sink learns the query's name, which names its transactions.
    async fn committed_epoch(&mut self, query: &str) -> Result<Option<u64>, ConnectorError> {
        if !self.exactly_once {
            return Ok(None);
        }
        let transactions = Transactions::new(&self.settings, query, self.epochs_topic.as_deref());
        self.transactions = Some(transactions);
        // Starting the producer settles what a crashed one left open.
        self.open().await?;
        let transactions = self.transactions.as_ref().expect("set above");
        Ok(Some(transactions.committed_epoch().await?))
    }

    /// Exactly once: commits the epoch's transaction, with the epoch.
    async fn commit(&mut self, epoch: u64) -> Result<(), ConnectorError> {
        if !self.exactly_once {
            return Ok(());
        }
        self.open().await?;
        self.flush().await?;
        let producer = self.producer.as_ref().expect("opened above");
        let transactions = self.transactions.as_mut().expect("opened above");
        let written = std::mem::take(self.written.as_mut().expect("exactly once"));
        transactions
            .commit(producer, epoch, &self.topic, &written)
            .await
    }

    /// Upsert mode: a key an earlier run left in the topic that this run, its state rebuilt
    /// from the whole input, never wrote is not in that state (a key inserted and deleted
    /// within one batch of the rebuild yields no change at all): it gets its tombstone now.
    async fn caught_up(&mut self) -> Result<(), ConnectorError> {
        if self.mode != Mode::Upsert {
            return Ok(());
        }
        self.open().await?;
        self.read_leftover().await?;
        let Leftover::Keys(keys) = std::mem::replace(&mut self.leftover, Leftover::Done) else {
            return Ok(());
        };
        if !keys.is_empty() {
            tracing::info!(topic = %self.topic, keys = keys.len(), "removing keys an earlier run left that the query no longer holds");
        }
        for key in &keys {
            self.produce(Some(key), None).await?;
        }
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};
    use vigil_engine::sql::Options;

    use super::*;

    #[tokio::test]
    async fn an_exactly_once_sink_without_checkpoints_says_what_it_needs() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let options = Options::new([("topic", "out"), ("delivery", "exactly_once")]);
        let config = SinkConfig::from_options(&options, &schema).unwrap();
        let settings = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
        };
        let mut sink = KafkaSink::new(&settings, config, Arc::clone(&schema)).unwrap();
        let rows = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let err = sink.write(rows).await.unwrap_err().to_string();
        assert!(err.contains("--state-dir"), "{err}");
        let bad = Options::new([("topic", "out"), ("delivery", "twice")]);
        let err = SinkConfig::from_options(&bad, &Schema::empty()).unwrap_err();
        assert!(err.to_string().contains("'exactly_once'"), "{err}");
    }
}
