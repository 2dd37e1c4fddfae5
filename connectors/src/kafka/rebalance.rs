//! [`ReaderContext`]: the consumer's callbacks. Partition assignment sets start offsets,
//! revocation commits what is delivered and hands the partitions over.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use vigil_engine::connector::{Delivered, Handover, Health, SplitChange};
use vigil_engine::runtime::QueryMetrics;

use vigil_engine::time::Timestamp;

use super::StartFrom;
use super::dead_letter::DeadLetters;
use super::health;
use super::offsets::{OffsetLedger, PartitionId, split_id};
use super::progress::ProgressStore;

/// Sends a [`Handover`] to the query; false when it cannot (the query stops).
pub type Announce = Box<dyn Fn(Handover) -> bool + Send + Sync>;

/// State shared by the reader thread and the consumer's callbacks (which run inside `poll`
/// on the same thread, so the locks are never contended).
pub struct ReaderContext {
    /// The source's name, for logs.
    pub source: String,
    /// Topics read, by index.
    pub topics: Vec<String>,
    start: StartFrom,
    /// How far the query has delivered this source's batches.
    pub delivered: Arc<Delivered>,
    /// Where malformed messages go.
    pub dead_letters: Option<DeadLetters>,
    /// Counters of the query.
    pub metrics: Arc<QueryMetrics>,
    /// Whether the consumer reaches its brokers, for readiness.
    health: Health,
    ledger: Mutex<OffsetLedger>,
    /// Partitions started in this process, so `start` applies only to a first assignment.
    started: Mutex<HashSet<PartitionId>>,
    /// Where the watermark of delivered windows is saved with each commit.
    /// `None` without a consumer group: nothing is committed, nor resumed.
    progress: Option<ProgressStore>,
    /// Set at a first assignment from committed offsets when an earlier run saved a
    /// watermark: the windows it covers were delivered. Taken once by the reader.
    resume: Mutex<Option<Timestamp>>,
    /// Where a checkpoint left partitions: the offset to read from at their first
    /// assignment in this process.
    resume_offsets: BTreeMap<PartitionId, i64>,
    /// Partitions revoked since the reader last looked.
    revoked: Mutex<BTreeSet<PartitionId>>,
    /// Partitions whose read position had reached their end offset at the last statistics
    /// report: only these may go idle.
    caught_up: Mutex<BTreeSet<PartitionId>>,
    assignment_changed: AtomicBool,
    /// With state kept per partition: how partition changes are announced (see
    /// [`ReaderContext::hand_over`]).
    handover: Option<Announce>,
}

impl ReaderContext {
    /// The context of a reader of `topics`.
    pub fn new(
        source: String,
        topics: Vec<String>,
        start: StartFrom,
        delivered: Arc<Delivered>,
        dead_letters: Option<DeadLetters>,
        metrics: Arc<QueryMetrics>,
        progress: Option<ProgressStore>,
    ) -> Self {
        Self {
            health: Health::new(format!("source {source}"), Arc::clone(&metrics)),
            source,
            topics,
            start,
            delivered,
            dead_letters,
            metrics,
            ledger: Mutex::default(),
            started: Mutex::default(),
            progress,
            resume_offsets: BTreeMap::new(),
            resume: Mutex::default(),
            revoked: Mutex::default(),
            caught_up: Mutex::default(),
            assignment_changed: AtomicBool::new(false),
            handover: None,
        }
    }

    /// Announces partition changes with `handover` when the query keeps state per
    /// partition.
    pub fn handing_over(mut self, handover: Option<Announce>) -> Self {
        self.handover = handover;
        self
    }

    /// Tells the query that partitions come or go, and waits for its answer: for assigned
    /// partitions, where their checkpoints left them. Nothing to tell without state per
    /// partition.
    fn hand_over(&self, change: SplitChange) -> BTreeMap<u32, i64> {
        let Some(announce) = &self.handover else {
            return BTreeMap::new();
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !announce(Handover { change, reply }) {
            return BTreeMap::new();
        }
        // Dropped unanswered when the query stops.
        answer.blocking_recv().unwrap_or_default()
    }

    /// The ledger of batches sent and not yet committed.
    pub fn ledger(&self) -> MutexGuard<'_, OffsetLedger> {
        lock(&self.ledger)
    }

    /// True (once) after the assignment changed.
    pub fn take_assignment_changed(&self) -> bool {
        self.assignment_changed.swap(false, Ordering::AcqRel)
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> BTreeSet<PartitionId> {
        std::mem::take(&mut *lock(&self.revoked))
    }

    /// Whether `partition` had caught up with its end at the last statistics report.
    pub fn caught_up(&self, partition: PartitionId) -> bool {
        lock(&self.caught_up).contains(&partition)
    }

    /// The watermark an earlier run delivered windows up to, once, if there is one.
    pub fn take_resume(&self) -> Option<Timestamp> {
        lock(&self.resume).take()
    }

    /// At a first assignment from committed offsets: the watermark an earlier run saved for
    /// the partitions of `tpl` (the lowest), to resume from.
    pub fn read_resume_point(&self, tpl: &TopicPartitionList) {
        let Some(progress) = &self.progress else {
            return;
        };
        match progress.load(tpl) {
            Ok(Some(watermark)) => {
                let mut resume = lock(&self.resume);
                *resume = Some(resume.map_or(watermark, |r| r.min(watermark)));
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics.add_connector_error();
                tracing::warn!(source = %self.source, error = %e, "cannot read the saved watermark");
            }
        }
    }

    /// Reads partitions first assigned from where a checkpoint left them.
    pub fn resuming_at(mut self, offsets: BTreeMap<PartitionId, i64>) -> Self {
        self.resume_offsets = offsets;
        self
    }

    /// Where a checkpoint left `partition`, if it did.
    pub fn resume_offset(&self, partition: PartitionId) -> Option<i64> {
        self.resume_offsets.get(&partition).copied()
    }

    /// The index of `topic` among the source's topics.
    pub fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == topic)
    }

    /// Offsets for `partitions` where `start` says to begin: for partitions this process
    /// has not read before, the configured start; otherwise the committed offset. True when
    /// some partition is read for the first time from its committed offset: a resumption.
    pub fn start_offsets(&self, tpl: &mut TopicPartitionList) -> bool {
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let splits: Vec<u32> = self.partitions(tpl).into_iter().map(split_id).collect();
        let handed = self.hand_over(SplitChange::Assigned(splits));
        let mut started = lock(&self.started);
        let mut first_assigned = false;
        for (topic, partition) in assigned {
            let Some(index) = self.topic_index(&topic) else {
                continue;
            };
            let first_time = started.insert((index, partition));
            if first_time {
                first_assigned = true;
            }
            // Where the partition's own checkpoint left it, whoever wrote it.
            let handed = handed.get(&split_id((index, partition))).copied();
            let resumed = self.resume_offsets.get(&(index, partition)).copied();
            let offset = match (first_time, self.start) {
                _ if let Some(offset) = handed => Offset::Offset(offset),
                (true, _) if let Some(offset) = resumed => Offset::Offset(offset),
                (true, StartFrom::Earliest) => Offset::Beginning,
                (true, StartFrom::Latest) => Offset::End,
                // The committed offset; `auto.offset.reset` covers partitions without one.
                _ => Offset::Stored,
            };
            if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                tracing::error!(error = %e, topic, partition, "cannot set a start offset");
            }
        }
        first_assigned && self.start == StartFrom::Committed
    }

    /// Commits the offsets of every delivered batch: dead letters are flushed first, so a
    /// committed offset never skips a malformed message that was not stored.
    pub fn commit_delivered(&self, consumer: &BaseConsumer<ReaderContext>, mode: CommitMode) {
        let offsets = self.ledger().take_delivered(self.delivered.done());
        let Some(progress) = &self.progress else {
            // Without a group there is nowhere to commit: delivered offsets are only forgotten.
            return;
        };
        if offsets.is_empty() {
            return;
        }
        if let Some(dead_letters) = &self.dead_letters {
            dead_letters.flush();
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.topics[*topic], *partition, Offset::Offset(*offset))
            {
                tracing::error!(error = %e, "cannot list an offset to commit");
            }
        }
        // The delivered watermark first: saved ahead of its offsets, it can only be ahead.
        if let Err(e) = progress.save(&tpl, self.delivered.watermark()) {
            self.commit_failed(&e, &offsets);
            return;
        }
        if let Err(e) = consumer.commit(&tpl, mode) {
            self.commit_failed(&e, &offsets);
        }
    }

    fn commit_failed(&self, e: &KafkaError, offsets: &BTreeMap<PartitionId, i64>) {
        self.metrics.add_connector_error();
        tracing::warn!(
            source = %self.source, error = %e, ?offsets,
            "offset commit failed; the messages will be read again after a restart"
        );
    }

    /// The partitions of `tpl` that belong to the source's topics.
    pub fn partitions(&self, tpl: &TopicPartitionList) -> BTreeSet<PartitionId> {
        tpl.elements()
            .iter()
            .filter_map(|e| Some((self.topic_index(e.topic())?, e.partition())))
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Callbacks never panic while holding these locks; recover rather than poison the reader.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news for a bounded read, not an error.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        // librdkafka reconnects by itself; make the outage visible and keep going.
        self.metrics.add_connector_error();
        health::on_error(&self.health, &error, reason);
        tracing::warn!(source = %self.source, %error, reason, "Kafka client error, retrying");
    }

    /// librdkafka's periodic statistics (`statistics.interval.ms`): the consumer lag of the
    /// partitions this reader owns, and which of them have caught up with their end.
    fn stats(&self, statistics: Statistics) {
        health::on_statistics(&self.health, &statistics);
        let mut lags = Vec::new();
        let mut caught_up = BTreeSet::new();
        for (name, topic) in &statistics.topics {
            let Some(index) = self.topic_index(name) else {
                continue;
            };
            for p in topic.partitions.values() {
                if p.partition < 0 || !p.desired {
                    continue;
                }
                lags.extend(partition_lag(p.hi_offset, p.app_offset, p.committed_offset));
                if reached_end(p) {
                    caught_up.insert((index, p.partition));
                }
            }
        }
        *lock(&self.caught_up) = caught_up;
        // Unknown until some partition reports one.
        if !lags.is_empty() {
            self.metrics
                .set_consumer_lag(&self.source, lags.iter().sum());
        }
    }
}

/// Whether a partition's read position has reached the end offset its broker last reported:
/// the next offset handed to Vigil, else the committed one, else where fetching is. A
/// partition not fetched from yet has no known end and has not caught up; an empty one has.
fn reached_end(p: &rdkafka::statistics::Partition) -> bool {
    if p.hi_offset < 0 {
        return false;
    }
    let position = [p.app_offset, p.committed_offset, p.next_offset]
        .into_iter()
        .find(|offset| *offset >= 0);
    position.is_some_and(|position| position >= p.hi_offset) || p.lo_offset == p.hi_offset
}

/// Messages between a partition's read position and its high watermark. The position is
/// the next offset handed to Vigil, else the committed one; librdkafka reports an unknown
/// offset as negative, and then the lag is unknown.
fn partition_lag(high_watermark: i64, read: i64, committed: i64) -> Option<u64> {
    let position = if read >= 0 { read } else { committed };
    if high_watermark < 0 || position < 0 {
        return None;
    }
    Some(high_watermark.saturating_sub(position).max(0) as u64)
}

impl ConsumerContext for ReaderContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if self.start_offsets(tpl) {
                    self.read_resume_point(tpl);
                }
                tracing::info!(source = %self.source, partitions = ?self.partitions(tpl), "partitions assigned");
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(source = %self.source, ?err, "rebalance error");
                }
                // Hand over cleanly: the query checkpoints the partitions (when it keeps
                // state per partition), commit what is delivered, then forget them.
                let revoked = self.partitions(tpl);
                let splits = revoked.iter().copied().map(split_id).collect();
                self.hand_over(SplitChange::Revoked(splits));
                self.commit_delivered(consumer, CommitMode::Sync);
                tracing::info!(source = %self.source, partitions = ?revoked, "partitions revoked");
                self.ledger().forget(|p| revoked.contains(&p));
                lock(&self.revoked).extend(revoked);
                revoke(consumer, tpl, cooperative)
            }
        };
        if let Err(e) = result {
            self.metrics.add_connector_error();
            tracing::error!(source = %self.source, error = %e, "cannot apply a rebalance");
        }
        self.assignment_changed.store(true, Ordering::Release);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.metrics.add_connector_error();
            tracing::warn!(source = %self.source, error = %e, ?offsets, "offset commit failed");
        }
    }
}

fn revoke(
    consumer: &BaseConsumer<ReaderContext>,
    tpl: &TopicPartitionList,
    cooperative: bool,
) -> KafkaResult<()> {
    if cooperative {
        consumer.incremental_unassign(tpl)
    } else {
        consumer.unassign()
    }
}

#[cfg(test)]
mod tests {
    use super::partition_lag;

    #[test]
    fn lag_counts_from_the_read_position_else_the_committed_offset() {
        assert_eq!(partition_lag(100, 40, 10), Some(60));
        assert_eq!(partition_lag(100, -1001, 10), Some(90));
        assert_eq!(partition_lag(100, 100, 90), Some(0));
        // Nothing read or committed yet, or no high watermark: unknown.
        assert_eq!(partition_lag(100, -1001, -1001), None);
        assert_eq!(partition_lag(-1, 5, 5), None);
    }
}
