//! [`QueryMetrics`]: live counters of a running query.

use std::collections::BTreeMap;
use std::sync::Mutex;
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
    /// Rows an expression failed on (division by zero, a cast that does not fit), sent to
    /// dead letters while the query went on.
    pub row_errors: AtomicU64,
    /// The watermark at the query's output (nanoseconds).
    pub watermark: AtomicI64,
    /// Rows held in operator state.
    pub state_rows: AtomicU64,
    /// Bytes held in operator state.
    pub state_bytes: AtomicU64,
    /// Errors a connector recovered from by retrying (broker unreachable, failed commit).
    pub connector_errors: AtomicU64,
    /// Checkpoints that could not be written (the query went on).
    pub checkpoint_failures: AtomicU64,
    /// Per operator of the running graph, as of the last message it processed.
    operators: Mutex<Vec<OperatorStats>>,
    /// The last checkpoint written or restored, with a state dir.
    checkpoint: Mutex<Option<CheckpointReport>>,
    /// Per source, messages its broker holds that it has not read yet, where known.
    consumer_lag: Mutex<BTreeMap<String, u64>>,
    /// The connectors that cannot reach their broker or database now, with why.
    unreachable: Mutex<BTreeMap<String, String>>,
}

/// Live counters of one operator of a running query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorStats {
    /// Its node id in the graph.
    pub id: usize,
    /// The operator (`Filter`, `WindowAggregate`, ...).
    pub operator: &'static str,
    /// What it does, as EXPLAIN shows it.
    pub detail: String,
    /// The nodes feeding it.
    pub inputs: Vec<usize>,
    /// Rows received.
    pub rows_in: u64,
    /// Rows emitted.
    pub rows_out: u64,
    /// Late rows it dropped.
    pub late_rows: u64,
    /// The last watermark it emitted, else its input's (nanoseconds).
    pub watermark: i64,
    /// Rows it holds in state.
    pub state_rows: u64,
    /// Bytes it holds in state.
    pub state_bytes: u64,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self {
            events_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_events: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            row_errors: AtomicU64::new(0),
            watermark: AtomicI64::new(WATERMARK_MIN),
            state_rows: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            connector_errors: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            operators: Mutex::default(),
            checkpoint: Mutex::default(),
            consumer_lag: Mutex::default(),
            unreachable: Mutex::default(),
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
    /// Rows an expression failed on.
    pub row_errors: u64,
    /// Output watermark.
    pub watermark: i64,
    /// Rows in operator state.
    pub state_rows: u64,
    /// Bytes in operator state.
    pub state_bytes: u64,
    /// Errors connectors recovered from.
    pub connector_errors: u64,
}

impl MetricsSnapshot {
    /// Everything set aside for dead letters: malformed records and rows an expression
    /// failed on.
    pub fn set_aside(&self) -> u64 {
        self.dead_letters + self.row_errors
    }
}

impl QueryMetrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            events_in: self.events_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            late_events: self.late_events.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            row_errors: self.row_errors.load(Ordering::Relaxed),
            watermark: self.watermark.load(Ordering::Relaxed),
            state_rows: self.state_rows.load(Ordering::Relaxed),
            state_bytes: self.state_bytes.load(Ordering::Relaxed),
            connector_errors: self.connector_errors.load(Ordering::Relaxed),
        }
    }

    /// Records the last checkpoint.
    pub fn set_checkpoint(&self, report: CheckpointReport) {
        *self.checkpoint.lock().expect("checkpoint lock") = Some(report);
    }

    /// The last checkpoint written (or restored at the start); `None` without a state dir
    /// or before the first.
    pub fn last_checkpoint(&self) -> Option<CheckpointReport> {
        *self.checkpoint.lock().expect("checkpoint lock")
    }

    /// Counts one error a connector recovered from.
    pub fn add_connector_error(&self) {
        self.connector_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The operators' counters, from the result down to the sources' entry nodes.
    pub fn operators(&self) -> Vec<OperatorStats> {
        self.operators.lock().expect("operator stats lock").clone()
    }

    /// Updates the operators' counters (the runtime calls this as the graph runs), and the
    /// query's late-event and state totals from them.
    pub fn update_operators(&self, update: impl FnOnce(&mut Vec<OperatorStats>)) {
        let mut operators = self.operators.lock().expect("operator stats lock");
        update(&mut operators);
        let late: u64 = operators.iter().map(|o| o.late_rows).sum();
        let state_rows: u64 = operators.iter().map(|o| o.state_rows).sum();
        let state_bytes: u64 = operators.iter().map(|o| o.state_bytes).sum();
        self.late_events.store(late, Ordering::Relaxed);
        self.state_rows.store(state_rows, Ordering::Relaxed);
        self.state_bytes.store(state_bytes, Ordering::Relaxed);
    }

    /// Records how many messages `source` has yet to read (a Kafka consumer's lag).
    pub fn set_consumer_lag(&self, source: &str, lag: u64) {
        let mut lags = self.consumer_lag.lock().expect("consumer lag lock");
        match lags.get_mut(source) {
            Some(value) => *value = lag,
            None => {
                lags.insert(source.to_string(), lag);
            }
        }
    }

    /// The consumer lag of each source that reports one.
    pub fn consumer_lags(&self) -> BTreeMap<String, u64> {
        self.consumer_lag.lock().expect("consumer lag lock").clone()
    }

    /// Records that `component` cannot reach its broker or database, for `reason`.
    pub fn set_unreachable(&self, component: &str, reason: String) {
        let mut unreachable = self.unreachable.lock().expect("reachability lock");
        if unreachable.get(component) != Some(&reason) {
            unreachable.insert(component.to_string(), reason);
        }
    }

    /// Records that `component` reaches its broker or database.
    pub fn set_reachable(&self, component: &str) {
        let mut unreachable = self.unreachable.lock().expect("reachability lock");
        unreachable.remove(component);
    }

    /// The connectors that cannot reach their broker or database now, with why.
    pub fn unreachable(&self) -> BTreeMap<String, String> {
        self.unreachable.lock().expect("reachability lock").clone()
    }

    /// Counts one malformed record; true when this one should be logged: the first ten, then
    /// one in a thousand, so a source full of bad records does not flood the log (the count
    /// is in the metrics).
    pub fn add_dead_letter(&self) -> bool {
        let count = self.dead_letters.fetch_add(1, Ordering::Relaxed) + 1;
        count <= 10 || count.is_multiple_of(1000)
    }
}

/// The last checkpoint of a query, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointReport {
    /// Its number.
    pub epoch: u64,
    /// When it was taken, milliseconds since the Unix epoch (0 when only restored).
    pub taken_at_ms: i64,
    /// Bytes written.
    pub bytes: u64,
    /// How long writing it took.
    pub duration_ms: u64,
    /// True when this is the checkpoint the query restored at its start.
    pub restored: bool,
}

impl CheckpointReport {
    /// The checkpoint a query restored at its start.
    pub fn restored(epoch: u64) -> Self {
        Self {
            epoch,
            restored: true,
            ..Self::default()
        }
    }
}

impl OperatorStats {
    /// The operators as an indented tree from the result down to the sources, each with its
    /// counters: what `EXPLAIN ANALYZE` prints.
    pub fn render_tree(operators: &[OperatorStats]) -> String {
        let is_input = |id: usize| operators.iter().any(|o| o.inputs.contains(&id));
        let mut out = String::new();
        for root in operators.iter().filter(|o| !is_input(o.id)) {
            render_node(operators, root, 0, &mut out);
        }
        out
    }
}

fn render_node(operators: &[OperatorStats], node: &OperatorStats, depth: usize, out: &mut String) {
    use std::fmt::Write;
    let pad = "  ".repeat(depth);
    let watermark = match node.watermark {
        crate::time::WATERMARK_MIN => "none".to_string(),
        crate::time::WATERMARK_MAX => "end".to_string(),
        ns => crate::time::format_rfc3339(ns).unwrap_or_else(|| ns.to_string()),
    };
    let name = if node.detail.is_empty() {
        node.operator.to_string()
    } else {
        format!("{}: {}", node.operator, node.detail)
    };
    let _ = writeln!(
        out,
        "{pad}{name}  [rows in {}, out {}; watermark {watermark}; state {} rows, {}; late {}]",
        node.rows_in,
        node.rows_out,
        node.state_rows,
        format_bytes(node.state_bytes),
        node.late_rows
    );
    for input in &node.inputs {
        if let Some(child) = operators.iter().find(|o| o.id == *input) {
            render_node(operators, child, depth + 1, out);
        }
    }
}

/// `812 B`, `3.4 KiB`, `12.0 MiB`.
fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::format_bytes;

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(format_bytes(812), "812 B");
        assert_eq!(format_bytes(3482), "3.4 KiB");
        assert_eq!(format_bytes(12 * 1024 * 1024 + 1), "12.0 MiB");
    }
}
