//! [`RulesDir`]: where rules, profiles and rule tests sit in a rules directory.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::RulesError;

/// One rule file: its name is the file's stem (`sensor_threshold` for
/// `sensor_threshold.sql`).
#[derive(Debug, Clone)]
pub struct Rule {
    /// The file's stem.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub sql: String,
}

impl Rule {
    /// Reads a rule file.
    pub fn read(path: &Path) -> Result<Self, RulesError> {
        let sql = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| RulesError::Layout(format!("{}: not a rule file", path.display())))?
            .to_string();
        Ok(Self {
            name,
            path: path.to_path_buf(),
            sql,
        })
    }

    /// The content hash deploys compare.
    pub fn hash(&self) -> String {
        content_hash(&self.sql)
    }
}

/// `sha256:` and the hex SHA-256 of a rule's text: what a server reports for each deployed
/// rule, so a deploy plan compares exact contents.
pub fn content_hash(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Each file of a rules directory with its modification time and length.
pub type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// A rules directory: `*.sql` rules, `profiles/*.sql` profiles, `tests/*.test` rule tests.
#[derive(Debug, Clone)]
pub struct RulesDir {
    /// The directory.
    pub root: PathBuf,
}

impl RulesDir {
    /// The rules directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The rule files, in name order.
    pub fn rule_paths(&self) -> Result<Vec<PathBuf>, RulesError> {
        files_with_extension(&self.root, "sql")
    }

    /// The rules, read, in name order.
    pub fn rules(&self) -> Result<Vec<Rule>, RulesError> {
        self.rule_paths()?.iter().map(|p| Rule::read(p)).collect()
    }

    /// The profiles, in name order (none when there is no `profiles/`).
    pub fn profile_paths(&self) -> Result<Vec<PathBuf>, RulesError> {
        let dir = self.root.join("profiles");
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        files_with_extension(&dir, "sql")
    }

    /// The profile named `name`, or an error listing the ones there are.
    pub fn profile(&self, name: &str) -> Result<PathBuf, RulesError> {
        let path = self.root.join("profiles").join(format!("{name}.sql"));
        if path.is_file() {
            return Ok(path);
        }
        let names: Vec<String> = self
            .profile_paths()?
            .iter()
            .filter_map(|p| p.file_stem()?.to_str().map(String::from))
            .collect();
        Err(RulesError::Layout(format!(
            "{}: no such profile (profiles here: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )))
    }

    /// The profile rule tests run on: `demo` when there is one, else the first.
    pub fn default_test_profile(&self) -> Result<Option<PathBuf>, RulesError> {
        let profiles = self.profile_paths()?;
        let demo = profiles
            .iter()
            .find(|p| p.file_stem().is_some_and(|s| s == "demo"));
        Ok(demo.or(profiles.first()).cloned())
    }

    /// The rule test files, in name order (none when there is no `tests/`).
    pub fn test_paths(&self) -> Result<Vec<PathBuf>, RulesError> {
        let dir = self.root.join("tests");
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        files_with_extension(&dir, "test")
    }

    /// Every rule, profile and test file with its modification time and length: when this
    /// changes, something was saved (what `vigil test --watch` polls).
    pub fn fingerprint(&self) -> Fingerprint {
        let paths = [self.rule_paths(), self.profile_paths(), self.test_paths()];
        paths
            .into_iter()
            .flat_map(Result::unwrap_or_default)
            .map(|path| {
                let meta = std::fs::metadata(&path).ok();
                let modified = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.map_or(0, |m| m.len());
                (path, modified, len)
            })
            .collect()
    }

    /// The rule a test file is about: `tests/NAME.test` tests `NAME.sql`.
    pub fn rule_of_test(&self, test: &Path) -> PathBuf {
        let stem = test.file_stem().unwrap_or_default();
        self.root.join(stem).with_extension("sql")
    }
}

fn files_with_extension(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, RulesError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RulesError::io(dir, e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == extension))
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::content_hash;

    #[test]
    fn the_hash_names_its_algorithm_and_follows_every_byte() {
        let hash = content_hash("SELECT 1;\n");
        assert!(
            hash.starts_with("sha256:") && hash.len() == 7 + 64,
            "{hash}"
        );
        assert_ne!(hash, content_hash("SELECT 1; \n"));
        assert_eq!(hash, content_hash("SELECT 1;\n"));
    }
}
