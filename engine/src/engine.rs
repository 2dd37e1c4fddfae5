//! [`Engine`]: the engine's API. SQL text in, running queries out.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::{Catalog, SinkDef};
use crate::checkpoint::{QueryCheckpoints, StateConfig, StatePlan};
use crate::connector::{ConnectorRegistry, Delivered, Sink, SourceContext};
use crate::error::{Error, Location, Result, SqlError};
use crate::operators::EmitPolicy;
use crate::plan::{LowerOptions, OperatorGraph, lower_query_with};
use crate::runtime::{QueryIo, QueryMetrics, RunningQuery, StopHandle};
use crate::sql::{CreateSink, Options, ParsedStatement, Statement, StreamParser};

/// The name of a query that writes to no declared sink.
pub const BARE_QUERY_NAME: &str = "query";

/// Settings of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rows per batch that sources aim for.
    pub batch_size: usize,
    /// When false, `CREATE SINK ... AS` plans its query without starting it
    /// ([`StatementOutcome::SinkPlanned`]): for checks, tests and EXPLAIN.
    pub start_queries: bool,
    /// The most windows a `HOP` may put one event in.
    pub max_windows_per_event: usize,
    /// Where queries checkpoint their state and resume from it; `None` keeps state in
    /// memory only (after a restart, sources resume from what they acknowledged).
    pub state: Option<crate::checkpoint::StateConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            batch_size: 8192,
            start_queries: true,
            max_windows_per_event: crate::catalog::DEFAULT_MAX_WINDOWS_PER_EVENT,
            state: None,
        }
    }
}

/// What executing one statement did.
pub enum StatementOutcome {
    /// A source, view or sink was declared.
    Created {
        /// `source`, `view` or `sink`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A source, view or sink was removed.
    Dropped {
        /// `source`, `view` or `sink`.
        kind: String,
        /// Its name.
        name: String,
        /// The running queries `CASCADE` stopped because they used it.
        stopped: Vec<String>,
    },
    /// `CREATE SINK ... AS SELECT`: the query now runs, writing to the sink.
    SinkStarted {
        /// The sink's name.
        name: String,
        /// The running query.
        query: RunningQuery,
    },
    /// `CREATE SINK ... AS` with [`EngineConfig::start_queries`] off: planned, not started.
    SinkPlanned {
        /// The sink's name.
        name: String,
        /// The planned query.
        query: PlannedQuery,
    },
    /// A bare query, planned; the caller chooses where its rows go with [`Engine::start`].
    Query(PlannedQuery),
    /// A query that reads no source (`SELECT 1 + 1`), evaluated once: its rows.
    Rows(Vec<datafusion::arrow::record_batch::RecordBatch>),
    /// The operator graph of an `EXPLAIN`ed statement.
    Explain(String),
}

/// A planned query, not yet running.
pub struct PlannedQuery {
    /// Its name: the sink it writes to, or `query` for a bare SELECT. Sources use it to
    /// name what belongs to the query, such as Kafka consumer groups.
    pub name: String,
    /// Its operators.
    pub graph: OperatorGraph,
    /// Its SQL text.
    pub sql: String,
}

/// What decides whether a query can take a checkpoint's state: its name, its plan's
/// fingerprint and the sources it reads, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryIdentity {
    /// The query's name.
    pub name: String,
    /// [`OperatorGraph::fingerprint`].
    pub fingerprint: String,
    /// Its sources' names.
    pub sources: Vec<String>,
}

impl PlannedQuery {
    /// Its [`QueryIdentity`].
    pub fn identity(&self) -> QueryIdentity {
        QueryIdentity {
            name: self.name.clone(),
            fingerprint: self.graph.fingerprint(),
            sources: self
                .graph
                .sources
                .iter()
                .map(|s| s.def.name.clone())
                .collect(),
        }
    }

    /// The result schema (with a leading `op` column when the query is updating).
    pub fn output_schema(&self) -> SchemaRef {
        output_schema(&self.graph)
    }
}

/// The schema rows have when they reach a sink.
pub fn output_schema(graph: &OperatorGraph) -> SchemaRef {
    if !graph.updating {
        return Arc::clone(&graph.schema);
    }
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, false))];
    fields.extend(graph.schema.fields().iter().cloned());
    let metadata = [(
        crate::connector::CHANGELOG_METADATA_KEY.to_string(),
        "true".to_string(),
    )];
    Arc::new(Schema::new(fields).with_metadata(metadata.into()))
}

/// The streaming SQL engine: a catalog of sources, views and sinks, the connectors that
/// can back them, and the queries it starts.
pub struct Engine {
    catalog: Catalog,
    registry: ConnectorRegistry,
    config: EngineConfig,
    /// The queries this engine started, with what they use, so a DROP can tell.
    running: Mutex<Vec<QueryUse>>,
}

/// What a running query reads and writes.
struct QueryUse {
    query: String,
    sources: Vec<String>,
    sink: Option<String>,
    stop: StopHandle,
}

impl Engine {
    /// An engine with the given connectors.
    pub fn new(registry: ConnectorRegistry) -> Self {
        Self::with_config(registry, EngineConfig::default())
    }

    /// An engine with the given connectors and settings.
    pub fn with_config(registry: ConnectorRegistry, config: EngineConfig) -> Self {
        let catalog = Catalog::new();
        catalog.set_max_windows_per_event(config.max_windows_per_event);
        Self {
            catalog,
            registry,
            config,
            running: Mutex::default(),
        }
    }

    /// How a `CREATE SINK ... AS` query is planned: with the state TTL of its `WITH`, or of
    /// the sink it attaches to, or the session's.
    fn sink_lower_options(&self, sink: &CreateSink) -> Result<LowerOptions> {
        let name = crate::catalog::normalize(&sink.name);
        let options = match (sink.options.connector(), self.catalog.sinks().get(&name)) {
            (None, Some(declared)) => &declared.options,
            _ => &sink.options,
        };
        let (planner, _) = sink_planner_options(options)?;
        let query = sink.query.as_ref();
        Ok(LowerOptions {
            state_ttl: planner.state_ttl.or(self.catalog.state_ttl()),
            view: false,
            emit: query
                .map_or(Ok(None), |q| self.query_emit(q))?
                .unwrap_or(planner.emit),
        })
    }

    /// Lowering options for a bare query: the session's state TTL, the query's EMIT.
    fn query_lower_options(
        &self,
        query: &datafusion::sql::sqlparser::ast::Query,
    ) -> Result<LowerOptions> {
        Ok(LowerOptions {
            state_ttl: self.catalog.state_ttl(),
            view: false,
            emit: self.query_emit(query)?.unwrap_or_default(),
        })
    }

    /// The emit policy a query's `EMIT EARLY EVERY` / `ALLOWED LATENESS` clauses set (the
    /// parser made them its SETTINGS); `None` without them.
    fn query_emit(
        &self,
        query: &datafusion::sql::sqlparser::ast::Query,
    ) -> Result<Option<EmitPolicy>> {
        use crate::sql::emit_clause::{ALLOWED_LATENESS_SETTING, EMIT_EARLY_SETTING};
        let Some(settings) = &query.settings else {
            return Ok(None);
        };
        let empty = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let mut policy = EmitPolicy::default();
        for setting in settings {
            let key = setting.key.value.as_str();
            let what = match key {
                EMIT_EARLY_SETTING => "EMIT EARLY EVERY",
                ALLOWED_LATENESS_SETTING => "ALLOWED LATENESS",
                _ => return Err(Error::Unsupported(format!("SETTINGS {key}"))),
            };
            let value = self.catalog.plan_row_expr(&setting.value, &empty)?;
            let nanos = crate::plan::window_table::interval_nanos(&value, what)?;
            match key {
                EMIT_EARLY_SETTING => policy.early_every = Some(nanos),
                _ => policy.allowed_lateness = nanos,
            }
        }
        Ok(Some(policy))
    }

    /// The session's state TTL for joins with no time bound whose sink sets none
    /// (see [`Catalog::set_state_ttl`]); parsed as `state_ttl` is, e.g. `7 days`.
    pub fn set_state_ttl(&mut self, ttl: Option<&str>) -> Result<()> {
        let ttl = ttl.map(parse_state_ttl).transpose()?;
        self.catalog.set_state_ttl(ttl);
        Ok(())
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The connectors.
    pub fn registry(&self) -> &ConnectorRegistry {
        &self.registry
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Changes the settings.
    pub fn config_mut(&mut self) -> &mut EngineConfig {
        &mut self.config
    }

    /// Parses and executes every statement of `sql` in order. DDL changes the catalog,
    /// `CREATE SINK ... AS` starts a query, and a bare query is returned planned.
    pub async fn execute(&mut self, sql: &str) -> Result<Vec<StatementOutcome>> {
        let statements = StreamParser::parse_sql(sql)?;
        let mut outcomes = Vec::with_capacity(statements.len());
        for statement in statements {
            outcomes.push(self.execute_statement(statement).await?);
        }
        Ok(outcomes)
    }

    /// Executes one parsed statement, planning it on a large stack (see `deep_stack`).
    pub async fn execute_statement(&mut self, parsed: ParsedStatement) -> Result<StatementOutcome> {
        let (location, sql) = (parsed.location, parsed.sql.clone());
        crate::deep_stack::on_planning_stack(self.execute_inner(parsed))
            .map_err(planning_thread)?
            .map_err(|e| at_statement(e, location, &sql))
    }

    async fn execute_inner(&mut self, parsed: ParsedStatement) -> Result<StatementOutcome> {
        let ParsedStatement {
            statement,
            sql,
            location,
        } = parsed;
        match statement {
            Statement::CreateSource(src) => {
                let mut def = self.catalog.plan_source(&src, &sql, location).await?;
                let factory = self.registry.factory(&def.options)?;
                def.shared_splits = factory.shares_splits(&def.options);
                let ctx = SourceContext {
                    name: def.name.clone(),
                    metrics: Arc::new(QueryMetrics::default()),
                    batch_size: self.config.batch_size,
                    query: String::new(),
                    delivered: Arc::default(),
                    read_columns: None,
                    split_state: false,
                    table_key: def.primary_key.clone(),
                };
                factory.create_source(&def.options, Arc::clone(&def.schema), ctx)?;
                let name = def.name.clone();
                self.catalog.add_source(def)?;
                Ok(StatementOutcome::Created {
                    kind: "source",
                    name,
                })
            }
            Statement::CreateView(view) => {
                if self.query_emit(&view.query)?.is_some() {
                    return Err(Error::Unsupported(
                        "EMIT EARLY or ALLOWED LATENESS in a view: write it on the query or \
                         sink that reads the view"
                            .into(),
                    ));
                }
                let plan = self.catalog.plan_query(&view.query).await?;
                // Plan it as a stream now, so an unsupported view fails at CREATE time (a
                // state TTL it needs comes with the query that reads it).
                let options = LowerOptions {
                    state_ttl: self.catalog.state_ttl(),
                    view: true,
                    emit: EmitPolicy::default(),
                };
                lower_query_with(&self.catalog, &plan, options)?;
                let name =
                    self.catalog
                        .add_view(&view.name, plan, &sql, view.or_replace, location)?;
                Ok(StatementOutcome::Created { kind: "view", name })
            }
            Statement::CreateSink(sink) => {
                let name = crate::catalog::normalize(&sink.name);
                let options = if sink.options.connector().is_none() && sink.query.is_some() {
                    match self.catalog.sinks().get(&name) {
                        // A declared sink; or, for OR REPLACE, the one a query writes now.
                        Some(declared) if !declared.has_query || sink.or_replace => {
                            declared.options.clone()
                        }
                        _ => {
                            return Err(Error::Plan(format!(
                                "sink '{name}' has no connector: declare it first (CREATE SINK {name} WITH (connector = ...)) or give it a WITH clause"
                            )));
                        }
                    }
                } else {
                    sink.options.clone()
                };
                let def = SinkDef {
                    name: name.clone(),
                    options,
                    has_query: sink.query.is_some(),
                    sql: sql.clone(),
                };
                let (planner, connector_options) = sink_planner_options(&def.options)?;
                let Some(query) = sink.query else {
                    let factory = self.registry.factory(&connector_options)?;
                    factory.create_sink(
                        &connector_options,
                        Arc::new(datafusion::arrow::datatypes::Schema::empty()),
                    )?;
                    self.catalog.add_sink(def, sink.or_replace, location)?;
                    return Ok(StatementOutcome::Created { kind: "sink", name });
                };
                let plan = self.catalog.plan_query(&query).await?;
                let options = LowerOptions {
                    state_ttl: planner.state_ttl.or(self.catalog.state_ttl()),
                    view: false,
                    emit: self.query_emit(&query)?.unwrap_or(planner.emit),
                };
                let graph = lower_query_with(&self.catalog, &plan, options)?;
                let mut sink_writer = self
                    .registry
                    .factory(&connector_options)?
                    .create_sink(&connector_options, output_schema(&graph))?;
                if self.config.start_queries {
                    sink_writer.open().await?;
                }
                self.catalog.add_sink(def, sink.or_replace, location)?;
                if !self.config.start_queries {
                    return Ok(StatementOutcome::SinkPlanned {
                        name: name.clone(),
                        query: PlannedQuery { name, graph, sql },
                    });
                }
                let planned = PlannedQuery {
                    name: name.clone(),
                    graph,
                    sql,
                };
                let query = self.start(planned, sink_writer)?;
                Ok(StatementOutcome::SinkStarted { name, query })
            }
            Statement::Query(query) => {
                let plan = self.catalog.plan_query(&query).await?;
                if reads_no_table(&plan)? {
                    return Ok(StatementOutcome::Rows(self.catalog.evaluate(plan).await?));
                }
                let options = self.query_lower_options(&query)?;
                let graph = lower_query_with(&self.catalog, &plan, options)?;
                Ok(StatementOutcome::Query(PlannedQuery {
                    name: BARE_QUERY_NAME.to_string(),
                    graph,
                    sql,
                }))
            }
            Statement::Explain(inner) => {
                let mut options = LowerOptions {
                    state_ttl: self.catalog.state_ttl(),
                    view: false,
                    emit: EmitPolicy::default(),
                };
                let query = match *inner {
                    Statement::Query(q) => {
                        options = self.query_lower_options(&q)?;
                        q
                    }
                    Statement::CreateSink(s) if s.query.is_some() => {
                        options = self.sink_lower_options(&s)?;
                        s.query.expect("checked above")
                    }
                    Statement::CreateView(v) => v.query,
                    _ => {
                        return Err(Error::Plan(
                            "EXPLAIN takes a query, a CREATE VIEW or a CREATE SINK ... AS".into(),
                        ));
                    }
                };
                let plan = self.catalog.plan_query(&query).await?;
                Ok(StatementOutcome::Explain(
                    lower_query_with(&self.catalog, &plan, options)?.explain(),
                ))
            }
            Statement::Drop {
                kind,
                name,
                if_exists,
                cascade,
            } => {
                let stopped = self.release(&kind, &name, cascade)?;
                let removed = self.catalog.drop_object(&kind, &name)?;
                if !removed && !if_exists {
                    return Err(Error::Plan(format!("no {kind} named '{name}'")));
                }
                Ok(StatementOutcome::Dropped {
                    kind,
                    name,
                    stopped,
                })
            }
        }
    }

    /// Before `DROP kind name`: the running queries that read or write the object. Without
    /// `cascade` their existence refuses the drop, naming them; with it they are stopped,
    /// and their names returned.
    fn release(&mut self, kind: &str, name: &str, cascade: bool) -> Result<Vec<String>> {
        let name = name.to_ascii_lowercase();
        let running = self.running.get_mut().unwrap_or_else(|e| e.into_inner());
        running.retain(|q| !q.stop.is_finished());
        let users: Vec<&QueryUse> = running
            .iter()
            .filter(|q| match kind {
                "source" => q.sources.contains(&name),
                "sink" => q.sink.as_deref() == Some(name.as_str()),
                _ => false,
            })
            .collect();
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = users.iter().map(|q| q.query.clone()).collect();
        if !cascade {
            let verb = if kind == "sink" { "writes" } else { "reads" };
            return Err(Error::Plan(format!(
                "{kind} '{name}' is in use: running {} {verb} it ({}); stop {} first, or \
                 DROP {} {name} CASCADE to stop {} with it",
                if names.len() == 1 { "query" } else { "queries" },
                names.join(", "),
                if names.len() == 1 { "it" } else { "them" },
                kind.to_ascii_uppercase(),
                if names.len() == 1 { "it" } else { "them" },
            )));
        }
        for query in users {
            query.stop.stop();
        }
        Ok(names)
    }

    /// Removes a source, view or sink from the catalog; false when there was none. Queries
    /// already running keep what they planned with.
    pub fn drop_object(&mut self, kind: &str, name: &str) -> Result<bool> {
        self.catalog.drop_object(kind, name)
    }

    /// Plans a query given as SQL text (a SELECT, or the query of a `CREATE SINK ... AS`).
    pub async fn plan(&self, sql: &str) -> Result<PlannedQuery> {
        let statements = StreamParser::parse_sql(sql)?;
        crate::deep_stack::on_planning_stack(self.plan_parsed(statements))
            .map_err(planning_thread)?
    }

    async fn plan_parsed(&self, mut statements: Vec<ParsedStatement>) -> Result<PlannedQuery> {
        if statements.len() != 1 {
            return Err(Error::Plan(format!(
                "expected one query, found {} statements",
                statements.len()
            )));
        }
        let ParsedStatement {
            statement,
            sql,
            location,
        } = statements.remove(0);
        let placed = |e: Error| at_statement(e, location, &sql);
        let (name, query, state_ttl) = match statement {
            Statement::Query(query) => {
                let options = self.query_lower_options(&query).map_err(placed)?;
                (BARE_QUERY_NAME.to_string(), query, options)
            }
            Statement::CreateSink(sink) if sink.query.is_some() => {
                let options = self.sink_lower_options(&sink).map_err(placed)?;
                let name = crate::catalog::normalize(&sink.name);
                (name, sink.query.expect("checked by the guard"), options)
            }
            _ => return Err(placed(Error::Plan("expected a query (SELECT ...)".into()))),
        };
        let plan = self.catalog.plan_query(&query).await.map_err(placed)?;
        let graph = lower_query_with(&self.catalog, &plan, state_ttl).map_err(placed)?;
        Ok(PlannedQuery { name, graph, sql })
    }

    /// Starts a planned query writing its results to `sink`. Needs a tokio runtime.
    pub fn start(&self, query: PlannedQuery, sink: Box<dyn Sink>) -> Result<RunningQuery> {
        let state = self.durable_state(&query.name);
        self.start_with_state(query, sink, state)
    }

    /// [`Engine::start`], dropping the query's checkpoints first whatever
    /// [`StatePlan`] says: a new version of a rule deployed on purpose.
    pub fn start_resetting_state(
        &self,
        query: PlannedQuery,
        sink: Box<dyn Sink>,
    ) -> Result<RunningQuery> {
        let state = self.durable_state(&query.name).map(|mut state| {
            state.reset = true;
            state
        });
        self.start_with_state(query, sink, state)
    }

    /// What starting the query `identity` describes would do with the state
    /// checkpointed under its name.
    pub async fn state_plan(&self, identity: &QueryIdentity) -> Result<StatePlan> {
        let Some(state) = self.durable_state(&identity.name) else {
            return Ok(StatePlan::NotDurable);
        };
        let mut manifests = Vec::new();
        let whole = QueryCheckpoints::new(&state.location, &identity.name);
        manifests.extend(whole.latest_manifest().await?);
        for split in QueryCheckpoints::splits(&state.location, &identity.name).await? {
            let store = QueryCheckpoints::of_split(&state.location, &identity.name, split);
            manifests.extend(store.latest_manifest().await?);
        }
        let Some(epoch) = manifests.iter().map(|m| m.epoch).max() else {
            return Ok(StatePlan::Fresh);
        };
        let fits = (manifests.iter()).all(|m| m.fits(&identity.fingerprint, &identity.sources));
        Ok(if !state.reset && fits {
            StatePlan::Kept { epoch }
        } else {
            StatePlan::Reset { epoch }
        })
    }

    /// Where query `name` checkpoints: queries writing to a declared sink are durable when
    /// a state dir is set; an interactive SELECT is not.
    fn durable_state(&self, name: &str) -> Option<StateConfig> {
        let durable = self.catalog.sinks().contains_key(name);
        self.config.state.clone().filter(|_| durable)
    }

    fn start_with_state(
        &self,
        query: PlannedQuery,
        sink: Box<dyn Sink>,
        state: Option<StateConfig>,
    ) -> Result<RunningQuery> {
        let metrics = Arc::new(QueryMetrics::default());
        let graph = query.graph;
        let sources_read: Vec<String> = graph.sources.iter().map(|s| s.def.name.clone()).collect();
        for warning in &graph.warnings {
            tracing::warn!(query = %query.name, "{warning}");
        }
        let delivered: Vec<Arc<Delivered>> = graph.sources.iter().map(|_| Arc::default()).collect();
        let late_sinks = graph
            .late_outputs
            .iter()
            .map(|late| {
                let factory = self.registry.factory(&late.sink.options)?;
                Ok(factory.create_sink(&late.sink.options, Arc::clone(&late.schema))?)
            })
            .collect::<Result<Vec<_>>>()?;
        let single_writer = sink.single_writer() || late_sinks.iter().any(|s| s.single_writer());
        let split_state = state.is_some() && graph.split_local && !single_writer;
        let sources = graph
            .sources
            .iter()
            .zip(&delivered)
            .map(|(binding, delivered)| {
                let def = &binding.def;
                let ctx = SourceContext {
                    name: def.name.clone(),
                    metrics: Arc::clone(&metrics),
                    batch_size: self.config.batch_size,
                    query: query.name.clone(),
                    delivered: Arc::clone(delivered),
                    read_columns: binding.read_columns.clone(),
                    split_state,
                    table_key: def.primary_key.clone(),
                };
                let factory = self.registry.factory(&def.options)?;
                Ok(factory.create_source(&def.options, Arc::clone(&def.schema), ctx)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let dead_letters = self.dead_letter_sink(&graph)?;
        let running = RunningQuery::start(
            graph,
            QueryIo {
                query: query.name.clone(),
                sources,
                delivered,
                sink,
                late_sinks,
                dead_letters,
                split_state,
            },
            metrics,
            state,
        );
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(QueryUse {
                sink: self
                    .catalog
                    .sinks()
                    .contains_key(&query.name)
                    .then(|| query.name.clone()),
                query: query.name,
                sources: sources_read,
                stop: running.stop_handle(),
            });
        Ok(running)
    }
}

fn planning_thread(e: std::io::Error) -> Error {
    Error::Execution(format!("cannot start a planning thread: {e}"))
}

impl Engine {
    /// Where rows of `graph` that an expression fails on go: the dead-letter destination of
    /// the first of its sources that declares one.
    fn dead_letter_sink(&self, graph: &OperatorGraph) -> Result<Option<Box<dyn Sink>>> {
        for binding in &graph.sources {
            let options = &binding.def.options;
            if let Some(sink) = self
                .registry
                .factory(options)?
                .create_dead_letter_sink(options)?
            {
                return Ok(Some(sink));
            }
        }
        Ok(None)
    }
}

/// Gives user errors without a position one: the clause their message names, found among
/// the statement's tokens (`sql`, starting at `location`), else the statement's start.
fn at_statement(e: Error, location: Location, sql: &str) -> Error {
    let place = |message: &str| {
        Some(crate::sql::locate::locate(sql, location, message).unwrap_or(location))
    };
    match e {
        Error::Plan(message) => Error::Sql(SqlError::new(message.clone(), place(&message))),
        Error::Unsupported(message) => {
            let message = format!("not supported: {message}");
            Error::Sql(SqlError::new(message.clone(), place(&message)))
        }
        Error::Connector(c) => {
            let message = c.to_string();
            Error::Sql(SqlError::new(message.clone(), place(&message)))
        }
        Error::DataFusion(d) => at_statement(crate::catalog::from_datafusion(d), location, sql),
        Error::Sql(mut e) if e.location.is_none() => {
            e.location = place(&e.message);
            Error::Sql(e)
        }
        other => other,
    }
}

/// Whether a plan reads no source, view or window: a constant query, such as `SELECT 1 + 1`.
fn reads_no_table(plan: &datafusion::logical_expr::LogicalPlan) -> Result<bool> {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::LogicalPlan;
    let reads = plan
        .exists(|node| Ok(matches!(node, LogicalPlan::TableScan(_))))
        .map_err(crate::catalog::from_datafusion)?;
    Ok(!reads)
}

/// A sink's options as its connector takes them: without those the planner reads
/// (`state_ttl`, `emit_early`, `allowed_lateness`).
pub fn sink_connector_options(options: &Options) -> Result<Options> {
    Ok(sink_planner_options(options)?.1)
}

/// What the planner reads of a sink's options.
struct PlannerOptions {
    /// `state_ttl`, in nanoseconds.
    state_ttl: Option<i64>,
    /// `emit_early` and `allowed_lateness`.
    emit: EmitPolicy,
}

/// A sink's options for the planner, and the others (for the sink's connector).
fn sink_planner_options(options: &Options) -> Result<(PlannerOptions, Options)> {
    let mut rest = options.clone();
    let state_ttl = rest
        .remove("state_ttl")
        .map(|raw| parse_state_ttl(&raw))
        .transpose()?;
    let mut duration = |key: &str| {
        (rest.remove(key))
            .map(|raw| positive_duration(key, &raw, "'1 minute' or '10 min'"))
            .transpose()
    };
    let emit = EmitPolicy {
        early_every: duration("emit_early")?,
        allowed_lateness: duration("allowed_lateness")?.unwrap_or(0),
    };
    Ok((PlannerOptions { state_ttl, emit }, rest))
}

/// A `state_ttl` in nanoseconds: a positive duration such as `7 days`.
fn parse_state_ttl(raw: &str) -> Result<i64> {
    positive_duration("state_ttl", raw, "'7 days', '12 hours' or '30 min'")
}

/// Option `key`'s value `raw` in nanoseconds, a positive duration; the error names
/// `examples`.
fn positive_duration(key: &str, raw: &str, examples: &str) -> Result<i64> {
    crate::sql::parse_duration(raw)
        .filter(|d| !d.is_zero())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .ok_or_else(|| {
            Error::Plan(format!(
                "{key} '{raw}': expected a duration such as {examples}"
            ))
        })
}
