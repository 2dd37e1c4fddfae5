//! The runtime: a running query is one task per source, one task driving the operator graph,
//! and one task per sink, linked by bounded channels. Full channels make a slow sink slow the
//! sources down instead of filling memory.

mod alignment;
mod checkpointer;
mod delivery;
mod executor;
mod metrics;
mod query_loop;
mod rejections;
mod split_tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use crate::checkpoint::NodeSnapshot;
pub use executor::{GraphExecutor, OutputPort};
pub use metrics::{CheckpointReport, MetricsSnapshot, OperatorStats, QueryMetrics};

use crate::checkpoint::StateConfig;
use crate::connector::{
    ConnectorError, Delivered, Handover, Health, Sink, Source, SourceEvent, SourcePosition,
    SplitStatus,
};
use crate::error::{Error, Result};
use crate::operators::MAIN_PORT;
use crate::plan::OperatorGraph;
use crate::time::Timestamp;
use checkpointer::Checkpointer;
use delivery::{CatchUp, DeliveryTracker};
use query_loop::{QueryLoop, Tasks};
use rejections::Rejections;
use split_tasks::SplitTasks;

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
    /// Checkpoint per split of the only source, which hands splits over as they move
    /// between processes (see [`crate::connector::SourceContext::split_state`]), rather
    /// than as a whole. Needs a state dir.
    pub split_state: bool,
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
    /// Starts `graph` with its sources and sinks; with `state`, it checkpoints there and
    /// resumes from its last checkpoint.
    pub fn start(
        graph: OperatorGraph,
        io: QueryIo,
        metrics: Arc<QueryMetrics>,
        state: Option<StateConfig>,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let stop = StopHandle(Arc::new(stop));
        let handle = launch(
            graph,
            io,
            state,
            Arc::clone(&metrics),
            (stop.clone(), stop_rx),
        );
        Self {
            metrics,
            stop,
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
    /// The source's `seq`-th batch (counted from 0), from `split` when it has several,
    /// after which the source stands at `position` (see [`Source::position`]).
    Batch {
        source: usize,
        seq: u64,
        split: Option<u32>,
        rows: RecordBatch,
        position: Option<SourcePosition>,
    },
    Splits(usize, SplitStatus),
    /// Splits move to or from this process (see [`SourceEvent::Handover`]).
    Handover(usize, Handover),
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
            | FromSource::Handover(source, _)
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
    /// Which checkpoint epoch the sink's output was committed up to (see
    /// [`Sink::committed_epoch`]); sent first.
    CommittedEpoch(
        String,
        tokio::sync::oneshot::Sender<Result<Option<u64>, ConnectorError>>,
    ),
    /// Resume where a checkpoint left the sink (see [`Sink::restore`]).
    Restore(Option<u64>),
    /// A checkpoint is being taken: pre-commit and answer with the sink's position.
    PreCommit(tokio::sync::oneshot::Sender<Result<Option<u64>, ConnectorError>>),
    /// The checkpoint is complete (see [`Sink::commit`]).
    Commit(u64),
}

/// Starts the source and sink tasks on the current tokio runtime, and the graph on a thread
/// of its own (see [`QueryLoop`]); returns a task that ends with the query.
fn launch(
    graph: OperatorGraph,
    io: QueryIo,
    state: Option<StateConfig>,
    metrics: Arc<QueryMetrics>,
    (stop_handle, stop): (StopHandle, watch::Receiver<bool>),
) -> JoinHandle<Result<()>> {
    let mut outputs = vec![OutputPort {
        node: graph.output,
        port: MAIN_PORT,
    }];
    outputs.extend(graph.late_outputs.iter().map(|l| OutputPort {
        node: l.node,
        port: l.port,
    }));
    let updating = graph.updating;
    let source_names: Vec<String> = graph.sources.iter().map(|s| s.def.name.clone()).collect();
    let fingerprint = graph.fingerprint();
    let (checkpoints, splits) = match state {
        Some(config) if io.split_state && source_names.len() == 1 => {
            let delivered = Arc::clone(&io.delivered[0]);
            let source = source_names[0].clone();
            let splits = SplitTasks::new(&config, &io.query, fingerprint, source, delivered);
            (None, Some(splits))
        }
        Some(config) => {
            let delivered = io.delivered.clone();
            let names = source_names.clone();
            let checkpointer = Checkpointer::new(config, &io.query, fingerprint, names, delivered);
            (Some(checkpointer), None)
        }
        None => (None, None),
    };
    let alignment = alignment::Alignment::new(
        graph.sources.iter().map(|s| s.def.max_drift).collect(),
        graph
            .sources
            .iter()
            .map(|s| s.def.watermark.is_some())
            .collect(),
    );
    let executor = GraphExecutor::new(graph, outputs);
    metrics.update_operators(|stats| *stats = executor.operator_stats());

    let (tx, events) = mpsc::channel(CHANNEL_CAPACITY);
    let mut starts = Vec::new();
    let sources = io
        .sources
        .into_iter()
        .enumerate()
        .map(|(i, source)| {
            let (start, started) = tokio::sync::oneshot::channel();
            starts.push(start);
            let feed = Feed {
                index: i,
                tx: tx.clone(),
                alignment: alignment.clone(),
            };
            tokio::spawn(read_source(feed, source, stop.clone(), started))
        })
        .collect();
    drop(tx);

    let mut tracker = DeliveryTracker::new(io.delivered);
    let late_outputs = io.late_sinks.len();
    let rejections = Rejections::new(
        io.query.clone(),
        io.dead_letters.is_some().then_some(1 + late_outputs),
    );
    let all_sinks = std::iter::once(io.sink)
        .chain(io.late_sinks)
        .chain(io.dead_letters);
    let (mut sinks, mut sink_tasks) = (Vec::new(), Vec::new());
    for (i, mut sink) in all_sinks.enumerate() {
        let (stx, srx) = mpsc::channel(CHANNEL_CAPACITY);
        sinks.push(stx);
        let confirmed = tracker.add_sink();
        let counted = (i == 0).then(|| Arc::clone(&metrics));
        sink.report_health(Health::new(
            sink_component(i, late_outputs),
            Arc::clone(&metrics),
        ));
        sink_tasks.push(tokio::spawn(write_sink(sink, srx, counted, confirmed)));
    }
    let query_loop = QueryLoop {
        executor,
        metrics,
        catch_up: CatchUp::new(source_names.len()),
        source_names,
        updating,
        sinks,
        tracker,
        rejections,
        ended: 0,
        sink_gone: false,
        checkpoints,
        splits,
        starts,
        alignment,
    };
    let tasks = Tasks {
        sources,
        sinks: sink_tasks,
        stop: stop_handle,
    };
    on_graph_thread(&io.query, move || query_loop.run(events, tasks))
}

/// Runs the future `work` makes on a thread of its own, so that the CPU-bound graph never
/// holds up the tokio workers that serve sources, sinks and HTTP; the returned task ends
/// when it does.
fn on_graph_thread<F: Future<Output = Result<()>>>(
    query: &str,
    work: impl FnOnce() -> F + Send + 'static,
) -> JoinHandle<Result<()>> {
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("vigil-query-{query}"))
        .spawn(move || {
            // I/O too: checkpoints may go to an object store over the network.
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Execution(format!("cannot start the query's runtime: {e}")))
                .and_then(|runtime| runtime.block_on(work()));
            let _ = done.send(outcome);
        });
    tokio::spawn(async move {
        spawned.map_err(|e| Error::Execution(format!("cannot start the query's thread: {e}")))?;
        result
            .await
            .map_err(|_| Error::Execution("the query's thread panicked".into()))?
    })
}

/// Where a source task sends what it reads: source `index` of the graph's channel, paced
/// by the query's watermark alignment when it has one.
struct Feed {
    index: usize,
    tx: mpsc::Sender<FromSource>,
    alignment: Option<Arc<alignment::Alignment>>,
}

/// Reads a source into the graph's channel, from where `start` says once the query has
/// looked at its checkpoints (a dropped `start`: the query did not start).
async fn read_source(
    feed: Feed,
    mut source: Box<dyn Source>,
    stop: watch::Receiver<bool>,
    start: tokio::sync::oneshot::Receiver<Option<SourcePosition>>,
) {
    let Feed { index, .. } = feed;
    let resumed = match start.await {
        Ok(Some(position)) => source.restore(position).await,
        Ok(None) => Ok(()),
        Err(_) => return,
    };
    match resumed {
        Ok(()) => pump_source(feed, source.as_mut(), stop).await,
        Err(e) => {
            let _ = feed.tx.send(FromSource::Failed(index, e)).await;
        }
    }
    // The sender is gone now, so the query can finish and report what was delivered.
    if let Err(e) = source.close().await {
        tracing::warn!(source = index, error = %e, "closing a source failed");
    }
}

/// Reads `source` into the graph's channel until it ends, fails or the query stops. Takes
/// `feed` whole, so its sender is gone on return, before the source is closed.
async fn pump_source(feed: Feed, source: &mut dyn Source, mut stop: watch::Receiver<bool>) {
    let (index, tx) = (feed.index, &feed.tx);
    let reading = |on: bool| {
        if let Some(alignment) = &feed.alignment {
            alignment.set_reading(index, on);
        }
    };
    let mut seq = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        if let Some(alignment) = &feed.alignment {
            tokio::select! {
                _ = alignment.wait_turn(index) => {}
                _ = stop.changed() => return,
            }
        }
        let event = tokio::select! {
            event = source.next_batch(SOURCE_POLL) => event,
            _ = stop.changed() => return,
        };
        let (split, rows) = match event {
            Ok(SourceEvent::Batch(rows)) => (None, rows),
            Ok(SourceEvent::SplitBatch { split, rows }) => (Some(split), rows),
            Ok(SourceEvent::Idle) => {
                reading(false);
                continue;
            }
            Ok(SourceEvent::CaughtUp) => {
                if !send(tx, &mut stop, FromSource::CaughtUp(index)).await {
                    return;
                }
                continue;
            }
            Ok(SourceEvent::Resume(emitted_until)) => {
                if !send(tx, &mut stop, FromSource::Resume(index, emitted_until)).await {
                    return;
                }
                continue;
            }
            Ok(SourceEvent::Splits(status)) => {
                if !send(tx, &mut stop, FromSource::Splits(index, status)).await {
                    return;
                }
                continue;
            }
            Ok(SourceEvent::Handover(handover)) => {
                if !send(tx, &mut stop, FromSource::Handover(index, handover)).await {
                    return;
                }
                continue;
            }
            Ok(SourceEvent::End) => {
                reading(false);
                send(tx, &mut stop, FromSource::End(index)).await;
                return;
            }
            Err(e) => {
                send(tx, &mut stop, FromSource::Failed(index, e)).await;
                return;
            }
        };
        reading(true);
        let message = FromSource::Batch {
            source: index,
            seq,
            split,
            rows,
            position: source.position(),
        };
        seq += 1;
        if !send(tx, &mut stop, message).await {
            return;
        }
    }
}

/// How readiness names sink `i` of a query: its sink, then its late-event sinks, then its
/// dead letters.
fn sink_component(i: usize, late_outputs: usize) -> String {
    match i {
        0 => "sink".into(),
        i if i <= late_outputs => "late events sink".into(),
        _ => "dead letters".into(),
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
            ToSink::CommittedEpoch(query, reply) => {
                let _ = reply.send(sink.committed_epoch(&query).await);
            }
            ToSink::Restore(position) => sink.restore(position).await?,
            ToSink::PreCommit(reply) => {
                unflushed = false;
                let _ = reply.send(sink.pre_commit().await);
            }
            ToSink::Commit(epoch) => sink.commit(epoch).await?,
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
