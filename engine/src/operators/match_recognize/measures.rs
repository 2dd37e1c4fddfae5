//! [`Measures`]: a match's output row, from its rows and the variable each is mapped to.
//!
//! Every navigation (`FIRST(A.ts)`, `LAST(C.temperature)`, `PREV(B.x, 2)`) and every
//! aggregate over a variable is a column of an intermediate batch, one row per match:
//! navigations gather the row they pick from the store with one `interleave`, aggregates
//! feed the rows of their variable to a DataFusion `GroupsAccumulator` with the match as the
//! group. The MEASURES expressions are then evaluated over that batch at once.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::store::{RowRef, RowStore};
use crate::error::{Error, Result};
use crate::operators::evaluate_all;

/// How a navigation picks a row of the match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Navigation {
    /// The n-th row (from 0) mapped to the variable.
    First(usize),
    /// The n-th row from the last mapped to the variable; `A.x` is `LAST(A.x, 0)`.
    Last(usize),
    /// n rows before the variable's last row, within the match.
    Prev(usize),
    /// n rows after the variable's last row, within the match.
    Next(usize),
}

/// One value read from one row of the match.
#[derive(Debug, Clone)]
pub struct NavigationAtom {
    /// The variable; `None` for every row of the match.
    pub var: Option<u8>,
    /// Which row.
    pub navigation: Navigation,
    /// The value, over the input's columns.
    pub arg: Arc<dyn PhysicalExpr>,
}

/// One aggregate over the rows of a variable.
#[derive(Debug, Clone)]
pub struct AggregateAtom {
    /// The variable; `None` for every row of the match.
    pub var: Option<u8>,
    /// DataFusion's aggregate, over the input's columns.
    pub function: Arc<AggregateFunctionExpr>,
}

/// A match found: its rows and the variable each is mapped to.
#[derive(Debug, Clone)]
pub struct Found {
    /// The rows, in order.
    pub rows: Vec<RowRef>,
    /// The variable of each.
    pub vars: Vec<u8>,
}

/// The output row of a match: the partition keys, then each measure.
#[derive(Debug, Clone)]
pub struct Measures {
    /// The PARTITION BY expressions, over the input's columns.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Navigations, in the intermediate batch after the keys.
    pub navigations: Vec<NavigationAtom>,
    /// Aggregates, after the navigations.
    pub aggregates: Vec<AggregateAtom>,
    /// The intermediate batch's schema.
    pub atoms_schema: SchemaRef,
    /// The MEASURES expressions, over the intermediate batch.
    pub exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The output schema: keys, then measures.
    pub schema: SchemaRef,
}

impl Measures {
    /// One output row per match.
    pub fn evaluate(&self, found: &[Found], store: &RowStore) -> Result<RecordBatch> {
        let firsts: Vec<RowRef> = found.iter().map(|m| m.rows[0]).collect();
        let first_rows = store.gather(&firsts)?;
        let mut atoms = evaluate_all(&self.keys, &first_rows)?;
        for atom in &self.navigations {
            atoms.push(navigate(atom, found, store, &firsts)?);
        }
        for atom in &self.aggregates {
            atoms.push(aggregate(atom, found, store)?);
        }
        let atoms = RecordBatch::try_new(Arc::clone(&self.atoms_schema), atoms)?;
        let mut columns = atoms.columns()[..self.keys.len()].to_vec();
        columns.extend(evaluate_all(&self.exprs, &atoms)?);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// The position in the match a navigation picks, if the match has it.
fn pick(atom: &NavigationAtom, vars: &[u8]) -> Option<usize> {
    let mine = |i: &usize| atom.var.is_none_or(|v| vars[*i] == v);
    let last = || (0..vars.len()).rev().find(mine);
    match atom.navigation {
        Navigation::First(n) => (0..vars.len()).filter(mine).nth(n),
        Navigation::Last(n) => (0..vars.len()).rev().filter(mine).nth(n),
        Navigation::Prev(n) => last()?.checked_sub(n),
        Navigation::Next(n) => Some(last()? + n).filter(|i| *i < vars.len()),
    }
}

/// A navigation's value for each match; NULL where the match has no such row.
fn navigate(
    atom: &NavigationAtom,
    found: &[Found],
    store: &RowStore,
    firsts: &[RowRef],
) -> Result<ArrayRef> {
    let picked: Vec<Option<RowRef>> = found
        .iter()
        .map(|m| pick(atom, &m.vars).map(|i| m.rows[i]))
        .collect();
    // A missing row reads the match's first, then is blanked.
    let refs: Vec<RowRef> = (picked.iter().zip(firsts))
        .map(|(p, first)| p.unwrap_or(*first))
        .collect();
    let rows = store.gather(&refs)?;
    let values = atom.arg.evaluate(&rows)?.into_array(rows.num_rows())?;
    if picked.iter().all(Option::is_some) {
        return Ok(values);
    }
    let missing: BooleanArray = picked.iter().map(|p| Some(p.is_none())).collect();
    Ok(nullif(&values, &missing)?)
}

/// An aggregate's value for each match, over the match's rows of its variable.
fn aggregate(atom: &AggregateAtom, found: &[Found], store: &RowStore) -> Result<ArrayRef> {
    let mut refs = Vec::new();
    let mut groups = Vec::new();
    for (group, m) in found.iter().enumerate() {
        for (row, var) in m.rows.iter().zip(&m.vars) {
            if atom.var.is_none_or(|v| v == *var) {
                refs.push(*row);
                groups.push(group);
            }
        }
    }
    let rows = store.gather(&refs)?;
    let args = evaluate_all(&atom.function.expressions(), &rows)?;
    if !atom.function.groups_accumulator_supported() {
        return aggregate_each(atom, &args, &groups, found.len());
    }
    let mut accumulator = atom.function.create_groups_accumulator()?;
    accumulator.update_batch(&args, &groups, None, found.len())?;
    Ok(accumulator.evaluate(EmitTo::All)?)
}

/// [`aggregate`] with one plain accumulator per match, for functions without a groups
/// accumulator: rows are grouped by match already, so each match is a slice.
fn aggregate_each(
    atom: &AggregateAtom,
    args: &[ArrayRef],
    groups: &[usize],
    matches: usize,
) -> Result<ArrayRef> {
    let mut values = Vec::with_capacity(matches);
    let mut start = 0;
    for group in 0..matches {
        let end = start + groups[start..].iter().take_while(|g| **g == group).count();
        let slice: Vec<ArrayRef> = args.iter().map(|a| a.slice(start, end - start)).collect();
        let mut accumulator = atom.function.create_accumulator()?;
        accumulator.update_batch(&slice)?;
        values.push(accumulator.evaluate()?);
        start = end;
    }
    datafusion::common::ScalarValue::iter_to_array(values)
        .map_err(|e| Error::Internal(format!("a MEASURES aggregate: {e}")))
}
