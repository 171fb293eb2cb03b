//! Log compaction through real clients: a compacted topic ends with the newest value of each
//! key at its original offset, tombstones go after delete.retention.ms, the disk use shrinks,
//! the result survives restarts and a SIGKILL in the middle of cleaning, records without a key
//! are refused, and `__consumer_offsets` is compacted too.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use common::clients::TestRecord;
use common::clients::{assign, consumer, create_topic, produce, producer, send_all, watermarks};
use common::{segment_files, wait_until, Broker};

const KEYS: usize = 1_000;
const ROUNDS: usize = 100;

/// What the log should hold: offset -> (key, value; None for a tombstone).
type Contents = BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>;

fn start(extra: &[(&str, &str)]) -> Broker {
    let mut settings = vec![("log.cleaner.backoff.ms", "100")];
    settings.extend_from_slice(extra);
    Broker::start(&settings)
}

fn compacted_topic(broker: &Broker, name: &str) {
    create_topic(
        &broker.admin_config(),
        name,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "65536"),
            ("segment.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0"),
            ("delete.retention.ms", "3000"),
        ],
    );
}

fn keyed(key: &str, value: Option<String>) -> TestRecord {
    TestRecord {
        key: Some(key.as_bytes().to_vec()),
        value: value.map(String::into_bytes),
        timestamp: None,
        headers: Vec::new(),
        partition: Some(0),
    }
}

/// `ROUNDS` updates of each of `KEYS` keys, then tombstones for the first `tombstones` keys.
fn updates(tombstones: usize) -> Vec<TestRecord> {
    let mut out = Vec::with_capacity(KEYS * ROUNDS + tombstones);
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            out.push(keyed(
                &format!("key-{k:04}"),
                Some(format!("value-{round}-{k}")),
            ));
        }
    }
    for k in 0..tombstones {
        out.push(keyed(&format!("key-{k:04}"), None));
    }
    out
}

/// The newest record of each key among `records` delivered at `delivered`.
fn newest(records: &[TestRecord], delivered: &[(i32, i64)]) -> Contents {
    let mut by_key: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
    for (r, (_, offset)) in records.iter().zip(delivered) {
        by_key.insert(r.key.clone().unwrap(), (*offset, r.value.clone()));
    }
    by_key
        .into_iter()
        .map(|(k, (offset, v))| (offset, (k, v)))
        .collect()
}

/// Every record from the log start to the high watermark.
fn read_all(broker: &Broker, topic: &str) -> Contents {
    let c = consumer(&broker.consumer_config());
    let mut high = -1;
    // Right after a (re)start the partition may not be known yet.
    let known = wait_until(Duration::from_secs(30), || {
        match c.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            Ok((_, h)) => {
                high = h;
                true
            }
            Err(_) => false,
        }
    });
    assert!(known, "no watermarks for {topic}");
    let c = consumer(&broker.consumer_config());
    assign(&c, topic, &[(0, Offset::Beginning)]);
    let mut out = Contents::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.keys().next_back().is_none_or(|o| *o < high - 1) {
        assert!(
            Instant::now() < deadline,
            "read {} records below {high}",
            out.len()
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                let key = m
                    .key()
                    .expect("a compacted topic holds keyed records")
                    .to_vec();
                out.insert(m.offset(), (key, m.payload().map(|v| v.to_vec())));
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {}
        }
    }
    out
}

fn log_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// One more record after segment.ms, so the segment holding the last writes is sealed (the
/// active segment is never cleaned); returns its offset.
fn roll(broker: &Broker, topic: &str, tag: &str) -> (i64, (Vec<u8>, Option<Vec<u8>>)) {
    std::thread::sleep(Duration::from_millis(1_100));
    let r = keyed(&format!("roll-{tag}"), Some(tag.to_string()));
    let at = produce(&broker.producer_config(), topic, std::slice::from_ref(&r));
    (at[0].1, (r.key.unwrap(), r.value))
}

/// Reads until the log holds exactly `want` (the cleaner runs in the background).
fn wait_for_contents(broker: &Broker, topic: &str, want: &Contents, what: &str) {
    let mut last = Contents::new();
    let done = wait_until(Duration::from_secs(90), || {
        last = read_all(broker, topic);
        if &last == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(400));
        false
    });
    if !done {
        let extra: Vec<_> = last
            .keys()
            .filter(|o| !want.contains_key(o))
            .take(5)
            .collect();
        let missing: Vec<_> = want
            .keys()
            .filter(|o| !last.contains_key(o))
            .take(5)
            .collect();
        panic!(
            "{what}: {} records, want {}; extra offsets {extra:?}, missing {missing:?}\n{}",
            last.len(),
            want.len(),
            broker.stderr()
        );
    }
}

#[test]
fn compaction_keeps_the_newest_value_per_key_and_drops_old_tombstones() {
    let mut broker = start(&[]);
    let topic = "changelog";
    compacted_topic(&broker, topic);
    let records = updates(100);
    let delivered = produce(&broker.producer_config(), topic, &records);
    let mut want = newest(&records, &delivered);
    assert_eq!(want.len(), KEYS);
    let dir = broker.partition_dir(topic, 0);
    // The cleaner runs while the records arrive; compare with the bytes of keys and values.
    let payload: usize = records
        .iter()
        .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len))
        .sum();
    let (o, r) = roll(&broker, topic, "a");
    want.insert(o, r);

    // The newest value of each key at the offset it was written at; tombstones still there.
    wait_for_contents(&broker, topic, &want, "first pass");
    let bytes_after = log_bytes(&dir);
    assert!(
        bytes_after * 10 < payload as u64,
        "{bytes_after} log bytes hold {payload} bytes of keys and values written"
    );
    let (low, high) = watermarks(&broker.consumer_config(), topic, 0);
    assert_eq!((low, high), (0, o + 1), "offsets never move");

    // After delete.retention.ms, a later pass removes the tombstones.
    std::thread::sleep(Duration::from_millis(3_000));
    let (o2, r2) = roll(&broker, topic, "b");
    want.retain(|_, (_, v)| v.is_some());
    want.insert(o2, r2);
    assert_eq!(want.len(), KEYS - 100 + 2);
    wait_for_contents(
        &broker,
        topic,
        &want,
        "tombstones after delete.retention.ms",
    );

    // The same across a restart, and the topic goes on from the same end.
    broker.restart();
    assert_eq!(read_all(&broker, topic), want);
    let next = produce(
        &broker.producer_config(),
        topic,
        &[keyed("key-0500", Some("after restart".into()))],
    );
    assert_eq!(next[0].1, o2 + 1);
}

#[test]
fn a_kill_in_the_middle_of_cleaning_leaves_the_old_log_or_the_new() {
    // A throttled cleaner, so a pass takes seconds and the kill lands inside it.
    let mut broker = start(&[("log.cleaner.io.max.bytes.per.second", "400000")]);
    let topic = "killed";
    compacted_topic(&broker, topic);
    let records = updates(0);
    let delivered = produce(&broker.producer_config(), topic, &records);
    let written: Contents = records
        .iter()
        .zip(&delivered)
        .map(|(r, (_, o))| (*o, (r.key.clone().unwrap(), r.value.clone())))
        .collect();
    let mut want = newest(&records, &delivered);
    let (o, r) = roll(&broker, topic, "a");
    want.insert(o, r.clone());
    let dir = broker.partition_dir(topic, 0);
    let cleaning = wait_until(Duration::from_secs(60), || {
        std::fs::read_dir(&dir).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".cleaned")))
        })
    });
    assert!(cleaning, "no cleaning pass started");
    std::thread::sleep(Duration::from_millis(300));
    broker.kill();
    broker.start_again();

    // Whatever the kill left: every record is one that was written at that offset, and the
    // newest value of every key is there.
    let seen = read_all(&broker, topic);
    for (offset, rec) in &seen {
        let expected = written.get(offset).or((*offset == o).then_some(&r));
        assert_eq!(Some(rec), expected, "offset {offset} after the kill");
    }
    for offset in want.keys() {
        assert!(seen.contains_key(offset), "newest record at {offset} lost");
    }
    // And the cleaner finishes the job after the restart.
    wait_for_contents(&broker, topic, &want, "cleaning after the kill");
}

#[test]
fn records_without_a_key_are_refused_on_a_compacted_topic() {
    let broker = start(&[]);
    let topic = "keyed-only";
    compacted_topic(&broker, topic);
    let mut cfg = broker.producer_config();
    cfg.set("message.send.max.retries", "0");
    // Kafka refuses the whole batch, so the keyless record goes alone.
    let p = producer(&cfg, 1);
    send_all(&p, topic, &[TestRecord::value("no key").in_partition(0)], 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        use rdkafka::producer::Producer;
        p.poll(Duration::from_millis(100));
        let result = p.context().results.lock().unwrap()[0].clone();
        if let Some(result) = result {
            match result {
                Err(e) => assert!(e.contains("InvalidRecord"), "{e}"),
                Ok(at) => panic!("a keyless record was accepted at {at:?}"),
            }
            break;
        }
        assert!(Instant::now() < deadline, "no delivery report");
    }
    // The broker goes on serving the topic.
    let ok = produce(
        &broker.producer_config(),
        topic,
        &[keyed("k", Some("v".into()))],
    );
    assert_eq!(ok, vec![(0, 0)]);
    // A topic that is not compacted takes keyless records as before.
    let plain = produce(
        &broker.producer_config(),
        "plain",
        &[TestRecord::value("no key").in_partition(0)],
    );
    assert_eq!(plain.len(), 1);
}

/// Java's `String.hashCode`, for the group's `__consumer_offsets` partition.
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

#[test]
fn consumer_offsets_are_compacted_and_replay_after_a_restart() {
    let mut broker = start(&[
        ("offsets.topic.num.partitions", "4"),
        ("offsets.topic.segment.bytes", "16384"),
    ]);
    let topic = "events";
    produce(
        &broker.producer_config(),
        topic,
        &[TestRecord::value("x").in_partition(0)],
    );
    let group = "compacting-group";
    let mut cfg = broker.consumer_config();
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = cfg.create().unwrap();
    let commits = 3_000;
    for i in 0..commits {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(i))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    drop(c);
    let dir = broker.partition_dir("__consumer_offsets", offsets_partition(group, 4));
    // ~3000 commit records (~300 KB) in 16 KiB segments; cleaned, a handful remain.
    let shrunk = wait_until(Duration::from_secs(60), || log_bytes(&dir) < 16_384 * 2);
    assert!(
        shrunk,
        "offsets partition not compacted: {} segments, {} bytes",
        segment_files(&dir).len(),
        log_bytes(&dir)
    );
    broker.restart();
    let c: BaseConsumer = cfg.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    let got = committed.find_partition(topic, 0).unwrap().offset();
    assert_eq!(got, Offset::Offset(commits - 1));
}

#[test]
fn compact_and_delete_does_both() {
    let broker = start(&[("log.retention.check.interval.ms", "200")]);
    let topic = "both";
    create_topic(
        &broker.admin_config(),
        topic,
        1,
        &[
            ("cleanup.policy", "compact,delete"),
            ("segment.bytes", "16384"),
            ("segment.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0"),
            ("retention.ms", "3600000"),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Two hours old: past retention.ms, so retention deletes these segments.
    let old: Vec<TestRecord> = (0..400)
        .map(|i| TestRecord {
            timestamp: Some(now - 7_200_000),
            ..keyed(&format!("old-{i:03}"), Some("x".repeat(100)))
        })
        .collect();
    let mut cfg = broker.producer_config();
    cfg.set("batch.num.messages", "20");
    produce(&cfg, topic, &old);
    // Past segment.ms: the fresh records start a segment of their own.
    std::thread::sleep(Duration::from_millis(1_100));
    // Fresh updates of ten keys: compaction keeps the newest of each.
    let fresh: Vec<TestRecord> = (0..2_000)
        .map(|i| keyed(&format!("new-{}", i % 10), Some(format!("v{i}"))))
        .collect();
    let delivered = produce(&cfg, topic, &fresh);
    let mut want = newest(&fresh, &delivered);
    let (o, r) = roll(&broker, topic, "a");
    want.insert(o, r);
    wait_for_contents(&broker, topic, &want, "compact,delete");
    let (low, _) = watermarks(&broker.consumer_config(), topic, 0);
    assert!(
        low > 0,
        "retention moved the log start past the old records"
    );
}
