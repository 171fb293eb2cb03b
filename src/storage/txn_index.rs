//! The aborted-transaction index: `<base>.txnindex` beside each segment, in Kafka's format
//! (entries of 34 bytes, version i16 0, producer id i64, first offset i64, last offset i64,
//! last stable offset i64), one entry per transaction aborted by a marker in that segment.
//!
//! Each segment keeps its entries in memory too (aborts are rare next to records): a
//! read_committed fetch collects the aborted transactions overlapping what it returns without
//! touching the files. Entries are appended to the file as ABORT markers are appended (not
//! synced: recovery rebuilds the entries of the segments it replays), and the whole file is
//! written and synced when its segment is sealed.

use std::io::Write;
use std::path::Path;

use super::io_error;
use super::StorageError;

pub const EXTENSION: &str = "txnindex";
const ENTRY_BYTES: usize = 34;
const VERSION: i16 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the ABORT marker.
    pub last_offset: i64,
    /// The LSO once the marker was written: no transaction aborted later starts below it.
    pub last_stable_offset: i64,
}

pub fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut b = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for e in entries {
        b.extend_from_slice(&VERSION.to_be_bytes());
        b.extend_from_slice(&e.producer_id.to_be_bytes());
        b.extend_from_slice(&e.first_offset.to_be_bytes());
        b.extend_from_slice(&e.last_offset.to_be_bytes());
        b.extend_from_slice(&e.last_stable_offset.to_be_bytes());
    }
    b
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The entries of an index file; a torn last entry is dropped, an unknown version refused.
pub fn decode(b: &[u8]) -> Result<Vec<AbortedTxn>, String> {
    let mut out = Vec::with_capacity(b.len() / ENTRY_BYTES);
    for e in b.chunks_exact(ENTRY_BYTES) {
        let version = i16::from_be_bytes([e[0], e[1]]);
        if version != VERSION {
            return Err(format!("unknown txnindex entry version {version}"));
        }
        let txn = AbortedTxn {
            producer_id: i64_at(e, 2),
            first_offset: i64_at(e, 10),
            last_offset: i64_at(e, 18),
            last_stable_offset: i64_at(e, 26),
        };
        if out
            .last()
            .is_some_and(|p: &AbortedTxn| p.last_offset >= txn.last_offset)
        {
            return Err(format!("entry at {} out of order", txn.last_offset));
        }
        out.push(txn);
    }
    Ok(out)
}

/// Reads a segment's index; a missing file is an empty index, a bad one is None (rebuilt).
pub fn load(path: &Path) -> Option<Vec<AbortedTxn>> {
    match std::fs::read(path) {
        Ok(b) => match decode(&b) {
            Ok(entries) => Some(entries),
            Err(why) => {
                tracing::warn!(index = %path.display(), %why, "ignoring aborted-transaction index");
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Err(e) => {
            tracing::warn!(index = %path.display(), error = %e, "cannot read aborted-transaction index");
            None
        }
    }
}

/// Appends one entry to the file (std::fs: once per aborted transaction per partition).
pub fn append(path: &Path, entry: &AbortedTxn) -> Result<(), StorageError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    f.write_all(&encode(std::slice::from_ref(entry)))
        .map_err(|e| io_error(path, e))
}

/// Writes the whole index (or removes the file when there is nothing in it), synced.
pub fn persist(path: &Path, entries: &[AbortedTxn]) -> Result<(), StorageError> {
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(path, e)),
        };
    }
    super::write_synced(path, &encode(entries))
}

/// Kafka's `collectAbortedTxns` over one segment's entries: those overlapping
/// [`fetch_offset`, `upper`), and whether no later segment can hold more (an entry whose LSO
/// reaches `upper`).
pub fn collect(
    entries: &[AbortedTxn],
    fetch_offset: i64,
    upper: i64,
    out: &mut Vec<AbortedTxn>,
) -> bool {
    for e in entries {
        if e.last_offset >= fetch_offset && e.first_offset < upper {
            out.push(*e);
        }
        if e.last_stable_offset >= upper {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn an_index_round_trips_in_kafkas_layout() {
        let entries = vec![txn(1, 0, 5, 6), txn(2, 3, 9, 10)];
        let b = encode(&entries);
        assert_eq!(b.len(), 68);
        assert_eq!(&b[0..2], &[0, 0]);
        assert_eq!(&b[2..10], &1i64.to_be_bytes());
        assert_eq!(decode(&b), Ok(entries.clone()));
        // A torn last entry is dropped.
        assert_eq!(decode(&b[..50]), Ok(entries[..1].to_vec()));
        let mut bad = b.clone();
        bad[35] = 1;
        assert!(decode(&bad).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        assert_eq!(load(&path), Some(vec![]));
        append(&path, &entries[0]).unwrap();
        append(&path, &entries[1]).unwrap();
        assert_eq!(load(&path), Some(entries.clone()));
        persist(&path, &entries[..1]).unwrap();
        assert_eq!(load(&path), Some(entries[..1].to_vec()));
        persist(&path, &[]).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn collect_takes_what_overlaps_the_fetch() {
        let entries = [txn(1, 0, 5, 6), txn(2, 3, 9, 10), txn(3, 12, 15, 16)];
        let table = [
            ("all", 0, 100, vec![1, 2, 3], false),
            ("from 6", 6, 100, vec![2, 3], false),
            ("below 3", 0, 3, vec![1], true),
            ("past the first", 10, 12, vec![], true),
            ("the last", 14, 20, vec![3], false),
        ];
        for (name, from, upper, want, complete) in table {
            let mut out = Vec::new();
            let done = collect(&entries, from, upper, &mut out);
            let ids: Vec<i64> = out.iter().map(|t| t.producer_id).collect();
            assert_eq!((ids, done), (want, complete), "{name}");
        }
    }
}
