//! Partition logs on disk, laid out exactly as Kafka lays them out.
//!
//! `<log.dirs>/<topic>-<partition>/<20-digit base offset>.log|.index|.timeindex`. A
//! [`PartitionLog`] lives on the shard that owns its partition and is touched by nothing else;
//! it is `!Send` and shared between that shard's tasks through `Rc`.
//!
//! Invariants: offsets strictly increase across batches; `log_start_offset <= high_watermark <=
//! log_end_offset`; the high watermark only covers bytes whose write has completed, so a fetch
//! never returns data that a crash could take back.

mod cache;
mod chunk;
#[cfg(test)]
mod cleaner_tests;
pub(crate) mod compact;
pub mod data_dir;
pub mod epochs;
mod index;
mod log;
#[cfg(test)]
mod producer_tests;
mod recovery;
mod retention;
mod segment;
#[cfg(test)]
mod sendable_tests;
mod snapshots;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod torn_tests;
pub mod txn_index;
mod wait;

pub use cache::CacheSpace;
pub use chunk::{Chunk, FileRange, HeldBatch, STAMP_BYTES};
pub use compact::{all_keyed, RecordError};
pub use data_dir::{DataDir, DataDirError, LOCK_FILE};
pub use log::{
    AppendInfo, CleanStats, Cleanable, CleanerSettings, PartitionLog, ReadResult, ReadUpTo,
};
pub use txn_index::AbortedTxn;

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("offset {requested} is outside the log [{log_start}, {log_end})")]
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("corrupt data in {path} at position {position}: {why}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        why: String,
    },
    #[error("partition log {0} is closed")]
    Closed(PathBuf),
    /// This replica stopped leading the epoch a write was waiting in: the write may be cut by
    /// the new leader, so whoever waits for it to commit is not told it did.
    #[error("partition log {path} no longer leads epoch {epoch}")]
    LeadershipLost { path: PathBuf, epoch: i32 },
    /// Producer state refused a batch or marker (a fenced epoch, a stale coordinator).
    #[error("{0}")]
    Producer(#[from] crate::producer::ProducerError),
}

impl StorageError {
    /// Whether this says the device is full (ENOSPC, EDQUOT, or a write that came back short,
    /// which a filling device does): the write can be tried again once space is freed.
    pub fn is_no_space(&self) -> bool {
        let StorageError::Io { source, .. } = self else {
            return false;
        };
        matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            || matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::WriteZero
            )
    }
}

/// An I/O error on `path`, as the storage layer reports it.
pub fn io_error(path: &std::path::Path, source: impl Into<std::io::Error>) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// Writes `bytes` as the whole file at `path` and syncs it.
pub fn write_synced(path: &std::path::Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| io_error(path, e))?;
    f.write_all(bytes).map_err(|e| io_error(path, e))?;
    f.sync_all().map_err(|e| io_error(path, e))
}
