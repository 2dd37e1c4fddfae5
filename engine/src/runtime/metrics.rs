//! [`QueryMetrics`]: live counters of a running query.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::time::WATERMARK_MIN;

/// Counters shared by a query's tasks and whoever watches it.
#[derive(Debug)]
pub struct QueryMetrics {
    /// Rows read from sources.
    pub events_in: AtomicU64,
    /// Rows written to the query's sink.
    pub rows_out: AtomicU64,
    /// Late events dropped by window operators.
    pub late_events: AtomicU64,
    /// Malformed input records sent to dead letters.
    pub dead_letters: AtomicU64,
    /// The watermark at the query's output (nanoseconds).
    pub watermark: AtomicI64,
    /// Rows held in operator state.
    pub state_rows: AtomicU64,
    /// Errors a connector recovered from by retrying (broker unreachable, failed commit).
    pub connector_errors: AtomicU64,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self {
            events_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_events: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            watermark: AtomicI64::new(WATERMARK_MIN),
            state_rows: AtomicU64::new(0),
            connector_errors: AtomicU64::new(0),
        }
    }
}

/// A copy of [`QueryMetrics`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Rows read from sources.
    pub events_in: u64,
    /// Rows written to the sink.
    pub rows_out: u64,
    /// Late events dropped.
    pub late_events: u64,
    /// Malformed records.
    pub dead_letters: u64,
    /// Output watermark.
    pub watermark: i64,
    /// Rows in operator state.
    pub state_rows: u64,
    /// Errors connectors recovered from.
    pub connector_errors: u64,
}

impl QueryMetrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            events_in: self.events_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            late_events: self.late_events.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            watermark: self.watermark.load(Ordering::Relaxed),
            state_rows: self.state_rows.load(Ordering::Relaxed),
            connector_errors: self.connector_errors.load(Ordering::Relaxed),
        }
    }

    /// Counts one error a connector recovered from.
    pub fn add_connector_error(&self) {
        self.connector_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one malformed record.
    pub fn add_dead_letter(&self) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
    }
}
