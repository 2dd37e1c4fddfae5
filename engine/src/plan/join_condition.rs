//! What a join of two streams joins on: its equality keys, the time bound that lets its state
//! be freed, and what is left to test on each candidate pair.
//!
//! `ON l.user_id = t.user_id AND t.ts BETWEEN l.ts AND l.ts + INTERVAL '5' MINUTE` has the key
//! `(l.user_id, t.user_id)` and the bound `0 <= t.ts - l.ts <= 5 minutes`. Two windowed
//! streams joined on `window_end` have the bound `0 <= b.window_end - a.window_end <= 0`: a
//! window join is an interval join of width zero.

use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, Operator, and};

use crate::error::{Error, Result};
use crate::time::{IntervalLength, describe_nanos, interval_length};

/// How the right row's time may differ from the left row's: `lower <= right - left <= upper`,
/// in nanoseconds, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeBound {
    /// The left input's time column.
    pub left_column: usize,
    /// The right input's time column.
    pub right_column: usize,
    /// The least `right - left`.
    pub lower: i64,
    /// The greatest `right - left`.
    pub upper: i64,
}

impl TimeBound {
    /// The bound as EXPLAIN shows it.
    pub fn describe(&self, left: &DFSchema, right: &DFSchema) -> String {
        let l = left.field(self.left_column).name();
        let r = right.field(self.right_column).name();
        let show = |nanos: i64| match nanos {
            0 => "0".to_string(),
            n if n < 0 => format!("-{}", describe_nanos(-n)),
            n => describe_nanos(n),
        };
        if self.lower == self.upper {
            return format!("right.{r} - left.{l} = {}", show(self.lower));
        }
        format!(
            "right.{r} - left.{l} in [{}, {}]",
            show(self.lower),
            show(self.upper)
        )
    }
}

/// A join's condition, split.
#[derive(Debug, Clone)]
pub(crate) struct JoinCondition {
    /// Equality keys: expressions over the left input and, pairwise, over the right.
    pub keys: Vec<(Expr, Expr)>,
    /// The time bound.
    pub bound: TimeBound,
    /// The rest of the condition, over the join's output row.
    pub residual: Option<Expr>,
}

/// The window ends of the join's inputs, when they carry windows: an equality between them is
/// the preferred bound of width zero.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WindowEnds {
    pub left: Option<usize>,
    pub right: Option<usize>,
}

/// What bounds a join's state in time, for the error refusing a join without it.
pub(crate) const TIME_BOUND_EXAMPLES: &str = "an interval join such as ON a.k = b.k AND b.ts \
    BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE, or a window join ON a.window_start = \
    b.window_start AND a.window_end = b.window_end";

/// Splits `join`'s condition into keys, a time bound and a residual; `None` when it has no
/// time bound.
pub(crate) fn join_condition(join: &Join, ends: WindowEnds) -> Result<Option<JoinCondition>> {
    let (left, right) = (join.left.schema(), join.right.schema());
    let mut keys: Vec<(Expr, Expr)> = join.on.clone();
    let mut rest: Vec<Expr> = Vec::new();
    let mut bounds: Vec<(Comparison, Expr)> = Vec::new();
    let mut time_equalities: Vec<(usize, usize)> = Vec::new();
    for conjunct in conjuncts(join.filter.as_ref()) {
        if let Some((l, r)) = equality_key(&conjunct, left, right) {
            if let Some(pair) = timestamp_columns(&l, &r, left, right) {
                time_equalities.push(pair);
            }
            keys.push((l, r));
        } else if let Some(comparison) = Comparison::parse(&conjunct, left, right)? {
            bounds.push((comparison, conjunct));
        } else {
            rest.push(conjunct);
        }
    }
    let Some(bound) = tightest_bound(&bounds)?.or_else(|| equality_bound(&time_equalities, ends))
    else {
        return Ok(None);
    };
    // Comparisons of other columns than the bound's still have to hold for a pair.
    rest.extend(
        bounds
            .into_iter()
            .filter(|(c, _)| (c.left_column, c.right_column) != columns(&bound))
            .map(|(_, e)| e),
    );
    Ok(Some(JoinCondition {
        keys,
        bound,
        residual: rest.into_iter().reduce(and),
    }))
}

/// Splits `join`'s condition into equality keys (left expression, right expression) and the
/// rest, for joins that need no time bound.
pub(crate) fn equality_keys(join: &Join) -> (Vec<(Expr, Expr)>, Option<Expr>) {
    let (left, right) = (join.left.schema(), join.right.schema());
    let mut keys: Vec<(Expr, Expr)> = join.on.clone();
    let mut rest = Vec::new();
    for conjunct in conjuncts(join.filter.as_ref()) {
        match equality_key(&conjunct, left, right) {
            Some(pair) => keys.push(pair),
            None => rest.push(conjunct),
        }
    }
    (keys, rest.into_iter().reduce(and))
}

fn columns(bound: &TimeBound) -> (usize, usize) {
    (bound.left_column, bound.right_column)
}

/// The conjuncts of the ON condition, a `BETWEEN` as its two comparisons.
fn conjuncts(filter: Option<&Expr>) -> Vec<Expr> {
    let Some(filter) = filter else {
        return Vec::new();
    };
    split_conjunction(filter)
        .into_iter()
        .flat_map(|e| match e {
            Expr::Between(between) if !between.negated => vec![
                Expr::BinaryExpr(BinaryExpr::new(
                    between.expr.clone(),
                    Operator::GtEq,
                    between.low.clone(),
                )),
                Expr::BinaryExpr(BinaryExpr::new(
                    between.expr.clone(),
                    Operator::LtEq,
                    between.high.clone(),
                )),
            ],
            other => vec![other.clone()],
        })
        .collect()
}

/// Which input an expression reads, when only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

fn side_of(expr: &Expr, left: &DFSchema, right: &DFSchema) -> Option<Side> {
    let columns = expr.column_refs();
    if columns.is_empty() {
        None
    } else if columns.iter().all(|c| left.has_column(c)) {
        Some(Side::Left)
    } else if columns.iter().all(|c| right.has_column(c)) {
        Some(Side::Right)
    } else {
        None
    }
}

/// `l = r` with each side reading one input: (the left input's expression, the right's).
fn equality_key(expr: &Expr, left: &DFSchema, right: &DFSchema) -> Option<(Expr, Expr)> {
    let Expr::BinaryExpr(BinaryExpr {
        left: a,
        op: Operator::Eq,
        right: b,
    }) = expr
    else {
        return None;
    };
    match (side_of(a, left, right)?, side_of(b, left, right)?) {
        (Side::Left, Side::Right) => Some((*a.clone(), *b.clone())),
        (Side::Right, Side::Left) => Some((*b.clone(), *a.clone())),
        _ => None,
    }
}

/// Both expressions plain timestamp columns: their indices.
fn timestamp_columns(
    l: &Expr,
    r: &Expr,
    left: &DFSchema,
    right: &DFSchema,
) -> Option<(usize, usize)> {
    let (Expr::Column(l), Expr::Column(r)) = (l, r) else {
        return None;
    };
    Some((timestamp_index(l, left)?, timestamp_index(r, right)?))
}

fn timestamp_index(column: &Column, schema: &DFSchema) -> Option<usize> {
    let index = schema.index_of_column(column).ok()?;
    let timestamp = matches!(
        schema.field(index).data_type(),
        datafusion::arrow::datatypes::DataType::Timestamp(_, _)
    );
    timestamp.then_some(index)
}

/// `right - left` compared with a constant.
#[derive(Debug, Clone, Copy)]
struct Comparison {
    left_column: usize,
    right_column: usize,
    op: Operator,
    nanos: i64,
}

impl Comparison {
    /// `l.ts + x <op> r.ts + y` (either way round), as `r.ts - l.ts <op'> x - y`; `None` for
    /// any other conjunct.
    fn parse(expr: &Expr, left: &DFSchema, right: &DFSchema) -> Result<Option<Self>> {
        let Expr::BinaryExpr(BinaryExpr {
            left: a,
            op,
            right: b,
        }) = expr
        else {
            return Ok(None);
        };
        if !matches!(
            op,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
        ) {
            return Ok(None);
        }
        let (Some(a), Some(b)) = (time_term(a)?, time_term(b)?) else {
            return Ok(None);
        };
        let (l, r, op) = match (timestamp_index(&a.0, left), timestamp_index(&b.0, right)) {
            (Some(l), Some(r)) => ((l, a.1), (r, b.1), flip(*op)),
            _ => match (timestamp_index(&b.0, left), timestamp_index(&a.0, right)) {
                (Some(l), Some(r)) => ((l, b.1), (r, a.1), *op),
                _ => return Ok(None),
            },
        };
        // r + ry <op> l + ly  <=>  r - l <op> ly - ry
        Ok(Some(Self {
            left_column: l.0,
            right_column: r.0,
            op,
            nanos: l.1.saturating_sub(r.1),
        }))
    }
}

/// `a <op> b` as `b <op'> a`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// `column`, `column + INTERVAL`, `column - INTERVAL` or `INTERVAL + column`.
fn time_term(expr: &Expr) -> Result<Option<(Column, i64)>> {
    match expr {
        Expr::Column(c) => Ok(Some((c.clone(), 0))),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let sign = match op {
                Operator::Plus => 1,
                Operator::Minus => -1,
                _ => return Ok(None),
            };
            match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), interval) => {
                    Ok(signed_interval(interval)?.map(|n| (c.clone(), sign * n)))
                }
                (interval, Expr::Column(c)) if sign == 1 => {
                    Ok(signed_interval(interval)?.map(|n| (c.clone(), n)))
                }
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// A fixed-length interval literal in nanoseconds; `None` for any other expression.
fn signed_interval(expr: &Expr) -> Result<Option<i64>> {
    let Expr::Literal(value, _) = expr else {
        return Ok(None);
    };
    if let ScalarValue::DurationNanosecond(Some(n)) = value {
        return Ok(Some(*n));
    }
    match interval_length(value) {
        IntervalLength::Nanos(n) => Ok(Some(n)),
        IntervalLength::NotAnInterval => Ok(None),
        IntervalLength::Months => Err(Error::Plan(
            "a join's time bound must be a fixed interval (days or shorter), not months".into(),
        )),
        IntervalLength::TooLong => Err(Error::Plan(
            "a join's time bound is too long: at most 292 years".into(),
        )),
    }
}

/// The bound the comparisons of one pair of columns make, when they bound it on both sides.
fn tightest_bound(comparisons: &[(Comparison, Expr)]) -> Result<Option<TimeBound>> {
    let mut pairs: Vec<(usize, usize)> = comparisons
        .iter()
        .map(|(c, _)| (c.left_column, c.right_column))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    for (left_column, right_column) in pairs {
        let (mut lower, mut upper) = (None::<i64>, None::<i64>);
        for (c, _) in comparisons
            .iter()
            .filter(|(c, _)| (c.left_column, c.right_column) == (left_column, right_column))
        {
            match c.op {
                Operator::GtEq => lower = lower.max(Some(c.nanos)),
                Operator::Gt => lower = lower.max(Some(c.nanos.saturating_add(1))),
                Operator::LtEq => upper = Some(upper.map_or(c.nanos, |u| u.min(c.nanos))),
                _ => {
                    let bound = c.nanos.saturating_sub(1);
                    upper = Some(upper.map_or(bound, |u| u.min(bound)));
                }
            }
        }
        if let (Some(lower), Some(upper)) = (lower, upper) {
            if lower > upper {
                return Err(Error::Plan(
                    "the join's time bounds admit no pair of rows: its lower bound is above its \
                     upper bound"
                        .into(),
                ));
            }
            return Ok(Some(TimeBound {
                left_column,
                right_column,
                lower,
                upper,
            }));
        }
    }
    Ok(None)
}

/// A bound of width zero from an equality of timestamp columns, the window ends' first.
fn equality_bound(equalities: &[(usize, usize)], ends: WindowEnds) -> Option<TimeBound> {
    let window_ends = ends.left.zip(ends.right);
    let chosen = equalities
        .iter()
        .find(|pair| Some(**pair) == window_ends)
        .or_else(|| equalities.first())?;
    Some(TimeBound {
        left_column: chosen.0,
        right_column: chosen.1,
        lower: 0,
        upper: 0,
    })
}
