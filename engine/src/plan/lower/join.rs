//! Lowering of a join of two streams to an [`IntervalJoin`] (`changelog_join` lowers joins
//! with no time bound).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::split_conjunction_owned;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, and};

use super::over::whole_source;
use super::{Lowering, Partitioning, Stream, arrow_schema};
use crate::catalog::SinkDef;
use crate::catalog::SourceTable;
use crate::error::{Error, Result};
use crate::operators::{
    Filter, IntervalJoin, JoinInput, JoinKind, LATE_PORT, MAIN_PORT, SECOND_LATE_PORT,
};
use crate::plan::graph::{Edge, LateOutput, WarningKind};
use crate::plan::join_condition::{JoinCondition, WindowEnds, join_condition};
use crate::plan::window_table::WindowTable;

impl Lowering<'_> {
    /// An interval join, or a window join (an interval join of width zero on the windows'
    /// ends), of two append-only streams.
    pub(super) fn lower_join(&mut self, join: &Join) -> Result<Stream> {
        if let Some((side, table)) = super::lookup::table_side(join) {
            return self.lower_lookup_join(join, side, &table);
        }
        let kind = join_kind(join.join_type)?;
        let left = self.lower(&join.left)?;
        let right = self.lower(&join.right)?;
        let ends = WindowEnds {
            left: left.window.map(|(_, end)| end),
            right: right.window.map(|(_, end)| end),
        };
        let updating = left.updating.is_some() || right.updating.is_some();
        let condition = match updating {
            true => None,
            false => join_condition(join, ends)?,
        };
        let Some(mut condition) = condition else {
            return self.lower_changelog_join(join, kind, [left, right]);
        };
        for side in [&join.left, &join.right] {
            if let Some(source) = source_without_watermark(side) {
                self.warn(
                    WarningKind::JoinWithoutWatermark,
                    format!(
                        "join of source '{source}', which declares no watermark: the other \
                         side's rows are kept until it ends; declare one on the source"
                    ),
                );
            }
        }
        let late_sinks = self.join_late_sinks(join)?;
        let (left_schema, right_schema) = (join.left.schema(), join.right.schema());
        // A conjunct on one side's columns filters that side before the join keeps its rows,
        // where it can: both sides of an inner join, the padded side of an outer one.
        let [left_only, right_only] = take_one_sided(&mut condition, join, kind);
        let left = self.filtered(left, left_only, left_schema)?;
        let right = self.filtered(right, right_only, right_schema)?;
        check_nanoseconds(left_schema, condition.bound.left_column)?;
        check_nanoseconds(right_schema, condition.bound.right_column)?;
        let operator = self.interval_join(join, &condition, kind)?;
        let node = self.add(
            Box::new(operator),
            vec![
                Edge {
                    from: left.node,
                    port: MAIN_PORT,
                },
                Edge {
                    from: right.node,
                    port: MAIN_PORT,
                },
            ],
        );
        for (port, sink, schema) in late_sinks {
            self.late_outputs.push(LateOutput {
                node,
                sink,
                schema,
                port,
            });
        }
        // Rows of two splits meet in a join: one copy of the graph per split would miss them.
        self.spans_splits = true;
        let bound = condition.bound;
        let on_window_ends = bound.lower == 0
            && bound.upper == 0
            && Some(bound.left_column) == ends.left
            && Some(bound.right_column) == ends.right;
        let partitioning = match Partitioning::union(&[&left.partitioning, &right.partitioning]) {
            Partitioning::Whole => Partitioning::Whole,
            other => Partitioning::Unknown(other.sources().to_vec()),
        };
        Ok(Stream {
            node,
            // The left's columns come first, where they were.
            window: left.window.filter(|_| on_window_ends),
            updating: None,
            partitioning,
        })
    }

    /// The late ports of an interval join and the late_sinks they go to: each side that
    /// reads a source with a late_sink as the source has it (through filters), on its own
    /// port; a source read on both sides once. A late_sink the rows reach otherwise (through
    /// a projection) is refused: its late rows would not be the source's.
    fn join_late_sinks(&self, join: &Join) -> Result<Vec<(usize, Arc<SinkDef>, SchemaRef)>> {
        let mut out: Vec<(usize, Arc<SinkDef>, SchemaRef)> = Vec::new();
        let mut seen = Vec::new();
        for (side, port) in [(&join.left, LATE_PORT), (&join.right, SECOND_LATE_PORT)] {
            let Some(source) = late_sink_reaching(side) else {
                continue;
            };
            let Some(def) = whole_source(side) else {
                return Err(Error::Unsupported(format!(
                    "late_sink on source '{source}' read by a join through a projection: its \
                     late rows are the source's only when the join reads the source's rows as \
                     they are (through filters); join a window of it, or drop the late_sink"
                )));
            };
            if seen.contains(&def.name) {
                continue;
            }
            seen.push(def.name.clone());
            let name = def.late_sink.clone().unwrap_or_default();
            let sink = self.catalog.sinks().get(&name).cloned().ok_or_else(|| {
                Error::Plan(format!(
                    "source '{source}' names late_sink '{name}', which is not a declared sink"
                ))
            })?;
            out.push((port, sink, Arc::clone(&def.schema)));
        }
        Ok(out)
    }

    /// `stream` through a filter of `conjuncts` over `schema`, if there are any.
    fn filtered(
        &mut self,
        stream: Stream,
        conjuncts: Vec<Expr>,
        schema: &DFSchema,
    ) -> Result<Stream> {
        let Some(predicate) = conjuncts.into_iter().reduce(and) else {
            return Ok(stream);
        };
        let predicate = self.physical_expr(&predicate, schema)?;
        let node = self.add_after(Box::new(Filter::new(predicate)), &stream);
        Ok(Stream { node, ..stream })
    }

    fn interval_join(
        &self,
        join: &Join,
        condition: &JoinCondition,
        kind: JoinKind,
    ) -> Result<IntervalJoin> {
        let (left_schema, right_schema) = (join.left.schema(), join.right.schema());
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        for (l, r) in &condition.keys {
            left_keys.push(self.physical_expr(l, left_schema)?);
            right_keys.push(self.physical_expr(r, right_schema)?);
        }
        let residual = (condition.residual.as_ref())
            .map(|e| self.physical_expr(e, &join.schema))
            .transpose()?;
        let bound = condition.bound;
        IntervalJoin::try_new(
            JoinInput {
                schema: arrow_schema(left_schema),
                keys: left_keys,
                time_column: bound.left_column,
            },
            JoinInput {
                schema: arrow_schema(right_schema),
                keys: right_keys,
                time_column: bound.right_column,
            },
            (bound.lower, bound.upper),
            residual,
            kind,
            arrow_schema(&join.schema),
            bound.describe(left_schema, right_schema),
        )
    }
}

/// Takes the residual's conjuncts that read one side only and may filter it before the join:
/// (left's, right's).
fn take_one_sided(condition: &mut JoinCondition, join: &Join, kind: JoinKind) -> [Vec<Expr>; 2] {
    let Some(residual) = condition.residual.take() else {
        return [Vec::new(), Vec::new()];
    };
    // A side padded with NULLs loses no rows to a filter of the other side's ON conjuncts.
    let (left_ok, right_ok) = match kind {
        JoinKind::Inner => (true, true),
        JoinKind::Left => (false, true),
        JoinKind::Right => (true, false),
        JoinKind::Full => (false, false),
    };
    let reads_only =
        |e: &Expr, schema: &DFSchema| e.column_refs().iter().all(|c| schema.has_column(c));
    let mut sides = [Vec::new(), Vec::new()];
    let mut rest = Vec::new();
    for conjunct in split_conjunction_owned(residual) {
        if left_ok && reads_only(&conjunct, join.left.schema()) {
            sides[0].push(conjunct);
        } else if right_ok && reads_only(&conjunct, join.right.schema()) {
            sides[1].push(conjunct);
        } else {
            rest.push(conjunct);
        }
    }
    condition.residual = rest.into_iter().reduce(and);
    sides
}

/// An inner join with a WHERE over it as one join: the WHERE's conjuncts join its ON (Nexmark
/// q7 bounds the join's time there).
pub(super) fn with_where(join: &Join, predicate: &Expr) -> Join {
    let filter = match &join.filter {
        Some(on) => and(on.clone(), predicate.clone()),
        None => predicate.clone(),
    };
    Join {
        filter: Some(filter),
        ..join.clone()
    }
}

/// A source without a watermark whose rows reach the join unwindowed: nothing tells the join
/// the other side's rows can go.
fn source_without_watermark(plan: &LogicalPlan) -> Option<String> {
    reaching_source(plan, |source| source.def.watermark.is_none())
}

/// A source with a `late_sink` whose rows reach the join unwindowed: the join would judge
/// them late where no window has, and it does not write to the sink. Windows and aggregates
/// in between send their late rows there themselves, and emit none the join finds late.
pub(super) fn late_sink_reaching(plan: &LogicalPlan) -> Option<String> {
    reaching_source(plan, |source| source.def.late_sink.is_some())
}

/// The first source `wanted` picks whose rows reach the top of `plan` unwindowed: through
/// views, not through windows or aggregates.
fn reaching_source(plan: &LogicalPlan, wanted: fn(&SourceTable) -> bool) -> Option<String> {
    let mut found = None;
    let _ = plan.apply(|node| {
        let LogicalPlan::TableScan(scan) = node else {
            return Ok(match node {
                LogicalPlan::Aggregate(_) => TreeNodeRecursion::Jump,
                _ => TreeNodeRecursion::Continue,
            });
        };
        let Ok(provider) = source_as_provider(&scan.source) else {
            return Ok(TreeNodeRecursion::Continue);
        };
        if let Some(source) = provider.downcast_ref::<SourceTable>()
            && wanted(source)
        {
            found = Some(source.def.name.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        if provider.downcast_ref::<WindowTable>().is_none()
            && let Some(view) = provider.get_logical_plan()
        {
            found = reaching_source(&view, wanted);
        }
        Ok(match found {
            Some(_) => TreeNodeRecursion::Stop,
            None => TreeNodeRecursion::Continue,
        })
    });
    found
}

fn join_kind(join_type: JoinType) -> Result<JoinKind> {
    match join_type {
        JoinType::Inner => Ok(JoinKind::Inner),
        JoinType::Left => Ok(JoinKind::Left),
        JoinType::Right => Ok(JoinKind::Right),
        JoinType::Full => Ok(JoinKind::Full),
        other => Err(Error::Unsupported(format!(
            "{other} joins of streams (from EXISTS, IN or a semi/anti join); write an inner, \
             LEFT, RIGHT or FULL OUTER JOIN"
        ))),
    }
}

/// A join's time columns are compared in nanoseconds, as Vigil's `TIMESTAMP`s are.
fn check_nanoseconds(schema: &DFSchema, column: usize) -> Result<()> {
    let field = schema.field(column);
    match field.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Ok(()),
        other => Err(Error::Plan(format!(
            "the join's time column '{}' is {other}: compare TIMESTAMP columns (cast it with \
             CAST({} AS TIMESTAMP))",
            field.name(),
            field.name()
        ))),
    }
}
