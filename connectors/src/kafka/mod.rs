//! The `kafka` connector: topics as sources and sinks, on rdkafka (librdkafka).
//!
//! Brokers are never named in rule files: they come from [`KafkaSettings`], filled from
//! `VIGIL_KAFKA_BROKERS` or the command line (default `localhost:9092`).
//!
//! As a source: JSON messages decoded with arrow-json into the declared schema, in batches per
//! partition; watermarks per partition; offsets committed only once the query's results are
//! delivered. As a sink: one JSON message per row, or upserts keyed by `key` for updating
//! queries. See `docs/kafka.md` for every option.

mod batcher;
mod client;
mod config;
mod dead_letter;
mod health;
mod offsets;
mod progress;
mod reader;
mod rebalance;
mod sink;
mod source;
mod tombstones;
mod topic_keys;
mod transactions;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use vigil_engine::connector::{ConnectorFactory, Sink, Source, SourceContext};
use vigil_engine::sql::Options;

pub use batcher::{KEY_COLUMN, OFFSET_COLUMN, PARTITION_COLUMN, TIMESTAMP_COLUMN};
pub use client::{BROKERS_ENV, KafkaSettings, check_brokers, create_topics};
pub use config::{CONSUMER_DEFAULTS, IdleAdvance, SinkConfig, SourceConfig, StartFrom};
pub use dead_letter::{
    HEADER_ERROR, HEADER_OFFSET, HEADER_OPERATOR, HEADER_PARTITION, HEADER_QUERY, HEADER_SOURCE,
    HEADER_TOPIC,
};
pub use sink::{KafkaSink, Ranges};
pub use source::KafkaSource;
pub use transactions::EpochRecord;

use crate::ConnectorError;

/// Factory of the `kafka` connector.
#[derive(Debug, Clone, Default)]
pub struct KafkaFactory {
    settings: Arc<KafkaSettings>,
}

impl KafkaFactory {
    /// A factory connecting to the brokers of `settings`.
    pub fn new(settings: KafkaSettings) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }

    /// The connection settings.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }
}

impl ConnectorFactory for KafkaFactory {
    fn name(&self) -> &'static str {
        "kafka"
    }

    /// Through a consumer group; a source that assigns its partitions itself shares
    /// nothing, or (with `partitions`) is split by hand, in no way Vigil knows.
    fn shares_splits(&self, options: &Options) -> bool {
        options.get("group_id").is_some() || options.get("partitions").is_some()
    }

    fn create_source(
        &self,
        options: &Options,
        schema: SchemaRef,
        ctx: SourceContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let config = SourceConfig::from_options(options, &schema)?;
        Ok(Box::new(KafkaSource::new(
            Arc::clone(&self.settings),
            config,
            schema,
            ctx,
        )?))
    }

    fn create_dead_letter_sink(
        &self,
        options: &Options,
    ) -> Result<Option<Box<dyn Sink>>, ConnectorError> {
        options
            .get("dead_letter_topic")
            .map(|topic| {
                let sink = dead_letter::RejectedRowsSink::new(&self.settings, topic.to_string())?;
                Ok(Box::new(sink) as Box<dyn Sink>)
            })
            .transpose()
    }

    fn create_sink(
        &self,
        options: &Options,
        schema: SchemaRef,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let config = SinkConfig::from_options(options, &schema)?;
        Ok(Box::new(KafkaSink::new(&self.settings, config, schema)?))
    }
}
