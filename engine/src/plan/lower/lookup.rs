//! Lowering of a join of a stream with a table (`CREATE TABLE ... PRIMARY KEY`) to a
//! [`LookupJoin`].

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan};

use super::{Lowering, Partitioning, Stream, arrow_schema};
use crate::catalog::{SourceDef, SourceTable};
use crate::error::{Error, Result};
use crate::operators::{LookupJoin, LookupSides, LookupTable, MAIN_PORT};
use crate::plan::graph::Edge;
use crate::plan::join_condition::equality_keys;

/// The table a join reads on one side, and which side (0 left, 1 right).
pub(super) fn table_side(join: &Join) -> Option<(usize, Arc<SourceDef>)> {
    [&join.left, &join.right]
        .iter()
        .enumerate()
        .find_map(|(side, plan)| table_of(plan).map(|def| (side, def)))
}

/// The table `plan` reads, when it is a table read as it is (under an alias).
fn table_of(plan: &LogicalPlan) -> Option<Arc<SourceDef>> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => table_of(&alias.input),
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let source = provider.downcast_ref::<SourceTable>()?;
            (!source.def.primary_key.is_empty()).then(|| Arc::clone(&source.def))
        }
        _ => None,
    }
}

impl Lowering<'_> {
    /// A stream's rows each joined with the table's current row of its key.
    pub(super) fn lower_lookup_join(
        &mut self,
        join: &Join,
        table_input: usize,
        table: &SourceDef,
    ) -> Result<Stream> {
        let keep_unmatched = match (join.join_type, table_input) {
            (JoinType::Inner, _) => false,
            (JoinType::Left, 1) | (JoinType::Right, 0) => true,
            _ => {
                return Err(Error::Unsupported(format!(
                    "a {} join of table '{}': a lookup join keeps or drops each row of the \
                     stream; write JOIN or LEFT JOIN with the table on the right",
                    join.join_type, table.name
                )));
            }
        };
        if table.shared_splits {
            return Err(Error::Plan(format!(
                "table '{}' is read through a consumer group, so each process would hold only \
                 some of its keys: a table is read whole by every process (drop group_id)",
                table.name
            )));
        }
        let plans = [&join.left, &join.right];
        let stream_input = 1 - table_input;
        let stream = self.lower(plans[stream_input])?;
        if let Some(what) = &stream.updating {
            return Err(Error::Unsupported(format!(
                "a lookup join of {what}: joins of changelogs; join an append-only stream \
                 with table '{}'",
                table.name
            )));
        }
        let reading_table = std::mem::replace(&mut self.table_allowed, true);
        let table_stream = self.lower(plans[table_input]);
        self.table_allowed = reading_table;
        let table_stream = table_stream?;
        let operator = self.lookup_join(join, table_input, table, keep_unmatched)?;
        let mut edges = [stream.node, table_stream.node].map(|from| Edge {
            from,
            port: MAIN_PORT,
        });
        if table_input == 0 {
            edges.reverse();
        }
        let node = self.add(Box::new(operator), edges.to_vec());
        // The table's rows are needed by every stream row, whichever split it came from.
        self.spans_splits = true;
        let shift = if table_input == 0 {
            table.schema.fields().len()
        } else {
            0
        };
        let partitioning = match stream.partitioning {
            Partitioning::Whole => Partitioning::Whole,
            other => Partitioning::Unknown(other.sources().to_vec()),
        };
        Ok(Stream {
            node,
            window: stream.window.map(|(s, e)| (s + shift, e + shift)),
            updating: None,
            partitioning,
        })
    }

    fn lookup_join(
        &self,
        join: &Join,
        table_input: usize,
        table: &SourceDef,
        keep_unmatched: bool,
    ) -> Result<LookupJoin> {
        let schemas = [join.left.schema(), join.right.schema()];
        let (keys, residual) = equality_keys(join);
        let mut stream_keys = Vec::new();
        let mut table_keys = Vec::new();
        let mut keyed_columns = Vec::new();
        for pair in &keys {
            let (stream_key, table_key) = match table_input {
                0 => (&pair.1, &pair.0),
                _ => (&pair.0, &pair.1),
            };
            keyed_columns.push(key_column(table_key, schemas[table_input]));
            stream_keys.push(self.physical_expr(stream_key, schemas[1 - table_input])?);
            table_keys.push(self.physical_expr(table_key, schemas[table_input])?);
        }
        check_primary_key(table, &keyed_columns)?;
        let residual = (residual.as_ref())
            .map(|e| self.physical_expr(e, &join.schema))
            .transpose()?;
        let lookup = LookupTable::new(arrow_schema(schemas[table_input]), table_keys)?;
        let sides = LookupSides {
            table_input,
            keep_unmatched,
            load_first: table.options.get("connector") == Some("file"),
        };
        LookupJoin::try_new(
            lookup,
            table.name.clone(),
            stream_keys,
            residual,
            sides,
            arrow_schema(&join.schema),
        )
    }
}

/// The table column a key expression is (perhaps cast), if it is one.
fn key_column(expr: &Expr, schema: &DFSchema) -> Option<usize> {
    match expr {
        Expr::Column(column) => schema.index_of_column(column).ok(),
        Expr::Cast(cast) => key_column(&cast.expr, schema),
        _ => None,
    }
}

/// A lookup finds one row: the join's keys on the table must be its primary key exactly.
fn check_primary_key(table: &SourceDef, keyed: &[Option<usize>]) -> Result<()> {
    let mut columns: Vec<usize> = keyed.iter().flatten().copied().collect();
    columns.sort_unstable();
    columns.dedup();
    let mut primary = table.primary_key.clone();
    primary.sort_unstable();
    if keyed.iter().all(Option::is_some) && columns == primary {
        return Ok(());
    }
    let names: Vec<&str> = (table.primary_key.iter())
        .map(|i| table.schema.field(*i).name().as_str())
        .collect();
    Err(Error::Plan(format!(
        "a join of table '{}' must look its rows up by their primary key: write ON \
         s.k = {}.{} with each of its key columns ({}) equal to a column of the stream",
        table.name,
        table.name,
        names[0],
        names.join(", ")
    )))
}
