//! Log compaction of one partition, as Kafka's log cleaner does it.
//!
//! The cleanable part of the log is the sealed segments below the high watermark that are older
//! than `min.compaction.lag.ms`. Records below the first dirty offset (the cleaner checkpoint,
//! `cleaner-offset-checkpoint` in the partition directory) were cleaned before. One pass:
//! 1. builds a map from key to its newest offset over the dirty records, bounded by the memory
//!    it is given (a map that fills ends the pass early: the rest stays dirty for the next);
//! 2. rewrites the cleanable segments, merged into groups of at most `segment.bytes`, keeping a
//!    record if no newer record of its key exists below the map's end; keyless records go (they
//!    are refused at produce time on compacted topics), and so do tombstones that were cleaned
//!    before and whose batch is older than `delete.retention.ms`. Offsets never change.
//!    Control batches stay; a batch of an idempotent producer left empty stays as an empty
//!    batch when it may be that producer's last, so producer state survives compaction.
//! 3. swaps each group in crash-safely (see [`swap_in`]) and moves the checkpoint.
//!
//! Crash safety: the cleaned files are written as `<base>.log.cleaned` (and `.index.cleaned`,
//! `.timeindex.cleaned`) and synced; then a manifest `<base>.swap` naming the replaced segments
//! is written and synced: that is the commit point. Then the replaced segments are removed and
//! the cleaned files renamed into place, and the manifest goes. Recovery
//! ([`finish_interrupted_swaps`]) completes a swap whose manifest exists and deletes
//! `.cleaned` files that have none, so a crash leaves the old segments or the new, never a mix.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};

use super::super::compact::{self, Filtered};
use super::super::segment::{open_log_file, read_offset_file, write_offset_file, Segment};
use super::{remove_segment_files, PartitionLog};
use crate::record::{self, BatchHeader};
use crate::storage::{io_error, write_synced, StorageError};

/// The first offset not yet cleaned, per partition directory.
pub const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";
const CLEANED: &str = ".cleaned";
const SWAP: &str = "swap";
/// What one entry of the key map is charged besides its key bytes (offset, hash slot, heap
/// header), so the bound on the map is a bound on its memory.
const MAP_ENTRY_OVERHEAD: usize = 48;

/// Broker-wide cleaner settings, per shard.
#[derive(Debug, Clone)]
pub struct CleanerSettings {
    /// Memory for the key map of one pass.
    pub map_bytes: usize,
    /// Read plus write bytes per second (`log.cleaner.io.max.bytes.per.second`).
    pub io_max_bytes_per_second: f64,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub records_removed: u64,
    pub first_dirty_after: i64,
}

/// The part of the log a pass may clean, and how dirty it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleanable {
    pub first_dirty: i64,
    /// Offset after the last cleanable segment.
    pub end: i64,
    pub dirty_ratio: f64,
    /// The dirty part is older than `max.compaction.lag.ms`: clean whatever the ratio.
    pub overdue: bool,
}

/// One source segment of a pass, as it was when the pass began.
struct Source {
    base: i64,
    file: Rc<DmaFile>,
    bytes: u64,
    next_offset: i64,
}

impl PartitionLog {
    /// Whether a pass is due now: the log is compacted, has cleanable dirty segments, and
    /// their share reaches `min.cleanable.dirty.ratio` (or `max.compaction.lag.ms` passed).
    pub fn cleanable(&self, now_ms: i64) -> Option<Cleanable> {
        let st = self.inner.state.borrow();
        let config = st.config();
        if !config.compacted() || st.check_writable().is_err() {
            return None;
        }
        let first_dirty = self.first_dirty().max(st.log_start_offset);
        let lag_limit = now_ms.saturating_sub(config.min_compaction_lag_ms);
        let sealed = st.segments.len().saturating_sub(1);
        let (mut clean, mut dirty, mut end) = (0u64, 0u64, first_dirty);
        let mut oldest_dirty = i64::MAX;
        // Kafka cleans below the first unstable offset only: an open transaction may still
        // abort, and its records must not shadow older ones of their keys.
        let stable = st.producers.last_stable_offset(st.high_watermark);
        for seg in st.segments.values().take(sealed) {
            if !seg.sealed || seg.next_offset > stable || seg.max_timestamp() > lag_limit {
                break;
            }
            if seg.next_offset <= first_dirty {
                clean += seg.size_bytes;
            } else {
                dirty += seg.size_bytes;
                oldest_dirty = oldest_dirty.min(seg.max_timestamp().max(0));
                end = seg.next_offset;
            }
        }
        if end <= first_dirty || dirty == 0 {
            return None;
        }
        let dirty_ratio = dirty as f64 / (clean + dirty) as f64;
        let overdue = now_ms.saturating_sub(oldest_dirty) > config.max_compaction_lag_ms;
        (dirty_ratio >= config.min_cleanable_dirty_ratio || overdue).then_some(Cleanable {
            first_dirty,
            end,
            dirty_ratio,
            overdue,
        })
    }

    /// The cleaner checkpoint: records below it were cleaned before.
    fn first_dirty(&self) -> i64 {
        read_offset_file(&self.inner.dir, CLEANER_CHECKPOINT).unwrap_or(0)
    }

    fn set_first_dirty(&self, offset: i64) -> Result<(), StorageError> {
        write_offset_file(&self.inner.dir, CLEANER_CHECKPOINT, offset, true)
    }

    /// Runs one cleaning pass over `plan`'s range.
    pub async fn clean(
        &self,
        plan: &Cleanable,
        settings: &CleanerSettings,
        now_ms: i64,
    ) -> Result<CleanStats, StorageError> {
        let (sources, config) = {
            let st = self.inner.state.borrow();
            let sources: Vec<Source> = st
                .segments
                .values()
                // Sealed only: an empty active segment can end where the plan ends.
                .take_while(|s| s.sealed && s.next_offset <= plan.end)
                .filter_map(|s| {
                    Some(Source {
                        base: s.base_offset,
                        file: s.file.clone()?,
                        bytes: s.written_bytes,
                        next_offset: s.next_offset,
                    })
                })
                .collect();
            (sources, st.config().clone())
        };
        let mut throttle = Throttle::new(settings.io_max_bytes_per_second);
        let mut stats = CleanStats {
            segments_before: sources.len(),
            ..Default::default()
        };
        let map = self
            .build_map(
                &sources,
                plan,
                settings.map_bytes,
                &mut throttle,
                &mut stats,
            )
            .await?;
        let horizon = now_ms.saturating_sub(config.delete_retention_ms);
        for group in groups(&sources, map.end, config.segment_bytes) {
            let cleaned = self
                .clean_group(
                    group,
                    &map,
                    plan.first_dirty,
                    horizon,
                    &config,
                    &mut throttle,
                    &mut stats,
                )
                .await?;
            match cleaned {
                Some(seg) => {
                    if !self.swap_in(group, seg)? {
                        // The log changed under the pass (retention, truncation): stop here;
                        // the checkpoint stays, so the next pass starts over.
                        stats.first_dirty_after = plan.first_dirty;
                        return Ok(stats);
                    }
                    stats.segments_after += 1;
                }
                None => return Ok(stats),
            }
        }
        self.set_first_dirty(map.end)?;
        stats.first_dirty_after = map.end;
        Ok(stats)
    }

    async fn build_map(
        &self,
        sources: &[Source],
        plan: &Cleanable,
        map_bytes: usize,
        throttle: &mut Throttle,
        stats: &mut CleanStats,
    ) -> Result<KeyMap, StorageError> {
        let mut map = KeyMap {
            newest: HashMap::new(),
            last_batch_of: HashMap::new(),
            end: plan.end,
        };
        let mut charged = 0usize;
        'segments: for src in sources.iter().filter(|s| s.next_offset > plan.first_dirty) {
            let mut walker = super::super::segment::BatchWalker::new(
                src.file.clone(),
                self.seg_path(src.base),
                0,
                src.bytes,
            );
            while let Ok((_, h, bytes)) = walker.next().await? {
                stats.bytes_read += bytes.len() as u64;
                throttle.account(bytes.len()).await;
                if h.last_offset() < plan.first_dirty {
                    continue;
                }
                if h.producer_id >= 0 {
                    map.last_batch_of.insert(h.producer_id, h.base_offset);
                }
                // Records of aborted transactions never shadow older records of their keys
                // (read_committed consumers skip them; the aborted-transaction index stays).
                if h.is_control() || (h.is_transactional() && self.in_aborted_txn(&h)) {
                    continue;
                }
                let section = compact::record_section(&bytes, &h).map_err(|e| corrupt(src, e))?;
                for r in compact::records(&section, h.base_offset).map_err(|e| corrupt(src, e))? {
                    let Some(key) = r.key else { continue };
                    if r.offset < plan.first_dirty {
                        continue;
                    }
                    if let Some(o) = map.newest.get_mut(key) {
                        *o = r.offset;
                        continue;
                    }
                    let cost = key.len() + MAP_ENTRY_OVERHEAD;
                    if charged + cost > map_bytes && !map.newest.is_empty() {
                        map.end = r.offset;
                        break 'segments;
                    }
                    charged += cost;
                    map.newest.insert(key.to_vec(), r.offset);
                }
                throttle.share_cpu().await;
            }
        }
        Ok(map)
    }

    /// Whether a transactional batch belongs to a transaction an ABORT marker ended.
    fn in_aborted_txn(&self, h: &BatchHeader) -> bool {
        let st = self.inner.state.borrow();
        st.segments.values().any(|s| {
            s.aborted.iter().any(|t| {
                t.producer_id == h.producer_id
                    && t.first_offset <= h.base_offset
                    && h.base_offset <= t.last_offset
            })
        })
    }

    fn seg_path(&self, base: i64) -> PathBuf {
        self.inner
            .dir
            .join(super::super::segment::file_name(base, "log"))
    }

    /// Writes the cleaned copy of `group` as `.cleaned` files; None if the group's first
    /// segment reaches past the map (nothing of it may be cleaned).
    #[allow(clippy::too_many_arguments)]
    async fn clean_group(
        &self,
        group: &[Source],
        map: &KeyMap,
        first_dirty: i64,
        horizon: i64,
        config: &crate::config::LogConfig,
        throttle: &mut Throttle,
        stats: &mut CleanStats,
    ) -> Result<Option<Segment>, StorageError> {
        let Some(first) = group.first() else {
            return Ok(None);
        };
        let dir = self.inner.dir.clone();
        let mut seg = Segment::new(&dir, first.base, config.index_interval_bytes, 0);
        let path = cleaned(&seg.path("log"));
        let file = DmaFile::create(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        let mut out = DmaStreamWriterBuilder::new(file)
            .with_buffer_size(128 << 10)
            .build();
        for src in group {
            let mut walker = super::super::segment::BatchWalker::new(
                src.file.clone(),
                self.seg_path(src.base),
                0,
                src.bytes,
            );
            while let Ok((_, h, bytes)) = walker.next().await? {
                throttle.account(bytes.len()).await;
                stats.bytes_read += bytes.len() as u64;
                let last_of_producer = h.producer_id >= 0
                    && match map.last_batch_of.get(&h.producer_id) {
                        Some(base) => *base == h.base_offset,
                        // Not in the dirty part: its last batch may be this one.
                        None => true,
                    };
                let mut removed = 0u64;
                let filtered = compact::filter_batch(&bytes, &h, config, last_of_producer, |r| {
                    let keep = keep_record(r, &h, map, first_dirty, horizon);
                    removed += u64::from(!keep);
                    keep
                })
                .map_err(|e| corrupt(src, e))?;
                stats.records_removed += removed;
                let written: Option<(BatchHeader, &[u8])> = match &filtered {
                    Filtered::Whole => Some((h, &bytes[..])),
                    Filtered::Part(b) => {
                        Some((record::validate(b).map_err(|e| corrupt(src, e))?, &b[..]))
                    }
                    Filtered::Gone => None,
                };
                if let Some((wh, wb)) = written {
                    seg.note_batch(&wh);
                    out.write_all(wb).await.map_err(|e| io_error(&path, e))?;
                    stats.bytes_written += wb.len() as u64;
                    throttle.account(wb.len()).await;
                }
                throttle.share_cpu().await;
            }
        }
        // Closing syncs the file and trims the direct-I/O padding.
        out.close().await.map_err(|e| io_error(&path, e))?;
        let last = group.last().unwrap_or(first);
        seg.next_offset = last.next_offset;
        seg.written_bytes = seg.size_bytes;
        seg.seal_time_index();
        write_synced(&cleaned(&seg.path("index")), &seg.offset_index.encode())?;
        write_synced(&cleaned(&seg.path("timeindex")), &seg.time_index.encode())?;
        seg.file = Some(Rc::new(open_log_file(&path).await?));
        seg.sealed = true;
        Ok(Some(seg))
    }

    /// Puts the cleaned segment in place of `group`, on disk and in memory; false (and the
    /// cleaned files gone) if the log no longer holds exactly those segments.
    fn swap_in(&self, group: &[Source], seg: Segment) -> Result<bool, StorageError> {
        let dir = self.inner.dir.clone();
        let mut st = self.inner.state.borrow_mut();
        let intact = st.check_writable().is_ok()
            && group.iter().all(|src| {
                st.segments.get(&src.base).is_some_and(|s| {
                    s.sealed && s.file.as_ref().is_some_and(|f| Rc::ptr_eq(f, &src.file))
                })
            });
        if !intact {
            drop(st);
            remove_cleaned(&seg)?;
            return Ok(false);
        }
        let bases: Vec<i64> = group.iter().map(|s| s.base).collect();
        let mut seg = seg;
        seg.aborted = bases
            .iter()
            .filter_map(|b| st.segments.get(b))
            .flat_map(|s| s.aborted.iter().copied())
            .collect();
        if !seg.aborted.is_empty() {
            // Part of the swap: the merged segment keeps every aborted transaction of the
            // segments it replaces.
            let txns = seg.path(super::super::txn_index::EXTENSION);
            write_synced(
                &cleaned(&txns),
                &super::super::txn_index::encode(&seg.aborted),
            )?;
        }
        let manifest = dir.join(super::super::segment::file_name(seg.base_offset, SWAP));
        write_synced(
            &manifest,
            bases
                .iter()
                .map(|b| format!("{b}\n"))
                .collect::<String>()
                .as_bytes(),
        )?;
        sync_dir(&dir)?;
        let delay_ms = st.config().file_delete_delay_ms;
        for base in &bases {
            let Some(old) = st.segments.remove(base) else {
                continue;
            };
            if *base != seg.base_offset {
                remove_segment_files(&old, delay_ms)?;
            }
        }
        promote_cleaned(&dir, seg.base_offset)?;
        std::fs::remove_file(&manifest).map_err(|e| io_error(&manifest, e))?;
        sync_dir(&dir)?;
        let end = seg.next_offset;
        st.segments.insert(seg.base_offset, seg);
        // Cached copies of what was just cleaned would be served instead of the cleaned log.
        st.cache.drop_below(end);
        Ok(true)
    }
}

/// The key map of one pass.
struct KeyMap {
    newest: HashMap<Vec<u8>, i64>,
    /// The last batch of each idempotent producer in the dirty part.
    last_batch_of: HashMap<i64, i64>,
    /// Records at or past this offset are not in the map and are kept as they are.
    end: i64,
}

fn keep_record(
    r: &compact::RecordView<'_>,
    h: &BatchHeader,
    map: &KeyMap,
    first_dirty: i64,
    horizon: i64,
) -> bool {
    if r.offset >= map.end {
        return true;
    }
    let Some(key) = r.key else {
        return false;
    };
    if map.newest.get(key).is_some_and(|newest| *newest > r.offset) {
        return false;
    }
    !(r.tombstone && r.offset < first_dirty && h.max_timestamp < horizon)
}

/// Consecutive segments below `end`, merged while their sum stays within `max_bytes` (Kafka's
/// `groupSegmentsBySize`; cleaning only shrinks them).
fn groups(sources: &[Source], end: i64, max_bytes: u64) -> Vec<&[Source]> {
    let mut out = Vec::new();
    let eligible = sources.iter().take_while(|s| s.base < end).count();
    let mut start = 0;
    while start < eligible {
        let mut stop = start + 1;
        let mut bytes = sources[start].bytes;
        while stop < eligible && bytes + sources[stop].bytes <= max_bytes {
            bytes += sources[stop].bytes;
            stop += 1;
        }
        out.push(&sources[start..stop]);
        start = stop;
    }
    out
}

fn corrupt(src: &Source, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: PathBuf::from(format!("segment {}", src.base)),
        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

fn cleaned(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(CLEANED);
    PathBuf::from(p)
}

fn remove_cleaned(seg: &Segment) -> Result<(), StorageError> {
    for ext in [
        "log",
        "index",
        "timeindex",
        super::super::txn_index::EXTENSION,
    ] {
        let path = cleaned(&seg.path(ext));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    Ok(())
}

/// Renames `<base>.*.cleaned` over the segment's files, indexes first, the log last.
fn promote_cleaned(dir: &Path, base: i64) -> Result<(), StorageError> {
    for ext in [
        "index",
        "timeindex",
        super::super::txn_index::EXTENSION,
        "log",
    ] {
        let path = dir.join(super::super::segment::file_name(base, ext));
        let from = cleaned(&path);
        match std::fs::rename(&from, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&from, e)),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Completes the swaps a crash interrupted and removes cleaned files that were never
/// committed. Runs before the segments are listed, when a log is opened.
pub fn finish_interrupted_swaps(dir: &Path) -> Result<(), StorageError> {
    let mut manifests = Vec::new();
    let mut strays = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = super::super::segment::parse_file_name(&name, SWAP) {
            manifests.push((base, entry.path()));
        } else if name.ends_with(CLEANED) {
            strays.push((name, entry.path()));
        }
    }
    for (base, manifest) in &manifests {
        let text = std::fs::read_to_string(manifest).map_err(|e| io_error(manifest, e))?;
        for old in text.lines().filter_map(|l| l.trim().parse::<i64>().ok()) {
            if old == *base {
                continue;
            }
            for ext in [
                "log",
                "index",
                "timeindex",
                super::super::txn_index::EXTENSION,
            ] {
                let path = dir.join(super::super::segment::file_name(old, ext));
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path, e)),
                }
            }
        }
        promote_cleaned(dir, *base)?;
        std::fs::remove_file(manifest).map_err(|e| io_error(manifest, e))?;
        tracing::info!(dir = %dir.display(), base, "finished a cleaner swap a crash interrupted");
    }
    for (name, path) in strays {
        let committed = manifests
            .iter()
            .any(|(base, _)| name.starts_with(&super::super::segment::file_name(*base, "")));
        if !committed {
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// The longest the cleaner computes before it lets request handling on its shard run.
const CPU_SLICE: Duration = Duration::from_micros(250);

/// Paces the cleaner's I/O to a byte rate, and its computing to short slices.
struct Throttle {
    rate: f64,
    started: Instant,
    bytes: f64,
    slice_started: Instant,
}

impl Throttle {
    fn new(rate: f64) -> Self {
        Throttle {
            rate,
            started: Instant::now(),
            bytes: 0.0,
            slice_started: Instant::now(),
        }
    }

    /// Yields the cleaner's task queue after each slice of CPU time. glommio preempts a task
    /// queue only when a latency-sensitive queue waits or after its preempt timer (100 ms);
    /// request handling runs in the default queue, so the cleaner hands the shard back itself.
    async fn share_cpu(&mut self) {
        if self.slice_started.elapsed() >= CPU_SLICE {
            glommio::executor().yield_task_queue_now().await;
            self.slice_started = Instant::now();
        }
    }

    async fn account(&mut self, n: usize) {
        if !self.rate.is_finite() || self.rate <= 0.0 || self.rate >= f64::MAX / 2.0 {
            return;
        }
        self.bytes += n as f64;
        let due = Duration::from_secs_f64(self.bytes / self.rate);
        let elapsed = self.started.elapsed();
        if due > elapsed + Duration::from_millis(5) {
            glommio::timer::sleep(due - elapsed).await;
        }
    }
}
