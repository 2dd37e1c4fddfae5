//! What `vigil serve --state-dir` keeps across a restart: after every change the catalog's
//! history and the deployed rules are written down ([`Service::persist`]); at the next
//! start they are replayed ([`Service::restore_catalog`]), starting again the persistent
//! queries nobody stopped, which resume from their checkpoints.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use vigil_engine::StatementOutcome;
use vigil_engine::sql::StreamParser;

use crate::durable::{SavedCatalog, SavedRule, SavedStatement};
use crate::error::ApiError;
use crate::rules::{DeployedRule, claim};
use crate::service::{Catalogued, DdlEntry, Service, StateStart, persistent_query};

/// What restoring the kept catalog did.
#[derive(Debug, Default)]
pub struct CatalogRestore {
    /// Statements replayed.
    pub statements: usize,
    /// Rules deployed again.
    pub rules: usize,
    /// Persistent queries started again.
    pub queries: usize,
    /// Statements that failed, with why (their dependents fail too).
    pub failures: Vec<String>,
}

impl Service {
    /// Writes the catalog down when the server keeps one. A failure is logged: the change
    /// is made, only a restart would not see it.
    pub(crate) async fn persist(&self, state: &Catalogued) {
        let Some(file) = &self.catalog_file else {
            return;
        };
        let statements = state
            .ddl
            .iter()
            .map(|entry| SavedStatement {
                sql: entry.sql.clone(),
                rule: entry.rule.clone(),
                start: entry.runs.is_some(),
            })
            .collect();
        let rules = state.rules.values().map(saved_rule).collect();
        if let Err(e) = file.save(&SavedCatalog::new(statements, rules)).await {
            tracing::error!(
                catalog = %file.describe(),
                "cannot keep the catalog; a restart will not see the last change: {}",
                e.message
            );
        }
    }

    /// Replays the catalog kept under the state dir, if any: the same sources, views, sinks
    /// and rules, and the persistent queries that were running. Call before serving.
    pub async fn restore_catalog(&self) -> Result<CatalogRestore, ApiError> {
        let mut report = CatalogRestore::default();
        let Some(file) = &self.catalog_file else {
            return Ok(report);
        };
        let Some(saved) = file.load().await? else {
            return Ok(report);
        };
        let mut state = self.engine.lock().await;
        let mut made: BTreeMap<String, DeployedRule> = saved
            .rules
            .iter()
            .map(|r| (r.name.clone(), deployed_rule(r)))
            .collect();
        for statement in &saved.statements {
            let rule = statement.rule.as_ref().and_then(|r| made.get_mut(r));
            match self.replay_statement(&mut state, statement, rule).await {
                Ok(entry) => {
                    report.statements += 1;
                    report.queries += usize::from(entry.runs.is_some());
                    state.ddl.push(entry);
                }
                Err(e) => {
                    report
                        .failures
                        .push(format!("{}: {}", first_line(&statement.sql), e.message))
                }
            }
        }
        report.rules = made.len();
        state.rules.extend(made);
        Ok(report)
    }

    /// Executes one kept statement, starting its query when it was running; records what
    /// it makes in `rule`.
    async fn replay_statement(
        &self,
        state: &mut Catalogued,
        saved: &SavedStatement,
        rule: Option<&mut DeployedRule>,
    ) -> Result<DdlEntry, ApiError> {
        let mut statements = StreamParser::parse_sql(&saved.sql)?;
        let (Some(mut statement), true) = (statements.pop(), statements.is_empty()) else {
            return Err(ApiError::internal("a kept statement is not one statement"));
        };
        let query_of_rule = rule.map(|rule| {
            claim(&mut statement.statement, rule);
            &mut rule.queries
        });
        let outcome = state.engine.execute_statement(statement).await?;
        let runs = match outcome {
            StatementOutcome::SinkPlanned { .. } if saved.start => {
                let result = self
                    .apply(
                        &state.engine,
                        outcome,
                        saved.sql.clone(),
                        StateStart::Resume,
                    )
                    .await?;
                persistent_query(&result)
            }
            _ => None,
        };
        if let Some(queries) = query_of_rule {
            queries.extend(runs);
        }
        Ok(DdlEntry {
            rule: saved.rule.clone(),
            sql: saved.sql.clone(),
            runs,
        })
    }
}

fn saved_rule(rule: &DeployedRule) -> SavedRule {
    let deployed_at_ms = rule
        .deployed_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    SavedRule {
        name: rule.name.clone(),
        sql: rule.sql.clone(),
        hash: rule.hash.clone(),
        deployed_at_ms,
    }
}

fn deployed_rule(saved: &SavedRule) -> DeployedRule {
    let mut rule = DeployedRule::new(&saved.name, &saved.sql);
    rule.deployed_at = UNIX_EPOCH + Duration::from_millis(saved.deployed_at_ms.max(0) as u64);
    rule
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}
