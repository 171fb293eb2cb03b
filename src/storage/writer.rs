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
//! of a completed job.
//!
//! A full device (ENOSPC, EDQUOT, or a short direct write) is not a failure: the job stays first
//! in line with its offsets and the tail unmoved, the log refuses appends and fails the waiters
//! past its written end ([`Inner::out_of_space`]), and the writer tries the same write again
//! with a growing pause until it succeeds (space freed, retention ran) or the log closes. An
//! allocation ahead of the writer that finds no space is skipped. Any other write error fails
//! the log for good: it goes offline until a restart recovers it.

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use glommio::io::DmaFile;

use super::super::io_error;
use super::super::segment::{open_log_file, JobData, Tail};
use super::{Inner, Job};
use crate::storage::StorageError;

/// Writes `tail` + `data`, zero padded to the alignment (and on to `zero_to`, when that is
/// further), at the tail's position; moves the tail.
pub async fn write_through(
    file: &DmaFile,
    path: &Path,
    tail: &mut Tail,
    data: &JobData,
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
    data.copy_to(&mut out[tail.bytes.len()..total]);
    out[total..].fill(0);
    let mut next = tail.advanced(data, align);
    next.zeroed = next.zeroed.max(tail.pos + len as u64);
    let started = std::time::Instant::now();
    let written = file
        .write_at(buf, tail.pos)
        .await
        .map_err(|e| io_error(path, e))?;
    crate::metrics::disk_write(started.elapsed());
    if written != len {
        let short = std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!(
                "short direct write: {written} of {len} bytes at {}",
                tail.pos
            ),
        );
        return Err(io_error(path, short));
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
    path: &Path,
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
    match file.pre_allocate(target, false).await {
        Ok(()) => tail.allocated = target,
        // No room for the window: the write itself finds out whether its own bytes fit.
        Err(e) => {
            let e = io_error(path, e);
            if !e.is_no_space() {
                return Err(e);
            }
            tracing::debug!(error = %e, "no space to allocate ahead of the writer");
        }
    }
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

/// The first and the longest pause before a write that found the device full is tried again.
const NO_SPACE_RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// The writer task: runs jobs until none are pending, then exits (append restarts it).
pub async fn run(inner: Rc<Inner>) {
    let mut pause = NO_SPACE_RETRY.0;
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
            Ok(synced) => {
                inner.space_returned();
                pause = NO_SPACE_RETRY.0;
                inner.complete_job(&job, synced)
            }
            Err(Failed::Unwritten(e)) if e.is_no_space() => {
                let closing = {
                    let mut st = inner.state.borrow_mut();
                    st.pending.push_front(job);
                    st.closing || st.closed
                };
                if closing {
                    // Nothing past the written end was acknowledged; recovery keeps the rest.
                    inner.fail(e);
                    return;
                }
                inner.out_of_space(&e);
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(NO_SPACE_RETRY.1);
            }
            Err(Failed::Unwritten(e) | Failed::Fatal(e)) => {
                inner.fail(e);
                return;
            }
        }
    }
}

/// How a job failed: before its data reached the file (it can be written again, from the same
/// tail), or later (sealing, rolling, syncing), which fails the log.
enum Failed {
    Unwritten(StorageError),
    Fatal(StorageError),
}

/// Writes one job; returns whether the data is now synced.
async fn run_job(inner: &Inner, job: &Job) -> Result<bool, Failed> {
    let (file, path, mut tail) = {
        let mut st = inner.state.borrow_mut();
        let tail = st.tail.take();
        let tail = tail.unwrap_or_else(|| panic!("writer has no tail for {job:?}"));
        let path = st.segment_path(job.segment_base);
        (st.segment_file(job.segment_base), path, tail)
    };
    if !job.data.is_empty() {
        let written = async {
            allocate_ahead(&file, inner, &path, &mut tail, job.data.len()).await?;
            let zero = inner.state.borrow().config().allocate_ahead_zero;
            let zero_to = zero_ahead(&tail, job.data.len(), zero, file.alignment());
            write_through(&file, &path, &mut tail, &job.data, zero_to).await
        }
        .await;
        if let Err(e) = written {
            // The tail has not moved past what is on disk: the job can be written again.
            inner.state.borrow_mut().tail = Some(tail);
            return Err(Failed::Unwritten(e));
        }
        inner.state.borrow_mut().writes += 1;
    }
    let sync_due = inner.state.borrow_mut().sync_due(job);
    if job.roll {
        seal(inner, job.segment_base, &file)
            .await
            .map_err(Failed::Fatal)?;
        open_next(inner, job.end_offset)
            .await
            .map_err(Failed::Fatal)?;
        return Ok(true);
    }
    if sync_due {
        timed_fdatasync(&file, inner).await.map_err(Failed::Fatal)?;
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
    match inner.state.borrow_mut().seal_indexes(base_offset) {
        // Indexes are rebuilt from the segment when they are missing: a full device costs a
        // slower open, not the log.
        Err(e) if e.is_no_space() => {
            tracing::warn!(error = %e, "no space for a sealed segment's indexes: they are rebuilt at the next start");
            Ok(())
        }
        other => other,
    }
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
        // recovery still finds the end of the data where the file ends. Without room for it,
        // the segment grows as it is written.
        if let Err(e) = file.pre_allocate(bytes, true).await {
            let e = io_error(&path, e);
            if !e.is_no_space() {
                return Err(e);
            }
            tracing::warn!(error = %e, "no space to preallocate the new segment");
        }
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
    fn a_full_device_is_told_from_other_errors() {
        let full = |e: std::io::Error| io_error(Path::new("/d/0.log"), e).is_no_space();
        assert!(full(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(full(std::io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(full(std::io::ErrorKind::WriteZero.into()));
        assert!(!full(std::io::Error::from_raw_os_error(libc::EIO)));
        assert!(!StorageError::Closed("/d".into()).is_no_space());
    }

    /// A write error other than a full device: logged with the segment file, the log goes
    /// offline (appends, waits and reads fail), and what was written before is all there
    /// after a reopen. The error is injected by swapping the active segment's file for a
    /// read-only handle, so the next direct write fails with EBADF.
    #[test]
    fn a_failed_write_takes_the_log_offline_and_keeps_what_was_written() {
        use crate::record::tests::make_batch;
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async {
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("t-0");
                let config = crate::config::Config::default().log;
                let log =
                    crate::storage::PartitionLog::open(dir.clone(), config.clone(), 1 << 20, 1)
                        .await
                        .unwrap();
                let mut written = Vec::new();
                for i in 0..3 {
                    let b = make_batch(0, 2, 1_000 + i);
                    let info = log
                        .append(bytes::Bytes::copy_from_slice(&b[..]), 1)
                        .unwrap();
                    log.wait_written(info.last_offset + 1).await.unwrap();
                    written.push(log.read(info.base_offset, 1, true).await.unwrap().batches);
                }
                let segment = dir.join("00000000000000000000.log");
                let read_only = glommio::io::DmaFile::open(&segment).await.unwrap();
                log.inner
                    .state
                    .borrow_mut()
                    .set_segment_file(0, Rc::new(read_only));
                let info = log
                    .append(
                        bytes::Bytes::copy_from_slice(&make_batch(0, 2, 2_000)[..]),
                        1,
                    )
                    .unwrap();
                let err = log.wait_written(info.last_offset + 1).await.unwrap_err();
                assert!(
                    matches!(&err, StorageError::Io { path, .. } if path == &dir),
                    "{err}"
                );
                let failed = log.inner.state.borrow().failed.clone().unwrap().1;
                assert!(failed.contains("00000000000000000000.log"), "{failed}");
                assert!(log
                    .append(
                        bytes::Bytes::copy_from_slice(&make_batch(0, 1, 3_000)[..]),
                        1
                    )
                    .is_err());
                assert!(log.read(0, 1, true).await.is_err(), "offline: no reads");
                assert_eq!(log.high_watermark(), 6);
                let _ = log.close().await;
                drop(log);

                let log = crate::storage::PartitionLog::open(dir.clone(), config, 1 << 20, 1)
                    .await
                    .unwrap();
                assert_eq!(log.log_end_offset(), 6, "only what was written");
                for (i, want) in written.iter().enumerate() {
                    let got = log.read(2 * i as i64, 1, true).await.unwrap().batches;
                    assert_eq!(&got, want, "batch {i}");
                }
                log.close().await.unwrap();
            });
    }

    #[test]
    fn tail_keeps_the_partial_last_block() {
        let t = Tail::empty();
        let t1 = t.advanced(&JobData::from(&[1; 100][..]), 512);
        assert_eq!((t1.pos, t1.bytes.len()), (0, 100));
        let t2 = t1.advanced(&JobData::from(&[2; 500][..]), 512);
        assert_eq!((t2.pos, t2.bytes.len()), (512, 88));
        assert!(t2.bytes.iter().all(|b| *b == 2));
        let t3 = t2.advanced(&JobData::from(&[3; 424][..]), 512);
        assert_eq!((t3.pos, t3.bytes.len()), (1024, 0));
        let t4 = t3.advanced(&JobData::from(&[4; 2000][..]), 512);
        assert_eq!((t4.pos, t4.bytes.len()), (1024 + 1536, 464));
    }
}
