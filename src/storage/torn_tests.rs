//! A torn write at a random byte of the active segment, over many seeded iterations: recovery
//! keeps exactly the batches wholly before the tear, byte for byte, with working indexes, and
//! the log goes on from there.
//!
//! `GREGOR_TORN_SEED` replays a run (the seed is printed); `GREGOR_TORN_ITERS` sets how many
//! logs are written and torn (200 by default).

use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::{PartitionLog, StorageError};
use crate::client::batch::{encode_batch, ProducerRecord};
use crate::config::{Config, LogConfig};
use crate::record::{self, BatchHeader};

use crate::fuzz::Rng;

/// Prints how to replay the run if an iteration fails.
struct SeedGuard {
    seed: u64,
    iteration: u64,
    what: String,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "torn write test FAILED at iteration {} ({}); replay with GREGOR_TORN_SEED={} \
                 GREGOR_TORN_ITERS={}",
                self.iteration,
                self.what,
                self.seed,
                self.iteration + 1
            );
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

#[derive(Debug, Clone, Copy)]
enum Tear {
    /// The file ends at the tear.
    Truncate,
    /// The file keeps its length; everything from the tear on reads as zeros.
    Zero,
    /// The file keeps its length; everything from the tear on is random (a torn sector).
    Random,
}

/// A batch of 1..=12 records with values of 0..=700 bytes (so batches run from tens of bytes
/// to several KiB), timestamp `ts`.
fn random_batch(rng: &mut Rng, ts: i64) -> Vec<u8> {
    let n = rng.between(1, 12);
    let records: Vec<ProducerRecord> = (0..n)
        .map(|_| {
            let len = rng.between(0, 700) as usize;
            let value: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            ProducerRecord {
                key: rng
                    .next_u64()
                    .is_multiple_of(2)
                    .then(|| Bytes::from(format!("k{}", rng.next_u64() % 100))),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
            }
        })
        .collect();
    encode_batch(&records, ts, Compression::None)
        .unwrap()
        .to_vec()
}

fn log_config(rng: &mut Rng) -> LogConfig {
    let mut c = Config::default().log;
    // Sometimes one segment, sometimes several: the tear is always in the active one.
    c.segment_bytes = rng.between(4 << 10, 64 << 10);
    c.index_interval_bytes = rng.between(64, 4096) as u32;
    c.allocate_ahead_bytes = [0, 4 << 10, 32 << 10][rng.between(0, 2) as usize];
    c
}

async fn open(dir: &Path, c: &LogConfig) -> std::rc::Rc<PartitionLog> {
    PartitionLog::open(dir.to_path_buf(), c.clone(), 0, 1_000)
        .await
        .unwrap()
}

/// Appends `batch` and returns it as stored (offset and leader epoch assigned).
fn append(log: &PartitionLog, mut batch: Vec<u8>) -> Bytes {
    let info = log
        .append(bytes::Bytes::copy_from_slice(&batch[..]), 1_000)
        .unwrap();
    record::set_base_offset(&mut batch, info.base_offset);
    record::set_partition_leader_epoch(&mut batch, log.latest_epoch().unwrap_or(0));
    Bytes::from(batch)
}

fn active_log_file(dir: &Path) -> (i64, std::path::PathBuf) {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let path = logs.pop().unwrap();
    let base = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    (base, path)
}

/// Tears `file` at byte `at`; returns the first byte that actually differs from before (a
/// zeroed or randomized byte may hold the value it had), or the old length if none does.
fn tear(file: &mut Vec<u8>, at: usize, how: Tear, rng: &mut Rng) -> usize {
    let before = file.clone();
    match how {
        Tear::Truncate => file.truncate(at),
        Tear::Zero => file[at..].fill(0),
        Tear::Random => file[at..]
            .iter_mut()
            .for_each(|b| *b = rng.next_u64() as u8),
    }
    (at..before.len())
        .find(|&i| file.get(i) != Some(&before[i]))
        .unwrap_or(before.len())
}

async fn one_iteration(dir: &Path, rng: &mut Rng, guard: &mut SeedGuard) {
    let c = log_config(rng);
    let log = open(dir, &c).await;
    let batches = rng.between(1, 40);
    let mut stored = Vec::new();
    for i in 0..batches {
        stored.push(append(&log, random_batch(rng, 10_000 + 10 * i as i64)));
        if rng.next_u64().is_multiple_of(4) {
            log.wait_written(log.log_end_offset()).await.unwrap();
        }
    }
    log.close().await.unwrap();

    let (active_base, path) = active_log_file(dir);
    let mut file = std::fs::read(&path).unwrap();
    // Where each batch of the active segment starts in its file.
    let in_active: Vec<(usize, &Bytes)> = stored
        .iter()
        .filter(|b| BatchHeader::parse(b).unwrap().base_offset >= active_base)
        .scan(0usize, |pos, b| {
            let at = *pos;
            *pos += b.len();
            Some((at, b))
        })
        .collect();
    let data: usize = in_active.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(file.len(), data, "a closed segment holds only its batches");
    if file.is_empty() {
        // The last append rolled a new, empty segment: there is nothing to tear.
        guard.what = "empty active segment".into();
        return;
    }
    let at = rng.between(0, file.len() as u64 - 1) as usize;
    let how = [Tear::Truncate, Tear::Zero, Tear::Random][rng.between(0, 2) as usize];
    let changed = tear(&mut file, at, how, rng);
    guard.what = format!(
        "{} batches, segment.bytes {}, active segment from offset {active_base} of {} bytes, \
         {how:?} at byte {at} (first changed byte {changed})",
        stored.len(),
        c.segment_bytes,
        data
    );
    std::fs::write(&path, &file).unwrap();

    // The batches wholly before the first changed byte survive, the rest go.
    let kept_in_active = in_active
        .iter()
        .take_while(|(pos, b)| pos + b.len() <= changed)
        .count();
    let kept = stored.len() - in_active.len() + kept_in_active;
    let want_end = match kept {
        0 => active_base,
        k => BatchHeader::parse(&stored[k - 1]).unwrap().next_offset(),
    };

    let log = open(dir, &c).await;
    let what = &guard.what;
    assert_eq!(log.log_end_offset(), want_end, "{what}");
    assert_eq!(log.high_watermark(), want_end, "{what}");
    // Every batch kept reads back byte for byte, looked up through the offset index at its
    // first and last offsets, and through the time index by its timestamp.
    for (i, want) in stored[..kept].iter().enumerate() {
        let h = BatchHeader::parse(want).unwrap();
        for offset in [h.base_offset, h.last_offset()] {
            let got = log.read(offset, 1, true).await.unwrap();
            assert_eq!(got.batches, vec![want.clone()], "{what}: read at {offset}");
        }
        let ts = 10_000 + 10 * i as i64;
        assert_eq!(
            log.offset_for_timestamp(ts).await.unwrap(),
            Some((h.base_offset, ts)),
            "{what}: timestamp {ts}"
        );
    }
    // Nothing is served at or past the recovered end.
    let past = log.read(want_end, 1 << 20, true).await.unwrap();
    assert!(past.batches.is_empty(), "{what}");
    assert!(
        matches!(
            log.read(want_end + 1, 1, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ),
        "{what}"
    );
    let torn_ts = 10_000 + 10 * kept as i64;
    assert_eq!(
        log.offset_for_timestamp(torn_ts).await.unwrap(),
        None,
        "{what}"
    );

    // The log goes on at the recovered end, and that survives another reopen.
    let next = append(&log, random_batch(rng, torn_ts));
    assert_eq!(
        BatchHeader::parse(&next).unwrap().base_offset,
        want_end,
        "{what}"
    );
    log.close().await.unwrap();
    let log = open(dir, &c).await;
    assert_eq!(
        log.log_end_offset(),
        BatchHeader::parse(&next).unwrap().next_offset(),
        "{what}"
    );
    let got = log.read(want_end, 1, true).await.unwrap();
    assert_eq!(got.batches, vec![next], "{what}");
    if kept > 0 {
        let first = log.read(0, 1, true).await.unwrap();
        assert_eq!(first.batches, vec![stored[0].clone()], "{what}");
    }
    log.close().await.unwrap();
}

#[test]
fn a_torn_write_at_a_random_byte_of_the_active_segment() {
    let seed = env_u64("GREGOR_TORN_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let iterations = env_u64("GREGOR_TORN_ITERS").unwrap_or(200);
    eprintln!("torn write test: GREGOR_TORN_SEED={seed} GREGOR_TORN_ITERS={iterations}");
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let mut rng = Rng::new(seed);
            let mut guard = SeedGuard {
                seed,
                iteration: 0,
                what: String::new(),
            };
            for iteration in 0..iterations {
                guard.iteration = iteration;
                guard.what.clear();
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("t-0");
                one_iteration(&dir, &mut rng, &mut guard).await;
            }
        });
}
