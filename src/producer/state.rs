//! Per-partition state of idempotent and transactional producers (Kafka's
//! ProducerStateManager and ProducerAppendInfo).
//!
//! For each producer id the partition remembers its epoch, its last five batches (first and
//! last sequence, offsets), the largest timestamp it wrote, the epoch of the last coordinator
//! that sent it a marker, and the first offset of its ongoing transaction here, if any. A data
//! batch is:
//! - the next one (base sequence follows the last): appended;
//! - one of the five remembered: a retry, answered with the offset it got the first time;
//! - anything else: out of order; an older producer epoch: fenced; a plain batch while the
//!   producer has a transaction open here: an invalid transaction state.
//!
//! The first transactional batch of a producer starts a transaction at its base offset; a
//! marker (control batch) ends it. The last stable offset (LSO) is the smallest first offset of
//! the transactions still open, and of completed ones whose marker the high watermark has not
//! passed yet (Kafka's unreplicated transactions), capped by the high watermark.
//!
//! Owned by the partition log (`storage::log`), updated by every batch it appends (leader,
//! follower and recovery alike). Pure: no I/O, no clock; times are handed in.

use std::collections::{BTreeMap, HashMap, VecDeque};

use thiserror::Error;

use super::marker::Marker;
use crate::record::BatchHeader;

/// Batches remembered per producer: Kafka's bound on in-flight requests per idempotent
/// producer.
pub const BATCHES_REMEMBERED: usize = 5;

/// Why a batch or marker is refused (the server maps these to Kafka's codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProducerError {
    #[error("producer {producer_id} epoch {epoch} is older than {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {sequence} out of order")]
    OutOfOrderSequence { producer_id: i64, sequence: i32 },
    #[error("producer {producer_id}: plain batch inside its open transaction")]
    InvalidTxnState { producer_id: i64 },
    #[error("producer {producer_id}: marker of coordinator epoch {epoch} older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        epoch: i32,
        current: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSeq {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
    last_timestamp: i64,
    coordinator_epoch: i32,
    txn_first_offset: Option<i64>,
}

impl Default for Producer {
    fn default() -> Self {
        Producer {
            epoch: -1,
            batches: VecDeque::new(),
            last_timestamp: -1,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }
}

impl Producer {
    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }
}

/// What the produce path should do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not an idempotent batch, or the next in sequence: append it.
    Append,
    /// A retry of a batch already appended at these offsets: answer with them.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
    Reject(ProducerError),
}

/// A transaction a marker ended on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// One producer as a snapshot keeps it (Kafka's snapshot v1 entry: only the last batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    /// -1: no batch remembered.
    pub last_offset: i64,
    pub offset_delta: i32,
    pub timestamp: i64,
    pub coordinator_epoch: i32,
    /// -1: no transaction open.
    pub txn_first_offset: i64,
}

/// A producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    pub txn_start_offset: i64,
}

/// Kafka's sequence arithmetic: sequences wrap from i32::MAX to 0.
fn add_seq(seq: i32, n: i32) -> i32 {
    ((seq as i64 + n as i64).rem_euclid(i32::MAX as i64 + 1)) as i32
}

/// The producers of one partition. Lives in the partition's log, on its owner shard.
#[derive(Debug, Default, Clone)]
pub struct PartitionProducers {
    producers: HashMap<i64, Producer>,
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose marker may not be replicated yet: first offset -> marker
    /// offset. Dropped once the high watermark passes the marker.
    unreplicated: BTreeMap<i64, i64>,
    /// Producers forgotten by [`PartitionProducers::evict_idle`] since this state was built.
    evicted: u64,
}

impl PartitionProducers {
    /// Checks a client's data batch before it is appended (the leader's path).
    pub fn check(&self, h: &BatchHeader) -> Check {
        if h.producer_id < 0 {
            return Check::Append;
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            return Check::Append;
        };
        if h.producer_epoch < p.epoch {
            return Check::Reject(ProducerError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: p.epoch,
            });
        }
        let out_of_order = Check::Reject(ProducerError::OutOfOrderSequence {
            producer_id: h.producer_id,
            sequence: h.base_sequence,
        });
        if h.producer_epoch > p.epoch {
            // A bumped epoch starts its sequences again.
            if h.base_sequence != 0 && p.epoch >= 0 {
                return out_of_order;
            }
        } else {
            let last_seq = add_seq(h.base_sequence, h.last_offset_delta);
            if let Some(b) = p
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
            {
                return Check::Duplicate {
                    base_offset: b.base_offset,
                    last_offset: b.last_offset,
                };
            }
            if let Some(last) = p.batches.back() {
                if h.base_sequence != add_seq(last.last_seq, 1) {
                    return out_of_order;
                }
            }
        }
        if !h.is_transactional() && p.txn_first_offset.is_some() {
            return Check::Reject(ProducerError::InvalidTxnState {
                producer_id: h.producer_id,
            });
        }
        Check::Append
    }

    /// Whether a transactional batch would start a transaction here, so the leader must first
    /// ask the coordinator that the partition is part of it (KIP-890).
    pub fn starts_transaction(&self, h: &BatchHeader) -> bool {
        h.producer_id >= 0
            && h.is_transactional()
            && !h.is_control()
            && self
                .producers
                .get(&h.producer_id)
                .is_none_or(|p| p.txn_first_offset.is_none() || p.epoch != h.producer_epoch)
    }

    /// Checks a marker before the leader appends it (WriteTxnMarkers).
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerError> {
        let Some(p) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if epoch < p.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: p.epoch,
            });
        }
        if p.coordinator_epoch > coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                producer_id,
                epoch: coordinator_epoch,
                current: p.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a batch appended at `h.base_offset` (its header as stored); `marker` is what a
    /// control batch says. Returns the transaction a marker completed, if it had one open here.
    pub fn appended(&mut self, h: &BatchHeader, marker: Option<Marker>) -> Option<CompletedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.is_control() {
            let marker = marker?;
            p.set_epoch(h.producer_epoch);
            p.coordinator_epoch = marker.coordinator_epoch;
            p.last_timestamp = p.last_timestamp.max(h.max_timestamp);
            let first = p.txn_first_offset.take()?;
            self.ongoing.remove(&first);
            self.unreplicated.insert(first, h.base_offset);
            return Some(CompletedTxn {
                producer_id: h.producer_id,
                first_offset: first,
                last_offset: h.base_offset,
                aborted: !marker.commit,
            });
        }
        p.set_epoch(h.producer_epoch);
        p.batches.push_back(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: add_seq(h.base_sequence, h.last_offset_delta),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while p.batches.len() > BATCHES_REMEMBERED {
            p.batches.pop_front();
        }
        p.last_timestamp = p.last_timestamp.max(h.max_timestamp);
        if h.is_transactional() && p.txn_first_offset.is_none() {
            p.txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        None
    }

    /// Kafka's `lastStableOffset(completedTxn)`, for the aborted-transaction index: the first
    /// offset of the transactions still open, or the offset after the marker.
    pub fn stable_offset_after(&self, completed: &CompletedTxn) -> i64 {
        self.ongoing
            .keys()
            .next()
            .copied()
            .unwrap_or(completed.last_offset + 1)
    }

    /// The last stable offset under high watermark `hw`.
    pub fn last_stable_offset(&self, hw: i64) -> i64 {
        let open = self.ongoing.keys().next().copied().unwrap_or(i64::MAX);
        let unreplicated = self
            .unreplicated
            .iter()
            .filter(|(_, marker)| **marker >= hw)
            .map(|(first, _)| *first)
            .next()
            .unwrap_or(i64::MAX);
        hw.min(open).min(unreplicated)
    }

    /// Forgets completed transactions whose markers the high watermark passed.
    pub fn high_watermark_moved(&mut self, hw: i64) {
        if !self.unreplicated.is_empty() {
            self.unreplicated.retain(|_, marker| *marker >= hw);
        }
    }

    /// Kafka's producer expiration: a producer with no transaction open whose last timestamp
    /// is `expiration_ms` or more before `now_ms` is forgotten. Returns how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, p| {
            p.txn_first_offset.is_some() || now_ms.saturating_sub(p.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The log start moved to `start`: producers whose batches all lie below it and that have
    /// no transaction open are forgotten (Kafka's `onLogStartOffsetIncremented`).
    pub fn log_start_moved(&mut self, start: i64) {
        self.producers.retain(|_, p| {
            p.txn_first_offset.is_some() || p.batches.back().is_some_and(|b| b.last_offset >= start)
        });
    }

    /// The count bound (`producer.state.max.producers.per.partition`): once more than `max`
    /// producers are remembered, the ones idle longest (smallest last timestamp) with no
    /// transaction open are forgotten, down to 9/10 of `max`, so the pass is paid once per
    /// `max / 10` new producers rather than on each. A producer with a transaction open is
    /// never forgotten (Kafka never expires one either), nor is `keep` (the producer whose
    /// batch was just appended). A forgotten producer is in the state of one expired by
    /// `producer.id.expiration.ms`: its next batch is taken at any sequence. Returns how many
    /// went.
    pub fn evict_idle(&mut self, max: usize, keep: i64) -> usize {
        if self.producers.len() <= max {
            return 0;
        }
        let excess = self.producers.len() - max * 9 / 10;
        let mut idle: Vec<(i64, i64)> = self
            .producers
            .iter()
            .filter(|(id, p)| p.txn_first_offset.is_none() && **id != keep)
            .map(|(id, p)| (p.last_timestamp, *id))
            .collect();
        let n = excess.min(idle.len());
        if n == 0 {
            return 0;
        }
        if n < idle.len() {
            idle.select_nth_unstable(n - 1);
        }
        for (_, id) in &idle[..n] {
            self.producers.remove(id);
        }
        self.evicted += n as u64;
        n
    }

    /// Producers forgotten by the count bound since this state was built.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The producers as a snapshot file keeps them, by producer id.
    pub fn snapshot_entries(&self) -> Vec<SnapshotEntry> {
        let mut out: Vec<SnapshotEntry> = self
            .producers
            .iter()
            .map(|(id, p)| {
                let last = p.batches.back();
                SnapshotEntry {
                    producer_id: *id,
                    epoch: p.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_seq),
                    last_offset: last.map_or(-1, |b| b.last_offset),
                    offset_delta: last.map_or(0, |b| (b.last_offset - b.base_offset) as i32),
                    timestamp: p.last_timestamp,
                    coordinator_epoch: p.coordinator_epoch,
                    txn_first_offset: p.txn_first_offset.unwrap_or(-1),
                }
            })
            .collect();
        out.sort_unstable_by_key(|e| e.producer_id);
        out
    }

    /// The state a snapshot holds (one batch per producer).
    pub fn from_snapshot(entries: &[SnapshotEntry]) -> Self {
        let mut state = Self::default();
        for e in entries {
            let mut p = Producer {
                epoch: e.epoch,
                last_timestamp: e.timestamp,
                coordinator_epoch: e.coordinator_epoch,
                ..Producer::default()
            };
            if e.last_offset >= 0 {
                p.batches.push_back(BatchSeq {
                    first_seq: add_seq(e.last_sequence, -e.offset_delta),
                    last_seq: e.last_sequence,
                    base_offset: e.last_offset - e.offset_delta as i64,
                    last_offset: e.last_offset,
                });
            }
            if e.txn_first_offset >= 0 {
                p.txn_first_offset = Some(e.txn_first_offset);
                state.ongoing.insert(e.txn_first_offset, e.producer_id);
            }
            state.producers.insert(e.producer_id, p);
        }
        state
    }

    /// Every producer, for DescribeProducers.
    pub fn views(&self) -> Vec<ProducerView> {
        let mut out: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(id, p)| ProducerView {
                producer_id: *id,
                epoch: p.epoch,
                last_sequence: p.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: p.last_timestamp,
                coordinator_epoch: p.coordinator_epoch,
                txn_start_offset: p.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_unstable_by_key(|v| v.producer_id);
        out
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
