//! The files of [`super::storage::DiskStorage`] and how each is written durably; what they mean
//! to raft is `storage.rs`'s business.
//!
//! Every file is a sequence of records `[u32 length][u32 crc32c][payload]`, little-endian. The
//! CRC covers the length bytes too: a run of zeros (what some file systems leave in a file
//! extended by a write that never reached the disk) would otherwise read as an empty record,
//! since the CRC-32C of nothing is zero.

use std::fs::{File, OpenOptions};
use std::io::{Error, ErrorKind, Write};
use std::path::{Path, PathBuf};

use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

pub(crate) const LOG_FILE: &str = "raft.log";
pub(crate) const STATE_FILE: &str = "raftstate";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
const HEADER_LEN: usize = 8;

/// Why a [`super::storage::DiskStorage`] call was refused; carried inside the returned `Error`.
#[derive(Debug, thiserror::Error)]
pub enum DiskStorageError {
    #[error("{0}: corrupt: {1}")]
    Corrupt(PathBuf, String),
    #[error("append at index {first} is below the first index {first_index} (compacted)")]
    AppendCompacted { first: u64, first_index: u64 },
    #[error("append at index {first} leaves a gap after the last index {last}")]
    AppendGap { first: u64, last: u64 },
    #[error("entries to append are not contiguous at index {0}")]
    AppendNotContiguous(u64),
    #[error("snapshot at index {index} is not newer than the current one at {current}")]
    SnapshotOutOfDate { index: u64, current: u64 },
    #[error("cannot compact to {applied}: beyond the commit index {commit} or the log")]
    CompactUncommitted { applied: u64, commit: u64 },
    #[error("cannot compact to {applied}: the snapshot is already at {snapshot}")]
    CompactBelowSnapshot { applied: u64, snapshot: u64 },
}

impl From<DiskStorageError> for Error {
    fn from(e: DiskStorageError) -> Self {
        let kind = match e {
            DiskStorageError::Corrupt(..) => ErrorKind::InvalidData,
            _ => ErrorKind::InvalidInput,
        };
        Error::new(kind, e)
    }
}

/// Adds the file's path to an I/O error, which otherwise does not say which file failed.
pub(crate) fn io_err(path: &Path, e: Error) -> Error {
    Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn corrupt(path: &Path, what: String) -> Error {
    DiskStorageError::Corrupt(path.to_path_buf(), what).into()
}

fn crc(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

fn encode<M: Message>(out: &mut Vec<u8>, msg: &M) -> std::io::Result<()> {
    let payload = msg
        .write_to_bytes()
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "record larger than 4 GiB"))?
        .to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(len, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// The payload of the record at the start of `buf` and the record's framed length, or `None` if
/// `buf` does not start with a whole record whose CRC matches (a torn or corrupt write).
fn decode(buf: &[u8]) -> Option<(&[u8], usize)> {
    let len: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let want = u32::from_le_bytes(buf.get(4..HEADER_LEN)?.try_into().ok()?);
    let end = HEADER_LEN.checked_add(usize::try_from(u32::from_le_bytes(len)).ok()?)?;
    let payload = buf.get(HEADER_LEN..end)?;
    (crc(len, payload) == want).then_some((payload, end))
}

/// Makes `buf` the whole content of `dir/name`: written to a temp file, fsynced, renamed over the
/// old one and the directory fsynced, so a crash leaves the old file or the new one, never a mix.
fn write_atomic(dir: &Path, name: &str, buf: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    file.write_all(buf)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// The payloads of a file written by [`write_atomic`], or `None` if there is no such file. Such
/// a file is never torn, so any damage is real and an `InvalidData` error.
fn read_atomic(path: &Path) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let buf = match std::fs::read(path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut payloads = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let bad = || corrupt(path, format!("bad record at byte {pos}"));
        let (payload, n) = decode(&buf[pos..]).ok_or_else(bad)?;
        payloads.push(payload.to_vec());
        pos += n;
    }
    Ok(Some(payloads))
}

fn parse<M: Message>(path: &Path, bytes: &[u8]) -> std::io::Result<M> {
    M::parse_from_bytes(bytes).map_err(|e| corrupt(path, e.to_string()))
}

/// `raftstate`: the `HardState`, then the `ConfState`; `None` for a new storage.
pub(crate) fn load_state(dir: &Path) -> std::io::Result<Option<(HardState, ConfState)>> {
    let path = dir.join(STATE_FILE);
    match read_atomic(&path)?.as_deref() {
        None => Ok(None),
        Some([hs, cs]) => Ok(Some((parse(&path, hs)?, parse(&path, cs)?))),
        Some(other) => Err(corrupt(&path, format!("{} records, want 2", other.len()))),
    }
}

pub(crate) fn write_state(dir: &Path, hs: &HardState, cs: &ConfState) -> std::io::Result<()> {
    let mut buf = Vec::new();
    encode(&mut buf, hs)?;
    encode(&mut buf, cs)?;
    write_atomic(dir, STATE_FILE, &buf)
}

/// `snapshot`: one `Snapshot`; the empty one (index 0, term 0) until the first is written.
pub(crate) fn load_snapshot(dir: &Path) -> std::io::Result<Snapshot> {
    let path = dir.join(SNAPSHOT_FILE);
    match read_atomic(&path)?.as_deref() {
        None => Ok(Snapshot::default()),
        Some([snap]) => parse(&path, snap),
        Some(other) => Err(corrupt(&path, format!("{} records, want 1", other.len()))),
    }
}

pub(crate) fn write_snapshot(dir: &Path, snap: &Snapshot) -> std::io::Result<()> {
    let mut buf = Vec::new();
    encode(&mut buf, snap)?;
    write_atomic(dir, SNAPSHOT_FILE, &buf)
}

/// `raft.log`, opened for appending: its valid length and where each entry's record starts.
pub(crate) struct LogFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    pub(crate) offsets: Vec<u64>,
}

/// The entries of the valid prefix of a log file's bytes, where each starts, and where the
/// prefix ends: at the first record that is torn, corrupt or not the next index.
fn valid_prefix(buf: &[u8]) -> (Vec<Entry>, Vec<u64>, usize) {
    let (mut entries, mut offsets) = (Vec::<Entry>::new(), Vec::new());
    let mut pos = 0;
    while let Some((payload, n)) = decode(&buf[pos..]) {
        match Entry::parse_from_bytes(payload) {
            Ok(e) if entries.last().is_none_or(|last| last.index + 1 == e.index) => {
                entries.push(e);
                offsets.push(pos as u64);
                pos += n;
            }
            _ => break,
        }
    }
    (entries, offsets, pos)
}

impl LogFile {
    /// Opens (or creates) the log and returns it with its entries. The valid prefix ends at the
    /// first record that is torn, corrupt or not the next index; what follows is cut off.
    pub(crate) fn open(dir: &Path) -> std::io::Result<(LogFile, Vec<Entry>)> {
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path);
        let file = file.map_err(|e| io_err(&path, e))?;
        let buf = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let (entries, offsets, pos) = valid_prefix(&buf);
        if pos < buf.len() {
            file.set_len(pos as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(&path, e))?;
        }
        let len = pos as u64;
        let dir = dir.to_path_buf();
        Ok((
            LogFile {
                dir,
                path,
                file,
                len,
                offsets,
            },
            entries,
        ))
    }

    /// Cuts the log to its first `keep` entries, then appends `entries` and fdatasyncs.
    pub(crate) fn append(&mut self, keep: usize, entries: &[Entry]) -> std::io::Result<()> {
        let start = self.offsets.get(keep).copied().unwrap_or(self.len);
        // Cut at `start` even when nothing is replaced: a failed earlier append may have left
        // whole records past `len`, which must not be read back as part of the log.
        self.file
            .set_len(start)
            .map_err(|e| io_err(&self.path, e))?;
        self.offsets.truncate(keep);
        self.len = start;
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in entries {
            offsets.push(start + buf.len() as u64);
            encode(&mut buf, e)?;
        }
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err(&self.path, e))?;
        self.offsets.extend(offsets);
        self.len = start + buf.len() as u64;
        Ok(())
    }

    /// Makes `entries` the whole log, atomically, and reopens it for appending.
    pub(crate) fn rewrite(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in entries {
            offsets.push(buf.len() as u64);
            encode(&mut buf, e)?;
        }
        write_atomic(&self.dir, LOG_FILE, &buf)?;
        let file = OpenOptions::new().append(true).open(&self.path);
        self.file = file.map_err(|e| io_err(&self.path, e))?;
        self.len = buf.len() as u64;
        self.offsets = offsets;
        Ok(())
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::fuzz;

    /// Log file bytes (and, with the first payload's CRC recomputed, bytes whose damage is
    /// past the checksum): the valid prefix is whole records that encode back to its bytes.
    fn check(b: &[u8]) {
        let mut fixed = b.to_vec();
        if fixed.len() >= HEADER_LEN {
            let len: [u8; 4] = fixed[..4].try_into().unwrap();
            let end = (HEADER_LEN + u32::from_le_bytes(len) as usize).min(fixed.len());
            let c = crc(len, &fixed[HEADER_LEN..end]);
            fixed[4..HEADER_LEN].copy_from_slice(&c.to_le_bytes());
        }
        for input in [b, &fixed[..]] {
            let (entries, offsets, pos) = valid_prefix(input);
            assert_eq!(entries.len(), offsets.len());
            assert!(pos <= input.len());
            for pair in entries.windows(2) {
                assert_eq!(pair[0].index + 1, pair[1].index);
            }
            let mut again = Vec::new();
            for e in &entries {
                encode(&mut again, e).unwrap();
            }
            let (twice, _, end) = valid_prefix(&again);
            assert_eq!(
                twice, entries,
                "the valid prefix re-encodes to the same entries"
            );
            assert_eq!(end, again.len());
            let _ = read_atomic_bytes(input);
        }
    }

    /// What `read_atomic` does with a file's bytes.
    fn read_atomic_bytes(buf: &[u8]) -> Option<Vec<Vec<u8>>> {
        let mut payloads = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let (payload, n) = decode(&buf[pos..])?;
            payloads.push(payload.to_vec());
            pos += n;
        }
        let _ = payloads.first().map(|p| HardState::parse_from_bytes(p));
        let _ = payloads.get(1).map(|p| ConfState::parse_from_bytes(p));
        let _ = payloads.first().map(|p| Snapshot::parse_from_bytes(p));
        Some(payloads)
    }

    #[test]
    fn fuzz_raft_log_file() {
        let mut corpus = Vec::new();
        for n in [1u64, 3] {
            let mut b = Vec::new();
            for i in 0..n {
                let e = Entry {
                    index: 10 + i,
                    term: 2,
                    data: format!("{{\"origin\":1,\"id\":{i},\"records\":[]}}")
                        .into_bytes()
                        .into(),
                    ..Default::default()
                };
                encode(&mut b, &e).unwrap();
            }
            corpus.push(b);
        }
        let hs = HardState {
            term: 3,
            vote: 1,
            commit: 12,
            ..Default::default()
        };
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let mut b = Vec::new();
        encode(&mut b, &hs).unwrap();
        encode(&mut b, &cs).unwrap();
        corpus.push(b);
        fuzz::run("raft_log_file", 100_000, &corpus, check);
    }
}
