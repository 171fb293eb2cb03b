//! One segment: a `.log` file of RecordBatch v2 bytes back to back, starting at `base_offset`,
//! with its `.index` and `.timeindex` (see `index.rs`).
//!
//! Owns the segment's bookkeeping (sizes, next offset, index building) and the I/O that reads
//! batches back ([`BatchWalker`]) and persists indexes. Appending bytes to the file is the
//! writer's job (`writer.rs`); this struct only learns where each batch landed.
//!
//! Invariants: `written_bytes <= size_bytes`; bytes below `written_bytes` are on disk and hold
//! whole batches; the file may carry zero padding after the logical end until it is sealed.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};

use super::index::{OffsetIndex, TimeIndex};
use super::{io_error, write_synced, StorageError};
use crate::record::{self, BatchHeader, Scan};

/// How much a reader asks the disk for at once when walking batch headers.
const READ_CHUNK_BYTES: usize = 64 << 10;

pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// The base offset a segment file name encodes, if it is one of ours.
pub fn parse_file_name(name: &str, extension: &str) -> Option<i64> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Opens (creating if absent) a segment's log for direct reads and writes.
pub async fn open_log_file(path: &Path) -> Result<DmaFile, StorageError> {
    prime_iopoll_probe(path).await?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(|e| io_error(path, e))
}

thread_local! {
    /// Devices whose io_uring poll support glommio has probed on this thread.
    static PROBED_DEVICES: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// glommio 0.9 decides once per device and thread whether reads may use the io_uring poll
/// ring, by reading the first block of the first DMA file opened there. When that file is empty
/// the read succeeds trivially, the poll ring is chosen, and every later read on a device
/// without polled I/O fails with EOPNOTSUPP. So the first open on each device is of a
/// non-empty scratch file, which makes the probe honest. (std::fs: once per device.)
async fn prime_iopoll_probe(log_path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::MetadataExt;
    let dir = log_path.parent().unwrap_or(Path::new("."));
    let dev = std::fs::metadata(dir).map_err(|e| io_error(dir, e))?.dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(format!(".iopoll-probe-{}", std::process::id()));
    std::fs::write(&probe, vec![0xa5u8; 4096]).map_err(|e| io_error(&probe, e))?;
    let opened = DmaFile::open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    let file = opened.map_err(|e| io_error(&probe, e))?;
    file.close().await.map_err(|e| io_error(&probe, e))?;
    PROBED_DEVICES.with(|p| p.borrow_mut().push(dev));
    Ok(())
}

/// Where index entries go as batches are appended (Kafka's `LogSegment.append` bookkeeping).
#[derive(Debug, Clone)]
struct Indexer {
    bytes_since_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    pub dir: PathBuf,
    /// None only between an append-time roll and the writer creating the file.
    pub file: Option<Rc<DmaFile>>,
    /// Logical bytes, counting batches appended but not yet written.
    pub size_bytes: u64,
    /// Bytes whose write has completed.
    pub written_bytes: u64,
    /// Offset after the last batch appended to this segment.
    pub next_offset: i64,
    pub created_ms: i64,
    /// Subtracted from segment.ms for this segment's time-based roll (segment.jitter.ms), so
    /// that many logs created together do not all roll at once.
    pub roll_jitter_ms: i64,
    /// Trimmed, synced and indexes persisted: no write will touch it again.
    pub sealed: bool,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    indexer: Indexer,
    index_interval_bytes: u64,
    /// Transactions aborted by markers in this segment (its `.txnindex`), in marker order.
    pub aborted: Vec<super::txn_index::AbortedTxn>,
    /// The log file opened for buffered reads, which zero-copy fetches send from.
    page_reader: std::cell::OnceCell<std::sync::Arc<std::fs::File>>,
}

impl Segment {
    pub fn new(dir: &Path, base_offset: i64, index_interval_bytes: u32, now_ms: i64) -> Self {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: None,
            size_bytes: 0,
            written_bytes: 0,
            next_offset: base_offset,
            created_ms: now_ms,
            roll_jitter_ms: 0,
            sealed: false,
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            indexer: Indexer {
                bytes_since_entry: 0,
                max_timestamp: -1,
                offset_of_max_timestamp: base_offset,
            },
            index_interval_bytes: index_interval_bytes as u64,
            aborted: Vec::new(),
            page_reader: std::cell::OnceCell::new(),
        }
    }

    pub fn path(&self, extension: &str) -> PathBuf {
        self.dir.join(file_name(self.base_offset, extension))
    }

    /// Kafka's "index is full": another entry would not fit in segment.index.bytes.
    pub fn indexes_full(&self, index_bytes_max: u32) -> bool {
        let max = index_bytes_max as usize;
        self.offset_index.entry_count() >= max / super::index::OFFSET_ENTRY_BYTES
            || self.time_index.entry_count() >= max / super::index::TIME_ENTRY_BYTES
    }

    pub fn index_interval(&self) -> u32 {
        self.index_interval_bytes as u32
    }

    pub fn set_index_interval(&mut self, bytes: u32) {
        self.index_interval_bytes = bytes as u64;
    }

    /// Records that `header`'s batch now ends the segment; returns the position it starts at.
    pub fn note_batch(&mut self, header: &BatchHeader) -> u64 {
        assert!(
            header.base_offset >= self.next_offset,
            "segment {} expects offset {} or above next, got a batch at {}",
            self.base_offset,
            self.next_offset,
            header.base_offset
        );
        let position = self.size_bytes;
        let ix = &mut self.indexer;
        if header.max_timestamp > ix.max_timestamp {
            ix.max_timestamp = header.max_timestamp;
            ix.offset_of_max_timestamp = header.last_offset();
        }
        if ix.bytes_since_entry > self.index_interval_bytes {
            self.offset_index
                .append(header.last_offset(), position_u32(position));
            self.time_index
                .maybe_append(ix.max_timestamp, ix.offset_of_max_timestamp);
            ix.bytes_since_entry = 0;
        }
        ix.bytes_since_entry += header.total_bytes() as u64;
        self.size_bytes += header.total_bytes() as u64;
        self.next_offset = header.next_offset();
        position
    }

    /// The largest batch timestamp seen, -1 when none (empty, or indexes loaded from disk
    /// without a final entry).
    pub fn max_timestamp(&self) -> i64 {
        let from_index = self.time_index.last_timestamp().unwrap_or(-1);
        self.indexer.max_timestamp.max(from_index)
    }

    /// Puts indexes loaded from disk in place, picking up the timestamp bookkeeping from them.
    pub fn adopt_indexes(&mut self, offsets: OffsetIndex, times: TimeIndex) {
        self.offset_index = offsets;
        self.time_index = times;
    }

    /// Adds the final time index entry Kafka writes when a segment stops being active, so the
    /// last entry carries the segment's largest timestamp.
    pub fn seal_time_index(&mut self) {
        let ix = &self.indexer;
        if ix.max_timestamp >= 0 {
            self.time_index
                .maybe_append(ix.max_timestamp, ix.offset_of_max_timestamp);
        }
    }

    /// Writes both index files and fsyncs them. std::fs is fine here: it runs at roll and
    /// close only, never per batch.
    pub fn persist_indexes(&self) -> Result<(), StorageError> {
        write_synced(&self.path("index"), &self.offset_index.encode())?;
        write_synced(&self.path("timeindex"), &self.time_index.encode())?;
        super::txn_index::persist(&self.path(super::txn_index::EXTENSION), &self.aborted)
    }

    /// Records a transaction aborted by a marker in this segment, in memory and in its
    /// `.txnindex` (not synced until the segment is sealed).
    pub fn add_aborted(&mut self, txn: super::txn_index::AbortedTxn) -> Result<(), StorageError> {
        self.aborted.push(txn);
        super::txn_index::append(&self.path(super::txn_index::EXTENSION), &txn)
    }

    /// The log file opened for reads through the page cache (opened on first use; the
    /// segment's own descriptor is for direct I/O).
    pub fn page_reader(&self) -> std::io::Result<std::sync::Arc<std::fs::File>> {
        if let Some(f) = self.page_reader.get() {
            return Ok(f.clone());
        }
        // std::fs: an open(2) of an existing file, once per segment.
        let f = std::sync::Arc::new(std::fs::File::open(self.path("log"))?);
        Ok(self.page_reader.get_or_init(|| f).clone())
    }

    pub fn walker(&self, position: u64, end: u64) -> Option<BatchWalker> {
        let file = self.file.clone()?;
        Some(BatchWalker::new(file, self.path("log"), position, end))
    }
}

fn position_u32(position: u64) -> u32 {
    u32::try_from(position).unwrap_or_else(|_| panic!("segment position {position} over 4 GiB"))
}

/// The number kept in a one-number checkpoint file of a partition directory, if it reads.
pub fn read_offset_file(dir: &Path, name: &str) -> Option<i64> {
    std::fs::read_to_string(dir.join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Replaces a one-number checkpoint file whole (a temp file, then a rename). `durable`: the
/// file is synced before the rename and the directory after it, so a crash keeps the new value.
pub fn write_offset_file(
    dir: &Path,
    name: &str,
    value: i64,
    durable: bool,
) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let text = format!("{value}\n");
    if durable {
        write_synced(&tmp, text.as_bytes())?;
    } else {
        std::fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    if durable {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}

/// What a walk over a segment met after its last whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkEnd {
    /// The end of the range, or zero padding.
    Clean,
    /// A batch cut short by the end of the range (a torn write).
    Torn,
    /// Bytes that are not a valid batch.
    Corrupt(String),
}

/// Reads whole, CRC-checked batches from a segment file in order, `READ_CHUNK_BYTES` at a time.
pub struct BatchWalker {
    file: Rc<DmaFile>,
    path: PathBuf,
    /// File position of `buf[0]`.
    buf_pos: u64,
    buf: Bytes,
    /// Position of the next batch.
    pos: u64,
    end: u64,
}

impl BatchWalker {
    pub fn new(file: Rc<DmaFile>, path: PathBuf, position: u64, end: u64) -> Self {
        BatchWalker {
            file,
            path,
            buf_pos: position,
            buf: Bytes::new(),
            pos: position,
            end,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Position of the next batch (after a walk ends: the end of the last whole batch).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next batch with the position it starts at, or how the walk ended.
    pub async fn next(
        &mut self,
    ) -> Result<Result<(u64, BatchHeader, Bytes), WalkEnd>, StorageError> {
        let mut want = record::HEADER_BYTES;
        loop {
            let have = self.buffered(want).await?;
            let at = (self.pos - self.buf_pos) as usize;
            match record::scan(&self.buf[at..at + have]) {
                Scan::Batch(h) => {
                    let n = h.total_bytes();
                    let bytes = self.buf.slice(at..at + n);
                    let pos = self.pos;
                    self.pos += n as u64;
                    return Ok(Ok((pos, h, bytes)));
                }
                Scan::End => return Ok(Err(WalkEnd::Clean)),
                // Asking again for what we already asked for means the file is shorter.
                Scan::Incomplete { needed } if needed <= want => return Ok(Err(WalkEnd::Torn)),
                Scan::Incomplete { needed } if self.pos + needed as u64 > self.end => {
                    return Ok(Err(WalkEnd::Torn))
                }
                Scan::Incomplete { needed } => want = needed,
                Scan::Corrupt(e) => return Ok(Err(WalkEnd::Corrupt(e.to_string()))),
            }
        }
    }

    /// Makes at least `want` bytes from `pos` buffered when the range has them; returns how
    /// many are buffered (less only at the end of the range).
    async fn buffered(&mut self, want: usize) -> Result<usize, StorageError> {
        let at = (self.pos - self.buf_pos) as usize;
        let left = (self.end - self.pos) as usize;
        let want = want.min(left);
        if self.buf.len() - at.min(self.buf.len()) < want {
            let len = want.max(READ_CHUNK_BYTES).min(left);
            let read = self
                .file
                .read_at(self.pos, len)
                .await
                .map_err(|e| io_error(&self.path, e))?;
            self.buf = Bytes::copy_from_slice(&read);
            self.buf_pos = self.pos;
        }
        let at = (self.pos - self.buf_pos) as usize;
        Ok((self.buf.len() - at).min(left))
    }
}

/// The partly written last block of the active segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Aligned file position of `bytes[0]`.
    pub pos: u64,
    /// Fewer than one alignment unit of bytes.
    pub bytes: Vec<u8>,
    /// The file is known to be allocated and sized up to here (the writer's ahead-of-write
    /// allocation); a hint only, never needed for correctness.
    pub allocated: u64,
    /// Zeros were written (not just allocated) up to here: writes below it are plain
    /// overwrites. Also a hint only.
    pub zeroed: u64,
}

impl Tail {
    pub fn empty() -> Self {
        Tail {
            pos: 0,
            bytes: Vec::new(),
            allocated: 0,
            zeroed: 0,
        }
    }

    /// The tail after `data` is written through it.
    pub(super) fn advanced(&self, data: &JobData, align: usize) -> Tail {
        let total = self.bytes.len() + data.len();
        let full = total / align * align;
        let bytes = if full == 0 {
            let mut b = self.bytes.clone();
            b.extend_from_slice(&data.last(data.len()));
            b
        } else {
            data.last(total - full)
        };
        Tail {
            pos: self.pos + full as u64,
            bytes,
            allocated: self.allocated,
            zeroed: self.zeroed,
        }
    }
}

/// The bytes of one write: appended batches as they were handed over, kept as they are until
/// the write copies them, once, into its direct-I/O buffer.
#[derive(Debug, Default)]
pub struct JobData {
    pieces: Vec<Bytes>,
    len: usize,
}

impl JobData {
    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies every byte into `out`, which is exactly as long.
    pub fn copy_to(&self, out: &mut [u8]) {
        assert_eq!(
            out.len(),
            self.len,
            "copy of a job into a buffer of another size"
        );
        let mut at = 0;
        for piece in &self.pieces {
            out[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
    }

    /// The last `n` bytes.
    pub fn last(&self, n: usize) -> Vec<u8> {
        assert!(n <= self.len, "last {n} of {} bytes", self.len);
        let mut skip = self.len - n;
        let mut out = Vec::with_capacity(n);
        for piece in &self.pieces {
            if skip >= piece.len() {
                skip -= piece.len();
                continue;
            }
            out.extend_from_slice(&piece[skip..]);
            skip = 0;
        }
        out
    }
}

impl From<&[u8]> for JobData {
    fn from(bytes: &[u8]) -> Self {
        let mut data = JobData::default();
        data.push(Bytes::copy_from_slice(bytes));
        data
    }
}

/// Suffix of segment files that retention removed and that wait out file.delete.delay.ms
/// (Kafka's `.deleted`); leftovers of a crash are removed when the log is opened.
pub const DELETED_SUFFIX: &str = ".deleted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(file_name(0, "log"), "00000000000000000000.log");
        assert_eq!(file_name(1234, "index"), "00000000000000001234.index");
        let table = [
            ("00000000000000001234.log", Some(1234)),
            ("00000000000000001234.index", None),
            ("1234.log", None),
            ("0000000000000000123x.log", None),
            ("00000000000000001234log", None),
        ];
        for (name, want) in table {
            assert_eq!(parse_file_name(name, "log"), want, "{name}");
        }
    }

    /// A job made of pieces copies, and leaves a tail, exactly as its bytes joined would.
    #[test]
    fn pieces_act_as_their_bytes_joined() {
        let joined: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        for cuts in [vec![], vec![1], vec![511, 512, 513], vec![100, 1500, 2999]] {
            let mut data = JobData::default();
            let mut from = 0;
            for cut in cuts.iter().copied().chain([joined.len()]) {
                data.push(Bytes::copy_from_slice(&joined[from..cut]));
                from = cut;
            }
            let mut out = vec![0u8; joined.len()];
            data.copy_to(&mut out);
            assert_eq!(out, joined, "cuts {cuts:?}");
            for n in [0, 1, 511, 1500, 3000] {
                assert_eq!(
                    data.last(n),
                    joined[joined.len() - n..],
                    "last {n} of {cuts:?}"
                );
            }
            let start = Tail {
                bytes: vec![7; 100],
                ..Tail::empty()
            };
            let whole = start.advanced(&JobData::from(&joined[..]), 512);
            let pieced = start.advanced(&data, 512);
            assert_eq!((pieced.pos, pieced.bytes), (whole.pos, whole.bytes));
        }
    }
}
