//! [`SplitTasks`]: a query whose state is kept per split of its only source (see
//! [`crate::plan::OperatorGraph::split_local`]).
//!
//! Each split the source owns runs its own copy of the graph, checkpointed on its own under
//! `queries/<query>/splits/<split>/checkpoints`. When a consumer-group rebalance moves a
//! split, the process giving it up checkpoints it before letting it go, and the process
//! getting it loads that checkpoint before reading the split, from the offset the
//! checkpoint recorded. Processes sharing a state dir thus share the work and the state
//! of one query, and a split's results are those of one uninterrupted run.
//!
//! A [`StateLease`] orders the handover when the group hands a split on before its last
//! owner let it go: the next owner waits for the lease before it loads the checkpoint.
//!
//! A split's watermark is its own, as in Kafka Streams' per-partition tasks: a window of one
//! split closes when that split's event time passes its end, not the slowest split's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::checkpointer::other_plan;
use super::{CheckpointReport, GraphExecutor, OperatorStats, QueryMetrics};
use crate::batch::{ChangeBatch, RejectedRows};
use crate::checkpoint::{
    Checkpoint, MetricsManifest, QueryCheckpoints, SourceManifest, StateConfig, StateLease,
    StateLocation, now_ms,
};
use crate::connector::{Delivered, SourcePosition, SplitStatus};
use crate::error::{Error, Result};
use crate::operators::Message;
use crate::time::{Timestamp, WATERMARK_MAX, WATERMARK_MIN};

/// What the graph copies emitted, tagged with the output index.
type Emitted = Vec<(usize, Message)>;

/// The least time a split's lease must go unrenewed before another process takes it from
/// a holder that never released it (killed); it is also three checkpoint intervals.
const LEASE_STALE_MIN: Duration = Duration::from_secs(5);

/// The graph copies of the splits this process owns, and their checkpoints.
pub(super) struct SplitTasks {
    tasks: BTreeMap<u32, SplitTask>,
    location: StateLocation,
    interval: Duration,
    reset: bool,
    query: String,
    fingerprint: String,
    source: String,
    /// The source's delivery report, advanced by checkpoints.
    delivered: Arc<Delivered>,
    /// The source's last batch the copies took, by its count.
    taken: Option<u64>,
    last: Instant,
    /// This process, as leases name it.
    owner: String,
}

/// One split's copy of the graph.
struct SplitTask {
    executor: GraphExecutor,
    store: QueryCheckpoints,
    lease: StateLease,
    next_epoch: u64,
    /// The offset after the last batch taken, or where the restored checkpoint left the
    /// split; `None` before either, when there is nothing to checkpoint.
    offset: Option<i64>,
    events: u64,
}

impl SplitTasks {
    pub(super) fn new(
        config: &StateConfig,
        query: &str,
        fingerprint: String,
        source: String,
        delivered: Arc<Delivered>,
    ) -> Self {
        Self {
            tasks: BTreeMap::new(),
            location: config.location.clone(),
            interval: config.interval,
            reset: config.reset,
            query: query.to_string(),
            fingerprint,
            source,
            delivered,
            taken: None,
            last: Instant::now(),
            owner: crate::checkpoint::process_name(),
        }
    }

    /// Before the source starts: with `--reset-state`, deletes every split's checkpoints.
    pub(super) async fn begin(&self) -> Result<()> {
        if !self.reset {
            return Ok(());
        }
        for split in QueryCheckpoints::splits(&self.location, &self.query).await? {
            QueryCheckpoints::of_split(&self.location, &self.query, split)
                .clear()
                .await?;
        }
        tracing::info!(query = %self.query, "state reset: every split's checkpoints deleted");
        Ok(())
    }

    /// Takes on `splits`: each gets a copy of `template` holding its last checkpoint, if
    /// it has one. Returns where to read each split that had one.
    pub(super) async fn assign(
        &mut self,
        template: &GraphExecutor,
        splits: &[u32],
        metrics: &QueryMetrics,
    ) -> Result<BTreeMap<u32, i64>> {
        let mut offsets = BTreeMap::new();
        for &split in splits {
            if !self.tasks.contains_key(&split) {
                let task = self.load(template, split, metrics).await?;
                self.tasks.insert(split, task);
            }
            if let Some(offset) = self.tasks[&split].offset {
                offsets.insert(split, offset);
            }
        }
        tracing::info!(query = %self.query, ?splits, ?offsets, "splits taken on");
        Ok(offsets)
    }

    /// A copy of `template` for `split`, with the newest usable checkpoint of the split.
    async fn load(
        &self,
        template: &GraphExecutor,
        split: u32,
        metrics: &QueryMetrics,
    ) -> Result<SplitTask> {
        let lease = StateLease::of_split(&self.location, &self.query, split, &self.owner);
        let stale_after = (3 * self.interval).max(LEASE_STALE_MIN);
        if let Some(holder) = lease.acquire(stale_after).await? {
            tracing::info!(split, %holder, "the split's last holder handed it over");
        }
        let store = QueryCheckpoints::of_split(&self.location, &self.query, split);
        let newest = store.epochs().await?.last().copied().unwrap_or(0);
        let mut task = SplitTask {
            executor: template.new_instance()?,
            store,
            lease,
            next_epoch: newest + 1,
            offset: None,
            events: 0,
        };
        let loaded = task.store.load_latest().await?;
        for (epoch, why) in &loaded.skipped {
            tracing::warn!(split, epoch, error = %why, "checkpoint damaged: using the one before");
        }
        let Some(restored) = loaded.restored else {
            return Ok(task);
        };
        let manifest = &restored.manifest;
        if !manifest.fits(&self.fingerprint, std::slice::from_ref(&self.source)) {
            return Err(other_plan(&task.store, manifest));
        }
        task.offset = manifest.sources[0].position.get(&split).copied();
        task.events = manifest.metrics.events_in;
        metrics.set_checkpoint(CheckpointReport::restored(manifest.epoch));
        tracing::info!(
            split,
            epoch = manifest.epoch,
            "split state restored from a checkpoint"
        );
        task.executor.restore(restored.nodes)?;
        Ok(task)
    }

    /// Lets `splits` go, releasing their leases; checkpoint them first.
    pub(super) async fn revoke(&mut self, splits: &[u32]) {
        for split in splits {
            if let Some(task) = self.tasks.remove(split) {
                task.release(*split).await;
            }
        }
        tracing::info!(query = %self.query, ?splits, "splits handed over");
    }

    /// Lets every split go as the query stops; checkpoint them first.
    pub(super) async fn release_all(&mut self) {
        for (split, task) in std::mem::take(&mut self.tasks) {
            task.release(split).await;
        }
    }

    /// Runs the source's `seq`-th batch, rows of `split`, through the split's copy; the
    /// source stands at `position` after it.
    pub(super) fn push_batch(
        &mut self,
        split: u32,
        seq: u64,
        rows: ChangeBatch,
        position: Option<&SourcePosition>,
    ) -> Result<Emitted> {
        let Some(task) = self.tasks.get_mut(&split) else {
            return Err(Error::Internal(format!(
                "rows of split {split} arrived before the split was handed to the query"
            )));
        };
        task.events += rows.num_rows() as u64;
        let emitted = task.executor.push_split_batch(0, split, rows)?;
        if let Some(offset) = position.and_then(|p| p.splits.get(&split)) {
            task.offset = Some(*offset);
        }
        self.taken = Some(seq);
        Ok(emitted)
    }

    /// Tells each copy how its split stands.
    pub(super) fn push_status(&mut self, status: &SplitStatus) -> Result<Emitted> {
        let mut emitted = Vec::new();
        for (split, task) in &mut self.tasks {
            let own = SplitStatus {
                active: status
                    .active
                    .iter()
                    .filter(|s| *s == split)
                    .copied()
                    .collect(),
                idle: status
                    .idle
                    .iter()
                    .filter(|s| *s == split)
                    .copied()
                    .collect(),
                quiet_for: status.quiet_for,
            };
            emitted.extend(task.executor.push_split_status(0, &own)?);
        }
        Ok(emitted)
    }

    /// The wall clock reads `now`: every copy hears it (see [`GraphExecutor::on_clock`]).
    pub(super) fn on_clock(&mut self, now: std::time::Instant) -> Result<Emitted> {
        let mut emitted = Vec::new();
        for task in self.tasks.values_mut() {
            emitted.extend(task.executor.on_clock(now)?);
        }
        Ok(emitted)
    }

    /// The source ended: every copy's input ends.
    pub(super) fn end(&mut self) -> Result<Emitted> {
        let mut emitted = Vec::new();
        for task in self.tasks.values_mut() {
            emitted.extend(task.executor.end_source(0)?);
        }
        Ok(emitted)
    }

    /// True when the checkpoint interval has passed.
    pub(super) fn due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// Checkpoints every split that has something to resume from; once all are written,
    /// the source may acknowledge what they cover. A failure is logged and counted: the
    /// next checkpoint covers the same input.
    pub(super) async fn checkpoint(&mut self, metrics: &QueryMetrics) -> bool {
        let started = Instant::now();
        self.last = started;
        let taken_at_ms = now_ms();
        let (mut bytes, mut epoch) = (0, 0);
        for (split, task) in &mut self.tasks {
            let Some(offset) = task.offset else { continue };
            if let Some(holder) = task.taken_over(&self.owner).await {
                tracing::warn!(split, %holder, "another process took this split over; not checkpointing it");
                continue;
            }
            match task
                .save(*split, offset, &self.fingerprint, &self.source)
                .await
            {
                Ok(saved) => {
                    bytes += saved.bytes;
                    epoch = epoch.max(saved.epoch);
                }
                Err(e) => {
                    metrics.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(split, error = %e, "checkpoint failed; the next one covers its input");
                    return false;
                }
            }
        }
        metrics.set_checkpoint(CheckpointReport {
            epoch,
            taken_at_ms,
            bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            restored: false,
        });
        let watermark = self.output_watermark();
        if watermark != WATERMARK_MAX {
            self.delivered.advance_watermark(watermark);
        }
        if let Some(seq) = self.taken {
            self.delivered.advance(seq + 1);
        }
        true
    }

    /// The lowest output watermark over the splits.
    pub(super) fn output_watermark(&self) -> Timestamp {
        let marks = self.tasks.values().map(|t| t.executor.output_watermark(0));
        marks.min().unwrap_or(WATERMARK_MIN)
    }

    /// Rows the copies' operators rejected since the last call.
    pub(super) fn take_rejected(&mut self) -> Vec<RejectedRows> {
        let tasks = self.tasks.values_mut();
        tasks.flat_map(|t| t.executor.take_rejected()).collect()
    }

    /// The operators' counters summed over the copies (`template`'s before any).
    pub(super) fn refresh_stats(&self, template: &GraphExecutor, stats: &mut [OperatorStats]) {
        let mut tasks = self.tasks.values();
        match tasks.next() {
            Some(first) => first.executor.refresh_stats(stats),
            None => template.refresh_stats(stats),
        }
        for task in tasks {
            task.executor.add_stats(stats);
        }
    }
}

impl SplitTask {
    /// Writes the split's checkpoint, with the source at `offset`, and renews its lease.
    async fn save(
        &mut self,
        split: u32,
        offset: i64,
        fingerprint: &str,
        source: &str,
    ) -> Result<crate::checkpoint::SavedCheckpoint> {
        let checkpoint = self.checkpoint(split, offset, fingerprint, source)?;
        let saved = self.store.save(&checkpoint).await?;
        self.lease.renew().await?;
        Ok(saved)
    }

    /// The other process holding the split's lease, if one took it over (this one was
    /// too slow to see a rebalance). Unreadable, the lease is taken as still ours.
    async fn taken_over(&self, owner: &str) -> Option<String> {
        let holder = self.lease.holder().await.ok().flatten();
        holder.filter(|h| h != owner)
    }

    /// Releases the split's lease; a failure is logged, and the next owner waits for the
    /// lease to go stale.
    async fn release(&self, split: u32) {
        if let Err(e) = self.lease.release().await {
            tracing::warn!(split, error = %e, "cannot release the split's lease");
        }
    }

    /// The split's state, with the source at `offset`.
    fn checkpoint(
        &mut self,
        split: u32,
        offset: i64,
        fingerprint: &str,
        source: &str,
    ) -> Result<Checkpoint> {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        Ok(Checkpoint {
            epoch,
            fingerprint: fingerprint.to_string(),
            nodes: self.executor.snapshot()?,
            sources: vec![SourceManifest {
                name: source.to_string(),
                position: BTreeMap::from([(split, offset)]),
            }],
            sinks: Vec::new(),
            watermark: self.executor.output_watermark(0),
            metrics: MetricsManifest {
                events_in: self.events,
                ..MetricsManifest::default()
            },
            taken_at_ms: now_ms(),
        })
    }
}
