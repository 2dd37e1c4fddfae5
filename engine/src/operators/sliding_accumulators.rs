//! Accumulators of one OVER frame that slide: a row entering the frame is added, a row
//! leaving it is taken away, so each row costs a constant amount however long the frame.
//!
//! They compute what DataFusion's sliding accumulators do (Welford's method for variance,
//! the same NULL rules) on plain `f64`s, without a `ScalarValue` per row. A running sum
//! or variance that adds and takes away values picks up rounding that would build up over
//! a stream that never ends, so they are recomputed from the frame's rows once enough
//! rows have left it (amortised, about one more pass over each row).

use std::collections::VecDeque;

/// What a sliding OVER aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingKind {
    /// `count(x)` (non-NULL values) or `count(*)` (rows, with no argument).
    Count,
    /// `sum(x)` of DOUBLE: NULL when the frame has no value.
    Sum,
    /// `avg(x)` of DOUBLE.
    Avg,
    /// `min(x)` of DOUBLE.
    Min,
    /// `max(x)` of DOUBLE.
    Max,
    /// `var_samp(x)` (`sample`) or `var_pop(x)`.
    Variance {
        /// Sample (n - 1) rather than population (n).
        sample: bool,
    },
    /// `stddev_samp(x)` (`sample`) or `stddev_pop(x)`.
    Stddev {
        /// Sample (n - 1) rather than population (n).
        sample: bool,
    },
}

impl SlidingKind {
    /// The kind DataFusion's aggregate `name` is, if it slides here (over DOUBLE values, or
    /// any for `count`).
    pub fn of(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "avg" | "mean" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "var" | "var_samp" | "var_sample" => Self::Variance { sample: true },
            "var_pop" | "var_population" => Self::Variance { sample: false },
            "stddev" | "stddev_samp" => Self::Stddev { sample: true },
            "stddev_pop" => Self::Stddev { sample: false },
            _ => return None,
        })
    }
}

/// The running state of one frame.
#[derive(Debug, Clone)]
pub(super) enum Accumulator {
    Count(i64),
    Sum {
        sum: f64,
        count: i64,
        retracted: usize,
    },
    Welford {
        count: u64,
        mean: f64,
        m2: f64,
        retracted: usize,
    },
    /// Candidates for the extreme, by sequence number: each later and less extreme than
    /// the one before it, so the front is the frame's extreme.
    Extreme {
        candidates: VecDeque<(u64, f64)>,
        max: bool,
    },
}

/// How many values may leave a running sum before it is recomputed, for a frame of `len`.
fn rebuild_after(len: usize) -> usize {
    4 * len.max(256)
}

impl Accumulator {
    /// An empty accumulator for `kind`.
    pub fn new(kind: SlidingKind) -> Self {
        match kind {
            SlidingKind::Count => Self::Count(0),
            SlidingKind::Sum | SlidingKind::Avg => Self::Sum {
                sum: 0.0,
                count: 0,
                retracted: 0,
            },
            SlidingKind::Variance { .. } | SlidingKind::Stddev { .. } => Self::Welford {
                count: 0,
                mean: 0.0,
                m2: 0.0,
                retracted: 0,
            },
            SlidingKind::Min | SlidingKind::Max => Self::Extreme {
                candidates: VecDeque::new(),
                max: kind == SlidingKind::Max,
            },
        }
    }

    /// Row `seq` enters the frame with `value` (`None` for NULL; `count(*)` counts it).
    #[inline]
    pub fn add(&mut self, seq: u64, value: Option<f64>, counts_rows: bool) {
        match (self, value) {
            (Self::Count(n), _) if counts_rows => *n += 1,
            (Self::Count(n), Some(_)) => *n += 1,
            (Self::Sum { sum, count, .. }, Some(v)) => {
                *sum += v;
                *count += 1;
            }
            (
                Self::Welford {
                    count, mean, m2, ..
                },
                Some(v),
            ) => (*count, *mean, *m2) = welford_add(*count, *mean, *m2, v),
            (Self::Extreme { candidates, max }, Some(v)) => {
                let beaten = |c: f64| if *max { c <= v } else { c >= v };
                while candidates.back().is_some_and(|(_, c)| beaten(*c)) {
                    candidates.pop_back();
                }
                candidates.push_back((seq, v));
            }
            _ => {}
        }
    }

    /// Row `seq` leaves the frame; it entered with `value`. Returns true when the running
    /// value should be recomputed from the rows in the frame.
    #[inline]
    pub fn retract(&mut self, seq: u64, value: Option<f64>, counts_rows: bool, len: usize) -> bool {
        match (self, value) {
            (Self::Count(n), _) if counts_rows => *n -= 1,
            (Self::Count(n), Some(_)) => *n -= 1,
            (
                Self::Sum {
                    sum,
                    count,
                    retracted,
                },
                Some(v),
            ) => {
                *sum -= v;
                *count -= 1;
                *retracted += 1;
                return *retracted > rebuild_after(len);
            }
            (
                Self::Welford {
                    count,
                    mean,
                    m2,
                    retracted,
                },
                Some(v),
            ) => {
                (*count, *mean, *m2) = welford_retract(*count, *mean, *m2, v);
                *retracted += 1;
                return *retracted > rebuild_after(len);
            }
            (Self::Extreme { candidates, .. }, _)
                if candidates.front().is_some_and(|(s, _)| *s == seq) =>
            {
                candidates.pop_front();
            }
            _ => {}
        }
        false
    }

    /// The same accumulator recomputed from the values now in the frame.
    pub fn rebuilt(&self, values: impl Iterator<Item = Option<f64>>) -> Self {
        let mut fresh = match self {
            Self::Sum { .. } => Self::new(SlidingKind::Sum),
            Self::Welford { .. } => Self::new(SlidingKind::Variance { sample: true }),
            other => return other.clone(),
        };
        for value in values {
            fresh.add(0, value, false);
        }
        fresh
    }

    /// The frame's value as `kind` computes it; `None` for SQL NULL.
    #[inline]
    pub fn value(&self, kind: SlidingKind) -> Option<f64> {
        match (self, kind) {
            (Self::Sum { sum, count, .. }, SlidingKind::Sum) => (*count > 0).then_some(*sum),
            (Self::Sum { sum, count, .. }, _) => (*count > 0).then(|| *sum / *count as f64),
            (Self::Welford { count, m2, .. }, SlidingKind::Variance { sample }) => {
                variance(*count, *m2, sample)
            }
            (Self::Welford { count, m2, .. }, SlidingKind::Stddev { sample }) => {
                variance(*count, *m2, sample).map(f64::sqrt)
            }
            (Self::Extreme { candidates, .. }, _) => candidates.front().map(|(_, v)| *v),
            _ => None,
        }
    }

    /// The count of a `Count` accumulator.
    #[inline]
    pub fn count(&self) -> i64 {
        match self {
            Self::Count(n) => *n,
            _ => 0,
        }
    }
}

/// Welford's update, as DataFusion's variance accumulator does it.
#[inline]
fn welford_add(count: u64, mean: f64, m2: f64, value: f64) -> (u64, f64, f64) {
    let count = count + 1;
    let delta1 = value - mean;
    let mean = delta1 / count as f64 + mean;
    let delta2 = value - mean;
    (count, mean, m2 + delta1 * delta2)
}

/// The inverse of [`welford_add`]; one value or none left is an empty state.
#[inline]
fn welford_retract(count: u64, mean: f64, m2: f64, value: f64) -> (u64, f64, f64) {
    if count <= 1 {
        return (0, 0.0, 0.0);
    }
    let count = count - 1;
    let delta1 = mean - value;
    let mean = delta1 / count as f64 + mean;
    let delta2 = mean - value;
    (count, mean, m2 - delta1 * delta2)
}

/// DataFusion's variance of `count` values: NULL for none, and for one in a sample.
fn variance(count: u64, m2: f64, sample: bool) -> Option<f64> {
    match count {
        0 => None,
        1 => (!sample).then_some(0.0),
        // Taking values away can leave a spread of equal values a hair below zero.
        n => Some(m2.max(0.0) / if sample { n - 1 } else { n } as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_follow_the_frame_as_rows_leave() {
        let mut max = Accumulator::new(SlidingKind::Max);
        for (seq, v) in [3.0, 1.0, 2.0].into_iter().enumerate() {
            max.add(seq as u64, Some(v), false);
        }
        assert_eq!(max.value(SlidingKind::Max), Some(3.0));
        max.retract(0, Some(3.0), false, 3);
        assert_eq!(max.value(SlidingKind::Max), Some(2.0));
        max.retract(1, Some(1.0), false, 2);
        assert_eq!(max.value(SlidingKind::Max), Some(2.0));
        max.retract(2, Some(2.0), false, 1);
        assert_eq!(max.value(SlidingKind::Max), None);
    }

    #[test]
    fn variance_matches_its_definition_and_nulls_as_datafusion() {
        let mut acc = Accumulator::new(SlidingKind::Variance { sample: true });
        let samp = SlidingKind::Variance { sample: true };
        let pop = SlidingKind::Variance { sample: false };
        acc.add(0, Some(5.0), false);
        assert_eq!((acc.value(samp), acc.value(pop)), (None, Some(0.0)));
        for (seq, v) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
            acc.add(seq as u64 + 1, Some(v), false);
        }
        acc.retract(0, Some(5.0), false, 4);
        // 1, 2, 3, 4: mean 2.5, squared deviations 5.
        assert!((acc.value(samp).unwrap() - 5.0 / 3.0).abs() < 1e-12);
        assert!((acc.value(pop).unwrap() - 1.25).abs() < 1e-12);
        let none = Accumulator::new(SlidingKind::Avg);
        assert_eq!(none.value(SlidingKind::Avg), None);
    }

    #[test]
    fn a_rebuilt_sum_is_the_sum_of_the_frame() {
        let mut sum = Accumulator::new(SlidingKind::Sum);
        sum.add(0, Some(1e16), false);
        sum.add(1, Some(1.0), false);
        sum.retract(0, Some(1e16), false, 1);
        // Adding and taking away 1e16 lost the 1.
        assert_eq!(sum.value(SlidingKind::Sum), Some(0.0));
        let rebuilt = sum.rebuilt([Some(1.0)].into_iter());
        assert_eq!(rebuilt.value(SlidingKind::Sum), Some(1.0));
    }
}
