//! The window table functions `TUMBLE(relation, time_col, size)`,
//! `HOP(relation, time_col, slide, size)`, `CUMULATE(relation, time_col, step, size)` and
//! `SESSION(relation, time_col, gap)`.
//!
//! DataFusion plans them as a scan of a [`WindowTable`]: the relation's columns plus
//! `window_start` and `window_end`. The lowering turns that scan into a `WindowAssign`
//! operator over the relation's own plan.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::Relations;
use crate::time::{IntervalLength, TIMESTAMP_TYPE, WindowKind, WindowSpec, interval_length};

pub use crate::time::{WINDOW_END, WINDOW_START, describe_nanos};

/// The relation a window function reads, with its window.
#[derive(Debug)]
pub struct WindowTable {
    /// The source or view windowed.
    pub input: Arc<dyn TableProvider>,
    /// Its name.
    pub input_name: String,
    /// Index of the event-time column in the input.
    pub time_column: usize,
    /// Tumbling or hopping.
    pub spec: WindowSpec,
    /// A session's `PARTITION BY` columns as Flink writes them (`SESSION(TABLE t PARTITION
    /// BY k, ...)`): the GROUP BY keys must be these. Empty otherwise.
    pub partition_by: Vec<String>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for WindowTable {
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
        plan_err!(
            "window over '{}' runs only in Vigil's streaming runtime",
            self.input_name
        )
    }
}

/// `TUMBLE(relation, time_col, size)`.
#[derive(Debug)]
pub struct TumbleFunction {
    relations: Relations,
}

impl TumbleFunction {
    pub(crate) fn new(relations: Relations) -> Self {
        Self { relations }
    }
}

impl TableFunctionImpl for TumbleFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.len() != 3 {
            return plan_err!(
                "TUMBLE takes 3 arguments (relation, time column, size), e.g. TUMBLE(sensors, ts, INTERVAL '1' MINUTE); got {}",
                exprs.len()
            );
        }
        let size = interval_nanos(&exprs[2], "TUMBLE size")?;
        build_window_table(
            &self.relations,
            "TUMBLE",
            &exprs[0],
            &exprs[1],
            WindowSpec {
                size,
                slide: size,
                kind: WindowKind::Sliding,
            },
        )
    }
}

/// `HOP(relation, time_col, slide, size)`.
#[derive(Debug)]
pub struct HopFunction {
    relations: Relations,
    /// The most windows one event may fall into (`size / slide`): each is state to keep.
    max_windows: Arc<AtomicUsize>,
}

impl HopFunction {
    pub(crate) fn new(relations: Relations, max_windows: Arc<AtomicUsize>) -> Self {
        Self {
            relations,
            max_windows,
        }
    }
}

impl TableFunctionImpl for HopFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.len() != 4 {
            return plan_err!(
                "HOP takes 4 arguments (relation, time column, slide, size), e.g. HOP(sensors, ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE); got {}",
                exprs.len()
            );
        }
        let slide = interval_nanos(&exprs[2], "HOP slide")?;
        let size = interval_nanos(&exprs[3], "HOP size")?;
        check_windows_per_event("HOP", "slide", slide, size, &self.max_windows)?;
        build_window_table(
            &self.relations,
            "HOP",
            &exprs[0],
            &exprs[1],
            WindowSpec {
                size,
                slide,
                kind: WindowKind::Sliding,
            },
        )
    }
}

/// `CUMULATE(relation, time_col, step, size)`: Flink's cumulating windows, which grow by
/// `step` from the start of each `size`-aligned period (a day's running totals every hour).
#[derive(Debug)]
pub struct CumulateFunction {
    relations: Relations,
    /// The most windows one event may fall into (`size / step`).
    max_windows: Arc<AtomicUsize>,
}

impl CumulateFunction {
    pub(crate) fn new(relations: Relations, max_windows: Arc<AtomicUsize>) -> Self {
        Self {
            relations,
            max_windows,
        }
    }
}

impl TableFunctionImpl for CumulateFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.len() != 4 {
            return plan_err!(
                "CUMULATE takes 4 arguments (relation, time column, step, size), e.g. CUMULATE(sensors, ts, INTERVAL '1' HOUR, INTERVAL '1' DAY); got {}",
                exprs.len()
            );
        }
        let step = interval_nanos(&exprs[2], "CUMULATE step")?;
        let size = interval_nanos(&exprs[3], "CUMULATE size")?;
        check_windows_per_event("CUMULATE", "step", step, size, &self.max_windows)?;
        build_window_table(
            &self.relations,
            "CUMULATE",
            &exprs[0],
            &exprs[1],
            WindowSpec {
                size,
                slide: step,
                kind: WindowKind::Cumulating,
            },
        )
    }
}

/// `SESSION(relation, time_col, gap)`: per the GROUP BY keys, a session is the events that
/// follow one another closer than `gap`: `[first, last + gap)`.
#[derive(Debug)]
pub struct SessionFunction {
    relations: Relations,
}

impl SessionFunction {
    pub(crate) fn new(relations: Relations) -> Self {
        Self { relations }
    }
}

impl TableFunctionImpl for SessionFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=4).contains(&exprs.len()) {
            return plan_err!(
                "SESSION takes 3 arguments (relation, time column, gap), e.g. SESSION(clicks, ts, INTERVAL '5' MINUTE); got {}",
                exprs.len()
            );
        }
        let gap = interval_nanos(&exprs[2], "SESSION gap")?;
        let table = build_window_table(
            &self.relations,
            "SESSION",
            &exprs[0],
            &exprs[1],
            WindowSpec {
                size: gap,
                slide: gap,
                kind: WindowKind::Session,
            },
        )?;
        match exprs.get(3) {
            Some(partition_by) => with_partition_by(table, partition_by),
            None => Ok(table),
        }
    }
}

/// A session table with the `PARTITION BY` columns of Flink's form (see
/// `sql::flink_windows`), each a column of the relation.
fn with_partition_by(
    table: Arc<dyn TableProvider>,
    columns: &Expr,
) -> Result<Arc<dyn TableProvider>> {
    let Expr::Literal(ScalarValue::Utf8(Some(columns)), _) = columns else {
        return plan_err!("SESSION's fourth argument is its PARTITION BY columns, as text");
    };
    let window = table.downcast_ref::<WindowTable>().expect("built above");
    // A qualified column (`s.k`) is the relation's own column `k`.
    let partition_by: Vec<String> = (columns.split(','))
        .map(|c| c.trim().rsplit('.').next().unwrap_or_default().to_string())
        .collect();
    if let Some(missing) =
        (partition_by.iter()).find(|c| window.input.schema().index_of(c).is_err())
    {
        return plan_err!(
            "SESSION PARTITION BY {missing}: not a column of '{}'",
            window.input_name
        );
    }
    Ok(Arc::new(WindowTable {
        input: Arc::clone(&window.input),
        input_name: window.input_name.clone(),
        time_column: window.time_column,
        spec: window.spec,
        partition_by,
        schema: Arc::clone(&window.schema),
    }))
}

/// Refuses a `size` that is not a multiple of its `slide` (or step), and one that puts an
/// event in more windows than the limit: each is state to keep.
fn check_windows_per_event(
    function: &str,
    slide_name: &str,
    slide: i64,
    size: i64,
    max_windows: &AtomicUsize,
) -> Result<()> {
    if size % slide != 0 {
        return plan_err!(
            "{function} size ({}) must be a multiple of its {slide_name} ({})",
            describe_nanos(size),
            describe_nanos(slide)
        );
    }
    let max_windows = max_windows.load(Ordering::Relaxed);
    if (size / slide) as u64 > max_windows as u64 {
        return plan_err!(
            "{function} with size {} and {slide_name} {} puts every event in {} windows, more \
             than the limit of {max_windows}: use a longer {slide_name}",
            describe_nanos(size),
            describe_nanos(slide),
            size / slide
        );
    }
    Ok(())
}

fn build_window_table(
    relations: &Relations,
    function: &str,
    relation: &Expr,
    time: &Expr,
    spec: WindowSpec,
) -> Result<Arc<dyn TableProvider>> {
    let Expr::Column(rel) = relation else {
        return plan_err!(
            "the first argument of {function} must name a source or view, found {relation}"
        );
    };
    let Some(input) = relations
        .read()
        .expect("relations lock")
        .get(&rel.name)
        .cloned()
    else {
        return plan_err!(
            "{function} over '{}': no source or view has that name",
            rel.name
        );
    };
    let Expr::Column(time_col) = time else {
        return plan_err!("the second argument of {function} must be a time column, found {time}");
    };
    let schema = input.schema();
    let Ok(time_column) = schema.index_of(&time_col.name) else {
        return plan_err!(
            "{function}: '{}' is not a column of '{}'",
            time_col.name,
            rel.name
        );
    };
    if !matches!(
        schema.field(time_column).data_type(),
        DataType::Timestamp(_, _)
    ) {
        return plan_err!(
            "{function}: time column '{}' must be a TIMESTAMP",
            time_col.name
        );
    }
    let schema = Arc::new(Schema::new(with_window_bounds(&schema)));
    Ok(Arc::new(WindowTable {
        input,
        input_name: rel.name.clone(),
        time_column,
        spec,
        partition_by: Vec::new(),
        schema,
    }))
}

/// The input's fields with `window_start` and `window_end` after them; a relation that has
/// its own (a view over another window) has them replaced where they are, so that a window
/// over a window names only its own bounds.
fn with_window_bounds(input: &Schema) -> Vec<Arc<Field>> {
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    for name in [WINDOW_START, WINDOW_END] {
        let bound = Arc::new(Field::new(name, TIMESTAMP_TYPE, false));
        match input.index_of(name) {
            Ok(index) => fields[index] = bound,
            Err(_) => fields.push(bound),
        }
    }
    fields
}

/// The length of an interval literal in nanoseconds.
pub(crate) fn interval_nanos(expr: &Expr, what: &str) -> Result<i64> {
    let length = match expr {
        Expr::Literal(value, _) => interval_length(value),
        _ => IntervalLength::NotAnInterval,
    };
    match length {
        IntervalLength::Nanos(nanos) if nanos > 0 => Ok(nanos),
        IntervalLength::Nanos(_) => {
            plan_err!("{what} must be positive, found {}", show_interval(expr))
        }
        IntervalLength::TooLong => plan_err!("{what} is too long: at most 292 years"),
        IntervalLength::Months | IntervalLength::NotAnInterval => plan_err!(
            "{what} must be a fixed interval such as INTERVAL '1' MINUTE, found {}",
            show_interval(expr)
        ),
    }
}

/// An interval literal as SQL writes it (`INTERVAL '0' SECOND`); any other expression as
/// DataFusion displays it.
fn show_interval(expr: &Expr) -> String {
    let (months, days, nanos) = match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) => {
            (v.months, v.days, v.nanoseconds)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            (0, v.days, i64::from(v.milliseconds) * 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalYearMonth(Some(months)), _) => (*months, 0, 0),
        other => return other.to_string(),
    };
    const UNITS: [(i64, &str); 4] = [
        (86_400_000_000_000, "DAY"),
        (3_600_000_000_000, "HOUR"),
        (60_000_000_000, "MINUTE"),
        (1_000_000_000, "SECOND"),
    ];
    match (
        months,
        i128::from(days) * 86_400_000_000_000 + i128::from(nanos),
    ) {
        (0, 0) => "INTERVAL '0' SECOND".to_string(),
        (0, total) => {
            let unit = UNITS
                .iter()
                .find(|(unit, _)| total % i128::from(*unit) == 0);
            match unit {
                Some((unit, name)) => format!("INTERVAL '{}' {name}", total / i128::from(*unit)),
                None => format!("INTERVAL '{}' SECOND", total as f64 / 1e9),
            }
        }
        (months, 0) => format!("INTERVAL '{months}' MONTH"),
        (months, _) => format!("INTERVAL '{months} months {days} days {nanos} nanoseconds'"),
    }
}
