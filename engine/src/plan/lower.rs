//! Lowering: a DataFusion [`LogicalPlan`] becomes an [`OperatorGraph`].
//!
//! DataFusion has planned and type-checked the SQL; here each logical node maps to a
//! streaming operator. The lowering tracks two properties of every stream: where its window
//! columns are (so an Aggregate grouped by them becomes a window aggregate), and whether it
//! is a changelog with updates.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr::{AggregateFunction, Sort};
use datafusion::logical_expr::logical_plan::{FetchType, SkipType};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Aggregate, Expr, JoinType, Limit, LogicalPlan, Projection, SubqueryAlias, TableScan, Union,
};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::graph::{
    Edge, GraphNode, LateOutput, NodeId, OperatorGraph, PlanWarning, SourceBinding, WarningKind,
};
use super::match_table::MatchTable;
use super::panes::{hop_by_panes, session_gap, session_partition, session_source};
use super::read_columns::read_columns;
use super::window_table::{WINDOW_END, WINDOW_START, WindowTable};
use crate::catalog::{Catalog, SourceDef, SourceTable};
use crate::error::{Error, Result};
use crate::operators::{
    AggregateCall, AggregateSpec, EmitPolicy, Filter, LATE_PORT, Limit as LimitOperator, MAIN_PORT,
    Operator, OutputColumn, Project, SessionAggregate, SourceScan, Union as UnionOperator,
    UpdatingAggregate, WatermarkAssign, WindowAggregate, WindowAssign,
};
use crate::time::WindowSpec;

mod changelog_join;
mod join;
mod lookup;
mod match_recognize;
mod over;
mod sliding;

use join::with_where;

const ORDER_BY_ON_A_STREAM: &str = "ORDER BY is not supported on a stream: rows are emitted \
    as they are produced; order within a window by sorting downstream";

/// What a query's planning takes besides its plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct LowerOptions {
    /// How long a join with no time bound keeps a row, in nanoseconds (`state_ttl`).
    pub state_ttl: Option<i64>,
    /// Planning a view: a join that needs a TTL gets it from the query reading the view.
    pub view: bool,
    /// When the query's window aggregates emit (`EMIT EARLY`, `ALLOWED LATENESS`).
    pub emit: EmitPolicy,
}

/// Plans the operator graph of an analyzed logical plan, with the session's state TTL.
pub fn lower_query(catalog: &Catalog, plan: &LogicalPlan) -> Result<OperatorGraph> {
    let options = LowerOptions {
        state_ttl: catalog.state_ttl(),
        view: false,
        emit: EmitPolicy::default(),
    };
    lower_query_with(catalog, plan, options)
}

/// Plans the operator graph of an analyzed logical plan.
pub fn lower_query_with(
    catalog: &Catalog,
    plan: &LogicalPlan,
    options: LowerOptions,
) -> Result<OperatorGraph> {
    let mut lowering = Lowering {
        options,
        catalog,
        nodes: Vec::new(),
        sources: Vec::new(),
        late_outputs: Vec::new(),
        props: ExecutionProps::new(),
        warnings: Vec::new(),
        panes: None,
        session_feeds_aggregate: false,
        spans_splits: false,
        table_allowed: false,
        top_n: None,
        emit_taken: false,
    };
    let out = lowering.lower(plan)?;
    if !lowering.options.emit.is_once() && !lowering.emit_taken {
        return Err(Error::Plan(format!(
            "{}: EMIT EARLY and ALLOWED LATENESS apply to an aggregate over TUMBLE, HOP or \
             CUMULATE windows, which this query has not",
            lowering.options.emit.describe()
        )));
    }
    let mut sources = lowering.sources;
    if let Some(read) = read_columns(catalog, plan) {
        for binding in &mut sources {
            let width = binding.def.schema.fields().len();
            // Late events go to their sink whole.
            let whole = binding.def.late_sink.is_some();
            binding.read_columns = read
                .get(&binding.def.name)
                .filter(|columns| columns.len() < width && !whole)
                .map(|columns| columns.iter().copied().collect());
        }
    }
    let split_local = !lowering.spans_splits
        && matches!(sources.as_slice(), [only] if only.def.shared_splits)
        && !(lowering.warnings.iter()).any(|w| w.kind == WarningKind::GroupsNotPartitioned);
    Ok(OperatorGraph {
        nodes: lowering.nodes,
        split_local,
        sources,
        output: out.node,
        schema: arrow_schema(plan.schema()),
        updating: out.updating.is_some(),
        late_outputs: lowering.late_outputs,
        warnings: lowering.warnings,
    })
}

/// Where a session's late rows go: the sink, the source's schema, and the source's columns
/// in the session aggregate's input.
type SessionLateSink = (Arc<crate::catalog::SinkDef>, SchemaRef, Vec<usize>);

/// A lowered stream.
#[derive(Debug, Clone)]
struct Stream {
    node: NodeId,
    /// Indices of `window_start` and `window_end`, when the rows carry a window.
    window: Option<(usize, usize)>,
    /// For a changelog with updates or deletes, what makes it one, as errors name it
    /// ("view 'balances'"); `None` for an append-only stream.
    updating: Option<String>,
    /// How the rows are split between processes sharing the sources' splits.
    partitioning: Partitioning,
}

/// How a stream's rows are split between processes that run the same query and share its
/// sources' splits (Kafka partitions in a consumer group).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Partitioning {
    /// Every process sees every row: no source shares its splits.
    Whole,
    /// Rows equal in these columns (indices) come through the same split, so one process;
    /// the shared sources they come from.
    By(Vec<usize>, Vec<String>),
    /// Rows of these shared sources are split in no known way.
    Unknown(Vec<String>),
}

impl Partitioning {
    /// After a projection or a key mapping: `position(i)` is where input column `i` went.
    fn remap(&self, position: impl Fn(usize) -> Option<usize>) -> Self {
        match self {
            Partitioning::By(columns, sources) => columns
                .iter()
                .map(|c| position(*c))
                .collect::<Option<Vec<_>>>()
                .map_or_else(
                    || Partitioning::Unknown(sources.clone()),
                    |columns| Partitioning::By(columns, sources.clone()),
                ),
            other => other.clone(),
        }
    }

    /// The shared sources the rows come from.
    fn sources(&self) -> &[String] {
        match self {
            Partitioning::Whole => &[],
            Partitioning::By(_, sources) | Partitioning::Unknown(sources) => sources,
        }
    }

    /// The union of streams: partitioned only when every input is, by the same columns.
    fn union(inputs: &[&Partitioning]) -> Self {
        if inputs.iter().all(|p| **p == Partitioning::Whole) {
            return Partitioning::Whole;
        }
        let sources: Vec<String> = inputs.iter().flat_map(|p| p.sources()).cloned().collect();
        match inputs.first().copied() {
            Some(Partitioning::By(first, _))
                if inputs
                    .iter()
                    .all(|p| matches!(p, Partitioning::By(c, _) if c == first)) =>
            {
                Partitioning::By(first.clone(), sources)
            }
            _ => {
                // Name the inputs that lost their partitioning, if that is the difference.
                let unknown: Vec<String> = inputs
                    .iter()
                    .filter(|p| matches!(p, Partitioning::Unknown(_)))
                    .flat_map(|p| p.sources())
                    .cloned()
                    .collect();
                Partitioning::Unknown(if unknown.is_empty() { sources } else { unknown })
            }
        }
    }
}

struct Lowering<'a> {
    catalog: &'a Catalog,
    options: LowerOptions,
    nodes: Vec<GraphNode>,
    sources: Vec<SourceBinding>,
    late_outputs: Vec<LateOutput>,
    props: ExecutionProps,
    warnings: Vec<PlanWarning>,
    /// Set while lowering the input of an aggregate that takes its `HOP` by panes; the
    /// `HOP` takes it, and leaves its window here for the aggregate.
    panes: Option<Option<WindowSpec>>,
    /// Set while lowering the input of an aggregate that groups a `SESSION` by its bounds:
    /// the only place its rows' bounds (each event's own session) may go.
    session_feeds_aggregate: bool,
    /// Set by an operator whose state spans every split (a LIMIT counts all rows).
    spans_splits: bool,
    /// True while lowering the table side of a lookup join, the one place a table is read.
    table_allowed: bool,
    /// The N of a `WHERE r <= N` over a ROW_NUMBER() being lowered, for its OVER.
    top_n: Option<usize>,
    /// Whether a window aggregate took the query's emit policy.
    emit_taken: bool,
}

impl Lowering<'_> {
    fn add(&mut self, operator: Box<dyn Operator>, inputs: Vec<Edge>) -> NodeId {
        self.nodes.push(GraphNode { operator, inputs });
        self.nodes.len() - 1
    }

    fn add_after(&mut self, operator: Box<dyn Operator>, input: &Stream) -> NodeId {
        self.add(
            operator,
            vec![Edge {
                from: input.node,
                port: MAIN_PORT,
            }],
        )
    }

    fn lower(&mut self, plan: &LogicalPlan) -> Result<Stream> {
        match plan {
            LogicalPlan::TableScan(scan) => self.lower_scan(scan),
            LogicalPlan::SubqueryAlias(alias) => self.lower_alias(alias),
            LogicalPlan::Projection(p) => self.lower_projection(p),
            LogicalPlan::Filter(f) => {
                if let LogicalPlan::Join(join) = f.input.as_ref()
                    && join.join_type == JoinType::Inner
                {
                    return self.lower_join(&with_where(join, &f.predicate));
                }
                self.check_having(f);
                // `WHERE r <= N` over a ROW_NUMBER() bounds a Top-N: its OVER needs N.
                let outer = std::mem::replace(&mut self.top_n, over::top_n_limit(f));
                let input = self.lower(&f.input);
                self.top_n = outer;
                let input = input?;
                let predicate = self.physical_expr(&f.predicate, f.input.schema())?;
                let node = self.add_after(Box::new(Filter::new(predicate)), &input);
                Ok(Stream { node, ..input })
            }
            LogicalPlan::Aggregate(agg) => self.lower_aggregate(agg),
            LogicalPlan::Union(u) => self.lower_union(u),
            LogicalPlan::Limit(limit) => self.lower_limit(limit),
            LogicalPlan::Sort(_) => Err(Error::Plan(ORDER_BY_ON_A_STREAM.into())),
            LogicalPlan::Join(join) => self.lower_join(join),
            LogicalPlan::Window(window) => self.lower_over(window),
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Err(Error::Plan(
                "a streaming query must read a source (FROM a source, view, TUMBLE, HOP or CUMULATE)".into(),
            )),
            other => Err(Error::Unsupported(unsupported_node(other))),
        }
    }

    /// A view or subquery: an updating one is named after it in errors.
    fn lower_alias(&mut self, alias: &SubqueryAlias) -> Result<Stream> {
        let mut stream = self.lower(&alias.input)?;
        if stream.updating.is_some() {
            let name = alias.alias.table();
            let kind = if self.catalog.views().contains_key(name) {
                "view"
            } else {
                "subquery"
            };
            stream.updating = Some(format!("the updating {kind} '{name}'"));
        }
        Ok(stream)
    }

    fn lower_projection(&mut self, p: &Projection) -> Result<Stream> {
        let input = self.lower(&p.input)?;
        let exprs = self.physical_exprs(&p.expr, p.input.schema())?;
        let pos = |idx: usize| {
            p.expr
                .iter()
                .position(|e| column_index(e, p.input.schema()) == Some(idx))
        };
        let window = input
            .window
            .and_then(|(start, end)| Some((pos(start)?, pos(end)?)));
        let partitioning = input.partitioning.remap(pos);
        let project = Project::new(exprs, arrow_schema(&p.schema));
        let node = self.add_after(Box::new(project), &input);
        Ok(Stream {
            node,
            window,
            partitioning,
            ..input
        })
    }

    fn lower_union(&mut self, u: &Union) -> Result<Stream> {
        let inputs = u
            .inputs
            .iter()
            .map(|i| self.lower(i))
            .collect::<Result<Vec<_>>>()?;
        let edges = inputs
            .iter()
            .map(|s| Edge {
                from: s.node,
                port: MAIN_PORT,
            })
            .collect();
        let window = inputs[0]
            .window
            .filter(|w| inputs.iter().all(|s| s.window == Some(*w)));
        let updating = inputs.iter().find_map(|s| s.updating.clone());
        let partitioning =
            Partitioning::union(&inputs.iter().map(|s| &s.partitioning).collect::<Vec<_>>());
        let node = self.add(Box::new(UnionOperator::new(arrow_schema(&u.schema))), edges);
        Ok(Stream {
            node,
            window,
            updating,
            partitioning,
        })
    }

    fn lower_limit(&mut self, limit: &Limit) -> Result<Stream> {
        let input = self.lower(&limit.input)?;
        let skip = match limit.get_skip_type()? {
            SkipType::Literal(n) => n,
            SkipType::UnsupportedExpr => {
                return Err(Error::Unsupported("OFFSET must be a number".into()));
            }
        };
        let fetch = match limit.get_fetch_type()? {
            FetchType::Literal(n) => n,
            FetchType::UnsupportedExpr => {
                return Err(Error::Unsupported("LIMIT must be a number".into()));
            }
        };
        self.spans_splits = true;
        let node = self.add_after(Box::new(LimitOperator::new(skip, fetch)), &input);
        Ok(Stream { node, ..input })
    }

    fn lower_scan(&mut self, scan: &TableScan) -> Result<Stream> {
        let provider = source_as_provider(&scan.source)?;
        let stream = self.lower_provider(&provider)?;
        if !scan.filters.is_empty() {
            return Err(Error::Internal("filters pushed into a stream scan".into()));
        }
        match &scan.projection {
            None => Ok(stream),
            Some(indices) => {
                let full = provider.schema();
                let exprs: Vec<Arc<dyn PhysicalExpr>> = indices
                    .iter()
                    .map(|&i| {
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            full.field(i).name(),
                            i,
                        )) as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                let schema = Arc::new(full.project(indices)?);
                let window = stream.window.and_then(|(s, e)| {
                    Some((
                        indices.iter().position(|&i| i == s)?,
                        indices.iter().position(|&i| i == e)?,
                    ))
                });
                let node = self.add_after(Box::new(Project::new(exprs, schema)), &stream);
                Ok(Stream {
                    node,
                    window,
                    ..stream
                })
            }
        }
    }

    fn lower_provider(&mut self, provider: &Arc<dyn TableProvider>) -> Result<Stream> {
        if let Some(source) = provider.downcast_ref::<SourceTable>() {
            let def = Arc::clone(&source.def);
            if !def.primary_key.is_empty() && !self.table_allowed {
                return Err(Error::Unsupported(format!(
                    "reading table '{}' as a stream: a table is the latest row per key, read \
                     by a lookup join such as FROM s JOIN {} t ON s.k = t.k",
                    def.name, def.name
                )));
            }
            // A source read twice (a self-join) is read once, its rows going both ways.
            if let Some(read) = (self.sources.iter()).find(|b| b.def.name == def.name) {
                let node = read.node;
                return Ok(Stream {
                    node,
                    window: None,
                    updating: None,
                    partitioning: self.source_partitioning(&def),
                });
            }
            // The entry node of a source receives its splits' progress, so with a watermark
            // the watermark operator is the entry.
            let entry: Box<dyn crate::operators::Operator> = match &def.watermark {
                Some(wm) => {
                    let schema = DFSchema::try_from(Schema::clone(&def.schema))?;
                    let expr = self.physical_expr(&wm.expr, &schema)?;
                    Box::new(WatermarkAssign::new(def.name.clone(), expr, wm.sql.clone()))
                }
                None => Box::new(SourceScan {
                    source: def.name.clone(),
                }),
            };
            let node = self.add(entry, Vec::new());
            self.sources.push(SourceBinding {
                def: Arc::clone(&def),
                node,
                read_columns: None,
            });
            return Ok(Stream {
                node,
                window: None,
                updating: None,
                partitioning: self.source_partitioning(&def),
            });
        }
        if let Some(window) = provider.downcast_ref::<WindowTable>() {
            // The permission is this window's, not that of windows in the relation it reads.
            let session_allowed = std::mem::take(&mut self.session_feeds_aggregate);
            let input = self.lower_provider(&window.input);
            self.session_feeds_aggregate = session_allowed;
            let input = input?;
            if input.updating.is_some() {
                return Err(Error::Plan(format!(
                    "'{}' is an updating stream (it aggregates without a window) and cannot be windowed",
                    window.input_name
                )));
            }
            if window.spec.is_session() {
                check_session(session_allowed)?;
                if !self.options.emit.is_once() {
                    return Err(Error::Unsupported(
                        "EMIT EARLY and ALLOWED LATENESS on SESSION windows yet".into(),
                    ));
                }
            }
            let schema = window.schema();
            let bounds = (schema.index_of(WINDOW_START)?, schema.index_of(WINDOW_END)?);
            let mut assign = WindowAssign::new(window.time_column, window.spec, schema)
                .with_emit(self.options.emit);
            if let Some(slot @ None) = &mut self.panes
                && window.spec.is_hopping()
            {
                *slot = Some(window.spec);
                assign = assign.by_panes();
            }
            let node = self.add_after(Box::new(assign), &input);
            if let Some(source) = window.input.downcast_ref::<SourceTable>()
                && let Some(sink) = &source.def.late_sink
            {
                let sink = self.catalog.sinks().get(sink).cloned().ok_or_else(|| {
                    Error::Plan(format!(
                        "source '{}' names late_sink '{sink}', which is not a declared sink",
                        source.def.name
                    ))
                })?;
                self.late_outputs.push(LateOutput {
                    node,
                    sink,
                    schema: window.input.schema(),
                    port: LATE_PORT,
                });
            }
            if let Some(source) = window.input.downcast_ref::<SourceTable>()
                && source.def.watermark.is_none()
            {
                let column = source.def.schema.field(window.time_column).name();
                self.warn(
                    WarningKind::WindowWithoutWatermark,
                    format!(
                        "window over source '{}', which declares no watermark: its windows \
                         close only when the source ends; declare one on the source, e.g. \
                         WATERMARK FOR {column} AS {column} - INTERVAL '5' SECOND",
                        source.def.name
                    ),
                );
            }
            // Window columns are appended, or replace the input's own: the input's other
            // columns keep their indices.
            return Ok(Stream {
                node,
                window: Some(bounds),
                updating: None,
                partitioning: input.partitioning,
            });
        }
        if let Some(table) = provider.downcast_ref::<MatchTable>() {
            return self.lower_match(table);
        }
        if let Some(view) = provider.get_logical_plan() {
            let plan = self.catalog.analyze(view.into_owned())?;
            return self.lower(&plan);
        }
        Err(Error::Internal(
            "a table that is neither a source, a view nor a window".into(),
        ))
    }

    /// How a source's rows are split between processes sharing its splits.
    fn source_partitioning(&self, def: &SourceDef) -> Partitioning {
        match (&def.partitioned_by, def.shared_splits) {
            (_, false) => Partitioning::Whole,
            (Some(columns), true) => Partitioning::By(
                columns
                    .iter()
                    .filter_map(|c| def.schema.index_of(c).ok())
                    .collect(),
                vec![def.name.clone()],
            ),
            (None, true) => Partitioning::Unknown(vec![def.name.clone()]),
        }
    }

    fn lower_aggregate(&mut self, agg: &Aggregate) -> Result<Stream> {
        let gap = session_gap(agg);
        if gap.is_some() {
            check_session_keys(agg)?;
        }
        let outer = std::mem::replace(&mut self.session_feeds_aggregate, gap.is_some());
        let lowered = self.lower_aggregate_input(agg);
        self.session_feeds_aggregate = outer;
        let (input, panes) = lowered?;
        if agg
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Err(Error::Unsupported("GROUPING SETS, CUBE and ROLLUP".into()));
        }
        let partitioning = self.check_partitioning(agg, &input);
        let spec = self.aggregate_spec(agg, &input)?;
        let arrow_input = arrow_schema(agg.input.schema());
        let layout = spec.layout.clone();
        let has_start = layout.contains(&OutputColumn::WindowStart);
        let has_end = layout.contains(&OutputColumn::WindowEnd);
        if let Some((start, end)) = input.window.filter(|_| has_start || has_end) {
            if !(has_start && has_end) {
                return Err(Error::Plan(
                    "GROUP BY over TUMBLE, HOP or CUMULATE must include both window_start and window_end"
                        .into(),
                ));
            }
            let late_sink = match gap {
                Some(_) => self.session_late_sink(agg)?,
                None => None,
            };
            let operator: Box<dyn Operator> = match gap {
                Some(gap) => {
                    let operator = SessionAggregate::try_new(spec, &arrow_input, start, end, gap)?;
                    match &late_sink {
                        Some((_, _, columns)) => Box::new(operator.with_late_rows(columns.clone())),
                        None => Box::new(operator),
                    }
                }
                None => {
                    let operator = WindowAggregate::try_new(spec, &arrow_input, start, end)?
                        .with_emit(self.options.emit);
                    self.emit_taken = true;
                    match panes {
                        Some(window) => Box::new(operator.with_panes(window)),
                        None => Box::new(operator),
                    }
                }
            };
            let node = self.add_after(operator, &input);
            if let Some((sink, schema, _)) = late_sink {
                self.late_outputs.push(LateOutput {
                    node,
                    sink,
                    schema,
                    port: LATE_PORT,
                });
            }
            let out_start = layout.iter().position(|c| *c == OutputColumn::WindowStart);
            let out_end = layout.iter().position(|c| *c == OutputColumn::WindowEnd);
            // Windows emitted early or corrected late are a changelog.
            let updating = (!self.options.emit.is_once())
                .then(|| format!("a window aggregate with {}", self.options.emit.describe()));
            return Ok(Stream {
                node,
                window: out_start.zip(out_end),
                updating,
                partitioning,
            });
        }
        let operator = UpdatingAggregate::try_new(spec, &arrow_input, input.updating.as_deref())?;
        let node = self.add_after(Box::new(operator), &input);
        let keys: Vec<String> = agg.group_expr.iter().map(|e| e.to_string()).collect();
        Ok(Stream {
            node,
            window: None,
            updating: Some(format!("the updating GROUP BY ({})", keys.join(", "))),
            partitioning,
        })
    }

    /// The late_sink of the source a `SESSION` aggregate reads, with the source's schema and
    /// where its columns are in the aggregate's input: a session's late rows are decided by
    /// its aggregate, which sends them there as the source had them. Only when the input is
    /// the whole windowed source (no projection between).
    fn session_late_sink(&self, agg: &Aggregate) -> Result<Option<SessionLateSink>> {
        let Some(table) = session_source(agg) else {
            return Ok(None);
        };
        let Some(source) = table.downcast_ref::<SourceTable>() else {
            return Ok(None);
        };
        let Some(sink) = &source.def.late_sink else {
            return Ok(None);
        };
        let input = agg.input.schema();
        let columns: Option<Vec<usize>> = (source.def.schema.fields().iter())
            .map(|f| input.index_of_column_by_name(None, f.name()))
            .collect();
        let whole = input.fields().len() == source.def.schema.fields().len() + 2;
        let (Some(columns), true) = (columns, whole) else {
            return Err(Error::Unsupported(format!(
                "late_sink on source '{}' read by a SESSION window through a projection: its \
                 late rows are the source's only when the session reads every column",
                source.def.name
            )));
        };
        let sink = self.catalog.sinks().get(sink).cloned().ok_or_else(|| {
            Error::Plan(format!(
                "source '{}' names late_sink '{sink}', which is not a declared sink",
                source.def.name
            ))
        })?;
        Ok(Some((sink, Arc::clone(&source.def.schema), columns)))
    }

    /// Lowers the aggregate's input, by panes when its `HOP` may be (see [`hop_by_panes`]):
    /// then also the window the panes make.
    fn lower_aggregate_input(&mut self, agg: &Aggregate) -> Result<(Stream, Option<WindowSpec>)> {
        let outer = self.panes.take();
        // Panes merge into windows as these close; an emit policy reads windows open.
        if hop_by_panes(agg) && self.options.emit.is_once() {
            self.panes = Some(None);
        }
        let input = self.lower(&agg.input);
        let panes = std::mem::replace(&mut self.panes, outer).flatten();
        Ok((input?, panes))
    }

    /// The group keys (window columns apart), the aggregate calls and the output layout.
    fn aggregate_spec(&self, agg: &Aggregate, input: &Stream) -> Result<AggregateSpec> {
        let input_schema = agg.input.schema();
        let arrow_input = arrow_schema(input_schema);
        let mut layout = Vec::new();
        let mut keys = Vec::new();
        for expr in &agg.group_expr {
            let idx = column_index(expr, input_schema);
            match (input.window, idx) {
                (Some((start, _)), Some(i)) if i == start => layout.push(OutputColumn::WindowStart),
                (Some((_, end)), Some(i)) if i == end => layout.push(OutputColumn::WindowEnd),
                _ => {
                    layout.push(OutputColumn::Key(keys.len()));
                    keys.push(self.physical_expr(expr, input_schema)?);
                }
            }
        }
        let calls = agg
            .aggr_expr
            .iter()
            .map(|e| self.aggregate_call(e, input_schema, &arrow_input))
            .collect::<Result<Vec<_>>>()?;
        Ok(AggregateSpec {
            keys,
            calls,
            layout,
            schema: arrow_schema(&agg.schema),
        })
    }

    fn warn(&mut self, kind: WarningKind, message: String) {
        self.warnings.push(PlanWarning { kind, message });
    }

    /// Warns about a HAVING on a windowed aggregate that tests only group columns: it could
    /// be a WHERE, which drops rows before the window keeps them instead of after it closes.
    fn check_having(&mut self, filter: &datafusion::logical_expr::Filter) {
        let LogicalPlan::Aggregate(agg) = filter.input.as_ref() else {
            return;
        };
        let group_names: Vec<String> = agg
            .group_expr
            .iter()
            .map(|e| match e {
                Expr::Column(c) => c.name.clone(),
                other => other.schema_name().to_string(),
            })
            .collect();
        let windowed = ["window_start", "window_end"]
            .iter()
            .all(|w| group_names.iter().any(|g| g == w));
        let columns = filter.predicate.column_refs();
        let keys_only = !columns.is_empty()
            && columns.iter().all(|c| {
                group_names.contains(&c.name) && c.name != "window_start" && c.name != "window_end"
            });
        if windowed && keys_only {
            let names: std::collections::BTreeSet<&str> =
                columns.iter().map(|c| c.name.as_str()).collect();
            let names = names.into_iter().collect::<Vec<_>>().join(", ");
            self.warn(
                WarningKind::HavingCouldBeWhere,
                format!(
                    "this HAVING tests only GROUP BY columns ({names}): as a WHERE it would drop \
                     rows before the windows keep them, instead of after they close"
                ),
            );
        }
    }

    /// Warns when processes sharing the input's splits would each aggregate only part of a
    /// group; returns how the aggregate's output is partitioned.
    fn check_partitioning(&mut self, agg: &Aggregate, input: &Stream) -> Partitioning {
        let schema = agg.input.schema();
        let group_columns: Vec<Option<usize>> = agg
            .group_expr
            .iter()
            .map(|e| column_index(e, schema))
            .collect();
        let keys: Vec<String> = agg
            .group_expr
            .iter()
            .filter(|e| {
                let idx = column_index(e, schema);
                input
                    .window
                    .is_none_or(|(s, e)| idx != Some(s) && idx != Some(e))
            })
            .map(|e| match e {
                Expr::Column(c) => c.name.clone(),
                other => other.schema_name().to_string(),
            })
            .collect();
        let position = |i: usize| group_columns.iter().position(|c| *c == Some(i));
        let hint = "when several vigil processes share this query's consumer group, each \
                    sees only its partitions' rows of a group; declare partitioned_by on the \
                    source once its topic is keyed by the group columns";
        let sources = |p: &Partitioning| {
            p.sources()
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &input.partitioning {
            Partitioning::Whole => Partitioning::Whole,
            Partitioning::By(columns, _) if columns.iter().all(|c| position(*c).is_some()) => {
                input.partitioning.remap(position)
            }
            Partitioning::By(columns, _) => {
                let names: Vec<&str> = columns
                    .iter()
                    .map(|c| schema.field(*c).name().as_str())
                    .collect();
                self.warn(
                    WarningKind::GroupsNotPartitioned,
                    format!(
                        "the query groups by ({}) but its input is partitioned by ({}): {hint}",
                        keys.join(", "),
                        names.join(", ")
                    ),
                );
                Partitioning::Unknown(input.partitioning.sources().to_vec())
            }
            Partitioning::Unknown(_) => {
                self.warn(
                    WarningKind::GroupsNotPartitioned,
                    format!(
                        "the query groups by ({}) but source {} is not declared partitioned_by \
                         those columns: {hint}",
                        keys.join(", "),
                        sources(&input.partitioning)
                    ),
                );
                input.partitioning.clone()
            }
        }
    }

    fn aggregate_call(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        arrow: &SchemaRef,
    ) -> Result<AggregateCall> {
        refuse_multi_argument_distinct(expr)?;
        let expr = sort_distinct_array_agg(expr.clone());
        let planning = PhysicalPlanningContext::default();
        let (inner, name) = match &expr {
            Expr::Alias(alias) => (alias.expr.as_ref(), Some(alias.name.clone())),
            other => (other, None),
        };
        let mut builder =
            LoweredAggregateBuilder::new(inner, schema, arrow, &self.props, &planning);
        if let Some(name) = name {
            builder = builder.with_name(name);
        }
        let lowered = builder.build()?;
        Ok(AggregateCall {
            function: lowered.aggregate,
            filter: lowered.filter,
        })
    }

    fn physical_expr(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(create_physical_expr(
            expr,
            schema,
            &self.props,
            &PhysicalPlanningContext::default(),
        )?)
    }

    fn physical_exprs(
        &self,
        exprs: &[Expr],
        schema: &DFSchema,
    ) -> Result<Vec<Arc<dyn PhysicalExpr>>> {
        exprs
            .iter()
            .map(|e| self.physical_expr(e, schema))
            .collect()
    }
}

/// `count(DISTINCT a, b)`: DataFusion's retractable accumulators count rows, not distinct
/// tuples, so the answer would be wrong; say what to write instead.
fn refuse_multi_argument_distinct(expr: &Expr) -> Result<()> {
    let inner = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::AggregateFunction(f) if f.params.distinct && f.params.args.len() > 1 => {
            Err(Error::Unsupported(format!(
                "{}(DISTINCT ...) with {} arguments; count one value, e.g. \
                 {}(DISTINCT concat_ws('|', a, b))",
                f.func.name(),
                f.params.args.len(),
                f.func.name()
            )))
        }
        _ => Ok(()),
    }
}

/// `array_agg(DISTINCT x)` gives its values sorted, as users of Flink and RisingWave expect
/// from a list of reasons or categories; DataFusion would give them in hash order.
fn sort_distinct_array_agg(expr: Expr) -> Expr {
    match expr {
        Expr::Alias(mut alias) => {
            alias.expr = Box::new(sort_distinct_array_agg(*alias.expr));
            Expr::Alias(alias)
        }
        Expr::AggregateFunction(mut f)
            if f.func.name() == "array_agg"
                && f.params.distinct
                && f.params.order_by.is_empty() =>
        {
            if let Some(arg) = f.params.args.first() {
                f.params.order_by = vec![Sort::new(arg.clone(), true, false)];
            }
            Expr::AggregateFunction(AggregateFunction { ..f })
        }
        other => other,
    }
}

/// The input index of a plain (possibly aliased) column reference.
fn column_index(expr: &Expr, schema: &DFSchema) -> Option<usize> {
    match expr {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        Expr::Alias(a) => column_index(&a.expr, schema),
        _ => None,
    }
}

fn arrow_schema(schema: &DFSchema) -> SchemaRef {
    Arc::new(schema.as_arrow().clone())
}

/// Refuses a Flink `SESSION(TABLE t PARTITION BY k, ...)` grouped by other keys than `k`:
/// Vigil's sessions form per the GROUP BY keys, which then must be the partition's.
fn check_session_keys(agg: &Aggregate) -> Result<()> {
    let mut partition = session_partition(agg);
    if partition.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<String> = (agg.group_expr.iter())
        .filter_map(|e| match e {
            Expr::Column(c) if c.name != WINDOW_START && c.name != WINDOW_END => {
                Some(c.name.clone())
            }
            Expr::Column(_) => None,
            other => Some(other.schema_name().to_string()),
        })
        .collect();
    partition.sort();
    keys.sort();
    if partition == keys {
        return Ok(());
    }
    Err(Error::Plan(format!(
        "SESSION's PARTITION BY ({}) must be the GROUP BY keys besides window_start and \
         window_end ({}): sessions form per the GROUP BY keys",
        partition.join(", "),
        keys.join(", ")
    )))
}

/// Refuses a `SESSION` anywhere but directly under an aggregate grouping by its bounds.
fn check_session(allowed: bool) -> Result<()> {
    if !allowed {
        return Err(Error::Plan(
            "SESSION windows form per the GROUP BY keys: write SELECT window_start, \
             window_end, k, ... FROM SESSION(t, ts, gap) GROUP BY window_start, window_end, \
             k, and read the bounds only after the GROUP BY"
                .into(),
        ));
    }
    Ok(())
}

/// What a plan node the lowering has no operator for is, in SQL's words: the node's display
/// goes on with expressions in DataFusion's terms, so only its kind is named.
fn unsupported_node(node: &LogicalPlan) -> String {
    match node {
        LogicalPlan::Distinct(_) => "SELECT DISTINCT and UNION without ALL on streams: use \
             GROUP BY over a TUMBLE or HOP window, or UNION ALL"
            .into(),
        LogicalPlan::Unnest(_) => "UNNEST in a streaming query".into(),
        LogicalPlan::RecursiveQuery(_) => "WITH RECURSIVE in a streaming query".into(),
        other => {
            let shown = other.display().to_string();
            let kind = shown.split(':').next().unwrap_or(&shown).trim().to_string();
            format!("{kind} in a streaming query")
        }
    }
}
