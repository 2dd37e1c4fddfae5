//! Whether a `HOP` can reach its aggregate by panes (each event once) instead of as one copy
//! of each event per window.
//!
//! Panes change what `window_start` and `window_end` hold between the `HOP` and the
//! aggregate (a pane's start and the end of the first window an event counts in), so they
//! are used only when nothing there reads them: the path is projections and filters that
//! pass the two columns through untouched, and the aggregate groups by both and aggregates
//! neither. Anything else keeps the copies, which are always right.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};

use super::window_table::WindowTable;
use crate::time::WindowSpec;

const WINDOW_COLUMNS: [&str; 2] = ["window_start", "window_end"];

/// True when `agg` reads a `HOP` (not a tumble) that it may take by panes.
pub(super) fn hop_by_panes(agg: &Aggregate) -> bool {
    reads_window_untouched(agg, WindowSpec::is_hopping)
}

/// The gap of the `SESSION` that `agg` reads, when it groups by both its bounds and nothing
/// between reads them: each row's bounds there are its own session's, not yet merged.
pub(super) fn session_gap(agg: &Aggregate) -> Option<i64> {
    let spec = window_spec(&agg.input).filter(WindowSpec::is_session)?;
    reads_window_untouched(agg, WindowSpec::is_session).then_some(spec.size)
}

/// Whether `agg` groups by both bounds of a window of the `wanted` kind, and neither it nor
/// anything between reads them otherwise.
fn reads_window_untouched(agg: &Aggregate, wanted: fn(&WindowSpec) -> bool) -> bool {
    if !window_spec(&agg.input).is_some_and(|spec| wanted(&spec)) {
        return false;
    }
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

/// The names the window columns go by at the top of `plan`, when `plan` is a window under
/// projections and filters that pass them through and read neither.
fn window_names(plan: &LogicalPlan) -> Option<HashSet<String>> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            provider.downcast_ref::<WindowTable>()?;
            Some(WINDOW_COLUMNS.map(String::from).into())
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

/// The `PARTITION BY` columns of the `SESSION` that `agg` reads, as Flink's form names them
/// (none for Vigil's own).
pub(super) fn session_partition(agg: &Aggregate) -> Vec<String> {
    window_table(&agg.input, |w| w.partition_by.clone()).unwrap_or_default()
}

/// The relation the `SESSION` that `agg` reads windows.
pub(super) fn session_source(agg: &Aggregate) -> Option<Arc<dyn TableProvider>> {
    window_table(&agg.input, |w| Arc::clone(&w.input))
}

/// The window under projections, filters and aliases at the top of `plan`, if any.
fn window_spec(plan: &LogicalPlan) -> Option<WindowSpec> {
    window_table(plan, |w| w.spec)
}

/// `read` of the window table under projections, filters and aliases at the top of `plan`.
fn window_table<T>(plan: &LogicalPlan, read: fn(&WindowTable) -> T) -> Option<T> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            Some(read(provider.downcast_ref::<WindowTable>()?))
        }
        LogicalPlan::SubqueryAlias(alias) => window_table(&alias.input, read),
        LogicalPlan::Filter(filter) => window_table(&filter.input, read),
        LogicalPlan::Projection(projection) => window_table(&projection.input, read),
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
