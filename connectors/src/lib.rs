//! # Vigil connectors
//!
//! Sources and sinks behind the engine's [`vigil_engine::connector`] contracts.
//!
//! # Layout
//! - [`generator`]: synthetic sensors, payments, dues and logins, for demos and benchmarks.
//! - [`file`]: JSON-lines files as a bounded source, and as a sink.
//! - [`kafka`]: Kafka topics as sources and sinks.
//! - [`postgres`]: a sink into a Postgres (or TimescaleDB) table.
//! - [`stdout`]: results on the terminal, as a table or JSON lines.
//! - [`format`]: JSON decoding and encoding, and the table printer.
#![warn(missing_docs)]

pub mod file;
pub mod format;
pub mod generator;
pub mod kafka;
pub mod postgres;
pub mod stdout;

use std::sync::Arc;

pub use vigil_engine::connector::ConnectorError;
use vigil_engine::connector::ConnectorRegistry;

/// A registry with every connector of this crate, plus the engine's `memory` one; Kafka
/// brokers from `VIGIL_KAFKA_BROKERS` (default `localhost:9092`).
pub fn registry() -> ConnectorRegistry {
    registry_with(kafka::KafkaSettings::default())
}

/// A registry with every connector of this crate, Kafka connecting per `kafka`.
pub fn registry_with(kafka: kafka::KafkaSettings) -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::new();
    register_all(&mut registry, kafka);
    registry
}

/// Adds every connector of this crate to `registry`.
pub fn register_all(registry: &mut ConnectorRegistry, kafka: kafka::KafkaSettings) {
    registry.register(Arc::new(generator::GeneratorFactory));
    registry.register(Arc::new(file::FileFactory));
    registry.register(Arc::new(stdout::StdoutFactory));
    registry.register(Arc::new(kafka::KafkaFactory::new(kafka)));
    registry.register(Arc::new(postgres::PostgresFactory::default()));
}
