//! The partition log: the API the shard uses, and the state its parts share.
//!
//! Lives on the shard that owns the partition (`!Send`, shared through `Rc`); the shard's request
//! tasks call it, and one writer task per log (`writer.rs`) does the writes. `append` is
//! synchronous: it assigns offsets and queues bytes; the writer makes them durable in group
//! commits; the high watermark then covers them and waiters wake.
//!
//! Two ends: `written_end` is what this replica's completed writes cover (what acks=1 waits for
//! and followers may fetch), `high_watermark` what the partition has committed (what consumers
//! read and acks=all waits for). A log of one replica keeps them equal; a replicated one has
//! its high watermark set by the replica machine (`hw_managed`).
//!
//! Invariants: offsets strictly increase;
//! `log_start_offset <= high_watermark <= written_end <= log_end_offset`;
//! the last segment in `segments` is the active one; no borrow of `state` is held across an
//! `.await`.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::cache::{BatchCache, CacheSpace};
use super::io_error;
use super::recovery;
use super::segment::{Segment, Tail, DELETED_SUFFIX};
use super::wait::{Wait, WaitList};
use super::{HeldBatch, StorageError};
use crate::config::{LogConfig, TimestampType};
use crate::record::{self, BatchHeader};

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time written into the batch for LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
}

/// Whole batches read from the log, in offset order.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub batches: Vec<Bytes>,
    /// Zero-copy reads ([`PartitionLog::read_for_fetch`]) from the tail cache only: the batches
    /// as the log holds them, each with the offset after it (`batches` is then empty).
    pub held: Vec<(HeldBatch, i64)>,
    pub bytes: usize,
    /// Zero-copy reads ([`PartitionLog::read_for_fetch`]) only: the batches as one range of
    /// their segment file, and the offset after the last (`batches` is then empty).
    pub file: Option<(super::FileRange, i64)>,
    /// The batches came from the in-memory tail cache (not from a segment file).
    pub from_cache: bool,
}

impl ReadResult {
    /// The batches as the network sends them.
    pub fn into_chunks(self) -> Vec<super::Chunk> {
        match self.file {
            Some((range, _)) => vec![super::Chunk::File(range)],
            None if !self.held.is_empty() => self
                .held
                .into_iter()
                .map(|(b, _)| super::Chunk::Held(b))
                .collect(),
            None => self.batches.into_iter().map(super::Chunk::Mem).collect(),
        }
    }

    /// The offset after each batch (one for a file range), in order; `unknown` for a batch
    /// whose header does not parse.
    pub fn next_offsets(&self, unknown: i64) -> Vec<i64> {
        match &self.file {
            Some((_, next)) => vec![*next],
            None if !self.held.is_empty() => self.held.iter().map(|(_, next)| *next).collect(),
            None => self
                .batches
                .iter()
                .map(|b| BatchHeader::parse(b).map_or(unknown, |h| h.next_offset()))
                .collect(),
        }
    }
}

/// Up to where a fetch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUpTo {
    /// A consumer reading uncommitted: the high watermark.
    HighWatermark,
    /// A read_committed consumer: the last stable offset.
    Stable,
    /// A follower: what a replica may copy.
    Replica,
}

/// One partition's log. Lives on its owner shard only.
pub struct PartitionLog {
    inner: Rc<Inner>,
}

/// What the API and the writer task share.
pub(super) struct Inner {
    pub dir: PathBuf,
    pub state: RefCell<State>,
    /// Waiting for the high watermark to reach a key.
    pub(super) hw_waiters: WaitList,
    /// Waiting for the written end to reach a key.
    pub(super) written_waiters: WaitList,
    /// Followers' long polls, waiting for what a replica may read to pass a key.
    replica_waiters: WaitList,
    /// Waiting for the writer to finish the job with a given sequence number.
    job_waiters: WaitList,
}

/// Bytes queued for one write to one segment. Appends extend the last job until the writer
/// takes it.
#[derive(Debug)]
pub(super) struct Job {
    pub seq: u64,
    pub segment_base: i64,
    pub data: super::segment::JobData,
    /// The log end offset once this job is written.
    pub end_offset: i64,
    pub messages: u64,
    /// After this job, seal the segment and start the next one at `end_offset`.
    pub roll: bool,
    /// `now_ms` of the job's first append, for the flush.ms policy.
    pub first_append_ms: i64,
}

pub(super) struct State {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    /// Committed: consumers read below it.
    high_watermark: i64,
    /// Durable here: every completed write ends at or before it.
    written_end: i64,
    log_end_offset: i64,
    /// Set by the replica machine when the partition is replicated; otherwise the high
    /// watermark follows `written_end`.
    hw_managed: bool,
    /// Where the replicas agree the high watermark may go (managed HW); the part past the
    /// written end is taken when the local write completes.
    hw_target: i64,
    /// The epoch this replica leads in, written into every batch it appends (-1: none yet).
    leader_epoch: i32,
    /// Leader epochs and the offsets they start at (`leader-epoch-checkpoint`).
    pub(super) epochs: super::epochs::LeaderEpochCache,
    cache: BatchCache,
    pub pending: VecDeque<Job>,
    next_job_seq: u64,
    done_job_seq: u64,
    pub writer_running: bool,
    /// The active segment's partial last block; the writer holds it while writing.
    pub tail: Option<Tail>,
    failed: Option<(io::ErrorKind, String)>,
    /// The device is full (ENOSPC or EDQUOT): the writer retries the job it could not write,
    /// appends are refused and waiters past the written end fail, until a write succeeds.
    /// Holds the error of the first failed write.
    no_space: Option<String>,
    closing: bool,
    closed: bool,
    unsynced_messages: u64,
    /// `now_ms` of the first append not yet synced.
    unsynced_since_ms: Option<i64>,
    last_append_ms: i64,
    pub writes: u64,
    syncs: u64,
    /// Idempotent and transactional producers of this partition, updated by every append.
    pub(super) producers: crate::producer::PartitionProducers,
}

impl PartitionLog {
    /// Opens (recovering a torn tail, rebuilding bad indexes) or creates the log in `dir`.
    /// `cache_bytes` bounds the recent batches kept in memory for tail fetches.
    pub async fn open(
        dir: PathBuf,
        config: LogConfig,
        cache_bytes: usize,
        now_ms: i64,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        Self::open_in(dir, config, CacheSpace::new(cache_bytes), now_ms).await
    }

    /// As [`open`](Self::open), keeping recent batches in `space`, shared with the other logs
    /// of the shard.
    pub async fn open_in(
        dir: PathBuf,
        config: LogConfig,
        space: Rc<CacheSpace>,
        now_ms: i64,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        if dir.is_dir() {
            cleaner::finish_interrupted_swaps(&dir)?;
        }
        let recovered = recovery::recover(&dir, &config, now_ms).await?;
        let cache = BatchCache::within(space);
        let state = State::recovered(dir.clone(), config, recovered, cache, now_ms)?;
        state.check_invariants();
        let inner = Inner {
            dir,
            state: RefCell::new(state),
            hw_waiters: WaitList::default(),
            written_waiters: WaitList::default(),
            replica_waiters: WaitList::default(),
            job_waiters: WaitList::default(),
        };
        Ok(Rc::new(PartitionLog {
            inner: Rc::new(inner),
        }))
    }

    /// Appends one validated batch: gives it the next offset and the leader epoch (and the
    /// append time, for LogAppendTime topics), and queues it for the next group-commit write.
    /// Not yet readable. The batch's bytes are not copied: the log keeps the stamped first
    /// bytes apart ([`HeldBatch`]), except for LogAppendTime, which changes CRC-covered bytes.
    pub fn append(&self, batch: Bytes, now_ms: i64) -> Result<AppendInfo, StorageError> {
        let mut st = self.inner.state.borrow_mut();
        st.check_writable()?;
        let corrupt = |st: &State, e: crate::record::BatchError| StorageError::Corrupt {
            path: st.dir.clone(),
            position: 0,
            why: format!("appended batch: {e}"),
        };
        let mut header = BatchHeader::parse(&batch).map_err(|e| corrupt(&st, e))?;
        debug_assert!(
            record::validate(&batch).is_ok(),
            "append of an invalid batch"
        );
        let base_offset = st.log_end_offset;
        let epoch = st.leader_epoch.max(0);
        let (held, log_append_time_ms) = match st.config.timestamp_type {
            TimestampType::LogAppendTime => {
                let mut whole = BytesMut::from(&batch[..]);
                record::set_base_offset(&mut whole, base_offset);
                record::set_partition_leader_epoch(&mut whole, epoch);
                record::set_log_append_time(&mut whole, now_ms);
                let whole = whole.freeze();
                header = BatchHeader::parse(&whole).map_err(|e| corrupt(&st, e))?;
                (HeldBatch::whole(whole), now_ms)
            }
            TimestampType::CreateTime => {
                header.base_offset = base_offset;
                header.partition_leader_epoch = epoch;
                (HeldBatch::stamped(&batch, base_offset, epoch), -1)
            }
        };
        if st.should_roll(&header, now_ms) {
            st.roll(now_ms);
        }
        st.push_batch(&header, held, now_ms);
        let replica_end = st.replica_end();
        drop(st);
        self.ensure_writer();
        self.inner.replica_waiters.wake_upto(replica_end);
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
            log_append_time_ms,
        })
    }

    /// Resolves once every offset below `end_offset` is written (and synced if the flush policy
    /// asks for it).
    pub async fn wait_written(&self, end_offset: i64) -> Result<(), StorageError> {
        let inner = &self.inner;
        Wait::new(&inner.written_waiters, end_offset, || {
            let st = inner.state.borrow();
            if st.written_end >= end_offset {
                Some(Ok(()))
            } else if st.failed.is_some() || st.closed || st.no_space.is_some() {
                Some(st.check_writable())
            } else {
                None
            }
        })
        .await
    }

    /// Resolves once the high watermark reaches `end_offset` (acks=all), or fails when the log
    /// fails or closes first.
    ///
    /// Fails with [`StorageError::LeadershipLost`] as soon as this replica no longer leads
    /// `epoch`, the epoch the write was made in: a new leader may cut the write and put other
    /// records at its offsets.
    pub async fn wait_committed(&self, end_offset: i64, epoch: i32) -> Result<(), StorageError> {
        let inner = &self.inner;
        Wait::new(&inner.hw_waiters, end_offset, || {
            let st = inner.state.borrow();
            if st.leader_epoch != epoch {
                Some(Err(StorageError::LeadershipLost {
                    path: st.dir.clone(),
                    epoch,
                }))
            } else if st.high_watermark >= end_offset {
                Some(Ok(()))
            } else if st.failed.is_some() || st.closed || st.no_space.is_some() {
                Some(st.check_writable())
            } else {
                None
            }
        })
        .await
    }

    /// Resolves when what a follower may read moves above `offset` or the log is closed (the
    /// long poll of a follower's fetch).
    pub async fn wait_for_replica_data(&self, offset: i64) {
        let inner = &self.inner;
        Wait::new(&inner.replica_waiters, offset.saturating_add(1), || {
            let st = inner.state.borrow();
            (st.replica_end() > offset || st.closed || st.failed.is_some()).then_some(())
        })
        .await
    }

    /// Resolves when the high watermark moves above `offset` or the log is closed.
    pub async fn wait_for_data(&self, offset: i64) {
        let inner = &self.inner;
        Wait::new(&inner.hw_waiters, offset.saturating_add(1), || {
            let st = inner.state.borrow();
            (st.high_watermark > offset || st.closed || st.failed.is_some()).then_some(())
        })
        .await
    }

    /// The partition's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.inner.state.borrow().high_watermark
    }

    /// Offset after the last batch whose write completed here.
    pub fn written_end(&self) -> i64 {
        self.inner.state.borrow().written_end
    }

    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().log_end_offset
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Logical bytes of all segments (appended, written or not).
    pub fn size_bytes(&self) -> u64 {
        let st = self.inner.state.borrow();
        st.segments.values().map(|s| s.size_bytes).sum()
    }

    /// Bytes of recent batches held in memory for tail reads.
    pub fn cached_bytes(&self) -> usize {
        self.inner.state.borrow().cache.held_bytes()
    }

    /// Futures currently parked on the high watermark (tests check dropped ones leave).
    #[cfg(test)]
    pub fn waiter_count(&self) -> usize {
        self.inner.hw_waiters.len()
    }

    /// Direct writes issued so far (one per group commit); for tests and metrics.
    pub fn write_count(&self) -> u64 {
        self.inner.state.borrow().writes
    }

    /// fdatasyncs issued by the flush policy so far; for tests and metrics.
    pub fn sync_count(&self) -> u64 {
        self.inner.state.borrow().syncs
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (the first batch is
    /// returned whole even when larger, if `min_one`), never past the high watermark.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        let end = self.inner.state.borrow().high_watermark;
        self.read_below(offset, end, max_bytes, min_one).await
    }

    /// Hands every whole batch from the log start to the written end, in order, to `each`:
    /// how a coordinator rebuilds its state from an internal topic's partition. Stops at the
    /// first batch whose header does not parse; an error is one reading the log.
    pub async fn replay_to_end(
        &self,
        mut each: impl FnMut(BatchHeader, Bytes),
    ) -> Result<(), StorageError> {
        let mut offset = self.log_start_offset();
        while offset < self.written_end() {
            let read = self.read_for_replica(offset, 1 << 20, true).await?;
            if read.batches.is_empty() {
                return Ok(());
            }
            for batch in read.batches {
                let Ok(h) = BatchHeader::parse(&batch) else {
                    return Ok(());
                };
                offset = h.next_offset();
                each(h, batch);
            }
        }
        Ok(())
    }

    /// As [`read`](Self::read), but what a follower fetches: up to the log end while the tail
    /// cache still holds what is not yet written here (the follower copies it while the local
    /// write runs; the high watermark never passes the local written end), else the written end.
    pub async fn read_for_replica(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        let end = self.inner.state.borrow().replica_end();
        self.read_below(offset, end, max_bytes, min_one).await
    }

    /// What a fetch returns from `offset` (the first batch whole even when larger than
    /// `max_bytes`): batches from the tail cache, or a range of a segment file the page cache
    /// holds (sent with sendfile), else batches read into memory. For [`ReadUpTo::Stable`], also
    /// the aborted transactions the batches overlap.
    pub async fn read_for_fetch(
        &self,
        offset: i64,
        max_bytes: usize,
        up_to: ReadUpTo,
    ) -> Result<(ReadResult, Vec<super::AbortedTxn>), StorageError> {
        let end = {
            let st = self.inner.state.borrow();
            match up_to {
                ReadUpTo::HighWatermark => st.high_watermark,
                ReadUpTo::Stable => st.last_stable_offset(),
                ReadUpTo::Replica => st.replica_end(),
            }
        };
        let read = self
            .read_below_as(offset, end, max_bytes, true, true)
            .await?;
        if up_to != ReadUpTo::Stable {
            return Ok((read, Vec::new()));
        }
        let Some(upper) = read.next_offsets(end).last().copied() else {
            return Ok((read, Vec::new()));
        };
        let aborted = self.inner.state.borrow().aborted_between(offset, upper);
        Ok((read, aborted))
    }

    async fn read_below(
        &self,
        offset: i64,
        end: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        self.read_below_as(offset, end, max_bytes, min_one, false)
            .await
    }

    /// Reads below `end`; `zero_copy` lets batches past the cache come as a file range.
    async fn read_below_as(
        &self,
        offset: i64,
        end: i64,
        max_bytes: usize,
        min_one: bool,
        zero_copy: bool,
    ) -> Result<ReadResult, StorageError> {
        let limit = ReadLimit {
            high_watermark: end,
            max_bytes,
            min_one,
        };
        let mut after_base = None;
        // Waits so far for the page cache to bring in what a zero-copy read needs.
        let mut waits = 0u32;
        loop {
            let from_disk = {
                let st = self.inner.state.borrow();
                // Out of range means past the log end, as in Kafka: between the high watermark
                // and the log end (a new leader whose HW has not caught up yet) there is
                // nothing to read yet, which is not an error the client should reset on.
                st.check_readable(offset, st.log_end_offset.max(end))?;
                if offset >= end {
                    return Ok(ReadResult::default());
                }
                let mut out = ReadResult::default();
                let cached = st.cache.visit_from(offset, |b| {
                    b.base_offset < limit.high_watermark
                        && if zero_copy {
                            limit.admit_held(&mut out, &b.batch, b.last_offset + 1)
                        } else {
                            limit.admit(&mut out, &b.batch.contiguous())
                        }
                });
                if cached {
                    out.from_cache = out.bytes > 0;
                    return Ok(out);
                }
                if zero_copy {
                    match sendable::from_page_cache(&st, offset, after_base, &limit) {
                        PageRead::Got(out) => return Ok(out),
                        PageRead::Gap(base) => {
                            after_base = Some(base);
                            continue;
                        }
                        PageRead::Wait if waits < sendable::MAX_WAITS => None,
                        PageRead::Wait | PageRead::Fallback => {
                            Some(st.disk_read_start(offset, after_base))
                        }
                    }
                } else {
                    Some(st.disk_read_start(offset, after_base))
                }
            };
            let Some(from_disk) = from_disk else {
                // The pages are on their way in: each byte is read from the disk once, into
                // the page cache, rather than once there and once more into memory.
                waits += 1;
                glommio::timer::sleep(sendable::WAIT).await;
                continue;
            };
            let Some((base_offset, walker)) = from_disk else {
                return Ok(ReadResult::default());
            };
            match read_segment(walker, offset, &limit).await? {
                Some(out) => return Ok(out),
                // The offset lies past this segment's batches (a gap): try the next one.
                None => after_base = Some(base_offset),
            }
        }
    }

    /// The first offset whose timestamp is >= `timestamp_ms`, with that timestamp.
    ///
    /// Records are not decoded, so this is the base offset and max timestamp of the first
    /// batch (in offset order) whose max timestamp is >= `timestamp_ms`; Kafka would return the
    /// offset of the first record inside that batch that reaches it.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let mut after_base = None;
        loop {
            let (base_offset, mut walker, high_watermark) = {
                let st = self.inner.state.borrow();
                st.check_open()?;
                match st.time_search_start(timestamp_ms, after_base) {
                    Some((base, walker)) => (base, walker, st.high_watermark),
                    None => return Ok(None),
                }
            };
            loop {
                match walker.next().await? {
                    Ok((_, h, _)) if h.base_offset >= high_watermark => return Ok(None),
                    Ok((_, h, _)) if h.max_timestamp >= timestamp_ms => {
                        return Ok(Some((h.base_offset, h.max_timestamp)))
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            after_base = Some(base_offset);
        }
    }

    /// The largest batch timestamp below the high watermark (ListOffsets MAX_TIMESTAMP), by
    /// segment: sealed segments keep it in their time index, the active one as it appends.
    pub fn max_timestamp(&self) -> Option<i64> {
        let st = self.inner.state.borrow();
        st.segments
            .values()
            .filter(|s| s.written_bytes > 0 && s.base_offset < st.high_watermark)
            .map(|s| s.max_timestamp())
            .filter(|ts| *ts >= 0)
            .max()
    }

    /// Deletes closed segments past retention.ms / retention.bytes; returns how many went.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let (count, all) = {
            let st = self.inner.state.borrow();
            st.check_writable()?;
            let count = st.retention_count(now_ms);
            (count, count == st.segments.len())
        };
        if count == 0 {
            return Ok(0);
        }
        let seq = {
            let mut st = self.inner.state.borrow_mut();
            if all {
                // Kafka rolls first so the log keeps its end offset in a fresh, empty segment.
                st.roll(now_ms);
            }
            st.next_job_seq - 1
        };
        self.ensure_writer();
        self.wait_job(seq).await?;
        let doomed = self.inner.state.borrow_mut().remove_retained(now_ms);
        self.inner.state.borrow_mut().log_start_moved();
        let delay_ms = self.inner.state.borrow().config().file_delete_delay_ms;
        for seg in &doomed {
            remove_segment_files(seg, delay_ms)?;
        }
        Ok(doomed.len())
    }

    /// Kafka's DeleteRecords: the log start offset moves up to `offset` (records below it are
    /// no longer readable and whole segments below it are deleted); returns the new log start.
    /// Past the high watermark is out of range; at or below the current start changes nothing.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let (start, doomed, delay_ms) = {
            let mut st = self.inner.state.borrow_mut();
            st.check_writable()?;
            if offset > st.high_watermark || offset < 0 {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: st.log_start_offset,
                    log_end: st.high_watermark,
                });
            }
            if offset <= st.log_start_offset {
                return Ok(st.log_start_offset);
            }
            // Durable: a crash must not bring deleted records back.
            super::segment::write_offset_file(&self.inner.dir, LOG_START_CHECKPOINT, offset, true)?;
            st.log_start_offset = offset;
            let mut doomed = Vec::new();
            while st.segments.len() > 1 {
                let Some((_, first)) = st.segments.first_key_value() else {
                    break;
                };
                if !first.sealed || first.next_offset > offset {
                    break;
                }
                if let Some((_, seg)) = st.segments.pop_first() {
                    doomed.push(seg);
                }
            }
            st.log_start_moved();
            st.check_invariants();
            (offset, doomed, st.config().file_delete_delay_ms)
        };
        for seg in &doomed {
            remove_segment_files(seg, delay_ms)?;
        }
        Ok(start)
    }

    /// A follower takes the leader's log start offset (as far as its own high watermark).
    pub async fn follow_log_start(&self, leader_start: i64) -> Result<(), StorageError> {
        let target = leader_start.min(self.high_watermark());
        if target > self.log_start_offset() {
            self.delete_records_before(target).await?;
        }
        Ok(())
    }

    /// Applies changed topic settings (segment size, retention, ...) from now on.
    pub fn update_config(&self, config: LogConfig) {
        let mut st = self.inner.state.borrow_mut();
        let interval = config.index_interval_bytes;
        if let Some(active) = st.segments.values_mut().next_back() {
            active.set_index_interval(interval);
        }
        st.config = config;
    }

    /// Writes everything pending, syncs, trims the direct-I/O padding and writes the indexes.
    pub async fn close(&self) -> Result<(), StorageError> {
        let seq = {
            let mut st = self.inner.state.borrow_mut();
            if st.closed {
                return Ok(());
            }
            st.closing = true;
            st.next_job_seq - 1
        };
        let drained = self.wait_job(seq).await;
        let result = match drained {
            Ok(()) => self.seal_active().await,
            Err(e) => Err(e),
        }
        .and_then(|()| self.checkpoint_high_watermark())
        .and_then(|()| self.snapshot_producers_at_end());
        self.inner.state.borrow_mut().closed = true;
        self.inner.wake_everyone();
        result
    }

    /// Syncs written data that flush.ms says is too old to leave unsynced. The writer checks
    /// the age only when it writes; this covers a log that has gone idle. Called from a timer.
    pub async fn sync_if_due(&self, now_ms: i64) -> Result<(), StorageError> {
        let (file, seq) = {
            let st = self.inner.state.borrow();
            let due = match (st.config.flush_ms, st.unsynced_since_ms) {
                (Some(ms), Some(since)) => now_ms - since >= ms as i64,
                _ => false,
            };
            if !due || st.writer_running || st.closing || st.closed || st.failed.is_some() {
                return Ok(());
            }
            let (base, _) = st.active();
            (st.segment_file(*base), st.done_job_seq)
        };
        writer::timed_fdatasync(&file, &self.inner).await?;
        let mut st = self.inner.state.borrow_mut();
        // Only what was written before the sync is covered by it.
        if st.done_job_seq == seq && !st.writer_running {
            st.unsynced_messages = 0;
            st.unsynced_since_ms = None;
            st.syncs += 1;
        }
        Ok(())
    }

    /// Closes the log and removes its directory.
    pub async fn delete(&self) -> Result<(), StorageError> {
        let closed = self.close().await;
        if let Err(e) = &closed {
            tracing::warn!(dir = %self.inner.dir.display(), error = %e, "deleting a failed log");
        }
        // std::fs: deleting a partition is rare and not on any hot path.
        std::fs::remove_dir_all(&self.inner.dir).map_err(|e| io_error(&self.inner.dir, e))
    }

    /// Starts the writer task unless it runs. Call without a borrow of the state: the new task
    /// may run before `spawn_local` returns.
    fn ensure_writer(&self) {
        {
            let mut st = self.inner.state.borrow_mut();
            if st.writer_running || st.pending.is_empty() {
                return;
            }
            st.writer_running = true;
        }
        // The default queue (request handling's), also when a background task (a timer, a
        // replication fetcher) made the append: the writer acknowledges produce requests.
        let default_queue = glommio::TaskQueueHandle::default();
        match glommio::spawn_local_into(writer::run(self.inner.clone()), default_queue) {
            Ok(task) => task.detach(),
            Err(_) => glommio::spawn_local(writer::run(self.inner.clone())).detach(),
        };
    }

    async fn wait_job(&self, seq: u64) -> Result<(), StorageError> {
        let inner = &self.inner;
        Wait::new(&inner.job_waiters, seq as i64, || {
            let st = inner.state.borrow();
            if st.done_job_seq >= seq {
                Some(Ok(()))
            } else if st.failed.is_some() {
                Some(st.check_writable())
            } else {
                None
            }
        })
        .await
    }

    async fn seal_active(&self) -> Result<(), StorageError> {
        let (base, file) = {
            let st = self.inner.state.borrow();
            assert!(
                st.pending.is_empty() && !st.writer_running,
                "close with writes in flight: {} jobs pending",
                st.pending.len()
            );
            let (base, seg) = st.active();
            (*base, seg.file.clone())
        };
        match file {
            Some(file) => writer::seal(&self.inner, base, &file).await,
            None => Ok(()),
        }
    }
}

/// How much one read may return.
struct ReadLimit {
    high_watermark: i64,
    max_bytes: usize,
    min_one: bool,
}

impl ReadLimit {
    /// Adds `batch` if it fits; false when the read is full.
    fn admit(&self, out: &mut ReadResult, batch: &Bytes) -> bool {
        let fits = out.bytes + batch.len() <= self.max_bytes;
        if fits || (out.batches.is_empty() && self.min_one) {
            out.bytes += batch.len();
            out.batches.push(batch.clone());
        }
        fits
    }

    /// As [`admit`](Self::admit), for a batch sent as the log holds it.
    fn admit_held(&self, out: &mut ReadResult, batch: &HeldBatch, next_offset: i64) -> bool {
        let fits = out.bytes + batch.len() <= self.max_bytes;
        if fits || (out.held.is_empty() && self.min_one) {
            out.bytes += batch.len();
            out.held.push((batch.clone(), next_offset));
        }
        fits
    }
}

/// Reads from one segment; None when no batch of it reaches `offset`.
async fn read_segment(
    mut walker: super::segment::BatchWalker,
    offset: i64,
    limit: &ReadLimit,
) -> Result<Option<ReadResult>, StorageError> {
    let mut out = ReadResult::default();
    let mut found = false;
    loop {
        match walker.next().await? {
            Ok((_, h, _)) if h.last_offset() < offset => {}
            Ok((_, h, _)) if h.base_offset >= limit.high_watermark => break,
            Ok((_, _, bytes)) => {
                found = true;
                if !limit.admit(&mut out, &bytes) {
                    break;
                }
            }
            Err(super::segment::WalkEnd::Clean) => break,
            Err(end) => {
                return Err(StorageError::Corrupt {
                    path: walker.path().to_path_buf(),
                    position: walker.position(),
                    why: format!("below the high watermark: {end:?}"),
                })
            }
        }
    }
    Ok(found.then_some(out))
}

/// The log start offset DeleteRecords set, when it lies inside the first segment.
pub const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// Takes a segment's files out of the log at once (renamed to `*.deleted`, which nothing reads)
/// and unlinks them after `delay_ms`, so a reader that opened them just before still finishes.
fn remove_segment_files(seg: &Segment, delay_ms: i64) -> Result<(), StorageError> {
    // std::fs: retention runs in the background a few times an hour, not per request.
    let mut renamed = Vec::new();
    for ext in ["log", "index", "timeindex", super::txn_index::EXTENSION] {
        let path = seg.path(ext);
        let mut gone = path.clone().into_os_string();
        gone.push(DELETED_SUFFIX);
        let gone = PathBuf::from(gone);
        match std::fs::rename(&path, &gone) {
            Ok(()) => renamed.push(gone),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    let unlink = move |files: Vec<PathBuf>| {
        for f in files {
            if let Err(e) = std::fs::remove_file(&f) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(file = %f.display(), error = %e, "cannot remove deleted segment");
                }
            }
        }
    };
    if delay_ms <= 0 {
        unlink(renamed);
    } else {
        let delay = std::time::Duration::from_millis(delay_ms as u64);
        glommio::spawn_local(async move {
            glommio::timer::sleep(delay).await;
            unlink(renamed);
        })
        .detach();
    }
    Ok(())
}

impl State {
    /// The state of a log just opened (or reopened after a truncation) from what recovery found.
    fn recovered(
        dir: PathBuf,
        config: LogConfig,
        recovered: recovery::Recovered,
        cache: BatchCache,
        now_ms: i64,
    ) -> Result<State, StorageError> {
        let segments = recovered.segments;
        let log_end_offset = segments.values().next_back().map_or(0, |s| s.next_offset);
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_start_offset = super::segment::read_offset_file(&dir, LOG_START_CHECKPOINT)
            .unwrap_or(first_base)
            .clamp(first_base, log_end_offset.max(first_base));
        let epochs = super::epochs::LeaderEpochCache::load(&dir, log_end_offset)?;
        let state = State {
            dir,
            config,
            segments,
            log_start_offset,
            high_watermark: log_end_offset,
            written_end: log_end_offset,
            log_end_offset,
            hw_managed: false,
            hw_target: log_end_offset,
            leader_epoch: -1,
            epochs,
            cache,
            pending: VecDeque::new(),
            next_job_seq: 1,
            done_job_seq: 0,
            writer_running: false,
            tail: Some(recovered.tail),
            failed: None,
            no_space: None,
            closing: false,
            closed: false,
            unsynced_messages: 0,
            unsynced_since_ms: None,
            last_append_ms: now_ms,
            writes: 0,
            syncs: 0,
            producers: recovered.producers,
        };
        state.check_invariants();
        Ok(state)
    }
}

impl Inner {
    /// Called by the writer when a job is on disk (and synced, if `synced`).
    pub fn complete_job(&self, job: &Job, synced: bool) {
        let (hw, written) = {
            let mut st = self.state.borrow_mut();
            st.job_done(job, synced);
            (st.high_watermark, st.written_end)
        };
        self.written_waiters.wake_upto(written);
        self.replica_waiters.wake_upto(written);
        self.hw_waiters.wake_upto(hw);
        self.job_waiters.wake_upto(job.seq as i64);
    }

    /// The writer could not write a job for want of space: it keeps the job and retries;
    /// meanwhile appends are refused and waiters past the written end fail. Logged once.
    pub fn out_of_space(&self, error: &StorageError) {
        let first = {
            let mut st = self.state.borrow_mut();
            let first = st.no_space.is_none();
            st.no_space.get_or_insert_with(|| error.to_string());
            first
        };
        if first {
            tracing::error!(
                dir = %self.dir.display(),
                %error,
                "no space left for this partition's log: produce gets KAFKA_STORAGE_ERROR, \
                 reads go on, and writes resume by themselves once space is freed"
            );
            crate::metrics::count(|c| c.log_out_of_space += 1);
            self.wake_everyone();
        }
    }

    /// A write succeeded: if the device was full, writes are accepted again.
    pub fn space_returned(&self) {
        let was = self.state.borrow_mut().no_space.take();
        if was.is_some() {
            tracing::info!(dir = %self.dir.display(), "space is available again: writes resume");
        }
    }

    /// Every waiter of every kind re-checks (the log closed, failed or was truncated).
    pub fn wake_everyone(&self) {
        self.hw_waiters.wake_all();
        self.written_waiters.wake_all();
        self.replica_waiters.wake_all();
        self.job_waiters.wake_all();
    }

    /// A write failed: every waiter fails, and so does every later append and read (the
    /// partition is offline here until the broker restarts and recovers the log).
    pub fn fail(&self, error: StorageError) {
        tracing::error!(
            dir = %self.dir.display(),
            %error,
            "partition log write failed: the partition is offline on this broker until it \
             restarts (recovery keeps every whole batch on disk)"
        );
        crate::metrics::count(|c| c.log_failures += 1);
        {
            let mut st = self.state.borrow_mut();
            let (kind, msg) = match &error {
                StorageError::Io { source, .. } => (source.kind(), error.to_string()),
                other => (io::ErrorKind::Other, other.to_string()),
            };
            st.failed = Some((kind, msg));
            st.pending.clear();
            st.writer_running = false;
        }
        self.wake_everyone();
    }
}

#[path = "state.rs"]
mod state;

#[path = "writer.rs"]
mod writer;

#[path = "cleaner.rs"]
mod cleaner;
pub use cleaner::{CleanStats, Cleanable, CleanerSettings};

#[path = "replica.rs"]
mod replica;

#[path = "producers.rs"]
mod producers;

#[path = "sendable.rs"]
mod sendable;
use sendable::PageRead;
