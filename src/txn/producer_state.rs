//! Per-partition state of idempotent producers (Kafka's ProducerStateManager, reduced to what
//! deduplication needs).
//!
//! For each producer id the partition remembers its epoch and its last five batches (first and
//! last sequence, base offset), as many as a producer may have in flight. A batch is:
//! - the next one (base sequence follows the last): appended;
//! - one of the five remembered: a retry, answered with the offset it got the first time;
//! - anything else: OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch: INVALID_PRODUCER_EPOCH.
//!
//! The state lives in memory. Followers keep it as they copy the leader's batches, so a new
//! leader knows its producers; a truncated log forgets the batches it cut; at start-up it is
//! rebuilt from the active segment's batches (recovery reads them anyway). A producer whose
//! last batches are only in older segments is not known after a restart: its first batch is
//! taken as it comes (Kafka keeps `.snapshot` files for that).

use std::collections::{HashMap, VecDeque};

use kafka_protocol::error::ResponseError;

use crate::record::BatchHeader;

/// Batches remembered per producer: Kafka's bound on in-flight requests per idempotent
/// producer.
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSeq {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
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
    Reject(ResponseError),
}

/// Kafka's sequence arithmetic: sequences wrap from i32::MAX to 0.
fn add_seq(seq: i32, n: i32) -> i32 {
    ((seq as i64 + n as i64) % (i32::MAX as i64 + 1)) as i32
}

/// Idempotent producers of one partition. Lives on the partition's owner shard.
#[derive(Debug, Default)]
pub struct PartitionProducers {
    producers: HashMap<i64, Producer>,
}

impl PartitionProducers {
    /// Checks a validated batch before it is appended.
    pub fn check(&self, h: &BatchHeader) -> Check {
        if h.producer_id < 0 {
            return Check::Append;
        }
        if h.is_transactional() {
            // No transaction coordinator: nothing could have begun this transaction.
            return Check::Reject(ResponseError::InvalidTxnState);
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            return Check::Append;
        };
        if h.producer_epoch < p.epoch {
            return Check::Reject(ResponseError::InvalidProducerEpoch);
        }
        if h.producer_epoch > p.epoch {
            // A bumped epoch starts its sequences again.
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
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
        match p.batches.back() {
            Some(last) if h.base_sequence != add_seq(last.last_seq, 1) => {
                Check::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => Check::Append,
        }
    }

    /// The state the log's own batches give (headers in log order, as recovery found them).
    pub fn rebuilt(batches: &[BatchHeader]) -> Self {
        let mut state = Self::default();
        for h in batches {
            state.appended(h, h.base_offset);
        }
        state
    }

    /// The log was cut back to `end`: batches at or past it are forgotten (a retry of one is
    /// written again, at its new offset), and producers with nothing left are dropped.
    pub fn truncate(&mut self, end: i64) {
        for p in self.producers.values_mut() {
            p.batches.retain(|b| b.base_offset < end);
        }
        self.producers.retain(|_, p| !p.batches.is_empty());
    }

    /// Records a batch that was appended at `base_offset` (its header as stored).
    pub fn appended(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_id < 0 {
            return;
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.batches.push_back(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: add_seq(h.base_sequence, h.last_offset_delta),
            base_offset,
            last_offset: base_offset + h.last_offset_delta as i64,
        });
        while p.batches.len() > BATCHES_REMEMBERED {
            p.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::make_batch;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        let mut h = BatchHeader::parse(&make_batch(0, count, 1)).unwrap();
        h.producer_id = pid;
        h.producer_epoch = epoch;
        h.base_sequence = seq;
        h
    }

    #[test]
    fn sequences_are_checked_as_kafka_does() {
        let mut s = PartitionProducers::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(s.check(&first), Check::Append);
        s.appended(&first, 100);
        let table = [
            ("next in sequence", header(7, 0, 3, 2), Check::Append),
            (
                "retry of the first",
                header(7, 0, 0, 3),
                Check::Duplicate {
                    base_offset: 100,
                    last_offset: 102,
                },
            ),
            (
                "gap",
                header(7, 0, 5, 1),
                Check::Reject(ResponseError::OutOfOrderSequenceNumber),
            ),
            (
                "older epoch",
                header(7, -1, 3, 1),
                Check::Reject(ResponseError::InvalidProducerEpoch),
            ),
            ("new epoch from zero", header(7, 1, 0, 1), Check::Append),
            (
                "new epoch not from zero",
                header(7, 1, 4, 1),
                Check::Reject(ResponseError::OutOfOrderSequenceNumber),
            ),
            ("unknown producer", header(8, 0, 42, 1), Check::Append),
            ("not idempotent", header(-1, -1, -1, 1), Check::Append),
        ];
        for (name, h, want) in table {
            assert_eq!(s.check(&h), want, "{name}");
        }
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = PartitionProducers::default();
        for i in 0..7 {
            let h = header(1, 0, i, 1);
            assert_eq!(s.check(&h), Check::Append, "batch {i}");
            s.appended(&h, i as i64 * 10);
        }
        assert!(matches!(
            s.check(&header(1, 0, 6, 1)),
            Check::Duplicate {
                base_offset: 60,
                ..
            }
        ));
        assert!(matches!(
            s.check(&header(1, 0, 2, 1)),
            Check::Duplicate { .. }
        ));
        assert_eq!(
            s.check(&header(1, 0, 1, 1)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn sequences_wrap_at_the_maximum() {
        let mut s = PartitionProducers::default();
        let h = header(3, 0, i32::MAX - 1, 2);
        s.appended(&h, 0);
        assert_eq!(s.check(&header(3, 0, 0, 1)), Check::Append);
        assert_eq!(add_seq(i32::MAX, 1), 0);
    }

    #[test]
    fn transactional_batches_are_refused() {
        let s = PartitionProducers::default();
        let mut h = header(3, 0, 0, 1);
        h.attributes |= 0x10;
        assert_eq!(s.check(&h), Check::Reject(ResponseError::InvalidTxnState));
    }

    #[test]
    fn rebuilt_from_the_log_a_retry_is_recognised() {
        let mut a = header(7, 0, 0, 2);
        a.base_offset = 10;
        let mut b = header(7, 0, 2, 3);
        b.base_offset = 12;
        let state = PartitionProducers::rebuilt(&[a, b]);
        assert_eq!(
            state.check(&b),
            Check::Duplicate {
                base_offset: 12,
                last_offset: 14
            }
        );
        assert_eq!(state.check(&header(7, 0, 5, 1)), Check::Append);
        assert_eq!(
            state.check(&header(7, 0, 9, 1)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn a_truncated_batch_is_forgotten_and_written_again() {
        let mut state = PartitionProducers::default();
        state.appended(&header(7, 0, 0, 2), 10);
        let cut = header(7, 0, 2, 3);
        state.appended(&cut, 12);
        state.appended(&header(8, 0, 0, 1), 15);
        state.truncate(12);
        // The retry of the cut batch follows the last kept one: appended anew.
        assert_eq!(state.check(&cut), Check::Append);
        // Producer 8 had nothing below the cut: unknown again.
        assert_eq!(state.check(&header(8, 0, 4, 1)), Check::Append);
    }
}
