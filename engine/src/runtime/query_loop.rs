//! [`QueryLoop`]: the graph side of a running query. It takes source events, runs them through
//! the operator graph and hands the output to the sink tasks; a ticker asks the sinks to
//! confirm delivery and refreshes the operator stats.
//!
//! Every way out, the end of input, a stop, a failed source, operator or sink, goes through
//! one [`QueryLoop::shutdown`]: the sinks flush what they received and confirm it (only when
//! nothing failed, so that no source acknowledges input whose results may be incomplete:
//! after a failure the input is read again), the sources learn what was delivered and are
//! stopped, every task is joined, and the first error is the query's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::checkpointer::Checkpointer;
use super::delivery::{CatchUp, DeliveryTracker};
use super::rejections::Rejections;
use super::split_tasks::SplitTasks;
use super::{DELIVERY_INTERVAL, FromSource, GraphExecutor, QueryMetrics, StopHandle, ToSink};

use crate::batch::ChangeBatch;
use crate::connector::{ConnectorError, Handover, SourcePosition, SplitChange};
use crate::error::{Error, Result};
use crate::operators::Message;

/// Where a sink task answers a request of the loop.
type Reply<T> = tokio::sync::oneshot::Sender<std::result::Result<T, ConnectorError>>;

/// Whether the loop goes on after an event.
enum Flow {
    Continue,
    /// Every source ended, or the output did (a reached LIMIT).
    Done,
}

/// The graph, the channels to the sinks and the bookkeeping between them.
pub(super) struct QueryLoop {
    pub executor: GraphExecutor,
    pub metrics: Arc<QueryMetrics>,
    pub source_names: Vec<String>,
    /// Whether the main output is a changelog (its rows then carry `op`).
    pub updating: bool,
    /// The result sink first, then the late-event sinks, then the dead-letter sink.
    pub sinks: Vec<mpsc::Sender<ToSink>>,
    pub tracker: DeliveryTracker,
    pub rejections: Rejections,
    pub catch_up: CatchUp,
    /// Sources that have ended.
    pub ended: usize,
    /// A send found a sink task gone: its own error, when it has one, is the query's.
    pub sink_gone: bool,
    /// With a state dir: checkpoints, which then also decide what sources acknowledge.
    pub checkpoints: Option<Checkpointer>,
    /// With state kept per split: the graph copies that run the splits, `executor` being
    /// only their template (see [`SplitTasks`]).
    pub splits: Option<SplitTasks>,
    /// Per source, where to start it; sent once the checkpoints were looked at.
    pub starts: Vec<tokio::sync::oneshot::Sender<Option<SourcePosition>>>,
    /// Where sources with a `max_drift` learn the watermarks of the others.
    pub alignment: Option<Arc<super::alignment::Alignment>>,
}

/// The tasks a query loop waits for when it shuts down.
pub(super) struct Tasks {
    pub sources: Vec<JoinHandle<()>>,
    pub sinks: Vec<JoinHandle<std::result::Result<(), ConnectorError>>>,
    /// Stops the sources.
    pub stop: StopHandle,
}

impl QueryLoop {
    /// Runs until the input ends, the query is stopped (the source tasks end) or something
    /// fails; then shuts down.
    pub async fn run(mut self, mut events: mpsc::Receiver<FromSource>, tasks: Tasks) -> Result<()> {
        let outcome = match self.begin().await {
            Ok(()) => self.process(&mut events).await,
            Err(e) => Err(e),
        };
        self.shutdown(outcome, events, tasks).await
    }

    /// Restores the last checkpoint, if any, then starts the sources where it left them
    /// and tells the sinks where they stood.
    async fn begin(&mut self) -> Result<()> {
        let starts = std::mem::take(&mut self.starts);
        if let Some(splits) = &self.splits {
            // Splits bring their state as they are handed over.
            splits.begin().await?;
            for start in starts {
                let _ = start.send(None);
            }
            return Ok(());
        }
        let Some(checkpoints) = &mut self.checkpoints else {
            for start in starts {
                let _ = start.send(None);
            }
            return Ok(());
        };
        let query = checkpoints.query().to_string();
        let committed = self.committed_epoch(&query).await?;
        let checkpoints = self.checkpoints.as_mut().expect("checked above");
        let resumption = checkpoints
            .restore(&mut self.executor, &self.metrics, committed)
            .await?;
        if let Some(sinks) = resumption.sinks {
            for (index, position) in sinks.into_iter().enumerate().take(self.sinks.len()) {
                self.send(index, ToSink::Restore(position)).await?;
            }
        }
        for (start, position) in starts.into_iter().zip(resumption.sources) {
            let _ = start.send(position);
        }
        self.refresh_stats();
        Ok(())
    }

    /// The lowest epoch up to which a sink committed its output, if any sink commits at
    /// checkpoints.
    async fn committed_epoch(&mut self, query: &str) -> Result<Option<u64>> {
        let answers = self
            .ask_sinks(|reply| ToSink::CommittedEpoch(query.to_string(), reply))
            .await?;
        Ok(answers.into_iter().flatten().min())
    }

    /// Sends every sink the request `ask` makes around a reply channel, and waits for
    /// their answers, in sink order.
    async fn ask_sinks<T>(&mut self, ask: impl Fn(Reply<T>) -> ToSink) -> Result<Vec<T>> {
        let mut answers = Vec::with_capacity(self.sinks.len());
        for index in 0..self.sinks.len() {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.send(index, ask(reply)).await?;
            answers.push(answer);
        }
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            let Ok(answer) = answer.await else {
                self.sink_gone = true;
                return Err(Error::Execution("a sink task stopped".into()));
            };
            out.push(answer?);
        }
        Ok(out)
    }

    /// Whether the state was restored rather than rebuilt from the input. State kept per
    /// split counts as restored: other processes may hold some of it.
    fn restored(&self) -> bool {
        self.splits.is_some() || self.checkpoints.as_ref().is_some_and(|c| c.restored)
    }

    async fn process(&mut self, events: &mut mpsc::Receiver<FromSource>) -> Result<()> {
        let period = match (&self.checkpoints, &self.splits) {
            (Some(checkpoints), _) => checkpoints.interval().min(DELIVERY_INTERVAL),
            (None, Some(splits)) => splits.interval().min(DELIVERY_INTERVAL),
            (None, None) => DELIVERY_INTERVAL,
        };
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => {
                    // Every source task is gone: stopped.
                    let Some(event) = event else { return Ok(()) };
                    if let Flow::Done = self.on_event(event).await? {
                        return Ok(());
                    }
                }
                _ = ticker.tick() => self.on_tick().await?,
            }
        }
    }

    /// Runs one source event through the graph and sends what comes out.
    async fn on_event(&mut self, event: FromSource) -> Result<Flow> {
        let source = event.source();
        let emitted = match event {
            FromSource::Batch {
                source,
                seq,
                split,
                rows,
                position,
            } => {
                let emitted = self.take_batch(source, seq, split, rows, position)?;
                if let Some(alignment) = &self.alignment {
                    alignment.publish(source, self.executor.source_watermark(source));
                }
                emitted
            }
            FromSource::Splits(source, status) => match &mut self.splits {
                Some(splits) => splits.push_status(&status)?,
                None => self.executor.push_split_status(source, &status)?,
            },
            FromSource::Handover(_, handover) => {
                self.hand_over(handover).await?;
                Vec::new()
            }
            // Restored state knows exactly which windows were emitted.
            FromSource::Resume(..) if self.restored() => Vec::new(),
            FromSource::Resume(source, emitted_until) => {
                tracing::info!(
                    source = %self.source_names[source],
                    emitted_until = ?crate::time::format_rfc3339(emitted_until),
                    "resuming: windows up to here were delivered by an earlier run"
                );
                self.executor.resume(emitted_until);
                Vec::new()
            }
            FromSource::CaughtUp(source) => {
                self.catch_up.caught_up(source);
                Vec::new()
            }
            FromSource::End(source) => {
                self.ended += 1;
                self.catch_up.caught_up(source);
                match &mut self.splits {
                    Some(splits) => splits.end()?,
                    None => self.executor.end_source(source)?,
                }
            }
            FromSource::Failed(source, e) => {
                let name = &self.source_names[source];
                return Err(Error::Execution(format!("source '{name}': {e}")));
            }
        };
        self.forward(emitted).await?;
        // After the rows the last catching-up batch produced, so the sink has seen them.
        // Restored state was not rebuilt from the input: the sink keeps what it holds.
        if self.catch_up.take_complete() && !self.restored() {
            self.send(0, ToSink::CaughtUp).await?;
        }
        self.send_rejected(source).await?;
        let watermark = self.output_watermark();
        self.metrics.watermark.store(watermark, Ordering::Relaxed);
        let done = self.ended == self.executor.source_count() || self.executor.output_ended(0);
        Ok(if done { Flow::Done } else { Flow::Continue })
    }

    /// Runs the `seq`-th batch of `source` (from `split`) through the graph, or through
    /// its split's copy, and notes where the source stands after it.
    fn take_batch(
        &mut self,
        source: usize,
        seq: u64,
        split: Option<u32>,
        rows: RecordBatch,
        position: Option<SourcePosition>,
    ) -> Result<Vec<(usize, Message)>> {
        self.metrics
            .events_in
            .fetch_add(rows.num_rows() as u64, Ordering::Relaxed);
        let batch = ChangeBatch::from_source(rows)?;
        if let Some(splits) = &mut self.splits {
            let split = split.ok_or_else(|| {
                Error::Internal("state per split needs a source with splits".into())
            })?;
            return splits.push_batch(split, seq, batch, position.as_ref());
        }
        let emitted = match split {
            Some(split) => self.executor.push_split_batch(source, split, batch)?,
            None => self.executor.push_source(source, Message::Batch(batch))?,
        };
        match &mut self.checkpoints {
            Some(checkpoints) => checkpoints.took(source, seq, position),
            None => self.tracker.pushed(source, self.executor.epoch(), seq),
        }
        Ok(emitted)
    }

    /// Splits come or go: the ones coming get their state, from where the source reads
    /// them; the ones going are checkpointed (with every other, so that what the source
    /// acknowledges stays covered) and dropped. Answered once done.
    async fn hand_over(&mut self, handover: Handover) -> Result<()> {
        let Handover { change, reply } = handover;
        let offsets = match (&change, &mut self.splits) {
            (_, None) => Default::default(),
            (SplitChange::Assigned(assigned), Some(splits)) => {
                splits
                    .assign(&self.executor, assigned, &self.metrics)
                    .await?
            }
            (SplitChange::Revoked(revoked), Some(_)) => {
                self.checkpoint().await?;
                self.splits.as_mut().expect("matched").revoke(revoked).await;
                Default::default()
            }
        };
        let _ = reply.send(offsets);
        self.refresh_stats();
        Ok(())
    }

    /// The query's output watermark: with splits, the lowest of theirs.
    fn output_watermark(&self) -> crate::time::Timestamp {
        match &self.splits {
            Some(splits) => splits.output_watermark(),
            None => self.executor.output_watermark(0),
        }
    }

    /// Tells the graph the time, asks the sinks to confirm what they have, and refreshes
    /// the operator stats.
    async fn on_tick(&mut self) -> Result<()> {
        let now = std::time::Instant::now();
        let emitted = match &mut self.splits {
            Some(splits) => splits.on_clock(now)?,
            None => self.executor.on_clock(now)?,
        };
        self.forward(emitted).await?;
        self.refresh_stats();
        if let Some(due) = self.splits.as_ref().map(SplitTasks::due) {
            return if due { self.checkpoint().await } else { Ok(()) };
        }
        if let Some(checkpoints) = &mut self.checkpoints {
            if checkpoints.due() {
                self.checkpoint().await?;
            }
            return Ok(());
        }
        self.tracker.report();
        self.ask_confirmation(false).await
    }

    /// Takes a checkpoint: the graph's state, then each sink's pre-commit; once it is
    /// written, the sinks commit and the sources may acknowledge what it covers.
    async fn checkpoint(&mut self) -> Result<()> {
        if self.splits.is_some() {
            // Sinks written by several processes commit nothing: they only flush.
            self.ask_sinks(ToSink::PreCommit).await?;
            let splits = self.splits.as_mut().expect("checked");
            splits.checkpoint(&self.metrics).await;
            return Ok(());
        }
        let nodes = self.executor.snapshot()?;
        let positions = self.ask_sinks(ToSink::PreCommit).await?;
        let watermark = self.executor.output_watermark(0);
        let checkpoints = self.checkpoints.as_mut().expect("checkpointing");
        let checkpoint = checkpoints.checkpoint(nodes, positions, watermark, &self.metrics);
        if checkpoints.save(&checkpoint, &self.metrics).await? {
            for index in 0..self.sinks.len() {
                self.send(index, ToSink::Commit(checkpoint.epoch)).await?;
            }
        }
        Ok(())
    }

    async fn ask_confirmation(&mut self, last: bool) -> Result<()> {
        let asked = self.tracker.ask(
            self.executor.epoch(),
            self.executor.output_watermark(0),
            self.executor.retained_epoch(),
            last,
        );
        if let Some(number) = asked {
            for index in 0..self.sinks.len() {
                self.send(index, ToSink::Confirm(number)).await?;
            }
        }
        Ok(())
    }

    fn refresh_stats(&self) {
        self.metrics.update_operators(|stats| match &self.splits {
            Some(splits) => splits.refresh_stats(&self.executor, stats),
            None => self.executor.refresh_stats(stats),
        });
    }

    /// Sends the graph's output batches to their sinks.
    async fn forward(&mut self, emitted: Vec<(usize, Message)>) -> Result<()> {
        for (index, message) in emitted {
            if let Message::Batch(batch) = message {
                let rows = if index == 0 {
                    batch.into_output(self.updating)?
                } else {
                    batch.rows
                };
                self.send(index, ToSink::Rows(rows)).await?;
            }
        }
        Ok(())
    }

    /// Counts the rows operators rejected while handling `source`'s event, and sends them
    /// to the dead-letter sink.
    async fn send_rejected(&mut self, source: usize) -> Result<()> {
        let mut rejected = self.executor.take_rejected();
        if let Some(splits) = &mut self.splits {
            rejected.extend(splits.take_rejected());
        }
        if rejected.is_empty() {
            return Ok(());
        }
        let name = &self.source_names[source];
        let letters = self.rejections.take(rejected, name, &self.metrics)?;
        if let Some(index) = self.rejections.sink {
            for batch in letters {
                self.send(index, ToSink::Rows(batch)).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, sink: usize, message: ToSink) -> Result<()> {
        if self.sinks[sink].send(message).await.is_err() {
            self.sink_gone = true;
            return Err(Error::Execution("a sink task stopped".into()));
        }
        Ok(())
    }

    /// The last checkpoint, when one can be taken where the query stopped, or else the
    /// last delivery confirmation.
    async fn last_delivery(&mut self) -> Result<()> {
        if self.splits.is_some() {
            let checkpointed = self.checkpoint().await;
            // Whatever the last checkpoint did, the next owners may take the splits now.
            self.splits.as_mut().expect("checked").release_all().await;
            return checkpointed;
        }
        match self.checkpoints.as_mut().map(Checkpointer::ready) {
            Some(true) => self.checkpoint().await,
            Some(false) => Ok(()),
            None => self.ask_confirmation(true).await,
        }
    }

    /// Lets the sinks write out and confirm everything already emitted (unless something
    /// failed), tells the sources what they may acknowledge, and joins every task.
    async fn shutdown(
        mut self,
        outcome: Result<()>,
        events: mpsc::Receiver<FromSource>,
        tasks: Tasks,
    ) -> Result<()> {
        let mut failure = outcome.err();
        if failure.is_none()
            && let Err(e) = self.last_delivery().await
        {
            failure = Some(e);
        }
        self.refresh_stats();
        self.sinks.clear();
        for task in tasks.sinks {
            let result = match task.await {
                Ok(result) => result.map_err(Error::Connector),
                Err(e) => Err(Error::Execution(format!("sink task failed: {e}"))),
            };
            if let Err(e) = result {
                // Why the sink stopped says more than that it did.
                if failure.is_none() || std::mem::take(&mut self.sink_gone) {
                    failure = Some(e);
                }
            }
        }
        self.tracker.report();
        self.tracker.finish();
        // Only now, so that a source acknowledging its input as it closes (Kafka commits)
        // knows everything delivered. Sources blocked on a full channel see it close.
        tasks.stop.stop();
        drop(events);
        for task in tasks.sources {
            let _ = task.await;
        }
        failure.map_or(Ok(()), Err)
    }
}
