//! [`Checkpointer`]: when a running query checkpoints, what goes in, and restoring it.
//!
//! The graph runs on one thread, so a checkpoint taken between two messages is consistent
//! without barriers: the state reflects exactly the batches up to each source's recorded
//! position. A checkpoint waits until every source is at a position it can resume from
//! ([`crate::connector::Source::position`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{CheckpointReport, GraphExecutor, QueryMetrics};
use crate::checkpoint::{
    Checkpoint, Manifest, MetricsManifest, NodeSnapshot, QueryCheckpoints, Restored,
    SourceManifest, StateConfig, StateLease, now_ms, process_name,
};
use crate::connector::{Delivered, SourcePosition};
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// How long checkpoints may wait for a source to reach a position before it is logged.
const WAIT_WARNING: Duration = Duration::from_secs(60);

/// The checkpoint side of a running query.
pub(super) struct Checkpointer {
    store: QueryCheckpoints,
    /// Taken at the start; a process that lost it to another stops writing the state.
    lease: StateLease,
    config: StateConfig,
    fingerprint: String,
    source_names: Vec<String>,
    /// Per source: its entry in the query's delivery reports, advanced by checkpoints.
    delivered: Vec<Arc<Delivered>>,
    /// Per source: where it stands after the last batch the graph took (`None` while it
    /// cannot say), and that batch's sequence number.
    positions: Vec<Option<SourcePosition>>,
    taken: Vec<Option<u64>>,
    next_epoch: u64,
    last: Instant,
    /// Since when a due checkpoint waits for a source; logged once after [`WAIT_WARNING`].
    waiting: Option<(Instant, bool)>,
    /// The query resumed from a checkpoint (rather than starting afresh).
    pub restored: bool,
}

/// Where each source and sink resumes, after [`Checkpointer::restore`].
pub(super) struct Resumption {
    /// Per source; `None` starts it as configured.
    pub sources: Vec<Option<SourcePosition>>,
    /// Per sink; `None` when the query starts afresh.
    pub sinks: Option<Vec<Option<u64>>>,
}

impl Checkpointer {
    pub(super) fn new(
        config: StateConfig,
        query: &str,
        fingerprint: String,
        source_names: Vec<String>,
        delivered: Vec<Arc<Delivered>>,
    ) -> Self {
        let sources = source_names.len();
        Self {
            store: QueryCheckpoints::new(&config.location, query),
            lease: StateLease::of_query(&config.location, query, &process_name()),
            config,
            fingerprint,
            source_names,
            delivered,
            positions: vec![Some(SourcePosition::default()); sources],
            taken: vec![None; sources],
            next_epoch: 1,
            last: Instant::now(),
            waiting: None,
            restored: false,
        }
    }

    /// The query's name.
    pub(super) fn query(&self) -> &str {
        self.store.query()
    }

    /// Loads the newest usable checkpoint into `executor` (or, with `reset`, deletes them
    /// all) and says where sources and sinks resume. With `committed`, a sink committed its
    /// output up to that epoch only: newer epochs are passed over (their output was never
    /// committed), and new epochs are numbered past it.
    pub(super) async fn restore(
        &mut self,
        executor: &mut GraphExecutor,
        metrics: &QueryMetrics,
        committed: Option<u64>,
    ) -> Result<Resumption> {
        let fresh = Resumption {
            sources: vec![None; self.source_names.len()],
            sinks: None,
        };
        // From now on another process running the query with this state stops.
        self.lease.renew().await?;
        let newest = self.store.epochs().await?.last().copied().unwrap_or(0);
        self.next_epoch = newest.max(committed.unwrap_or(0)) + 1;
        if self.config.reset {
            self.store.clear().await?;
            tracing::info!(checkpoints = %self.store.describe(), "state reset: checkpoints deleted");
            return Ok(fresh);
        }
        if let Some(committed) = committed.filter(|c| *c < newest) {
            tracing::info!(
                committed,
                newest,
                "resuming from the last checkpoint whose output was committed"
            );
            // Their output was never committed: they must not push the committed one out
            // of the epochs kept.
            self.store.delete_after(committed).await?;
        }
        let loaded = self.store.load_latest_at_most(committed).await?;
        for (epoch, why) in &loaded.skipped {
            let used = loaded.restored.as_ref().map(|r| r.manifest.epoch);
            tracing::warn!(epoch, error = %why, ?used, "checkpoint damaged: using the one before");
        }
        let Some(restored) = loaded.restored else {
            return Ok(fresh);
        };
        self.check(&restored)?;
        let Restored { manifest, nodes } = restored;
        executor.restore(nodes)?;
        restore_metrics(metrics, &manifest.metrics);
        metrics.set_checkpoint(CheckpointReport::restored(manifest.epoch));
        tracing::info!(
            epoch = manifest.epoch,
            checkpoints = %self.store.describe(),
            "state restored from a checkpoint"
        );
        self.restored = true;
        let sources: Vec<Option<SourcePosition>> = manifest
            .sources
            .into_iter()
            .map(|s| Some(SourcePosition { splits: s.position }))
            .collect();
        self.positions = sources.clone();
        Ok(Resumption {
            sources,
            sinks: Some(manifest.sinks),
        })
    }

    /// Refuses a checkpoint of another plan.
    fn check(&self, restored: &Restored) -> Result<()> {
        let manifest = &restored.manifest;
        if !manifest.fits(&self.fingerprint, &self.source_names) {
            return Err(other_plan(&self.store, manifest));
        }
        Ok(())
    }

    /// Time between two checkpoints.
    pub(super) fn interval(&self) -> Duration {
        self.config.interval
    }

    /// The graph took batch `seq` of `source`, after which the source stands at `position`.
    pub(super) fn took(&mut self, source: usize, seq: u64, position: Option<SourcePosition>) {
        self.positions[source] = position;
        self.taken[source] = Some(seq);
    }

    /// True when the interval has passed and every source can resume where it stands.
    pub(super) fn due(&mut self) -> bool {
        if self.last.elapsed() < self.config.interval {
            return false;
        }
        self.ready()
    }

    /// True when every source stands at a position it can resume from.
    pub(super) fn ready(&mut self) -> bool {
        let blocked = self.positions.iter().position(Option::is_none);
        let Some(source) = blocked else {
            self.waiting = None;
            return true;
        };
        let (since, warned) = self.waiting.get_or_insert((Instant::now(), false));
        if !*warned && since.elapsed() >= WAIT_WARNING {
            *warned = true;
            tracing::warn!(
                source = %self.source_names[source],
                "checkpoints wait for this source to reach a position it can resume from"
            );
        }
        false
    }

    /// Gathers a checkpoint of the graph's state `nodes` and the sinks' `sinks` positions.
    pub(super) fn checkpoint(
        &mut self,
        nodes: Vec<NodeSnapshot>,
        sinks: Vec<Option<u64>>,
        watermark: Timestamp,
        metrics: &QueryMetrics,
    ) -> Checkpoint {
        let sources = self
            .source_names
            .iter()
            .zip(&self.positions)
            .map(|(name, position)| SourceManifest {
                name: name.clone(),
                position: position.clone().unwrap_or_default().splits,
            })
            .collect();
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        Checkpoint {
            epoch,
            fingerprint: self.fingerprint.clone(),
            nodes,
            sources,
            sinks,
            watermark,
            metrics: metrics_manifest(metrics),
            taken_at_ms: now_ms(),
        }
    }

    /// Writes `checkpoint`; once it is complete, the sources may acknowledge everything it
    /// covers. A failed write is logged and counted: the query goes on, and the next
    /// checkpoint covers the same input. An error when another process took the query's
    /// state over: this one must stop.
    pub(super) async fn save(
        &mut self,
        checkpoint: &Checkpoint,
        metrics: &QueryMetrics,
    ) -> Result<bool> {
        let started = Instant::now();
        self.last = started;
        self.check_lease().await?;
        let saved = match self.store.save(checkpoint).await {
            Ok(saved) => {
                let report = CheckpointReport {
                    epoch: saved.epoch,
                    taken_at_ms: checkpoint.taken_at_ms,
                    bytes: saved.bytes,
                    duration_ms: started.elapsed().as_millis() as u64,
                    restored: false,
                };
                metrics.set_checkpoint(report);
                for (delivered, taken) in self.delivered.iter().zip(&self.taken) {
                    // The end of input closes windows with no data to show for it: a later
                    // run without state may still see their events.
                    if checkpoint.watermark != crate::time::WATERMARK_MAX {
                        delivered.advance_watermark(checkpoint.watermark);
                    }
                    if let Some(seq) = taken {
                        delivered.advance(seq + 1);
                    }
                }
                true
            }
            Err(e) => {
                metrics.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(epoch = checkpoint.epoch, error = %e, "checkpoint failed; the next one covers its input");
                false
            }
        };
        Ok(saved)
    }

    /// Fails when another process took the query's state over since this one started.
    /// A lease that cannot be read is a failed checkpoint's business, not a reason to stop.
    async fn check_lease(&self) -> Result<()> {
        match self.lease.holder().await {
            Ok(Some(holder)) if holder != self.lease.owner() => Err(Error::State(format!(
                "another process ({holder}) started query '{}' with the same state dir and \
                 took its state over; this one stops so that only one writes it",
                self.store.query()
            ))),
            _ => Ok(()),
        }
    }
}

/// The error of a start on `store`'s checkpoint `manifest`, written by another plan.
pub(super) fn other_plan(store: &QueryCheckpoints, manifest: &Manifest) -> Error {
    Error::State(format!(
        "the checkpoint in {} (epoch {}) was written by a different plan of query '{}'; its \
         state cannot be used by this one. Start with --reset-state to drop it and read the \
         sources from their configured start",
        store.describe(),
        manifest.epoch,
        manifest.query
    ))
}

fn metrics_manifest(metrics: &QueryMetrics) -> MetricsManifest {
    let now = metrics.snapshot();
    MetricsManifest {
        events_in: now.events_in,
        rows_out: now.rows_out,
        dead_letters: now.dead_letters,
        row_errors: now.row_errors,
    }
}

fn restore_metrics(metrics: &QueryMetrics, saved: &MetricsManifest) {
    metrics.events_in.store(saved.events_in, Ordering::Relaxed);
    metrics.rows_out.store(saved.rows_out, Ordering::Relaxed);
    metrics
        .dead_letters
        .store(saved.dead_letters, Ordering::Relaxed);
    metrics
        .row_errors
        .store(saved.row_errors, Ordering::Relaxed);
}
