//! Delivery tracking: which source batches have had every effect reach the sinks, and
//! which sources have caught up with their input.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::connector::Delivered;
use crate::time::{Timestamp, WATERMARK_MAX, WATERMARK_MIN};

/// Tracks which source batches are fully delivered: pushed through the graph, out of every
/// operator's state, and flushed by every sink.
///
/// Every so often the sinks are asked to flush and confirm a numbered request; the request
/// records what stood when it was made (the epoch, the output watermark, the oldest epoch an
/// operator held). Once every sink confirmed it, that is delivered: batches older than both
/// its epoch and its retained epoch, and every window ending at or before its watermark.
pub(super) struct DeliveryTracker {
    /// Per source, its batches pushed but not yet known delivered: (epoch, seq).
    pending: Vec<VecDeque<(u64, u64)>>,
    delivered: Vec<Arc<Delivered>>,
    /// Per sink, the last request it confirmed.
    confirmed: Vec<Arc<AtomicU64>>,
    /// Requests not yet confirmed by every sink, oldest first.
    requests: VecDeque<Request>,
    /// The last request made, answered or not.
    last: Option<Request>,
}

/// What stood when the sinks were asked to confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    /// Numbered from 1.
    number: u64,
    epoch: u64,
    /// The output watermark: every window ending at or before it had been emitted.
    watermark: Timestamp,
    /// The oldest epoch some operator still held.
    retained: Option<u64>,
}

impl DeliveryTracker {
    /// A tracker reporting to each source through its entry of `delivered`.
    pub(super) fn new(delivered: Vec<Arc<Delivered>>) -> Self {
        Self {
            pending: vec![VecDeque::new(); delivered.len()],
            delivered,
            confirmed: Vec::new(),
            requests: VecDeque::new(),
            last: None,
        }
    }

    /// One more sink to wait for: where it stores the last request it confirmed.
    pub(super) fn add_sink(&mut self) -> Arc<AtomicU64> {
        let confirmed = Arc::new(AtomicU64::new(0));
        self.confirmed.push(Arc::clone(&confirmed));
        confirmed
    }

    pub(super) fn pushed(&mut self, source: usize, epoch: u64, seq: u64) {
        self.pending[source].push_back((epoch, seq));
    }

    /// A new request when something changed since the last one (or `always`): its number,
    /// to send to the sinks. An end-of-input watermark closes windows with no data to show
    /// for it, so it is not recorded: a later run may still see events of those windows.
    pub(super) fn ask(
        &mut self,
        epoch: u64,
        watermark: Timestamp,
        retained: Option<u64>,
        always: bool,
    ) -> Option<u64> {
        let previous = self.last;
        let watermark = if watermark == WATERMARK_MAX {
            previous.map_or(WATERMARK_MIN, |r| r.watermark)
        } else {
            watermark
        };
        let unchanged = previous.is_some_and(|r| {
            r.epoch == epoch && r.watermark == watermark && r.retained == retained
        });
        if unchanged && !always {
            return None;
        }
        let request = Request {
            number: previous.map_or(1, |r| r.number + 1),
            epoch,
            watermark,
            retained,
        };
        self.last = Some(request);
        self.requests.push_back(request);
        Some(request.number)
    }

    /// Reports to each source what the newest fully confirmed request delivered.
    pub(super) fn report(&mut self) {
        let confirmed = self
            .confirmed
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        let mut answered = None;
        while self.requests.front().is_some_and(|r| r.number <= confirmed) {
            answered = self.requests.pop_front();
        }
        let Some(answered) = answered else {
            return;
        };
        // Windows still open when the request was made hold their input back even if they
        // have closed since: the watermark reported with the offsets must not cover them.
        let safe = answered
            .retained
            .unwrap_or(u64::MAX)
            .min(answered.epoch.saturating_add(1));
        for (pending, delivered) in self.pending.iter_mut().zip(&self.delivered) {
            let mut done = None;
            while let Some(&(epoch, seq)) = pending.front() {
                if epoch >= safe {
                    break;
                }
                done = Some(seq + 1);
                pending.pop_front();
            }
            delivered.advance_watermark(answered.watermark);
            if let Some(done) = done {
                delivered.advance(done);
            }
        }
    }

    pub(super) fn finish(&self) {
        for delivered in &self.delivered {
            delivered.finish();
        }
    }
}

/// Which sources have caught up with the input that existed when the query started.
pub(super) struct CatchUp {
    sources: Vec<bool>,
    announced: bool,
}

impl CatchUp {
    pub(super) fn new(sources: usize) -> Self {
        Self {
            sources: vec![false; sources],
            announced: false,
        }
    }

    pub(super) fn caught_up(&mut self, source: usize) {
        self.sources[source] = true;
    }

    /// True, once, when every source has caught up.
    pub(super) fn take_complete(&mut self) -> bool {
        if self.announced || !self.sources.iter().all(|c| *c) {
            return false;
        }
        self.announced = true;
        true
    }
}
