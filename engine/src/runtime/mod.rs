//! The runtime: a running query is one task per source, one task driving the operator graph,
//! and one task per sink, linked by bounded channels. Full channels make a slow sink slow the
//! sources down instead of filling memory.

mod delivery;
mod executor;
mod metrics;
mod rejections;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use executor::{GraphExecutor, NodeSnapshot, OutputPort};
pub use metrics::{MetricsSnapshot, OperatorStats, QueryMetrics};

use crate::batch::ChangeBatch;
use crate::connector::{ConnectorError, Delivered, Sink, Source, SourceEvent, SplitStatus};
use crate::error::{Error, Result};
use crate::operators::{LATE_PORT, MAIN_PORT, Message};
use crate::plan::OperatorGraph;
use crate::time::Timestamp;
use delivery::{CatchUp, DeliveryTracker};
use rejections::Rejections;

/// Batches buffered between two tasks.
const CHANNEL_CAPACITY: usize = 4;
/// How long a source may wait for data before reporting it is idle.
const SOURCE_POLL: Duration = Duration::from_millis(200);
/// How often sinks are asked to confirm delivery, so sources can acknowledge their input.
const DELIVERY_INTERVAL: Duration = Duration::from_millis(500);

/// A query's sources and sinks, built from the catalog by the engine.
pub struct QueryIo {
    /// The query's name (its sink's), for logs and dead letters.
    pub query: String,
    /// One source per [`OperatorGraph::sources`] entry.
    pub sources: Vec<Box<dyn Source>>,
    /// Per source, where the runtime reports how far its batches are delivered (the same
    /// object the source got in its [`crate::connector::SourceContext`]).
    pub delivered: Vec<Arc<Delivered>>,
    /// The result sink.
    pub sink: Box<dyn Sink>,
    /// One sink per [`OperatorGraph::late_outputs`] entry.
    pub late_sinks: Vec<Box<dyn Sink>>,
    /// Where rows an expression failed on go: the dead-letter sink of a source (see
    /// [`crate::connector::ConnectorFactory::create_dead_letter_sink`]). Without one they
    /// are counted and logged.
    pub dead_letters: Option<Box<dyn Sink>>,
}

/// A query running on the tokio runtime.
pub struct RunningQuery {
    metrics: Arc<QueryMetrics>,
    stop: StopHandle,
    handle: JoinHandle<Result<()>>,
}

/// Stops a query from elsewhere (another task, an HTTP request) while its owner waits on it.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Asks the query to stop, as [`RunningQuery::stop`] does.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }

    /// True once the query has finished (its tasks, which watch for the stop, are gone).
    pub fn is_finished(&self) -> bool {
        self.0.is_closed()
    }
}

impl RunningQuery {
    /// Starts `graph` with its sources and sinks.
    pub fn start(graph: OperatorGraph, io: QueryIo, metrics: Arc<QueryMetrics>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(drive(graph, io, Arc::clone(&metrics), stop_rx));
        Self {
            metrics,
            stop: StopHandle(Arc::new(stop)),
            handle,
        }
    }

    /// A handle that stops this query; it outlives [`RunningQuery::wait`].
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The query's live counters.
    pub fn metrics(&self) -> &Arc<QueryMetrics> {
        &self.metrics
    }

    /// Asks the query to stop: sources stop reading, what was emitted is flushed, open
    /// windows are dropped (they are not complete, and their input is not acknowledged).
    pub fn stop(&self) {
        self.stop.stop();
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
    /// The source's `seq`-th batch (counted from 0), from `split` when it has several.
    Batch {
        source: usize,
        seq: u64,
        split: Option<u32>,
        rows: RecordBatch,
    },
    Splits(usize, SplitStatus),
    /// Windows ending at or before this were delivered by an earlier run.
    Resume(usize, Timestamp),
    CaughtUp(usize),
    End(usize),
    Failed(usize, ConnectorError),
}

impl FromSource {
    /// The index of the source the event comes from.
    fn source(&self) -> usize {
        match self {
            FromSource::Batch { source, .. } => *source,
            FromSource::Splits(source, _)
            | FromSource::Resume(source, _)
            | FromSource::CaughtUp(source)
            | FromSource::End(source)
            | FromSource::Failed(source, _) => *source,
        }
    }
}

/// What the graph task sends to a sink task.
enum ToSink {
    Rows(RecordBatch),
    /// Flush, then confirm delivery request number this (see [`DeliveryTracker`]).
    Confirm(u64),
    /// Every source has caught up (see [`Sink::caught_up`]).
    CaughtUp,
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
    metrics.update_operators(|stats| *stats = executor.operator_stats());

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
    let mut tracker = DeliveryTracker::new(io.delivered);
    let late_outputs = io.late_sinks.len();
    let mut rejections = Rejections::new(
        io.query,
        io.dead_letters.is_some().then_some(1 + late_outputs),
    );
    let sinks = std::iter::once(io.sink)
        .chain(io.late_sinks)
        .chain(io.dead_letters);
    for (i, sink) in sinks.enumerate() {
        let (stx, srx) = mpsc::channel(CHANNEL_CAPACITY);
        sink_txs.push(stx);
        let confirmed = tracker.add_sink();
        let counted = (i == 0).then(|| Arc::clone(&metrics));
        sink_tasks.push(tokio::spawn(write_sink(sink, srx, counted, confirmed)));
    }

    let mut catch_up = CatchUp::new(source_names.len());
    let mut ticker = tokio::time::interval(DELIVERY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ended = 0;
    let mut failure = None;
    while ended < executor.source_count() {
        let event = tokio::select! {
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
            _ = ticker.tick() => {
                tracker.report();
                let asked = tracker.ask(
                    executor.epoch(),
                    executor.output_watermark(0),
                    executor.retained_epoch(),
                    false,
                );
                if let Some(number) = asked
                    && send_all(&sink_txs, || ToSink::Confirm(number)).await.is_err()
                {
                    failure = Some(Error::Execution("sink task stopped".into()));
                    break;
                }
                continue;
            }
        };
        let event_source = event.source();
        let emitted = match event {
            FromSource::Batch {
                source,
                seq,
                split,
                rows,
            } => {
                metrics
                    .events_in
                    .fetch_add(rows.num_rows() as u64, Ordering::Relaxed);
                let batch = ChangeBatch::inserts(rows);
                let emitted = match split {
                    Some(split) => executor.push_split_batch(source, split, batch),
                    None => executor.push_source(source, Message::Batch(batch)),
                };
                tracker.pushed(source, executor.epoch(), seq);
                emitted
            }
            FromSource::Splits(source, status) => executor.push_split_status(source, &status),
            FromSource::Resume(source, emitted_until) => {
                tracing::info!(
                    source = %source_names[source],
                    emitted_until = ?crate::time::format_rfc3339(emitted_until),
                    "resuming: windows up to here were delivered by an earlier run"
                );
                executor.resume(emitted_until);
                Ok(Vec::new())
            }
            FromSource::CaughtUp(source) => {
                catch_up.caught_up(source);
                Ok(Vec::new())
            }
            FromSource::End(source) => {
                ended += 1;
                catch_up.caught_up(source);
                executor.end_source(source)
            }
            FromSource::Failed(source, e) => {
                failure = Some(Error::Execution(format!(
                    "source '{}': {e}",
                    source_names[source]
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
                if sink_txs[index].send(ToSink::Rows(rows)).await.is_err() {
                    failure = Some(Error::Execution("sink task stopped".into()));
                    break;
                }
            }
        }
        // After the rows the last catching-up batch produced, so the sink has seen them.
        if catch_up.take_complete() && sink_txs[0].send(ToSink::CaughtUp).await.is_err() {
            failure = Some(Error::Execution("sink task stopped".into()));
            break;
        }
        let rejected = executor.take_rejected();
        if !rejected.is_empty() {
            let source = &source_names[event_source];
            let letters = match rejections.take(rejected, source, &metrics) {
                Ok(letters) => letters,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if let Some(index) = rejections.sink {
                for batch in letters {
                    if sink_txs[index].send(ToSink::Rows(batch)).await.is_err() {
                        failure = Some(Error::Execution("dead-letter sink task stopped".into()));
                        break;
                    }
                }
            }
        }
        metrics
            .watermark
            .store(executor.output_watermark(0), Ordering::Relaxed);
        metrics.update_operators(|stats| executor.refresh_stats(stats));
        if failure.is_some() || executor.output_ended(0) {
            break;
        }
    }

    // Let the sinks write out everything already emitted and confirm it, then tell the
    // sources what they may acknowledge, then close them.
    if failure.is_none() {
        let asked = tracker.ask(
            executor.epoch(),
            executor.output_watermark(0),
            executor.retained_epoch(),
            true,
        );
        if let Some(number) = asked {
            let _ = send_all(&sink_txs, || ToSink::Confirm(number)).await;
        }
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
    tracker.report();
    tracker.finish();
    drop(rx);
    for task in source_tasks {
        let _ = task.await;
    }
    failure.map_or(Ok(()), Err)
}

/// Sends a message to every sink; fails when one has stopped.
async fn send_all(
    sinks: &[mpsc::Sender<ToSink>],
    message: impl Fn() -> ToSink,
) -> std::result::Result<(), ()> {
    for sink in sinks {
        sink.send(message()).await.map_err(|_| ())?;
    }
    Ok(())
}

async fn read_source(
    index: usize,
    mut source: Box<dyn Source>,
    tx: mpsc::Sender<FromSource>,
    stop: watch::Receiver<bool>,
) {
    pump_source(index, source.as_mut(), tx, stop).await;
    // The sender is gone now, so the query can finish and report what was delivered.
    if let Err(e) = source.close().await {
        tracing::warn!(source = index, error = %e, "closing a source failed");
    }
}

async fn pump_source(
    index: usize,
    source: &mut dyn Source,
    tx: mpsc::Sender<FromSource>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seq = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let event = tokio::select! {
            event = source.next_batch(SOURCE_POLL) => event,
            _ = stop.changed() => return,
        };
        let (split, rows) = match event {
            Ok(SourceEvent::Batch(rows)) => (None, rows),
            Ok(SourceEvent::SplitBatch { split, rows }) => (Some(split), rows),
            Ok(SourceEvent::Idle) => continue,
            Ok(SourceEvent::CaughtUp) => {
                if !send(&tx, &mut stop, FromSource::CaughtUp(index)).await {
                    return;
                }
                continue;
            }
            Ok(SourceEvent::Resume(emitted_until)) => {
                if !send(&tx, &mut stop, FromSource::Resume(index, emitted_until)).await {
                    return;
                }
                continue;
            }
            Ok(SourceEvent::Splits(status)) => {
                if !send(&tx, &mut stop, FromSource::Splits(index, status)).await {
                    return;
                }
                continue;
            }
            Ok(SourceEvent::End) => {
                send(&tx, &mut stop, FromSource::End(index)).await;
                return;
            }
            Err(e) => {
                send(&tx, &mut stop, FromSource::Failed(index, e)).await;
                return;
            }
        };
        let message = FromSource::Batch {
            source: index,
            seq,
            split,
            rows,
        };
        seq += 1;
        if !send(&tx, &mut stop, message).await {
            return;
        }
    }
}

/// Sends unless the query stops first; false when the source should stop.
async fn send(
    tx: &mpsc::Sender<FromSource>,
    stop: &mut watch::Receiver<bool>,
    message: FromSource,
) -> bool {
    tokio::select! {
        sent = tx.send(message) => sent.is_ok(),
        _ = stop.changed() => false,
    }
}

async fn write_sink(
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<ToSink>,
    metrics: Option<Arc<QueryMetrics>>,
    confirmed: Arc<AtomicU64>,
) -> Result<(), ConnectorError> {
    let mut unflushed = false;
    while let Some(message) = rx.recv().await {
        match message {
            ToSink::Rows(batch) => {
                if let Some(m) = &metrics {
                    m.rows_out
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                }
                sink.write(batch).await?;
                unflushed = true;
                // Flush once the burst is written, so `tail -f` shows alerts at once.
                if rx.is_empty() {
                    sink.flush().await?;
                    unflushed = false;
                }
            }
            ToSink::CaughtUp => sink.caught_up().await?,
            ToSink::Confirm(epoch) => {
                if unflushed {
                    sink.flush().await?;
                    unflushed = false;
                }
                confirmed.store(epoch, Ordering::Release);
            }
        }
    }
    sink.flush().await
}
