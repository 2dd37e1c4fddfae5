//! `--queries DIR`: the sources, sinks and views that a rules directory declares, loaded into
//! the session so its rules' sources can be queried by hand.

use std::path::{Path, PathBuf};

use vigil_rules::RulesDir;

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
    let layout = RulesDir::new(dir);
    let profile_path = layout
        .profile(profile)
        .map_err(|e| ReplError::Statement(e.to_string()))?;
    let rules = layout
        .rule_paths()
        .map_err(|e| ReplError::Statement(e.to_string()))?;

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
