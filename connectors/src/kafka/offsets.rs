//! [`OffsetLedger`]: which offsets may be committed, given how many batches are delivered.

use std::collections::{BTreeMap, VecDeque};

/// A partition of one of the source's topics: (topic index, partition).
pub type PartitionId = (usize, i32);

/// The split id of a partition: topic index in the high 16 bits, partition in the low.
pub fn split_id((topic, partition): PartitionId) -> u32 {
    ((topic as u32) << 16) | (partition as u32 & 0xFFFF)
}

/// The partition of a split id (see [`split_id`]).
pub fn partition_of(split: u32) -> PartitionId {
    ((split >> 16) as usize, (split & 0xFFFF) as i32)
}

/// Batches sent into the query, in order, with the offset each one lets a partition commit.
///
/// Batch `seq` counts every batch the source produced; once the runtime reports the first
/// `done` batches delivered, the offsets of those batches may be committed.
#[derive(Debug, Default)]
pub struct OffsetLedger {
    pending: VecDeque<(u64, PartitionId, i64)>,
    next_seq: u64,
}

impl OffsetLedger {
    /// Records the next batch, from `partition`, ending before `next_offset`.
    pub fn record(&mut self, partition: PartitionId, next_offset: i64) {
        self.pending
            .push_back((self.next_seq, partition, next_offset));
        self.next_seq += 1;
    }

    /// Removes and returns the offsets delivered once `done` batches are, per partition.
    pub fn take_delivered(&mut self, done: u64) -> BTreeMap<PartitionId, i64> {
        let mut offsets = BTreeMap::new();
        while let Some(&(seq, partition, next_offset)) = self.pending.front() {
            if seq >= done {
                break;
            }
            self.pending.pop_front();
            let entry = offsets.entry(partition).or_insert(next_offset);
            *entry = (*entry).max(next_offset);
        }
        offsets
    }

    /// Forgets batches of partitions this reader no longer owns: their new owner commits.
    pub fn forget(&mut self, gone: impl Fn(PartitionId) -> bool) {
        self.pending.retain(|(_, partition, _)| !gone(*partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_delivered_batches_release_offsets() {
        let mut ledger = OffsetLedger::default();
        ledger.record((0, 0), 10); // seq 0
        ledger.record((0, 1), 5); // seq 1
        ledger.record((0, 0), 20); // seq 2
        ledger.record((1, 0), 7); // seq 3
        assert!(ledger.take_delivered(0).is_empty());
        assert_eq!(
            ledger.take_delivered(3),
            BTreeMap::from([((0, 0), 20), ((0, 1), 5)])
        );
        ledger.forget(|p| p.0 == 1);
        assert!(ledger.take_delivered(u64::MAX).is_empty());
        ledger.record((0, 0), 30); // seq 4
        assert_eq!(ledger.take_delivered(5), BTreeMap::from([((0, 0), 30)]));
    }
}
