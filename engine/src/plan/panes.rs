//! Whether a `HOP` can reach its aggregate by panes (each event once) instead of as one copy
//! of each event per window.
//!
//! Panes change what `window_start` and `window_end` hold between the `HOP` and the
//! aggregate (a pane's start and the end of the first window an event counts in), so they
//! are used only when nothing there reads them: the path is projections and filters that
//! pass the two columns through untouched, and the aggregate groups by both and aggregates
//! neither. Anything else keeps the copies, which are always right.

use std::collections::HashSet;

use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};

use super::window_table::WindowTable;

const WINDOW_COLUMNS: [&str; 2] = ["window_start", "window_end"];

/// True when `agg` reads a `HOP` (not a tumble) that it may take by panes.
pub(super) fn hop_by_panes(agg: &Aggregate) -> bool {
    let Some(names) = window_names(&agg.input) else {
        return false;
    };
    let plain = |e: &Expr| matches!(e, Expr::Column(c) if names.contains(&c.name));
    let grouped = agg.group_expr.iter().filter(|e| plain(e)).count();
    grouped == 2
        && agg
            .group_expr
            .iter()
            .filter(|e| !plain(e))
            .chain(&agg.aggr_expr)
            .all(|e| !reads(e, &names))
}

/// The names the window columns go by at the top of `plan`, when `plan` is a `HOP` under
/// projections and filters that pass them through and read neither.
fn window_names(plan: &LogicalPlan) -> Option<HashSet<String>> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let window = provider.downcast_ref::<WindowTable>()?;
            window
                .spec
                .is_hopping()
                .then(|| WINDOW_COLUMNS.map(String::from).into())
        }
        LogicalPlan::SubqueryAlias(alias) => window_names(&alias.input),
        LogicalPlan::Filter(filter) => {
            let names = window_names(&filter.input)?;
            (!reads(&filter.predicate, &names)).then_some(names)
        }
        LogicalPlan::Projection(projection) => {
            let names = window_names(&projection.input)?;
            let mut out = HashSet::new();
            for expr in &projection.expr {
                match passed_through(expr) {
                    Some((column, name)) if names.contains(column) => {
                        out.insert(name.to_string());
                    }
                    _ if reads(expr, &names) => return None,
                    _ => {}
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// A bare column, possibly renamed: (its name, the name it leaves with).
fn passed_through(expr: &Expr) -> Option<(&str, &str)> {
    match expr {
        Expr::Column(c) => Some((&c.name, &c.name)),
        Expr::Alias(alias) => match alias.expr.as_ref() {
            Expr::Column(c) => Some((&c.name, &alias.name)),
            _ => None,
        },
        _ => None,
    }
}

fn reads(expr: &Expr, names: &HashSet<String>) -> bool {
    expr.column_refs().iter().any(|c| names.contains(&c.name))
}
