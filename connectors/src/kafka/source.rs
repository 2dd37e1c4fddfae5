//! [`KafkaSource`]: the query's side of a Kafka reader thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};

use vigil_engine::connector::{Source, SourceContext, SourceEvent, SourcePosition};

use super::KafkaSettings;
use super::config::SourceConfig;
use super::offsets::partition_of;
use super::reader::{self, ReaderEvent, ReaderSetup};
use crate::ConnectorError;

/// Batches in flight between the reader thread and the query.
const CHANNEL_BATCHES: usize = 4;

/// How long closing waits for the query's last delivery before committing what it has.
const CLOSE_WAIT: Duration = Duration::from_secs(60);

/// A Kafka source. Its reader thread starts on the first read, so creating it (as the
/// engine does to check options) connects to nothing.
pub struct KafkaSource {
    setup: Option<ReaderSetup>,
    delivered: Arc<vigil_engine::connector::Delivered>,
    events: Option<mpsc::Receiver<ReaderEvent>>,
    stop: Arc<AtomicBool>,
    exited: Option<oneshot::Receiver<()>>,
    /// Per owned partition (as a split id), the offset after the last batch returned.
    position: BTreeMap<u32, i64>,
}

impl KafkaSource {
    /// A source reading `config`'s topics into rows of `schema`.
    pub fn new(
        settings: Arc<KafkaSettings>,
        config: SourceConfig,
        schema: SchemaRef,
        ctx: SourceContext,
    ) -> Result<Self, ConnectorError> {
        Ok(Self {
            delivered: Arc::clone(&ctx.delivered),
            setup: Some(ReaderSetup {
                settings,
                config,
                schema,
                ctx,
                resume: BTreeMap::new(),
            }),
            events: None,
            stop: Arc::new(AtomicBool::new(false)),
            exited: None,
            position: BTreeMap::new(),
        })
    }

    fn start(&mut self) -> Result<(), ConnectorError> {
        if let Some(setup) = self.setup.take() {
            let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
            let (exited_tx, exited_rx) = oneshot::channel();
            reader::spawn(setup, tx, Arc::clone(&self.stop), exited_tx)?;
            self.events = Some(rx);
            self.exited = Some(exited_rx);
        }
        Ok(())
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self, max_wait: Duration) -> Result<SourceEvent, ConnectorError> {
        self.start()?;
        let Some(events) = self.events.as_mut() else {
            return Ok(SourceEvent::End);
        };
        let event = match tokio::time::timeout(max_wait, events.recv()).await {
            Err(_) => return Ok(SourceEvent::Idle),
            Ok(event) => event,
        };
        match event {
            Some(ReaderEvent::Batch {
                split,
                rows,
                next_offset,
            }) => {
                self.position.insert(split, next_offset);
                Ok(SourceEvent::SplitBatch { split, rows })
            }
            Some(ReaderEvent::Splits(status)) => {
                // A revoked partition's position is its new owner's to record.
                let owned =
                    |split: &u32| status.active.contains(split) || status.idle.contains(split);
                self.position.retain(|split, _| owned(split));
                Ok(SourceEvent::Splits(status))
            }
            Some(ReaderEvent::Handover(handover)) => Ok(SourceEvent::Handover(handover)),
            Some(ReaderEvent::Resume(watermark)) => Ok(SourceEvent::Resume(watermark)),
            Some(ReaderEvent::CaughtUp) => Ok(SourceEvent::CaughtUp),
            Some(ReaderEvent::End) => Ok(SourceEvent::End),
            Some(ReaderEvent::Failed(e)) => Err(e),
            None => Err(ConnectorError::External(
                "the Kafka reader stopped unexpectedly".into(),
            )),
        }
    }

    /// Each owned partition's next offset.
    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition {
            splits: self.position.clone(),
        })
    }

    async fn restore(&mut self, position: SourcePosition) -> Result<(), ConnectorError> {
        let Some(setup) = self.setup.as_mut() else {
            return Err(ConnectorError::Unsupported(
                "a Kafka source resumes only before its first read".into(),
            ));
        };
        setup.resume = position
            .splits
            .iter()
            .map(|(&split, &offset)| (partition_of(split), offset))
            .collect();
        self.position = position.splits;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        let Some(exited) = self.exited.take() else {
            return Ok(());
        };
        // Offsets are committed by the reader thread as it exits, so it must see the last
        // delivery first.
        self.delivered.wait_finished(CLOSE_WAIT).await;
        self.stop.store(true, Ordering::Relaxed);
        self.events = None;
        let _ = exited.await;
        Ok(())
    }
}
