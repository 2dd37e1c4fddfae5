//! Durable state: checkpoints of running queries, and restoring them on the next start.
//!
//! A checkpoint is taken on the graph thread between two messages, so it needs no barriers:
//! the graph is one thread, and at that moment every operator has seen exactly the batches
//! the sources' recorded positions cover. It holds every operator's [`NodeSnapshot`]
//! (Arrow batches, written as Arrow IPC), the watermarks and counters the executor keeps per
//! node, each source's [`SourcePosition`](crate::connector::SourcePosition), and where each
//! sink stood once it had flushed (a file's length). Files go under a [`StateLocation`]:
//!
//! ```text
//! <state dir>/queries/<query>/checkpoints/<epoch, 20 digits>-state.arrows
//!                                          <epoch, 20 digits>-manifest.json
//! ```
//!
//! The [`Manifest`] is written last and only if absent (a hard link locally, a conditional
//! put on object stores), with the SHA-256 of every file: an epoch without a manifest was
//! never complete, and one whose files do not match it is damaged; restoring then falls back
//! to the epoch before, and says so. Only after the manifest is written do sources
//! acknowledge their input (Kafka commits) and sinks commit. The last [`KEEP_EPOCHS`] epochs
//! are kept.

mod frames;
mod lease;
mod location;
mod manifest;
mod store;

use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;

pub use lease::{StateLease, now_ms, process_name};
pub use location::StateLocation;
pub use manifest::{
    FileEntry, Manifest, MetricsManifest, NodeManifest, SourceManifest, sha256_hex,
};
pub use store::{Loaded, QueryCheckpoints, Restored, SavedCheckpoint};

use crate::time::Timestamp;

/// How often a query is checkpointed unless configured otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Complete epochs kept per query; older ones are deleted after each new one.
pub const KEEP_EPOCHS: u64 = 3;

/// Where and how often queries checkpoint their state.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Where checkpoints are kept.
    pub location: StateLocation,
    /// Time between two checkpoints of a query.
    pub interval: Duration,
    /// Drop a query's checkpoints at its start instead of restoring them: it reads its
    /// sources from their configured `start`.
    pub reset: bool,
}

impl StateConfig {
    /// Checkpoints in `location` every [`DEFAULT_INTERVAL`].
    pub fn new(location: StateLocation) -> Self {
        Self {
            location,
            interval: DEFAULT_INTERVAL,
            reset: false,
        }
    }
}

/// What starting a query would do with the state checkpointed under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePlan {
    /// No state dir, or a query that does not checkpoint.
    NotDurable,
    /// No checkpoint yet: it starts from its sources' configured start.
    Fresh,
    /// The newest checkpoint (`epoch`) was written by the same plan: it resumes from it.
    Kept {
        /// The epoch it resumes from.
        epoch: u64,
    },
    /// The newest checkpoint (`epoch`) was written by another plan: starting it on purpose
    /// drops that state and reads the sources from their configured start.
    Reset {
        /// The epoch dropped.
        epoch: u64,
    },
}

impl StatePlan {
    /// `not durable`, `new state`, `state kept` or `state reset`, as deploy plans print it.
    pub fn label(&self) -> &'static str {
        match self {
            StatePlan::NotDurable => "not durable",
            StatePlan::Fresh => "new state",
            StatePlan::Kept { .. } => "state kept",
            StatePlan::Reset { .. } => "state reset",
        }
    }
}

/// The state of one graph node: its operator's batches, the watermarks the executor keeps
/// for it and its counters.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshot {
    /// The operator's name (`WindowAggregate`, ...), recorded in the manifest.
    pub name: String,
    /// What [`crate::operators::Operator::snapshot`] returned.
    pub operator: Vec<RecordBatch>,
    /// The watermark of each input.
    pub input_watermarks: Vec<Timestamp>,
    /// The merged input watermark.
    pub watermark: Timestamp,
    /// Rows received, emitted and dropped as late, so counters continue across restarts.
    pub rows_in: u64,
    /// Rows emitted on the main port.
    pub rows_out: u64,
    /// Late rows dropped.
    pub late_rows: u64,
}

/// Everything one checkpoint holds, before it is written.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The checkpoint's number, from 1, growing by one per checkpoint of the query.
    pub epoch: u64,
    /// The plan's fingerprint ([`crate::plan::OperatorGraph::fingerprint`]).
    pub fingerprint: String,
    /// Per graph node.
    pub nodes: Vec<NodeSnapshot>,
    /// Per source, where it resumes.
    pub sources: Vec<SourceManifest>,
    /// Per sink (result, late-event sinks, dead letters), where it stood once flushed.
    pub sinks: Vec<Option<u64>>,
    /// The output watermark.
    pub watermark: Timestamp,
    /// The query's counters.
    pub metrics: MetricsManifest,
    /// When it was taken, milliseconds since the Unix epoch.
    pub taken_at_ms: i64,
}
