//! Recovery of a damaged log tail and of lost index files, as Kafka's LogSegment recovery does:
//! the active segment is cut back to its last valid batch, indexes are rebuilt from the log.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use common::clients::{
    assert_same, consume_all, consumer, create_topic, poll_n, produce, TestRecord,
};
use common::{read_file, segment_files, walk_segment, Broker};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "recover";

fn records(tag: &str, n: usize, base_ts: i64) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            key: Some(format!("{tag}{i}").into_bytes()),
            value: Some(format!("{tag}-value-{i:06}-{}", "v".repeat(80)).into_bytes()),
            timestamp: Some(base_ts + 10 * i as i64),
            headers: Vec::new(),
            partition: Some(0),
        })
        .collect()
}

/// A broker with small segments and one single-partition topic holding `n` acknowledged records.
fn broker_with_records(n: usize) -> (Broker, Vec<TestRecord>, Vec<(i32, i64)>) {
    let broker = Broker::start(&[("log.segment.bytes", "16384")]);
    create_topic(&broker.admin_config(), TOPIC, 1, &[]);
    let recs = records("r", n, common::now_ms() - 600_000);
    let mut cfg = broker.producer_config();
    cfg.set("acks", "all").set("batch.num.messages", "20");
    let delivered = produce(&cfg, TOPIC, &recs);
    (broker, recs, delivered)
}

fn active_segment(broker: &Broker) -> PathBuf {
    let segs = segment_files(&broker.partition_dir(TOPIC, 0));
    segs.last().cloned().expect("no segment files")
}

fn append(path: &PathBuf, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// Every segment holds whole, valid batches and nothing else, and the batches run contiguously
/// from the first segment's base offset to `log_end`.
fn assert_segments_exact(broker: &Broker, log_end: i64) {
    let mut next = None;
    for seg in segment_files(&broker.partition_dir(TOPIC, 0)) {
        let bytes = read_file(&seg);
        let (batches, covered) = walk_segment(&bytes);
        assert_eq!(
            covered,
            bytes.len(),
            "{}: {} bytes, but valid batches cover only {covered}",
            seg.display(),
            bytes.len()
        );
        for b in batches {
            if let Some(n) = next {
                assert_eq!(b.base_offset, n, "{}: gap or overlap", seg.display());
            }
            next = Some(b.next_offset());
        }
    }
    assert_eq!(next, Some(log_end), "log end");
}

/// After recovery: all acknowledged records read back, new records continue at the old end,
/// and after a clean stop the files hold exactly the valid batches.
fn check_recovered(broker: &mut Broker, recs: &[TestRecord], delivered: &[(i32, i64)]) {
    let end = delivered.len() as i64;
    let (low, high) = common::clients::watermarks(&broker.consumer_config(), TOPIC, 0);
    assert_eq!((low, high), (0, end), "watermarks after recovery");
    let got = consume_all(
        &broker.consumer_config(),
        TOPIC,
        1,
        recs.len(),
        Duration::from_secs(60),
    );
    assert_same(recs, delivered, &got);

    let _ = produce_five_at(broker, end);

    broker.stop();
    assert_segments_exact(broker, end + 5);
}

#[test]
fn garbage_after_the_last_batch_is_cut_off() {
    let (mut broker, recs, delivered) = broker_with_records(1_000);
    broker.stop();
    let seg = active_segment(&broker);
    let garbage: Vec<u8> = (0..1_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect();
    append(&seg, &garbage);
    broker.start_again();
    check_recovered(&mut broker, &recs, &delivered);
}

#[test]
fn a_torn_last_batch_is_cut_off() {
    let (mut broker, recs, delivered) = broker_with_records(1_000);
    broker.stop();
    let seg = active_segment(&broker);
    let bytes = read_file(&seg);
    let (batches, covered) = walk_segment(&bytes);
    assert_eq!(
        covered,
        bytes.len(),
        "after a clean stop the segment holds only whole batches"
    );
    let last = batches.last().expect("active segment has batches");
    // A copy of the first part of the last batch: a write torn by a crash.
    let start = covered - last.total_bytes();
    let torn = bytes[start..start + last.total_bytes() / 2].to_vec();
    append(&seg, &torn);
    broker.start_again();
    check_recovered(&mut broker, &recs, &delivered);
}

#[test]
fn a_torn_header_is_cut_off() {
    let (mut broker, recs, delivered) = broker_with_records(300);
    broker.stop();
    let seg = active_segment(&broker);
    let bytes = read_file(&seg);
    // Only the first 30 bytes of a copied batch: not even a whole header.
    let torn = bytes[..30].to_vec();
    append(&seg, &torn);
    broker.start_again();
    check_recovered(&mut broker, &recs, &delivered);
}

fn delete_indexes(broker: &Broker) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(broker.partition_dir(TOPIC, 0)).unwrap() {
        let p = e.unwrap().path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        if ext == "index" || ext == "timeindex" {
            std::fs::remove_file(&p).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn lost_index_files_are_rebuilt() {
    let (mut broker, recs, delivered) = broker_with_records(2_000);
    broker.stop();
    let segs = segment_files(&broker.partition_dir(TOPIC, 0));
    assert!(segs.len() >= 3, "expected several segments, got {segs:?}");
    let removed = delete_indexes(&broker);
    assert!(removed >= 2, "expected index files next to the segments");
    broker.start_again();

    // Reads starting inside older segments need the offset index.
    for start in [0usize, 777, 1_234, 1_999] {
        let c = consumer(&broker.consumer_config());
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Offset(start as i64))
            .unwrap();
        c.assign(&tpl).unwrap();
        let n = (recs.len() - start).min(200);
        let got = poll_n(&c, n, Duration::from_secs(30));
        assert_eq!(
            got[0].offset, start as i64,
            "first offset read from {start}"
        );
        assert_same(&recs[start..start + n], &delivered[start..start + n], &got);
    }
    check_recovered(&mut broker, &recs, &delivered);
}

/// ListOffsets by timestamp gives the first record with timestamp >= target (Kafka's
/// FileRecords.searchForTimestamp looks inside the batch), before and after the time index is lost.
fn check_timestamp_lookup(broker: &Broker, recs: &[TestRecord], when: &str) {
    let c = consumer(&broker.consumer_config());
    for i in [0usize, 500, 1_501, 1_999] {
        let ts = recs[i].timestamp.unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Offset(ts))
            .unwrap();
        let found = c.offsets_for_times(tpl, Duration::from_secs(10)).unwrap();
        let off = found.find_partition(TOPIC, 0).unwrap().offset();
        assert_eq!(
            off,
            Offset::Offset(i as i64),
            "{when}: first offset with timestamp >= {ts}"
        );
    }
}

#[test]
fn timestamp_lookup_after_index_loss() {
    let (mut broker, recs, _) = broker_with_records(2_000);
    check_timestamp_lookup(&broker, &recs, "before index loss");
    broker.stop();
    delete_indexes(&broker);
    broker.start_again();
    check_timestamp_lookup(&broker, &recs, "after index loss");
}

/// SIGKILL after N acknowledged records, then a torn write at a seeded random byte inside one
/// of the last batches of the active segment: the file is cut there, or keeps its length with
/// zeros or random bytes from there on. After the restart every record before the torn batch
/// is served intact at its offset, nothing from the torn batch on is, and producing resumes at
/// the torn batch's offset. `GREGOR_TORN_SEED` replays a run (the seed is printed).
#[test]
fn a_torn_write_at_a_seeded_random_byte() {
    let seed: u64 = std::env::var("GREGOR_TORN_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("a_torn_write_at_a_seeded_random_byte: GREGOR_TORN_SEED={seed}");
    let _guard = common::SeedGuard {
        test: "a_torn_write_at_a_seeded_random_byte",
        var: "GREGOR_TORN_SEED",
        seed,
    };
    let mut rng = common::Rng(seed);

    // How many records decides how many batches the active segment holds (librdkafka's
    // batching is not seeded, so a replay may cut a batch of slightly different bounds).
    let n = 1_000 + rng.below(140) as usize;
    let (mut broker, recs, delivered) = broker_with_records(n);
    broker.kill();
    let seg = active_segment(&broker);
    let mut bytes = read_file(&seg);
    // After a crash the file may run past the data (allocated ahead); the walk stops there.
    let (batches, covered) = walk_segment(&bytes);
    assert!(!batches.is_empty(), "the active segment holds batches");
    let starts: Vec<usize> = batches
        .iter()
        .scan(0usize, |pos, h| {
            let at = *pos;
            *pos += h.total_bytes();
            Some(at)
        })
        .collect();
    let last_n = batches.len().min(3);
    let from = starts[batches.len() - last_n];
    let at = from + rng.below((covered - from) as u64) as usize;
    let before = bytes.clone();
    let how = match rng.below(3) {
        0 => {
            bytes.truncate(at);
            "cut"
        }
        1 => {
            bytes[at..].fill(0);
            "zeroed from"
        }
        _ => {
            bytes[at..covered]
                .iter_mut()
                .for_each(|b| *b = rng.next() as u8);
            "randomized from"
        }
    };
    // A zeroed or random byte may equal what was there: the tear starts at the first change.
    let changed = (at..before.len())
        .find(|&i| bytes.get(i) != Some(&before[i]))
        .unwrap_or(before.len());
    let torn = starts
        .iter()
        .zip(&batches)
        .find(|(pos, h)| *pos + h.total_bytes() > changed);
    let end = torn.map_or_else(
        || batches.last().unwrap().next_offset(),
        |(_, h)| h.base_offset,
    );
    eprintln!(
        "{} of {} bytes {how} byte {at} (first changed {changed}): the log should end at {end} \
         (it held {})",
        seg.display(),
        covered,
        delivered.len()
    );
    std::fs::write(&seg, &bytes).unwrap();
    broker.start_again();

    let (low, high) = common::clients::watermarks(&broker.consumer_config(), TOPIC, 0);
    assert_eq!((low, high), (0, end), "watermarks after recovery");
    let (kept_recs, kept_at): (Vec<TestRecord>, Vec<(i32, i64)>) = recs
        .iter()
        .cloned()
        .zip(delivered.iter().copied())
        .filter(|(_, (_, offset))| *offset < end)
        .unzip();
    assert_eq!(kept_recs.len() as i64, end, "records before the tear");
    let got = consume_all(
        &broker.consumer_config(),
        TOPIC,
        1,
        kept_recs.len(),
        Duration::from_secs(60),
    );
    assert_same(&kept_recs, &kept_at, &got);
    assert!(got.iter().all(|g| g.offset < end), "nothing past the tear");

    // Producing resumes at the recovered end; what is read there is the new records.
    let (more, more_at) = produce_five_at(&broker, end);
    let c = consumer(&broker.consumer_config());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(end))
        .unwrap();
    c.assign(&tpl).unwrap();
    let got = poll_n(&c, 5, Duration::from_secs(30));
    assert_same(&more, &more_at, &got);

    broker.stop();
    assert_segments_exact(&broker, end + 5);
}

/// Produces 5 records with acks=all and checks they take offsets `end..end + 5`; returns them.
fn produce_five_at(
    broker: &Broker,
    end: i64,
) -> (Vec<common::clients::TestRecord>, Vec<(i32, i64)>) {
    let more = records("after", 5, common::now_ms());
    let mut cfg = broker.producer_config();
    cfg.set("acks", "all");
    let more_at = produce(&cfg, TOPIC, &more);
    let offsets: Vec<i64> = more_at.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        offsets,
        (end..end + 5).collect::<Vec<_>>(),
        "offsets after recovery"
    );
    (more, more_at)
}
