//! [`Transactions`]: exactly-once output for a Kafka sink. A transactional producer writes
//! each checkpoint epoch's results in one transaction, together with a record of the
//! epoch's number in the query's epochs topic (`vigil.<query>.epochs` unless the sink's
//! `epochs_topic` says otherwise). The results and the record become visible together:
//! after a crash, the last committed record tells which checkpoint's output was committed,
//! and the query resumes from that checkpoint (see
//! [`vigil_engine::connector::Sink::committed_epoch`]). A restarted producer with the same
//! `transactional.id` first aborts whatever the crashed one left open.
//!
//! The epoch is a record rather than a consumer-group offset sent with
//! `send_offsets_to_transaction` because a record is read back the same way on every
//! Kafka-protocol broker (librdkafka's mock cluster acknowledges transactional offset
//! commits without keeping them), and because the sources need no part in it: a query
//! reading files or generated events is exactly once too.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

use super::KafkaSettings;
use super::client::METADATA_TIMEOUT;
use super::health::ProducerHealth;
use crate::ConnectorError;

/// How long starting, committing or aborting a transaction may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The transactions of one sink.
pub struct Transactions {
    settings: KafkaSettings,
    query: String,
    transactional_id: String,
    epochs_topic: String,
    /// A transaction is open.
    open: bool,
}

/// Records read back from the end of the epochs topic: each commit adds a record and a
/// transaction marker.
const EPOCHS_TAIL: i64 = 64;

impl Transactions {
    /// Transactions of the sink of `query`, recording epochs in `epochs_topic` (default
    /// `vigil.<query>.epochs`).
    pub fn new(settings: &KafkaSettings, query: &str, epochs_topic: Option<&str>) -> Self {
        Self {
            settings: settings.clone(),
            query: query.to_string(),
            transactional_id: format!("vigil.{query}"),
            epochs_topic: epochs_topic
                .map_or_else(|| format!("vigil.{query}.epochs"), String::from),
            open: false,
        }
    }

    /// Makes the producer transactional.
    pub fn configure(&self, client: &mut ClientConfig) {
        client.set("transactional.id", &self.transactional_id);
    }

    /// Initialises the producer's transactions: fences an earlier producer with the same id
    /// and aborts what it left open.
    pub async fn init(
        &mut self,
        producer: &FutureProducer<ProducerHealth>,
    ) -> Result<(), ConnectorError> {
        let producer = producer.clone();
        blocking(move || producer.init_transactions(TRANSACTION_TIMEOUT)).await
    }

    /// The last epoch whose output was committed; 0 when none was. Call after
    /// [`Transactions::init`], which settles any transaction left open.
    pub async fn committed_epoch(&self) -> Result<u64, ConnectorError> {
        let consumer: BaseConsumer = self
            .settings
            .client_config()
            .set("group.id", format!("{}.reader", self.transactional_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| failed(&e.to_string()))?;
        let topic = self.epochs_topic.clone();
        blocking(move || last_epoch(&consumer, &topic)).await
    }

    /// Opens a transaction unless one is open.
    pub fn begin(
        &mut self,
        producer: &FutureProducer<ProducerHealth>,
    ) -> Result<(), ConnectorError> {
        if !self.open {
            producer
                .begin_transaction()
                .map_err(|e| failed(&e.to_string()))?;
            self.open = true;
        }
        Ok(())
    }

    /// Records `epoch`, with the offsets the transaction `written` to `topic`, in the open
    /// transaction (opening one if the epoch wrote nothing), and commits it.
    pub async fn commit(
        &mut self,
        producer: &FutureProducer<ProducerHealth>,
        epoch: u64,
        topic: &str,
        written: &super::sink::Ranges,
    ) -> Result<(), ConnectorError> {
        self.begin(producer)?;
        let payload = EpochRecord {
            epoch,
            topic: topic.to_string(),
            written: written.clone(),
        }
        .to_json();
        let record = FutureRecord::to(&self.epochs_topic)
            .partition(0)
            .key(&self.query)
            .payload(&payload);
        producer
            .send(record, TRANSACTION_TIMEOUT)
            .await
            .map_err(|(e, _)| failed(&format!("recording epoch {epoch}: {e}")))?;
        let producer = producer.clone();
        blocking(move || producer.commit_transaction(TRANSACTION_TIMEOUT)).await?;
        self.open = false;
        Ok(())
    }
}

/// What an epochs topic holds, one JSON record per committed epoch: the epoch, and which
/// offsets of the output topic its transaction wrote (for audits, and for tests on brokers
/// that do not isolate transactions).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    /// The checkpoint epoch.
    pub epoch: u64,
    /// The output topic.
    pub topic: String,
    /// Per partition, the first and last offset written.
    pub written: super::sink::Ranges,
}

impl EpochRecord {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data")
    }

    /// Reads a record; `None` when it is not one.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}

/// The highest epoch among the committed records at the end of partition 0 of `topic`.
fn last_epoch(consumer: &BaseConsumer, topic: &str) -> rdkafka::error::KafkaResult<u64> {
    let (low, high) = consumer.fetch_watermarks(topic, 0, METADATA_TIMEOUT)?;
    if high <= low {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    let from = (high - EPOCHS_TAIL).max(low);
    assignment.add_partition_offset(topic, 0, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    let mut epoch = 0;
    let deadline = std::time::Instant::now() + METADATA_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let record = message?.payload().and_then(EpochRecord::parse);
            epoch = epoch.max(record.map_or(0, |r| r.epoch));
        }
        let at = consumer.position()?.elements().first().map(|e| e.offset());
        if matches!(at, Some(Offset::Offset(at)) if at >= high) {
            return Ok(epoch);
        }
    }
    Err(rdkafka::error::KafkaError::MetadataFetch(
        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
    ))
}

/// Runs a blocking librdkafka call off the async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| failed(&e.to_string()))?
        .map_err(|e| failed(&e.to_string()))
}

fn failed(what: &str) -> ConnectorError {
    ConnectorError::External(format!("Kafka transaction: {what}"))
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_committed_epoch_is_read_back_by_the_next_producer() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        cluster.create_topic("vigil.q.epochs", 1, 1).unwrap();
        let settings = KafkaSettings {
            brokers: cluster.bootstrap_servers(),
        };
        let producer = |transactions: &Transactions| -> FutureProducer<ProducerHealth> {
            let mut client = settings.client_config();
            transactions.configure(&mut client);
            client
                .create_with_context(ProducerHealth::default())
                .unwrap()
        };
        let mut first = Transactions::new(&settings, "q", None);
        let written = producer(&first);
        first.init(&written).await.unwrap();
        assert_eq!(first.committed_epoch().await.unwrap(), 0);
        for epoch in [1, 2, 3] {
            let ranges = super::super::sink::Ranges::from([(0, (epoch as i64, epoch as i64))]);
            first.commit(&written, epoch, "out", &ranges).await.unwrap();
        }
        let mut second = Transactions::new(&settings, "q", None);
        let next = producer(&second);
        second.init(&next).await.unwrap();
        assert_eq!(second.committed_epoch().await.unwrap(), 3);
    }
}
