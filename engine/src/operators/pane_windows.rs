//! [`PaneWindows`]: hopping windows built from panes, so that each event is aggregated once.
//!
//! A `HOP(slide, size)` window is `size / slide` consecutive panes of one slide each. Each
//! event is added to its pane only, and a window's result is the merge of its panes' states
//! when it closes. Merging all of a window's panes for every window would cost `size / slide`
//! merges per pane, so the panes wait in a two-stack queue (the classic FIFO aggregation):
//! the back stack keeps one running merge of the panes added since the last flip, the front
//! keeps, for each older pane, the merge of it and every pane after it up to the flip. A
//! window is then the front's top merged with the back: each pane is merged about three
//! times in all, whatever the window's length.
//!
//! An event that arrives when some of its windows have already closed (see
//! [`WindowAssign`](super::WindowAssign)) counts only in the later ones: it goes to a side
//! pane of its own that joins windows from the first one it counts in. Those are rare, and are
//! merged into each of their windows directly.

use std::collections::VecDeque;

use super::window_groups::{Frozen, GroupsFactory, WindowGroups};
use crate::error::Result;
use crate::time::{Timestamp, WATERMARK_MIN};

/// The closed panes of a hopping aggregation and the windows they make.
pub(crate) struct PaneWindows {
    slide: Timestamp,
    size: Timestamp,
    /// The end of the last window emitted.
    pub emitted_through: Timestamp,
    /// Whole panes whose first window has closed, oldest first, by start.
    queue: VecDeque<(Timestamp, Frozen)>,
    /// For the oldest `front.len()` panes of the queue, the merge of each with every later
    /// pane up to the last flip; the oldest pane's is last.
    front: Vec<Frozen>,
    /// The merge of the queue's panes after the front's.
    back: Option<Frozen>,
    /// Parts of panes whose events came after their first windows closed: (start, the end
    /// of the first window they count in, groups).
    side: Vec<(Timestamp, Timestamp, Frozen)>,
}

impl PaneWindows {
    /// Windows of `size` every `slide`.
    pub fn new(slide: Timestamp, size: Timestamp) -> Self {
        Self {
            slide,
            size,
            emitted_through: WATERMARK_MIN,
            queue: VecDeque::new(),
            front: Vec::new(),
            back: None,
            side: Vec::new(),
        }
    }

    /// The windows' length.
    pub fn window_size(&self) -> Timestamp {
        self.size
    }

    /// The same windows, with no panes yet.
    pub fn empty_copy(&self) -> Self {
        Self::new(self.slide, self.size)
    }

    /// The end of the next window the closed panes make, if any is left.
    pub fn next_end(&self) -> Option<Timestamp> {
        let next = self.emitted_through.saturating_add(self.slide);
        let alive = |start: Timestamp| start.saturating_add(self.size) >= next;
        let queued = self.queue.back().is_some_and(|(start, _)| alive(*start));
        let side = self.side.iter().any(|(start, _, _)| alive(*start));
        (queued || side).then_some(next)
    }

    /// Takes in a pane, or part of one, whose first window ends at `first_end`.
    pub fn close_pane(
        &mut self,
        start: Timestamp,
        first_end: Timestamp,
        pane: Frozen,
        factory: &GroupsFactory,
    ) -> Result<()> {
        if first_end != start.saturating_add(self.slide) {
            self.side.push((start, first_end, pane));
            return Ok(());
        }
        let back = match self.back.take() {
            None => pane.clone(),
            Some(back) => factory.merged([&back, &pane])?.freeze()?,
        };
        self.back = Some(back);
        self.queue.push_back((start, pane));
        Ok(())
    }

    /// The window ending at `end`, from every pane in it, as live groups to evaluate.
    pub fn window(&mut self, end: Timestamp, factory: &GroupsFactory) -> Result<WindowGroups> {
        let first_start = end.saturating_sub(self.size);
        self.evict_before(first_start, factory)?;
        self.side.retain(|(start, _, _)| *start >= first_start);
        let side = self
            .side
            .iter()
            .filter(|(start, first_end, _)| *first_end <= end && *start < end)
            .map(|(_, _, part)| part);
        factory.merged(self.front.last().into_iter().chain(&self.back).chain(side))
    }

    /// Drops the panes every window of which has been emitted: without a next window to
    /// evict them, the last panes before a gap in the input would stay.
    pub fn forget_emitted(&mut self, factory: &GroupsFactory) -> Result<()> {
        let first_start = (self.emitted_through.saturating_sub(self.size)).saturating_add(1);
        self.side.retain(|(start, _, _)| *start >= first_start);
        self.evict_before(first_start, factory)
    }

    /// Drops the panes that start before `start`.
    fn evict_before(&mut self, start: Timestamp, factory: &GroupsFactory) -> Result<()> {
        while self.queue.front().is_some_and(|(s, _)| *s < start) {
            if self.front.is_empty() {
                self.flip(factory)?;
            }
            self.front.pop();
            self.queue.pop_front();
        }
        Ok(())
    }

    /// Moves every pane of the back to the front, as merges of each with its successors.
    fn flip(&mut self, factory: &GroupsFactory) -> Result<()> {
        let mut running: Option<Frozen> = None;
        let back_panes = self.queue.len() - self.front.len();
        let mut merges = Vec::with_capacity(back_panes);
        for (_, pane) in self.queue.iter().rev().take(back_panes) {
            let merged = match &running {
                None => pane.clone(),
                Some(later) => factory.merged([pane, later])?.freeze()?,
            };
            running = Some(merged.clone());
            merges.push(merged);
        }
        // `merges` runs newest to oldest: the oldest pane's merge ends up on top.
        self.front = merges;
        self.back = None;
        Ok(())
    }

    /// Bytes held by the closed panes and their merges.
    pub fn bytes(&self) -> usize {
        let queue = self.queue.iter().map(|(_, p)| p.size());
        let front = self.front.iter().map(Frozen::size);
        let side = self.side.iter().map(|(_, _, p)| p.size());
        queue.chain(front).chain(side).sum::<usize>() + self.back.as_ref().map_or(0, Frozen::size)
    }

    /// Groups held in closed panes.
    pub fn groups(&self) -> usize {
        let queue = self.queue.iter().map(|(_, p)| p.groups);
        queue
            .chain(self.side.iter().map(|(_, _, p)| p.groups))
            .sum()
    }

    /// The oldest source batch with rows in a closed pane.
    pub fn first_epoch(&self) -> Option<u64> {
        let queue = self.queue.iter().map(|(_, p)| p.first_epoch);
        queue
            .chain(self.side.iter().map(|(_, _, p)| p.first_epoch))
            .min()
    }

    /// Every closed pane with its start and first window end, for a snapshot.
    pub fn panes(&self) -> impl Iterator<Item = (Timestamp, Timestamp, &Frozen)> {
        let queue = self
            .queue
            .iter()
            .map(|(start, p)| (*start, start.saturating_add(self.slide), p));
        queue.chain(self.side.iter().map(|(s, e, p)| (*s, *e, p)))
    }
}
