//! The [`Catalog`]: sources, views and sinks, and the DataFusion session that plans SQL
//! against them.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ToDFSchema};
use datafusion::datasource::{TableType, ViewTable};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::Optimizer;
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::simplify_expressions::{ExprSimplifier, SimplifyExpressions};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, ObjectName, helpers::stmt_create_table::CreateTableBuilder,
};

use crate::error::{Error, Location, Result, SqlError};
use crate::plan::match_planning::{Clause, plan_match};
use crate::plan::match_table::MatchTable;
use crate::plan::window_table::{CumulateFunction, HopFunction, SessionFunction, TumbleFunction};
use crate::sql::{CreateSource, Options};

/// A declared source.
#[derive(Debug)]
pub struct SourceDef {
    /// Name in the catalog.
    pub name: String,
    /// Declared columns.
    pub schema: SchemaRef,
    /// The event-time watermark, if declared.
    pub watermark: Option<SourceWatermark>,
    /// Connector options.
    pub options: Options,
    /// The sink that receives this source's late events (`late_sink = 'name'`).
    pub late_sink: Option<String>,
    /// Columns the input is partitioned by (`partitioned_by = 'a, b'`): every row with the
    /// same values comes through the same split, so processes sharing the splits can
    /// aggregate by those columns independently.
    pub partitioned_by: Option<Vec<String>>,
    /// For a table (`CREATE TABLE ... PRIMARY KEY`), its key columns' indices: the table is
    /// the latest row per key, read by lookup joins. Empty for a source.
    pub primary_key: Vec<usize>,
    /// How far its watermark may get ahead of the query's other sources' before it stops
    /// reading (`max_drift = '30s'`, Flink's watermark alignment); `None`: it never waits.
    pub max_drift: Option<std::time::Duration>,
    /// True when several processes running one query share the source's splits (Kafka
    /// partitions through a consumer group), each reading only some of them.
    pub shared_splits: bool,
    /// The CREATE statement.
    pub sql: String,
}

/// A source's `WATERMARK FOR column AS expr`, planned.
#[derive(Debug, Clone)]
pub struct SourceWatermark {
    /// The event-time column.
    pub column: String,
    /// Its index in the source schema.
    pub column_index: usize,
    /// The watermark expression over a row, type-checked.
    pub expr: Expr,
    /// The expression as written, for EXPLAIN.
    pub sql: String,
}

/// A declared sink.
#[derive(Debug)]
pub struct SinkDef {
    /// Name in the catalog.
    pub name: String,
    /// Connector options.
    pub options: Options,
    /// True when a query writes to it; false for a declaration only.
    pub has_query: bool,
    /// The CREATE statement.
    pub sql: String,
}

/// A declared view.
#[derive(Debug)]
pub struct ViewDef {
    /// Name in the catalog.
    pub name: String,
    /// The CREATE statement.
    pub sql: String,
}

/// Table providers by name, shared with the window table functions that resolve their
/// first argument here.
pub(crate) type Relations = Arc<RwLock<HashMap<String, Arc<dyn TableProvider>>>>;

/// Sources, views and sinks, plus the DataFusion session that plans queries over them.
pub struct Catalog {
    ctx: SessionContext,
    sources: BTreeMap<String, Arc<SourceDef>>,
    views: BTreeMap<String, Arc<ViewDef>>,
    sinks: BTreeMap<String, Arc<SinkDef>>,
    relations: Relations,
    max_windows_per_event: Arc<AtomicUsize>,
    state_ttl: Option<i64>,
}

/// The default of [`Catalog::set_max_windows_per_event`].
pub const DEFAULT_MAX_WINDOWS_PER_EVENT: usize = 1_000;

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        let mut config = SessionConfig::new().with_information_schema(false);
        let options = config.options_mut();
        options.sql_parser.collect_spans = true;
        options.sql_parser.map_string_types_to_utf8view = false;
        let ctx = SessionContext::new_with_config(config);
        crate::functions::register_bounded(&ctx);
        let relations: Relations = Arc::default();
        ctx.register_udtf(
            "tumble",
            Arc::new(TumbleFunction::new(Arc::clone(&relations))),
        );
        let max_windows_per_event = Arc::new(AtomicUsize::new(DEFAULT_MAX_WINDOWS_PER_EVENT));
        ctx.register_udtf(
            "hop",
            Arc::new(HopFunction::new(
                Arc::clone(&relations),
                Arc::clone(&max_windows_per_event),
            )),
        );
        ctx.register_udtf(
            "session",
            Arc::new(SessionFunction::new(Arc::clone(&relations))),
        );
        ctx.register_udtf(
            "cumulate",
            Arc::new(CumulateFunction::new(
                Arc::clone(&relations),
                Arc::clone(&max_windows_per_event),
            )),
        );
        Self {
            ctx,
            sources: BTreeMap::new(),
            views: BTreeMap::new(),
            sinks: BTreeMap::new(),
            relations,
            max_windows_per_event,
            state_ttl: None,
        }
    }

    /// The session's state TTL (nanoseconds): how long a join with no time bound keeps a row
    /// when the query's sink sets none (`state_ttl`). `None`: such joins are refused unless
    /// their inputs are keyed by the join keys.
    pub fn set_state_ttl(&mut self, ttl: Option<i64>) {
        self.state_ttl = ttl;
    }

    /// See [`Catalog::set_state_ttl`].
    pub fn state_ttl(&self) -> Option<i64> {
        self.state_ttl
    }

    /// The most windows a `HOP` or `CUMULATE` may put one event in (its size over its slide
    /// or step): each is
    /// state kept and a row emitted, so a tiny slide could exhaust memory.
    pub fn set_max_windows_per_event(&self, max: usize) {
        self.max_windows_per_event.store(max, Ordering::Relaxed);
    }

    /// The DataFusion session used for planning.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Declared sources by name.
    pub fn sources(&self) -> &BTreeMap<String, Arc<SourceDef>> {
        &self.sources
    }

    /// Declared views by name.
    pub fn views(&self) -> &BTreeMap<String, Arc<ViewDef>> {
        &self.views
    }

    /// Declared sinks by name.
    pub fn sinks(&self) -> &BTreeMap<String, Arc<SinkDef>> {
        &self.sinks
    }

    /// The schema of a source or view, as queries see it.
    pub fn relation_schema(&self, name: &str) -> Option<SchemaRef> {
        self.relations
            .read()
            .expect("relations lock")
            .get(name)
            .map(|table| table.schema())
    }

    /// Names of the functions a query may call: scalar, aggregate, window and table
    /// functions, sorted.
    pub fn function_names(&self) -> Vec<String> {
        let state = self.ctx.state();
        let mut names: Vec<String> = state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .chain(state.window_functions().keys())
            .chain(state.table_functions().keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn check_free(&self, name: &str, replace: bool, location: Location) -> Result<()> {
        let taken = self.sources.contains_key(name)
            || self.views.contains_key(name)
            || self.sinks.contains_key(name);
        if taken && !replace {
            return Err(Error::Sql(
                SqlError::new(format!("'{name}' already exists"), Some(location))
                    .with_help("use CREATE OR REPLACE, or choose another name"),
            ));
        }
        Ok(())
    }

    /// Plans a `CREATE SOURCE` into a [`SourceDef`] (not yet added).
    pub async fn plan_source(
        &self,
        src: &CreateSource,
        sql: &str,
        location: Location,
    ) -> Result<SourceDef> {
        let name = normalize(&src.name);
        self.check_free(&name, src.or_replace, location)?;
        let schema = self.columns_schema(&src.columns).await?;
        let watermark = match &src.watermark {
            None => None,
            Some(wm) => {
                let column = normalize(&wm.column);
                let Ok(column_index) = schema.index_of(&column) else {
                    return Err(sql_error(
                        format!(
                            "WATERMARK FOR names '{column}', which is not a column of '{name}'"
                        ),
                        span_location(wm.column.span.start).or(Some(location)),
                    ));
                };
                if !matches!(
                    schema.field(column_index).data_type(),
                    DataType::Timestamp(_, _)
                ) {
                    return Err(sql_error(
                        format!("WATERMARK FOR column '{column}' must be a TIMESTAMP"),
                        span_location(wm.column.span.start).or(Some(location)),
                    ));
                }
                let at = span_location(wm.column.span.start).or(Some(location));
                check_watermark_expr(&wm.expr, at)?;
                let expr = self.plan_row_expr(&wm.expr, &schema).map_err(|e| match e {
                    // An error in the expression is about the WATERMARK clause.
                    Error::Sql(mut e) if e.location.is_none() => {
                        e.location = at;
                        Error::Sql(e)
                    }
                    other => other,
                })?;
                check_watermark_planned(&expr, &column, at)?;
                Some(SourceWatermark {
                    column,
                    column_index,
                    expr,
                    sql: wm.expr.to_string(),
                })
            }
        };
        let mut options = src.options.clone();
        let late_sink = options.remove("late_sink");
        let max_drift = options
            .remove("max_drift")
            .map(|raw| match (crate::sql::parse_duration(&raw), &watermark) {
                (Some(drift), Some(_)) => Ok(drift),
                (None, _) => Err(sql_error(
                    format!("max_drift: '{raw}' is no duration (write '30s' or '5 minutes')"),
                    Some(location),
                )),
                (Some(_), None) => Err(sql_error(
                    format!("max_drift: source '{name}' has no WATERMARK to align"),
                    Some(location),
                )),
            })
            .transpose()?;
        let partitioned_by = options
            .remove("partitioned_by")
            .map(|columns| {
                columns
                    .split(',')
                    .map(|c| {
                        let c = c.trim();
                        schema.index_of(c).map(|_| c.to_string()).map_err(|_| {
                            Error::Sql(SqlError::new(
                                format!("partitioned_by: source '{name}' has no column '{c}'"),
                                Some(location),
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let primary_key = (src.primary_key.iter())
            .map(|column| {
                let c = normalize(column);
                schema.index_of(&c).map_err(|_| {
                    sql_error(
                        format!("PRIMARY KEY names '{c}', which is not a column of '{name}'"),
                        span_location(column.span.start).or(Some(location)),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SourceDef {
            name,
            schema,
            watermark,
            options,
            late_sink,
            max_drift,
            partitioned_by,
            primary_key,
            shared_splits: false,
            sql: sql.to_string(),
        })
    }

    /// Adds a planned source.
    pub fn add_source(&mut self, def: SourceDef) -> Result<()> {
        let def = Arc::new(def);
        let table: Arc<dyn TableProvider> = Arc::new(SourceTable {
            def: Arc::clone(&def),
        });
        self.register(&def.name, Arc::clone(&table))?;
        self.sources.insert(def.name.clone(), def);
        Ok(())
    }

    /// Adds a view over an already planned query; returns its catalog name.
    pub fn add_view(
        &mut self,
        name: &ObjectName,
        plan: LogicalPlan,
        sql: &str,
        replace: bool,
        location: Location,
    ) -> Result<String> {
        let name = object_name(name);
        self.check_free(&name, replace, location)?;
        let table: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(sql.to_string())));
        self.register(&name, table)?;
        self.views.insert(
            name.clone(),
            Arc::new(ViewDef {
                name: name.clone(),
                sql: sql.to_string(),
            }),
        );
        Ok(name)
    }

    /// Adds a sink. A query may take over a declared sink of the same name.
    pub fn add_sink(&mut self, def: SinkDef, replace: bool, location: Location) -> Result<()> {
        let takes_declaration =
            def.has_query && self.sinks.get(&def.name).is_some_and(|s| !s.has_query);
        self.check_free(&def.name, replace || takes_declaration, location)?;
        self.sinks.insert(def.name.clone(), Arc::new(def));
        Ok(())
    }

    /// Removes a source, view or sink; false when there was none.
    pub fn drop_object(&mut self, kind: &str, name: &str) -> Result<bool> {
        let removed = match kind {
            "source" => self.sources.remove(name).is_some(),
            "view" => self.views.remove(name).is_some(),
            "sink" => return Ok(self.sinks.remove(name).is_some()),
            other => return Err(Error::Plan(format!("cannot drop a {other}"))),
        };
        if removed {
            self.relations.write().expect("relations lock").remove(name);
            self.ctx.deregister_table(name)?;
        }
        Ok(removed)
    }

    fn register(&mut self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, Arc::clone(&table))?;
        self.relations
            .write()
            .expect("relations lock")
            .insert(name.to_string(), table);
        Ok(())
    }

    /// Evaluates a plan that reads no table once, as DataFusion would any query.
    pub async fn evaluate(&self, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
        let frame = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(from_datafusion)?;
        frame.collect().await.map_err(from_datafusion)
    }

    /// Plans a query into a type-checked DataFusion logical plan.
    pub async fn plan_query(&self, query: &ast::Query) -> Result<LogicalPlan> {
        if let Some(problem) = crate::sql::unsupported::check(query) {
            return Err(Error::Unsupported(problem));
        }
        let mut query = query.clone();
        lowercase_table_functions(&mut query);
        let matches = self.register_matches(&mut query).await?;
        let statement = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(query))));
        let state = self.ctx.state();
        let plan = state.statement_to_plan(statement).await;
        self.deregister(&matches);
        self.analyze(plan.map_err(from_datafusion)?)
            .map_err(from_datafusion)
    }

    /// Plans each MATCH_RECOGNIZE of `query` into a table registered under a name of its
    /// own, which replaces it in the query; the names, to deregister once it is planned.
    async fn register_matches(&self, query: &mut ast::Query) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for (name, factor) in take_match_recognize(query) {
            match self.match_table(&factor).await {
                Ok(table) => {
                    self.ctx.register_table(&name, Arc::new(table))?;
                    names.push(name);
                }
                Err(e) => {
                    self.deregister(&names);
                    return Err(e);
                }
            }
        }
        Ok(names)
    }

    fn deregister(&self, names: &[String]) {
        for name in names {
            let _ = self.ctx.deregister_table(name.as_str());
        }
    }

    async fn match_table(&self, factor: &ast::TableFactor) -> Result<MatchTable> {
        let (table, clause) = Clause::of(factor)
            .ok_or_else(|| Error::Internal("a MATCH_RECOGNIZE that is not one".into()))?;
        let input = select_all_from(table.clone())?;
        let input = Box::pin(self.plan_query(&input)).await?;
        plan_match(self, input, &clause)
    }

    /// Runs DataFusion's analyzer (type coercion and friends) and expression simplification
    /// (which physical planning relies on, e.g. to turn `coalesce` into CASE) over a plan.
    ///
    /// The rest of DataFusion's optimizer is left out on purpose: rules such as
    /// `SingleDistinctToGroupBy` rewrite aggregates into shapes that are only right for
    /// bounded input.
    pub(crate) fn analyze(
        &self,
        plan: LogicalPlan,
    ) -> std::result::Result<LogicalPlan, DataFusionError> {
        let state = self.ctx.state();
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})?;
        let simplify = Optimizer::with_rules(vec![Arc::new(SimplifyExpressions::new())]);
        simplify.optimize(plan, &state, |_, _| {})
    }

    /// `plan` with each table scan narrowed to the columns read above it, by DataFusion's
    /// `OptimizeProjections`: for learning what sources must decode, not for lowering.
    pub(crate) fn prune_columns(
        &self,
        plan: LogicalPlan,
    ) -> std::result::Result<LogicalPlan, DataFusionError> {
        let state = self.ctx.state();
        let prune = Optimizer::with_rules(vec![Arc::new(OptimizeProjections::new())]);
        prune.optimize(plan, &state, |_, _| {})
    }

    async fn columns_schema(&self, columns: &[ast::ColumnDef]) -> Result<SchemaRef> {
        let create = CreateTableBuilder::new(ObjectName::from(vec![ast::Ident::new("t")]))
            .columns(columns.to_vec())
            .build();
        let statement = DFStatement::Statement(Box::new(ast::Statement::CreateTable(create)));
        let plan = self
            .ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(from_datafusion)?;
        Ok(Arc::new(plan.schema().as_arrow().clone()))
    }

    /// Plans an expression over the rows of `schema`, with types coerced.
    pub(crate) fn plan_row_expr(&self, expr: &ast::Expr, schema: &SchemaRef) -> Result<Expr> {
        let df_schema: DFSchema = Arc::clone(schema)
            .to_dfschema()
            .map_err(Error::DataFusion)?;
        let state = self.ctx.state();
        let sql_expr = ast::ExprWithAlias {
            expr: expr.clone(),
            alias: None,
        };
        let planned = state
            .create_logical_expr_from_sql_expr(sql_expr, &df_schema)
            .map_err(from_datafusion)?;
        let simplifier = ExprSimplifier::new(
            datafusion::optimizer::simplify_expressions::SimplifyContext::builder()
                .with_schema(Arc::new(df_schema.clone()))
                .build(),
        );
        let coerced = simplifier
            .coerce(planned, &df_schema)
            .map_err(from_datafusion)?;
        simplifier.simplify(coerced).map_err(from_datafusion)
    }
}

/// A source as DataFusion sees it: a schema it can plan against but never scan itself.
#[derive(Debug)]
pub(crate) struct SourceTable {
    pub(crate) def: Arc<SourceDef>,
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.def.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "source '{}' is a stream and is read by Vigil's runtime, not scanned",
            self.def.name
        )))
    }
}

/// What a `WATERMARK FOR ts AS expr` must be: a function of the row's own event time. An
/// aggregate, a subquery or a window would need rows other than the one at hand.
fn check_watermark_expr(expr: &ast::Expr, at: Option<Location>) -> Result<()> {
    let mut found = None;
    let _ = ast::visit_expressions(expr, |e: &ast::Expr| {
        found = match e {
            ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. } => {
                Some("a subquery")
            }
            ast::Expr::Function(f) if f.over.is_some() => Some("a window function"),
            _ => None,
        };
        if found.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    match found {
        Some(what) => Err(watermark_error(format!("cannot use {what}"), at)),
        None => Ok(()),
    }
}

/// The planned watermark expression: no aggregate, nothing volatile (`now()`, `random()`),
/// and it must read the event-time column.
fn check_watermark_planned(expr: &Expr, column: &str, at: Option<Location>) -> Result<()> {
    let mut aggregate = false;
    let _ = expr.apply(|e| {
        aggregate |= matches!(e, Expr::AggregateFunction(_));
        Ok(if aggregate {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if aggregate {
        return Err(watermark_error("cannot use an aggregate".into(), at));
    }
    if expr.is_volatile() {
        return Err(watermark_error(
            "cannot use a function whose value changes from call to call, such as now()".into(),
            at,
        ));
    }
    if !expr.column_refs().iter().any(|c| c.name == column) {
        return Err(watermark_error(
            format!("must be computed from the event time '{column}'"),
            at,
        ));
    }
    Ok(())
}

fn watermark_error(problem: String, at: Option<Location>) -> Error {
    Error::Sql(
        SqlError::new(
            format!("the WATERMARK expression {problem}: it is worked out for each row alone"),
            at,
        )
        .with_help(
            "write it from the row's event time, e.g. WATERMARK FOR ts AS ts - INTERVAL '5' SECOND",
        ),
    )
}

/// Takes each MATCH_RECOGNIZE out of `query`, leaving a table of a fresh name in its place
/// (with its alias); the names and the clauses.
fn take_match_recognize(query: &mut ast::Query) -> Vec<(String, ast::TableFactor)> {
    struct Take(Vec<(String, ast::TableFactor)>, Option<Error>);
    impl ast::VisitorMut for Take {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
            let ast::TableFactor::MatchRecognize { alias, .. } = factor else {
                return ControlFlow::Continue(());
            };
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let name = format!("__vigil_match_{}", NEXT.fetch_add(1, Ordering::Relaxed));
            match select_all_from_name(&name, alias.clone()) {
                Ok(table) => {
                    let clause = std::mem::replace(factor, table);
                    self.0.push((name, clause));
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    self.1 = Some(e);
                    ControlFlow::Break(())
                }
            }
        }
    }
    let mut take = Take(Vec::new(), None);
    let _ = ast::VisitMut::visit(query, &mut take);
    take.0
}

/// The table factor reading `name`, with `alias`.
fn select_all_from_name(name: &str, alias: Option<ast::TableAlias>) -> Result<ast::TableFactor> {
    let query = select_all_from_sql(&format!("SELECT * FROM \"{name}\""))?;
    let ast::SetExpr::Select(select) = *query.body else {
        return Err(Error::Internal("SELECT * is not a SELECT".into()));
    };
    let mut factor = select.from[0].relation.clone();
    if let ast::TableFactor::Table { alias: a, .. } = &mut factor {
        *a = alias;
    }
    Ok(factor)
}

/// `SELECT * FROM factor`.
fn select_all_from(factor: ast::TableFactor) -> Result<ast::Query> {
    let mut query = select_all_from_sql("SELECT * FROM t")?;
    if let ast::SetExpr::Select(select) = query.body.as_mut() {
        select.from[0].relation = factor;
    }
    Ok(query)
}

fn select_all_from_sql(sql: &str) -> Result<ast::Query> {
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
        .map_err(|e| Error::Internal(e.to_string()))?;
    match statements.into_iter().next() {
        Some(ast::Statement::Query(query)) => Ok(*query),
        _ => Err(Error::Internal("SELECT * is not a query".into())),
    }
}

/// DataFusion looks table functions up by their exact name; SQL users write `TUMBLE`.
fn lowercase_table_functions(query: &mut ast::Query) {
    let _ = ast::visit_relations_mut(query, |name: &mut ObjectName| {
        if name.0.len() == 1
            && let Some(ident) = name.0[0].as_ident()
            && ident.quote_style.is_none()
            && crate::sql::is_window_function(&ident.value)
        {
            name.0[0] =
                ast::ObjectNamePart::Identifier(ast::Ident::new(ident.value.to_ascii_lowercase()));
        }
        ControlFlow::<()>::Continue(())
    });
}

/// An identifier as the catalog keys it: unquoted names fold to lower case.
pub(crate) fn normalize(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| part.as_ident().map_or_else(|| part.to_string(), normalize))
        .collect::<Vec<_>>()
        .join(".")
}

fn span_location(loc: datafusion::sql::sqlparser::tokenizer::Location) -> Option<Location> {
    (loc.line > 0).then_some(Location {
        line: loc.line,
        column: loc.column,
    })
}

fn sql_error(message: String, location: Option<Location>) -> Error {
    Error::Sql(SqlError::new(message, location))
}

/// Turns a DataFusion planning error into a [`SqlError`], positioned by its diagnostic span
/// when it has one; the statement places the others (see `Engine`'s `at_statement`).
pub(crate) fn from_datafusion(e: DataFusionError) -> Error {
    // The diagnostic wraps the error, so look for it before unwrapping to the root cause.
    if let Some(diag) = e.diagnostic() {
        let location = diag
            .span
            .map(|s| Location {
                line: s.start.line,
                column: s.start.column,
            })
            .filter(|l| l.line > 0);
        let mut err = SqlError::new(diag.message.clone(), location);
        let suggestion = did_you_mean(&e.find_root().message());
        if let Some(help) = diag.helps.first().map(|h| h.message.clone()).or(suggestion) {
            err = err.with_help(help);
        }
        return Error::Sql(err);
    }
    Error::Sql(SqlError::new(user_message(&e), None))
}

/// DataFusion's message for an error, without the request to report a bug that its
/// internal errors carry: a user reads it about their SQL.
fn user_message(e: &DataFusionError) -> String {
    let message = e.find_root().message().to_string();
    // "Unsupported ast node MatchRecognize { ...the whole syntax tree... } in ...": the
    // construct's name is for the user, the tree is not.
    if let Some(rest) = message.strip_prefix("Unsupported ast node ") {
        let node = rest.split([' ', '(', '{']).next().unwrap_or(rest);
        return format!("not supported: {node} in a streaming query");
    }
    match message.find("This issue was likely caused by a bug") {
        Some(end) => format!(
            "cannot plan this: {}",
            message[..end].trim_end().trim_end_matches('.')
        ),
        None => message,
    }
}

/// DataFusion puts its nearest-name suggestion in the message, not the diagnostic.
fn did_you_mean(message: &str) -> Option<String> {
    let start = message.find("Did you mean")?;
    let end = message[start..].find('?')? + start + 1;
    Some(message[start..end].replacen("Did", "did", 1))
}
