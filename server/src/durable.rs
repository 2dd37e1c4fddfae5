//! The server's catalog kept under the state dir, so that `vigil serve --state-dir` comes
//! back after a restart with the sources, views and sinks it had, its deployed rules, and
//! the persistent queries that were running; those resume from their checkpoints.
//!
//! What is kept is the catalog's history: the statements that built it, in order, each with
//! the rule it belongs to and whether the query it started should run again. Replaying
//! them rebuilds the same catalog; it is one JSON document, `server/catalog.json`, replaced
//! whole after every change.

use serde::{Deserialize, Serialize};
use vigil_engine::checkpoint::StateLocation;

use crate::error::ApiError;

/// The format this build writes and reads.
const FORMAT: u32 = 1;
/// Where the document is, under the state dir.
const PATH: &[&str] = &["server", "catalog.json"];

/// The catalog as kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCatalog {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The history, oldest first.
    pub statements: Vec<SavedStatement>,
    /// The deployed rules, by name.
    pub rules: Vec<SavedRule>,
}

/// One statement of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStatement {
    /// Its text.
    pub sql: String,
    /// The rule it belongs to, if any.
    pub rule: Option<String>,
    /// It started a persistent query that nobody stopped: start it again.
    pub start: bool,
}

/// A deployed rule; what it made is found again by replaying its statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRule {
    /// Its name.
    pub name: String,
    /// Its text.
    pub sql: String,
    /// Its content hash.
    pub hash: String,
    /// When it was deployed, milliseconds since the Unix epoch.
    pub deployed_at_ms: i64,
}

/// Where the catalog is kept.
#[derive(Debug, Clone)]
pub struct CatalogFile {
    location: StateLocation,
}

impl CatalogFile {
    /// The catalog document under `location`.
    pub fn new(location: StateLocation) -> Self {
        Self { location }
    }

    /// The catalog kept, or `None` when nothing was kept yet.
    pub async fn load(&self) -> Result<Option<SavedCatalog>, ApiError> {
        let Some(bytes) = self.location.read(PATH).await? else {
            return Ok(None);
        };
        let saved: SavedCatalog = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("{}: not a catalog: {e}", self.describe())))?;
        if saved.format != FORMAT {
            return Err(ApiError::internal(format!(
                "{}: format {} is not {FORMAT}, the one this build reads",
                self.describe(),
                saved.format
            )));
        }
        Ok(Some(saved))
    }

    /// Replaces the document with `catalog`.
    pub async fn save(&self, catalog: &SavedCatalog) -> Result<(), ApiError> {
        let json = serde_json::to_vec_pretty(catalog)
            .map_err(|e| ApiError::internal(format!("encoding the catalog: {e}")))?;
        Ok(self.location.write(PATH, json).await?)
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.location, PATH.join("/"))
    }
}

impl SavedCatalog {
    /// A catalog of `statements` and `rules`, in the format this build writes.
    pub fn new(statements: Vec<SavedStatement>, rules: Vec<SavedRule>) -> Self {
        Self {
            format: FORMAT,
            statements,
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-catalog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn a_saved_catalog_reads_back_and_a_newer_one_replaces_it() {
        let dir = scratch("replace");
        let file = CatalogFile::new(StateLocation::local(&dir).unwrap());
        assert_eq!(file.load().await.unwrap(), None);
        let statement = |sql: &str| SavedStatement {
            sql: sql.into(),
            rule: None,
            start: false,
        };
        let first = SavedCatalog::new(vec![statement("CREATE SOURCE a ...")], Vec::new());
        file.save(&first).await.unwrap();
        assert_eq!(file.load().await.unwrap(), Some(first));
        let second = SavedCatalog::new(
            vec![statement("CREATE SOURCE b ...")],
            vec![SavedRule {
                name: "r".into(),
                sql: "CREATE VIEW v AS ...".into(),
                hash: "sha256:00".into(),
                deployed_at_ms: 7,
            }],
        );
        file.save(&second).await.unwrap();
        assert_eq!(file.load().await.unwrap(), Some(second));
    }

    #[tokio::test]
    async fn a_damaged_document_is_an_error_not_an_empty_catalog() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(dir.join("server")).unwrap();
        std::fs::write(dir.join("server/catalog.json"), b"{\"format\": 1, \"stat").unwrap();
        let file = CatalogFile::new(StateLocation::local(&dir).unwrap());
        let error = file.load().await.unwrap_err();
        assert!(error.message.contains("not a catalog"), "{}", error.message);
    }
}
