//! Which columns of each source a query reads, so that sources decode only those (see
//! [`SourceBinding::read_columns`](super::SourceBinding::read_columns)).
//!
//! DataFusion's `OptimizeProjections` works this out: run over a copy of the plan, it leaves
//! each table scan with the columns needed above it. The copy is only read, never lowered:
//! pruning a window table's columns would hide `window_end` from the checks that need it.

use std::collections::{BTreeSet, HashMap};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{LogicalPlan, TableScan};

use super::window_table::WindowTable;
use crate::catalog::{Catalog, SourceDef, SourceTable};

/// Per source name, the column indices the query reads; a source not in the map, or the
/// whole map when `None`, is read in full.
pub(super) type ReadColumns = Option<HashMap<String, BTreeSet<usize>>>;

/// The columns `plan` reads of each source.
pub(super) fn read_columns(catalog: &Catalog, plan: &LogicalPlan) -> ReadColumns {
    let pruned = catalog.prune_columns(plan.clone()).ok()?;
    let mut read: HashMap<String, BTreeSet<usize>> = HashMap::new();
    let mut complete = true;
    let _ = pruned.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            complete &= add_scan(catalog, scan, &mut read);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    complete.then_some(read)
}

/// Adds the columns one scan reads; false when it cannot tell (a window over a view).
fn add_scan(
    catalog: &Catalog,
    scan: &TableScan,
    read: &mut HashMap<String, BTreeSet<usize>>,
) -> bool {
    let Ok(provider) = source_as_provider(&scan.source) else {
        return false;
    };
    if let Some(source) = provider.downcast_ref::<SourceTable>() {
        let width = source.def.schema.fields().len();
        add(read, &source.def, scan.projection.as_deref(), width, None);
        return true;
    }
    if let Some(window) = provider.downcast_ref::<WindowTable>() {
        let Some(source) = window.input.downcast_ref::<SourceTable>() else {
            return false;
        };
        // The window columns come after the source's, and are not read from it.
        let width = source.def.schema.fields().len();
        add(
            read,
            &source.def,
            scan.projection.as_deref(),
            width,
            Some(window.time_column),
        );
        return true;
    }
    // A view reached through a provider (not inlined) is lowered from its own plan.
    match provider.get_logical_plan() {
        Some(view) => match read_columns(catalog, &view) {
            Some(inner) => {
                for (name, columns) in inner {
                    read.entry(name).or_default().extend(columns);
                }
                true
            }
            None => false,
        },
        None => false,
    }
}

fn add(
    read: &mut HashMap<String, BTreeSet<usize>>,
    def: &SourceDef,
    projection: Option<&[usize]>,
    width: usize,
    time_column: Option<usize>,
) {
    let columns = read.entry(def.name.clone()).or_default();
    match projection {
        Some(indices) => columns.extend(indices.iter().copied().filter(|&i| i < width)),
        None => columns.extend(0..width),
    }
    columns.extend(time_column);
    // The watermark is computed from the rows as they arrive.
    if let Some(watermark) = &def.watermark {
        columns.insert(watermark.column_index);
        for column in watermark.expr.column_refs() {
            columns.extend(def.schema.index_of(&column.name).ok());
        }
    }
}
