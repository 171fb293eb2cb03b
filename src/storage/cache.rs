//! The most recently appended batches of one partition, kept in memory so tail fetches (the
//! common case: consumers keeping up) never touch the disk.
//!
//! Invariants: entries are in offset order (gaps only where a compacted leader's log had
//! them) and end at the log end offset; their total
//! size stays within the byte budget given at open (older entries are dropped first). Entries may
//! be above the high watermark; the reader bounds what it returns.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Bytes,
}

#[derive(Debug)]
pub struct BatchCache {
    budget_bytes: usize,
    held_bytes: usize,
    batches: VecDeque<CachedBatch>,
}

impl BatchCache {
    pub fn new(budget_bytes: usize) -> Self {
        BatchCache {
            budget_bytes,
            held_bytes: 0,
            batches: VecDeque::new(),
        }
    }

    /// The byte budget this cache was given.
    pub fn capacity(&self) -> usize {
        self.budget_bytes
    }

    pub fn push(&mut self, batch: CachedBatch) {
        if let Some(last) = self.batches.back() {
            assert!(
                batch.base_offset > last.last_offset,
                "cache out of order: batch at {} after last offset {}",
                batch.base_offset,
                last.last_offset
            );
        }
        self.held_bytes += batch.bytes.len();
        self.batches.push_back(batch);
        while self.held_bytes > self.budget_bytes {
            match self.batches.pop_front() {
                Some(old) => self.held_bytes -= old.bytes.len(),
                None => break,
            }
        }
    }

    /// The batches from the one holding `offset`, if the cache reaches back that far.
    pub fn batches_from(&self, offset: i64) -> Option<impl Iterator<Item = &CachedBatch>> {
        let first = self.batches.front()?;
        if offset < first.base_offset {
            return None;
        }
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        Some(self.batches.range(start..))
    }

    /// Forgets the batches that end below `offset` (the cleaner rewrote them), keeping the
    /// rest contiguous up to the log end.
    pub fn drop_below(&mut self, offset: i64) {
        while let Some(first) = self.batches.front() {
            if first.last_offset >= offset {
                break;
            }
            self.held_bytes -= first.bytes.len();
            self.batches.pop_front();
        }
    }

    /// The first offset held, if any.
    pub fn first_offset(&self) -> Option<i64> {
        self.batches.front().map(|b| b.base_offset)
    }

    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, last: i64, len: usize) -> CachedBatch {
        CachedBatch {
            base_offset: base,
            last_offset: last,
            bytes: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn evicts_oldest_past_budget_and_finds_containing_batch() {
        let mut c = BatchCache::new(250);
        c.push(batch(0, 4, 100));
        c.push(batch(5, 9, 100));
        c.push(batch(10, 10, 100));
        assert_eq!(c.held_bytes(), 200);
        assert!(c.batches_from(4).is_none());
        let bases: Vec<i64> = c.batches_from(7).unwrap().map(|b| b.base_offset).collect();
        assert_eq!(bases, vec![5, 10]);
        assert_eq!(c.batches_from(11).unwrap().count(), 0);
        c.push(batch(11, 11, 400));
        assert_eq!(c.held_bytes(), 0);
        assert!(c.batches_from(11).is_none());
    }
}
