//! The `memory` connector: rows handed in by the embedding program, results kept in memory.
//! Tests and embedders use it; `WITH (connector = 'memory', name = '...')`.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use super::{
    ConnectorError, ConnectorFactory, Sink, Source, SourceContext, SourceEvent, SourcePosition,
};
use crate::sql::Options;

/// Batches that a `memory` source with a given name will produce, then end.
pub type MemoryInput = Vec<RecordBatch>;

/// Rows written to a `memory` sink.
pub type MemorySink = Arc<Mutex<Vec<RecordBatch>>>;

/// Factory of the `memory` connector, holding inputs and outputs by name.
#[derive(Default)]
pub struct MemoryFactory {
    inputs: Mutex<HashMap<String, MemoryInput>>,
    outputs: Mutex<HashMap<String, MemorySink>>,
}

impl MemoryFactory {
    /// Sets the batches every source named `name` produces.
    pub fn set_input(&self, name: &str, batches: MemoryInput) {
        self.inputs
            .lock()
            .expect("memory inputs lock")
            .insert(name.to_string(), batches);
    }

    /// The rows written so far to sinks named `name`.
    pub fn output(&self, name: &str) -> MemorySink {
        Arc::clone(
            self.outputs
                .lock()
                .expect("memory outputs lock")
                .entry(name.to_string())
                .or_default(),
        )
    }
}

/// The `name` option; without one the connector's data is not shared with anyone.
fn name_option(options: &Options) -> Result<String, ConnectorError> {
    let mut reader = options.reader();
    let name = reader.take("name").unwrap_or_default();
    reader.finish()?;
    Ok(name)
}

impl ConnectorFactory for MemoryFactory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn create_source(
        &self,
        options: &Options,
        _schema: SchemaRef,
        _ctx: SourceContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let name = name_option(options)?;
        let batches = self
            .inputs
            .lock()
            .expect("memory inputs lock")
            .get(&name)
            .cloned()
            .unwrap_or_default();
        Ok(Box::new(MemorySource {
            batches: batches.into(),
            taken: 0,
        }))
    }

    fn create_sink(
        &self,
        options: &Options,
        _schema: SchemaRef,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let name = name_option(options)?;
        Ok(Box::new(MemorySinkWriter {
            rows: self.output(&name),
        }))
    }
}

struct MemorySource {
    batches: VecDeque<RecordBatch>,
    /// Batches handed out.
    taken: u64,
}

#[async_trait]
impl Source for MemorySource {
    async fn next_batch(&mut self, _max_wait: Duration) -> Result<SourceEvent, ConnectorError> {
        let Some(batch) = self.batches.pop_front() else {
            return Ok(SourceEvent::End);
        };
        self.taken += 1;
        Ok(SourceEvent::Batch(batch))
    }

    /// The number of batches handed out.
    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition::single(self.taken as i64))
    }

    async fn restore(&mut self, position: SourcePosition) -> Result<(), ConnectorError> {
        let skip = position.splits.get(&0).copied().unwrap_or(0).max(0) as u64;
        while self.taken < skip && self.batches.pop_front().is_some() {
            self.taken += 1;
        }
        Ok(())
    }
}

struct MemorySinkWriter {
    rows: MemorySink,
}

#[async_trait]
impl Sink for MemorySinkWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        self.rows.lock().expect("memory sink lock").push(batch);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}
