//! [`StateLocation`]: where checkpoints are kept, as an [`ObjectStore`] and a prefix in it.

use std::fmt;
use std::sync::Arc;

use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

/// A state directory: a local path, or an object-store URL.
#[derive(Clone)]
pub struct StateLocation {
    store: Arc<dyn ObjectStore>,
    root: Path,
    shown: String,
}

impl fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl StateLocation {
    /// Parses `--state-dir`: a local directory (created if missing) or
    /// `s3://bucket/prefix`, with credentials, region and endpoint from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`, ... as the `object_store` crate reads them).
    pub fn parse(text: &str) -> Result<Self> {
        match text.split_once("://") {
            Some(("s3", rest)) => Self::s3(text, rest),
            Some((scheme, _)) => Err(Error::State(format!(
                "state dir '{text}': '{scheme}://' is not supported; give a local directory \
                 or s3://bucket/prefix"
            ))),
            None => Self::local(std::path::Path::new(text)),
        }
    }

    /// `s3://<bucket>/<prefix>`: `rest` is what follows the scheme.
    fn s3(text: &str, rest: &str) -> Result<Self> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::State(format!("state dir '{text}': no bucket")));
        }
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::State(format!("state dir '{text}': {e}")))?;
        let root = Path::from(prefix.trim_matches('/'));
        Ok(Self::new(
            Arc::new(store),
            root,
            text.trim_end_matches('/').to_string(),
        ))
    }

    /// A local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        let cannot =
            |e: &dyn fmt::Display| Error::State(format!("state dir '{}': {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| cannot(&e))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| cannot(&e))?;
        Ok(Self::new(
            Arc::new(store),
            Path::default(),
            dir.display().to_string(),
        ))
    }

    /// Checkpoints under `root` in `store`; `shown` is how logs and errors name it.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, shown: String) -> Self {
        Self { store, root, shown }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object at `parts`, or `None` when there is none.
    pub async fn read(&self, parts: &[&str]) -> Result<Option<Vec<u8>>> {
        let path = self.path(parts);
        self.get(&path)
            .await
            .map_err(|e| Error::State(format!("reading {self}/{path}: {e}")))
    }

    /// The bytes of the object at `path`, or `None` when there is none.
    pub async fn get(
        &self,
        path: &Path,
    ) -> std::result::Result<Option<Vec<u8>>, datafusion::object_store::Error> {
        match self.store.get(path).await {
            Ok(got) => Ok(Some(got.bytes().await?.to_vec())),
            Err(datafusion::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` at `parts`, replacing what was there in one step (a rename locally, a
    /// single put on object stores): a reader sees the old object or the new, never half.
    pub async fn write(&self, parts: &[&str], bytes: Vec<u8>) -> Result<()> {
        let path = self.path(parts);
        self.store
            .put(&path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| Error::State(format!("writing {self}/{path}: {e}")))
    }

    /// An empty local location in the temp dir, for tests.
    #[cfg(test)]
    pub(crate) fn scratch(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self::local(&dir).expect("a local state dir")
    }

    /// `parts` under the location's root.
    pub fn path(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.root.clone(), |path, part| path.clone().join(*part))
    }
}
