//! [`QueryCheckpoints`]: one query's checkpoint epochs in a [`StateLocation`].

use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use futures_util::TryStreamExt;

use super::manifest::{FORMAT, FileEntry, Manifest, NodeManifest, sha256_hex};
use super::{Checkpoint, KEEP_EPOCHS, NodeSnapshot, StateLocation, frames};
use crate::error::{Error, Result};

const STATE_FILE: &str = "state.arrows";
const MANIFEST_FILE: &str = "manifest.json";
/// Digits of an epoch in file names: zero-padded, so that names sort as numbers.
const EPOCH_DIGITS: usize = 20;

/// The checkpoints of one query.
#[derive(Debug, Clone)]
pub struct QueryCheckpoints {
    location: StateLocation,
    query: String,
    dir: Path,
}

/// What writing a checkpoint cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedCheckpoint {
    /// Its number.
    pub epoch: u64,
    /// Bytes written (state and manifest).
    pub bytes: u64,
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Restored {
    /// Its manifest.
    pub manifest: Manifest,
    /// Per graph node, its state.
    pub nodes: Vec<NodeSnapshot>,
}

/// What looking for the newest usable checkpoint found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest complete and intact epoch, if any.
    pub restored: Option<Restored>,
    /// Newer epochs that could not be used, with why: restoring fell back past them.
    pub skipped: Vec<(u64, String)>,
}

impl QueryCheckpoints {
    /// The checkpoints of `query` under `location`.
    pub fn new(location: &StateLocation, query: &str) -> Self {
        Self {
            dir: location.path(&["queries", query, "checkpoints"]),
            location: location.clone(),
            query: query.to_string(),
        }
    }

    /// The checkpoints of split `split` of `query`'s source, when the query keeps its
    /// state per split: `queries/<query>/splits/<split>/checkpoints`.
    pub fn of_split(location: &StateLocation, query: &str, split: u32) -> Self {
        let split = split.to_string();
        Self {
            dir: location.path(&["queries", query, "splits", &split, "checkpoints"]),
            location: location.clone(),
            query: query.to_string(),
        }
    }

    /// The splits of `query` with checkpoints of their own (see [`QueryCheckpoints::of_split`]).
    pub async fn splits(location: &StateLocation, query: &str) -> Result<Vec<u32>> {
        let dir = location.path(&["queries", query, "splits"]);
        let listed = location.store().list_with_delimiter(Some(&dir)).await;
        let listed = listed.map_err(|e| Error::State(format!("listing {dir}: {e}")))?;
        let mut splits: Vec<u32> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse().ok())
            .collect();
        splits.sort_unstable();
        Ok(splits)
    }

    /// Where they are, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.location, self.dir)
    }

    /// Writes `checkpoint`: the state file, then the manifest, which makes it complete;
    /// then deletes epochs older than the last [`KEEP_EPOCHS`].
    pub async fn save(&self, checkpoint: &Checkpoint) -> Result<SavedCheckpoint> {
        let batches: Vec<&[_]> = checkpoint
            .nodes
            .iter()
            .map(|n| n.operator.as_slice())
            .collect();
        let state = frames::encode(&batches)?;
        let manifest = manifest_of(&self.query, checkpoint, &state);
        let manifest = manifest.to_json();
        let bytes = (state.len() + manifest.len()) as u64;
        let store = self.location.store();
        store
            .put(&self.file(checkpoint.epoch, STATE_FILE), state.into())
            .await
            .map_err(|e| self.failed("writing state", e))?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        store
            .put_opts(
                &self.file(checkpoint.epoch, MANIFEST_FILE),
                PutPayload::from(manifest),
                create,
            )
            .await
            .map_err(|e| self.failed("writing the manifest", e))?;
        self.prune().await;
        Ok(SavedCheckpoint {
            epoch: checkpoint.epoch,
            bytes,
        })
    }

    /// Every epoch with a file present, complete or not, in ascending order.
    pub async fn epochs(&self) -> Result<Vec<u64>> {
        Ok(self.listing().await?.into_iter().map(|(e, _)| e).collect())
    }

    /// Per epoch present, in ascending order, whether it has a manifest (is complete).
    async fn listing(&self) -> Result<Vec<(u64, bool)>> {
        let mut epochs: std::collections::BTreeMap<u64, bool> = Default::default();
        for path in self.files().await? {
            if let Some((epoch, name)) = path.filename().and_then(epoch_of) {
                *epochs.entry(epoch).or_default() |= name == MANIFEST_FILE;
            }
        }
        Ok(epochs.into_iter().collect())
    }

    /// The names of the files of every epoch, complete or not (for tools and tests).
    pub async fn file_names(&self) -> Result<Vec<String>> {
        let files = self.files().await?;
        Ok(files
            .iter()
            .filter_map(|p| p.filename().map(String::from))
            .collect())
    }

    /// Every file of every epoch.
    async fn files(&self) -> Result<Vec<Path>> {
        self.location
            .store()
            .list(Some(&self.dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.failed("listing checkpoints", e))
    }

    /// The query's name.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The newest epoch that is complete and intact, falling back past damaged ones
    /// (named in [`Loaded::skipped`]).
    pub async fn load_latest(&self) -> Result<Loaded> {
        self.load_latest_at_most(None).await
    }

    /// [`QueryCheckpoints::load_latest`] among the epochs up to `bound`.
    pub async fn load_latest_at_most(&self, bound: Option<u64>) -> Result<Loaded> {
        let mut loaded = Loaded::default();
        let epochs = self.epochs().await?;
        let usable = epochs.into_iter().filter(|e| bound.is_none_or(|b| *e <= b));
        for epoch in usable.rev() {
            match self.load(epoch).await {
                Ok(Some((manifest, nodes))) => {
                    loaded.restored = Some(Restored { manifest, nodes });
                    break;
                }
                // Never completed: a crash while it was written.
                Ok(None) => {}
                Err(e) => loaded.skipped.push((epoch, e.to_string())),
            }
        }
        Ok(loaded)
    }

    /// The manifest of the newest complete epoch, without reading its state: what a plan
    /// compares itself with before it starts.
    pub async fn latest_manifest(&self) -> Result<Option<Manifest>> {
        let complete = self.listing().await?.into_iter().filter(|(_, c)| *c);
        for (epoch, _) in complete.rev() {
            if let Some(json) = self.read(epoch, MANIFEST_FILE).await? {
                return Manifest::from_json(&json).map(Some);
            }
        }
        Ok(None)
    }

    /// Deletes the epochs after `epoch`.
    pub async fn delete_after(&self, epoch: u64) -> Result<()> {
        for newer in self.epochs().await?.into_iter().filter(|e| *e > epoch) {
            self.delete(newer).await?;
        }
        Ok(())
    }

    /// Deletes every epoch.
    pub async fn clear(&self) -> Result<()> {
        for epoch in self.epochs().await? {
            self.delete(epoch).await?;
        }
        Ok(())
    }

    /// Epoch `epoch`: `None` without a manifest, an error when its files do not match it.
    async fn load(&self, epoch: u64) -> Result<Option<(Manifest, Vec<NodeSnapshot>)>> {
        let Some(manifest) = self.read(epoch, MANIFEST_FILE).await? else {
            return Ok(None);
        };
        let manifest = Manifest::from_json(&manifest)?;
        let entry = manifest
            .files
            .iter()
            .find(|f| f.name == STATE_FILE)
            .ok_or_else(|| Error::State("the manifest lists no state file".into()))?;
        let state = self
            .read(epoch, STATE_FILE)
            .await?
            .ok_or_else(|| Error::State(format!("{STATE_FILE} is missing")))?;
        if state.len() as u64 != entry.bytes || sha256_hex(&state) != entry.sha256 {
            return Err(Error::State(format!(
                "{STATE_FILE} does not match its checksum ({} bytes, the manifest says {})",
                state.len(),
                entry.bytes
            )));
        }
        let batches = frames::decode(&state, manifest.nodes.len())?;
        let nodes = manifest
            .nodes
            .iter()
            .zip(batches)
            .map(|(node, operator)| NodeSnapshot {
                name: node.operator.clone(),
                operator,
                input_watermarks: node.input_watermarks.clone(),
                watermark: node.watermark,
                rows_in: node.rows_in,
                rows_out: node.rows_out,
                late_rows: node.late_rows,
            })
            .collect();
        Ok(Some((manifest, nodes)))
    }

    async fn read(&self, epoch: u64, name: &str) -> Result<Option<Vec<u8>>> {
        self.location
            .get(&self.file(epoch, name))
            .await
            .map_err(|e| self.failed("reading a checkpoint", e))
    }

    /// Deletes all but the newest [`KEEP_EPOCHS`] epochs; a failure is only logged: old
    /// epochs cost space, not correctness.
    async fn prune(&self) {
        let listing = match self.listing().await {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(query = %self.query, error = %e, "cannot list old checkpoints");
                return;
            }
        };
        // The newest complete epochs are kept, and whatever is newer than the oldest of
        // them; epochs that never completed do not count, however many a crash loop left.
        let complete: Vec<u64> = listing
            .iter()
            .filter(|(_, c)| *c)
            .map(|(e, _)| *e)
            .collect();
        let Some(&oldest_kept) = complete.iter().rev().nth(KEEP_EPOCHS as usize - 1) else {
            return;
        };
        for (epoch, _) in listing.into_iter().filter(|(e, _)| *e < oldest_kept) {
            if let Err(e) = self.delete(epoch).await {
                tracing::warn!(query = %self.query, epoch, error = %e, "cannot delete an old checkpoint");
            }
        }
    }

    /// Deletes an epoch, its manifest first: a half-deleted epoch is then incomplete, not
    /// damaged.
    async fn delete(&self, epoch: u64) -> Result<()> {
        let store = self.location.store();
        let mut files: Vec<Path> = self
            .files()
            .await?
            .into_iter()
            .filter(|p| {
                p.filename()
                    .and_then(epoch_of)
                    .is_some_and(|(e, _)| e == epoch)
            })
            .collect();
        files.sort_by_key(|p| {
            p.filename().and_then(epoch_of).map(|(_, n)| n) != Some(MANIFEST_FILE)
        });
        for file in files {
            match store.delete(&file).await {
                Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.failed("deleting a checkpoint", e)),
            }
        }
        Ok(())
    }

    /// `<epoch>-<name>` in the query's checkpoint directory: flat, because object stores
    /// have no directories to remove.
    fn file(&self, epoch: u64, name: &str) -> Path {
        let file = format!("{epoch:0width$}-{name}", width = EPOCH_DIGITS);
        self.dir.clone().join(file.as_str())
    }

    fn failed(&self, doing: &str, e: datafusion::object_store::Error) -> Error {
        Error::State(format!("{doing} in {}: {e}", self.describe()))
    }
}

/// The epoch a checkpoint file belongs to, and its name without the epoch.
fn epoch_of(file: &str) -> Option<(u64, &str)> {
    let (epoch, name) = file.split_once('-')?;
    let epoch = (epoch.len() == EPOCH_DIGITS).then(|| epoch.parse().ok())??;
    Some((epoch, name))
}

fn manifest_of(query: &str, checkpoint: &Checkpoint, state: &[u8]) -> Manifest {
    let nodes = checkpoint
        .nodes
        .iter()
        .map(|n| NodeManifest {
            operator: n.name.clone(),
            batches: n.operator.len(),
            input_watermarks: n.input_watermarks.clone(),
            watermark: n.watermark,
            rows_in: n.rows_in,
            rows_out: n.rows_out,
            late_rows: n.late_rows,
        })
        .collect();
    Manifest {
        format: FORMAT,
        query: query.to_string(),
        epoch: checkpoint.epoch,
        fingerprint: checkpoint.fingerprint.clone(),
        taken_at_ms: checkpoint.taken_at_ms,
        watermark: checkpoint.watermark,
        sources: checkpoint.sources.clone(),
        sinks: checkpoint.sinks.clone(),
        nodes,
        metrics: checkpoint.metrics,
        files: vec![FileEntry {
            name: STATE_FILE.to_string(),
            bytes: state.len() as u64,
            sha256: sha256_hex(state),
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::checkpoint::{MetricsManifest, SourceManifest};

    fn location(name: &str) -> StateLocation {
        StateLocation::scratch(&format!("store-{name}"))
    }

    fn checkpoint(epoch: u64) -> Checkpoint {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values = Int64Array::from(vec![epoch as i64; 3]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
        Checkpoint {
            epoch,
            fingerprint: "plan".into(),
            nodes: vec![
                NodeSnapshot::default(),
                NodeSnapshot {
                    name: "WindowAggregate".into(),
                    operator: vec![batch],
                    input_watermarks: vec![7],
                    watermark: 7,
                    rows_in: 3,
                    ..NodeSnapshot::default()
                },
            ],
            sources: vec![SourceManifest {
                name: "events".into(),
                position: BTreeMap::from([(0, epoch as i64 * 10)]),
            }],
            sinks: vec![Some(epoch * 100)],
            watermark: 7,
            metrics: MetricsManifest::default(),
            taken_at_ms: 0,
        }
    }

    fn state_file(location: &StateLocation, epoch: u64) -> std::path::PathBuf {
        let shown = location.to_string();
        std::path::Path::new(&shown)
            .join("queries/q/checkpoints")
            .join(format!("{epoch:020}-{STATE_FILE}"))
    }

    #[tokio::test]
    async fn the_newest_epoch_comes_back_and_only_the_last_three_are_kept() {
        let location = location("keep");
        let store = QueryCheckpoints::new(&location, "q");
        for epoch in 1..=5 {
            store.save(&checkpoint(epoch)).await.unwrap();
        }
        assert_eq!(store.epochs().await.unwrap(), vec![3, 4, 5]);
        let loaded = store.load_latest().await.unwrap();
        assert!(loaded.skipped.is_empty());
        let restored = loaded.restored.unwrap();
        assert_eq!(restored.manifest.epoch, 5);
        assert_eq!(restored.manifest.sinks, vec![Some(500)]);
        assert_eq!(restored.nodes[1].operator, checkpoint(5).nodes[1].operator);
        assert_eq!(restored.nodes[1].rows_in, 3);
    }

    #[tokio::test]
    async fn a_damaged_or_unfinished_epoch_falls_back_to_the_one_before() {
        let location = location("damaged");
        let store = QueryCheckpoints::new(&location, "q");
        for epoch in 1..=3 {
            store.save(&checkpoint(epoch)).await.unwrap();
        }
        // Epoch 3's state loses its tail; epoch 4 has state but no manifest (a crash).
        let path = state_file(&location, 3);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        std::fs::write(state_file(&location, 4), b"half").unwrap();
        let loaded = store.load_latest().await.unwrap();
        assert_eq!(loaded.restored.unwrap().manifest.epoch, 2);
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].0, 3);
        assert!(
            loaded.skipped[0].1.contains("checksum"),
            "{:?}",
            loaded.skipped
        );
        // The next epoch is numbered past every file, damaged or not.
        assert_eq!(store.epochs().await.unwrap().last(), Some(&4));
    }

    #[tokio::test]
    async fn epochs_a_crash_loop_left_unfinished_do_not_push_complete_ones_out() {
        let location = location("unfinished");
        let store = QueryCheckpoints::new(&location, "q");
        store.save(&checkpoint(1)).await.unwrap();
        // Writes cut short before their manifests.
        for epoch in [2, 3, 4] {
            std::fs::write(state_file(&location, epoch), b"half").unwrap();
        }
        store.save(&checkpoint(5)).await.unwrap();
        store.save(&checkpoint(6)).await.unwrap();
        assert_eq!(store.epochs().await.unwrap(), vec![1, 2, 3, 4, 5, 6]);
        store.save(&checkpoint(7)).await.unwrap();
        // Three complete epochs kept; what is older goes.
        assert_eq!(store.epochs().await.unwrap(), vec![5, 6, 7]);
        store.delete_after(5).await.unwrap();
        assert_eq!(store.epochs().await.unwrap(), vec![5]);
    }

    #[tokio::test]
    async fn clearing_leaves_nothing_to_restore() {
        let location = location("clear");
        let store = QueryCheckpoints::new(&location, "q");
        store.save(&checkpoint(1)).await.unwrap();
        store.clear().await.unwrap();
        assert!(store.load_latest().await.unwrap().restored.is_none());
        assert!(store.epochs().await.unwrap().is_empty());
    }
}
