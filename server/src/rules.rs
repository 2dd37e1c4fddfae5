//! Deployed rules: each rule file's text and content hash, the views and sinks it made and
//! the queries it runs, so `vigil deploy` plans against what is really running.

use std::time::SystemTime;

use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;
use vigil_engine::StatementOutcome;
use vigil_engine::checkpoint::StatePlan;
use vigil_engine::sql::{ParsedStatement, Statement, StreamParser};
use vigil_engine::time::format_rfc3339;
use vigil_rules::layout::content_hash;

use crate::error::ApiError;
use crate::service::{
    Catalogued, DdlEntry, STOP_TIMEOUT, Service, StateStart, StatementResult, changes_catalog,
    persistent_query, starts_query,
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
#[derive(Debug, Serialize, JsonSchema)]
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

impl DeployedRule {
    /// Rule `name` with text `sql`, deployed now, before it made anything.
    pub(crate) fn new(name: &str, sql: &str) -> Self {
        Self {
            name: name.to_string(),
            sql: sql.to_string(),
            hash: content_hash(sql),
            deployed_at: SystemTime::now(),
            queries: Vec::new(),
            views: Vec::new(),
            sinks: Vec::new(),
        }
    }
}

/// What a deploy did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RuleDeployment {
    /// `added`, `changed` or `unchanged`.
    pub action: &'static str,
    /// The rule now.
    pub rule: RuleView,
    /// Queries of the previous version, stopped after the new ones started.
    pub stopped: Vec<u64>,
    /// What each statement did.
    pub statements: Vec<StatementResult>,
    /// Per sink its queries write, what became of its state.
    pub state: Vec<SinkState>,
}

impl Service {
    /// Every deployed rule, by name.
    pub async fn rules(&self) -> Vec<RuleView> {
        let state = self.engine.lock().await;
        state.rules.values().map(RuleView::of).collect()
    }

    /// Deploys rule `name` with text `sql`, or replaces the version deployed. The new text
    /// is planned against the catalog without the old version first, so a broken rule
    /// leaves the running one alone. Without a state dir a replacement starts the new
    /// queries before it stops the old ones: alerts overlap for a moment rather than pause.
    /// With one, the old queries stop first, writing a last checkpoint, and the new ones
    /// resume from it when their plan is the same ("state kept") or drop it when it is not
    /// ("state reset": they read their sources from `start`).
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
                state: Vec::new(),
            });
        }
        let statements = StreamParser::parse_sql(sql)?;
        self.check_rule(&state, name, &statements)?;
        self.validate_rule(&state, name, None, sql).await?;
        let starting = statements
            .iter()
            .filter(|s| starts_query(&s.statement))
            .count();
        let leaving = previous.as_ref().map_or(0, |old| self.running_of(old));
        self.check_capacity(starting, leaving)?;
        let hand_over = self.catalog_file.is_some();
        let mut stopped = Vec::new();
        if let Some(old) = previous.as_ref().filter(|_| hand_over) {
            stopped = self.stop_queries(&old.queries).await;
        }
        let ran = self.run_rule(&mut state, name, sql, statements).await;
        let ran = match (ran, previous.as_ref().filter(|_| hand_over)) {
            (Ok(ran), _) => ran,
            (Err(e), Some(old)) => {
                self.bring_back(&mut state, old).await;
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        };
        let view = RuleView::of(&ran.rule);
        self.install(&mut state, ran.rule, ran.history).await;
        // The catalog is consistent: let other requests in while the old queries flush.
        drop(state);
        if let Some(old) = previous.as_ref().filter(|_| !hand_over) {
            stopped = self.stop_queries(&old.queries).await;
        }
        Ok(RuleDeployment {
            action: if previous.is_some() {
                "changed"
            } else {
                "added"
            },
            rule: view,
            stopped,
            statements: ran.results,
            state: ran.state,
        })
    }

    /// How many of a rule's queries are running.
    fn running_of(&self, rule: &DeployedRule) -> usize {
        rule.queries
            .iter()
            .filter_map(|id| self.queries.get(*id))
            .filter(|q| !q.ended())
            .count()
    }

    /// What deploying `sql` as rule `name` would do, doing nothing: whether it is new,
    /// changed or the same, and per sink whether its state is kept or reset. `profile`
    /// holds declarations deployed with it, which it may use.
    pub async fn plan_rule(
        &self,
        name: &str,
        sql: &str,
        profile: Option<&str>,
    ) -> Result<RulePlan, ApiError> {
        let state = self.engine.lock().await;
        let action = match state.rules.get(name) {
            Some(rule) if rule.hash == content_hash(sql) => "unchanged",
            Some(_) => "changed",
            None => "added",
        };
        let statements = StreamParser::parse_sql(sql)?;
        self.check_rule(&state, name, &statements)?;
        if let Some(profile) = profile {
            for statement in StreamParser::parse_sql(profile)? {
                self.check_options(&statement)?;
            }
        }
        let sinks = self.validate_rule(&state, name, profile, sql).await?;
        Ok(RulePlan { action, sinks })
    }

    /// Refuses what a rule may not do: options the server does not allow, and writing a
    /// sink another rule writes.
    fn check_rule(
        &self,
        state: &Catalogued,
        name: &str,
        statements: &[ParsedStatement],
    ) -> Result<(), ApiError> {
        for statement in statements {
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
        Ok(())
    }

    /// Runs the statements of rule `name` on the catalog, starting its queries; on an error
    /// stops what it started.
    async fn run_rule(
        &self,
        state: &mut Catalogued,
        name: &str,
        sql: &str,
        statements: Vec<ParsedStatement>,
    ) -> Result<RanRule, ApiError> {
        let mut ran = RanRule {
            rule: DeployedRule::new(name, sql),
            results: Vec::new(),
            history: Vec::new(),
            state: Vec::new(),
        };
        for mut statement in statements {
            let text = statement.sql.clone();
            // Validated: what it replaces can only be the previous version's.
            claim(&mut statement.statement, &mut ran.rule);
            let is_ddl = changes_catalog(&statement.statement);
            match self
                .run_rule_statement(state, statement, text.clone())
                .await
            {
                Ok((result, sink_state)) => {
                    let runs = persistent_query(&result);
                    ran.rule.queries.extend(runs);
                    ran.state.extend(sink_state);
                    if is_ddl {
                        ran.history.push(DdlEntry {
                            rule: Some(name.to_string()),
                            sql: text,
                            runs,
                        });
                    }
                    ran.results.push(result);
                }
                Err(e) => {
                    // Planned cleanly a moment ago; undo what started.
                    self.stop_queries(&ran.rule.queries).await;
                    return Err(e);
                }
            }
        }
        Ok(ran)
    }

    /// One statement of a rule; a query it starts keeps its state when the plan is the
    /// same and drops it otherwise.
    async fn run_rule_statement(
        &self,
        state: &mut Catalogued,
        statement: ParsedStatement,
        text: String,
    ) -> Result<(StatementResult, Option<SinkState>), ApiError> {
        let outcome = state.engine.execute_statement(statement).await?;
        let mut sink_state = None;
        let mut on_state = StateStart::Resume;
        let identity = match &outcome {
            StatementOutcome::SinkPlanned { query, .. } => Some(query.identity()),
            _ => None,
        };
        if let Some(identity) = identity {
            let plan = state.engine.state_plan(&identity).await?;
            if matches!(plan, StatePlan::Reset { .. }) {
                on_state = StateStart::Reset;
            }
            sink_state = Some(SinkState::new(&identity.name, plan));
        }
        let result = (self.apply(&state.engine, outcome, text, on_state)).await?;
        Ok((result, sink_state))
    }

    /// Makes `rule`, whose statements were run, the deployed version: its history replaces
    /// the previous version's, and the catalog is kept.
    async fn install(&self, state: &mut Catalogued, rule: DeployedRule, history: Vec<DdlEntry>) {
        forget_history(state, &rule.name);
        state.ddl.extend(history);
        state.rules.insert(rule.name.clone(), rule);
        self.persist(state).await;
    }

    /// A new version failed after the old one stopped: start the old one again.
    async fn bring_back(&self, state: &mut Catalogued, old: &DeployedRule) {
        let again = match StreamParser::parse_sql(&old.sql) {
            Ok(statements) => self.run_rule(state, &old.name, &old.sql, statements).await,
            Err(e) => Err(e.into()),
        };
        match again {
            Ok(ran) => self.install(state, ran.rule, ran.history).await,
            Err(e) => tracing::error!(
                rule = %old.name,
                "the new version failed and the old one cannot start again: {}",
                e.message
            ),
        }
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
        self.persist(&state).await;
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

    /// Plans `sql` as rule `name` on a copy of the catalog without its deployed version
    /// (and with the declarations of `profile`); says per sink what would become of its
    /// state.
    async fn validate_rule(
        &self,
        state: &Catalogued,
        name: &str,
        profile: Option<&str>,
        sql: &str,
    ) -> Result<Vec<SinkState>, ApiError> {
        let mut scratch = self.replay(state, Some(name)).await;
        if let Some(profile) = profile {
            scratch.execute(profile).await?;
        }
        let mut sinks = Vec::new();
        for statement in StreamParser::parse_sql(sql)? {
            let identity = match scratch.execute_statement(statement).await? {
                StatementOutcome::SinkPlanned { query, .. } => query.identity(),
                _ => continue,
            };
            let plan = scratch.state_plan(&identity).await?;
            sinks.push(SinkState::new(&identity.name, plan));
        }
        Ok(sinks)
    }
}

/// Records in `rule` the view or sink `statement` makes, and lets it replace the version
/// the rule made before.
pub(crate) fn claim(statement: &mut Statement, rule: &mut DeployedRule) {
    match statement {
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
}

/// What running a rule's statements made.
struct RanRule {
    rule: DeployedRule,
    results: Vec<StatementResult>,
    history: Vec<DdlEntry>,
    state: Vec<SinkState>,
}

/// What becomes of a sink's checkpointed state when its query starts.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SinkState {
    /// The sink (the query's name).
    pub sink: String,
    /// `not durable`, `new state`, `state kept` or `state reset`.
    pub state: &'static str,
    /// The checkpoint kept or dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl SinkState {
    fn new(sink: &str, plan: StatePlan) -> Self {
        let epoch = match plan {
            StatePlan::Kept { epoch } | StatePlan::Reset { epoch } => Some(epoch),
            StatePlan::NotDurable | StatePlan::Fresh => None,
        };
        Self {
            sink: sink.to_string(),
            state: plan.label(),
            epoch,
        }
    }
}

/// What deploying a rule would do.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RulePlan {
    /// `added`, `changed` or `unchanged`.
    pub action: &'static str,
    /// Per sink its queries write, what becomes of its state.
    pub sinks: Vec<SinkState>,
}

fn forget_history(state: &mut Catalogued, rule: &str) {
    state
        .ddl
        .retain(|entry| entry.rule.as_deref() != Some(rule));
}
