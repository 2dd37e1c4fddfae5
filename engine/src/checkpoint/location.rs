//! [`StateLocation`]: where checkpoints are kept, as an [`ObjectStore`] and a prefix in it.

use std::fmt;
use std::sync::Arc;

use datafusion::object_store::ObjectStore;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;

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
    /// Parses `--state-dir`: a local directory (created if missing) or `scheme://...`.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(Error::State(format!(
                "state dir '{text}': '{scheme}://' locations are not supported by this build; \
                 give a local directory"
            )));
        }
        Self::local(std::path::Path::new(text))
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

    /// `parts` under the location's root.
    pub fn path(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.root.clone(), |path, part| path.clone().join(*part))
    }
}
