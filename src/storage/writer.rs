//! The group-commit writer: one task per log at most, writing everything appended since its
//! last write in one direct (O_DIRECT) write, then syncing and rolling segments as due.
//!
//! Direct writes must cover whole aligned blocks, so the partly filled last block of the active
//! segment ([`Tail`]) stays in memory and is written again, whole, with the next write; the file
//! carries zero padding after the logical end until the segment is sealed (truncated).
//!
//! Growing a file with a direct write is something io_uring cannot complete without blocking,
//! so the kernel hands every such write to a worker thread (io-wq): a context switch per
//! acknowledgement. The writer therefore keeps the active segment's file allocated and sized a
//! window ahead of its write position ([`allocate_ahead`], `log.segment.allocate.ahead.bytes`):
//! writes overwrite allocated blocks inside the file size. The allocated space reads as zeros,
//! which recovery takes for the end of the data, and sealing trims it.
//!
//! Invariants: at most one writer runs (`State::writer_running`); it never holds a borrow of the
//! state across an `.await`; jobs complete in order, and the high watermark only moves to the end
//! of a completed job. After a write error the log is failed for good.

use std::rc::Rc;

use glommio::io::DmaFile;

use super::super::io_error;
use super::super::segment::{open_log_file, Tail};
use super::{Inner, Job};
use crate::storage::StorageError;

/// Writes `tail` + `data`, zero padded to the alignment (and on to `zero_to`, when that is
/// further), at the tail's position; moves the tail.
pub async fn write_through(
    file: &DmaFile,
    inner: &Inner,
    tail: &mut Tail,
    data: &[u8],
    zero_to: u64,
) -> Result<(), StorageError> {
    let align = file.alignment() as usize;
    assert!(
        tail.bytes.len() < align && tail.pos.is_multiple_of(align as u64),
        "tail not aligned: pos {} len {} align {align}",
        tail.pos,
        tail.bytes.len()
    );
    let total = tail.bytes.len() + data.len();
    let len = (total.div_ceil(align) * align).max(zero_to.saturating_sub(tail.pos) as usize);
    debug_assert!(
        len.is_multiple_of(align),
        "zero fill to an unaligned {zero_to}"
    );
    let mut buf = file.alloc_dma_buffer(len);
    let out = buf.as_bytes_mut();
    out[..tail.bytes.len()].copy_from_slice(&tail.bytes);
    out[tail.bytes.len()..total].copy_from_slice(data);
    out[total..].fill(0);
    let mut next = tail.advanced(data, align);
    next.zeroed = next.zeroed.max(tail.pos + len as u64);
    let started = std::time::Instant::now();
    let written = file
        .write_at(buf, tail.pos)
        .await
        .map_err(|e| io_error(&inner.dir, e))?;
    crate::metrics::disk_write(started.elapsed());
    if written != len {
        let short = std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!(
                "short direct write: {written} of {len} bytes at {}",
                tail.pos
            ),
        );
        return Err(io_error(&inner.dir, short));
    }
    *tail = next;
    Ok(())
}

/// How far past its data a write zero-fills when `log.segment.allocate.ahead.zero` is on.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// Where the next write of `data_len` bytes should zero-fill to (0: nowhere past its own
/// block). Allocated but never written blocks are unwritten extents, and a direct write into
/// one is not a plain overwrite: it is completed by a kernel worker like a growing write. So
/// when the written zeros ahead of the data run short (less than half of [`ZERO_AHEAD_BYTES`]
/// left), the write carries on with zeros to the first boundary a full [`ZERO_AHEAD_BYTES`]
/// past its end, within the allocated window: one slower write in every half
/// [`ZERO_AHEAD_BYTES`] or more, and plain overwrites in between. Every byte is then written
/// twice, once as a zero.
fn zero_ahead(tail: &Tail, data_len: usize, enabled: bool, align: u64) -> u64 {
    if !enabled {
        return 0;
    }
    let end = (tail.pos + (tail.bytes.len() + data_len) as u64).div_ceil(align) * align;
    if end + ZERO_AHEAD_BYTES / 2 <= tail.zeroed {
        return 0;
    }
    let to = (end + ZERO_AHEAD_BYTES).div_ceil(ZERO_AHEAD_BYTES) * ZERO_AHEAD_BYTES;
    let to = to.min(tail.allocated) / align * align;
    if to > end {
        to
    } else {
        0
    }
}

/// Before a write of `data_len` bytes through `tail`: when the write would end within half a
/// window of the allocated end, allocates (fallocate without KEEP_SIZE, so the file's size
/// covers it) up to the next window boundary past that point, never past segment.bytes
/// rounded up to the alignment. A write that goes past the limit (the batch that overfills a
/// segment) grows the file itself.
async fn allocate_ahead(
    file: &DmaFile,
    inner: &Inner,
    tail: &mut Tail,
    data_len: usize,
) -> Result<(), StorageError> {
    let (window, segment_bytes) = {
        let st = inner.state.borrow();
        let c = st.config();
        (c.allocate_ahead_bytes, c.segment_bytes)
    };
    let align = file.alignment();
    let end = tail.pos + (tail.bytes.len() + data_len) as u64;
    let Some(target) = ahead_target(tail.allocated, end, window, segment_bytes, align) else {
        return Ok(());
    };
    file.pre_allocate(target, false)
        .await
        .map_err(|e| io_error(&inner.dir, e))?;
    tail.allocated = target;
    Ok(())
}

/// Where to allocate up to before a write ending at `end`, if anywhere (see
/// [`allocate_ahead`]).
fn ahead_target(
    allocated: u64,
    end: u64,
    window: u64,
    segment_bytes: u64,
    align: u64,
) -> Option<u64> {
    if window == 0 {
        return None;
    }
    let window = window.div_ceil(align) * align;
    if end + window / 2 <= allocated {
        return None;
    }
    let limit = segment_bytes.div_ceil(align) * align;
    let target = ((end + window / 2) / window + 1) * window;
    let target = target.min(limit);
    (target > end.max(allocated)).then_some(target)
}

/// The writer task: runs jobs until none are pending, then exits (append restarts it).
pub async fn run(inner: Rc<Inner>) {
    loop {
        let job = {
            let mut st = inner.state.borrow_mut();
            match st.pending.pop_front() {
                Some(job) => job,
                None => {
                    st.writer_running = false;
                    return;
                }
            }
        };
        match run_job(&inner, &job).await {
            Ok(synced) => inner.complete_job(&job, synced),
            Err(e) => {
                inner.fail(e);
                return;
            }
        }
    }
}

/// Writes one job; returns whether the data is now synced.
async fn run_job(inner: &Inner, job: &Job) -> Result<bool, StorageError> {
    let (file, mut tail, sync_due) = {
        let mut st = inner.state.borrow_mut();
        let sync_due = st.sync_due(job);
        let tail = st.tail.take();
        let tail = tail.unwrap_or_else(|| panic!("writer has no tail for {job:?}"));
        (st.segment_file(job.segment_base), tail, sync_due)
    };
    if !job.data.is_empty() {
        allocate_ahead(&file, inner, &mut tail, job.data.len()).await?;
        let zero = inner.state.borrow().config().allocate_ahead_zero;
        let zero_to = zero_ahead(&tail, job.data.len(), zero, file.alignment());
        write_through(&file, inner, &mut tail, &job.data, zero_to).await?;
        inner.state.borrow_mut().writes += 1;
    }
    if job.roll {
        seal(inner, job.segment_base, &file).await?;
        open_next(inner, job.end_offset).await?;
        return Ok(true);
    }
    if sync_due {
        timed_fdatasync(&file, inner).await?;
    }
    inner.state.borrow_mut().tail = Some(tail);
    Ok(sync_due)
}

/// fdatasync of a segment file, timed for the metrics.
pub(super) async fn timed_fdatasync(file: &DmaFile, inner: &Inner) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    file.fdatasync()
        .await
        .map_err(|e| io_error(&inner.dir, e))?;
    crate::metrics::fsync(started.elapsed());
    Ok(())
}

/// Trims the padding of a segment that stops being active, syncs it and persists its indexes.
pub async fn seal(inner: &Inner, base_offset: i64, file: &DmaFile) -> Result<(), StorageError> {
    let size_bytes = inner.state.borrow().segment_size(base_offset);
    file.truncate(size_bytes)
        .await
        .map_err(|e| io_error(&inner.dir, e))?;
    timed_fdatasync(file, inner).await?;
    inner.state.borrow_mut().seal_indexes(base_offset)
}

/// Creates the file of the segment that a roll made active.
async fn open_next(inner: &Inner, base_offset: i64) -> Result<(), StorageError> {
    let (path, preallocate) = {
        let st = inner.state.borrow();
        let config = st.config();
        (
            st.segment_path(base_offset),
            config.preallocate.then_some(config.segment_bytes),
        )
    };
    let file = open_log_file(&path).await?;
    if let Some(bytes) = preallocate {
        // Reserve the segment's blocks without changing its size (FALLOC_FL_KEEP_SIZE), so
        // recovery still finds the end of the data where the file ends.
        file.pre_allocate(bytes, true)
            .await
            .map_err(|e| io_error(&path, e))?;
    }
    let mut st = inner.state.borrow_mut();
    st.set_segment_file(base_offset, Rc::new(file));
    st.tail = Some(Tail::empty());
    tracing::info!(dir = %inner.dir.display(), base_offset, "rolled a new segment");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_runs_a_window_ahead_and_stops_at_the_segment_size() {
        const W: u64 = 8 << 20;
        // Off.
        assert_eq!(ahead_target(0, 100, 0, 1 << 30, 4096), None);
        // First write of a fresh segment: up to the first boundary past half a window.
        assert_eq!(ahead_target(0, 4096, W, 1 << 30, 4096), Some(W));
        // Well inside the window: nothing to do.
        assert_eq!(ahead_target(W, W / 2 - 4096, W, 1 << 30, 4096), None);
        // Within half a window of the end: one more window.
        assert_eq!(ahead_target(W, W / 2 + 1, W, 1 << 30, 4096), Some(2 * W));
        // A write bigger than the window still ends half a window inside.
        assert_eq!(ahead_target(W, 3 * W, W, 1 << 30, 4096), Some(4 * W));
        // Never past segment.bytes rounded up to the alignment.
        assert_eq!(ahead_target(0, 4096, W, 10_000, 4096), Some(12_288));
        assert_eq!(ahead_target(12_288, 8192, W, 10_000, 4096), None);
        // The write that overfills the segment grows the file by itself.
        assert_eq!(ahead_target(12_288, 20_480, W, 10_000, 4096), None);
    }

    #[test]
    fn zero_fill_runs_ahead_within_the_allocated_window() {
        const Z: u64 = ZERO_AHEAD_BYTES;
        let tail = |pos: u64, allocated: u64, zeroed: u64| Tail {
            pos,
            bytes: Vec::new(),
            allocated,
            zeroed,
        };
        assert_eq!(zero_ahead(&tail(0, 32 * Z, 0), 100, false, 4096), 0);
        // A fresh window: zeros to the first boundary a full Z past the data.
        assert_eq!(zero_ahead(&tail(0, 32 * Z, 0), 100, true, 4096), 2 * Z);
        // Enough zeros ahead: a plain write.
        assert_eq!(zero_ahead(&tail(Z, 32 * Z, 2 * Z), 100, true, 4096), 0);
        // Less than half of Z left.
        assert_eq!(
            zero_ahead(&tail(Z + Z / 2, 32 * Z, 2 * Z), 100, true, 4096),
            3 * Z
        );
        // Never past the allocated window, which may end off the Z grid.
        assert_eq!(
            zero_ahead(&tail(Z, Z + Z / 4, 0), 100, true, 4096),
            Z + Z / 4
        );
        assert_eq!(zero_ahead(&tail(Z, Z, 0), 100, true, 4096), 0);
    }

    #[test]
    fn tail_keeps_the_partial_last_block() {
        let t = Tail::empty();
        let t1 = t.advanced(&[1; 100], 512);
        assert_eq!((t1.pos, t1.bytes.len()), (0, 100));
        let t2 = t1.advanced(&[2; 500], 512);
        assert_eq!((t2.pos, t2.bytes.len()), (512, 88));
        assert!(t2.bytes.iter().all(|b| *b == 2));
        let t3 = t2.advanced(&[3; 424], 512);
        assert_eq!((t3.pos, t3.bytes.len()), (1024, 0));
        let t4 = t3.advanced(&[4; 2000], 512);
        assert_eq!((t4.pos, t4.bytes.len()), (1024 + 1536, 464));
    }
}
