//! Compaction against real files: what a pass keeps, offsets, tombstones, idempotent producers'
//! last batches, and what a crash at each step of the swap leaves behind.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::records::Compression;

use super::compact;
use super::{CleanerSettings, PartitionLog};
use crate::client::batch::{encode_batch, ProducerRecord};
use crate::config::{Config, LogConfig};
use crate::record::{self, BatchHeader};

fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(f());
}

fn compacted(segment_bytes: u64) -> LogConfig {
    let mut c = Config::default().log;
    c.segment_bytes = segment_bytes;
    c.index_interval_bytes = 100;
    c.cleanup_policy = "compact".to_string();
    c.min_cleanable_dirty_ratio = 0.01;
    c
}

fn settings() -> CleanerSettings {
    CleanerSettings {
        map_bytes: 1 << 20,
        io_max_bytes_per_second: f64::MAX,
    }
}

async fn open(dir: &Path, config: LogConfig) -> Rc<PartitionLog> {
    PartitionLog::open(dir.to_path_buf(), config, 0, 1_000)
        .await
        .unwrap()
}

/// One batch of `(key, value)` records (value None: a tombstone) at timestamp `ts`.
fn keyed(
    records: &[(&str, Option<String>)],
    ts: i64,
    producer: Option<(i64, i32)>,
) -> bytes::Bytes {
    let recs: Vec<ProducerRecord> = records
        .iter()
        .map(|(k, v)| ProducerRecord {
            key: Some(bytes::Bytes::copy_from_slice(k.as_bytes())),
            value: v
                .as_ref()
                .map(|v| bytes::Bytes::copy_from_slice(v.as_bytes())),
            ..Default::default()
        })
        .collect();
    let mut b = BytesMut::from(&encode_batch(&recs, ts, Compression::Zstd).unwrap()[..]);
    if let Some((pid, seq)) = producer {
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&0i16.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = record::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    b.freeze()
}

/// Every record readable from the log start: offset -> (key, value).
async fn contents(log: &PartitionLog) -> BTreeMap<i64, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let got = log.read(offset, 1 << 20, true).await.unwrap();
        if got.batches.is_empty() {
            break;
        }
        for b in &got.batches {
            let h = record::validate(b).unwrap();
            let section = compact::record_section(b, &h).unwrap();
            for r in compact::records(&section, h.base_offset).unwrap() {
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                out.insert(r.offset, (key, value));
            }
            offset = h.next_offset();
        }
    }
    out
}

/// `updates` rounds over `keys` keys; the value says which round wrote it.
fn write_updates(log: &PartitionLog, keys: usize, rounds: usize, ts: i64) -> BTreeMap<String, i64> {
    let mut newest = BTreeMap::new();
    for round in 0..rounds {
        for chunk in (0..keys).collect::<Vec<_>>().chunks(4) {
            let recs: Vec<(String, Option<String>)> = chunk
                .iter()
                .map(|k| (format!("k{k}"), Some(format!("v={round}"))))
                .collect();
            let refs: Vec<(&str, Option<String>)> =
                recs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let info = log.append(keyed(&refs, ts, None), ts).unwrap();
            for (i, (k, _)) in recs.iter().enumerate() {
                newest.insert(k.clone(), info.base_offset + i as i64);
            }
        }
    }
    newest
}

#[test]
fn a_pass_keeps_the_newest_record_per_key_at_its_offset() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted(2000)).await;
        let newest = write_updates(&log, 40, 10, 1_000);
        // The active segment is never cleaned: roll it away with one more batch elsewhere.
        log.append(keyed(&[("tail", Some("v=x".into()))], 1_000, None), 1_000)
            .unwrap();
        log.wait_written(log.log_end_offset()).await.unwrap();
        let before = contents(&log).await;
        let bytes_before = log.size_bytes();
        let segments_before = log.segment_count();
        assert!(segments_before > 4);
        let plan = log.cleanable(2_000).expect("a dirty log is cleanable");
        assert_eq!(plan.first_dirty, 0);
        let stats = log.clean(&plan, &settings(), 2_000).await.unwrap();
        assert!(stats.records_removed > 0, "{stats:?}");
        let after = contents(&log).await;
        // Every surviving record is at its original offset, and below the cleaned end it is
        // the newest of its key there (the active segment is not cleaned).
        for (offset, (key, value)) in &after {
            assert_eq!(before.get(offset), Some(&(key.clone(), value.clone())));
            if *offset < plan.end {
                let newer = before
                    .range(offset + 1..plan.end)
                    .any(|(_, (k, _))| k == key);
                assert!(!newer, "{key} at {offset} survived a newer record");
            }
        }
        for (key, offset) in &newest {
            assert!(after.contains_key(offset), "{key} lost its newest record");
        }
        assert!(log.size_bytes() < bytes_before / 2);
        assert_eq!(
            log.cleanable(2_000),
            None,
            "nothing dirty right after a pass"
        );
        // The same after a restart, and new writes go on at the same end.
        let end = log.log_end_offset();
        log.close().await.unwrap();
        let log = open(dir.path(), compacted(2000)).await;
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(contents(&log).await, after);
        let info = log
            .append(keyed(&[("k1", Some("v=new".into()))], 3_000, None), 3_000)
            .unwrap();
        assert_eq!(info.base_offset, end);
        log.close().await.unwrap();
    });
}

#[test]
fn tombstones_go_on_a_later_pass_once_older_than_delete_retention() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = compacted(1500);
        c.delete_retention_ms = 10_000;
        let log = open(dir.path(), c).await;
        write_updates(&log, 20, 4, 1_000);
        let dead = log
            .append(keyed(&[("k3", None), ("k4", None)], 1_000, None), 1_000)
            .unwrap();
        write_updates(&log, 2, 30, 1_000); // more dirt on k0, k1, rolling segments
        log.wait_written(log.log_end_offset()).await.unwrap();
        let plan = log.cleanable(2_000).unwrap();
        log.clean(&plan, &settings(), 2_000).await.unwrap();
        let after = contents(&log).await;
        assert_eq!(after.get(&dead.base_offset), Some(&("k3".into(), None)));
        assert!(!after.values().any(|(k, v)| k == "k3" && v.is_some()));
        // More dirt, a later pass past the horizon: the tombstones are gone.
        write_updates(&log, 2, 30, 1_000);
        log.wait_written(log.log_end_offset()).await.unwrap();
        let plan = log.cleanable(20_000).unwrap();
        log.clean(&plan, &settings(), 20_000).await.unwrap();
        let after = contents(&log).await;
        assert!(
            !after.values().any(|(k, _)| k == "k3" || k == "k4"),
            "{after:?}"
        );
        assert!(after.values().any(|(k, _)| k == "k5"));
        log.close().await.unwrap();
    });
}

#[test]
fn an_idempotent_producers_last_batch_stays_even_when_emptied() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted(1000)).await;
        let p = log
            .append(
                keyed(&[("a", Some("v=1".into()))], 1_000, Some((77, 0))),
                1_000,
            )
            .unwrap();
        write_updates(&log, 4, 20, 1_000); // overwrites "k*" keys, not "a"
        let last = log
            .append(
                keyed(&[("k0", Some("v=old".into()))], 1_000, Some((77, 1))),
                1_000,
            )
            .unwrap();
        write_updates(&log, 4, 20, 1_000); // supersedes k0 from producer 77
        log.wait_written(log.log_end_offset()).await.unwrap();
        let plan = log.cleanable(2_000).unwrap();
        log.clean(&plan, &settings(), 2_000).await.unwrap();
        let mut headers: Vec<BatchHeader> = Vec::new();
        let mut offset = 0;
        while offset < log.high_watermark() {
            let got = log.read(offset, 1 << 20, true).await.unwrap();
            for b in &got.batches {
                let h = record::validate(b).unwrap();
                offset = h.next_offset();
                headers.push(h);
            }
        }
        let of_77: Vec<&BatchHeader> = headers.iter().filter(|h| h.producer_id == 77).collect();
        assert_eq!(of_77.len(), 2, "{of_77:?}");
        assert_eq!(of_77[0].base_offset, p.base_offset);
        assert_eq!(
            (
                of_77[1].base_offset,
                of_77[1].record_count,
                of_77[1].base_sequence
            ),
            (last.base_offset, 0, 1)
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_small_key_map_cleans_in_several_passes() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted(2000)).await;
        let newest = write_updates(&log, 60, 6, 1_000);
        log.append(keyed(&[("tail", Some("v=x".into()))], 1_000, None), 1_000)
            .unwrap();
        log.wait_written(log.log_end_offset()).await.unwrap();
        let small = CleanerSettings {
            map_bytes: 20 * 52,
            io_max_bytes_per_second: f64::MAX,
        };
        let mut passes = 0;
        while let Some(plan) = log.cleanable(2_000) {
            let stats = log.clean(&plan, &small, 2_000).await.unwrap();
            assert!(stats.first_dirty_after > plan.first_dirty, "{stats:?}");
            passes += 1;
            assert!(passes < 100);
        }
        assert!(passes > 1);
        let after = contents(&log).await;
        for (key, offset) in &newest {
            assert!(after.contains_key(offset), "{key}");
        }
        let per_key = after.values().filter(|(k, _)| k == "k7").count();
        assert!(per_key <= 3, "{per_key} copies of k7 survive");
        log.close().await.unwrap();
    });
}

/// Copies every regular file of `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_crash_during_the_swap_leaves_the_old_segments_or_the_new() {
    run(|| async {
        let root = tempfile::tempdir().unwrap();
        let live = root.path().join("live");
        let log = open(&live, compacted(2000)).await;
        write_updates(&log, 30, 8, 1_000);
        log.append(keyed(&[("tail", Some("v=x".into()))], 1_000, None), 1_000)
            .unwrap();
        log.wait_written(log.log_end_offset()).await.unwrap();
        let before = contents(&log).await;
        // Sealed segments do not change until the cleaner swaps them.
        let old = root.path().join("old");
        copy_dir(&live, &old);
        // Cleaned segments merge up to segment.bytes: raise it so the first group merges.
        log.update_config(compacted(100_000));
        let plan = log.cleanable(2_000).unwrap();
        log.clean(&plan, &settings(), 2_000).await.unwrap();
        let after = contents(&log).await;
        log.close().await.unwrap();
        let new = root.path().join("new");
        copy_dir(&live, &new);
        let cleaned: Vec<String> = std::fs::read_dir(&new)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log") || n.ends_with(".index") || n.ends_with(".timeindex"))
            .collect();
        let first_new = cleaned
            .iter()
            .filter(|n| n.ends_with(".log"))
            .min()
            .unwrap()
            .clone();
        let base: i64 = first_new.trim_end_matches(".log").parse().unwrap();
        let stem = format!("{base:020}");
        let olds: Vec<i64> = std::fs::read_dir(&old)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.strip_suffix(".log").map(|b| b.parse().unwrap())
            })
            .collect();
        let new_bases: Vec<i64> = cleaned
            .iter()
            .filter_map(|n| n.strip_suffix(".log").map(|b| b.parse().unwrap()))
            .collect();
        let next_new = new_bases
            .iter()
            .copied()
            .filter(|b| *b > base)
            .min()
            .unwrap();
        let replaced: Vec<i64> = olds
            .iter()
            .copied()
            .filter(|b| *b >= base && *b < next_new)
            .collect();
        assert!(
            replaced.len() > 1,
            "the first group merges segments: {replaced:?}"
        );

        // Crash states of the first group's swap, each opened from a copy of the old files.
        for step in 0..4 {
            let dir = root.path().join(format!("crash{step}"));
            copy_dir(&old, &dir);
            for ext in ["log", "index", "timeindex"] {
                let name = format!("{stem}.{ext}");
                std::fs::copy(new.join(&name), dir.join(format!("{name}.cleaned"))).unwrap();
            }
            if step >= 1 {
                let manifest: String = replaced.iter().map(|b| format!("{b}\n")).collect();
                std::fs::write(dir.join(format!("{stem}.swap")), manifest).unwrap();
            }
            if step >= 2 {
                // Some replaced segments already gone.
                let gone = replaced[1];
                std::fs::remove_file(dir.join(format!("{gone:020}.log"))).unwrap();
            }
            if step >= 3 {
                // The indexes already renamed into place.
                for ext in ["index", "timeindex"] {
                    let name = format!("{stem}.{ext}");
                    std::fs::rename(dir.join(format!("{name}.cleaned")), dir.join(&name)).unwrap();
                }
            }
            let reopened = open(&dir, compacted(2000)).await;
            let seen = contents(&reopened).await;
            if step == 0 {
                assert_eq!(seen, before, "uncommitted: the old segments");
            } else {
                // Committed: the first group is cleaned; later groups are still old.
                for (offset, rec) in &seen {
                    assert_eq!(before.get(offset), Some(rec));
                }
                for (offset, rec) in after.range(..next_new) {
                    assert_eq!(seen.get(offset), Some(rec), "step {step}");
                }
                assert_eq!(
                    seen.range(..next_new).count(),
                    after.range(..next_new).count(),
                    "step {step}"
                );
            }
            let leftovers: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                .collect();
            assert!(leftovers.is_empty(), "step {step}: {leftovers:?}");
            reopened.close().await.unwrap();
        }
    });
}
