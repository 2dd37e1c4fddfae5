//! [`RowStore`]: the batches whose rows partitions of a `MATCH_RECOGNIZE` still hold, and
//! [`Partition`]: one key's rows, in event-time order.

use std::collections::VecDeque;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::{interleave, interleave_record_batch};

use crate::error::Result;

/// Where a held row is: a batch of the store, and a row in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    batch: u64,
    row: u32,
}

struct Stored {
    rows: RecordBatch,
    /// Rows of it that partitions still hold.
    live: usize,
    /// The oldest source batch its rows came from.
    epoch: u64,
}

/// Batches of rows as they became ready, freed once no partition holds a row of them.
#[derive(Default)]
pub struct RowStore {
    /// Batch `first + i` at `i`; `None` once freed.
    batches: VecDeque<Option<Stored>>,
    first: u64,
    live: usize,
}

impl RowStore {
    /// Keeps `rows`; the reference to each, in order.
    pub fn push(&mut self, rows: RecordBatch, epoch: u64) -> Vec<RowRef> {
        let batch = self.first + self.batches.len() as u64;
        let refs = (0..rows.num_rows() as u32)
            .map(|row| RowRef { batch, row })
            .collect();
        self.live += rows.num_rows();
        self.batches.push_back(Some(Stored {
            live: rows.num_rows(),
            rows,
            epoch,
        }));
        refs
    }

    /// A partition no longer holds `row`.
    pub fn release(&mut self, row: RowRef) {
        let i = (row.batch - self.first) as usize;
        if let Some(Some(stored)) = self.batches.get_mut(i) {
            stored.live -= 1;
            self.live -= 1;
            if stored.live == 0 {
                self.batches[i] = None;
            }
        }
        while matches!(self.batches.front(), Some(None)) {
            self.batches.pop_front();
            self.first += 1;
        }
    }

    /// The rows at `refs`, as one batch.
    pub fn gather(&self, refs: &[RowRef]) -> Result<RecordBatch> {
        let (sources, slots) = self.sources();
        let indices: Vec<(usize, usize)> = refs
            .iter()
            .map(|r| (slots[(r.batch - self.first) as usize], r.row as usize))
            .collect();
        Ok(interleave_record_batch(&sources, &indices)?)
    }

    /// Column `column` of held rows, or values of `extra` (the batch's values, then a NULL).
    pub fn interleave_column(
        &self,
        column: usize,
        extra: &[&dyn Array; 2],
        picks: &[Pick],
    ) -> Result<ArrayRef> {
        let (mut sources, slot) = self.column_sources(column);
        let batch = sources.len();
        sources.extend_from_slice(extra);
        let indices: Vec<(usize, usize)> = (picks.iter())
            .map(|p| match p {
                Pick::Batch(row) => (batch, *row),
                Pick::Held(held) => slot(*held),
                Pick::Null => (batch + 1, 0),
            })
            .collect();
        Ok(interleave(&sources, &indices)?)
    }

    /// Column `column` of the stored batches, and where a held row is among them.
    fn column_sources(
        &self,
        column: usize,
    ) -> (Vec<&dyn Array>, impl Fn(RowRef) -> (usize, usize)) {
        let (batches, slots) = self.sources();
        let first = self.first;
        let columns = batches.iter().map(|b| b.column(column).as_ref()).collect();
        (columns, move |r: RowRef| {
            (slots[(r.batch - first) as usize], r.row as usize)
        })
    }

    /// The stored batches, and for each slot its index among them.
    fn sources(&self) -> (Vec<&RecordBatch>, Vec<usize>) {
        let mut sources = Vec::new();
        let slots = (self.batches.iter())
            .map(|slot| match slot {
                Some(stored) => {
                    sources.push(&stored.rows);
                    sources.len() - 1
                }
                None => usize::MAX,
            })
            .collect();
        (sources, slots)
    }

    /// Rows held.
    pub fn live_rows(&self) -> usize {
        self.live
    }

    /// Rows in the batches kept, held or not.
    pub fn stored_rows(&self) -> usize {
        self.batches
            .iter()
            .flatten()
            .map(|s| s.rows.num_rows())
            .sum()
    }

    /// Bytes of the batches kept.
    pub fn bytes(&self) -> usize {
        (self.batches.iter().flatten())
            .map(|s| s.rows.get_array_memory_size())
            .sum()
    }

    /// The oldest source batch a kept row came from.
    pub fn oldest_epoch(&self) -> Option<u64> {
        self.batches.iter().flatten().map(|s| s.epoch).min()
    }
}

/// Where a value of [`RowStore::interleave_column`] comes from.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// A row of the batch being ingested.
    Batch(usize),
    /// A held row.
    Held(RowRef),
    /// NULL.
    Null,
}

/// One partition key's rows from the oldest it still needs, in event-time order.
#[derive(Debug, Default)]
pub struct Partition {
    /// Each row's DEFINE conditions as bits.
    pub masks: Vec<u64>,
    /// Each row's event time.
    pub times: Vec<i64>,
    /// Where each row is.
    pub refs: Vec<RowRef>,
    /// The first row a match may still start at; rows before it are kept only for `PREV`.
    pub next: usize,
}

impl Partition {
    /// Adds rows at the end.
    pub fn extend(&mut self, masks: &[u64], times: &[i64], refs: &[RowRef]) {
        self.masks.extend_from_slice(masks);
        self.times.extend_from_slice(times);
        self.refs.extend_from_slice(refs);
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    /// Forgets the rows before `next` but the last `keep` of them, once that is at least half
    /// of them (so each row is moved a bounded number of times), releasing them in `store`.
    pub fn trim(&mut self, keep: usize, store: &mut RowStore) {
        let drop = self.next.saturating_sub(keep);
        if drop == 0 || drop * 2 < self.len() {
            return;
        }
        for row in self.refs.drain(..drop) {
            store.release(row);
        }
        self.masks.drain(..drop);
        self.times.drain(..drop);
        self.next -= drop;
    }

    /// Forgets every row, releasing them in `store`.
    pub fn clear(&mut self, store: &mut RowStore) {
        for row in self.refs.drain(..) {
            store.release(row);
        }
        self.masks.clear();
        self.times.clear();
        self.next = 0;
    }
}
