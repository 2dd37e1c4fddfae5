//! [`MatchTable`]: a `MATCH_RECOGNIZE` clause as DataFusion sees it, a table of one row per
//! match (the PARTITION BY columns, then the MEASURES) that it plans the rest of the query
//! against. The lowering turns its scan into a `MatchRecognize` operator over the input's
//! own plan.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchemaRef, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;

use crate::operators::{AfterMatch, Navigation, Pattern};

/// A navigation of MEASURES over the input's columns.
#[derive(Debug, Clone)]
pub struct LogicalNavigation {
    /// The variable; `None` for every row of the match.
    pub var: Option<u8>,
    /// Which row of the match.
    pub navigation: Navigation,
    /// The value read there.
    pub arg: Expr,
}

/// An aggregate of MEASURES over the rows of one variable.
#[derive(Debug, Clone)]
pub struct LogicalAggregate {
    /// The variable; `None` for every row of the match.
    pub var: Option<u8>,
    /// The aggregate call over the input's columns.
    pub call: Expr,
}

/// A planned `MATCH_RECOGNIZE`, in logical expressions.
#[derive(Debug, Clone)]
pub struct LogicalMatch {
    /// PARTITION BY columns of the input.
    pub partition_by: Vec<Expr>,
    /// The event-time column the rows are ordered by.
    pub time_column: usize,
    /// Further ORDER BY keys.
    pub order_by: Vec<Expr>,
    /// `PREV(x, n)` read by the DEFINE conditions: `x` over the input, and `n`.
    pub prevs: Vec<(Expr, usize)>,
    /// The input's columns, then one per PREV: what the conditions read.
    pub define_schema: DFSchemaRef,
    /// The pattern variables, as the pattern names them.
    pub variables: Vec<String>,
    /// Each variable's condition; `None` is true.
    pub defines: Vec<Option<Expr>>,
    /// The pattern over variable numbers.
    pub pattern: Pattern,
    /// AFTER MATCH SKIP.
    pub after_match: AfterMatch,
    /// WITHIN, in nanoseconds.
    pub within: Option<i64>,
    /// What the MEASURES read of the match's rows.
    pub navigations: Vec<LogicalNavigation>,
    /// Aggregates the MEASURES take.
    pub aggregates: Vec<LogicalAggregate>,
    /// The partition columns, then one per navigation and aggregate.
    pub atoms_schema: DFSchemaRef,
    /// The MEASURES over the atoms.
    pub measures: Vec<Expr>,
    /// The MEASURES as written.
    pub measure_labels: Vec<String>,
}

/// A `MATCH_RECOGNIZE` over its input's plan.
#[derive(Debug)]
pub struct MatchTable {
    /// The rows matched: the input's own plan.
    pub input: LogicalPlan,
    /// The clause.
    pub spec: LogicalMatch,
    /// One row per match.
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for MatchTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan_err!("MATCH_RECOGNIZE runs only in Vigil's streaming runtime")
    }
}
