//! Zero-copy reads for fetches. Batches no longer in the tail cache are handed out as one range
//! of their segment file, which the connection sends from the page cache with `sendfile`,
//! when the page cache holds them. The batch headers that decide where the range starts and
//! ends are read with `RWF_NOWAIT`, so the shard never blocks on the disk here. A pager thread
//! brings the pages ahead of the reader into the page cache; a read that finds nothing
//! resident asks for it and waits (without blocking the shard) for up to `MAX_WAITS` x `WAIT`,
//! then reads through direct I/O into memory as before. A read that finds only its first
//! batches resident returns those.
//!
//! The active segment's last, partly written block is left to the direct-I/O path: the writer
//! rewrites that block with every write, and a page the network still holds could not be
//! invalidated under it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};

use super::{ReadLimit, ReadResult, State};
use crate::record::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD};
use crate::storage::FileRange;

/// Bytes of batch headers read per call while scanning.
const SCAN_WINDOW: usize = 4096;
/// Direct writes rewrite the active segment's last block of this size.
const BLOCK: u64 = 4096;
/// Page-in requests waiting for the pager thread.
const PAGER_QUEUE: usize = 256;
/// How long a read waits each time for pages it asked for, and how many times.
pub(super) const WAIT: std::time::Duration = std::time::Duration::from_micros(500);
pub(super) const MAX_WAITS: u32 = 100;

/// What the page cache could answer.
pub(super) enum PageRead {
    /// Batches from the segment holding the offset, as a file range (or nothing: past the
    /// high watermark, or the first batch does not fit).
    Got(ReadResult),
    /// No batch of the segment starting at this base offset reaches the offset (a gap left
    /// by compaction): the next segment has it.
    Gap(i64),
    /// Nothing resident yet; the pages were asked for.
    Wait,
    /// Not a plain case (a batch in the block the writer rewrites, a header that does not
    /// parse, no segment holding the offset): read through memory.
    Fallback,
}

/// One fetch's batches as a range of the segment file, if the page cache has them.
pub(super) fn from_page_cache(
    st: &State,
    offset: i64,
    after_base: Option<i64>,
    limit: &ReadLimit,
) -> PageRead {
    let Some((seg, position)) = st.read_position(offset, after_base) else {
        // No segment holds it: the direct path answers that too.
        return PageRead::Fallback;
    };
    let end = if seg.sealed {
        seg.written_bytes
    } else {
        seg.written_bytes / BLOCK * BLOCK
    };
    let file = match seg.page_reader() {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(segment = %seg.path("log").display(), error = %e, "no page-cache reader");
            return PageRead::Fallback;
        }
    };
    // Reads run ahead of the consumer by this much: the pager thread brings it in (the shard
    // never waits for the disk) while this range is being sent.
    let ahead = (limit.max_bytes as u64).max(1 << 20) * 4;
    let page_in_from = |from: u64| {
        let to = (from + ahead).min(seg.written_bytes);
        page_in(&file, from, to.saturating_sub(from));
    };
    match scan(&file, position, end, offset, limit) {
        Scanned::Range {
            position,
            len,
            next_offset,
        } => {
            page_in_from(position + len as u64);
            PageRead::Got(ReadResult {
                batches: Vec::new(),
                held: Vec::new(),
                bytes: len,
                file: Some((
                    FileRange {
                        file: file.clone(),
                        position,
                        len,
                    },
                    next_offset,
                )),
                from_cache: false,
            })
        }
        Scanned::PastEnd => PageRead::Got(ReadResult::default()),
        Scanned::NoneReach if end == seg.written_bytes => PageRead::Gap(seg.base_offset),
        Scanned::NotResident => {
            page_in_from(position);
            PageRead::Wait
        }
        Scanned::NoneReach | Scanned::Fallback => PageRead::Fallback,
    }
}

enum Scanned {
    /// Whole batches at [position, position + len), the offset after the last.
    Range {
        position: u64,
        len: usize,
        next_offset: i64,
    },
    /// Nothing to return: the first batch that reaches the offset starts at or past the high
    /// watermark, or does not fit and the read is not min_one.
    PastEnd,
    /// Every batch before `end` ends below the offset.
    NoneReach,
    /// The first page needed is not in the page cache.
    NotResident,
    Fallback,
}

/// Walks batch headers from `position` to `end` through the page cache without waiting.
fn scan(file: &File, mut pos: u64, end: u64, offset: i64, limit: &ReadLimit) -> Scanned {
    let mut window = [0u8; SCAN_WINDOW];
    let mut win_pos = 0u64;
    let mut win_len = 0usize;
    let mut first: Option<u64> = None;
    let mut taken = 0usize;
    let mut next_offset = offset;
    // Why the walk stopped, if it took nothing.
    let mut empty = Scanned::NoneReach;
    loop {
        if pos + HEADER_BYTES as u64 > end {
            if pos < end {
                // A batch starts in the block the writer still rewrites.
                empty = Scanned::Fallback;
            }
            break;
        }
        if pos < win_pos || pos + HEADER_BYTES as u64 > win_pos + win_len as u64 {
            let want = (end - pos).min(SCAN_WINDOW as u64) as usize;
            match pread_nowait(file, &mut window[..want], pos) {
                Ok(n) if n >= HEADER_BYTES => {
                    win_pos = pos;
                    win_len = n;
                }
                // Not resident (or a short file): return what is, or wait for it.
                _ if first.is_some() => break,
                _ => return Scanned::NotResident,
            }
        }
        let at = (pos - win_pos) as usize;
        let Ok(h) = BatchHeader::parse(&window[at..win_len]) else {
            return Scanned::Fallback;
        };
        if h.magic != 2 || h.batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
            return Scanned::Fallback;
        }
        let n = h.total_bytes();
        if pos + n as u64 > end {
            empty = Scanned::Fallback;
            break;
        }
        if h.last_offset() < offset {
            pos += n as u64;
            continue;
        }
        if h.base_offset >= limit.high_watermark {
            empty = Scanned::PastEnd;
            break;
        }
        let fits = taken + n <= limit.max_bytes;
        if fits || (first.is_none() && limit.min_one) {
            first.get_or_insert(pos);
            taken += n;
            next_offset = h.next_offset();
        }
        if !fits {
            empty = Scanned::PastEnd;
            break;
        }
        pos += n as u64;
    }
    let Some(start) = first else {
        return empty;
    };
    // The headers were resident; so must the bytes between them be, or sendfile would wait
    // for the disk on the shard: probe the last byte.
    let mut last = [0u8; 1];
    match pread_nowait(file, &mut last, start + taken as u64 - 1) {
        Ok(1) => Scanned::Range {
            position: start,
            len: taken,
            next_offset,
        },
        _ => Scanned::NotResident,
    }
}

/// A read that returns what the page cache has (possibly less) or EAGAIN, never waiting.
fn pread_nowait(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over `buf`, which outlives the call; the descriptor is open.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            pos as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Asks the pager thread to bring `len` bytes from `pos` into the page cache; dropped when it is
/// behind (the next fetch asks again).
fn page_in(file: &Arc<File>, pos: u64, len: u64) {
    if len == 0 {
        return;
    }
    type PageIn = (Arc<File>, u64, u64);
    static PAGER: OnceLock<Option<SyncSender<PageIn>>> = OnceLock::new();
    let pager = PAGER.get_or_init(|| {
        let (tx, rx) = sync_channel::<PageIn>(PAGER_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("pager".into())
            .spawn(move || {
                use std::os::unix::fs::FileExt;
                for (file, pos, len) in rx {
                    // SAFETY: an advisory call on a descriptor the message keeps open.
                    unsafe {
                        libc::posix_fadvise(
                            file.as_raw_fd(),
                            pos as libc::off_t,
                            len as libc::off_t,
                            libc::POSIX_FADV_WILLNEED,
                        );
                    }
                    // Readahead skips pages already cached but not up to date (the last page
                    // of a sealed segment, which truncation zeroed through the page cache):
                    // reading a byte of the first and last page brings those in too.
                    let mut byte = [0u8; 1];
                    let _ = file.read_at(&mut byte, pos);
                    let _ = file.read_at(&mut byte, pos + len - 1);
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "no pager thread: cold fetches read through memory");
                None
            }
        }
    });
    if let Some(tx) = pager {
        let _ = tx.try_send((file.clone(), pos, len));
    }
}
