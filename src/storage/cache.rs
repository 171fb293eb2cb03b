//! The most recently appended batches of each partition, kept in memory so tail fetches (the
//! common case: consumers keeping up) never touch the disk.
//!
//! One [`CacheSpace`] per shard holds the batches of every log the shard owns within one byte
//! budget (`fetch.cache.bytes`), so memory does not grow with the partition count: when it is
//! full, the batches appended longest ago go first, whichever log they belong to. Each log sees
//! its own part through a [`BatchCache`].
//!
//! Invariants: a log's entries are in offset order (gaps only where a compacted leader's log had
//! them) and end at its log end offset (eviction only ever takes a log's oldest entries); the
//! space's total stays within its budget. Entries may be above the high watermark; the reader
//! bounds what it returns.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::HeldBatch;

#[derive(Debug, Clone)]
pub struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub batch: HeldBatch,
}

/// The shard-wide budget and the batches of every log in it.
#[derive(Debug)]
pub struct CacheSpace {
    inner: RefCell<Space>,
}

#[derive(Debug, Default)]
struct Space {
    budget_bytes: usize,
    held_bytes: usize,
    /// Batches held for every log together.
    held_batches: usize,
    next_id: u64,
    logs: HashMap<u64, LogEntries>,
    /// (log, base offset) in the order pushed: eviction order. Entries that a log already
    /// dropped (cleaned, or the log closed) are skipped when reached.
    order: VecDeque<(u64, i64)>,
}

#[derive(Debug, Default)]
struct LogEntries {
    held_bytes: usize,
    batches: VecDeque<CachedBatch>,
}

impl CacheSpace {
    pub fn new(budget_bytes: usize) -> Rc<Self> {
        Rc::new(CacheSpace {
            inner: RefCell::new(Space {
                budget_bytes,
                ..Space::default()
            }),
        })
    }

    /// Bytes held for every log together.
    pub fn held_bytes(&self) -> usize {
        self.inner.borrow().held_bytes
    }

    pub fn budget_bytes(&self) -> usize {
        self.inner.borrow().budget_bytes
    }
}

impl Space {
    fn evict_to_budget(&mut self) {
        while self.held_bytes > self.budget_bytes {
            let Some((id, base)) = self.order.pop_front() else {
                break;
            };
            let Some(log) = self.logs.get_mut(&id) else {
                continue;
            };
            if log.batches.front().map(|b| b.base_offset) != Some(base) {
                continue;
            }
            if let Some(old) = log.batches.pop_front() {
                log.held_bytes -= old.batch.len();
                self.held_bytes -= old.batch.len();
                self.held_batches -= 1;
            }
        }
        if self.order.len() > 2 * self.held_batches + 1024 {
            let logs = &self.logs;
            self.order.retain(|(id, base)| {
                logs.get(id).is_some_and(|l| {
                    l.batches
                        .binary_search_by_key(base, |b| b.base_offset)
                        .is_ok()
                })
            });
        }
    }
}

/// One log's part of a [`CacheSpace`]; its batches leave the space when it is dropped.
#[derive(Debug)]
pub struct BatchCache {
    space: Rc<CacheSpace>,
    id: u64,
}

impl BatchCache {
    /// A cache with a budget of its own.
    #[cfg(test)]
    pub fn new(budget_bytes: usize) -> Self {
        Self::within(CacheSpace::new(budget_bytes))
    }

    /// A log's cache inside a shared space.
    pub fn within(space: Rc<CacheSpace>) -> Self {
        let id = {
            let mut s = space.inner.borrow_mut();
            let id = s.next_id;
            s.next_id += 1;
            s.logs.insert(id, LogEntries::default());
            id
        };
        BatchCache { space, id }
    }

    /// The space this cache draws on.
    pub fn space(&self) -> Rc<CacheSpace> {
        self.space.clone()
    }

    pub fn push(&mut self, batch: CachedBatch) {
        let mut s = self.space.inner.borrow_mut();
        let len = batch.batch.len();
        let base = batch.base_offset;
        let log = s.logs.get_mut(&self.id).expect("registered log");
        if let Some(last) = log.batches.back() {
            assert!(
                batch.base_offset > last.last_offset,
                "cache out of order: batch at {} after last offset {}",
                batch.base_offset,
                last.last_offset
            );
        }
        log.held_bytes += len;
        log.batches.push_back(batch);
        s.held_bytes += len;
        s.held_batches += 1;
        s.order.push_back((self.id, base));
        s.evict_to_budget();
    }

    /// Hands `each` the batches from the one holding `offset` on, in order, until it returns
    /// false; false if the cache does not reach back to `offset`.
    pub fn visit_from(&self, offset: i64, mut each: impl FnMut(&CachedBatch) -> bool) -> bool {
        let s = self.space.inner.borrow();
        let Some(log) = s.logs.get(&self.id) else {
            return false;
        };
        match log.batches.front() {
            Some(first) if offset >= first.base_offset => {}
            _ => return false,
        }
        let start = log.batches.partition_point(|b| b.last_offset < offset);
        for b in log.batches.range(start..) {
            if !each(b) {
                break;
            }
        }
        true
    }

    /// Forgets the batches that end below `offset` (the cleaner rewrote them), keeping the
    /// rest contiguous up to the log end.
    pub fn drop_below(&mut self, offset: i64) {
        let mut s = self.space.inner.borrow_mut();
        let Some(log) = s.logs.get_mut(&self.id) else {
            return;
        };
        let (mut dropped, mut count) = (0, 0);
        while let Some(first) = log.batches.front() {
            if first.last_offset >= offset {
                break;
            }
            dropped += first.batch.len();
            count += 1;
            log.batches.pop_front();
        }
        log.held_bytes -= dropped;
        s.held_bytes -= dropped;
        s.held_batches -= count;
    }

    /// The first offset held, if any.
    pub fn first_offset(&self) -> Option<i64> {
        let s = self.space.inner.borrow();
        s.logs.get(&self.id)?.batches.front().map(|b| b.base_offset)
    }

    /// Bytes held for this log.
    pub fn held_bytes(&self) -> usize {
        let s = self.space.inner.borrow();
        s.logs.get(&self.id).map_or(0, |l| l.held_bytes)
    }
}

impl Drop for BatchCache {
    fn drop(&mut self) {
        let mut s = self.space.inner.borrow_mut();
        if let Some(log) = s.logs.remove(&self.id) {
            s.held_bytes -= log.held_bytes;
            s.held_batches -= log.batches.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, last: i64, len: usize) -> CachedBatch {
        CachedBatch {
            base_offset: base,
            last_offset: last,
            batch: HeldBatch::whole(bytes::Bytes::from(vec![0u8; len])),
        }
    }

    fn bases_from(c: &BatchCache, offset: i64) -> Option<Vec<i64>> {
        let mut v = Vec::new();
        c.visit_from(offset, |b| {
            v.push(b.base_offset);
            true
        })
        .then_some(v)
    }

    #[test]
    fn evicts_oldest_past_budget_and_finds_containing_batch() {
        let mut c = BatchCache::new(250);
        c.push(batch(0, 4, 100));
        c.push(batch(5, 9, 100));
        c.push(batch(10, 10, 100));
        assert_eq!(c.held_bytes(), 200);
        assert_eq!(bases_from(&c, 4), None);
        assert_eq!(bases_from(&c, 7), Some(vec![5, 10]));
        assert_eq!(bases_from(&c, 11), Some(vec![]));
        c.push(batch(11, 11, 400));
        assert_eq!(c.held_bytes(), 0);
        assert_eq!(bases_from(&c, 11), None);
    }

    #[test]
    fn logs_share_one_budget_and_the_oldest_batches_go_first() {
        let space = CacheSpace::new(300);
        let mut a = BatchCache::within(space.clone());
        let mut b = BatchCache::within(space.clone());
        a.push(batch(0, 0, 100));
        b.push(batch(0, 0, 100));
        a.push(batch(1, 1, 100));
        assert_eq!(space.held_bytes(), 300);
        b.push(batch(1, 1, 100));
        // a's first batch was the oldest in the space.
        assert_eq!(a.first_offset(), Some(1));
        assert_eq!(b.first_offset(), Some(0));
        assert_eq!(space.held_bytes(), 300);
        // Cleaning a log and dropping another give their bytes back.
        b.drop_below(1);
        assert_eq!((b.held_bytes(), space.held_bytes()), (100, 200));
        drop(a);
        assert_eq!(space.held_bytes(), 100);
        let mut c = BatchCache::within(space.clone());
        for i in 0..10 {
            c.push(batch(i, i, 100));
        }
        assert!(space.held_bytes() <= 300);
        assert_eq!(
            b.first_offset(),
            None,
            "b's batch was older than all of c's"
        );
        assert_eq!(c.first_offset(), Some(7));
    }

    #[test]
    fn skipped_order_entries_do_not_pile_up() {
        let space = CacheSpace::new(1 << 30);
        let mut a = BatchCache::within(space.clone());
        for i in 0..10_000 {
            a.push(batch(i, i, 1));
            a.drop_below(i + 1);
        }
        assert!(space.inner.borrow().order.len() <= 1025);
    }
}
