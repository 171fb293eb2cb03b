//! The bookkeeping half of the partition log: synchronous state transitions on [`State`]
//! (append, roll, job completion, read and retention planning). No I/O and no `.await` here;
//! `log.rs` and `writer.rs` do the I/O around these steps.

use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::DmaFile;

use super::{Job, State};
use crate::record::BatchHeader;
use crate::storage::cache::CachedBatch;
use crate::storage::retention::{deletable_count, SegmentSummary};
use crate::storage::segment::{BatchWalker, Segment};
use crate::storage::{HeldBatch, StorageError};

impl State {
    pub(in crate::storage) fn check_invariants(&self) {
        assert!(
            self.log_start_offset <= self.high_watermark
                && self.high_watermark <= self.written_end
                && self.written_end <= self.log_end_offset,
            "{}: log start {} <= high watermark {} <= written end {} <= log end {} broken",
            self.dir.display(),
            self.log_start_offset,
            self.high_watermark,
            self.written_end,
            self.log_end_offset
        );
    }

    pub(in crate::storage) fn config(&self) -> &crate::config::LogConfig {
        &self.config
    }

    /// Appends and writes need a log that is open and has not failed.
    pub(in crate::storage) fn check_writable(&self) -> Result<(), StorageError> {
        if let Some((kind, msg)) = &self.failed {
            return Err(StorageError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(*kind, msg.clone()),
            });
        }
        if let Some(msg) = &self.no_space {
            return Err(StorageError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::StorageFull, msg.clone()),
            });
        }
        if self.closing || self.closed {
            return Err(StorageError::Closed(self.dir.clone()));
        }
        Ok(())
    }

    pub(in crate::storage) fn check_open(&self) -> Result<(), StorageError> {
        match self.closed {
            true => Err(StorageError::Closed(self.dir.clone())),
            false => Ok(()),
        }
    }

    /// A read at `offset` that may go up to `end` (the high watermark or the written end).
    /// What a follower may read: everything appended when the cache still reaches back to the
    /// written end (the unwritten tail is served from memory), else the written end.
    pub(in crate::storage) fn replica_end(&self) -> i64 {
        match self.cache.first_offset() {
            Some(first) if first <= self.written_end => self.log_end_offset,
            _ => self.written_end,
        }
    }

    pub(in crate::storage) fn check_readable(
        &self,
        offset: i64,
        end: i64,
    ) -> Result<(), StorageError> {
        self.check_open()?;
        // A failed log is offline: what it would serve may be what the device got wrong.
        if let Some((kind, msg)) = &self.failed {
            return Err(StorageError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(*kind, msg.clone()),
            });
        }
        if offset < self.log_start_offset || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end: end,
            });
        }
        Ok(())
    }

    pub(in crate::storage) fn active(&self) -> (&i64, &Segment) {
        match self.segments.iter().next_back() {
            Some(last) => last,
            None => unreachable!("log {} has no segments", self.dir.display()),
        }
    }

    fn active_mut(&mut self) -> &mut Segment {
        match self.segments.values_mut().next_back() {
            Some(last) => last,
            None => unreachable!("log {} has no segments", self.dir.display()),
        }
    }

    fn segment(&self, base_offset: i64) -> &Segment {
        match self.segments.get(&base_offset) {
            Some(seg) => seg,
            None => unreachable!("log {} has no segment {base_offset}", self.dir.display()),
        }
    }

    fn segment_mut(&mut self, base_offset: i64) -> &mut Segment {
        match self.segments.get_mut(&base_offset) {
            Some(seg) => seg,
            None => unreachable!("log {} has no segment {base_offset}", self.dir.display()),
        }
    }

    /// Kafka's roll rule: the batch would overflow the segment, the segment is too old, or its
    /// offsets no longer fit the indexes' 32-bit relative offsets. Empty segments never roll.
    pub(in crate::storage) fn should_roll(&self, header: &BatchHeader, now_ms: i64) -> bool {
        let (_, seg) = self.active();
        if seg.size_bytes == 0 {
            return false;
        }
        let max_bytes = self.config.segment_bytes.min(i32::MAX as u64);
        seg.size_bytes + header.total_bytes() as u64 > max_bytes
            || now_ms - seg.created_ms > self.config.segment_ms - seg.roll_jitter_ms
            || seg.indexes_full(self.config.segment_index_bytes)
            || header.last_offset() - seg.base_offset > u32::MAX as i64
    }

    /// Starts a new active segment at the log end; the writer seals the old one after its last
    /// queued bytes and creates the new file.
    pub(in crate::storage) fn roll(&mut self, now_ms: i64) {
        let leo = self.log_end_offset;
        let base = *self.active().0;
        match self.pending.back_mut() {
            Some(job) if job.segment_base == base && !job.roll => {
                assert_eq!(job.end_offset, leo, "last job does not end at the log end");
                job.roll = true;
            }
            _ => {
                let mut job = self.new_job(base, now_ms);
                job.roll = true;
                self.pending.push_back(job);
            }
        }
        self.snapshot_producers(leo);
        let interval = self.config.index_interval_bytes;
        let mut seg = Segment::new(&self.dir, leo, interval, now_ms);
        seg.roll_jitter_ms = roll_jitter_ms(&self.dir, leo, &self.config);
        assert!(
            self.segments.insert(leo, seg).is_none(),
            "roll onto segment {leo} twice"
        );
    }

    fn new_job(&mut self, segment_base: i64, now_ms: i64) -> Job {
        let seq = self.next_job_seq;
        self.next_job_seq += 1;
        Job {
            seq,
            segment_base,
            data: Default::default(),
            end_offset: self.log_end_offset,
            messages: 0,
            roll: false,
            first_append_ms: now_ms,
        }
    }

    /// Queues an appended batch (offsets already assigned) for the writer and the cache.
    pub(in crate::storage) fn push_batch(
        &mut self,
        header: &BatchHeader,
        batch: HeldBatch,
        now_ms: i64,
    ) {
        assert!(
            header.base_offset >= self.log_end_offset && header.total_bytes() == batch.len(),
            "append at {} of {} bytes, log end {}",
            header.base_offset,
            batch.len(),
            self.log_end_offset
        );
        if header.producer_id >= 0 {
            self.note_producer_batch(header, &batch);
        }
        let active = self.active_mut();
        active.note_batch(header);
        let base = active.base_offset;
        let reuse = matches!(self.pending.back(), Some(j) if j.segment_base == base && !j.roll);
        if !reuse {
            let job = self.new_job(base, now_ms);
            self.pending.push_back(job);
        }
        if let Some(job) = self.pending.back_mut() {
            job.data.push(batch.head.clone());
            job.data.push(batch.rest.clone());
            job.end_offset = header.next_offset();
            job.messages += header.record_count.max(0) as u64;
        }
        self.cache.push(CachedBatch {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            batch,
        });
        self.log_end_offset = header.next_offset();
        self.last_append_ms = now_ms;
        if header.partition_leader_epoch >= 0 {
            self.note_epoch(header.partition_leader_epoch, header.base_offset);
        }
    }

    /// A batch of a newer leader epoch starts that epoch (Kafka's LeaderEpochFileCache.assign).
    fn note_epoch(&mut self, epoch: i32, start_offset: i64) {
        if self.epochs.assign(epoch, start_offset) {
            if let Err(e) = self.epochs.persist(&self.dir) {
                // The cache is rebuilt from batch headers when its file is missing or stale.
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write leader-epoch-checkpoint");
            }
        }
    }

    /// Counts the job's messages as unsynced; true when the flush policy wants a sync now.
    pub(in crate::storage) fn sync_due(&mut self, job: &Job) -> bool {
        self.unsynced_messages += job.messages;
        let since = *self.unsynced_since_ms.get_or_insert(job.first_append_ms);
        let by_count = self
            .config
            .flush_messages
            .is_some_and(|n| self.unsynced_messages >= n);
        let by_age = self
            .config
            .flush_ms
            .is_some_and(|ms| self.last_append_ms - since >= ms as i64);
        by_count || by_age
    }

    pub(in crate::storage) fn job_done(&mut self, job: &Job, synced: bool) {
        self.segment_mut(job.segment_base).written_bytes += job.data.len() as u64;
        assert!(
            job.end_offset >= self.written_end && job.seq == self.done_job_seq + 1,
            "job {} to {} completes after job {} at written end {}",
            job.seq,
            job.end_offset,
            self.done_job_seq,
            self.written_end
        );
        self.written_end = job.end_offset;
        if !self.hw_managed {
            self.high_watermark = self.written_end;
        } else {
            // What the replicas already have, now written here too.
            self.high_watermark = self
                .high_watermark
                .max(self.hw_target.min(self.written_end));
        }
        self.done_job_seq = job.seq;
        if synced {
            self.unsynced_messages = 0;
            self.unsynced_since_ms = None;
            self.syncs += u64::from(!job.roll);
        }
        self.check_invariants();
    }

    pub(in crate::storage) fn segment_file(&self, base_offset: i64) -> Rc<DmaFile> {
        match &self.segment(base_offset).file {
            Some(file) => file.clone(),
            None => unreachable!("segment {base_offset} written before its file exists"),
        }
    }

    pub(in crate::storage) fn segment_size(&self, base_offset: i64) -> u64 {
        self.segment(base_offset).size_bytes
    }

    pub(in crate::storage) fn segment_path(&self, base_offset: i64) -> PathBuf {
        self.segment(base_offset).path("log")
    }

    pub(in crate::storage) fn set_segment_file(&mut self, base_offset: i64, file: Rc<DmaFile>) {
        self.segment_mut(base_offset).file = Some(file);
    }

    /// Adds the final time index entry and persists both indexes (std::fs, at roll/close only).
    pub(in crate::storage) fn seal_indexes(
        &mut self,
        base_offset: i64,
    ) -> Result<(), StorageError> {
        let seg = self.segment_mut(base_offset);
        seg.seal_time_index();
        seg.sealed = true;
        let persisted = seg.persist_indexes();
        if persisted.is_err() {
            // A half-written index must not be taken for a whole one at the next start.
            for ext in ["index", "timeindex"] {
                let _ = std::fs::remove_file(seg.path(ext));
            }
        }
        persisted
    }

    /// Where a disk read for `offset` starts: the segment holding it (or the one after
    /// `after_base`), at the indexed position at or before it.
    pub(in crate::storage) fn disk_read_start(
        &self,
        offset: i64,
        after_base: Option<i64>,
    ) -> Option<(i64, BatchWalker)> {
        let (seg, position) = self.read_position(offset, after_base)?;
        let walker = seg.walker(position, seg.written_bytes)?;
        Some((seg.base_offset, walker))
    }

    /// Where a read at `offset` starts: the segment holding it at the position its index gives,
    /// or, after a gap in the segment at `after_base`, the start of the next segment.
    pub(in crate::storage) fn read_position(
        &self,
        offset: i64,
        after_base: Option<i64>,
    ) -> Option<(&Segment, u64)> {
        match after_base {
            None => {
                let (_, seg) = self.segments.range(..=offset).next_back()?;
                Some((seg, seg.offset_index.lookup(offset).1 as u64))
            }
            Some(base) => Some((self.segments.range(base + 1..).next()?.1, 0)),
        }
    }

    /// Where a timestamp search starts: the first segment (after `after_base`) that reaches
    /// `timestamp_ms`, at the position its time index says no earlier batch can match.
    pub(in crate::storage) fn time_search_start(
        &self,
        timestamp_ms: i64,
        after_base: Option<i64>,
    ) -> Option<(i64, BatchWalker)> {
        let from = after_base.map_or(i64::MIN, |b| b.saturating_add(1));
        let (_, seg) = self
            .segments
            .range(from..)
            .find(|(_, s)| s.max_timestamp() >= timestamp_ms && s.written_bytes > 0)?;
        let start = seg
            .time_index
            .lookup_before(timestamp_ms)
            .unwrap_or(seg.base_offset);
        let position = seg.offset_index.lookup(start).1;
        let walker = seg.walker(position as u64, seg.written_bytes)?;
        Some((seg.base_offset, walker))
    }

    /// How many segments retention would delete now (the active one included).
    /// Only a topic whose `cleanup.policy` includes `delete` has retention (Kafka's rule): a
    /// compacted topic such as `__consumer_offsets` keeps its records however old.
    pub(in crate::storage) fn retention_count(&self, now_ms: i64) -> usize {
        if !self.config.deletes() {
            return 0;
        }
        let summaries: Vec<SegmentSummary> = self
            .segments
            .values()
            .map(|s| SegmentSummary {
                size_bytes: s.size_bytes,
                largest_timestamp_ms: largest_timestamp(s, now_ms),
            })
            .collect();
        deletable_count(
            &summaries,
            now_ms,
            self.config.retention_ms,
            self.config.retention_bytes,
        )
    }

    /// Takes the sealed segments retention deletes out of the log and moves the log start.
    pub(in crate::storage) fn remove_retained(&mut self, now_ms: i64) -> Vec<Segment> {
        let sealed = self.segments.values().take_while(|s| s.sealed).count();
        let count = self
            .retention_count(now_ms)
            .min(sealed)
            .min(self.segments.len() - 1);
        let mut doomed = Vec::with_capacity(count);
        for _ in 0..count {
            if let Some((_, seg)) = self.segments.pop_first() {
                doomed.push(seg);
            }
        }
        if let Some((&first, _)) = self.segments.iter().next() {
            self.log_start_offset = self.log_start_offset.max(first);
        }
        self.check_invariants();
        doomed
    }
}

/// A segment's largest batch timestamp, or its file's mtime when it has none (Kafka's rule).
fn largest_timestamp(seg: &Segment, now_ms: i64) -> i64 {
    let ts = seg.max_timestamp();
    if ts >= 0 {
        return ts;
    }
    // std::fs: one stat per timestamp-less segment per retention pass.
    std::fs::metadata(seg.path("log"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(now_ms, |d| d.as_millis() as i64)
}

/// Kafka's per-segment jitter: a value in [0, min(segment.jitter.ms, segment.ms)), spread by a
/// hash of the log and segment rather than a random source, so a run is reproducible.
fn roll_jitter_ms(
    dir: &std::path::Path,
    base_offset: i64,
    config: &crate::config::LogConfig,
) -> i64 {
    use std::hash::{Hash, Hasher};
    let bound = config.segment_jitter_ms.min(config.segment_ms);
    if bound <= 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dir, base_offset).hash(&mut h);
    (h.finish() % bound as u64) as i64
}
