//! Opening a partition directory: finding the segments, checking or rebuilding their indexes,
//! and cutting a torn tail off the active segment.
//!
//! Sealed segments were synced when they rolled, so only their indexes are checked (size, order,
//! bounds, and the last offset entry against the batch it points at) and rebuilt from the log
//! when wrong or missing. The active segment is scanned batch by batch (CRC checked) and
//! truncated at the first batch that is incomplete, corrupt or zero padding.
//! Directory listing and index files use std::fs: this runs once per partition at open.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use super::index::{OffsetIndex, TimeIndex};
use glommio::io::DmaFile;

use super::segment::{
    open_log_file, parse_file_name, BatchWalker, Segment, Tail, WalkEnd, DELETED_SUFFIX,
};
use super::txn_index::{self, AbortedTxn};
use super::{io_error, StorageError};
use crate::config::LogConfig;
use crate::producer::{marker, CompletedTxn, PartitionProducers};

/// The segments of a recovered log, the partial last block of its active segment, and the
/// producer state of its batches (the newest snapshot plus the batches after it).
pub struct Recovered {
    pub segments: BTreeMap<i64, Segment>,
    pub tail: Tail,
    pub producers: PartitionProducers,
}

pub async fn recover(
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Recovered, StorageError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    remove_deleted_files(dir)?;
    let mut bases = list_segments(dir)?;
    if bases.is_empty() {
        bases.push(0);
    }
    let interval = config.index_interval_bytes;
    let mut segments = BTreeMap::new();
    for pair in bases.windows(2) {
        let seg = load_sealed(dir, pair[0], pair[1], interval, now_ms).await?;
        segments.insert(pair[0], seg);
    }
    let last = bases[bases.len() - 1];
    let (mut active, tail) = recover_active(dir, last, interval, now_ms).await?;
    active.aborted = txn_index::load(&active.path(txn_index::EXTENSION)).unwrap_or_default();
    segments.insert(last, active);
    let max_producers = config.bounds.producers_per_partition;
    let producers = rebuild_producers(dir, &mut segments, max_producers).await?;
    Ok(Recovered {
        segments,
        tail,
        producers,
    })
}

/// Producer state from the newest snapshot at or below the log end, then the batches after
/// it (from the first segment when there is no snapshot). The aborted-transaction index of
/// every segment replayed is rebuilt from the markers found. The count bound
/// (`producer.state.max.producers.per.partition`) applies to the replay as to live appends.
async fn rebuild_producers(
    dir: &Path,
    segments: &mut BTreeMap<i64, Segment>,
    max_producers: usize,
) -> Result<PartitionProducers, StorageError> {
    let end = segments.values().next_back().map_or(0, |s| s.next_offset);
    let first = segments.keys().next().copied().unwrap_or(0);
    let (start, mut producers) = match super::snapshots::load_newest(dir, first, end) {
        Some((offset, state)) => (offset, state),
        None => (first, PartitionProducers::default()),
    };
    for seg in segments.values_mut() {
        // Entries past the log end (a truncation cut their markers) are stale.
        if seg.aborted.iter().any(|t| t.last_offset >= end) {
            seg.aborted.retain(|t| t.last_offset < end);
            txn_index::persist(&seg.path(txn_index::EXTENSION), &seg.aborted)?;
        }
    }
    for seg in segments.values_mut().filter(|s| s.next_offset > start) {
        let mut aborted: Vec<AbortedTxn> = seg
            .aborted
            .iter()
            .filter(|t| t.last_offset < start)
            .copied()
            .collect();
        let position = match start > seg.base_offset {
            true => seg.offset_index.lookup(start).1 as u64,
            false => 0,
        };
        let Some(mut walker) = seg.walker(position, seg.written_bytes) else {
            continue;
        };
        while let Ok((_, h, bytes)) = walker.next().await? {
            if h.base_offset < start || h.producer_id < 0 {
                continue;
            }
            let marker = h.is_control().then(|| marker::parse(&bytes)).flatten();
            if let Some(done) = producers.appended(&h, marker) {
                if done.aborted {
                    aborted.push(aborted_entry(&producers, &done));
                }
            }
            producers.evict_idle(max_producers, h.producer_id);
        }
        if aborted != seg.aborted {
            seg.aborted = aborted;
            txn_index::persist(&seg.path(txn_index::EXTENSION), &seg.aborted)?;
        }
    }
    if producers.evicted() > 0 {
        tracing::info!(
            dir = %dir.display(),
            evicted = producers.evicted(),
            remaining = producers.len(),
            bound = max_producers,
            "recovery forgot the producers idle longest: more than \
             producer.state.max.producers.per.partition"
        );
    }
    Ok(producers)
}

/// The index entry of a transaction an ABORT marker just completed.
pub fn aborted_entry(producers: &PartitionProducers, done: &CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        producer_id: done.producer_id,
        first_offset: done.first_offset,
        last_offset: done.last_offset,
        last_stable_offset: producers.stable_offset_after(done),
    }
}

/// Segment files retention renamed away before a crash cut their delayed removal short.
fn remove_deleted_files(dir: &Path) -> Result<(), StorageError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(DELETED_SUFFIX)
        {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
    }
    Ok(())
}

/// Base offsets of the `.log` files in `dir`, sorted. Badly named logs are skipped loudly.
fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".log") {
            continue;
        }
        match parse_file_name(&name, "log") {
            Some(base) => bases.push(base),
            None => tracing::warn!(dir = %dir.display(), file = %name, "ignoring badly named log"),
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

async fn open_segment(
    dir: &Path,
    base_offset: i64,
    interval: u32,
    now_ms: i64,
) -> Result<(Segment, u64), StorageError> {
    let mut seg = Segment::new(dir, base_offset, interval, now_ms);
    let path = seg.path("log");
    let file = open_log_file(&path).await?;
    let file_bytes = file.file_size().await.map_err(|e| io_error(&path, e))?;
    seg.file = Some(Rc::new(file));
    Ok((seg, file_bytes))
}

async fn load_sealed(
    dir: &Path,
    base_offset: i64,
    next_base: i64,
    interval: u32,
    now_ms: i64,
) -> Result<Segment, StorageError> {
    let (mut seg, file_bytes) = open_segment(dir, base_offset, interval, now_ms).await?;
    let aborted = txn_index::load(&seg.path(txn_index::EXTENSION));
    match load_indexes(&seg, file_bytes, next_base).await? {
        Ok((offsets, times)) => {
            seg.adopt_indexes(offsets, times);
            seg.size_bytes = file_bytes;
            seg.written_bytes = file_bytes;
            seg.next_offset = next_base;
        }
        Err(why) => {
            let path = seg.path("index");
            tracing::warn!(index = %path.display(), %why, "rebuilding segment indexes");
            let end = rebuild(&mut seg, file_bytes).await?;
            if end != WalkEnd::Clean {
                tracing::warn!(log = %seg.path("log").display(), position = seg.size_bytes,
                    ?end, "sealed segment ends in bad data; reading stops there");
            }
            seg.written_bytes = seg.size_bytes;
            seg.seal_time_index();
            seg.aborted = aborted.clone().unwrap_or_default();
            seg.persist_indexes()?;
        }
    }
    // An unreadable index is rebuilt by the producer-state replay only when the replay
    // covers this segment; otherwise its entries are lost (a read_committed consumer would
    // then see that segment's aborted records), which is logged when the file is read.
    seg.aborted = aborted.unwrap_or_default();
    seg.sealed = true;
    Ok(seg)
}

/// The segment's index files if they can be trusted; else why not.
async fn load_indexes(
    seg: &Segment,
    file_bytes: u64,
    next_base: i64,
) -> Result<Result<(OffsetIndex, TimeIndex), String>, StorageError> {
    let read = |ext: &str| std::fs::read(seg.path(ext)).map_err(|e| format!("{ext}: {e}"));
    let decoded = read("index")
        .and_then(|b| OffsetIndex::decode(seg.base_offset, &b, file_bytes))
        .and_then(|o| {
            let t = read("timeindex")
                .and_then(|b| TimeIndex::decode(seg.base_offset, &b, next_base))?;
            Ok((o, t))
        });
    let (offsets, times) = match decoded {
        Ok(pair) => pair,
        Err(why) => return Ok(Err(why)),
    };
    if let Some((offset, position)) = offsets.last() {
        if offset >= next_base {
            return Ok(Err(format!("last entry {offset} is past the segment")));
        }
        let mut walker = opened(seg).walker(position as u64, file_bytes);
        match walker.next().await? {
            Ok((_, h, _)) if h.last_offset() == offset => {}
            other => return Ok(Err(format!("last entry {offset} points at {other:?}"))),
        }
    }
    Ok(Ok((offsets, times)))
}

/// A segment being recovered always has its file open.
fn opened(seg: &Segment) -> OpenSegment<'_> {
    match &seg.file {
        Some(file) => OpenSegment { seg, file },
        None => unreachable!("segment {} recovered without its file", seg.base_offset),
    }
}

struct OpenSegment<'a> {
    seg: &'a Segment,
    file: &'a Rc<DmaFile>,
}

impl OpenSegment<'_> {
    fn walker(&self, position: u64, end: u64) -> BatchWalker {
        BatchWalker::new(self.file.clone(), self.seg.path("log"), position, end)
    }
}

/// Rebuilds the segment's bookkeeping and indexes by scanning its log from the start.
async fn rebuild(seg: &mut Segment, file_bytes: u64) -> Result<WalkEnd, StorageError> {
    let mut fresh = Segment::new(
        &seg.dir,
        seg.base_offset,
        seg.index_interval(),
        seg.created_ms,
    );
    fresh.file = seg.file.take();
    *seg = fresh;
    let mut walker = opened(seg).walker(0, file_bytes);
    loop {
        match walker.next().await? {
            Ok((position, h, _)) => {
                if h.base_offset < seg.next_offset {
                    let why = format!("offset {} after {}", h.base_offset, seg.next_offset);
                    return Ok(WalkEnd::Corrupt(why));
                }
                // The base offset is outside the CRC: a damaged one can point anywhere. Offsets
                // the segment's indexes cannot hold (relative offsets are u32) end the walk.
                let fits = h
                    .base_offset
                    .checked_add(h.last_offset_delta as i64)
                    .is_some_and(|last| {
                        last < i64::MAX && last - seg.base_offset <= u32::MAX as i64
                    });
                if !fits {
                    let why = format!(
                        "batch at offset {} does not fit segment {}",
                        h.base_offset, seg.base_offset
                    );
                    return Ok(WalkEnd::Corrupt(why));
                }
                assert_eq!(position, seg.size_bytes, "walk and segment disagree");
                seg.note_batch(&h);
            }
            Err(end) => return Ok(end),
        }
    }
}

async fn recover_active(
    dir: &Path,
    base_offset: i64,
    interval: u32,
    now_ms: i64,
) -> Result<(Segment, Tail), StorageError> {
    let (mut seg, file_bytes) = open_segment(dir, base_offset, interval, now_ms).await?;
    let end = rebuild(&mut seg, file_bytes).await?;
    let valid_bytes = seg.size_bytes;
    let path = seg.path("log");
    let file = opened(&seg).file.clone();
    if end != WalkEnd::Clean {
        tracing::warn!(log = %path.display(), position = valid_bytes, file_bytes, ?end,
            "truncating the torn tail of the active segment");
    }
    if file_bytes > valid_bytes {
        file.truncate(valid_bytes)
            .await
            .map_err(|e| io_error(&path, e))?;
        file.fdatasync().await.map_err(|e| io_error(&path, e))?;
    }
    seg.written_bytes = valid_bytes;
    let align = file.alignment();
    let pos = valid_bytes / align * align;
    let mut bytes = Vec::new();
    if valid_bytes > pos {
        let read = file
            .read_at(pos, (valid_bytes - pos) as usize)
            .await
            .map_err(|e| io_error(&path, e))?;
        bytes.extend_from_slice(&read);
    }
    // The file now ends at the data: the writer allocates ahead again from here.
    let allocated = valid_bytes;
    Ok((
        seg,
        Tail {
            pos,
            bytes,
            allocated,
            zeroed: allocated,
        },
    ))
}
