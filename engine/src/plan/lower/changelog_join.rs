//! Lowering of a join with no time bound, or of changelogs, to a [`ChangelogJoin`].
//!
//! Such a join keeps every live row of both sides. That is bounded when each side is keyed by
//! the join's keys (an updating GROUP BY on them keeps one row per key, as its aggregate
//! does); otherwise the query must set a state TTL, or the join is refused at plan time.

use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, Join, LogicalPlan};

use super::{Lowering, Partitioning, Stream, arrow_schema};
use crate::error::{Error, Result};
use crate::operators::{ChangelogInput, ChangelogJoin, JoinKind, MAIN_PORT};
use crate::plan::graph::Edge;
use crate::plan::join_condition::{TIME_BOUND_EXAMPLES, equality_keys};

impl Lowering<'_> {
    /// A join with no time bound, of the lowered `sides`.
    pub(super) fn lower_changelog_join(
        &mut self,
        join: &Join,
        kind: JoinKind,
        sides: [Stream; 2],
    ) -> Result<Stream> {
        let (keys, residual) = equality_keys(join);
        if keys.is_empty() {
            return Err(Error::Unsupported(
                "a join with no equality key (a cross join): join on a key, e.g. ON a.k = b.k"
                    .into(),
            ));
        }
        if residual.is_some() && kind != JoinKind::Inner {
            return Err(Error::Unsupported(
                "an outer join with no time bound joins on equality keys only: move the other \
                 conditions to a WHERE over the join"
                    .into(),
            ));
        }
        let ttl = self.options.state_ttl;
        if ttl.is_none() && !self.options.view && !keyed_by(join, &keys) {
            let what = match sides.iter().find_map(|s| s.updating.as_ref()) {
                Some(changelog) => format!("a join of {changelog}"),
                None => "a join with no time bound".to_string(),
            };
            return Err(Error::Unsupported(format!(
                "{what} keeps every row of both sides, so its state grows without bound: \
                 bound it in time ({TIME_BOUND_EXAMPLES}) over append-only inputs, join \
                 inputs keyed by the join keys (e.g. GROUP BY them), or set a state TTL: WITH \
                 (state_ttl = '7 days') on the sink, or SET state_ttl = '7 days' in the REPL"
            )));
        }
        let inputs = [
            self.changelog_input(&join.left, keys.iter().map(|(l, _)| l))?,
            self.changelog_input(&join.right, keys.iter().map(|(_, r)| r))?,
        ];
        let residual = (residual.as_ref())
            .map(|e| self.physical_expr(e, &join.schema))
            .transpose()?;
        let [left_input, right_input] = inputs;
        let operator = ChangelogJoin::try_new(
            left_input,
            right_input,
            kind,
            residual,
            arrow_schema(&join.schema),
            ttl,
        )?;
        let [left, right] = sides;
        let edges = [&left, &right].map(|s| Edge {
            from: s.node,
            port: MAIN_PORT,
        });
        let node = self.add(Box::new(operator), edges.to_vec());
        self.spans_splits = true;
        let partitioning = match Partitioning::union(&[&left.partitioning, &right.partitioning]) {
            Partitioning::Whole => Partitioning::Whole,
            other => Partitioning::Unknown(other.sources().to_vec()),
        };
        // Outer joins retract their padded rows; an inner join of append-only streams only adds.
        let updating = left.updating.or(right.updating).or_else(|| {
            (kind != JoinKind::Inner).then(|| format!("the {kind:?} join with no time bound"))
        });
        Ok(Stream {
            node,
            window: None,
            updating: updating.map(|what| format!("the join of {what}")),
            partitioning,
        })
    }

    fn changelog_input<'e>(
        &self,
        side: &LogicalPlan,
        keys: impl Iterator<Item = &'e Expr>,
    ) -> Result<ChangelogInput> {
        let schema = side.schema();
        Ok(ChangelogInput {
            schema: arrow_schema(schema),
            keys: keys
                .map(|k| self.physical_expr(k, schema))
                .collect::<Result<_>>()?,
        })
    }
}

/// Whether each side holds at most one row per value of its join keys: its unique key (the
/// columns of an updating GROUP BY) is among them.
fn keyed_by(join: &Join, keys: &[(Expr, Expr)]) -> bool {
    let covered = |plan: &LogicalPlan, exprs: Vec<&Expr>| {
        let Some(unique) = unique_key(plan) else {
            return false;
        };
        let joined = key_columns(plan.schema(), exprs);
        unique.iter().all(|c| joined.contains(c))
    };
    covered(&join.left, keys.iter().map(|(l, _)| l).collect())
        && covered(&join.right, keys.iter().map(|(_, r)| r).collect())
}

/// The indices of the plain columns among `exprs`, in `schema`.
fn key_columns(schema: &DFSchema, exprs: Vec<&Expr>) -> Vec<usize> {
    exprs
        .into_iter()
        .filter_map(|e| column_of(schema, e))
        .collect()
}

/// The index of the column `expr` is (under any alias), if it is one.
fn column_of(schema: &DFSchema, expr: &Expr) -> Option<usize> {
    match expr.clone().unalias() {
        Expr::Column(c) => schema.index_of_column(&c).ok(),
        _ => None,
    }
}

/// Columns (indices) no two live rows of `plan` share: an aggregate's group columns, followed
/// through filters, aliases and projections that keep them.
fn unique_key(plan: &LogicalPlan) -> Option<Vec<usize>> {
    match plan {
        LogicalPlan::Aggregate(agg) if !agg.group_expr.is_empty() => {
            Some((0..agg.group_expr.len()).collect())
        }
        LogicalPlan::Filter(f) => unique_key(&f.input),
        LogicalPlan::SubqueryAlias(a) => unique_key(&a.input),
        LogicalPlan::Projection(p) => {
            let input = unique_key(&p.input)?;
            let schema = p.input.schema();
            input
                .iter()
                .map(|k| p.expr.iter().position(|e| column_of(schema, e) == Some(*k)))
                .collect()
        }
        _ => None,
    }
}
