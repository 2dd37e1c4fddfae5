//! [`Delivered`]: tells a source which of its batches are fully processed.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::time::{Timestamp, WATERMARK_MIN};

/// How far a source's batches have been delivered.
///
/// Batches are counted in the order the source produced them (every
/// [`super::SourceEvent::Batch`] and [`super::SourceEvent::SplitBatch`], empty ones too).
/// `done` is the number of leading batches whose rows have left every operator's state and
/// whose results every sink has flushed. A source acknowledges its input (commits Kafka
/// offsets) only up to there, which makes delivery at-least-once: after a crash, everything
/// not acknowledged is read again.
#[derive(Debug, Default)]
pub struct Delivered {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct State {
    done: u64,
    /// Every window ending at or before this was emitted and its rows delivered.
    watermark: Timestamp,
    finished: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            done: 0,
            watermark: WATERMARK_MIN,
            finished: false,
        }
    }
}

impl Delivered {
    /// Leading batches that are fully delivered.
    pub fn done(&self) -> u64 {
        self.lock().done
    }

    /// The watermark up to which the query's windows are emitted and delivered, as of
    /// [`Delivered::done`]: a source that stores its acknowledged position stores this with
    /// it, and hands it back on restart ([`super::SourceEvent::Resume`]).
    pub fn watermark(&self) -> Timestamp {
        self.lock().watermark
    }

    /// Records that windows ending at or before `watermark` are delivered (never goes back).
    pub fn advance_watermark(&self, watermark: Timestamp) {
        let mut state = self.lock();
        state.watermark = state.watermark.max(watermark);
    }

    /// True once the query has made its last update.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// Records that the first `done` batches are delivered (never goes backwards).
    pub fn advance(&self, done: u64) {
        let mut state = self.lock();
        if done > state.done {
            state.done = done;
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// Records the last update: nothing more will be delivered.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_waiters();
    }

    /// Waits until [`Delivered::finish`] was called or `timeout` passed; returns `done`.
    pub async fn wait_finished(&self, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.is_finished() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.done()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain values: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn done_only_grows_and_finish_wakes_waiters() {
        let delivered = std::sync::Arc::new(Delivered::default());
        delivered.advance(3);
        delivered.advance(2);
        assert_eq!(delivered.done(), 3);
        let waiter = {
            let d = std::sync::Arc::clone(&delivered);
            tokio::spawn(async move { d.wait_finished(Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        delivered.advance(5);
        delivered.finish();
        assert_eq!(waiter.await.unwrap(), 5);
    }
}
