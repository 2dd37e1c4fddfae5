//! The connector contracts: [`Source`], [`Sink`] and the [`ConnectorFactory`] that builds them
//! from `WITH (connector = '...')` options, gathered in a [`ConnectorRegistry`].
//!
//! Sources only produce rows; watermarks are made by the engine from the source's
//! `WATERMARK FOR` declaration, so a source stays simple to write and to test.

mod delivery;
mod error;
mod health;
mod memory;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

pub use delivery::Delivered;
pub use error::ConnectorError;
pub use health::Health;
pub use memory::{MemoryFactory, MemoryInput, MemorySink};

use crate::runtime::QueryMetrics;
use crate::sql::Options;

pub use crate::batch::CHANGELOG_METADATA_KEY;

/// True when a sink created with `schema` receives a changelog (see
/// [`CHANGELOG_METADATA_KEY`]) rather than append-only rows.
pub fn is_changelog(schema: &datafusion::arrow::datatypes::Schema) -> bool {
    schema.metadata().contains_key(CHANGELOG_METADATA_KEY)
}

/// What a source produced in one call.
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows in the declared schema, from a source with a single split.
    Batch(RecordBatch),
    /// Rows in the declared schema from one split (a Kafka partition) of a source with several.
    /// The source's watermark is the minimum over its active splits.
    SplitBatch {
        /// The split the rows came from.
        split: u32,
        /// The rows.
        rows: RecordBatch,
    },
    /// The source's splits changed: assigned, revoked, gone idle or quiet altogether.
    Splits(SplitStatus),
    /// Nothing arrived within the wait; the source is alive.
    Idle,
    /// The source resumes where an earlier run of the query acknowledged it, and that run
    /// had emitted and delivered every window ending at or before this time (what the
    /// source stored with its acknowledgement, [`Delivered::watermark`]). Sent before the
    /// first batch.
    Resume(crate::time::Timestamp),
    /// Every split has been read up to where its input ended when the query started: the
    /// query's state now reflects everything an earlier run could have seen. Sent once.
    CaughtUp,
    /// A bounded source is finished.
    End,
    /// Splits move to or from this process (a consumer-group rebalance) while the query
    /// keeps state per split ([`SourceContext::split_state`]). The source waits for the
    /// answer before it reads an assigned split or lets a revoked one go.
    Handover(Handover),
}

/// Splits a source was given or is giving up, and where the query answers.
#[derive(Debug)]
pub struct Handover {
    /// What changes.
    pub change: SplitChange,
    /// Assigned: per split whose state the query loaded, the offset to read it from (the
    /// others start as configured). Revoked: sent (empty) once their state is checkpointed.
    /// Dropped unanswered when the query stops.
    pub reply: tokio::sync::oneshot::Sender<BTreeMap<u32, i64>>,
}

/// See [`Handover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitChange {
    /// These splits are now the source's.
    Assigned(Vec<u32>),
    /// These splits go to another process.
    Revoked(Vec<u32>),
}

/// Which splits of a source hold its watermark back, as the source sees them now.
///
/// A split that got no data for the source's idle timeout is idle: it stops holding the
/// watermark back until data arrives from it again. When every split is idle, `quiet_for`
/// (if the source sets it) moves event time on with the wall clock, so the last windows close.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitStatus {
    /// Splits this reader owns now and that are not idle.
    pub active: Vec<u32>,
    /// Splits this reader owns now that are idle.
    pub idle: Vec<u32>,
    /// Set when no split has had data for this long and event time should follow the wall
    /// clock: the watermark becomes the last one seen plus this duration.
    pub quiet_for: Option<Duration>,
}

/// Where a source stands in its input after the batch it returned last: per split, the
/// offset to resume reading at. Kafka: each partition's next offset; a file: split 0, the
/// byte after the lines of the batch returned last; the generator: split 0, the events made. Checkpoints store
/// it and hand it back to [`Source::restore`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePosition {
    /// Split to offset.
    pub splits: BTreeMap<u32, i64>,
}

impl SourcePosition {
    /// A position with one split, `0`, at `offset`.
    pub fn single(offset: i64) -> Self {
        Self {
            splits: BTreeMap::from([(0, offset)]),
        }
    }
}

/// A stream of rows from outside.
///
/// Contract: `next_batch` returns within about `max_wait`, with [`SourceEvent::Idle`] when
/// nothing arrived. Rows follow the schema given at creation. Malformed input is counted (see
/// [`SourceContext::metrics`]) and skipped, never an error: errors are for a source that cannot
/// go on at all.
#[async_trait]
pub trait Source: Send {
    /// Reads the next batch.
    async fn next_batch(&mut self, max_wait: Duration) -> Result<SourceEvent, ConnectorError>;

    /// Where the source stands after the batch it returned last, when a checkpoint may be
    /// taken there (see [`SourcePosition`]). `None` when it cannot say, or not now (a file
    /// batch that is not the last of the lines decoded together): checkpoints wait for a
    /// position. Sources that never give one make their queries impossible to checkpoint.
    fn position(&self) -> Option<SourcePosition> {
        None
    }

    /// Resumes at `position`, which an earlier [`Source::position`] returned, before the
    /// first [`Source::next_batch`].
    async fn restore(&mut self, position: SourcePosition) -> Result<(), ConnectorError> {
        let _ = position;
        Err(ConnectorError::Unsupported(
            "this source cannot resume from a checkpoint".into(),
        ))
    }

    /// Called once when the query is done with the source, after the last
    /// [`Delivered`] update: acknowledge what was delivered and release connections.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Where query results go.
///
/// Contract: `write` receives batches in emission order. Updating queries have a first column
/// `op` with the change kind (`+I`, `-U`, `+U`, `-D`). `flush` makes everything written so far
/// visible outside (the runtime calls it after each emission and at the end).
#[async_trait]
pub trait Sink: Send {
    /// The statement starting the sink's query runs (not when it is only planned or
    /// validated): a sink that must reach its database to know it can write there checks
    /// now, so that a table that cannot take the rows fails the statement rather than the
    /// running query. One that cannot reach it yet leaves that to its writes, which try
    /// again. The default checks nothing.
    async fn open(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Writes rows.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError>;
    /// Makes written rows visible.
    async fn flush(&mut self) -> Result<(), ConnectorError>;

    /// Every source of the query has caught up with the input that existed when it started
    /// ([`SourceEvent::CaughtUp`], or its end): for an updating query, the rows written so far
    /// hold every key its state holds. A sink that writes over what an earlier run wrote (an
    /// upsert topic) may now remove the keys this run did not write again.
    async fn caught_up(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// The query `query` checkpoints: a sink that commits its output at checkpoints (a
    /// transactional Kafka producer) says up to which checkpoint epoch its output was
    /// committed (`Some(0)`: none yet), and the query resumes from that epoch rather than a
    /// newer one whose output was never committed. Called once, before anything else. The
    /// default commits nothing: `None`.
    async fn committed_epoch(&mut self, query: &str) -> Result<Option<u64>, ConnectorError> {
        let _ = query;
        Ok(None)
    }

    /// A checkpoint is being taken: makes everything written so far durable and says where
    /// the sink stands (a file's length), for [`Sink::restore`] after a crash. The default
    /// flushes and has no position.
    async fn pre_commit(&mut self) -> Result<Option<u64>, ConnectorError> {
        self.flush().await?;
        Ok(None)
    }

    /// The checkpoint `epoch` whose [`Sink::pre_commit`] came last is complete: a sink
    /// holding output back until its checkpoint (a Kafka transaction) releases it now.
    async fn commit(&mut self, epoch: u64) -> Result<(), ConnectorError> {
        let _ = epoch;
        Ok(())
    }

    /// True when the sink's output is exactly once only while a single process writes it
    /// (a file cut back to its checkpointed length, a transactional producer): the query
    /// then checkpoints as a whole and is not spread over processes by split.
    fn single_writer(&self) -> bool {
        false
    }

    /// Where the sink reports whether it reaches its broker or database; called once,
    /// before anything else. A sink that cannot tell ignores it.
    fn report_health(&mut self, health: Health) {
        let _ = health;
    }

    /// The query resumes from a checkpoint at which this sink's [`Sink::pre_commit`]
    /// returned `position`: a sink that can (a file) drops what it wrote after it, so that
    /// the output holds every result once. Called before the first write. A sink that
    /// cannot gives at-least-once output: results after the checkpoint are written again.
    async fn restore(&mut self, position: Option<u64>) -> Result<(), ConnectorError> {
        let _ = position;
        Ok(())
    }
}

/// What a source is given when it is created.
#[derive(Clone)]
pub struct SourceContext {
    /// The source's name in the catalog.
    pub name: String,
    /// Counters of the query the source feeds (dead letters are counted here).
    pub metrics: Arc<QueryMetrics>,
    /// Rows per batch the source should aim for.
    pub batch_size: usize,
    /// The query the source feeds (its sink's name), for names such as consumer groups.
    pub query: String,
    /// How many of this source's batches have had every effect reach the sinks; a source
    /// that can acknowledge input (Kafka offsets) acknowledges only those.
    pub delivered: Arc<Delivered>,
    /// The columns the query reads, by index in the source's schema, when it reads only
    /// some: a source may leave the other (nullable) columns null instead of decoding them.
    /// `None`: every column.
    pub read_columns: Option<Vec<usize>>,
    /// True when the query keeps its state per split, in the shared state dir: a source
    /// whose splits move between processes announces each assignment and revocation with
    /// [`SourceEvent::Handover`] and reads an assigned split from where the answer says.
    pub split_state: bool,
    /// For a table, its primary key's columns, by index in the schema; empty for a stream.
    /// A source that can read deletes (a Kafka tombstone names its key) gives them as `-D`
    /// rows of these columns, in changelog form ([`CHANGELOG_METADATA_KEY`]).
    pub table_key: Vec<usize>,
}

impl SourceContext {
    /// Per column of a `width`-column schema, whether the query reads it.
    pub fn reads(&self, width: usize) -> Vec<bool> {
        match &self.read_columns {
            None => vec![true; width],
            Some(columns) => (0..width).map(|i| columns.contains(&i)).collect(),
        }
    }
}

/// Builds sources and sinks of one connector type.
///
/// Creating must not do I/O: the engine also creates connectors to validate options at
/// CREATE time. Open files and connections on first use.
pub trait ConnectorFactory: Send + Sync {
    /// The value of `connector = '...'`.
    fn name(&self) -> &'static str;

    /// Builds a source reading rows of `schema`.
    fn create_source(
        &self,
        options: &Options,
        schema: SchemaRef,
        ctx: SourceContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let _ = (options, schema, ctx);
        Err(ConnectorError::Unsupported(format!(
            "connector '{}' cannot be a source",
            self.name()
        )))
    }

    /// True when processes running the same query over a source with these options share
    /// its splits, each reading some of them (Kafka consumer groups). The planner then
    /// checks that keyed aggregates read sources partitioned by their key.
    fn shares_splits(&self, options: &Options) -> bool {
        let _ = options;
        false
    }

    /// The dead-letter destination a source declared (a dead-letter topic, file), as a sink
    /// for rows of its queries that an expression failed on: batches made by
    /// [`RejectedRows::to_dead_letters`](crate::batch::RejectedRows::to_dead_letters).
    /// `None` when the source declares none.
    fn create_dead_letter_sink(
        &self,
        options: &Options,
    ) -> Result<Option<Box<dyn Sink>>, ConnectorError> {
        let _ = options;
        Ok(None)
    }

    /// Builds a sink writing rows of `schema`.
    fn create_sink(
        &self,
        options: &Options,
        schema: SchemaRef,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let _ = (options, schema);
        Err(ConnectorError::Unsupported(format!(
            "connector '{}' cannot be a sink",
            self.name()
        )))
    }
}

/// The connectors an engine knows, by name.
#[derive(Clone)]
pub struct ConnectorRegistry {
    factories: BTreeMap<&'static str, Arc<dyn ConnectorFactory>>,
    memory: Arc<MemoryFactory>,
}

impl Default for ConnectorRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectorRegistry {
    /// A registry with only the in-memory connector.
    pub fn new() -> Self {
        let memory = Arc::new(MemoryFactory::default());
        let mut registry = Self {
            factories: BTreeMap::new(),
            memory: Arc::clone(&memory),
        };
        registry.register(memory);
        registry
    }

    /// Adds (or replaces) a factory.
    pub fn register(&mut self, factory: Arc<dyn ConnectorFactory>) {
        self.factories.insert(factory.name(), factory);
    }

    /// The factory for `options`' connector.
    pub fn factory(&self, options: &Options) -> Result<&Arc<dyn ConnectorFactory>, ConnectorError> {
        let name = options
            .connector()
            .ok_or_else(|| ConnectorError::config("connector", "this option is required"))?;
        self.factories.get(name).ok_or_else(|| {
            let known: Vec<_> = self.factories.keys().copied().collect();
            ConnectorError::config(
                "connector",
                format!("unknown connector '{name}' (known: {})", known.join(", ")),
            )
        })
    }

    /// The memory connector, through which tests and embedders feed rows.
    pub fn memory(&self) -> &Arc<MemoryFactory> {
        &self.memory
    }
}
