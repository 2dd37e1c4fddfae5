//! The reader thread of a Kafka source: polls a consumer, gathers messages per partition into
//! Arrow batches, reports which partitions are idle and commits delivered offsets.
//!
//! librdkafka hands messages out one by one; a dedicated thread takes them without a future
//! per message and hands whole batches to the query through a bounded channel, so a slow
//! query slows the reading instead of filling memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use vigil_engine::connector::{SourceContext, SplitStatus};

use super::KafkaSettings;
use super::batcher::{BadMessage, BatchLayout, PartitionBuffer};
use super::client::{METADATA_TIMEOUT, topic_partitions, unreachable};
use super::config::{CONSUMER_DEFAULTS, IdleAdvance, SourceConfig, StartFrom};
use super::dead_letter::DeadLetters;
use super::offsets::{PartitionId, split_id};
use super::progress::ProgressStore;
use super::rebalance::{Announce, ReaderContext};
use crate::ConnectorError;

/// What the reader hands to the source.
#[derive(Debug)]
pub enum ReaderEvent {
    /// Rows from one partition.
    Batch {
        /// The partition as a split id (see [`split_id`]).
        split: u32,
        /// The rows.
        rows: RecordBatch,
        /// The partition's offset after them.
        next_offset: i64,
    },
    /// Which partitions hold the watermark back.
    Splits(SplitStatus),
    /// Partitions come or go while the query keeps state per partition; the reader waits
    /// for the answer (see [`vigil_engine::connector::Handover`]).
    Handover(vigil_engine::connector::Handover),
    /// An earlier run delivered every window ending at or before this.
    Resume(vigil_engine::time::Timestamp),
    /// Every partition was read up to its end offset (sent once).
    CaughtUp,
    /// A bounded source read everything.
    End,
    /// The source cannot go on.
    Failed(ConnectorError),
}

/// How long one poll waits for a message.
const POLL: Duration = Duration::from_millis(50);
/// Longest a message waits in a partition buffer before its batch is sent.
const LINGER: Duration = Duration::from_millis(50);
/// How often idleness, assignment and bounded progress are checked.
const HOUSEKEEPING: Duration = Duration::from_millis(50);
/// How often delivered offsets are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a quiet source repeats its status, moving event time with the wall clock.
const QUIET_TICK: Duration = Duration::from_millis(200);
/// Least time between two logs of the same consumer error.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How the reader's callbacks tell the query of partitions that come or go: on the
/// reader's channel, unless the reader is stopping (the query checkpointed as it stopped).
fn announcer(tx: mpsc::Sender<ReaderEvent>, stop: Arc<AtomicBool>) -> Announce {
    Box::new(move |handover| {
        !stop.load(Ordering::Relaxed) && tx.blocking_send(ReaderEvent::Handover(handover)).is_ok()
    })
}

/// Everything a reader thread needs.
pub struct ReaderSetup {
    /// Brokers.
    pub settings: Arc<KafkaSettings>,
    /// The source's options.
    pub config: SourceConfig,
    /// The declared schema.
    pub schema: SchemaRef,
    /// The source's context in the query.
    pub ctx: SourceContext,
    /// Where a checkpoint left each partition: read from there when first assigned.
    pub resume: BTreeMap<PartitionId, i64>,
}

/// Runs a reader on a new thread. It stops when `stop` is set or the receiver is dropped,
/// commits what is delivered, leaves the group and then sends on `exited`.
pub fn spawn(
    setup: ReaderSetup,
    tx: mpsc::Sender<ReaderEvent>,
    stop: Arc<AtomicBool>,
    exited: tokio::sync::oneshot::Sender<()>,
) -> Result<(), ConnectorError> {
    let name = format!("kafka-{}", setup.ctx.name);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            match Reader::new(setup, tx.clone(), stop) {
                Ok(mut reader) => {
                    if let Err(e) = reader.run() {
                        let _ = tx.blocking_send(ReaderEvent::Failed(e));
                    }
                    reader.finish();
                }
                Err(e) => {
                    let _ = tx.blocking_send(ReaderEvent::Failed(e));
                }
            }
            let _ = exited.send(());
        })
        .map(|_| ())
        .map_err(|e| ConnectorError::io("cannot start the Kafka reader thread", e))
}

/// A partition this reader owns.
struct OwnedPartition {
    buffer: PartitionBuffer,
    /// When data last arrived, or when the partition was assigned.
    last_data: Instant,
    /// Bounded reads: the offset to stop before, and whether it was reached.
    end: Option<i64>,
    finished: bool,
}

impl OwnedPartition {
    fn new(partition: i32, end: Option<i64>) -> Self {
        Self {
            buffer: PartitionBuffer::new(partition),
            last_data: Instant::now(),
            end,
            finished: false,
        }
    }

    /// Whether messages were received and not yet sent on.
    fn has_pending(&self) -> bool {
        !self.buffer.is_empty()
    }
}

/// The consumer of a reader.
type Consumer = BaseConsumer<ReaderContext>;

/// The consumer, apart from the state its messages update, so a borrowed message can be
/// handled while the consumer is borrowed.
struct Reader {
    consumer: Consumer,
    state: State,
}

struct State {
    config: SourceConfig,
    settings: Arc<KafkaSettings>,
    layout: BatchLayout,
    batch_size: usize,
    tx: mpsc::Sender<ReaderEvent>,
    stop: Arc<AtomicBool>,
    partitions: BTreeMap<PartitionId, OwnedPartition>,
    /// When any partition last had data.
    last_data: Option<Instant>,
    last_status: Option<SplitStatus>,
    last_status_at: Instant,
    last_housekeeping: Instant,
    last_commit: Instant,
    last_error_log: Option<Instant>,
    /// Whether [`ReaderEvent::CaughtUp`] was sent.
    announced_caught_up: bool,
    /// The assignment changed since the status was last sent.
    assignment_news: bool,
}

/// The receiver is gone: the query is stopping.
struct Disconnected;

impl Reader {
    fn new(
        setup: ReaderSetup,
        tx: mpsc::Sender<ReaderEvent>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, ConnectorError> {
        let ReaderSetup {
            settings,
            config,
            schema,
            ctx,
            resume,
        } = setup;
        let dead_letters = config
            .dead_letter_topic
            .clone()
            .map(|topic| {
                DeadLetters::new(&settings, topic, ctx.name.clone(), Arc::clone(&ctx.metrics))
            })
            .transpose()?;
        let group = (config.group_id.as_ref()).map(|g| format!("{g}.{}.{}", ctx.query, ctx.name));
        let progress = group
            .as_ref()
            .map(|group| ProgressStore::new(&settings, group))
            .transpose()?;
        let context = ReaderContext::new(
            ctx.name.clone(),
            config.topics.clone(),
            config.start,
            Arc::clone(&ctx.delivered),
            dead_letters,
            Arc::clone(&ctx.metrics),
            progress,
        )
        .resuming_at(resume)
        .handing_over(
            ctx.split_state
                .then(|| announcer(tx.clone(), Arc::clone(&stop))),
        );
        let mut client = settings.client_config();
        for (name, value) in CONSUMER_DEFAULTS {
            client.set(name, value);
        }
        // librdkafka's `assign` wants a group id even when it joins no group: a name that
        // is never joined nor committed to.
        let direct = format!("vigil.direct.{}.{}", ctx.query, ctx.name);
        client.set("group.id", group.as_ref().unwrap_or(&direct));
        client
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Statistics feed the consumer-lag gauge (see `ReaderContext::stats`).
            .set("statistics.interval.ms", "1000")
            .set(
                "enable.partition.eof",
                if config.bounded { "true" } else { "false" },
            )
            .set(
                "auto.offset.reset",
                if config.start == StartFrom::Latest {
                    "latest"
                } else {
                    "earliest"
                },
            );
        for (name, value) in &config.properties {
            client.set(name, value);
        }
        let consumer: Consumer = client
            .create_with_context(context)
            .map_err(|e| ConnectorError::External(format!("Kafka consumer: {e}")))?;
        let now = Instant::now();
        Ok(Self {
            consumer,
            state: State {
                layout: BatchLayout::reading(
                    Arc::clone(&schema),
                    ctx.batch_size,
                    config.timestamp_unit,
                    &ctx.reads(schema.fields().len()),
                )
                .for_table(&ctx.table_key, config.timestamp_unit),
                batch_size: ctx.batch_size.max(1),
                config,
                settings,
                tx,
                stop,
                partitions: BTreeMap::new(),
                last_data: None,
                last_status: None,
                last_status_at: now,
                last_housekeeping: now,
                last_commit: now,
                last_error_log: None,
                announced_caught_up: false,
                assignment_news: false,
            },
        })
    }

    /// Reads until stopped, the receiver is gone, or a bounded read is complete.
    fn run(&mut self) -> Result<(), ConnectorError> {
        self.start()?;
        while !self.state.stop.load(Ordering::Relaxed) {
            let context = self.consumer.context();
            let polled = self.consumer.poll(POLL);
            self.state.follow_assignment(&self.consumer);
            let step = match polled {
                Some(Ok(message)) => self.state.on_message(&self.consumer, &message),
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.state.check_bounded_positions(&self.consumer)
                }
                Some(Err(e)) => {
                    self.state.consumer_error(context, &e);
                    Ok(())
                }
                None => self.state.flush_all(&self.consumer),
            };
            if step.and_then(|()| self.housekeeping()).is_err() {
                return Ok(());
            }
            if self.state.config.bounded && self.state.partitions.values().all(|p| p.finished) {
                if self.state.flush_all(&self.consumer).is_ok() {
                    let _ = self.state.tx.blocking_send(ReaderEvent::End);
                }
                self.linger_until_closed();
                return Ok(());
            }
        }
        Ok(())
    }

    /// A bounded read is complete: keeps serving the consumer's callbacks until the query
    /// has delivered what was read and closes the source, so that the final commit (in
    /// [`Reader::finish`]) covers every message.
    fn linger_until_closed(&mut self) {
        while !self.state.stop.load(Ordering::Relaxed) && !self.state.tx.is_closed() {
            // Every partition is finished: whatever a poll returns is past the end, ignored.
            let _ = self.consumer.poll(POLL);
        }
    }

    /// Checks the topics, then subscribes (or, bounded, assigns every partition).
    fn start(&mut self) -> Result<(), ConnectorError> {
        let config = &self.state.config;
        let brokers = self.state.settings.brokers.clone();
        let mut topics = config.topics.clone();
        topics.extend(config.dead_letter_topic.clone());
        let partitions = topic_partitions(self.consumer.client(), &brokers, &topics)?;
        if !config.bounded && config.group_id.is_some() {
            let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
            return self
                .consumer
                .subscribe(&topics)
                .map_err(|e| unreachable(&brokers, e));
        }
        // Bounded, or without a group: the source assigns its partitions itself.
        let mut assignment = TopicPartitionList::new();
        for (index, topic) in config.topics.iter().enumerate() {
            for partition in
                chosen_partitions(&partitions[index], config.partitions.as_deref(), topic)?
            {
                let owned = if config.bounded {
                    let (low, high) = self
                        .consumer
                        .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                        .map_err(|e| unreachable(&brokers, e))?;
                    tracing::debug!(topic, partition, low, high, "bounded read");
                    let mut owned = OwnedPartition::new(partition, Some(high));
                    let resumed = self.consumer.context().resume_offset((index, partition));
                    owned.finished = high <= low
                        || config.start == StartFrom::Latest
                        || resumed.is_some_and(|offset| offset >= high);
                    owned
                } else {
                    OwnedPartition::new(partition, None)
                };
                self.state.partitions.insert((index, partition), owned);
                assignment
                    .add_partition_offset(topic, partition, Offset::Invalid)
                    .map_err(|e| ConnectorError::External(e.to_string()))?;
            }
        }
        let context = self.consumer.context();
        if context.start_offsets(&mut assignment) {
            context.read_resume_point(&assignment);
        }
        if config.start == StartFrom::Committed {
            self.finish_committed_to_end(&assignment);
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| unreachable(&brokers, e))?;
        self.state
            .send_status(self.consumer.context(), true)
            .map_err(|_| stopped())
    }

    /// Bounded reads resuming from the group's offsets: a partition committed up to its end
    /// has nothing left to read, and no message will come to say so.
    fn finish_committed_to_end(&mut self, assignment: &TopicPartitionList) {
        let committed = match self
            .consumer
            .committed_offsets(assignment.clone(), METADATA_TIMEOUT)
        {
            Ok(committed) => committed,
            Err(e) => {
                let context = self.consumer.context();
                self.state.consumer_error(context, &e);
                return;
            }
        };
        let context = self.consumer.context();
        for element in committed.elements() {
            let Some(topic) = context.topic_index(element.topic()) else {
                continue;
            };
            if let (Some(owned), Offset::Offset(offset)) = (
                self.state.partitions.get_mut(&(topic, element.partition())),
                element.offset(),
            ) && owned.end.is_some_and(|end| offset >= end)
            {
                owned.finished = true;
            }
        }
    }

    /// Periodic work: assignment changes, lingering buffers, idleness, commits.
    fn housekeeping(&mut self) -> Result<(), Disconnected> {
        let now = Instant::now();
        if now.duration_since(self.state.last_housekeeping) < HOUSEKEEPING {
            return Ok(());
        }
        self.state.last_housekeeping = now;
        let context = self.consumer.context();
        self.state.follow_assignment(&self.consumer);
        let changed = std::mem::take(&mut self.state.assignment_news);
        self.state.flush_lingering(&self.consumer, now)?;
        if self.state.config.bounded {
            self.state.check_bounded_positions(&self.consumer)?;
        }
        self.state.send_status(context, changed)?;
        self.state.announce_caught_up(context)?;
        if now.duration_since(self.state.last_commit) >= COMMIT_INTERVAL {
            self.state.last_commit = now;
            context.commit_delivered(&self.consumer, CommitMode::Async);
        }
        Ok(())
    }

    /// Delivers the dead letters still queued, then commits what is delivered; the consumer
    /// leaves its group when dropped.
    fn finish(&mut self) {
        let context = self.consumer.context();
        if let Some(dead_letters) = &context.dead_letters {
            dead_letters.flush();
        }
        context.commit_delivered(&self.consumer, CommitMode::Sync);
    }
}

/// The partitions of `topic` to read: `chosen` (each must exist), or all of `existing`.
fn chosen_partitions(
    existing: &[i32],
    chosen: Option<&[i32]>,
    topic: &str,
) -> Result<Vec<i32>, ConnectorError> {
    let Some(chosen) = chosen else {
        return Ok(existing.to_vec());
    };
    match chosen.iter().find(|p| !existing.contains(p)) {
        Some(missing) => Err(ConnectorError::External(format!(
            "topic '{topic}' has no partition {missing} (it has {})",
            existing.len()
        ))),
        None => Ok(chosen.to_vec()),
    }
}

impl State {
    /// Applies a rebalance that ran inside the last poll at once, before anything is
    /// flushed: no batch of a partition may be sent after the query let it go.
    fn follow_assignment(&mut self, consumer: &Consumer) {
        if consumer.context().take_assignment_changed() {
            self.apply_assignment(consumer);
            self.assignment_news = true;
        }
    }

    /// Drops revoked partitions (their buffered messages are read again by the new owner)
    /// and starts tracking new ones.
    fn apply_assignment(&mut self, consumer: &Consumer) {
        let context = consumer.context();
        let revoked = context.take_revoked();
        self.partitions.retain(|id, _| !revoked.contains(id));
        match consumer.assignment() {
            Ok(assignment) => {
                let assigned = context.partitions(&assignment);
                self.partitions.retain(|id, _| assigned.contains(id));
                for id in assigned {
                    self.partitions
                        .entry(id)
                        .or_insert_with(|| OwnedPartition::new(id.1, None));
                }
            }
            Err(e) => self.consumer_error(context, &e),
        }
    }

    /// Bounded reads: a partition whose position reached its end offset is finished, even
    /// when the last offsets held no message (transaction markers, compaction).
    fn check_bounded_positions(&mut self, consumer: &Consumer) -> Result<(), Disconnected> {
        let context = consumer.context();
        if self.partitions.values().all(|p| p.finished) {
            return Ok(());
        }
        let positions = match consumer.position() {
            Ok(positions) => positions,
            Err(e) => {
                self.consumer_error(context, &e);
                return Ok(());
            }
        };
        let mut reached = Vec::new();
        for element in positions.elements() {
            let Some(topic) = context.topic_index(element.topic()) else {
                continue;
            };
            let id = (topic, element.partition());
            if let (Some(owned), Offset::Offset(position)) =
                (self.partitions.get(&id), element.offset())
                && !owned.finished
                && owned.end.is_some_and(|end| position >= end)
            {
                reached.push(id);
            }
        }
        for id in reached {
            if let Some(owned) = self.partitions.get_mut(&id) {
                owned.finished = true;
            }
            self.flush(consumer, id)?;
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        consumer: &Consumer,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), Disconnected> {
        let context = consumer.context();
        let Some(topic) = context.topic_index(message.topic()) else {
            return Ok(());
        };
        let id = (topic, message.partition());
        let now = Instant::now();
        let owned = self
            .partitions
            .entry(id)
            .or_insert_with(|| OwnedPartition::new(id.1, None));
        if owned.finished {
            return Ok(());
        }
        if let Some(end) = owned.end
            && message.offset() >= end
        {
            owned.finished = true;
            return self.flush(consumer, id);
        }
        owned.buffer.push(
            &self.layout,
            message.offset(),
            message.payload(),
            message.key(),
            message.timestamp().to_millis(),
        );
        owned.last_data = now;
        self.last_data = Some(now);
        let reached_end = owned.end.is_some_and(|end| message.offset() + 1 >= end);
        owned.finished |= reached_end;
        if reached_end || owned.buffer.len() >= self.batch_size {
            self.flush(consumer, id)?;
        }
        Ok(())
    }

    /// Decodes a partition's buffer and sends its rows; dead-letters what cannot be decoded.
    fn flush(&mut self, consumer: &Consumer, id: PartitionId) -> Result<(), Disconnected> {
        let context = consumer.context();
        let Some(owned) = self.partitions.get_mut(&id) else {
            return Ok(());
        };
        let Some(decoded) = owned.buffer.take(&self.layout) else {
            return Ok(());
        };
        for bad in &decoded.bad {
            dead_letter(context, id, bad);
        }
        if self.idle_with_pending() {
            self.send_status(context, false)?;
        }
        self.send_resume(context)?;
        context.ledger().record(id, decoded.next_offset);
        self.send(ReaderEvent::Batch {
            split: split_id(id),
            rows: decoded.rows,
            next_offset: decoded.next_offset,
        })
    }

    /// Once every owned partition has been read to its end and sent on (unbounded reads; a
    /// bounded one ends instead), tells the query so, once.
    fn announce_caught_up(&mut self, context: &ReaderContext) -> Result<(), Disconnected> {
        if self.announced_caught_up || self.config.bounded || self.partitions.is_empty() {
            return Ok(());
        }
        let caught_up = self
            .partitions
            .iter()
            .all(|(id, owned)| context.caught_up(*id) && !owned.has_pending());
        if caught_up {
            self.announced_caught_up = true;
            self.send(ReaderEvent::CaughtUp)?;
        }
        Ok(())
    }

    /// Tells the query where an earlier run left off, before the first batch after an
    /// assignment that resumed from committed offsets.
    fn send_resume(&self, context: &ReaderContext) -> Result<(), Disconnected> {
        match context.take_resume() {
            Some(watermark) => self.send(ReaderEvent::Resume(watermark)),
            None => Ok(()),
        }
    }

    fn flush_all(&mut self, consumer: &Consumer) -> Result<(), Disconnected> {
        self.flush_where(consumer, |p| p.has_pending())
    }

    fn flush_lingering(&mut self, consumer: &Consumer, now: Instant) -> Result<(), Disconnected> {
        self.flush_where(consumer, |p| {
            p.buffer.first_at().is_some_and(|t| now - t >= LINGER)
        })
    }

    /// Flushes the partitions whose state matches `select`.
    fn flush_where(
        &mut self,
        consumer: &Consumer,
        select: impl Fn(&OwnedPartition) -> bool,
    ) -> Result<(), Disconnected> {
        let selected: Vec<PartitionId> = self
            .partitions
            .iter()
            .filter(|(_, p)| select(p))
            .map(|(id, _)| *id)
            .collect();
        selected
            .into_iter()
            .try_for_each(|id| self.flush(consumer, id))
    }

    /// Tells the query which partitions hold the watermark back, when that changed; while
    /// everything is quiet, repeats it with the quiet time so event time follows the clock.
    ///
    /// See [`holds_watermark`] for when a partition is idle.
    fn send_status(&mut self, context: &ReaderContext, force: bool) -> Result<(), Disconnected> {
        let now = Instant::now();
        let idle_timeout = self.config.idle_timeout;
        let (mut active, mut idle) = (Vec::new(), Vec::new());
        for (id, owned) in &self.partitions {
            let caught_up = !self.config.bounded && context.caught_up(*id);
            if holds_watermark(owned, caught_up, now, idle_timeout) {
                active.push(split_id(*id));
            } else {
                idle.push(split_id(*id));
            }
        }
        let quiet_for = match (self.config.idle_advance, self.last_data) {
            (IdleAdvance::WallClock, Some(last)) if !self.config.bounded && active.is_empty() => {
                Some(now.duration_since(last)).filter(|q| *q >= idle_timeout)
            }
            _ => None,
        };
        let status = SplitStatus {
            active,
            idle,
            quiet_for,
        };
        let same_splits = self
            .last_status
            .as_ref()
            .is_some_and(|s| s.active == status.active && s.idle == status.idle);
        let tick =
            status.quiet_for.is_some() && now.duration_since(self.last_status_at) >= QUIET_TICK;
        if force || !same_splits || tick {
            self.last_status = Some(status.clone());
            self.last_status_at = now;
            self.send(ReaderEvent::Splits(status))?;
        }
        Ok(())
    }

    /// True when a partition reported idle has data waiting, so it must be reported active
    /// before rows of other partitions move the watermark on.
    fn idle_with_pending(&self) -> bool {
        let Some(status) = &self.last_status else {
            return false;
        };
        self.partitions.iter().any(|(id, owned)| {
            !owned.finished && status.idle.contains(&split_id(*id)) && owned.has_pending()
        })
    }

    fn send(&self, event: ReaderEvent) -> Result<(), Disconnected> {
        self.tx.blocking_send(event).map_err(|_| Disconnected)
    }

    /// Consumer errors are transient (librdkafka retries): counted, logged now and then.
    fn consumer_error(&mut self, context: &ReaderContext, e: &KafkaError) {
        context.metrics.add_connector_error();
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) >= ERROR_LOG_INTERVAL)
        {
            tracing::warn!(source = %context.source, error = %e, "Kafka consumer error, retrying");
            self.last_error_log = Some(now);
        }
    }
}

/// Whether a partition holds its source's watermark back (is active) rather than idle.
///
/// A finished partition does not. Otherwise a partition is idle only when it has caught up
/// with its end (`caught_up`; a bounded partition never has until it is finished, and a
/// newly assigned one has not before its first fetch), holds no message waiting to be sent,
/// and had no data for `idle_timeout`. A partition with a backlog never goes idle: its events
/// would be late once the others moved the watermark on. And without the pending check, after
/// a quiet spell a burst reaching every partition at once would let the first partition sent
/// advance the watermark past the others.
fn holds_watermark(
    partition: &OwnedPartition,
    caught_up: bool,
    now: Instant,
    idle_timeout: Duration,
) -> bool {
    if partition.finished {
        return false;
    }
    !caught_up || partition.has_pending() || now.duration_since(partition.last_data) < idle_timeout
}

fn dead_letter(context: &ReaderContext, (topic, partition): PartitionId, bad: &BadMessage) {
    let topic = &context.topics[topic];
    if context.metrics.add_dead_letter() {
        tracing::warn!(
            source = %context.source, topic, partition, offset = bad.offset, error = %bad.error,
            "malformed message set aside (counted in dead_letters)"
        );
    }
    if let Some(dead_letters) = &context.dead_letters {
        dead_letters.send(topic, partition, bad);
    }
}

fn stopped() -> ConnectorError {
    ConnectorError::External("the query stopped while the Kafka source started".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_goes_idle_only_once_caught_up_quiet_and_empty() {
        let layout = BatchLayout::new(
            Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                datafusion::arrow::datatypes::Field::new(
                    "v",
                    datafusion::arrow::datatypes::DataType::Int64,
                    true,
                ),
            ])),
            16,
            datafusion::arrow::datatypes::TimeUnit::Millisecond,
        );
        let timeout = Duration::from_secs(1);
        let mut partition = OwnedPartition::new(0, None);
        let assigned = partition.last_data;
        let later = assigned + Duration::from_secs(10);
        // Newly assigned, nothing fetched yet: a backlog may be on its way, however long.
        assert!(holds_watermark(&partition, false, later, timeout));
        // Caught up: idle after the timeout, not before.
        assert!(holds_watermark(&partition, true, assigned, timeout));
        assert!(!holds_watermark(&partition, true, later, timeout));
        // Data waiting to be sent keeps it active.
        partition
            .buffer
            .push(&layout, 0, Some(b"{\"v\":1}"), None, None);
        assert!(holds_watermark(&partition, true, later, timeout));
        // A finished (bounded) partition never holds the watermark.
        partition.finished = true;
        assert!(!holds_watermark(&partition, false, later, timeout));
    }
}
