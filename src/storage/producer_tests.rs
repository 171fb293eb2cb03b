//! Producer state kept by the partition log across real files: snapshots at roll and close,
//! a corrupt snapshot falling back to the log, markers and the aborted-transaction index
//! through recovery and truncation.

use std::path::Path;
use std::rc::Rc;

use super::{PartitionLog, ReadUpTo};
use crate::config::Config;
use crate::producer::{Check, Marker};
use crate::record::{self, tests::make_batch};

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(f());
}

async fn open(dir: &Path, segment_bytes: u64) -> Rc<PartitionLog> {
    let mut c = Config::default().log;
    c.segment_bytes = segment_bytes;
    c.index_interval_bytes = 100;
    PartitionLog::open(dir.to_path_buf(), c, 1 << 20, 1_000)
        .await
        .unwrap()
}

/// A batch of `count` records from producer `pid` (transactional when `txn`).
fn batch(pid: i64, seq: i32, count: i32, txn: bool) -> Vec<u8> {
    let mut b = make_batch(0, count, 1_000);
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&0i16.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    if txn {
        b[22] |= 0x10;
    }
    let crc = record::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn append(log: &PartitionLog, b: Vec<u8>) -> i64 {
    log.append(bytes::Bytes::copy_from_slice(&b[..]), 1_000)
        .unwrap()
        .base_offset
}

fn header(b: &[u8]) -> record::BatchHeader {
    record::BatchHeader::parse(b).unwrap()
}

fn snapshots(dir: &Path) -> Vec<i64> {
    super::snapshots::list(dir)
}

#[test]
fn a_corrupt_snapshot_is_ignored_and_the_state_rebuilt_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = open(&dir, 400).await;
        assert_eq!(append(&log, batch(7, 0, 3, false)), 0);
        assert_eq!(append(&log, batch(8, 0, 2, true)), 3);
        for _ in 0..8 {
            append(&log, batch(-1, -1, 2, false));
        }
        assert!(log.segment_count() >= 2, "rolled");
        let marker = Marker {
            commit: false,
            coordinator_epoch: 1,
        };
        let abort_at = log.append_marker(8, 0, marker, 1_000).unwrap().base_offset;
        log.close().await.unwrap();
        let taken = snapshots(&dir);
        assert!(taken.len() >= 2, "at each roll and at close: {taken:?}");
        assert_eq!(*taken.last().unwrap(), abort_at + 1, "the close snapshot");
        // Every snapshot damaged: the state comes from the whole log.
        for offset in &taken {
            let p = super::snapshots::path(&dir, *offset);
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n - 1] ^= 0x55;
            std::fs::write(&p, b).unwrap();
        }
        let log = open(&dir, 400).await;
        assert!(snapshots(&dir).is_empty(), "corrupt snapshots removed");
        assert_eq!(
            log.producer_check(&header(&batch(7, 0, 3, false))),
            Check::Duplicate {
                base_offset: 0,
                last_offset: 2
            },
            "the retry is still known"
        );
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        let (read, aborted) = log
            .read_for_fetch(0, 1 << 20, ReadUpTo::Stable)
            .await
            .unwrap();
        assert!(read.bytes > 0);
        assert_eq!(aborted.len(), 1);
        assert_eq!((aborted[0].producer_id, aborted[0].first_offset), (8, 3));
        assert_eq!(aborted[0].last_offset, abort_at);
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_reopens_transactions_whose_markers_it_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = open(&dir, 1 << 20).await;
        assert_eq!(append(&log, batch(5, 0, 2, true)), 0);
        let marker = Marker {
            commit: false,
            coordinator_epoch: 0,
        };
        let at = log.append_marker(5, 0, marker, 1_000).unwrap().base_offset;
        assert_eq!(at, 2);
        log.wait_written(3).await.unwrap();
        assert_eq!(log.last_stable_offset(), 3);
        let txnindex = dir.join("00000000000000000000.txnindex");
        assert_eq!(std::fs::read(&txnindex).unwrap().len(), 34);
        log.truncate_to(2, 1_000).await.unwrap();
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.last_stable_offset(), 0, "the transaction is open again");
        let (read, aborted) = log
            .read_for_fetch(0, 1 << 20, ReadUpTo::Stable)
            .await
            .unwrap();
        assert!(read.bytes == 0 && aborted.is_empty());
        assert!(!txnindex.exists(), "the cut abort left the index");
        // A current coordinator ends the transaction again; an older one is fenced after.
        let commit = Marker {
            commit: true,
            coordinator_epoch: 3,
        };
        assert_eq!(
            log.append_marker(5, 0, commit, 1_000).unwrap().base_offset,
            2
        );
        log.wait_written(3).await.unwrap();
        assert_eq!(log.last_stable_offset(), 3);
        let stale = Marker {
            commit: false,
            coordinator_epoch: 2,
        };
        assert!(matches!(
            log.append_marker(5, 0, stale, 1_000),
            Err(super::StorageError::Producer(
                crate::producer::ProducerError::CoordinatorFenced { .. }
            ))
        ));
        log.close().await.unwrap();
    });
}

#[test]
fn the_producer_bound_holds_through_appends_snapshots_and_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let mut c = Config::default().log;
        c.bounds.producers_per_partition = 10;
        let log = PartitionLog::open(dir.clone(), c.clone(), 1 << 20, 1_000)
            .await
            .unwrap();
        for pid in 1..=30 {
            append(&log, batch(pid, 0, 1, false));
        }
        let ids = |log: &PartitionLog| -> Vec<i64> {
            log.producers().iter().map(|v| v.producer_id).collect()
        };
        let kept = ids(&log);
        assert!(kept.len() <= 10, "{kept:?}");
        assert!(log.producers_evicted() >= 20);
        assert!(kept.contains(&30), "the newest is kept: {kept:?}");
        // An evicted producer's next batch is taken at any sequence, as after expiry.
        let gone = (1..=30).find(|p| !kept.contains(p)).unwrap();
        let late = batch(gone, 0, 5, false);
        assert_eq!(log.producer_check(&header(&late)), Check::Append);
        append(&log, late);
        let kept = ids(&log);
        log.close().await.unwrap();
        // The close snapshot holds what was kept; reopening brings back the same producers.
        let log = PartitionLog::open(dir.clone(), c.clone(), 1 << 20, 1_000)
            .await
            .unwrap();
        assert_eq!(ids(&log), kept);
        log.close().await.unwrap();
        // With every snapshot gone, the replay of the log applies the bound too.
        for offset in snapshots(&dir) {
            std::fs::remove_file(dir.join(format!("{offset:020}.snapshot"))).unwrap();
        }
        let log = PartitionLog::open(dir.clone(), c, 1 << 20, 1_000)
            .await
            .unwrap();
        let replayed = ids(&log);
        assert!(replayed.len() <= 10, "{replayed:?}");
        assert!(replayed.contains(&gone), "{replayed:?}");
        assert!(log.producers_evicted() >= 20);
        log.close().await.unwrap();
    });
}
