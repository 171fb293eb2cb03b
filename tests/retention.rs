//! Retention by size and by time, set for the broker and per topic at CreateTopics: old segments
//! are deleted, the log start offset moves up, and readers below it get OFFSET_OUT_OF_RANGE (or,
//! with auto.offset.reset=earliest, resume at the new start).

mod common;

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use common::clients::{
    assert_same, consumer, create_topic, poll_n, produce, watermarks, TestRecord,
};
use common::{raw_fetch, segment_files, wait_until, Broker};

const OFFSET_OUT_OF_RANGE: i16 = 1;
const SEGMENT_BYTES: u64 = 16_384;

fn records(tag: &str, n: usize, ts: Option<i64>) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            key: None,
            value: Some(format!("{tag}-{i:06}-{}", "r".repeat(90)).into_bytes()),
            timestamp: ts,
            headers: Vec::new(),
            partition: Some(0),
        })
        .collect()
}

fn start(extra: &[(&str, &str)]) -> Broker {
    let mut settings = vec![
        ("log.segment.bytes", "16384"),
        ("log.retention.check.interval.ms", "200"),
    ];
    settings.extend_from_slice(extra);
    Broker::start(&settings)
}

/// Producer config with small batches, so segments of 16 KiB hold several of them.
fn small_batches(broker: &Broker) -> rdkafka::ClientConfig {
    let mut c = broker.producer_config();
    c.set("batch.num.messages", "50");
    c
}

fn base_offset_of(seg: &Path) -> i64 {
    let stem = seg.file_stem().unwrap().to_str().unwrap();
    assert_eq!(
        stem.len(),
        20,
        "segment names are 20-digit base offsets: {stem}"
    );
    stem.parse().unwrap()
}

fn dir_bytes(files: &[std::path::PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Readers below the log start: a raw Fetch gets OFFSET_OUT_OF_RANGE; librdkafka with
/// auto.offset.reset=error reports it; with earliest it resumes at the new start.
fn check_reads_below_start(broker: &Broker, topic: &str, low: i64, high: i64) {
    let (code, start) = raw_fetch(broker, topic, 0);
    assert_eq!(
        code, OFFSET_OUT_OF_RANGE,
        "Fetch at 0 below log start {low}"
    );
    assert_eq!(start, low, "log start offset in the Fetch response");

    let mut cfg = broker.consumer_config();
    cfg.set("auto.offset.reset", "error");
    let c = consumer(&cfg);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut saw = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            match c.poll(Duration::from_millis(100)) {
                Some(Err(e)) => {
                    saw = Some(e);
                    true
                }
                Some(Ok(m)) => panic!(
                    "read offset {} below log start {low}",
                    rdkafka::Message::offset(&m)
                ),
                None => false,
            }
        }),
        "no error for a read below the log start"
    );
    match saw.unwrap() {
        KafkaError::MessageConsumption(code) => assert!(
            matches!(
                code,
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
            ),
            "{code:?}"
        ),
        other => panic!("unexpected error {other}"),
    }

    let c = consumer(&broker.consumer_config()); // auto.offset.reset=earliest
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    c.assign(&tpl).unwrap();
    let got = poll_n(&c, 1, Duration::from_secs(30));
    assert_eq!(
        got[0].offset, low,
        "earliest reset resumes at the new log start"
    );
    let n = (high - low) as usize;
    let rest = poll_n(&c, n - 1, Duration::from_secs(30));
    assert_eq!(rest.last().unwrap().offset, high - 1);
}

#[test]
fn broker_retention_bytes_deletes_old_segments() {
    let broker = start(&[("log.retention.bytes", "50000")]);
    let topic = "by-size";
    create_topic(&broker.admin_config(), topic, 1, &[]);
    let recs = records("s", 3_000, None);
    let delivered = produce(&small_batches(&broker), topic, &recs);
    let dir = broker.partition_dir(topic, 0);
    let ok = wait_until(Duration::from_secs(20), || {
        let segs = segment_files(&dir);
        // Kafka deletes oldest segments while the rest still exceeds retention.bytes.
        dir_bytes(&segs) <= 50_000 + SEGMENT_BYTES
    });
    let segs = segment_files(&dir);
    assert!(
        ok,
        "segments not deleted: {} files, {} bytes",
        segs.len(),
        dir_bytes(&segs)
    );
    assert!(
        dir_bytes(&segs) >= 50_000 - SEGMENT_BYTES,
        "deleted too much: {segs:?}"
    );
    let (low, high) = watermarks(&broker.consumer_config(), topic, 0);
    assert_eq!(high, 3_000);
    assert_eq!(
        low,
        base_offset_of(&segs[0]),
        "log start = first remaining segment's base"
    );
    assert!(low > 0);
    // No index files left behind for deleted segments.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if let Ok(base) = p.file_stem().unwrap().to_str().unwrap().parse::<i64>() {
            assert!(base >= low, "{} outlived its segment", p.display());
        }
    }
    let keep = low as usize;
    check_reads_below_start(&broker, topic, low, high);
    // What is kept is intact.
    let c = consumer(&broker.consumer_config());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))
        .unwrap();
    c.assign(&tpl).unwrap();
    let got = poll_n(&c, 3_000 - keep, Duration::from_secs(30));
    assert_same(&recs[keep..], &delivered[keep..], &got);
}

#[test]
fn broker_retention_ms_deletes_expired_segments_only() {
    let broker = start(&[("log.retention.ms", "3600000")]);
    let topic = "by-time";
    create_topic(&broker.admin_config(), topic, 1, &[]);
    let two_hours_ago = common::now_ms() - 7_200_000;
    let old = records("old", 1_000, Some(two_hours_ago));
    produce(&small_batches(&broker), topic, &old);
    let new = records("new", 1_000, None);
    let new_at = produce(&small_batches(&broker), topic, &new);
    let dir = broker.partition_dir(topic, 0);
    let ok = wait_until(Duration::from_secs(20), || {
        watermarks(&broker.consumer_config(), topic, 0).0 > 0
    });
    assert!(
        ok,
        "no expired segment deleted; files: {:?}",
        segment_files(&dir)
    );
    // Give retention a few more rounds; it must stop at the segments holding new records.
    std::thread::sleep(Duration::from_millis(1_000));
    let (low, high) = watermarks(&broker.consumer_config(), topic, 0);
    assert_eq!(high, 2_000);
    assert!(
        low <= 1_000,
        "deleted a segment with unexpired records: log start {low}"
    );
    let segs = segment_files(&dir);
    assert_eq!(low, base_offset_of(&segs[0]));
    // Everything old that is kept shares a segment with new records.
    assert!(
        segs.len() < 2 || base_offset_of(&segs[1]) > 1_000 - 1,
        "an all-old segment survived: {segs:?}"
    );
    let c = consumer(&broker.consumer_config());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(1_000))
        .unwrap();
    c.assign(&tpl).unwrap();
    let got = poll_n(&c, 1_000, Duration::from_secs(30));
    assert_same(&new, &new_at, &got);
    check_reads_below_start(&broker, topic, low, high);
}

/// Topic-level retention.bytes / retention.ms given at CreateTopics override the broker's
/// (unlimited) defaults, for that topic only.
#[test]
fn topic_retention_configs_apply_per_topic() {
    let broker = start(&[("log.retention.ms", "-1"), ("log.retention.bytes", "-1")]);
    create_topic(&broker.admin_config(), "keep-all", 1, &[]);
    create_topic(
        &broker.admin_config(),
        "small",
        1,
        &[("retention.bytes", "40000")],
    );
    create_topic(
        &broker.admin_config(),
        "short",
        1,
        &[("retention.ms", "60000"), ("segment.bytes", "8192")],
    );
    let old_ts = common::now_ms() - 600_000;
    for topic in ["keep-all", "small"] {
        produce(
            &small_batches(&broker),
            topic,
            &records(topic, 2_000, Some(old_ts)),
        );
    }
    produce(
        &small_batches(&broker),
        "short",
        &records("short", 1_000, Some(old_ts)),
    );
    produce(
        &small_batches(&broker),
        "short",
        &records("short-new", 10, None),
    );

    let ok = wait_until(Duration::from_secs(20), || {
        watermarks(&broker.consumer_config(), "small", 0).0 > 0
            && watermarks(&broker.consumer_config(), "short", 0).0 > 0
    });
    assert!(ok, "per-topic retention did not delete anything");
    std::thread::sleep(Duration::from_millis(1_000));

    let small = segment_files(&broker.partition_dir("small", 0));
    assert!(
        dir_bytes(&small) <= 40_000 + SEGMENT_BYTES,
        "small: {small:?}"
    );
    let (low, _) = watermarks(&broker.consumer_config(), "short", 0);
    assert!(low > 0 && low <= 1_000, "short: log start {low}");
    let short = segment_files(&broker.partition_dir("short", 0));
    assert!(
        short.len() <= 2,
        "short keeps only the segment(s) with new records: {short:?}"
    );
    assert_eq!(
        watermarks(&broker.consumer_config(), "keep-all", 0),
        (0, 2_000)
    );
    assert!(segment_files(&broker.partition_dir("keep-all", 0)).len() > 5);
}

fn deleted_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".deleted"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn deleted_segments_linger_for_file_delete_delay_ms() {
    let broker = start(&[("log.segment.delete.delay.ms", "1500")]);
    create_topic(
        &broker.admin_config(),
        "lingering",
        1,
        &[("retention.bytes", "20000")],
    );
    produce(
        &small_batches(&broker),
        "lingering",
        &records("l", 600, None),
    );
    let dir = broker.partition_dir("lingering", 0);
    assert!(
        wait_until(Duration::from_secs(20), || !deleted_files(&dir).is_empty()),
        "retention renamed segments to .deleted"
    );
    assert!(
        segment_files(&dir)
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".deleted")),
        "renamed files are no longer segments"
    );
    assert!(
        wait_until(Duration::from_secs(20), || deleted_files(&dir).is_empty()),
        "and are removed once the delay has passed"
    );
}

/// Retention deletes only where `cleanup.policy` includes `delete`, as in Kafka: a compacted
/// topic (`__consumer_offsets` is one) keeps segments however old their records are, while
/// `compact,delete` loses them as `delete` does.
#[test]
fn retention_applies_only_to_topics_whose_policy_deletes() {
    let broker = start(&[("log.retention.ms", "3600000")]);
    let two_hours_ago = common::now_ms() - 7_200_000;
    let keyed = |tag: &str, ts: Option<i64>| -> Vec<TestRecord> {
        records(tag, 1_000, ts)
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.key = Some(format!("key-{}", i % 100).into_bytes());
                r
            })
            .collect()
    };
    for (topic, policy) in [
        ("compact-only", "compact"),
        ("compact-and-delete", "compact,delete"),
    ] {
        create_topic(
            &broker.admin_config(),
            topic,
            1,
            &[("cleanup.policy", policy)],
        );
        produce(
            &small_batches(&broker),
            topic,
            &keyed("old", Some(two_hours_ago)),
        );
        produce(&small_batches(&broker), topic, &keyed("new", None));
    }
    let ok = wait_until(Duration::from_secs(20), || {
        watermarks(&broker.consumer_config(), "compact-and-delete", 0).0 > 0
    });
    assert!(ok, "compact,delete: no expired segment was deleted");
    let segments = segment_files(&broker.partition_dir("compact-only", 0));
    // Several more retention rounds (every 200 ms): the compacted topic keeps everything.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(
        watermarks(&broker.consumer_config(), "compact-only", 0),
        (0, 2_000),
        "retention deleted records of a compacted topic"
    );
    assert_eq!(
        segment_files(&broker.partition_dir("compact-only", 0)),
        segments
    );
    assert!(
        segments.len() > 2,
        "the test needs old sealed segments: {segments:?}"
    );
}

/// `__consumer_offsets` is compacted: a broker whose `log.retention.ms` is shorter than the age
/// of a commit keeps the commit, across a restart too (it used to delete the whole partition,
/// active segment included, once every record in it had expired).
#[test]
fn committed_offsets_outlive_retention_ms() {
    let mut broker = start(&[("log.retention.ms", "1000")]);
    let topic = "offsets-kept";
    create_topic(&broker.admin_config(), topic, 1, &[]);
    produce(&small_batches(&broker), topic, &records("r", 10, None));
    let mut cfg = broker.consumer_config();
    cfg.set("group.id", "keeps-offsets");
    let c = consumer(&cfg);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(7))
        .unwrap();
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    drop(c);
    // Many retention rounds (every 200 ms) after every offsets record is older than 1 s.
    std::thread::sleep(Duration::from_millis(3_000));
    broker.restart();
    let mut q = TopicPartitionList::new();
    q.add_partition(topic, 0);
    let c = consumer(&cfg);
    let mut last = None;
    let ok = wait_until(Duration::from_secs(30), || {
        match c.committed_offsets(q.clone(), Duration::from_secs(5)) {
            Ok(got) => {
                let o = got.find_partition(topic, 0).map(|e| e.offset());
                last = Some(format!("{o:?}"));
                o == Some(Offset::Offset(7))
            }
            Err(e) => {
                last = Some(e.to_string());
                false
            }
        }
    });
    assert!(
        ok,
        "committed offset after retention and a restart: {last:?}"
    );
}
