//! [`Rejections`]: rows an expression failed on, counted, logged and made into dead letters.

use std::sync::atomic::Ordering;

use datafusion::arrow::record_batch::RecordBatch;

use super::QueryMetrics;
use crate::batch::RejectedRows;
use crate::error::Result;

/// Where a query's rejected rows go.
pub(super) struct Rejections {
    query: String,
    /// The dead-letter sink's index among the sinks, when there is one.
    pub(super) sink: Option<usize>,
    /// Rows logged so far, to keep the log readable when many rows fail.
    logged: u64,
}

impl Rejections {
    /// Rejections of query `query`; `sink` is the dead-letter sink's index, if any.
    pub(super) fn new(query: String, sink: Option<usize>) -> Self {
        Self {
            query,
            sink,
            logged: 0,
        }
    }

    /// Rows logged one by one before the log only counts them.
    const LOG_ROWS: u64 = 10;

    /// Counts rejected rows and logs the first few; returns them as batches for the
    /// dead-letter sink, when there is one.
    pub(super) fn take(
        &mut self,
        rejected: Vec<RejectedRows>,
        source: &str,
        metrics: &QueryMetrics,
    ) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        for rows in rejected {
            let n = rows.rows.num_rows() as u64;
            metrics.row_errors.fetch_add(n, Ordering::Relaxed);
            if self.logged < Self::LOG_ROWS {
                self.logged += n;
                tracing::warn!(
                    query = %self.query, source, operator = rows.operator, rows = n,
                    error = %rows.errors[0],
                    dead_letters = self.sink.is_some(),
                    "rows set aside: an expression failed on them"
                );
            }
            if self.sink.is_some() {
                batches.push(rows.to_dead_letters(&self.query, source)?);
            }
        }
        Ok(batches)
    }
}
