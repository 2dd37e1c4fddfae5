//! `vigil serve`: deploys a rules directory, then serves the HTTP API until SIGTERM or
//! Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use vigil_connectors::kafka::KafkaSettings;
use vigil_engine::checkpoint::StateConfig;
use vigil_engine::{Engine, EngineConfig};
use vigil_server::{ApiError, Server, ServerConfig, StatementResult};

/// Binds, deploys the rules of `rules` (directory and profile) and serves.
pub async fn run(
    kafka: KafkaSettings,
    config: ServerConfig,
    rules: Option<(PathBuf, String)>,
    keep_going: bool,
    state: Option<StateConfig>,
) -> Result<()> {
    let new_engine = Arc::new(move || {
        let config = EngineConfig {
            state: state.clone(),
            ..EngineConfig::default()
        };
        Engine::with_config(vigil_connectors::registry_with(kafka.clone()), config)
    });
    let server = Server::bind(config, new_engine).await?;
    restore(&server, keep_going).await?;
    if let Some((dir, profile)) = rules {
        deploy(&server, &dir, &profile, keep_going).await?;
    }
    eprintln!("vigil serving on http://{}", server.local_addr());
    server.serve(shutdown_signal()).await?;
    eprintln!("vigil stopped");
    Ok(())
}

/// With a state dir: the catalog, rules and persistent queries of the last run, back.
async fn restore(server: &Server, keep_going: bool) -> Result<()> {
    let restored = server.service().restore_catalog().await?;
    if restored.statements == 0 && restored.failures.is_empty() {
        return Ok(());
    }
    eprintln!(
        "catalog restored from the state dir: {} statement(s), {} rule(s), {} persistent \
         query(ies) started again",
        restored.statements, restored.rules, restored.queries
    );
    for failure in &restored.failures {
        eprintln!("restoring the catalog: error: {failure}");
    }
    if !restored.failures.is_empty() && !keep_going {
        bail!(
            "{} statement(s) of the kept catalog failed; fix their cause or start with \
             --keep-going",
            restored.failures.len()
        );
    }
    Ok(())
}

/// Loads the profile, then deploys every rule file in name order (each under its file's
/// stem, so `vigil deploy` can compare them later), reporting each.
async fn deploy(server: &Server, dir: &Path, profile: &str, keep_going: bool) -> Result<()> {
    let layout = vigil_rules::RulesDir::new(dir);
    let profile = layout.profile(profile)?;
    let rules = layout.rule_paths()?;
    let mut failed = 0;
    let mut report = |file: &Path, result: Result<Vec<StatementResult>, ApiError>| match result {
        Ok(results) => eprintln!("{}: {}", file.display(), summary(&results)),
        Err(e) => {
            failed += 1;
            let position = match (e.line, e.column) {
                (Some(line), Some(column)) => format!("{line}:{column}: "),
                _ => String::new(),
            };
            eprintln!("{}:{position}error: {}", file.display(), e.message);
        }
    };
    // After a restart that restored the catalog, the profile's statements are kept ones.
    let sql = read(&profile)?;
    report(&profile, server.service().submit_new(&sql).await);
    for file in rules {
        let rule = vigil_rules::Rule::read(&file)?;
        let deployed = server.service().deploy_rule(&rule.name, &rule.sql).await;
        report(&file, deployed.map(|d| d.statements));
    }
    if failed > 0 && !keep_going {
        bail!("{failed} rule file(s) failed to load; fix them or start with --keep-going");
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn summary(results: &[StatementResult]) -> String {
    let parts: Vec<String> = results
        .iter()
        .map(|r| match r {
            StatementResult::Created { object, name } => format!("{object} {name}"),
            StatementResult::Dropped { object, name, .. } => format!("dropped {object} {name}"),
            StatementResult::Started { query_id, name, .. } => {
                format!("query {query_id} ({name})")
            }
            StatementResult::Explained { .. } => "explain".into(),
            StatementResult::Rows { rows } => format!("{} rows", rows.len()),
        })
        .collect();
    if parts.is_empty() {
        "nothing to do".into()
    } else {
        parts.join(", ")
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
