//! Vigil's own group accumulators for the updating aggregate: each keeps one aggregate's
//! state for every group in arrays indexed by dense group id, and can take rows back.
//!
//! DataFusion's `GroupsAccumulator` is the model, with two differences a changelog needs:
//! rows carry a weight (`+1` insert, `-1` retraction, `0` filtered out), and `evaluate`
//! reads chosen groups without consuming the state, since an updating aggregate emits the
//! touched groups' values after every batch and keeps going.
//!
//! Which accumulator a call gets ([`create`]):
//! - `count`, `sum`, `avg` over numbers: running sums that subtract ([`count`], [`sum`]);
//! - `min`, `max` over an append-only input: the current extreme ([`extreme`]);
//! - `min`, `max` over an updating input, `count(DISTINCT)`, `array_agg(DISTINCT)`: a value →
//!   count multiset per group ([`multiset`]), so taking back the extreme finds the next one;
//! - anything else: DataFusion's own accumulator per group ([`per_group`]), over an updating
//!   input only where its retraction is exact, and otherwise the plan is refused.

mod count;
mod extreme;
mod multiset;
mod per_group;
mod sum;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Schema};

use super::AggregateCall;
use crate::error::{Error, Result};

/// One batch of rows for one aggregate call, already assigned to groups.
pub struct GroupRows<'a> {
    /// The call's evaluated arguments.
    pub values: &'a [ArrayRef],
    /// The group id of each row.
    pub groups: &'a [usize],
    /// Per row: `1` adds it, `-1` takes it back, `0` skips it (its FILTER was not true).
    /// `None`: every row adds.
    pub weights: Option<&'a [i64]>,
    /// The number of groups after this batch: ids are below it.
    pub total_groups: usize,
}

impl GroupRows<'_> {
    /// The weight of row `i`.
    pub fn weight(&self, i: usize) -> i64 {
        self.weights.map_or(1, |w| w[i])
    }
}

/// The state of one aggregate for every group of an updating aggregate.
pub trait GroupAccumulator: Send {
    /// Adds or takes back `rows` in their groups.
    fn update(&mut self, rows: &GroupRows<'_>) -> Result<()>;

    /// The current value of each of `groups`, in that order; the state is unchanged. A
    /// group no update has reached yet reads as empty.
    fn evaluate(&mut self, groups: &[usize]) -> Result<ArrayRef>;

    /// Forgets `groups`, whose every row was taken back: they start empty if they return.
    fn reset(&mut self, groups: &[usize]);

    /// Renumbers the groups: new group `i` is old group `keep[i]`; the others are dropped.
    fn compact(&mut self, keep: &[usize]);

    /// Bytes held.
    fn size(&self) -> usize;

    /// The state of groups `0..groups` as columns, for a snapshot.
    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>>;

    /// Loads columns written by [`GroupAccumulator::state`] into `groups` (one per row),
    /// which are empty.
    fn restore(&mut self, state: &[ArrayRef], groups: &[usize], total_groups: usize) -> Result<()>;
}

/// The accumulator for `call` over rows of `schema`; `updating` says whether that input
/// retracts rows, and `input` names it for the error when the call cannot take rows back.
pub fn create(
    call: &AggregateCall,
    schema: &Schema,
    updating: bool,
    input: &str,
) -> Result<Box<dyn GroupAccumulator>> {
    let function = &call.function;
    let name = function.fun().name().to_ascii_lowercase();
    let output = function.field().data_type().clone();
    let argument = match function.expressions().first() {
        Some(e) => Some(e.data_type(schema)?),
        None => None,
    };
    let distinct = function.is_distinct();
    let accumulator: Option<Box<dyn GroupAccumulator>> = match (name.as_str(), distinct) {
        ("count", false) => Some(Box::new(count::Count::default())),
        ("sum", false) => sum::create_sum(&output),
        ("avg", false) if output == DataType::Float64 => {
            Some(Box::new(sum::Average::new(&DataType::Float64)))
        }
        ("min" | "max", false) if updating => Some(Box::new(multiset::Multiset::new(
            multiset::Reading::extreme(name == "max"),
            argument.unwrap_or(output),
            false,
        )?)),
        ("min" | "max", false) => Some(Box::new(extreme::Extreme::new(
            name == "max",
            argument.unwrap_or(output),
        )?)),
        ("count", true) => Some(Box::new(multiset::Multiset::new(
            multiset::Reading::Count,
            argument.unwrap_or(output),
            false,
        )?)),
        ("array_agg", true) => Some(Box::new(multiset::Multiset::new(
            multiset::Reading::List(output),
            argument.ok_or_else(|| Error::Internal("array_agg without an argument".into()))?,
            !function.ignore_nulls(),
        )?)),
        _ => None,
    };
    match accumulator {
        Some(accumulator) => Ok(accumulator),
        None if !updating => Ok(Box::new(per_group::PerGroup::new(call, false)?)),
        None if !distinct && RETRACTS_EXACTLY.contains(&name.as_str()) => {
            Ok(Box::new(per_group::PerGroup::new(call, true)?))
        }
        None => Err(Error::Unsupported(format!(
            "{}{} over {input}: it cannot take back the rows an updating input retracts; \
             the aggregates that can are count, sum, avg, min, max, stddev, variance, \
             count(DISTINCT) and array_agg(DISTINCT)",
            function.fun().name(),
            if distinct { "(DISTINCT ...)" } else { "" },
        ))),
    }
}

/// DataFusion aggregates whose `retract_batch` undoes `update_batch` exactly, in any order:
/// running sums and moments. (Its sliding `min`/`max` assume first in, first out, and are
/// never used here.)
const RETRACTS_EXACTLY: &[&str] = &[
    "sum",
    "avg",
    "mean",
    "count",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "var",
    "var_samp",
    "var_sample",
    "var_pop",
    "var_population",
    "variance",
];

/// Makes `values` long enough for `total` groups, new ones `empty`.
pub(crate) fn grow<T: Clone>(values: &mut Vec<T>, total: usize, empty: T) {
    if values.len() < total {
        values.resize(total, empty);
    }
}

/// Keeps `keep`'s entries of `values`, in that order.
pub(crate) fn compact_vec<T: Clone>(values: &mut Vec<T>, keep: &[usize]) {
    *values = keep.iter().map(|&g| values[g].clone()).collect();
}

/// The weights of a call with `filter`: `0` where it is not true, the row's weight (from
/// `base`) otherwise. `None` without a filter: the base weights stand as they are.
pub fn weights(
    base: Option<&[i64]>,
    filter: Option<&BooleanArray>,
    rows: usize,
) -> Option<Vec<i64>> {
    match (base, filter) {
        (_, None) => None,
        (base, Some(mask)) => Some(
            (0..rows)
                .map(|i| {
                    let on = mask.is_valid(i) && mask.value(i);
                    if on { base.map_or(1, |w| w[i]) } else { 0 }
                })
                .collect(),
        ),
    }
}
