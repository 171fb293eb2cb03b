//! What the partition log does for producers: the state of idempotent and transactional
//! producers (`producer::PartitionProducers`) kept in step with every batch appended, the last
//! stable offset, transaction markers, read_committed reads with their aborted transactions,
//! producer snapshots and expiration.
//!
//! Every append path goes through `State::push_batch`, which calls `note_producer_batch`:
//! the leader's appends, a follower's copies of the leader's batches, and (through recovery)
//! the batches replayed after the newest snapshot. Truncation reopens the log through
//! recovery, so producer state follows the cut. Only control batches are decoded, never data.

use super::super::recovery::aborted_entry;
use super::super::snapshots;
use super::super::txn_index::{self, AbortedTxn};
use super::{AppendInfo, PartitionLog, State};
use crate::producer::{marker, Check, Marker, ProducerView};
use crate::record::BatchHeader;
use crate::storage::StorageError;

impl State {
    /// Updates producer state for a batch being appended at `header.base_offset`; an ABORT
    /// marker adds an entry to the active segment's aborted-transaction index.
    pub(in crate::storage) fn note_producer_batch(
        &mut self,
        header: &BatchHeader,
        batch: &crate::storage::HeldBatch,
    ) {
        self.producers.high_watermark_moved(self.high_watermark);
        let marker = header
            .is_control()
            .then(|| marker::parse(&batch.contiguous()))
            .flatten();
        let done = self.producers.appended(header, marker);
        let max = self.config().bounds.producers_per_partition;
        if self.producers.len() > max {
            let evicted = self.producers.evict_idle(max, header.producer_id);
            if evicted > 0 {
                crate::metrics::count(|c| c.producers_evicted += evicted as u64);
                tracing::info!(
                    dir = %self.dir.display(),
                    evicted,
                    remaining = self.producers.len(),
                    bound = max,
                    evicted_total = self.producers.evicted(),
                    "forgot the producers idle longest: more than \
                     producer.state.max.producers.per.partition"
                );
            }
        }
        let Some(done) = done else {
            return;
        };
        if !done.aborted {
            return;
        }
        let entry = aborted_entry(&self.producers, &done);
        if let Err(e) = self.active_segment_mut().add_aborted(entry) {
            // The entry is in memory; recovery rebuilds the file of the segments it replays.
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot append to the txnindex");
        }
    }

    /// Writes the producer snapshot at `offset` (the state of every batch below it).
    pub(in crate::storage) fn snapshot_producers(&self, offset: i64) {
        if let Err(e) = snapshots::write(&self.dir, offset, &self.producers, false) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write producer snapshot");
        }
    }

    /// The log start moved: producers wholly below it and snapshots below it go.
    pub(in crate::storage) fn log_start_moved(&mut self) {
        self.producers.log_start_moved(self.log_start_offset);
        let first = self.segments.keys().next().copied().unwrap_or(0);
        snapshots::remove_below(&self.dir, first);
    }

    fn active_segment_mut(&mut self) -> &mut super::super::segment::Segment {
        match self.segments.values_mut().next_back() {
            Some(last) => last,
            None => unreachable!("log {} has no segments", self.dir.display()),
        }
    }

    pub(super) fn last_stable_offset(&self) -> i64 {
        self.producers.last_stable_offset(self.high_watermark)
    }

    /// Kafka's `collectAbortedTxns`: the aborted transactions overlapping
    /// [`fetch_offset`, `upper`), from the segment holding `fetch_offset` on.
    pub(super) fn aborted_between(&self, fetch_offset: i64, upper: i64) -> Vec<AbortedTxn> {
        let from = self
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut out = Vec::new();
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            if txn_index::collect(&seg.aborted, fetch_offset, upper, &mut out) {
                break;
            }
        }
        out
    }
}

impl PartitionLog {
    /// Checks a client's data batch against producer state before it is appended.
    pub fn producer_check(&self, header: &BatchHeader) -> Check {
        if header.producer_id < 0 {
            return Check::Append;
        }
        self.inner.state.borrow().producers.check(header)
    }

    /// Whether this transactional batch would start its producer's transaction here (the
    /// leader then asks the coordinator first).
    pub fn starts_transaction(&self, header: &BatchHeader) -> bool {
        self.inner
            .state
            .borrow()
            .producers
            .starts_transaction(header)
    }

    /// Appends a transaction marker for `producer_id` (WriteTxnMarkers), unless producer state
    /// fences it (an older producer epoch, an older coordinator epoch).
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.inner.state.borrow().producers.check_marker(
            producer_id,
            producer_epoch,
            marker.coordinator_epoch,
        )?;
        let batch = marker::build(producer_id, producer_epoch, marker, now_ms);
        self.append(bytes::Bytes::from(batch), now_ms)
    }

    /// Offsets below it hold no record of a transaction still open (or whose marker is not
    /// yet committed): what read_committed consumers may read.
    pub fn last_stable_offset(&self) -> i64 {
        self.inner.state.borrow().last_stable_offset()
    }

    /// Resolves when the last stable offset moves above `offset` or the log is closed (the
    /// long poll of a read_committed fetch). The LSO moves only with the high watermark or a
    /// marker, so this waits on the high watermark and checks the LSO each time it moves.
    pub async fn wait_for_stable_data(&self, offset: i64) {
        let inner = &self.inner;
        super::super::wait::Wait::new(&inner.hw_waiters, offset.saturating_add(1), || {
            let st = inner.state.borrow();
            (st.last_stable_offset() > offset || st.closed || st.failed.is_some()).then_some(())
        })
        .await
    }

    /// The producers this partition knows, for DescribeProducers.
    pub fn producers(&self) -> Vec<ProducerView> {
        self.inner.state.borrow().producers.views()
    }

    /// Producers forgotten because the partition remembered more than
    /// `producer.state.max.producers.per.partition`, since the log was opened.
    pub fn producers_evicted(&self) -> u64 {
        self.inner.state.borrow().producers.evicted()
    }

    /// Forgets producers idle for `producer.id.expiration.ms` with no transaction open
    /// (Kafka's periodic `removeExpiredProducers`); returns how many went.
    pub fn expire_producers(&self, now_ms: i64) -> usize {
        let mut st = self.inner.state.borrow_mut();
        let expiration_ms = st.config().producer_id_expiration_ms;
        st.producers.expire(now_ms, expiration_ms)
    }

    /// The snapshot taken at a clean close: the state at the log end, synced, so the next
    /// start replays nothing.
    pub(super) fn snapshot_producers_at_end(&self) -> Result<(), StorageError> {
        let st = self.inner.state.borrow();
        snapshots::write(&st.dir, st.log_end_offset, &st.producers, true)
    }
}
