//! Zero-copy fetch reads return exactly the bytes the memory path returns: across segment
//! boundaries, at every max_bytes cut-off, with a first batch larger than max_bytes, and in the
//! active segment's partly written last block; from a cold and from a warm page cache.

use std::path::Path;
use std::rc::Rc;

use super::{Chunk, PartitionLog, ReadUpTo};
use crate::config::Config;
use crate::record::{self, tests::make_batch};

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(f());
}

fn flatten(chunks: Vec<Chunk>) -> Vec<u8> {
    let mut v = Vec::new();
    for c in chunks {
        match c {
            Chunk::Mem(b) => v.extend_from_slice(&b),
            Chunk::Held(b) => v.extend_from_slice(&b.contiguous()),
            Chunk::File(r) => v.extend(r.read_all().unwrap()),
        }
    }
    v
}

/// Compares both paths at every offset and several limits; returns how many zero-copy reads
/// came back as file ranges.
async fn compare_everywhere(log: &PartitionLog) -> usize {
    let mut ranged = 0;
    for offset in log.log_start_offset()..log.high_watermark() {
        for max_bytes in [1usize, 150, 400, 1000, 1 << 20] {
            let want = log.read(offset, max_bytes, true).await.unwrap();
            let (got, _) = log
                .read_for_fetch(offset, max_bytes, ReadUpTo::HighWatermark)
                .await
                .unwrap();
            ranged += got.file.is_some() as usize;
            assert_eq!(got.bytes, want.bytes, "offset {offset} max {max_bytes}");
            assert_eq!(
                flatten(got.into_chunks()),
                want.batches.concat(),
                "offset {offset} max {max_bytes}"
            );
        }
    }
    ranged
}

#[test]
fn zero_copy_reads_return_the_bytes_memory_reads_do() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default().log;
        config.segment_bytes = 1000;
        config.index_interval_bytes = 100;
        // No tail cache: every read goes to the segment files.
        let log: Rc<PartitionLog> = PartitionLog::open(dir.path().to_path_buf(), config, 0, 1_000)
            .await
            .unwrap();
        for i in 0..150 {
            let count = 1 + (i % 7);
            let b = make_batch(0, count, 1000 + i as i64);
            log.append(bytes::Bytes::copy_from_slice(&b[..]), 1_000)
                .unwrap();
        }
        log.wait_written(log.log_end_offset()).await.unwrap();
        assert!(log.segment_count() > 5);
        // Cold: written with direct I/O, nothing is in the page cache yet.
        compare_everywhere(&log).await;
        warm(dir.path());
        let ranged = compare_everywhere(&log).await;
        assert!(ranged > 100, "only {ranged} reads were file ranges");
        // Segment by segment, the ranges hold whole valid batches with consecutive offsets.
        let mut offset = 0;
        while offset < log.high_watermark() {
            let (got, _) = log
                .read_for_fetch(offset, 1 << 30, ReadUpTo::HighWatermark)
                .await
                .unwrap();
            let bytes = flatten(got.into_chunks());
            let mut at = 0;
            while at < bytes.len() {
                let h = record::BatchHeader::parse(&bytes[at..]).unwrap();
                let batch = &bytes[at..at + h.total_bytes()];
                assert_eq!(record::validate(batch).unwrap().base_offset, offset);
                offset = h.next_offset();
                at += batch.len();
            }
        }
        log.close().await.unwrap();
    });
}

/// Reads every segment file through the page cache.
fn warm(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "log") {
            std::fs::read(&p).unwrap();
        }
    }
}
