//! Lowering of `... OVER (PARTITION BY k ORDER BY ts ...)` to an [`OverWindow`].

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::row::SortField;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::logical_plan::Window;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, ExprSchemable, Filter, LogicalPlan, SortExpr, WindowFrameBound, WindowFrameUnits,
    WindowFunctionDefinition,
};
use datafusion::physical_planner::create_window_expr;

use super::join::late_sink_reaching;
use super::sliding::sliding_aggregate;
use super::{Lowering, Partitioning, Stream, arrow_schema, column_index};
use crate::catalog::{SinkDef, SourceDef, SourceTable};
use crate::error::{Error, Result};
use crate::operators::{
    LATE_PORT, OverFunction, OverWindow, Retention, UpdatingTopN, WindowedOver,
};
use crate::plan::graph::{LateOutput, WarningKind};
use crate::time::{IntervalLength, describe_nanos, interval_length};

const FRAMES: &str = "write ROWS BETWEEN n PRECEDING AND CURRENT ROW or RANGE BETWEEN \
    INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW";

/// Functions whose value at a row depends on rows after it, or on every row before it.
const UNBOUNDED_FUNCTIONS: &[&str] = &[
    "lead",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "first_value",
    "last_value",
    "nth_value",
];

impl Lowering<'_> {
    /// OVER windows sharing one PARTITION BY and an ORDER BY on an event time.
    pub(super) fn lower_over(&mut self, window: &Window) -> Result<Stream> {
        let top_n = self.top_n.take();
        let late_sink = match late_sink_reaching(&window.input) {
            Some(source) => Some(self.over_late_sink(&window.input, &source)?),
            None => None,
        };
        let input = self.lower(&window.input)?;
        let schema = window.input.schema();
        let functions = (window.window_expr.iter())
            .map(window_function)
            .collect::<Result<Vec<_>>>()?;
        let (partition_by, order_by) = shared_shape(&functions)?;
        let windowed = input.window.is_some_and(|(start, end)| {
            let column = |e: &Expr| column_index(e, schema);
            [start, end]
                .iter()
                .all(|c| partition_by.iter().any(|e| column(e) == Some(*c)))
        });
        let ranked = matches!(functions.as_slice(), [f] if f.fun.name() == "row_number");
        let by_time = event_time(order_by, schema).is_ok();
        if let (false, true, Some(limit)) = (windowed, ranked, top_n)
            && (input.updating.is_some() || !by_time)
        {
            return self.updating_top_n(window, input, (partition_by, order_by), limit);
        }
        if let Some(what) = &input.updating {
            return Err(Error::Unsupported(format!(
                "an OVER window over {what}: OVER windows take append-only streams; an \
                 updating Top-N is ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) AS r \
                 with WHERE r <= N"
            )));
        }
        let planning = PhysicalPlanningContext::default();
        let exprs = (window.window_expr.iter())
            .map(|e| Ok(create_window_expr(e, schema, &self.props, &planning)?))
            .collect::<Result<Vec<_>>>()?;
        if let Some((start, end)) = input.window
            && [start, end].iter().all(|c| {
                let column = |e: &Expr| column_index(e, schema);
                partition_by.iter().any(|e| column(e) == Some(*c))
            })
        {
            let labels = (functions.iter())
                .map(|f| label(f, Retention::default()))
                .collect();
            let schema = arrow_schema(&window.schema);
            let operator = WindowedOver::new(
                exprs,
                labels,
                end,
                &arrow_schema(window.input.schema()),
                schema,
            );
            let node = self.add_after(Box::new(operator), &input);
            self.spans_splits = true;
            return Ok(Stream { node, ..input });
        }
        let mut retention = Retention::default();
        let mut labels = Vec::new();
        let mut sliding = Vec::new();
        let outputs = &window.schema.fields()[schema.fields().len()..];
        for (function, output) in functions.iter().zip(outputs) {
            let reach = function_retention(function)?;
            labels.push(label(function, reach));
            retention = widen(retention, reach);
            sliding.push(sliding_aggregate(
                function,
                reach,
                schema,
                output.data_type(),
            ));
        }
        self.check_over_partitioning(partition_by, schema, &input);
        let time_column = event_time(order_by, schema)?;
        let partition_by = self.physical_exprs(partition_by, schema)?;
        let over = (exprs.into_iter().zip(labels).zip(&functions).zip(sliding))
            .map(|(((expr, label), f), sliding)| OverFunction {
                expr,
                label,
                row_number: f.fun.name().eq_ignore_ascii_case("row_number"),
                sliding,
            })
            .collect();
        let operator = OverWindow::try_new(
            over,
            partition_by,
            time_column,
            retention,
            &arrow_schema(schema),
            arrow_schema(&window.schema),
        )?;
        let node = self.add_after(Box::new(operator), &input);
        if let Some((sink, schema)) = late_sink {
            self.late_outputs.push(LateOutput {
                node,
                sink,
                schema,
                port: LATE_PORT,
            });
        }
        // A partition's rows must meet in one place, whichever split they came through.
        self.spans_splits = true;
        Ok(Stream { node, ..input })
    }

    /// `ROW_NUMBER() ... AS r` under `WHERE r <= limit` over a changelog, or ordered by other
    /// than the event time: each partition's first rows, kept current.
    fn updating_top_n(
        &mut self,
        window: &Window,
        input: Stream,
        (partition_by, order_by): (&[Expr], &[SortExpr]),
        limit: usize,
    ) -> Result<Stream> {
        let schema = window.input.schema();
        let order_fields = (order_by.iter())
            .map(|sort| {
                let options = SortOptions {
                    descending: !sort.asc,
                    nulls_first: sort.nulls_first,
                };
                let data_type = sort.expr.get_type(schema)?;
                Ok(SortField::new_with_options(data_type, options))
            })
            .collect::<Result<Vec<_>>>()?;
        let order_exprs: Vec<Expr> = order_by.iter().map(|s| s.expr.clone()).collect();
        let operator = UpdatingTopN::try_new(
            self.physical_exprs(partition_by, schema)?,
            self.physical_exprs(&order_exprs, schema)?,
            order_fields,
            (arrow_schema(schema), arrow_schema(&window.schema)),
            limit,
            input.updating.is_some(),
        )?;
        let node = self.add_after(Box::new(operator), &input);
        self.spans_splits = true;
        let what = input.updating.clone().unwrap_or_else(|| "a stream".into());
        Ok(Stream {
            node,
            window: None,
            updating: Some(format!("the Top-N of {what}")),
            partitioning: Partitioning::Unknown(input.partitioning.sources().to_vec()),
        })
    }

    /// The late_sink of `source`, whose rows reach an OVER window as the source has them
    /// (through filters): the window's late rows are the source's and go there whole.
    pub(super) fn over_late_sink(
        &self,
        input: &LogicalPlan,
        source: &str,
    ) -> Result<(Arc<SinkDef>, SchemaRef)> {
        let refused = || {
            Error::Unsupported(format!(
                "late_sink on source '{source}' read by an OVER window through a projection, \
                 join or union: its late rows are the source's only when the window reads the \
                 source's rows as they are (through filters)"
            ))
        };
        let def = whole_source(input).ok_or_else(refused)?;
        let sink_name = def.late_sink.as_ref().ok_or_else(refused)?;
        let sink = self
            .catalog
            .sinks()
            .get(sink_name)
            .cloned()
            .ok_or_else(|| {
                Error::Plan(format!(
                    "source '{source}' names late_sink '{sink_name}', which is not a declared sink"
                ))
            })?;
        Ok((sink, Arc::clone(&def.schema)))
    }
}

/// N when `filter` keeps the first N rows of a ROW_NUMBER() under it (`r <= N`, `r < N + 1`,
/// `r = 1`), through projections and aliases.
pub(super) fn top_n_limit(filter: &Filter) -> Option<usize> {
    let (mut name, limit) = row_number_bound(&filter.predicate)?;
    let mut plan = filter.input.as_ref();
    loop {
        match plan {
            LogicalPlan::SubqueryAlias(alias) => plan = &alias.input,
            LogicalPlan::Projection(projection) => {
                let at = (projection.schema.fields().iter()).position(|f| *f.name() == name)?;
                let Expr::Column(column) = projection.expr[at].clone().unalias() else {
                    return None;
                };
                name = column.name;
                plan = &projection.input;
            }
            LogicalPlan::Window(window) => {
                let at = (window.schema.fields().iter()).position(|f| *f.name() == name)?;
                let first = window.input.schema().fields().len();
                let expr = window.window_expr.get(at.checked_sub(first)?)?;
                let function = window_function(expr).ok()?;
                return (function.fun.name() == "row_number").then_some(limit);
            }
            _ => return None,
        }
    }
}

/// `column <= N` (or `< N + 1`, `= 1`, either way round): the column's name and N.
fn row_number_bound(predicate: &Expr) -> Option<(String, usize)> {
    let Expr::BinaryExpr(binary) = predicate else {
        return None;
    };
    let number = |e: &Expr| match e {
        Expr::Literal(value, _) => value.cast_to(&DataType::Int64).ok().and_then(|v| match v {
            ScalarValue::Int64(Some(n)) => usize::try_from(n).ok(),
            _ => None,
        }),
        _ => None,
    };
    let column = |e: &Expr| match e {
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    };
    use datafusion::logical_expr::Operator as Op;
    let (name, op, n) = match (column(&binary.left), number(&binary.right)) {
        (Some(name), Some(n)) => (name, binary.op, n),
        _ => (
            column(&binary.right)?,
            binary.op.swap()?,
            number(&binary.left)?,
        ),
    };
    let limit = match op {
        Op::LtEq => n,
        Op::Lt => n.checked_sub(1)?,
        Op::Eq if n == 1 => 1,
        _ => return None,
    };
    (limit > 0).then_some((name, limit))
}

/// The source `plan` reads with its columns as they are: a scan under filters and aliases.
pub(super) fn whole_source(plan: &LogicalPlan) -> Option<Arc<SourceDef>> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.projection.is_none() && scan.filters.is_empty() => {
            let provider = source_as_provider(&scan.source).ok()?;
            Some(Arc::clone(&provider.downcast_ref::<SourceTable>()?.def))
        }
        LogicalPlan::Filter(filter) => whole_source(&filter.input),
        LogicalPlan::SubqueryAlias(alias) => whole_source(&alias.input),
        // `SELECT *`: every column of the input, in its order.
        LogicalPlan::Projection(p) if is_identity(p) => whole_source(&p.input),
        _ => None,
    }
}

/// Whether a projection gives its input's columns as they are.
fn is_identity(projection: &datafusion::logical_expr::Projection) -> bool {
    let input = projection.input.schema();
    projection.expr.len() == input.fields().len()
        && (projection.expr.iter().enumerate())
            .all(|(i, e)| matches!(e, Expr::Column(c) if input.index_of_column(c).ok() == Some(i)))
}

/// The PARTITION BY and ORDER BY every function of one window node shares.
fn shared_shape<'a>(functions: &[&'a WindowFunction]) -> Result<(&'a [Expr], &'a [SortExpr])> {
    let first = functions
        .first()
        .ok_or_else(|| Error::Internal("a window node without window functions".into()))?;
    let params = &first.params;
    let same = |f: &&WindowFunction| {
        f.params.partition_by == params.partition_by && f.params.order_by == params.order_by
    };
    if !functions.iter().all(same) {
        return Err(Error::Unsupported(
            "OVER windows with different PARTITION BY or ORDER BY in one SELECT; compute them \
             in views stacked on each other"
                .into(),
        ));
    }
    Ok((&params.partition_by, &params.order_by))
}

impl Lowering<'_> {
    /// Warns when processes sharing the input's splits would each see only some rows of a
    /// partition, as for a GROUP BY.
    fn check_over_partitioning(
        &mut self,
        partition_by: &[Expr],
        schema: &DFSchema,
        input: &Stream,
    ) {
        let columns: Vec<Option<usize>> = partition_by
            .iter()
            .map(|e| column_index(e, schema))
            .collect();
        let covered = match &input.partitioning {
            Partitioning::Whole => true,
            Partitioning::By(by, _) => by.iter().all(|c| columns.contains(&Some(*c))),
            Partitioning::Unknown(_) => false,
        };
        if covered {
            return;
        }
        let sources: Vec<String> = (input.partitioning.sources().iter())
            .map(|s| format!("'{s}'"))
            .collect();
        self.warn(
            WarningKind::GroupsNotPartitioned,
            format!(
                "the OVER window partitions by ({}) but source {} is not declared \
                 partitioned_by those columns: when several vigil processes share this \
                 query's consumer group, each sees only its partitions' rows of a partition",
                partition_by
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                sources.join(", ")
            ),
        );
    }
}

fn window_function(expr: &Expr) -> Result<&WindowFunction> {
    match expr {
        Expr::Alias(alias) => window_function(&alias.expr),
        Expr::WindowFunction(function) => Ok(function),
        other => Err(Error::Internal(format!("{other} in a window node"))),
    }
}

/// The ORDER BY of an OVER window: one ascending TIMESTAMP column, its index.
fn event_time(order_by: &[SortExpr], schema: &DFSchema) -> Result<usize> {
    let refuse = || {
        Error::Plan(
            "an OVER window on a stream must ORDER BY its event time, one ascending \
             TIMESTAMP column (ORDER BY ts)"
                .into(),
        )
    };
    let [sort] = order_by else {
        return Err(refuse());
    };
    let Expr::Column(column) = &sort.expr else {
        return Err(refuse());
    };
    let index = schema.index_of_column(column).map_err(|_| refuse())?;
    match schema.field(index).data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) if sort.asc => Ok(index),
        _ => Err(refuse()),
    }
}

/// How far back a function's frame reaches: rows for ROWS frames and LAG, time for RANGE.
fn function_retention(function: &WindowFunction) -> Result<Retention> {
    let name = function.fun.name().to_ascii_lowercase();
    if let WindowFunctionDefinition::WindowUDF(_) = &function.fun {
        if name == "row_number" {
            // Numbered on from a count per partition key: no rows kept.
            return Ok(Retention::default());
        }
        if name == "lag" {
            return Ok(Retention {
                range: None,
                rows: Some(lag_offset(&function.params)?),
            });
        }
        if UNBOUNDED_FUNCTIONS.contains(&name.as_str()) {
            return Err(Error::Unsupported(format!(
                "{name}() OVER a stream (its value needs rows after the current one, or every \
                 row before it); aggregates over a bounded frame and LAG are supported"
            )));
        }
    }
    let frame = &function.params.window_frame;
    if !matches!(frame.end_bound, WindowFrameBound::CurrentRow) {
        return Err(Error::Unsupported(format!(
            "OVER frames ending after the current row: {FRAMES}"
        )));
    }
    let WindowFrameBound::Preceding(start) = &frame.start_bound else {
        return Err(Error::Unsupported(format!("this OVER frame: {FRAMES}")));
    };
    if start.is_null() {
        return Err(Error::Plan(format!(
            "an OVER frame from UNBOUNDED PRECEDING (the default with ORDER BY) keeps every \
             row of the stream: {FRAMES}"
        )));
    }
    match frame.units {
        WindowFrameUnits::Rows => Ok(Retention {
            range: None,
            rows: Some(scalar_count(start)?),
        }),
        WindowFrameUnits::Range => Ok(Retention {
            range: Some(interval_nanos(start)?),
            rows: None,
        }),
        WindowFrameUnits::Groups => Err(Error::Unsupported(format!("GROUPS frames: {FRAMES}"))),
    }
}

/// LAG's offset, its second argument (1 without one).
fn lag_offset(params: &WindowFunctionParams) -> Result<usize> {
    match params.args.get(1) {
        None => Ok(1),
        Some(Expr::Literal(value, _)) => scalar_count(value),
        Some(_) => Err(Error::Plan("LAG's offset must be a constant".into())),
    }
}

fn scalar_count(value: &ScalarValue) -> Result<usize> {
    let count = value.cast_to(&DataType::UInt64).ok().and_then(|v| match v {
        ScalarValue::UInt64(Some(n)) => usize::try_from(n).ok(),
        _ => None,
    });
    count.ok_or_else(|| Error::Plan(format!("{value} is not a count of rows")))
}

/// A RANGE frame's reach on a timestamp ORDER BY, in nanoseconds.
fn interval_nanos(value: &ScalarValue) -> Result<i64> {
    match interval_length(value) {
        IntervalLength::Nanos(n) if n >= 0 => Ok(n),
        _ => Err(Error::Plan(format!(
            "a RANGE frame over an event time reaches back by an interval of days or less \
             (found {value}): {FRAMES}"
        ))),
    }
}

/// A function and its frame as EXPLAIN shows them: `avg(temperature) range 10m`.
fn label(function: &WindowFunction, reach: Retention) -> String {
    let args: Vec<String> = (function.params.args.iter())
        .map(|a| match a {
            Expr::Column(c) => c.name.clone(),
            other => other.to_string(),
        })
        .collect();
    let call = format!("{}({})", function.fun.name(), args.join(", "));
    match (&function.fun, reach) {
        (WindowFunctionDefinition::WindowUDF(_), _) => call,
        (_, Retention { range: Some(r), .. }) => format!("{call} range {}", describe_nanos(r)),
        (_, Retention { rows: Some(n), .. }) => format!("{call} rows {n}"),
        _ => call,
    }
}

fn widen(a: Retention, b: Retention) -> Retention {
    Retention {
        range: a.range.max(b.range),
        rows: a.rows.max(b.rows),
    }
}
