//! Event time: timestamps, watermarks and window arithmetic.
//!
//! Time is `i64` nanoseconds since the Unix epoch in UTC, the representation of Arrow's
//! `Timestamp(Nanosecond, None)`, which is what SQL `TIMESTAMP` columns are.

use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;

/// Nanoseconds since the epoch, UTC.
pub type Timestamp = i64;

/// The watermark before any event: nothing is known yet.
pub const WATERMARK_MIN: Timestamp = i64::MIN;

/// The watermark at the end of a bounded input: every window is complete.
pub const WATERMARK_MAX: Timestamp = i64::MAX;

/// The Arrow type of every event-time column inside the engine.
pub const TIMESTAMP_TYPE: DataType = DataType::Timestamp(TimeUnit::Nanosecond, None);

/// A timestamp as RFC 3339 in UTC with milliseconds (`2024-01-01T00:00:05.000Z`); `None`
/// for the watermarks before the first event and after the last.
pub fn format_rfc3339(ts: Timestamp) -> Option<String> {
    if ts == WATERMARK_MIN || ts == WATERMARK_MAX {
        return None;
    }
    datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime(ts)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// How windows are laid out in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE` and `HOP`: windows of `size` starting every `slide`.
    Sliding,
    /// `CUMULATE`: every window of a `size`-aligned period starts with the period, and they
    /// end every `slide` within it (`[p, p + slide)`, `[p, p + 2 slide)`, ... `[p, p + size)`).
    Cumulating,
    /// `SESSION`: per group, events closer than `size` (the gap) to one another; each event
    /// alone is the session `[ts, ts + gap)`, and overlapping ones merge.
    Session,
}

/// A window assignment: tumbling when `slide == size`, hopping otherwise, cumulating, or
/// sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length in nanoseconds (a cumulating window's period; a session's gap).
    pub size: i64,
    /// Distance between window starts in nanoseconds (for a cumulating window, between its
    /// windows' ends).
    pub slide: i64,
    /// How the windows are laid out.
    pub kind: WindowKind,
}

impl WindowSpec {
    /// A tumbling window of `size`.
    pub fn tumbling(size: Duration) -> Self {
        let size = size.as_nanos() as i64;
        Self {
            size,
            slide: size,
            kind: WindowKind::Sliding,
        }
    }

    /// A hopping window of `size` starting every `slide`.
    pub fn hopping(slide: Duration, size: Duration) -> Self {
        Self {
            size: size.as_nanos() as i64,
            slide: slide.as_nanos() as i64,
            kind: WindowKind::Sliding,
        }
    }

    /// Cumulating windows growing by `step` within each period of `size`.
    pub fn cumulating(step: Duration, size: Duration) -> Self {
        Self {
            kind: WindowKind::Cumulating,
            ..Self::hopping(step, size)
        }
    }

    /// Sessions closed by `gap` without events.
    pub fn sessions(gap: Duration) -> Self {
        Self {
            kind: WindowKind::Session,
            ..Self::tumbling(gap)
        }
    }

    /// True for tumbling windows (a cumulating window whose step is its size is one too).
    pub fn is_tumbling(&self) -> bool {
        self.kind != WindowKind::Session && self.size == self.slide
    }

    /// True for hopping windows: overlapping, each starting `slide` after the last.
    pub fn is_hopping(&self) -> bool {
        self.kind == WindowKind::Sliding && self.size != self.slide
    }

    /// True for session windows.
    pub fn is_session(&self) -> bool {
        self.kind == WindowKind::Session
    }

    /// How many windows each event belongs to, at most.
    pub fn windows_per_event(&self) -> i64 {
        self.size / self.slide
    }

    /// Start of the latest window that contains `ts`.
    pub fn last_start(&self, ts: Timestamp) -> Timestamp {
        let period = if self.kind == WindowKind::Cumulating {
            self.size
        } else {
            self.slide
        };
        ts - ts.rem_euclid(period)
    }

    /// End of the latest window that contains `ts`: once the watermark passes it, every window
    /// of the event has been emitted.
    pub fn last_end(&self, ts: Timestamp) -> Timestamp {
        self.last_start(ts).saturating_add(self.size)
    }
}

/// Name of the column holding a window's inclusive start.
pub const WINDOW_START: &str = "window_start";
/// Name of the column holding a window's exclusive end.
pub const WINDOW_END: &str = "window_end";

/// What an interval value measures, for the places that need a fixed length of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalLength {
    /// Days or shorter: this many nanoseconds (negative for a negative interval).
    Nanos(i64),
    /// It counts months, whose length varies.
    Months,
    /// It overflows 64-bit nanoseconds (about 292 years).
    TooLong,
    /// The value is no interval.
    NotAnInterval,
}

/// The length of an interval value (`INTERVAL '5' MINUTE`).
pub fn interval_length(value: &ScalarValue) -> IntervalLength {
    const DAY: i64 = 86_400_000_000_000;
    let nanos = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months != 0 => {
            return IntervalLength::Months;
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) => i64::from(v.days)
            .checked_mul(DAY)
            .and_then(|n| n.checked_add(v.nanoseconds)),
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(DAY)
            .and_then(|n| n.checked_add(i64::from(v.milliseconds) * 1_000_000)),
        _ => return IntervalLength::NotAnInterval,
    };
    nanos.map_or(IntervalLength::TooLong, IntervalLength::Nanos)
}

/// `90s`, `5m`, `250ms`: a duration for error messages and EXPLAIN.
pub fn describe_nanos(nanos: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| nanos % unit == 0)
        .map_or_else(
            || format!("{nanos}ns"),
            |(unit, name)| format!("{}{name}", nanos / unit),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    #[test]
    fn tumbling_windows_align_to_the_epoch_even_before_it() {
        let w = WindowSpec::tumbling(Duration::from_secs(60));
        assert_eq!(w.last_start(0), 0);
        assert_eq!(w.last_start(MIN - 1), 0);
        assert_eq!(w.last_start(MIN), MIN);
        assert_eq!(w.last_start(-1), -MIN);
        assert_eq!(w.last_end(-1), 0);
    }

    #[test]
    fn hopping_window_count_and_last_window() {
        let w = WindowSpec::hopping(Duration::from_secs(60), Duration::from_secs(300));
        assert_eq!(w.windows_per_event(), 5);
        assert_eq!(w.last_start(MIN + 5), MIN);
        assert_eq!(w.last_end(MIN + 5), 6 * MIN);
    }
}
