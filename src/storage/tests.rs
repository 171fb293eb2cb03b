//! Partition log tests against real files through glommio: round trips, group commit, recovery
//! of torn tails and broken indexes, retention, timestamps and the on-disk layout.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::{PartitionLog, StorageError};
use crate::config::{Config, LogConfig, TimestampType};
use crate::record::tests::make_batch;
use crate::record::{self, BatchHeader, Scan};

fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(f());
}

fn config(segment_bytes: u64) -> LogConfig {
    let mut c = Config::default().log;
    c.segment_bytes = segment_bytes;
    c.index_interval_bytes = 100;
    c
}

async fn open(dir: &Path, config: LogConfig, cache_bytes: usize) -> Rc<PartitionLog> {
    PartitionLog::open(dir.to_path_buf(), config, cache_bytes, 1_000)
        .await
        .unwrap()
}

/// Appends batches of 1..=4 records with timestamps 1000, 1010, ...; returns the bytes as
/// stored (base offset assigned).
fn append_many(log: &PartitionLog, n: usize) -> Vec<Bytes> {
    let mut stored = Vec::new();
    for i in 0..n {
        let count = 1 + (i % 4) as i32;
        let mut b = make_batch(0, count, 1000 + 10 * i as i64);
        let info = log
            .append(bytes::Bytes::copy_from_slice(&b[..]), 1_000)
            .unwrap();
        record::set_base_offset(&mut b, info.base_offset);
        // The log stamps the epoch it leads in (0 when it was never told one).
        record::set_partition_leader_epoch(&mut b, log.latest_epoch().unwrap_or(0));
        assert_eq!(info.last_offset, info.base_offset + count as i64 - 1);
        stored.push(Bytes::from(b));
    }
    stored
}

fn base(b: &Bytes) -> i64 {
    BatchHeader::parse(b).unwrap().base_offset
}

/// Reads every batch from the start, one read per batch, and compares with `stored`.
async fn assert_reads_back(log: &PartitionLog, stored: &[Bytes]) {
    for want in stored {
        let h = BatchHeader::parse(want).unwrap();
        for offset in [h.base_offset, h.last_offset()] {
            let got = log.read(offset, 1, true).await.unwrap();
            assert_eq!(got.batches, vec![want.clone()], "read at {offset}");
        }
    }
    let end = log.read(log.high_watermark(), 1 << 20, true).await.unwrap();
    assert!(end.batches.is_empty());
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_across_segments_from_cache_and_disk() {
    for cache_bytes in [0usize, 700, 1 << 20] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log = open(dir.path(), config(1000), cache_bytes).await;
            let stored = append_many(&log, 60);
            log.wait_written(log.log_end_offset()).await.unwrap();
            assert!(log.segment_count() > 3, "cache {cache_bytes}");
            assert!(log.cached_bytes() <= cache_bytes);
            assert_eq!(log.high_watermark(), log.log_end_offset());
            assert_reads_back(&log, &stored).await;
            log.close().await.unwrap();
        });
    }
}

#[test]
fn read_limits_max_bytes_and_min_one() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1 << 20), 0).await;
        let stored = append_many(&log, 8);
        log.wait_written(log.log_end_offset()).await.unwrap();
        let len = stored[1].len() + stored[2].len();
        let offset = base(&stored[1]) + 1; // inside batch 1
        let table: &[(usize, bool, usize)] = &[
            (len, false, 2),
            (len + stored[3].len() - 1, true, 2),
            (1, true, 1),
            (1, false, 0),
            (1 << 20, false, 7),
        ];
        for &(max_bytes, min_one, want) in table {
            let got = log.read(offset, max_bytes, min_one).await.unwrap();
            assert_eq!(got.batches.len(), want, "max {max_bytes} min_one {min_one}");
            assert_eq!(&got.batches[..], &stored[1..1 + want]);
            assert_eq!(got.bytes, got.batches.iter().map(Bytes::len).sum::<usize>());
        }
        let past = log.read(log.high_watermark() + 1, 100, true).await;
        assert!(matches!(past, Err(StorageError::OffsetOutOfRange { .. })));
    });
}

#[test]
fn group_commit_takes_many_appends_in_one_write() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1 << 20), 1 << 20).await;
        let stored = append_many(&log, 200);
        assert_eq!(log.high_watermark(), 0, "nothing readable before the write");
        log.wait_written(log.log_end_offset()).await.unwrap();
        // The writer may start at the first append; the other 199 share the next write.
        let first = log.write_count();
        assert!((1..=2).contains(&first), "{first} writes for 200 appends");
        let more = append_many(&log, 3);
        log.wait_written(log.log_end_offset()).await.unwrap();
        assert!(log.write_count() - first <= 2);
        assert_eq!(log.sync_count(), 0, "no flush policy, no syncs");
        let all: Vec<Bytes> = stored.into_iter().chain(more).collect();
        assert_reads_back(&log, &all).await;
    });
}

#[test]
fn flush_messages_policy_syncs() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(1 << 20);
        c.flush_messages = Some(1);
        let log = open(dir.path(), c, 0).await;
        for _ in 0..3 {
            append_many(&log, 1);
            log.wait_written(log.log_end_offset()).await.unwrap();
        }
        assert_eq!(log.sync_count(), 3);
    });
}

#[test]
fn flush_ms_syncs_an_idle_log_from_the_timer() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(1 << 20);
        c.flush_ms = Some(100);
        let log = open(dir.path(), c, 0).await;
        append_many(&log, 2);
        log.wait_written(log.log_end_offset()).await.unwrap();
        assert_eq!(
            log.sync_count(),
            0,
            "young data is not synced by the writer"
        );
        log.sync_if_due(1_050).await.unwrap();
        assert_eq!(log.sync_count(), 0, "not due yet");
        log.sync_if_due(1_100).await.unwrap();
        assert_eq!(log.sync_count(), 1);
        log.sync_if_due(5_000).await.unwrap();
        assert_eq!(log.sync_count(), 1, "nothing left unsynced");
    });
}

#[test]
fn reopen_after_close_restores_offsets_and_bytes() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1500), 0).await;
        let mut stored = append_many(&log, 40);
        log.close().await.unwrap();
        let leo = log.log_end_offset();
        assert!(matches!(
            log.append(bytes::Bytes::copy_from_slice(&stored[0][..]), 1),
            Err(StorageError::Closed(_))
        ));
        assert!(matches!(
            log.read(0, 10, true).await,
            Err(StorageError::Closed(_))
        ));
        let log = open(dir.path(), config(1500), 0).await;
        assert_eq!(
            (
                log.log_start_offset(),
                log.high_watermark(),
                log.log_end_offset()
            ),
            (0, leo, leo)
        );
        stored.extend(append_many(&log, 5));
        assert_eq!(base(&stored[40]), leo);
        log.wait_written(log.log_end_offset()).await.unwrap();
        assert_reads_back(&log, &stored).await;
    });
}

type Damage = fn(&mut Vec<u8>, usize);

#[test]
fn torn_tail_is_cut_at_the_last_valid_batch() {
    // (name, damage to the active .log given the start of its last batch, batches kept)
    let table: &[(&str, Damage, usize)] = &[
        (
            "garbage appended",
            |f, _| f.extend_from_slice(&[0xab; 37]),
            10,
        ),
        (
            "partial batch",
            |f, _| f.extend_from_slice(&make_batch(0, 3, 1)[..50]),
            10,
        ),
        ("zero padding", |f, _| f.extend_from_slice(&[0; 4096]), 10),
        (
            "byte flipped in last batch",
            |f, last| f[last + 70] ^= 0x40,
            9,
        ),
        ("last batch cut short", |f, last| f.truncate(last + 20), 9),
    ];
    for &(name, damage, kept) in table {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log = open(dir.path(), config(1 << 20), 0).await;
            let stored = append_many(&log, 10);
            log.close().await.unwrap();
            let path = log_files(dir.path()).pop().unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - stored[9].len();
            damage(&mut bytes, last);
            std::fs::write(&path, &bytes).unwrap();
            let log = open(dir.path(), config(1 << 20), 0).await;
            let want_leo = BatchHeader::parse(&stored[kept - 1]).unwrap().next_offset();
            assert_eq!(log.log_end_offset(), want_leo, "{name}");
            let mut kept_batches = stored[..kept].to_vec();
            kept_batches.extend(append_many(&log, 2));
            assert_eq!(base(&kept_batches[kept]), want_leo, "{name}");
            log.wait_written(log.log_end_offset()).await.unwrap();
            assert_reads_back(&log, &kept_batches).await;
        });
    }
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1000), 0).await;
        let stored = append_many(&log, 60);
        log.close().await.unwrap();
        let logs = log_files(dir.path());
        assert!(logs.len() >= 4);
        let idx = |i: usize, ext: &str| logs[i].with_extension(ext);
        let good_index = std::fs::read(idx(0, "index")).unwrap();
        assert!(!good_index.is_empty() && good_index.len() % 8 == 0);
        std::fs::remove_file(idx(0, "index")).unwrap();
        std::fs::remove_file(idx(1, "timeindex")).unwrap();
        std::fs::write(idx(2, "index"), [1u8; 13]).unwrap();
        let mut swapped = std::fs::read(idx(1, "index")).unwrap();
        swapped.rotate_left(8);
        std::fs::write(idx(1, "index"), swapped).unwrap();
        let log = open(dir.path(), config(1000), 0).await;
        assert_eq!(std::fs::read(idx(0, "index")).unwrap(), good_index);
        assert_eq!(std::fs::read(idx(2, "index")).unwrap().len() % 8, 0);
        assert_eq!(std::fs::read(idx(1, "timeindex")).unwrap().len() % 12, 0);
        assert_reads_back(&log, &stored).await;
        let hit = log.offset_for_timestamp(1000 + 10 * 30).await.unwrap();
        assert_eq!(hit, Some((base(&stored[30]), 1300)));
    });
}

#[test]
fn offset_for_timestamp_finds_first_batch_reaching_it() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(800), 0).await;
        let stored = append_many(&log, 40); // timestamps 1000, 1010, ..., 1390
        log.wait_written(log.log_end_offset()).await.unwrap();
        let table: &[(i64, Option<usize>)] = &[
            (0, Some(0)),
            (1000, Some(0)),
            (1001, Some(1)),
            (1205, Some(21)),
            (1390, Some(39)),
            (1391, None),
        ];
        for &(ts, want) in table {
            let got = log.offset_for_timestamp(ts).await.unwrap();
            let want = want.map(|i| (base(&stored[i]), 1000 + 10 * i as i64));
            assert_eq!(got, want, "timestamp {ts}");
        }
    });
}

#[test]
fn log_append_time_is_stamped_by_the_broker() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(1 << 20);
        c.timestamp_type = TimestampType::LogAppendTime;
        let log = open(dir.path(), c, 0).await;
        let info = log
            .append(
                bytes::Bytes::copy_from_slice(&make_batch(0, 2, 5)[..]),
                777_000,
            )
            .unwrap();
        assert_eq!(info.log_append_time_ms, 777_000);
        log.wait_written(info.last_offset + 1).await.unwrap();
        let got = log.read(0, 1 << 20, true).await.unwrap();
        let h = record::validate(&got.batches[0]).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 777_000);
        let create = open(tempfile::tempdir().unwrap().path(), config(1 << 20), 0).await;
        let info = create
            .append(bytes::Bytes::copy_from_slice(&make_batch(0, 1, 5)[..]), 9)
            .unwrap();
        assert_eq!(info.log_append_time_ms, -1);
    });
}

#[test]
fn retention_by_time_deletes_old_segments_and_moves_log_start() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(800);
        c.retention_ms = 100;
        let log = open(dir.path(), c, 0).await;
        let stored = append_many(&log, 40); // timestamps 1000..=1390
        log.wait_written(log.log_end_offset()).await.unwrap();
        let segments = log.segment_count();
        assert_eq!(log.apply_retention(1000).await.unwrap(), 0);
        let gone = log.apply_retention(1250).await.unwrap();
        assert!(gone > 0 && gone < segments, "{gone} of {segments}");
        assert_eq!(log.segment_count(), segments - gone);
        let start = log.log_start_offset();
        assert!(start > 0);
        let below = log.read(start - 1, 1 << 20, true).await;
        assert!(matches!(below, Err(StorageError::OffsetOutOfRange { .. })));
        assert_eq!(log_files(dir.path()).len(), segments - gone);
        let kept: Vec<Bytes> = stored.into_iter().filter(|b| base(b) >= start).collect();
        assert_reads_back(&log, &kept).await;
        // Everything old: the active segment goes too, after a roll keeps the log end.
        let leo = log.log_end_offset();
        assert_eq!(log.apply_retention(10_000).await.unwrap(), segments - gone);
        assert_eq!((log.segment_count(), log.log_start_offset()), (1, leo));
        assert_eq!((log.high_watermark(), log.log_end_offset()), (leo, leo));
        let more = append_many(&log, 2);
        assert_eq!(base(&more[0]), leo);
        log.wait_written(log.log_end_offset()).await.unwrap();
        assert_reads_back(&log, &more).await;
        log.close().await.unwrap();
        let log = open(dir.path(), config(800), 0).await;
        assert_eq!(log.log_start_offset(), leo);
    });
}

#[test]
fn retention_needs_a_delete_policy() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(800);
        c.retention_ms = 100;
        c.retention_bytes = 1;
        c.cleanup_policy = "compact".to_string();
        let log = open(dir.path(), c.clone(), 0).await;
        append_many(&log, 40);
        log.wait_written(log.log_end_offset()).await.unwrap();
        let segments = log.segment_count();
        assert!(segments > 2);
        assert_eq!(log.apply_retention(i64::MAX).await.unwrap(), 0);
        assert_eq!((log.segment_count(), log.log_start_offset()), (segments, 0));
        c.cleanup_policy = "compact,delete".to_string();
        log.update_config(c);
        assert!(log.apply_retention(i64::MAX).await.unwrap() > 0);
    });
}

#[test]
fn retention_by_size_keeps_at_least_retention_bytes() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(800);
        c.retention_ms = -1;
        c.retention_bytes = 2000;
        let log = open(dir.path(), c.clone(), 0).await;
        append_many(&log, 40);
        log.wait_written(log.log_end_offset()).await.unwrap();
        let before = log.size_bytes();
        let gone = log.apply_retention(i64::MAX).await.unwrap();
        assert!(gone > 0);
        assert!(log.size_bytes() >= 2000 && log.size_bytes() < before);
        assert_eq!(log.apply_retention(i64::MAX).await.unwrap(), 0);
        c.retention_bytes = -1;
        log.update_config(c);
        assert_eq!(log.apply_retention(i64::MAX).await.unwrap(), 0);
    });
}

#[test]
fn files_have_kafka_names_and_layout() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1000), 0).await;
        let stored = append_many(&log, 30);
        log.close().await.unwrap();
        let mut next = 0;
        for path in log_files(dir.path()) {
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(name, format!("{next:020}.log"));
            let bytes = std::fs::read(&path).unwrap();
            let mut at = 0;
            while at < bytes.len() {
                let Scan::Batch(h) = record::scan(&bytes[at..]) else {
                    panic!("{name}: no batch at {at}");
                };
                assert_eq!(h.base_offset, next, "{name} at {at}");
                next = h.next_offset();
                at += h.total_bytes();
            }
            assert_eq!(at, bytes.len(), "{name}: padding left after close");
            let index = std::fs::read(path.with_extension("index")).unwrap();
            let times = std::fs::read(path.with_extension("timeindex")).unwrap();
            assert_eq!((index.len() % 8, times.len() % 12), (0, 0));
            assert!(
                !times.is_empty(),
                "{name}: sealed segments carry a final time entry"
            );
        }
        assert_eq!(next, base(&stored[29]) + 2);
    });
}

#[test]
fn wait_for_data_wakes_on_write_and_close_and_can_be_dropped() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1 << 20), 1 << 20).await;
        {
            let abandoned = log.wait_for_data(0);
            let timeout = glommio::timer::sleep(std::time::Duration::from_millis(5));
            futures::pin_mut!(abandoned, timeout);
            let first = futures::future::select(abandoned, timeout).await;
            assert!(matches!(first, futures::future::Either::Right(_)));
        }
        assert_eq!(log.waiter_count(), 0);
        let waiter = glommio::spawn_local({
            let log = log.clone();
            async move { log.wait_for_data(0).await }
        });
        append_many(&log, 1);
        waiter.await;
        assert!(log.high_watermark() > 0);
        log.wait_for_data(0).await;
        let on_close = glommio::spawn_local({
            let log = log.clone();
            async move { log.wait_for_data(100).await }
        });
        glommio::yield_if_needed().await;
        log.close().await.unwrap();
        on_close.await;
    });
}

#[test]
fn segment_ms_rolls_old_segments_and_delete_removes_the_dir() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut c = config(1 << 20);
        c.segment_ms = 1000;
        let log = open(&path, c, 0).await;
        let b = || bytes::Bytes::copy_from_slice(&make_batch(0, 1, 1)[..]);
        log.append(b(), 1_000).unwrap();
        log.append(b(), 1_500).unwrap();
        log.append(b(), 2_001).unwrap();
        log.wait_written(3).await.unwrap();
        assert_eq!(log.segment_count(), 2);
        log.delete().await.unwrap();
        assert!(!path.exists());
    });
}

#[test]
fn full_indexes_roll_the_segment_and_preallocation_keeps_the_size() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut c = config(1 << 20);
        // Index entries every 100 bytes; room for two time index entries (24 / 12).
        c.segment_index_bytes = 24;
        c.preallocate = true;
        let log = open(&path, c, 0).await;
        let stored = append_many(&log, 40);
        log.wait_written(log.log_end_offset()).await.unwrap();
        assert!(log.segment_count() > 3, "{} segments", log.segment_count());
        assert_reads_back(&log, &stored).await;
        log.close().await.unwrap();
        // Rolled segments were preallocated without growing: sizes are what was written.
        let files = log_files(&path);
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        let written: u64 = stored.iter().map(|b| b.len() as u64).sum();
        assert_eq!(total, written);
    });
}

#[test]
fn segment_jitter_rolls_before_segment_ms() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut c = config(1 << 20);
        c.segment_ms = 1_000_000;
        c.segment_jitter_ms = 1_000_000;
        let log = open(&path, c, 0).await;
        let b = || bytes::Bytes::copy_from_slice(&make_batch(0, 1, 1)[..]);
        // The first segment was not rolled onto, so it has no jitter; the second has some
        // in [0, segment.ms): appending just before segment.ms later rolls it unless the
        // jitter happens to be 0, which the hash makes vanishingly rare.
        // (The log was opened at 1_000.)
        log.append(b(), 1_000).unwrap();
        log.append(b(), 1_001_001).unwrap();
        log.append(b(), 1_001_002).unwrap();
        assert_eq!(log.segment_count(), 2);
        log.append(b(), 2_001_000).unwrap();
        log.wait_written(4).await.unwrap();
        assert_eq!(
            log.segment_count(),
            3,
            "jitter made the second segment roll early"
        );
        log.close().await.unwrap();
    });
}

/// Batches as a leader would send them: offsets assigned, epoch `epoch`.
fn leader_batches(first: i64, counts: &[i32], epoch: i32) -> Vec<Bytes> {
    let mut next = first;
    counts
        .iter()
        .map(|&n| {
            let mut b = make_batch(next, n, 1000 + next);
            record::set_partition_leader_epoch(&mut b, epoch);
            next += n as i64;
            Bytes::from(b)
        })
        .collect()
}

#[test]
fn followers_read_the_unwritten_tail_and_the_high_watermark_follows_the_local_write() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir.path().join("t-0"), config(1 << 20), 1 << 20).await;
        log.set_hw_managed(true);
        log.become_leader(4).unwrap();
        // Appended, not yet written: the writer task has not run (no await since).
        for b in leader_batches(0, &[2, 3], 4) {
            log.append_replicated(b, 1_000).unwrap();
        }
        assert_eq!((log.written_end(), log.log_end_offset()), (0, 5));
        let read = log.read_for_replica(0, 1 << 20, true).await.unwrap();
        assert_eq!(read.batches.len(), 2, "the tail comes from the cache");
        // Consumers: above the high watermark but within the log is empty, not out of range.
        let above_hw = log.read(3, 1 << 20, true).await.unwrap();
        assert!(above_hw.batches.is_empty());
        assert!(matches!(
            log.read(6, 1 << 20, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // A follower's long poll at the log end wakes on the next append, before its write.
        let waiter = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_for_replica_data(5).await })
        };
        glommio::yield_if_needed().await;
        for b in leader_batches(5, &[1], 4) {
            log.append_replicated(b, 1_000).unwrap();
        }
        waiter.await;
        // The high watermark never passes what is written here.
        let hw = log.set_high_watermark(6);
        assert!(
            hw <= log.written_end(),
            "hw {hw} past the written end {}",
            log.written_end()
        );
        // ... and reaches what the replicas agreed on once the local write completes, with no
        // further follower fetch to tell it.
        log.wait_written(6).await.unwrap();
        assert_eq!(log.high_watermark(), 6);
        log.close().await.unwrap();
    });
}

#[test]
fn a_follower_appends_as_sent_and_reads_stop_at_the_high_watermark() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir.path().join("t-0"), config(1 << 20), 1 << 20).await;
        log.set_hw_managed(true);
        assert_eq!(log.high_watermark(), 0);
        for b in leader_batches(0, &[2, 3, 1], 4) {
            log.append_replicated(b, 1_000).unwrap();
        }
        let overlap = leader_batches(4, &[1], 4).remove(0);
        assert!(
            log.append_replicated(overlap, 1_000).is_err(),
            "must not start below the log end"
        );
        log.wait_written(6).await.unwrap();
        assert_eq!((log.written_end(), log.high_watermark()), (6, 0));
        assert!(log.read(0, 1 << 20, true).await.unwrap().batches.is_empty());
        assert_eq!(
            log.read_for_replica(0, 1 << 20, true)
                .await
                .unwrap()
                .batches
                .len(),
            3
        );
        assert_eq!(log.set_high_watermark(5), 5);
        assert_eq!(log.set_high_watermark(3), 5, "never down");
        assert_eq!(log.set_high_watermark(100), 6, "never past the written end");
        assert_eq!(log.read(0, 1 << 20, true).await.unwrap().batches.len(), 3);
        assert_eq!(log.latest_epoch(), Some(4));
        assert_eq!(log.end_offset_for_epoch(4), (4, 6));
        log.close().await.unwrap();
        // The high watermark checkpoint comes back when the replica manages it again.
        let log = open(&dir.path().join("t-0"), config(1 << 20), 1 << 20).await;
        assert_eq!(log.high_watermark(), 6, "a replica of one: the written end");
        log.set_hw_managed(true);
        assert_eq!(log.high_watermark(), 6);
        assert_eq!(log.latest_epoch(), Some(4));
        log.close().await.unwrap();
    });
}

#[test]
fn a_follower_of_a_compacted_leader_keeps_its_offset_gaps() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let log = open(&path, config(1 << 20), 1 << 20).await;
        log.set_hw_managed(true);
        let mut sent = leader_batches(0, &[2], 4);
        sent.extend(leader_batches(10, &[3], 4));
        sent.extend(leader_batches(20, &[1], 4));
        for b in &sent {
            log.append_replicated(b.clone(), 1_000).unwrap();
        }
        assert_eq!(log.log_end_offset(), 21);
        log.wait_written(21).await.unwrap();
        log.set_high_watermark(21);
        // A read in a gap gets the next batch, from the cache and from disk alike.
        let got = log.read(5, 1 << 20, true).await.unwrap();
        assert_eq!(got.batches, sent[1..].to_vec());
        log.close().await.unwrap();
        let log = open(&path, config(1 << 20), 0).await;
        assert_eq!(log.log_end_offset(), 21);
        let got = log.read(2, 1 << 20, true).await.unwrap();
        assert_eq!(got.batches, sent[1..].to_vec());
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_cuts_a_divergent_tail_across_segments_and_the_log_goes_on() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let log = open(&path, config(600), 0).await;
        log.become_leader(1).unwrap();
        let stored = append_many(&log, 30);
        log.wait_written(log.log_end_offset()).await.unwrap();
        let segments = log.segment_count();
        assert!(segments > 3);
        // Epoch 2 takes over at 40; this replica wrote on in epoch 1 past it.
        let cut = base(&stored[15]);
        log.truncate_to(cut, 2_000).await.unwrap();
        assert_eq!(log.log_end_offset(), cut);
        assert_eq!(log.written_end(), cut);
        assert!(log.segment_count() < segments);
        assert_reads_back(&log, &stored[..15]).await;
        for b in leader_batches(cut, &[2, 2], 2) {
            log.append_replicated(b, 2_000).unwrap();
        }
        log.wait_written(cut + 4).await.unwrap();
        assert_eq!(log.end_offset_for_epoch(1), (1, cut));
        assert_eq!(log.end_offset_for_epoch(2), (2, cut + 4));
        log.close().await.unwrap();
        let log = open(&path, config(600), 0).await;
        assert_eq!(log.log_end_offset(), cut + 4);
        assert_eq!(log.end_offset_for_epoch(1), (1, cut));
        // A cut inside a batch goes back to the batch's start.
        let inside = base(&stored[3]) + 1;
        let holding = base(&stored[3]);
        if BatchHeader::parse(&stored[3]).unwrap().record_count > 1 {
            log.truncate_to(inside, 3_000).await.unwrap();
            assert_eq!(log.log_end_offset(), holding);
        }
        log.close().await.unwrap();
    });
}

#[test]
fn allocation_ahead_of_the_writer_survives_a_crash_and_seals_to_the_data() {
    for zero in [false, true] {
        run(move || async move {
            const SEGMENT: u64 = 96 << 10;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t-0");
            let mut c = config(SEGMENT);
            c.allocate_ahead_bytes = 16 << 10;
            c.allocate_ahead_zero = zero;
            let log = open(&path, c.clone(), 0).await;
            let mut stored = Vec::new();
            for _ in 0..20 {
                stored.extend(append_many(&log, 100));
                log.wait_written(log.log_end_offset()).await.unwrap();
            }
            assert!(log.segment_count() >= 2, "{} segments", log.segment_count());
            // The active segment's file runs ahead of its data, within segment.bytes.
            let active = log_files(&path).pop().unwrap();
            let data: u64 = log_files(&path)
                .iter()
                .map(|f| std::fs::metadata(f).unwrap().len())
                .sum();
            let logical = log.size_bytes();
            let active_len = std::fs::metadata(&active).unwrap().len();
            assert!(
                data > logical,
                "zero {zero}: files {data} <= data {logical}"
            );
            assert!(active_len <= SEGMENT, "{active_len}");
            // Sealed segments were trimmed to their data.
            let sealed: u64 = data - active_len;
            let active_logical = logical - sealed;
            assert!(
                active_len > active_logical,
                "{active_len} <= {active_logical}"
            );

            // A crash: the log is dropped without closing; the file keeps its allocated tail.
            drop(log);
            assert_eq!(std::fs::metadata(&active).unwrap().len(), active_len);
            let log = open(&path, c.clone(), 0).await;
            assert_eq!(
                log.log_end_offset(),
                stored
                    .last()
                    .map_or(0, |b| { BatchHeader::parse(b).unwrap().next_offset() })
            );
            assert_eq!(log.size_bytes(), logical);
            assert_reads_back(&log, &stored).await;
            // The next writer continues right after the data and allocates ahead again.
            for _ in 0..5 {
                stored.extend(append_many(&log, 100));
                log.wait_written(log.log_end_offset()).await.unwrap();
            }
            assert_reads_back(&log, &stored).await;
            let active = log_files(&path).pop().unwrap();
            let files: u64 = log_files(&path)
                .iter()
                .map(|f| std::fs::metadata(f).unwrap().len())
                .sum();
            assert!(
                files > log.size_bytes(),
                "not allocated ahead after reopening"
            );
            assert!(std::fs::metadata(&active).unwrap().len() <= SEGMENT);

            // Closing trims every file to its data.
            log.close().await.unwrap();
            let files: u64 = log_files(&path)
                .iter()
                .map(|f| std::fs::metadata(f).unwrap().len())
                .sum();
            let written: u64 = stored.iter().map(|b| b.len() as u64).sum();
            assert_eq!(files, written);
            let log = open(&path, c, 0).await;
            assert_reads_back(&log, &stored).await;
        });
    }
}

/// Found by `fuzz_segment_recovery`: a torn tail whose base offset (outside the CRC) was
/// damaged to 0x7fffffff0000000d made the index rebuild panic ("does not fit segment 0"), so
/// the broker could not start on that log. The walk now ends at such a batch.
#[test]
fn a_batch_whose_offsets_do_not_fit_the_segment_ends_recovery() {
    for damaged_base in [0x7fff_ffff_0000_000d_i64, i64::MAX - 1, 1 << 32] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log = open(dir.path(), config(1 << 20), 0).await;
            let stored = append_many(&log, 3);
            log.close().await.unwrap();
            let path = log_files(dir.path()).pop().unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            let mut tail = make_batch(0, 3, 1);
            record::set_base_offset(&mut tail, damaged_base);
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let log = open(dir.path(), config(1 << 20), 0).await;
            let want = BatchHeader::parse(&stored[2]).unwrap().next_offset();
            assert_eq!(log.log_end_offset(), want, "base {damaged_base:#x}");
            assert_reads_back(&log, &stored).await;
        });
    }
}

/// Segment recovery over fuzzed tails: a log of whole batches is cut after a random number of
/// them and given a mutated tail (pieces of the rest, torn batches, garbage). Opening never
/// panics, every batch of the intact prefix reads back as written, and the log ends no earlier
/// than that prefix and no later than the batches a scan of the bytes finds.
#[test]
fn fuzz_segment_recovery() {
    use futures::FutureExt;
    let (seed, iters) = crate::fuzz::budget("segment_recovery", 300);
    run(move || async move {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1 << 20), 0).await;
        let stored = append_many(&log, 8);
        log.close().await.unwrap();
        let file = std::fs::read(log_files(dir.path()).pop().unwrap()).unwrap();
        for i in 0..iters {
            let mut rng = crate::fuzz::Rng::new(seed ^ i);
            let kept = rng.below(stored.len() + 1);
            let prefix: usize = stored[..kept].iter().map(|b| b.len()).sum();
            let tail = crate::fuzz::input(
                seed,
                i,
                &[file[prefix..].to_vec(), make_batch(0, 2, 5), vec![0xab; 40]],
            );
            let mut bytes = file[..prefix].to_vec();
            bytes.extend_from_slice(&tail);
            let fail = |what: &str| {
                panic!(
                    "fuzz target segment_recovery failed ({what}): GREGOR_FUZZ_SEED={seed} \
                     iteration {i} kept {kept} batches, tail {}",
                    crate::fuzz::hex(&tail, 512)
                )
            };
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("00000000000000000000.log"), &bytes).unwrap();
            let mut scan_end = 0;
            let mut pos = 0;
            while let Scan::Batch(h) = record::scan(&bytes[pos..]) {
                scan_end = scan_end.max(h.next_offset());
                pos += h.total_bytes();
            }
            let prefix_end = stored[..kept]
                .last()
                .map_or(0, |b| BatchHeader::parse(b).unwrap().next_offset());
            let path = d.path().to_path_buf();
            let stored = stored.clone();
            let opened = std::panic::AssertUnwindSafe(async move {
                let log = open(&path, config(1 << 20), 0).await;
                let leo = log.log_end_offset();
                assert!(
                    leo >= prefix_end,
                    "log end {leo} below the intact {prefix_end}"
                );
                assert!(
                    leo <= scan_end.max(prefix_end),
                    "log end {leo} past {scan_end}"
                );
                for want in &stored[..kept] {
                    let at = BatchHeader::parse(want).unwrap().base_offset;
                    let got = log.read(at, 1, true).await.unwrap();
                    assert_eq!(got.batches.first(), Some(want), "read at {at}");
                }
                log.close().await.unwrap();
            })
            .catch_unwind()
            .await;
            if opened.is_err() {
                fail("panic");
            }
        }
        eprintln!("fuzz target=segment_recovery seed={seed} inputs={iters} crashes=0");
    });
}
