//! [`Alignment`]: watermark alignment across a query's sources (Flink's `max-drift`). A
//! source declared with `max_drift` stops reading while its watermark is more than that
//! ahead of the lowest watermark of the query's other timed sources still reading, so a
//! join of a fast input with a slow one (a backfill from files or a topic's backlog) does
//! not hold the fast one's rows for as long as the slow one lags.
//!
//! A source that reports nothing to read (idle), or has ended, holds no other back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::time::{Timestamp, WATERMARK_MIN};

/// How long a paused source waits before it looks again, should a change go unannounced.
const RECHECK: Duration = Duration::from_millis(200);

/// The watermarks of a query's sources, shared between the graph (which publishes them)
/// and the tasks reading the sources (which wait on them).
pub(super) struct Alignment {
    /// Per source, how far ahead it may get, in nanoseconds; `None`: it never waits.
    max_drift: Vec<Option<i64>>,
    /// Per source, whether it has event time: only those hold others back.
    timed: Vec<bool>,
    watermarks: Vec<AtomicI64>,
    /// Per source, whether it is reading: neither idle nor ended.
    reading: Vec<AtomicBool>,
    changed: Notify,
}

impl Alignment {
    /// Alignment of sources with these drifts and event times; `None` when no source waits
    /// for another.
    pub fn new(max_drift: Vec<Option<Duration>>, timed: Vec<bool>) -> Option<Arc<Self>> {
        let waits = max_drift.iter().flatten().count() > 0;
        if !waits || timed.iter().filter(|t| **t).count() < 2 {
            return None;
        }
        let n = timed.len();
        Some(Arc::new(Self {
            max_drift: (max_drift.iter())
                .map(|d| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
                .collect(),
            timed,
            watermarks: (0..n).map(|_| AtomicI64::new(WATERMARK_MIN)).collect(),
            reading: (0..n).map(|_| AtomicBool::new(true)).collect(),
            changed: Notify::new(),
        }))
    }

    /// Source `source`'s watermark is now `watermark`.
    pub fn publish(&self, source: usize, watermark: Timestamp) {
        if self.watermarks[source].swap(watermark, Ordering::Relaxed) != watermark {
            self.changed.notify_waiters();
        }
    }

    /// Source `source` is reading (it produced rows), or not (idle, or ended).
    pub fn set_reading(&self, source: usize, reading: bool) {
        if self.reading[source].swap(reading, Ordering::Relaxed) != reading {
            self.changed.notify_waiters();
        }
    }

    /// True when `source` may read on: it has no drift, or its watermark is within its
    /// drift of the lowest watermark of the other timed sources reading.
    fn may_read(&self, source: usize) -> bool {
        let Some(drift) = self.max_drift[source] else {
            return true;
        };
        let lowest = (0..self.timed.len())
            .filter(|&i| i != source && self.timed[i] && self.reading[i].load(Ordering::Relaxed))
            .map(|i| self.watermarks[i].load(Ordering::Relaxed))
            .min();
        let own = self.watermarks[source].load(Ordering::Relaxed);
        lowest.is_none_or(|lowest| own <= lowest.saturating_add(drift))
    }

    /// Waits until `source` may read on.
    pub async fn wait_turn(&self, source: usize) {
        loop {
            // Created before the check, so a change between the two is not missed.
            let changed = self.changed.notified();
            if self.may_read(source) {
                return;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn a_source_ahead_by_more_than_its_drift_waits_for_the_others_reading() {
        let drift = Some(Duration::from_secs(10));
        let alignment = Alignment::new(vec![drift, None, None], vec![true, true, false]).unwrap();
        alignment.publish(0, 100 * SECOND);
        alignment.publish(1, 95 * SECOND);
        assert!(alignment.may_read(0), "5 s ahead, within 10 s");
        alignment.publish(0, 106 * SECOND);
        assert!(!alignment.may_read(0), "11 s ahead");
        assert!(
            alignment.may_read(1),
            "a source without a drift never waits"
        );
        alignment.set_reading(1, false);
        assert!(alignment.may_read(0), "an idle source holds no other back");
        alignment.set_reading(1, true);
        alignment.publish(1, 97 * SECOND);
        assert!(alignment.may_read(0));
    }

    #[test]
    fn without_a_drift_or_a_second_timed_source_nothing_aligns() {
        let drift = Some(Duration::from_secs(1));
        assert!(Alignment::new(vec![None, None], vec![true, true]).is_none());
        assert!(Alignment::new(vec![drift, None], vec![true, false]).is_none());
    }

    #[tokio::test]
    async fn a_waiting_source_goes_on_once_the_slowest_catches_up() {
        let drift = Some(Duration::from_secs(1));
        let alignment = Alignment::new(vec![drift, None], vec![true, true]).unwrap();
        alignment.publish(0, 10 * SECOND);
        alignment.publish(1, 0);
        let waiting = {
            let alignment = Arc::clone(&alignment);
            tokio::spawn(async move { alignment.wait_turn(0).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        alignment.publish(1, 9 * SECOND);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the source goes on")
            .unwrap();
    }
}
