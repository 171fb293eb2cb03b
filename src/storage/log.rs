//! The partition log: the API the shard uses. (Interface skeleton; bodies being written.)

use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::StorageError;
use crate::config::LogConfig;

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
    pub bytes: usize,
}

/// One partition's log. Lives on its owner shard only.
pub struct PartitionLog {
    _dir: PathBuf,
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
        let _ = (config, cache_bytes, now_ms);
        todo!("open {dir:?}")
    }

    /// Appends one validated batch: writes the next offset into it (and the append time for
    /// LogAppendTime topics), queues it for the next group-commit write. Not yet readable.
    pub fn append(&self, batch: BytesMut, now_ms: i64) -> Result<AppendInfo, StorageError> {
        let _ = (batch, now_ms);
        todo!()
    }

    /// Resolves once every offset below `end_offset` is written (and synced if the flush policy
    /// asks for it).
    pub async fn wait_written(&self, end_offset: i64) -> Result<(), StorageError> {
        let _ = end_offset;
        todo!()
    }

    /// Resolves when the high watermark moves above `offset` or the log is closed.
    pub async fn wait_for_data(&self, offset: i64) {
        let _ = offset;
        todo!()
    }

    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }

    pub fn high_watermark(&self) -> i64 {
        todo!()
    }

    pub fn log_end_offset(&self) -> i64 {
        todo!()
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (the first batch is
    /// returned whole even when larger, if `min_one`), never past the high watermark.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        let _ = (offset, max_bytes, min_one);
        todo!()
    }

    /// The first offset whose timestamp is >= `timestamp_ms`, with that timestamp.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let _ = timestamp_ms;
        todo!()
    }

    /// Deletes closed segments past retention.ms / retention.bytes; returns how many went.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let _ = now_ms;
        todo!()
    }

    /// Applies changed topic settings (segment size, retention, ...) from now on.
    pub fn update_config(&self, config: LogConfig) {
        let _ = config;
        todo!()
    }

    /// Writes everything pending, syncs, trims the direct-I/O padding and writes the indexes.
    pub async fn close(&self) -> Result<(), StorageError> {
        todo!()
    }

    /// Closes the log and removes its directory.
    pub async fn delete(&self) -> Result<(), StorageError> {
        todo!()
    }
}
