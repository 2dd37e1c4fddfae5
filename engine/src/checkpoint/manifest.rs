//! [`Manifest`]: the JSON record that makes a checkpoint epoch complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// What one complete checkpoint epoch holds, written after its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The query (its sink's name).
    pub query: String,
    /// The checkpoint's number.
    pub epoch: u64,
    /// The fingerprint of the plan that wrote it: state is restored only into the same plan.
    pub fingerprint: String,
    /// When it was taken, milliseconds since the Unix epoch.
    pub taken_at_ms: i64,
    /// The query's output watermark (nanoseconds).
    pub watermark: i64,
    /// Per source, in the plan's order.
    pub sources: Vec<SourceManifest>,
    /// Per sink: where it stood once flushed (bytes of a file), when it can say.
    pub sinks: Vec<Option<u64>>,
    /// Per graph node.
    pub nodes: Vec<NodeManifest>,
    /// The query's counters.
    pub metrics: MetricsManifest,
    /// The files of the epoch, with their checksums.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Whether the plan with `fingerprint`, reading `sources` in that order, can take this
    /// checkpoint's state.
    pub fn fits(&self, fingerprint: &str, sources: &[String]) -> bool {
        self.fingerprint == fingerprint
            && self.sources.len() == sources.len()
            && self
                .sources
                .iter()
                .zip(sources)
                .all(|(s, name)| &s.name == name)
    }
}

/// Where a source resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceManifest {
    /// The source's name.
    pub name: String,
    /// Per split, the offset to resume at (see [`crate::connector::SourcePosition`]).
    pub position: BTreeMap<u32, i64>,
}

/// The executor's record of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeManifest {
    /// The operator, to make a damaged or foreign manifest easy to spot.
    pub operator: String,
    /// How many state batches it has in the state file.
    pub batches: usize,
    /// Watermark per input.
    pub input_watermarks: Vec<i64>,
    /// Merged input watermark.
    pub watermark: i64,
    /// Rows received.
    pub rows_in: u64,
    /// Rows emitted.
    pub rows_out: u64,
    /// Late rows dropped.
    pub late_rows: u64,
}

/// The query counters that carry over a restart (late events come back with each node's
/// counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsManifest {
    /// Rows read from sources.
    pub events_in: u64,
    /// Rows written to the result sink.
    pub rows_out: u64,
    /// Malformed records set aside.
    pub dead_letters: u64,
    /// Rows an expression failed on.
    pub row_errors: u64,
}

/// A file of an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name within the epoch's directory.
    pub name: String,
    /// Its length.
    pub bytes: u64,
    /// SHA-256 of its contents, in hex.
    pub sha256: String,
}

impl Manifest {
    /// The manifest as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest is plain data")
    }

    /// Reads a manifest; an error says why it is not one this build can use.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::State(format!("unreadable manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(Error::State(format!(
                "manifest format {} (this build reads {FORMAT})",
                manifest.format
            )));
        }
        Ok(manifest)
    }
}

/// SHA-256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
