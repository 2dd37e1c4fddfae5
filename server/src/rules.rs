//! Deployed rules: each rule file's text and content hash, the views and sinks it made and
//! the queries it runs, so `vigil deploy` plans against what is really running.

use std::time::SystemTime;

use axum::http::StatusCode;
use serde::Serialize;
use vigil_engine::sql::{Statement, StreamParser};
use vigil_engine::time::format_rfc3339;
use vigil_rules::layout::content_hash;

use crate::error::ApiError;
use crate::service::{
    Catalogued, DdlEntry, STOP_TIMEOUT, Service, StatementResult, changes_catalog,
};

/// A rule as deployed.
#[derive(Debug, Clone)]
pub struct DeployedRule {
    /// Its name (the rule file's stem).
    pub name: String,
    /// Its text.
    pub sql: String,
    /// [`content_hash`] of the text.
    pub hash: String,
    /// When it was deployed.
    pub deployed_at: SystemTime,
    /// The queries it started.
    pub queries: Vec<u64>,
    /// The views it created.
    pub views: Vec<String>,
    /// The sinks its queries write.
    pub sinks: Vec<String>,
}

/// A deployed rule as the API shows it.
#[derive(Debug, Serialize)]
pub struct RuleView {
    name: String,
    hash: String,
    deployed_at: String,
    queries: Vec<u64>,
    views: Vec<String>,
    sinks: Vec<String>,
    sql: String,
}

impl RuleView {
    fn of(rule: &DeployedRule) -> Self {
        let ns = rule
            .deployed_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Self {
            name: rule.name.clone(),
            hash: rule.hash.clone(),
            deployed_at: format_rfc3339(ns).unwrap_or_default(),
            queries: rule.queries.clone(),
            views: rule.views.clone(),
            sinks: rule.sinks.clone(),
            sql: rule.sql.clone(),
        }
    }
}

/// What a deploy did.
#[derive(Debug, Serialize)]
pub struct RuleDeployment {
    /// `added`, `changed` or `unchanged`.
    pub action: &'static str,
    /// The rule now.
    pub rule: RuleView,
    /// Queries of the previous version, stopped after the new ones started.
    pub stopped: Vec<u64>,
    /// What each statement did.
    pub statements: Vec<StatementResult>,
}

impl Service {
    /// Every deployed rule, by name.
    pub async fn rules(&self) -> Vec<RuleView> {
        let state = self.engine.lock().await;
        state.rules.values().map(RuleView::of).collect()
    }

    /// Deploys rule `name` with text `sql`, or replaces the version deployed. The new text
    /// is planned against the catalog without the old version first, so a broken rule
    /// leaves the running one alone. A replacement starts the new queries before it stops the
    /// old ones: alerts overlap for a moment rather than pause.
    pub async fn deploy_rule(&self, name: &str, sql: &str) -> Result<RuleDeployment, ApiError> {
        let hash = content_hash(sql);
        let mut state = self.engine.lock().await;
        let previous = state.rules.get(name).cloned();
        if let Some(rule) = previous.as_ref().filter(|r| r.hash == hash) {
            return Ok(RuleDeployment {
                action: "unchanged",
                rule: RuleView::of(rule),
                stopped: Vec::new(),
                statements: Vec::new(),
            });
        }
        let statements = StreamParser::parse_sql(sql)?;
        for statement in &statements {
            self.check_options(statement)?;
            if let Statement::CreateSink(sink) = &statement.statement
                && sink.query.is_some()
            {
                let sink_name = sink.name.value.to_ascii_lowercase();
                if let Some(owner) = state
                    .rules
                    .values()
                    .find(|r| r.name != name && r.sinks.contains(&sink_name))
                {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "sink_taken",
                        format!("rule '{}' already writes sink '{sink_name}'", owner.name),
                    ));
                }
            }
        }
        self.validate_rule(&state, name, sql).await?;

        let mut results = Vec::new();
        let mut rule = DeployedRule {
            name: name.to_string(),
            sql: sql.to_string(),
            hash,
            deployed_at: SystemTime::now(),
            queries: Vec::new(),
            views: Vec::new(),
            sinks: Vec::new(),
        };
        let mut history = Vec::new();
        for mut statement in statements {
            let text = statement.sql.clone();
            // Validated above: what it replaces can only be the previous version's.
            match &mut statement.statement {
                Statement::CreateView(view) => {
                    view.or_replace = true;
                    rule.views.push(view.name.to_string().to_ascii_lowercase());
                }
                Statement::CreateSink(sink) if sink.query.is_some() => {
                    sink.or_replace = true;
                    rule.sinks.push(sink.name.value.to_ascii_lowercase());
                }
                _ => {}
            }
            if changes_catalog(&statement.statement) {
                history.push(text.clone());
            }
            let applied = async {
                let outcome = state.engine.execute_statement(statement).await?;
                self.apply(&state.engine, outcome, text)
            }
            .await;
            match applied {
                Ok(result) => {
                    if let StatementResult::Started { query_id, .. } = &result {
                        rule.queries.push(*query_id);
                    }
                    results.push(result);
                }
                Err(e) => {
                    // Planned cleanly a moment ago; undo what started and keep the old.
                    self.stop_queries(&rule.queries).await;
                    return Err(e);
                }
            }
        }
        forget_history(&mut state, name);
        state.ddl.extend(history.into_iter().map(|sql| DdlEntry {
            rule: Some(name.to_string()),
            sql,
        }));
        let view = RuleView::of(&rule);
        state.rules.insert(name.to_string(), rule);
        // The catalog is consistent: let other requests in while the old queries flush.
        drop(state);
        let stopped = match &previous {
            Some(old) => self.stop_queries(&old.queries).await,
            None => Vec::new(),
        };
        Ok(RuleDeployment {
            action: if previous.is_some() {
                "changed"
            } else {
                "added"
            },
            rule: view,
            stopped,
            statements: results,
        })
    }

    /// Stops rule `name`'s queries and drops its views.
    pub async fn remove_rule(&self, name: &str) -> Result<RuleView, ApiError> {
        let mut state = self.engine.lock().await;
        let rule = state
            .rules
            .remove(name)
            .ok_or_else(|| ApiError::not_found(format!("no rule named '{name}'")))?;
        for view in &rule.views {
            if let Err(e) = state.engine.drop_object("view", view) {
                tracing::warn!(rule = name, view, "cannot drop the rule's view: {e}");
            }
        }
        forget_history(&mut state, name);
        drop(state);
        self.stop_queries(&rule.queries).await;
        Ok(RuleView::of(&rule))
    }

    /// Stops the queries of `ids` that exist, each flushing; returns their ids.
    async fn stop_queries(&self, ids: &[u64]) -> Vec<u64> {
        let mut stopped = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(entry) = self.queries.get(*id) {
                entry.stop(STOP_TIMEOUT).await;
                stopped.push(*id);
            }
        }
        stopped
    }

    /// Plans `sql` as rule `name` on a copy of the catalog without its deployed version.
    async fn validate_rule(
        &self,
        state: &Catalogued,
        name: &str,
        sql: &str,
    ) -> Result<(), ApiError> {
        let mut scratch = self.replay(state, Some(name)).await;
        for statement in StreamParser::parse_sql(sql)? {
            scratch.execute_statement(statement).await?;
        }
        Ok(())
    }
}

fn forget_history(state: &mut Catalogued, rule: &str) {
    state
        .ddl
        .retain(|entry| entry.rule.as_deref() != Some(rule));
}
