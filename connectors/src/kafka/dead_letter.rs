//! [`DeadLetters`]: malformed messages, produced to a dead-letter topic with their coordinates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use vigil_engine::runtime::QueryMetrics;

use datafusion::arrow::array::RecordBatch;
use vigil_engine::connector::Sink;

use super::KafkaSettings;
use super::batcher::BadMessage;
use crate::ConnectorError;
use crate::format::{RejectedRow, rejected_rows};

/// Header names of a dead letter; the value is the original message value, unchanged.
pub const HEADER_TOPIC: &str = "vigil.topic";
/// The partition the message was read from.
pub const HEADER_PARTITION: &str = "vigil.partition";
/// Its offset.
pub const HEADER_OFFSET: &str = "vigil.offset";
/// Why it was rejected.
pub const HEADER_ERROR: &str = "vigil.error";
/// The source that read it.
pub const HEADER_SOURCE: &str = "vigil.source";
/// For a row an expression failed on: the query.
pub const HEADER_QUERY: &str = "vigil.query";
/// For a row an expression failed on: the operator whose expression failed.
pub const HEADER_OPERATOR: &str = "vigil.operator";

/// How long a flush may take before dead letters count as lost.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts dead letters that could not be delivered.
struct DeliveryReport {
    metrics: Arc<QueryMetrics>,
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.metrics.add_connector_error();
            tracing::error!(error = %e, "a dead letter could not be delivered");
        }
    }
}

/// A producer of dead letters to one topic.
pub struct DeadLetters {
    producer: ThreadedProducer<DeliveryReport>,
    topic: String,
    source: String,
    unflushed: AtomicBool,
}

impl DeadLetters {
    /// A producer to `topic` for source `source`; connects lazily.
    pub fn new(
        settings: &KafkaSettings,
        topic: String,
        source: String,
        metrics: Arc<QueryMetrics>,
    ) -> Result<Self, ConnectorError> {
        let producer = settings
            .client_config()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create_with_context(DeliveryReport { metrics })
            .map_err(|e| ConnectorError::External(format!("dead-letter producer: {e}")))?;
        Ok(Self {
            producer,
            topic,
            source,
            unflushed: AtomicBool::new(false),
        })
    }

    /// Queues one dead letter: the original value and key, coordinates and error as headers.
    pub fn send(&self, topic: &str, partition: i32, message: &BadMessage) {
        let (partition_text, offset_text) = (partition.to_string(), message.offset.to_string());
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(header(HEADER_TOPIC, topic))
            .insert(header(HEADER_PARTITION, &partition_text))
            .insert(header(HEADER_OFFSET, &offset_text))
            .insert(header(HEADER_ERROR, &message.error))
            .insert(header(HEADER_SOURCE, &self.source));
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .payload(message.payload.as_slice())
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        self.queue(record);
    }

    /// Queues a record, waiting while librdkafka's local queue is full.
    fn queue<'a>(&self, mut record: BaseRecord<'a, [u8], [u8]>) {
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue drains as the background thread delivers.
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, topic = %self.topic, "cannot queue a dead letter");
                    break;
                }
            }
        }
        self.unflushed.store(true, Ordering::Relaxed);
    }

    /// Queues a row an expression failed on: the row as JSON, the query, the operator and
    /// the error as headers.
    pub fn send_rejected(&self, row: &RejectedRow) {
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(header(HEADER_SOURCE, &row.source))
            .insert(header(HEADER_QUERY, &row.query))
            .insert(header(HEADER_OPERATOR, &row.operator))
            .insert(header(HEADER_ERROR, &row.error));
        let record = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .payload(row.row.as_slice())
            .headers(headers);
        self.queue(record);
    }

    /// Waits until every queued dead letter is delivered (or failed and counted).
    pub fn flush(&self) {
        if self.unflushed.swap(false, Ordering::Relaxed)
            && let Err(e) = self.producer.flush(FLUSH_TIMEOUT)
        {
            tracing::error!(error = %e, topic = %self.topic, "dead letters not flushed");
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Rows of a query that an expression failed on, produced to the dead-letter topic of the
/// source they came from.
pub struct RejectedRowsSink {
    dead_letters: Arc<DeadLetters>,
}

impl RejectedRowsSink {
    /// A sink producing to `topic`; connects lazily.
    pub fn new(settings: &KafkaSettings, topic: String) -> Result<Self, ConnectorError> {
        // Delivery failures are logged; the query's counters belong to its source.
        let metrics = Arc::new(QueryMetrics::default());
        Ok(Self {
            dead_letters: Arc::new(DeadLetters::new(settings, topic, String::new(), metrics)?),
        })
    }
}

#[async_trait::async_trait]
impl Sink for RejectedRowsSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        for row in rejected_rows(&batch)? {
            self.dead_letters.send_rejected(&row);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let dead_letters = Arc::clone(&self.dead_letters);
        tokio::task::spawn_blocking(move || dead_letters.flush())
            .await
            .map_err(|e| ConnectorError::External(format!("flushing dead letters: {e}")))
    }
}
