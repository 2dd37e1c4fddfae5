//! # Vigil connectors
//!
//! Sources and sinks behind the engine's [`vigil_engine::connector`] contracts.
//!
//! # Layout
//! - [`generator`]: synthetic sensors, payments, dues and logins, for demos and benchmarks.
//! - [`file`]: JSON-lines files as a bounded source, and as a sink.
//! - [`stdout`]: results on the terminal, as a table or JSON lines.
//! - [`format`]: JSON decoding and encoding, and the table printer.
#![warn(missing_docs)]

pub mod file;
pub mod format;
pub mod generator;
pub mod stdout;

use std::sync::Arc;

pub use vigil_engine::connector::ConnectorError;
use vigil_engine::connector::ConnectorRegistry;

/// A registry with every connector of this crate, plus the engine's `memory` one.
pub fn registry() -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::new();
    register_all(&mut registry);
    registry
}

/// Adds every connector of this crate to `registry`.
pub fn register_all(registry: &mut ConnectorRegistry) {
    registry.register(Arc::new(generator::GeneratorFactory));
    registry.register(Arc::new(file::FileFactory));
    registry.register(Arc::new(stdout::StdoutFactory));
}
