//! [`live_keys`]: the keys an upsert topic holds now, read from the start of every partition
//! to its end: the last record of each key counts, a tombstone removes it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::KafkaSettings;
use super::client::{METADATA_TIMEOUT, topic_partitions, unreachable};
use crate::ConnectorError;

/// How long reading a topic to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Every key of `topic` whose last record is not a tombstone. Blocks: call it off the async
/// runtime.
pub fn live_keys(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<HashSet<Vec<u8>>, ConnectorError> {
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", "vigil-upsert-keys")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| ConnectorError::External(format!("Kafka consumer: {e}")))?;
    let partitions = topic_partitions(consumer.client(), &settings.brokers, &[topic.to_string()])?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for &partition in &partitions[0] {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|e| unreachable(&settings.brokers, e))?;
        if high > low {
            ends.push((partition, high));
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(|e| ConnectorError::External(e.to_string()))?;
        }
    }
    let mut keys = HashSet::new();
    if ends.is_empty() {
        return Ok(keys);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| unreachable(&settings.brokers, e))?;
    let deadline = Instant::now() + READ_TIMEOUT;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(ConnectorError::External(format!(
                "reading the keys of topic '{topic}' did not finish in {READ_TIMEOUT:?}"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Ok(message) = message else {
            continue;
        };
        if let Some(key) = message.key() {
            match message.payload() {
                Some(_) => keys.insert(key.to_vec()),
                None => keys.remove(key),
            };
        }
        // A partition is read once the record before its end offset is.
        let (partition, offset) = (message.partition(), message.offset());
        ends.retain(|(p, end)| !(*p == partition && offset + 1 >= *end));
    }
    // Some brokers (Tansu) report an end inside the last batch of records: take the rest of
    // what was fetched too.
    while let Some(Ok(message)) = consumer.poll(Duration::ZERO) {
        if let Some(key) = message.key() {
            match message.payload() {
                Some(_) => keys.insert(key.to_vec()),
                None => keys.remove(key),
            };
        }
    }
    Ok(keys)
}
