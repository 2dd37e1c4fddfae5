//! [`Service`]: the engine behind the API. Statements change its catalog and start queries;
//! validation replays the catalog into a scratch engine so nothing runs.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::Mutex;
use vigil_engine::sql::{ParsedStatement, Statement, StreamParser};
use vigil_engine::{Engine, PlannedQuery, StatementOutcome};

use crate::config::ServerConfig;
use crate::durable::CatalogFile;
use crate::error::{ApiError, ErrorBody};
use crate::queries::{QueryEntry, QueryTable, TRANSIENT};
use crate::results::ResultHub;

/// How long a stop request waits for the query to flush and end.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds engines with the server's connectors.
pub type EngineFactory = Arc<dyn Fn() -> Engine + Send + Sync>;

/// The state every request shares.
pub struct Service {
    /// Settings.
    pub config: ServerConfig,
    /// The queries started.
    pub queries: QueryTable,
    pub(crate) engine: Mutex<Catalogued>,
    new_engine: EngineFactory,
    /// Where the catalog is kept across restarts: with a state dir only.
    pub(crate) catalog_file: Option<CatalogFile>,
}

/// The engine, the DDL that built its catalog in order (for validation to replay), and the
/// deployed rules.
pub(crate) struct Catalogued {
    pub(crate) engine: Engine,
    pub(crate) ddl: Vec<DdlEntry>,
    pub(crate) rules: std::collections::BTreeMap<String, crate::rules::DeployedRule>,
}

/// One statement of the catalog's history, with the rule that ran it, if any.
pub(crate) struct DdlEntry {
    /// The rule it belongs to: replacing or removing the rule takes it out of the history.
    pub(crate) rule: Option<String>,
    pub(crate) sql: String,
    /// The persistent query it started, while nobody stopped it: a restart with a state
    /// dir starts it again.
    pub(crate) runs: Option<u64>,
}

/// What a starting persistent query does with a checkpoint written by another plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateStart {
    /// Refuse to start (the user asked for this query; `--reset-state` overrides).
    Resume,
    /// Drop it: a new version of a rule, deployed on purpose.
    Reset,
}

/// What one statement did.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StatementResult {
    /// A source, view or sink was declared.
    Created {
        /// `source`, `view` or `sink`.
        object: &'static str,
        /// Its name.
        name: String,
    },
    /// An object was dropped.
    Dropped {
        /// Its kind.
        object: String,
        /// Its name.
        name: String,
        /// The running queries `CASCADE` stopped with it.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        stopped_queries: Vec<String>,
    },
    /// A query started.
    Started {
        /// Its id.
        query_id: u64,
        /// `persistent` or `transient`.
        kind: &'static str,
        /// The sink, or `select`.
        name: String,
    },
    /// The plan of an EXPLAIN.
    Explained {
        /// The operator graph.
        plan: String,
    },
    /// The rows of a query that reads no source (`SELECT 1 + 1`), evaluated once.
    Rows {
        /// Each row as a JSON object.
        rows: Vec<serde_json::Value>,
    },
}

impl Service {
    /// A service over engines from `new_engine`.
    pub fn new(config: ServerConfig, new_engine: EngineFactory) -> Self {
        let mut engine = new_engine();
        engine.config_mut().start_queries = false;
        let catalog_file = engine
            .config()
            .state
            .as_ref()
            .map(|state| CatalogFile::new(state.location.clone()));
        Self {
            catalog_file,
            queries: QueryTable::new(config.transient),
            config,
            engine: Mutex::new(Catalogued {
                engine,
                ddl: Vec::new(),
                rules: std::collections::BTreeMap::new(),
            }),
            new_engine,
        }
    }

    /// Runs the statements of `sql` in order; stops at the first error.
    pub async fn submit(&self, sql: &str) -> Result<Vec<StatementResult>, ApiError> {
        self.submit_statements(sql, false).await
    }

    /// [`Service::submit`], passing over the catalog statements already kept word for
    /// word: a profile loaded again at a restart that restored it declares nothing twice.
    pub async fn submit_new(&self, sql: &str) -> Result<Vec<StatementResult>, ApiError> {
        self.submit_statements(sql, true).await
    }

    async fn submit_statements(
        &self,
        sql: &str,
        skip_kept: bool,
    ) -> Result<Vec<StatementResult>, ApiError> {
        let mut statements = StreamParser::parse_sql(sql)?;
        for statement in &statements {
            self.check_options(statement)?;
        }
        let mut state = self.engine.lock().await;
        if skip_kept {
            statements.retain(|s| !state.ddl.iter().any(|e| e.rule.is_none() && e.sql == s.sql));
        }
        let history = state.ddl.len();
        let mut results = Vec::with_capacity(statements.len());
        let mut failed = None;
        for statement in statements {
            match self.submit_one(&mut state, statement).await {
                Ok(result) => results.push(result),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // What ran before a failure stays run: keep it too.
        if state.ddl.len() > history {
            self.persist(&state).await;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// Starts one SELECT, for a client that streams its results on the same response.
    pub async fn start_select(&self, sql: &str) -> Result<Arc<QueryEntry>, ApiError> {
        let mut statements = StreamParser::parse_sql(sql)?;
        let statement = match statements.pop() {
            Some(s) if statements.is_empty() && matches!(s.statement, Statement::Query(_)) => s,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "not_a_select",
                    "streaming results on the response takes exactly one SELECT; send other \
                     statements to POST /v1/statements",
                ));
            }
        };
        let mut state = self.engine.lock().await;
        let result = self.submit_one(&mut state, statement).await?;
        drop(state);
        let query_id = match result {
            StatementResult::Started { query_id, .. } => query_id,
            StatementResult::Rows { .. } => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "not_a_stream",
                    "a SELECT that reads no source is evaluated once, not streamed: POST it \
                     to /v1/statements, which answers with its rows",
                ));
            }
            _ => return Err(ApiError::internal("a SELECT started no query")),
        };
        self.queries
            .get(query_id)
            .ok_or_else(|| ApiError::internal(format!("query {query_id} vanished")))
    }

    /// One statement of [`Service::submit`], recorded in the catalog's history when it
    /// changes the catalog.
    async fn submit_one(
        &self,
        state: &mut Catalogued,
        statement: ParsedStatement,
    ) -> Result<StatementResult, ApiError> {
        let text = statement.sql.clone();
        let is_ddl = changes_catalog(&statement.statement);
        if starts_query(&statement.statement) {
            self.check_capacity(1, 0)?;
        }
        let outcome = state.engine.execute_statement(statement).await?;
        let result = (self.apply(&state.engine, outcome, text.clone(), StateStart::Resume)).await?;
        if let StatementResult::Dropped {
            stopped_queries, ..
        } = &result
        {
            self.forget_runs_of(state, stopped_queries);
        }
        if is_ddl {
            state.ddl.push(DdlEntry {
                rule: None,
                sql: text,
                runs: persistent_query(&result),
            });
        }
        Ok(result)
    }

    /// A persistent query was stopped on request: a restart must not start it again.
    pub async fn forget_run(&self, query: u64) {
        let mut state = self.engine.lock().await;
        let mut changed = false;
        for entry in state.ddl.iter_mut().filter(|e| e.runs == Some(query)) {
            entry.runs = None;
            changed = true;
        }
        if changed {
            self.persist(&state).await;
        }
    }

    /// Queries named `names` were stopped by a DROP ... CASCADE.
    fn forget_runs_of(&self, state: &mut Catalogued, names: &[String]) {
        for entry in &mut state.ddl {
            let stopped = entry
                .runs
                .and_then(|id| self.queries.get(id))
                .is_some_and(|query| names.contains(&query.name));
            if stopped {
                entry.runs = None;
            }
        }
    }

    /// Refuses to start `starting` queries when, with `leaving` running ones about to stop,
    /// they would run more than `VIGIL_MAX_QUERIES`. Persistent and transient queries count
    /// alike, whichever route starts them.
    pub(crate) fn check_capacity(&self, starting: usize, leaving: usize) -> Result<(), ApiError> {
        let running = self.queries.running().saturating_sub(leaving);
        if running + starting <= self.config.max_queries {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_queries",
            format!(
                "{running} queries are running and {} is the most allowed \
                 (VIGIL_MAX_QUERIES); stop one first (transient SELECTs stop by themselves \
                 {} s after their last results client leaves)",
                self.config.max_queries,
                self.config.transient.grace.as_secs_f64()
            ),
        ))
    }

    pub(crate) async fn apply(
        &self,
        engine: &Engine,
        outcome: StatementOutcome,
        sql: String,
        on_state: StateStart,
    ) -> Result<StatementResult, ApiError> {
        Ok(match outcome {
            StatementOutcome::Created { kind, name } => {
                StatementResult::Created { object: kind, name }
            }
            StatementOutcome::Dropped {
                kind,
                name,
                stopped,
            } => StatementResult::Dropped {
                object: kind,
                name,
                stopped_queries: stopped,
            },
            StatementOutcome::Explain(plan) => StatementResult::Explained { plan },
            StatementOutcome::Rows(batches) => StatementResult::Rows {
                rows: json_values(&batches)?,
            },
            StatementOutcome::SinkPlanned { name, query } => {
                let entry = self.start_sink(engine, &name, query, sql, on_state).await?;
                started(&entry)
            }
            StatementOutcome::Query(query) => {
                let hub = ResultHub::new(self.config.client_buffer);
                let running = engine.start(query, hub.sink(None))?;
                let entry = self
                    .queries
                    .add("select".into(), TRANSIENT, sql, running, hub);
                started(&entry)
            }
            StatementOutcome::SinkStarted { .. } => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the engine started a sink the server did not start",
                ));
            }
        })
    }

    /// Starts a `CREATE SINK ... AS` query writing to its sink, its rows also published for
    /// results clients. The sink is opened first: a table that cannot take the rows fails
    /// the statement.
    async fn start_sink(
        &self,
        engine: &Engine,
        name: &str,
        query: PlannedQuery,
        sql: String,
        on_state: StateStart,
    ) -> Result<Arc<QueryEntry>, ApiError> {
        let def = engine.catalog().sinks().get(name).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("sink '{name}' vanished from the catalog"),
            )
        })?;
        let options = vigil_engine::sink_connector_options(&def.options)?;
        let mut writer = engine
            .registry()
            .factory(&options)?
            .create_sink(&options, query.output_schema())?;
        writer.open().await?;
        let hub = ResultHub::new(self.config.client_buffer);
        let running = match on_state {
            StateStart::Resume => engine.start(query, hub.sink(Some(writer)))?,
            StateStart::Reset => engine.start_resetting_state(query, hub.sink(Some(writer)))?,
        };
        Ok(self
            .queries
            .add(name.to_string(), "persistent", sql, running, hub))
    }

    /// What a statement sent over HTTP may ask of the host: file connectors may only touch
    /// the data directory, and librdkafka properties that load code, run commands or read
    /// files need the operator's leave (`VIGIL_ALLOW_KAFKA_PROPERTIES`).
    pub(crate) fn check_options(&self, statement: &ParsedStatement) -> Result<(), ApiError> {
        let options = match &statement.statement {
            Statement::CreateSource(s) => &s.options,
            Statement::CreateSink(s) => &s.options,
            _ => return Ok(()),
        };
        for (key, value) in options.iter() {
            if key.ends_with("path") && !self.config.allows_path(value) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "path_not_allowed",
                    format!(
                        "{key} = '{value}' is outside the data directory {} (VIGIL_DATA_DIR)",
                        self.config.data_dir.display()
                    ),
                ));
            }
            if let Some(property) = key.strip_prefix("properties.")
                && !self.config.allows_kafka_property(property)
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "property_not_allowed",
                    format!(
                        "{key} can load code, run a command or read files on the server, so \
                         it is refused over HTTP unless the operator allows it \
                         (VIGIL_ALLOW_KAFKA_PROPERTIES={property})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parses and plans `sql` against a copy of the catalog, running nothing. Returns every
    /// error found.
    pub async fn validate(&self, sql: &str) -> Vec<ErrorBody> {
        let statements = match StreamParser::parse_sql(sql) {
            Ok(s) => s,
            Err(e) => return vec![ApiError::from(e).body()],
        };
        let mut scratch = self.scratch_engine().await;
        let mut errors = Vec::new();
        for statement in statements {
            if let Err(e) = self.check_options(&statement) {
                errors.push(e.body());
                continue;
            }
            if let Err(e) = scratch.execute_statement(statement).await {
                errors.push(ApiError::from(e).body());
            }
        }
        errors
    }

    async fn scratch_engine(&self) -> Engine {
        let state = self.engine.lock().await;
        self.replay(&state, None).await
    }

    /// A planning-only engine with the catalog's history replayed, leaving out the
    /// statements of rule `without`.
    pub(crate) async fn replay(&self, state: &Catalogued, without: Option<&str>) -> Engine {
        let mut scratch = (self.new_engine)();
        scratch.config_mut().start_queries = false;
        for entry in &state.ddl {
            if without.is_some() && entry.rule.as_deref() == without {
                continue;
            }
            // Each was accepted once; replaying cannot fail unless the world changed.
            if let Err(e) = scratch.execute(&entry.sql).await {
                tracing::warn!("replaying the catalog for validation: {e}");
            }
        }
        scratch
    }

    /// Runs `f` with the engine, for read-only looks at the catalog.
    pub async fn with_engine<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        f(&self.engine.lock().await.engine)
    }
}

/// Rows as JSON objects.
fn json_values(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut rows = Vec::new();
    for batch in batches {
        let lines = vigil_connectors::format::encode_json_lines(batch)?;
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            rows.push(serde_json::from_slice(line).map_err(|e| ApiError::internal(e.to_string()))?);
        }
    }
    Ok(rows)
}

/// Whether a statement starts a query: a SELECT, or a CREATE SINK ... AS.
pub(crate) fn starts_query(statement: &Statement) -> bool {
    match statement {
        Statement::Query(_) => true,
        Statement::CreateSink(sink) => sink.query.is_some(),
        _ => false,
    }
}

/// Whether a statement belongs in the catalog's history, for validation to replay: everything
/// but bare queries and EXPLAIN.
pub(crate) fn changes_catalog(statement: &Statement) -> bool {
    !matches!(statement, Statement::Query(_) | Statement::Explain(_))
}

/// The persistent query a statement started, if it did.
pub(crate) fn persistent_query(result: &StatementResult) -> Option<u64> {
    match result {
        StatementResult::Started {
            query_id,
            kind: "persistent",
            ..
        } => Some(*query_id),
        _ => None,
    }
}

fn started(entry: &QueryEntry) -> StatementResult {
    StatementResult::Started {
        query_id: entry.id,
        kind: entry.kind,
        name: entry.name.clone(),
    }
}
