//! The runtime: a running query is one task per source, one task driving the operator graph,
//! and one task per sink, linked by bounded channels. Full channels make a slow sink slow the
//! sources down instead of filling memory.

mod executor;
mod metrics;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use executor::{GraphExecutor, NodeSnapshot, OutputPort};
pub use metrics::{MetricsSnapshot, QueryMetrics};

use crate::batch::ChangeBatch;
use crate::connector::{ConnectorError, Sink, Source, SourceEvent};
use crate::error::{Error, Result};
use crate::operators::{LATE_PORT, MAIN_PORT, Message};
use crate::plan::OperatorGraph;

/// Batches buffered between two tasks.
const CHANNEL_CAPACITY: usize = 4;
/// How long a source may wait for data before reporting it is idle.
const SOURCE_POLL: Duration = Duration::from_millis(200);

/// A query's sources and sinks, built from the catalog by the engine.
pub struct QueryIo {
    /// One source per [`OperatorGraph::sources`] entry.
    pub sources: Vec<Box<dyn Source>>,
    /// The result sink.
    pub sink: Box<dyn Sink>,
    /// One sink per [`OperatorGraph::late_outputs`] entry.
    pub late_sinks: Vec<Box<dyn Sink>>,
}

/// A query running on the tokio runtime.
pub struct RunningQuery {
    metrics: Arc<QueryMetrics>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<Result<()>>,
}

impl RunningQuery {
    /// Starts `graph` with its sources and sinks.
    pub fn start(graph: OperatorGraph, io: QueryIo, metrics: Arc<QueryMetrics>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(drive(graph, io, Arc::clone(&metrics), stop_rx));
        Self {
            metrics,
            stop,
            handle,
        }
    }

    /// The query's live counters.
    pub fn metrics(&self) -> &Arc<QueryMetrics> {
        &self.metrics
    }

    /// Asks the query to stop: sources stop reading, what was emitted is flushed, open
    /// windows are dropped (they are not complete).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// True once the query has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the query to finish.
    pub async fn wait(self) -> Result<()> {
        self.handle
            .await
            .map_err(|e| Error::Execution(format!("query task failed: {e}")))?
    }
}

/// What a source task sends to the graph task.
enum FromSource {
    Batch(usize, RecordBatch),
    End(usize),
    Failed(usize, ConnectorError),
}

async fn drive(
    graph: OperatorGraph,
    io: QueryIo,
    metrics: Arc<QueryMetrics>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut outputs = vec![OutputPort {
        node: graph.output,
        port: MAIN_PORT,
    }];
    outputs.extend(graph.late_outputs.iter().map(|l| OutputPort {
        node: l.node,
        port: LATE_PORT,
    }));
    let updating = graph.updating;
    let source_names: Vec<String> = graph.sources.iter().map(|s| s.def.name.clone()).collect();
    let mut executor = GraphExecutor::new(graph, outputs);

    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let source_tasks: Vec<JoinHandle<()>> = io
        .sources
        .into_iter()
        .enumerate()
        .map(|(i, source)| tokio::spawn(read_source(i, source, tx.clone(), stop.clone())))
        .collect();
    drop(tx);

    let mut sink_txs = Vec::new();
    let mut sink_tasks = Vec::new();
    for (i, sink) in std::iter::once(io.sink).chain(io.late_sinks).enumerate() {
        let (stx, srx) = mpsc::channel(CHANNEL_CAPACITY);
        sink_txs.push(stx);
        let counted = (i == 0).then(|| Arc::clone(&metrics));
        sink_tasks.push(tokio::spawn(write_sink(sink, srx, counted)));
    }

    let mut ended = 0;
    let mut failure = None;
    while ended < executor.source_count() {
        let Some(event) = rx.recv().await else { break };
        let emitted = match event {
            FromSource::Batch(i, batch) => {
                metrics
                    .events_in
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                executor.push_source(i, Message::Batch(ChangeBatch::inserts(batch)))
            }
            FromSource::End(i) => {
                ended += 1;
                executor.end_source(i)
            }
            FromSource::Failed(i, e) => {
                failure = Some(Error::Execution(format!(
                    "source '{}': {e}",
                    source_names[i]
                )));
                break;
            }
        };
        let emitted = match emitted {
            Ok(e) => e,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        for (index, message) in emitted {
            if let Message::Batch(batch) = message {
                let rows = if index == 0 {
                    batch.into_output(updating)?
                } else {
                    batch.rows
                };
                if sink_txs[index].send(rows).await.is_err() {
                    failure = Some(Error::Execution("sink task stopped".into()));
                    break;
                }
            }
        }
        metrics
            .late_events
            .store(executor.late_rows(), Ordering::Relaxed);
        metrics
            .watermark
            .store(executor.output_watermark(0), Ordering::Relaxed);
        metrics
            .state_rows
            .store(executor.state_rows() as u64, Ordering::Relaxed);
        if failure.is_some() || executor.output_ended(0) {
            break;
        }
    }

    // Stop reading, then let the sinks write out everything already emitted.
    drop(rx);
    for task in source_tasks {
        task.abort();
    }
    drop(sink_txs);
    for task in sink_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(Error::Connector(e))),
            Err(e) => {
                failure = failure.or(Some(Error::Execution(format!("sink task failed: {e}"))))
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn read_source(
    index: usize,
    mut source: Box<dyn Source>,
    tx: mpsc::Sender<FromSource>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let event = tokio::select! {
            event = source.next_batch(SOURCE_POLL) => event,
            _ = stop.changed() => return,
        };
        let message = match event {
            Ok(SourceEvent::Batch(batch)) if batch.num_rows() == 0 => continue,
            Ok(SourceEvent::Batch(batch)) => FromSource::Batch(index, batch),
            Ok(SourceEvent::Idle) => continue,
            Ok(SourceEvent::End) => FromSource::End(index),
            Err(e) => FromSource::Failed(index, e),
        };
        let last = !matches!(message, FromSource::Batch(..));
        tokio::select! {
            sent = tx.send(message) => if sent.is_err() { return },
            _ = stop.changed() => return,
        }
        if last {
            return;
        }
    }
}

async fn write_sink(
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<RecordBatch>,
    metrics: Option<Arc<QueryMetrics>>,
) -> Result<(), ConnectorError> {
    while let Some(batch) = rx.recv().await {
        if let Some(m) = &metrics {
            m.rows_out
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        }
        sink.write(batch).await?;
        // Flush once the burst is written, so `tail -f` shows alerts at once.
        if rx.is_empty() {
            sink.flush().await?;
        }
    }
    sink.flush().await
}
