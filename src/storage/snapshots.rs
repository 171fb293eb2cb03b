//! Producer state snapshot files in a partition directory (`<20-digit offset>.snapshot`, the
//! format in `producer::snapshot`). The snapshot at offset N holds the producer state of every batch
//! below N. One is taken when a segment rolls (at the new segment's base) and at a clean close
//! (at the log end); recovery loads the newest one at or below the recovered log end and
//! replays only the batches after it.
//!
//! Kafka keeps snapshots from the log start on and deletes those a truncation or a log start
//! move leaves outside the log; so do we. Snapshots are written without a sync: a snapshot lost
//! or torn by a crash fails its CRC and recovery falls back to an older one (or the log), and a
//! snapshot past what the crash left of the log is ignored and deleted.
//! std::fs throughout: this runs at roll, close and open, never per batch.

use std::path::{Path, PathBuf};

use super::io_error;
use super::segment::{file_name, parse_file_name};
use super::StorageError;
use crate::producer::snapshot::{self, SUFFIX};
use crate::producer::PartitionProducers;

/// Offsets of the snapshots in `dir`, ascending.
pub fn list(dir: &Path) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<i64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_file_name(&e.file_name().to_string_lossy(), SUFFIX))
        .collect();
    out.sort_unstable();
    out
}

pub fn path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(file_name(offset, SUFFIX))
}

/// Writes the snapshot at `offset` (synced when `sync`: at a clean close).
pub fn write(
    dir: &Path,
    offset: i64,
    producers: &PartitionProducers,
    sync: bool,
) -> Result<(), StorageError> {
    let bytes = snapshot::encode(&producers.snapshot_entries());
    let path = path(dir, offset);
    if sync {
        return super::write_synced(&path, &bytes);
    }
    std::fs::write(&path, bytes).map_err(|e| io_error(&path, e))
}

/// The newest usable snapshot in [`start`, `end`] and its offset. Snapshots past `end` are
/// deleted (the log no longer reaches them); unreadable ones are deleted with a warning and
/// the next older one is tried.
pub fn load_newest(dir: &Path, start: i64, end: i64) -> Option<(i64, PartitionProducers)> {
    let offsets = list(dir);
    for &offset in offsets.iter().filter(|o| **o > end) {
        remove(dir, offset);
    }
    for &offset in offsets.iter().rev().filter(|o| **o <= end && **o >= start) {
        let path = path(dir, offset);
        let decoded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| snapshot::decode(&b).map_err(|e| e.to_string()));
        match decoded {
            Ok(entries) => return Some((offset, PartitionProducers::from_snapshot(&entries))),
            Err(why) => {
                tracing::warn!(snapshot = %path.display(), %why, "ignoring producer snapshot");
                remove(dir, offset);
            }
        }
    }
    None
}

/// Deletes the snapshots below `offset` (the log start moved past them; with none left,
/// recovery replays from the log start).
pub fn remove_below(dir: &Path, offset: i64) {
    for o in list(dir).into_iter().filter(|o| *o < offset) {
        remove(dir, o);
    }
}

fn remove(dir: &Path, offset: i64) {
    let path = path(dir, offset);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(snapshot = %path.display(), error = %e, "cannot remove producer snapshot");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BatchHeader;

    fn state(pid: i64, offset: i64) -> PartitionProducers {
        let mut h = BatchHeader::parse(&crate::record::tests::make_batch(offset, 2, 5)).unwrap();
        h.producer_id = pid;
        h.producer_epoch = 0;
        h.base_sequence = 0;
        let mut s = PartitionProducers::default();
        s.appended(&h, None);
        s
    }

    #[test]
    fn the_newest_snapshot_within_the_log_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, &state(1, 5), false).unwrap();
        write(dir.path(), 20, &state(2, 15), true).unwrap();
        write(dir.path(), 30, &state(3, 25), false).unwrap();
        let (offset, s) = load_newest(dir.path(), 0, 25).unwrap();
        assert_eq!(offset, 20);
        assert_eq!(s.snapshot_entries()[0].producer_id, 2);
        assert_eq!(list(dir.path()), vec![10, 20], "past the end: deleted");
        remove_below(dir.path(), 20);
        assert_eq!(list(dir.path()), vec![20]);
    }

    #[test]
    fn a_corrupt_snapshot_is_skipped_for_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, &state(1, 5), false).unwrap();
        write(dir.path(), 20, &state(2, 15), false).unwrap();
        let p = path(dir.path(), 20);
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n - 1] ^= 1;
        std::fs::write(&p, b).unwrap();
        let (offset, s) = load_newest(dir.path(), 0, 100).unwrap();
        assert_eq!(offset, 10);
        assert_eq!(s.snapshot_entries()[0].producer_id, 1);
        assert_eq!(list(dir.path()), vec![10], "the corrupt one is gone");
        std::fs::write(path(dir.path(), 10), b"junk").unwrap();
        assert!(load_newest(dir.path(), 0, 100).is_none());
    }
}
