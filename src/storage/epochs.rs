//! The leader epoch cache of one partition: which leader epoch started at which offset, as
//! Kafka's `LeaderEpochFileCache` keeps it in `<partition dir>/leader-epoch-checkpoint`.
//!
//! It answers OffsetForLeaderEpoch ("where did epoch E end here?"), which is how a replica
//! that was leader finds the divergent tail it must cut when it becomes a follower.
//!
//! Invariants: epochs strictly increase and so do their start offsets. The file is written
//! whole (temp file, rename) when an entry is added or removed: rare, at leader changes.

use std::path::Path;

use super::io_error;
use super::StorageError;

/// Kafka's file name and format version.
pub const FILE_NAME: &str = "leader-epoch-checkpoint";
const VERSION: i32 = 0;

/// What Kafka answers when it knows no epoch.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Reads the checkpoint of the log in `dir`, dropping epochs that start at or past the
    /// recovered log end (their first batch never made it to disk).
    pub fn load(dir: &Path, log_end: i64) -> Result<Self, StorageError> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io_error(&path, e)),
        };
        let mut cache = match parse(&text) {
            Some(entries) => LeaderEpochCache { entries },
            None => {
                tracing::warn!(file = %path.display(), "ignoring malformed leader-epoch-checkpoint");
                Self::default()
            }
        };
        cache.truncate_from_end(log_end);
        Ok(cache)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than every known epoch;
    /// true when the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        match self.entries.last() {
            Some(&(last, _)) if epoch <= last => false,
            _ => {
                // A newer epoch cannot start before an older one's start.
                self.entries.retain(|&(_, o)| o < start_offset);
                self.entries.push((epoch, start_offset));
                true
            }
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    /// Forgets epochs that start at or after `end_offset` (the log was truncated there); true
    /// when the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, o)| o < end_offset);
        self.entries.len() != before
    }

    /// Kafka's `endOffsetFor`: the largest epoch <= `requested` and the offset where it ended
    /// (the start of the next epoch, or `log_end` for the latest one).
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        let Some(&(latest, _)) = self.entries.last() else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if requested == latest {
            return (latest, log_end);
        }
        let Some(&(_, higher_start)) = self.entries.iter().find(|&&(e, _)| e > requested) else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        match self.entries.iter().rev().find(|&&(e, _)| e <= requested) {
            Some(&(floor, _)) => (floor, higher_start),
            // Older than anything kept: the data is gone; replicate from the next epoch's start.
            None => (requested, higher_start),
        }
    }

    pub fn persist(&self, dir: &Path) -> Result<(), StorageError> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            text.push_str(&format!("{e} {o}\n"));
        }
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))
    }
}

fn parse(text: &str) -> Option<Vec<(i32, i64)>> {
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<i32>().ok()? != VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let mut parts = lines.next()?.split_whitespace();
        let epoch: i32 = parts.next()?.parse().ok()?;
        let offset: i64 = parts.next()?.parse().ok()?;
        if let Some(&(e, o)) = entries.last() {
            if epoch <= e || offset < o {
                return None;
            }
        }
        entries.push((epoch, offset));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache {
            entries: entries.to_vec(),
        }
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let c = cache(&[(1, 0), (3, 100), (5, 250)]);
        let table = [
            (5, (5, 400)),
            (4, (3, 250)),
            (3, (3, 250)),
            (2, (1, 100)),
            (1, (1, 100)),
            (0, (0, 0)),
            (6, (UNDEFINED_EPOCH, UNDEFINED_OFFSET)),
            (UNDEFINED_EPOCH, (UNDEFINED_EPOCH, UNDEFINED_OFFSET)),
        ];
        for (requested, want) in table {
            assert_eq!(c.end_offset_for(requested, 400), want, "epoch {requested}");
        }
        assert_eq!(
            cache(&[]).end_offset_for(3, 10),
            (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        );
    }

    #[test]
    fn assign_only_moves_forward_and_truncation_forgets() {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 10), "same epoch again");
        assert!(c.assign(2, 10));
        assert!(!c.assign(1, 20), "an older epoch");
        assert!(c.assign(4, 30));
        assert!(c.truncate_from_end(10));
        assert_eq!(c, cache(&[(0, 0)]));
        assert!(!c.truncate_from_end(10));
        // A newer epoch starting where an abandoned one started replaces it.
        let mut c = cache(&[(1, 0), (2, 50)]);
        assert!(c.assign(3, 50));
        assert_eq!(c, cache(&[(1, 0), (3, 50)]));
    }

    #[test]
    fn the_file_round_trips_and_stale_or_bad_files_are_handled() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(&[(0, 0), (2, 40), (7, 90)]);
        c.persist(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, "0\n3\n0 0\n2 40\n7 90\n");
        assert_eq!(LeaderEpochCache::load(dir.path(), 100).unwrap(), c);
        // The log lost its tail in a crash: epoch 7's first batch is gone.
        let loaded = LeaderEpochCache::load(dir.path(), 90).unwrap();
        assert_eq!(loaded, cache(&[(0, 0), (2, 40)]));
        std::fs::write(dir.path().join(FILE_NAME), "0\n2\n5 10\n3 20\n").unwrap();
        assert_eq!(
            LeaderEpochCache::load(dir.path(), 100).unwrap(),
            LeaderEpochCache::default()
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            LeaderEpochCache::load(empty.path(), 0).unwrap(),
            LeaderEpochCache::default()
        );
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;

    /// A checkpoint file's text: parsing never panics, and what parses is increasing and
    /// reads back the same once written again.
    fn check(b: &[u8]) {
        let text = String::from_utf8_lossy(b);
        if let Some(entries) = parse(&text) {
            for pair in entries.windows(2) {
                assert!(pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1);
            }
            let mut again = format!("{VERSION}\n{}\n", entries.len());
            for (e, o) in &entries {
                again.push_str(&format!("{e} {o}\n"));
            }
            assert_eq!(parse(&again), Some(entries));
        }
    }

    #[test]
    fn fuzz_leader_epoch_checkpoint() {
        let corpus = vec![
            b"0\n0\n".to_vec(),
            b"0\n1\n0 0\n".to_vec(),
            b"0\n3\n0 0\n2 100\n7 2147483648\n".to_vec(),
        ];
        crate::fuzz::run("leader_epoch_checkpoint", 100_000, &corpus, check);
    }
}
