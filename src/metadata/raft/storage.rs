//! The on-disk [`raft::Storage`] of one node of the metadata quorum: its raft log, hard state,
//! conf state and latest snapshot.
//!
//! Files in the storage directory (written by `disk.rs`, records `[u32 len][u32 crc32c][bytes]`):
//! - `raft.log`: one record per `Entry` (protobuf), indexes contiguous. Appends are fdatasynced
//!   before they return; replacing a conflicting suffix cuts the file at the first replaced
//!   record, then appends. Compaction rewrites it whole, atomically.
//! - `raftstate`: two records, the `HardState` then the `ConfState` (raft-rs's `RaftState`).
//! - `snapshot`: one record, the latest `Snapshot`, state-machine data included. Absent until the
//!   first snapshot; until then the snapshot is the empty one at index 0, term 0.
//!
//! `raftstate` and `snapshot` are replaced whole (temp file, fsync, rename, fsync the directory);
//! a `*.tmp` file is the leftover of such a write that did not finish, and is ignored.
//!
//! Invariant, in memory and on disk once `open` returns: the log holds exactly the entries after
//! the snapshot index, so `first_index() == snapshot index + 1`, and the term at the snapshot
//! index stays known (it is the snapshot's) after the entries up to it are gone. Every entry of
//! the log is also kept in memory: metadata entries are small and few, and compaction bounds them.
//!
//! Semantics follow raft-rs's `MemStorage` (`Compacted` below the first index, `Unavailable` past
//! the last, a panic for `entries` past the last + 1 as the trait documents), except `snapshot`,
//! which returns the stored snapshot (with data) where `MemStorage` makes up an empty one at the
//! commit index; a request for a newer one gets `SnapshotTemporarilyUnavailable` until the state
//! machine calls [`DiskStorage::compact_to_snapshot`]. Misuse that `MemStorage` panics on
//! (appending below the first index or with a gap, an out-of-date snapshot) is an `InvalidInput`
//! error here.
//!
//! Crash safety: a torn or corrupt tail of `raft.log` is cut on open (nothing after a bad record
//! is trusted). Operations touching several files write `snapshot` first, and open repairs what a
//! crash left behind it: log entries up to the snapshot are dropped (all of them if the log
//! disagrees with the snapshot's term), and a `raftstate` older than the snapshot is moved to it.
//! After an I/O error memory and files may disagree: drop the storage and open it again (raft
//! stops using a storage that fails anyway).

use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

pub use super::disk::DiskStorageError;
use super::disk::{self, LogFile};

pub struct DiskStorage {
    dir: PathBuf,
    log: LogFile,
    /// The entries after the snapshot; `entries[i]` is `log.offsets[i]`'s record.
    entries: Vec<Entry>,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
}

/// Drops the log entries that a crash left behind a newer snapshot; true if it dropped any.
fn drop_covered(entries: &mut Vec<Entry>, snap_index: u64, snap_term: u64) -> bool {
    let Some(first) = entries.first().map(|e| e.index) else {
        return false;
    };
    if first == snap_index + 1 {
        return false;
    }
    // Entries after the snapshot index can stay only if the log agrees with the snapshot there.
    let keep_from = match snap_index.checked_sub(first).map(|pos| pos as usize) {
        Some(pos) if entries.get(pos).is_some_and(|e| e.term == snap_term) => pos + 1,
        _ => entries.len(),
    };
    entries.drain(..keep_from);
    true
}

impl DiskStorage {
    /// Opens the storage in `dir` (created if missing). A new storage starts with ConfState
    /// voters = `voters` and nothing else; an existing one recovers from its files (a torn or
    /// corrupt tail of the entry log is cut, like a crash mid-write).
    pub fn open(dir: &Path, voters: &[u64]) -> std::io::Result<DiskStorage> {
        std::fs::create_dir_all(dir).map_err(|e| disk::io_err(dir, e))?;
        let (hard_state, conf_state) = match disk::load_state(dir)? {
            Some(state) => state,
            None => Self::init_state(dir, voters)?,
        };
        let snapshot = disk::load_snapshot(dir)?;
        let (log, entries) = LogFile::open(dir)?;
        let mut storage = DiskStorage {
            dir: dir.to_path_buf(),
            log,
            entries,
            hard_state,
            conf_state,
            snapshot,
        };
        storage.repair()?;
        Ok(storage)
    }

    /// Writes the state of a new storage. Refused if other files exist: then `raftstate` was lost.
    fn init_state(dir: &Path, voters: &[u64]) -> std::io::Result<(HardState, ConfState)> {
        for name in [disk::LOG_FILE, disk::SNAPSHOT_FILE] {
            if std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0) {
                let what = format!("{name} exists but {} does not", disk::STATE_FILE);
                return Err(DiskStorageError::Corrupt(dir.to_path_buf(), what).into());
            }
        }
        let hs = HardState::default();
        let cs = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        disk::write_state(dir, &hs, &cs)?;
        Ok((hs, cs))
    }

    /// Restores the invariant after a crash in the middle of a multi-file operation.
    fn repair(&mut self) -> std::io::Result<()> {
        let meta = self.snapshot.get_metadata().clone();
        if drop_covered(&mut self.entries, meta.index, meta.term) {
            self.log.rewrite(&self.entries)?;
        }
        if self.hard_state.commit < meta.index {
            // `raftstate` predates the snapshot: finish what `apply_snapshot` started.
            let mut hs = self.hard_state.clone();
            hs.term = hs.term.max(meta.term);
            hs.commit = meta.index;
            disk::write_state(&self.dir, &hs, meta.get_conf_state())?;
            self.hard_state = hs;
            self.conf_state = meta.get_conf_state().clone();
        }
        Ok(())
    }

    fn snap_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first(&self) -> u64 {
        self.snap_index() + 1
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snap_index(), |e| e.index)
    }

    fn check_append(&self, entries: &[Entry]) -> Result<(), DiskStorageError> {
        if let Some(w) = entries.windows(2).find(|w| w[0].index + 1 != w[1].index) {
            return Err(DiskStorageError::AppendNotContiguous(w[1].index));
        }
        let (first, first_index, last) = (entries[0].index, self.first(), self.last());
        if first < first_index {
            return Err(DiskStorageError::AppendCompacted { first, first_index });
        }
        if first > last + 1 {
            return Err(DiskStorageError::AppendGap { first, last });
        }
        Ok(())
    }

    /// Appends entries durably (fdatasync before returning). If entries[0].index <= last_index,
    /// the conflicting suffix is replaced (raft's overwrite rule); entries must be contiguous
    /// with what stays.
    pub fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.check_append(entries)?;
        let keep = (entries[0].index - self.first()) as usize;
        self.log.append(keep, entries)?;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Persists the hard state durably (write to a temp file, fsync, rename, fsync the dir).
    pub fn set_hard_state(&mut self, hs: &HardState) -> std::io::Result<()> {
        disk::write_state(&self.dir, hs, &self.conf_state)?;
        self.hard_state = hs.clone();
        Ok(())
    }

    /// Only the commit index changes (raft's LightReady commit); durable too.
    pub fn set_commit(&mut self, commit: u64) -> std::io::Result<()> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Persists the conf state the state machine has applied, durably.
    pub fn set_conf_state(&mut self, cs: ConfState) -> std::io::Result<()> {
        disk::write_state(&self.dir, &self.hard_state, &cs)?;
        self.conf_state = cs;
        Ok(())
    }

    /// A snapshot received from the leader (Ready::snapshot): replaces log, state and snapshot,
    /// durably.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> std::io::Result<()> {
        let meta = snap.get_metadata();
        if meta.index < self.first() {
            let (index, current) = (meta.index, self.snap_index());
            return Err(DiskStorageError::SnapshotOutOfDate { index, current }.into());
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        let cs = meta.get_conf_state().clone();
        // The snapshot goes first: `repair` finishes the rest if a crash cuts this short.
        disk::write_snapshot(&self.dir, &snap)?;
        self.snapshot = snap;
        self.entries.clear();
        self.log.rewrite(&[])?;
        disk::write_state(&self.dir, &hs, &cs)?;
        self.hard_state = hs;
        self.conf_state = cs;
        Ok(())
    }

    /// Local compaction: the state machine at `applied_index` serialized as `data` becomes the
    /// snapshot (durably), and entries <= applied_index are dropped from the log (the log file
    /// is rewritten atomically). Errors if applied_index is above the commit index or below the
    /// current snapshot. The snapshot's conf state is the current one: the state machine must
    /// have applied (and stored with `set_conf_state`) every conf change up to `applied_index`.
    pub fn compact_to_snapshot(
        &mut self,
        applied_index: u64,
        data: Vec<u8>,
    ) -> std::io::Result<()> {
        let (applied, commit) = (applied_index, self.hard_state.commit);
        if applied < self.snap_index() {
            let snapshot = self.snap_index();
            return Err(DiskStorageError::CompactBelowSnapshot { applied, snapshot }.into());
        }
        let uncommitted = DiskStorageError::CompactUncommitted { applied, commit };
        if applied > commit {
            return Err(uncommitted.into());
        }
        let term = raft::Storage::term(self, applied).map_err(|_| uncommitted)?;
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        let covered = (applied + 1 - self.first()) as usize;
        // The snapshot goes first: `repair` drops the covered entries if a crash cuts this short.
        disk::write_snapshot(&self.dir, &snap)?;
        self.snapshot = snap;
        self.entries.drain(..covered);
        self.log.rewrite(&self.entries)
    }

    /// The latest snapshot (for the state machine at start-up: apply its data, then replay
    /// entries after it).
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        // The trait's contract, as MemStorage enforces it: raft never asks past its own log.
        assert!(
            low <= high && high <= self.last() + 1,
            "entries [{low}, {high}) out of bound (last: {})",
            self.last()
        );
        let (lo, hi) = (
            (low - self.first()) as usize,
            (high - self.first()) as usize,
        );
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Index 0 is no snapshot at all (raft refuses to send one); a newer one than stored
        // waits for the state machine's next `compact_to_snapshot`.
        let index = self.snap_index();
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::disk::{LOG_FILE, STATE_FILE};
    use super::*;
    use protobuf::Message;
    use raft::{Config, RawNode, StateRole, Storage};
    use std::fs;
    use std::io::ErrorKind;
    use tempfile::tempdir;

    /// Entries from `(index, term)` pairs.
    fn es(pairs: &[(u64, u64)]) -> Vec<Entry> {
        let e = |&(index, term)| Entry {
            index,
            term,
            ..Default::default()
        };
        pairs.iter().map(e).collect()
    }

    fn ents3() -> Vec<Entry> {
        es(&[(3, 3), (4, 4), (5, 5)])
    }

    fn snap(index: u64, term: u64, voters: &[u64]) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = voters.to_vec();
        s
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    fn err<T>(e: StorageError) -> raft::Result<T> {
        Err(raft::Error::Store(e))
    }

    fn get(s: &DiskStorage, lo: u64, hi: u64, max: u64) -> raft::Result<Vec<Entry>> {
        s.entries(lo, hi, max, GetEntriesContext::empty(false))
    }

    fn all(s: &DiskStorage) -> Vec<Entry> {
        get(s, s.first(), s.last() + 1, u64::MAX).unwrap()
    }

    /// MemStorage's tests set `entries = ents` from index 3 with no snapshot, a state only a
    /// field write makes; a snapshot at (2, 2) puts this log in the same place.
    fn with_log(dir: &Path, ents: &[Entry]) -> DiskStorage {
        let mut s = DiskStorage::open(dir, &[]).unwrap();
        s.apply_snapshot(snap(2, 2, &[1, 2, 3])).unwrap();
        s.append(ents).unwrap();
        s
    }

    type View = (HardState, ConfState, Snapshot, u64, Vec<Entry>);

    fn view(s: &DiskStorage) -> View {
        let rs = s.initial_state().unwrap();
        let snap = s.snapshot_ref().clone();
        (rs.hard_state, rs.conf_state, snap, s.first(), all(s))
    }

    /// Drops and reopens `s`, checking that nothing visible changed (the voters are ignored).
    fn reopen(s: DiskStorage, dir: &Path) -> DiskStorage {
        let before = view(&s);
        drop(s);
        let s = DiskStorage::open(dir, &[9]).unwrap();
        assert_eq!(view(&s), before);
        s
    }

    #[test]
    fn term() {
        let dir = tempdir().unwrap();
        let s = with_log(dir.path(), &ents3());
        assert_eq!(s.term(1), err(StorageError::Compacted));
        for idx in 2..=5 {
            assert_eq!(s.term(idx), Ok(idx)); // 2 is the snapshot's, kept for matching
        }
        assert_eq!(s.term(6), err(StorageError::Unavailable));
        let s = DiskStorage::open(&dir.path().join("new"), &[1]).unwrap();
        assert_eq!(
            (s.term(0), s.first_index(), s.last_index()),
            (Ok(0), Ok(1), Ok(0))
        );
    }

    #[test]
    fn entries_and_size_limit() {
        let dir = tempdir().unwrap();
        let ents = es(&[(3, 3), (4, 4), (5, 5), (6, 6)]);
        let s = with_log(dir.path(), &ents);
        let size = |i: usize| u64::from(ents[i].compute_size());
        let (two, three) = (size(1) + size(2), size(1) + size(2) + size(3));
        let cases = [
            (3, 4, u64::MAX, 0..1),
            (4, 5, u64::MAX, 1..2),
            (4, 6, u64::MAX, 1..3),
            (4, 7, u64::MAX, 1..4),
            (4, 7, 0, 1..2), // the first entry even past the limit
            (4, 7, two, 1..3),
            (4, 7, two + size(3) / 2, 1..3),
            (4, 7, three - 1, 1..3),
            (4, 7, three, 1..4),
        ];
        for (lo, hi, max, want) in cases {
            assert_eq!(
                get(&s, lo, hi, max),
                Ok(ents[want].to_vec()),
                "[{lo}, {hi}) {max}"
            );
        }
        assert_eq!(get(&s, 2, 6, u64::MAX), err(StorageError::Compacted));
    }

    #[test]
    #[should_panic(expected = "out of bound")]
    fn entries_past_last_panics_like_mem_storage() {
        let dir = tempdir().unwrap();
        let _ = get(&with_log(dir.path(), &ents3()), 4, 7, u64::MAX);
    }

    #[test]
    fn first_and_last_index() {
        let dir = tempdir().unwrap();
        let mut s = with_log(dir.path(), &ents3());
        assert_eq!((s.first_index(), s.last_index()), (Ok(3), Ok(5)));
        s.append(&es(&[(6, 5)])).unwrap();
        assert_eq!(s.last_index(), Ok(6));
        s.set_commit(6).unwrap();
        s.compact_to_snapshot(3, Vec::new()).unwrap(); // MemStorage's compact(4)
        assert_eq!(s.first_index(), Ok(4));
    }

    #[test]
    fn compact_to_snapshot_then_reopen() {
        // MemStorage's compact(i) keeps the entries from i: compact_to_snapshot(i - 1) here.
        for (applied, len) in [(2, 3), (3, 2), (4, 1), (5, 0)] {
            let dir = tempdir().unwrap();
            let mut s = with_log(dir.path(), &ents3());
            s.set_commit(5).unwrap();
            s.compact_to_snapshot(applied, b"state".to_vec()).unwrap();
            let s = reopen(s, dir.path());
            assert_eq!(s.first_index(), Ok(applied + 1));
            assert_eq!(s.term(applied), Ok(applied)); // terms equal indexes in ents3
            assert_eq!(s.term(applied - 1), err(StorageError::Compacted));
            assert_eq!(get(&s, applied, 6, u64::MAX), err(StorageError::Compacted));
            assert_eq!(all(&s).len(), len);
            assert_eq!(&s.snapshot(0, 2).unwrap().data[..], b"state");
        }
        let dir = tempdir().unwrap();
        let mut s = with_log(dir.path(), &ents3());
        s.set_commit(4).unwrap();
        for applied in [1, 5] {
            let e = s.compact_to_snapshot(applied, Vec::new()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        }
    }

    #[test]
    fn snapshot_request() {
        let dir = tempdir().unwrap();
        let unavailable = err(StorageError::SnapshotTemporarilyUnavailable);
        let fresh = DiskStorage::open(&dir.path().join("new"), &[1]).unwrap();
        assert_eq!(fresh.snapshot(0, 2), unavailable);
        let mut s = with_log(dir.path(), &ents3());
        s.set_commit(5).unwrap();
        s.compact_to_snapshot(4, b"at 4".to_vec()).unwrap();
        let mut want = snap(4, 4, &[1, 2, 3]);
        want.data = b"at 4".to_vec().into();
        assert_eq!(s.snapshot(0, 2), Ok(want.clone()));
        assert_eq!(s.snapshot(4, 2), Ok(want));
        assert_eq!(s.snapshot(5, 2), unavailable);
    }

    #[test]
    fn append_and_overwrite_survive_reopen() {
        let cases: [(&[_], Option<&[_]>); 8] = [
            (&[(3, 3), (4, 4), (5, 5)], Some(&[(3, 3), (4, 4), (5, 5)])),
            (&[(3, 3), (4, 6), (5, 6)], Some(&[(3, 3), (4, 6), (5, 6)])),
            (
                &[(3, 3), (4, 4), (5, 5), (6, 5)],
                Some(&[(3, 3), (4, 4), (5, 5), (6, 5)]),
            ),
            (&[(2, 3), (3, 3), (4, 5)], None), // compacted
            (&[(4, 5)], Some(&[(3, 3), (4, 5)])),
            (&[(6, 6)], Some(&[(3, 3), (4, 4), (5, 5), (6, 6)])),
            (&[(7, 6)], None),         // a gap after the last index
            (&[(6, 6), (8, 6)], None), // a gap inside the batch
        ];
        for (i, (ents, want)) in cases.into_iter().enumerate() {
            let dir = tempdir().unwrap();
            let mut s = with_log(dir.path(), &ents3());
            let res = s.append(&es(ents));
            let s = reopen(s, dir.path());
            if let Some(want) = want {
                res.unwrap();
                assert_eq!(all(&s), es(want), "#{i}");
            } else {
                assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput, "#{i}");
                assert_eq!(all(&s), ents3(), "#{i}");
            }
        }
    }

    #[test]
    fn apply_snapshot_then_reopen() {
        let dir = tempdir().unwrap();
        let mut s = with_log(dir.path(), &ents3());
        s.set_hard_state(&hs(5, 1, 4)).unwrap();
        let mut leaders = snap(7, 6, &[1, 2]);
        leaders.data = b"leader's state".to_vec().into();
        s.apply_snapshot(leaders.clone()).unwrap();
        let mut s = reopen(s, dir.path());
        assert_eq!((s.first_index(), s.last_index()), (Ok(8), Ok(7)));
        assert_eq!(
            (s.term(7), s.term(6)),
            (Ok(6), err(StorageError::Compacted))
        );
        assert_eq!(s.hard_state(), &hs(6, 1, 7));
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2]);
        assert_eq!(s.snapshot_ref(), &leaders);
        for old in [snap(7, 6, &[1]), snap(3, 3, &[1])] {
            let e = s.apply_snapshot(old).unwrap_err(); // MemStorage's SnapshotOutOfDate
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
        s.append(&es(&[(8, 6)])).unwrap();
        assert_eq!(all(&reopen(s, dir.path())), es(&[(8, 6)]));
    }

    #[test]
    fn every_kind_of_write_survives_reopen() {
        let dir = tempdir().unwrap();
        let path = dir.path().join("made/by/open");
        let mut s = DiskStorage::open(&path, &[1, 2, 3]).unwrap();
        assert!(s.initial_state().unwrap().initialized());
        s = reopen(s, &path);
        s.append(&es(&[(1, 1), (2, 1), (3, 2)])).unwrap();
        s = reopen(s, &path);
        s.set_hard_state(&hs(2, 1, 1)).unwrap();
        s = reopen(s, &path);
        s.set_commit(3).unwrap();
        s = reopen(s, &path);
        let mut cs = ConfState::default();
        (cs.voters, cs.learners) = (vec![1, 2], vec![3]);
        s.set_conf_state(cs.clone()).unwrap();
        s = reopen(s, &path);
        s.compact_to_snapshot(2, b"two".to_vec()).unwrap();
        s = reopen(s, &path);
        assert_eq!(s.snapshot_ref().get_metadata().get_conf_state(), &cs);
        s.apply_snapshot(snap(9, 3, &[1])).unwrap();
        s = reopen(s, &path);
        assert_eq!((s.first(), s.last(), s.hard_state()), (10, 9, &hs(3, 1, 9)));
    }

    #[test]
    fn torn_or_corrupt_tail_is_cut_and_appending_continues() {
        let dir = tempdir().unwrap();
        let (log, open) = (dir.path().join(LOG_FILE), || {
            DiskStorage::open(dir.path(), &[1])
        });
        let five: Vec<_> = (1..=5).map(|i| (i, 1)).collect();
        open().unwrap().append(&es(&five)).unwrap();
        let good_len = fs::metadata(&log).unwrap().len();
        for garbage in [&b"not a record at all"[..], &[0u8; 4096][..]] {
            let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
            std::io::Write::write_all(&mut f, garbage).unwrap();
            assert_eq!(open().unwrap().last_index(), Ok(5));
            assert_eq!(fs::metadata(&log).unwrap().len(), good_len);
        }
        // The last record cut in half: entry 5 is gone, and index 5 is written again.
        let f = fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(good_len - 3).unwrap();
        let mut s = open().unwrap();
        assert_eq!(s.last_index(), Ok(4));
        s.append(&es(&[(5, 2), (6, 2)])).unwrap();
        let s = reopen(s, dir.path());
        let want = es(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]);
        assert_eq!(all(&s), want);
        // A flipped byte in entry 3's record: nothing from there on is trusted.
        let at = s.log.offsets[2] as usize + 10;
        drop(s);
        let mut bytes = fs::read(&log).unwrap();
        bytes[at] ^= 0xff;
        fs::write(&log, bytes).unwrap();
        assert_eq!(all(&open().unwrap()), want[..2].to_vec());
    }

    #[test]
    fn crash_between_files_is_repaired_on_open() {
        let dir = tempdir().unwrap();
        let (open, read) = (
            || DiskStorage::open(dir.path(), &[1]).unwrap(),
            |name| fs::read(dir.path().join(name)).unwrap(),
        );
        let mut s = open();
        s.append(&es(&(1..=10).map(|i| (i, 1)).collect::<Vec<_>>()))
            .unwrap();
        s.set_commit(10).unwrap();
        // compact_to_snapshot wrote the snapshot, then crashed before rewriting the log.
        let old_log = read(LOG_FILE);
        s.compact_to_snapshot(5, b"five".to_vec()).unwrap();
        drop(s);
        fs::write(dir.path().join(LOG_FILE), &old_log).unwrap();
        let mut s = open();
        assert_eq!((s.first(), s.last(), s.term(5)), (6, 10, Ok(1)));
        // apply_snapshot wrote the snapshot, then crashed before the log and the state.
        let (old_log, old_state) = (read(LOG_FILE), read(STATE_FILE));
        s.apply_snapshot(snap(20, 3, &[1, 2])).unwrap();
        drop(s);
        fs::write(dir.path().join(LOG_FILE), &old_log).unwrap();
        fs::write(dir.path().join(STATE_FILE), &old_state).unwrap();
        let s = open();
        assert_eq!((s.first(), s.last(), s.term(20)), (21, 20, Ok(3)));
        assert_eq!(
            (s.hard_state().commit, &s.conf_state.voters),
            (20, &vec![1, 2])
        );
        // raftstate is replaced whole, never torn: damage to it is an error, not a reset.
        drop(s);
        fs::write(dir.path().join(STATE_FILE), b"damaged").unwrap();
        let e = DiskStorage::open(dir.path(), &[1]).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
    }

    /// The end-to-end test's state machine: the proposals' numbers, in commit order.
    #[derive(Default)]
    struct Numbers {
        applied: u64,
        values: Vec<u64>,
    }

    impl Numbers {
        fn apply(&mut self, ents: &[Entry]) {
            for e in ents {
                self.applied = e.index;
                if !e.data.is_empty() {
                    // A new leader's empty entry has no data.
                    self.values
                        .push(u64::from_le_bytes(e.data[..].try_into().unwrap()));
                }
            }
        }

        fn from_snapshot(snap: &Snapshot) -> Numbers {
            let chunks = snap.data.chunks_exact(8);
            let values = chunks.map(|c| u64::from_le_bytes(c.try_into().unwrap()));
            let applied = snap.get_metadata().index;
            Numbers {
                applied,
                values: values.collect(),
            }
        }
    }

    /// The Ready loop: persist, advance, apply.
    fn drain(node: &mut RawNode<DiskStorage>, sm: &mut Numbers) {
        while node.has_ready() {
            let mut rd = node.ready();
            assert!(rd.snapshot().is_empty() && rd.messages().is_empty());
            sm.apply(&rd.take_committed_entries());
            node.mut_store().append(rd.entries()).unwrap();
            if let Some(hs) = rd.hs() {
                node.mut_store().set_hard_state(hs).unwrap();
            }
            let mut light = node.advance(rd);
            if let Some(commit) = light.commit_index() {
                node.mut_store().set_commit(commit).unwrap();
            }
            sm.apply(&light.take_committed_entries());
            node.advance_apply();
        }
    }

    #[test]
    fn raw_node_recovers_every_committed_entry() {
        let dir = tempdir().unwrap();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let config = |applied| Config {
            id: 1,
            applied,
            ..Default::default()
        };
        let mut sm = Numbers::default();
        let store = DiskStorage::open(dir.path(), &[1]).unwrap();
        let mut node = RawNode::new(&config(0), store, &logger).unwrap();
        node.campaign().unwrap();
        drain(&mut node, &mut sm);
        assert_eq!(node.raft.state, StateRole::Leader);
        for i in 0..100u64 {
            node.propose(Vec::new(), i.to_le_bytes().to_vec()).unwrap();
            drain(&mut node, &mut sm);
            if i == 49 {
                let data = sm.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                node.mut_store()
                    .compact_to_snapshot(sm.applied, data)
                    .unwrap();
            }
        }
        assert_eq!(sm.values, (0..100).collect::<Vec<_>>());
        drop(node);

        // Start-up: the snapshot's data, then the committed entries after it.
        let store = DiskStorage::open(dir.path(), &[1]).unwrap();
        let mut recovered = Numbers::from_snapshot(store.snapshot_ref());
        assert!(recovered.applied > 1 && recovered.values.len() == 50);
        let (low, commit) = (recovered.applied + 1, store.hard_state().commit);
        recovered.apply(&get(&store, low, commit + 1, u64::MAX).unwrap());
        assert_eq!(
            (recovered.applied, &recovered.values),
            (sm.applied, &sm.values)
        );

        // And raft goes on from there: a new term, one more proposal committed.
        let mut node = RawNode::new(&config(recovered.applied), store, &logger).unwrap();
        node.campaign().unwrap();
        drain(&mut node, &mut recovered);
        node.propose(Vec::new(), 100u64.to_le_bytes().to_vec())
            .unwrap();
        drain(&mut node, &mut recovered);
        assert_eq!(recovered.values, (0..=100).collect::<Vec<_>>());
        assert_eq!(node.raft.term, 2);
    }
}
