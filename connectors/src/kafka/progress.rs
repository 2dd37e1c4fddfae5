//! [`ProgressStore`]: how far a query's windows were delivered, kept in Kafka next to its
//! offsets, so a restart without local state does not emit a window twice in part.
//!
//! After a restart a windowed rule reads again from its committed offsets, and out-of-order
//! events of windows it had already emitted come back with the rest: without knowing those
//! windows were delivered, it would build and emit them again from that part of their events.
//! So every commit also saves the watermark up to which windows were delivered, and the
//! restarted run drops what falls in them (`SourceEvent::Resume`).
//!
//! Commit metadata would be the natural home, but not every Kafka-protocol broker hands it
//! back (Tansu 0.6 stores it and returns it empty). The watermark is instead the committed
//! offset of a consumer group of its own, `<group>.watermark`, which no consumer reads: any
//! broker keeps a group's offsets. It is saved before the offsets it goes with, so a crash in
//! between leaves a watermark ahead of the offsets, never behind: ahead only drops events of
//! windows that were delivered.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use vigil_engine::time::{Timestamp, WATERMARK_MIN};

use super::KafkaSettings;
use super::client::METADATA_TIMEOUT;
use crate::ConnectorError;

/// The watermark of a query's delivered windows, per partition, in a consumer group.
pub struct ProgressStore {
    consumer: BaseConsumer,
}

impl ProgressStore {
    /// The store of consumer group `group`; connects lazily.
    pub fn new(settings: &KafkaSettings, group: &str) -> Result<Self, ConnectorError> {
        let consumer = settings
            .client_config()
            .set("group.id", format!("{group}.watermark"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| ConnectorError::External(format!("Kafka progress store: {e}")))?;
        Ok(Self { consumer })
    }

    /// Saves `watermark` for the partitions of `partitions` (their offsets are ignored).
    pub fn save(&self, partitions: &TopicPartitionList, watermark: Timestamp) -> KafkaResult<()> {
        if watermark == WATERMARK_MIN || watermark < 0 {
            return Ok(());
        }
        let mut saved = TopicPartitionList::new();
        for element in partitions.elements() {
            saved.add_partition_offset(
                element.topic(),
                element.partition(),
                Offset::Offset(watermark),
            )?;
        }
        self.consumer.commit(&saved, CommitMode::Sync)
    }

    /// The lowest watermark saved for the partitions of `partitions`; `None` when none has one.
    pub fn load(&self, partitions: &TopicPartitionList) -> KafkaResult<Option<Timestamp>> {
        let saved = self
            .consumer
            .committed_offsets(partitions.clone(), METADATA_TIMEOUT)?;
        Ok(saved
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(watermark) => Some(watermark),
                _ => None,
            })
            .min())
    }
}
