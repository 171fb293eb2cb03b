//! What replication asks of a partition log: appending a leader's batches as they are,
//! a high watermark set from outside, leader epochs, and truncation of a divergent tail.
//!
//! Truncation is rare (a replica that led becomes a follower and holds batches the new leader
//! never had), so it takes the simple, tested road: wait for the writer to finish, cut the
//! files with std::fs, and reopen the log through recovery.

use std::rc::Rc;

use bytes::Bytes;

use super::super::io_error;
use super::super::recovery;
use super::super::segment::{read_offset_file, write_offset_file, WalkEnd};
use super::{AppendInfo, PartitionLog, State};
use crate::record::BatchHeader;
use crate::storage::StorageError;

/// Name of the per-partition high watermark checkpoint.
pub const HW_CHECKPOINT: &str = "high-watermark";

impl PartitionLog {
    /// From now on the high watermark moves only by [`set_high_watermark`]: the partition is
    /// replicated. It starts at the checkpointed value (at most the written end). `false`
    /// goes back to a high watermark that follows the written end (a replica of one).
    pub fn set_hw_managed(&self, managed: bool) {
        let mut st = self.inner.state.borrow_mut();
        if st.hw_managed == managed {
            return;
        }
        st.hw_managed = managed;
        if managed {
            let checkpoint = read_hw_checkpoint(&st).unwrap_or(st.log_start_offset);
            st.high_watermark = checkpoint.clamp(st.log_start_offset, st.written_end);
        } else {
            st.high_watermark = st.written_end;
        }
        st.hw_target = st.high_watermark;
        let hw = st.high_watermark;
        drop(st);
        self.inner.hw_waiters.wake_upto(hw);
    }

    /// A leader alone in its ISR commits what it writes: the high watermark follows the written
    /// end (`true`); with followers in the ISR it moves only by [`set_high_watermark`] and
    /// starts from where it is (`false`).
    pub fn set_hw_follows_written_end(&self, follows: bool) {
        let hw = {
            let mut st = self.inner.state.borrow_mut();
            st.hw_managed = !follows;
            if follows {
                st.high_watermark = st.written_end;
            }
            st.hw_target = st.hw_target.max(st.high_watermark);
            st.high_watermark
        };
        self.inner.hw_waiters.wake_upto(hw);
    }

    /// Moves the high watermark up to `hw` (never past the written end, never down); returns
    /// the high watermark now. What lies past the written end (the replicas copied a tail this
    /// replica is still writing) is taken when that write completes. Wakes acks=all producers
    /// and consumers waiting below it.
    pub fn set_high_watermark(&self, hw: i64) -> i64 {
        let now = {
            let mut st = self.inner.state.borrow_mut();
            st.hw_target = st.hw_target.max(hw.min(st.log_end_offset));
            let target = hw.min(st.written_end);
            if target > st.high_watermark {
                st.high_watermark = target;
            }
            st.high_watermark
        };
        self.inner.hw_waiters.wake_upto(now);
        now
    }

    /// Writes the high watermark checkpoint (std::fs: from a timer and at close).
    pub fn checkpoint_high_watermark(&self) -> Result<(), StorageError> {
        let st = self.inner.state.borrow();
        if !st.hw_managed || st.closed {
            return Ok(());
        }
        write_offset_file(&st.dir, HW_CHECKPOINT, st.high_watermark, false)
    }

    /// This replica now leads in `epoch`: batches it appends carry it, and the epoch cache
    /// records that it starts at the current log end.
    pub fn become_leader(&self, epoch: i32) -> Result<(), StorageError> {
        let result = {
            let mut st = self.inner.state.borrow_mut();
            st.leader_epoch = epoch;
            st.hw_target = st.high_watermark;
            let end = st.log_end_offset;
            if st.epochs.assign(epoch, end) {
                st.epochs.persist(&st.dir)
            } else {
                Ok(())
            }
        };
        // Writes waiting to commit in an earlier epoch of ours are not going to.
        self.inner.hw_waiters.wake_all();
        result
    }

    /// This replica no longer leads: appends from producers are refused by the caller, and
    /// batches come from the leader with their own epochs. Writes waiting to commit are told
    /// that leadership was lost.
    pub fn become_follower(&self) {
        {
            let mut st = self.inner.state.borrow_mut();
            st.leader_epoch = -1;
            st.hw_target = st.high_watermark;
        }
        self.inner.hw_waiters.wake_all();
    }

    /// The epoch this replica leads in, or -1 when it follows.
    pub fn leader_epoch(&self) -> i32 {
        self.inner.state.borrow().leader_epoch
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.state.borrow().epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` here and where it ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.inner.state.borrow();
        st.epochs.end_offset_for(epoch, st.log_end_offset)
    }

    /// Appends a batch a leader sent, with the offsets and epoch it already carries. It starts
    /// at this log's end, or past it where the leader's log was compacted (offsets skipped by
    /// the cleaner are a gap here too).
    pub fn append_replicated(&self, batch: Bytes, now_ms: i64) -> Result<AppendInfo, StorageError> {
        let mut st = self.inner.state.borrow_mut();
        st.check_writable()?;
        let header = BatchHeader::parse(&batch).map_err(|e| corrupt(&st, e.to_string()))?;
        if header.base_offset < st.log_end_offset {
            return Err(corrupt(
                &st,
                format!(
                    "replicated batch at {} starts below the log end {}",
                    header.base_offset, st.log_end_offset
                ),
            ));
        }
        if st.should_roll(&header, now_ms) {
            st.roll(now_ms);
        }
        st.push_batch(&header, super::HeldBatch::whole(batch), now_ms);
        drop(st);
        self.ensure_writer();
        Ok(AppendInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            log_append_time_ms: -1,
        })
    }

    /// Cuts the log back to `offset` (to the start of the batch holding it): what lies at and
    /// past it is removed from disk, the epoch cache forgets epochs starting there, and the
    /// high watermark does not pass the new end. `now_ms` dates the reopened segments.
    pub async fn truncate_to(
        self: &Rc<Self>,
        offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        if offset >= self.log_end_offset() {
            // No batch to cut, but epochs that start here hold nothing and must go, or the
            // follower keeps naming an epoch the leader never had.
            let mut st = self.inner.state.borrow_mut();
            if st.epochs.truncate_from_end(offset) {
                st.epochs.persist(&st.dir)?;
                tracing::info!(dir = %st.dir.display(), offset, "forgot leader epochs with no batches");
            }
            return Ok(());
        }
        self.rewrite(offset, false, now_ms).await
    }

    /// Empties the log and starts it again at `offset` (a follower that fell behind the
    /// leader's log start: Kafka's truncateFullyAndStartAt).
    pub async fn reset_to(self: &Rc<Self>, offset: i64, now_ms: i64) -> Result<(), StorageError> {
        self.rewrite(offset, true, now_ms).await
    }

    async fn rewrite(
        self: &Rc<Self>,
        offset: i64,
        fully: bool,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let seq = {
            let st = self.inner.state.borrow();
            st.check_writable()?;
            st.next_job_seq - 1
        };
        self.wait_job(seq).await?;
        let files = self.cut_files(offset, fully).await?;
        for f in files {
            // Best effort: an open file is dropped with the old state anyway.
            let _ = f.close_rc().await;
        }
        let (dir, config, hw, managed, leader_epoch, space) = {
            let st = self.inner.state.borrow();
            (
                st.dir.clone(),
                st.config.clone(),
                st.high_watermark,
                st.hw_managed,
                st.leader_epoch,
                st.cache.space(),
            )
        };
        let recovered = recovery::recover(&dir, &config, now_ms).await?;
        let cache = crate::storage::cache::BatchCache::within(space);
        let mut fresh = State::recovered(dir, config, recovered, cache, now_ms)?;
        fresh.hw_managed = managed;
        fresh.leader_epoch = leader_epoch;
        let end = fresh.log_end_offset;
        fresh.high_watermark = hw.min(end).max(fresh.log_start_offset);
        fresh.hw_target = fresh.high_watermark;
        if fresh.epochs.truncate_from_end(end) {
            fresh.epochs.persist(&fresh.dir)?;
        }
        fresh.check_invariants();
        tracing::info!(dir = %fresh.dir.display(), offset = end, "truncated divergent log tail");
        *self.inner.state.borrow_mut() = fresh;
        self.inner.wake_everyone();
        Ok(())
    }

    /// Removes segment files at and past `offset` and shortens the one holding it; returns the
    /// open files of the old state so they can be closed.
    async fn cut_files(
        &self,
        offset: i64,
        fully: bool,
    ) -> Result<Vec<Rc<glommio::io::DmaFile>>, StorageError> {
        let (cut, walker, doomed, files) = {
            let st = self.inner.state.borrow();
            let files: Vec<_> = st
                .segments
                .values()
                .filter_map(|s| s.file.clone())
                .collect();
            let holding = if fully {
                None
            } else {
                st.segments.range(..=offset).next_back().map(|(b, _)| *b)
            };
            let doomed: Vec<_> = st
                .segments
                .values()
                .filter(|s| holding.is_none_or(|h| s.base_offset > h))
                .map(|s| {
                    let txns = s.path(super::super::txn_index::EXTENSION);
                    (s.path("log"), s.path("index"), s.path("timeindex"), txns)
                })
                .collect();
            let walker = holding.and_then(|h| {
                let seg = &st.segments[&h];
                let from = seg.offset_index.lookup(offset).1 as u64;
                seg.walker(from, seg.written_bytes)
                    .map(|w| (seg.path("log"), seg.path("index"), seg.path("timeindex"), w))
            });
            (holding, walker, doomed, files)
        };
        for (log, index, time, txns) in doomed {
            for p in [log, index, time, txns] {
                remove_if_present(&p)?;
            }
        }
        if cut.is_none() {
            // Everything goes: the log starts again, empty, at `offset`.
            let dir = self.inner.dir.clone();
            let log = dir.join(super::super::segment::file_name(offset, "log"));
            std::fs::File::create(&log).map_err(|e| io_error(&log, e))?;
        }
        if let (Some(_), Some((log, index, time, mut walker))) = (cut, walker) {
            let position = loop {
                match walker.next().await? {
                    Ok((pos, h, _)) if h.last_offset() >= offset => break pos,
                    Ok(_) => {}
                    Err(WalkEnd::Clean | WalkEnd::Torn | WalkEnd::Corrupt(_)) => {
                        break walker.position()
                    }
                }
            };
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&log)
                .map_err(|e| io_error(&log, e))?;
            f.set_len(position).map_err(|e| io_error(&log, e))?;
            f.sync_all().map_err(|e| io_error(&log, e))?;
            // Rebuilt by recovery from the shortened log.
            remove_if_present(&index)?;
            remove_if_present(&time)?;
        }
        Ok(files)
    }
}

fn remove_if_present(path: &std::path::Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

fn corrupt(st: &State, why: String) -> StorageError {
    StorageError::Corrupt {
        path: st.dir.clone(),
        position: 0,
        why,
    }
}

fn read_hw_checkpoint(st: &State) -> Option<i64> {
    read_offset_file(&st.dir, HW_CHECKPOINT)
}
