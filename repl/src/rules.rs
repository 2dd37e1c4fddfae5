//! `--queries DIR`: the sources, sinks and views that a rules directory declares, loaded into
//! the session so its rules' sources can be queried by hand.

use std::path::{Path, PathBuf};

use crate::ReplError;
use crate::script::run_file;
use crate::session::Session;

/// What [`load_rules`] loaded.
#[derive(Debug)]
pub struct LoadedRules {
    /// The profile file run first.
    pub profile: PathBuf,
    /// The rule files, in the order they ran.
    pub rules: Vec<PathBuf>,
}

/// Runs `DIR/profiles/PROFILE.sql`, then every `DIR/*.sql` in name order. The rules' sinks
/// are planned, not started: the session gets their sources, views and sink names.
pub async fn load_rules(
    session: &mut Session,
    dir: &Path,
    profile: &str,
) -> Result<LoadedRules, ReplError> {
    let (profile_path, rules) = rule_files(dir, profile)?;
    if !profile_path.is_file() {
        return Err(ReplError::Statement(format!(
            "{}: no such profile (profiles are {})",
            profile_path.display(),
            profile_names(dir).join(", ")
        )));
    }

    let started = session.engine_mut().config().start_queries;
    session.engine_mut().config_mut().start_queries = false;
    let mut result = run_file(session, &profile_path.display().to_string()).await;
    for rule in &rules {
        if result.is_err() {
            break;
        }
        result = run_file(session, &rule.display().to_string()).await;
    }
    session.engine_mut().config_mut().start_queries = started;
    result.map(|()| LoadedRules {
        profile: profile_path,
        rules,
    })
}

/// The files of a rules directory: `DIR/profiles/PROFILE.sql` (which may not exist), and
/// every `DIR/*.sql` in name order.
pub fn rule_files(dir: &Path, profile: &str) -> std::io::Result<(PathBuf, Vec<PathBuf>)> {
    let profile = dir.join("profiles").join(format!("{profile}.sql"));
    let mut rules: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "sql"))
        .collect();
    rules.sort();
    Ok((profile, rules))
}

fn profile_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("profiles"))
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "sql").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    names
}
