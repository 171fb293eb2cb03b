//! Produce and consume with librdkafka: every record comes back at the offset its delivery report
//! gave, with its key, value, header and timestamp, in the partition Java's partitioner picks.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::clients::{
    assert_same, consume_all, consumer, create_topic, poll_n, produce, TestRecord,
};
use common::{java_partition, now_ms, Broker};
use rdkafka::consumer::Consumer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;
const RECORDS: usize = 100_000;
const KEYS: usize = 1_000;

/// `RECORDS` keyed records: keys spread over `KEYS` values, ~100-byte values, one header, and
/// explicit timestamps one millisecond apart starting an hour ago.
fn keyed_records() -> Vec<TestRecord> {
    let base_ts = now_ms() - 3_600_000;
    (0..RECORDS)
        .map(|i| {
            let key = format!("key-{:04}", (i * 7_919) % KEYS);
            let mut value = format!("value {i:08} of {key} ").into_bytes();
            while value.len() < 100 {
                value.push(b'a' + (value.len() % 26) as u8);
            }
            TestRecord {
                key: Some(key.into_bytes()),
                value: Some(value),
                timestamp: Some(base_ts + i as i64),
                headers: vec![("seq".to_string(), (i as u64).to_be_bytes().to_vec())],
                partition: None,
            }
        })
        .collect()
}

fn round_trip(codec: &str) {
    let broker = Broker::start(&[("auto.create.topics.enable", "false")]);
    let topic = format!("keyed-{codec}");
    create_topic(&broker.admin_config(), &topic, PARTITIONS, &[]);

    let records = keyed_records();
    let mut cfg = broker.producer_config();
    cfg.set("compression.type", codec).set("acks", "all");
    let delivered = produce(&cfg, &topic, &records);

    // Each key lands where Java's murmur2 partitioner puts it.
    for (i, (r, (p, _))) in records.iter().zip(&delivered).enumerate() {
        let key = r.key.as_deref().unwrap();
        assert_eq!(*p, java_partition(key, PARTITIONS), "record {i} partition");
    }
    // Offsets per partition are exactly 0..n, and per key they follow produce order.
    let mut per_partition: HashMap<i32, Vec<i64>> = HashMap::new();
    let mut last_per_key: HashMap<&[u8], i64> = HashMap::new();
    for (r, (p, o)) in records.iter().zip(&delivered) {
        per_partition.entry(*p).or_default().push(*o);
        let key = r.key.as_deref().unwrap();
        if let Some(prev) = last_per_key.insert(key, *o) {
            assert!(
                *o > prev,
                "key {:?}: offset {o} after {prev}",
                String::from_utf8_lossy(key)
            );
        }
    }
    for (p, offsets) in &mut per_partition {
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert!(
            *offsets == expected,
            "partition {p}: offsets are not 0..{}",
            offsets.len()
        );
    }

    let got = consume_all(
        &broker.consumer_config(),
        &topic,
        PARTITIONS,
        RECORDS,
        Duration::from_secs(180),
    );
    // A consumer sees each partition in offset order, with no gaps.
    let mut next: HashMap<i32, i64> = HashMap::new();
    for g in &got {
        let want = next.entry(g.partition).or_insert(0);
        assert_eq!(g.offset, *want, "partition {} out of order", g.partition);
        *want += 1;
    }
    assert_same(&records, &delivered, &got);

    // The broker stores the producer's batches as they came: compressed with the codec.
    let codec_id = ["none", "gzip", "snappy", "lz4", "zstd"]
        .iter()
        .position(|c| *c == codec)
        .unwrap();
    for p in 0..PARTITIONS {
        for seg in common::segment_files(&broker.partition_dir(&topic, p)) {
            let (batches, _) = common::walk_segment(&common::read_file(&seg));
            assert!(!batches.is_empty(), "{}: no valid batch", seg.display());
            for b in batches {
                assert_eq!(
                    b.compression() as usize,
                    codec_id,
                    "{codec}: batch at {} in {}",
                    b.base_offset,
                    seg.display()
                );
            }
        }
    }
}

#[test]
fn keyed_round_trip_uncompressed() {
    round_trip("none");
}

#[test]
fn keyed_round_trip_gzip() {
    round_trip("gzip");
}

#[test]
fn keyed_round_trip_snappy() {
    round_trip("snappy");
}

#[test]
fn keyed_round_trip_lz4() {
    round_trip("lz4");
}

#[test]
fn keyed_round_trip_zstd() {
    round_trip("zstd");
}

/// What `kcat -P` then `kcat -C -e` do against a broker with nothing but a listener and a data
/// dir: the topic is auto-created, default client settings work.
#[test]
fn default_clients_against_default_broker() {
    let broker = Broker::start_minimal();
    let topic = "test";
    let mut pcfg = ClientConfig::new();
    pcfg.set("bootstrap.servers", broker.bootstrap());
    let records: Vec<TestRecord> = (0..100)
        .map(|i| TestRecord::value(format!("line {i}")))
        .collect();
    let delivered = produce(&pcfg, topic, &records);
    let offsets: Vec<i64> = delivered.iter().map(|(_, o)| *o).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
    assert!(
        delivered.iter().all(|(p, _)| *p == 0),
        "num.partitions defaults to 1"
    );

    // librdkafka's `assign` needs a group.id (kcat's simple consumer does not); nothing else.
    let mut ccfg = ClientConfig::new();
    ccfg.set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "kcat");
    let c = consumer(&ccfg);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let got = poll_n(&c, 100, Duration::from_secs(60));
    assert_same(&records, &delivered, &got);
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 100));
}

/// The same topic read by a second, independent consumer starting mid-log.
#[test]
fn consume_from_a_middle_offset() {
    let broker = Broker::start(&[]);
    let topic = "middle";
    create_topic(&broker.admin_config(), topic, 1, &[]);
    let records: Vec<TestRecord> = (0..1_000)
        .map(|i| TestRecord::value(format!("v{i}")).in_partition(0))
        .collect();
    let delivered = produce(&broker.producer_config(), topic, &records);
    let c = consumer(&broker.consumer_config());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(500))
        .unwrap();
    c.assign(&tpl).unwrap();
    let got = poll_n(&c, 500, Duration::from_secs(60));
    assert_eq!(got[0].offset, 500);
    assert_same(&records[500..], &delivered[500..], &got);
}

/// The test's partitioner is Java's: vectors from Kafka's UtilsTest.
#[test]
fn murmur2_matches_java() {
    let cases: &[(&[u8], i32)] = &[
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];
    for (key, want) in cases {
        assert_eq!(
            common::murmur2(key),
            *want,
            "murmur2({:?})",
            String::from_utf8_lossy(key)
        );
    }
}

/// Null keys, null values (tombstones), empty values and headers with empty values survive.
#[test]
fn null_and_empty_fields_round_trip() {
    let broker = Broker::start(&[]);
    let topic = "nulls";
    create_topic(&broker.admin_config(), topic, 1, &[]);
    type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    let shapes: [KeyValue; 4] = [
        (None, Some(b"v")),
        (Some(b"k"), None),
        (Some(b""), Some(b"")),
        (None, None),
    ];
    let records: Vec<TestRecord> = (0..400)
        .map(|i| {
            let (k, v) = shapes[i % shapes.len()];
            TestRecord {
                key: k.map(|k| k.to_vec()),
                value: v.map(|v| v.to_vec()),
                timestamp: Some(now_ms() - 1_000 + i as i64),
                headers: if i % 3 == 0 {
                    vec![("empty".to_string(), Vec::new())]
                } else {
                    Vec::new()
                },
                partition: Some(0),
            }
        })
        .collect();
    let delivered = produce(&broker.producer_config(), topic, &records);
    let got = consume_all(
        &broker.consumer_config(),
        topic,
        1,
        records.len(),
        Duration::from_secs(60),
    );
    assert_same(&records, &delivered, &got);
}

/// A topic with message.timestamp.type=LogAppendTime: the broker's clock replaces the
/// producer's timestamps, and consumers see them as LogAppendTime.
#[test]
fn log_append_time_topic_uses_the_broker_clock() {
    let broker = Broker::start(&[]);
    let topic = "append-time";
    create_topic(
        &broker.admin_config(),
        topic,
        2,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let old = now_ms() - 3_600_000;
    let records: Vec<TestRecord> = (0..200)
        .map(|i| TestRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            timestamp: Some(old),
            headers: Vec::new(),
            partition: None,
        })
        .collect();
    let before = now_ms();
    let delivered = produce(&broker.producer_config(), topic, &records);
    let after = now_ms();
    let got = consume_all(
        &broker.consumer_config(),
        topic,
        2,
        records.len(),
        Duration::from_secs(60),
    );
    for g in &got {
        assert!(
            g.log_append_time,
            "offset {} of partition {} is not LogAppendTime",
            g.offset, g.partition
        );
        let ts = g.timestamp.unwrap();
        assert!(
            ts >= before - 1_000 && ts <= after + 1_000,
            "append time {ts} not in [{before}, {after}]"
        );
    }
    let without_ts: Vec<TestRecord> = records
        .into_iter()
        .map(|r| TestRecord {
            timestamp: None,
            ..r
        })
        .collect();
    assert_same(&without_ts, &delivered, &got);
}

/// With no tail cache every fetch is answered from the segment files: first cold (written with
/// direct I/O, not in the page cache), then warm (sent with sendfile from the page cache).
/// Small segments and small fetch limits put reads across segment boundaries and at every
/// max_bytes cut-off; records come back exactly as produced, both times.
#[test]
fn reads_from_segment_files_cold_and_warm_are_exact() {
    let broker = Broker::start(&[
        ("auto.create.topics.enable", "false"),
        ("fetch.cache.bytes", "0"),
    ]);
    let topic = "from-files";
    create_topic(
        &broker.admin_config(),
        topic,
        PARTITIONS,
        &[("segment.bytes", "200000")],
    );
    let records = keyed_records();
    let mut cfg = broker.producer_config();
    cfg.set("linger.ms", "2").set("batch.size", "40000");
    let delivered = produce(&cfg, topic, &records);
    for p in 0..PARTITIONS {
        let segments = common::segment_files(&broker.partition_dir(topic, p)).len();
        assert!(segments > 3, "partition {p}: {segments} segments");
    }
    for pass in ["cold", "warm"] {
        let mut cfg = broker.consumer_config();
        // A first batch larger than these limits still comes back whole.
        cfg.set("fetch.message.max.bytes", "30000")
            .set("message.max.bytes", "70000")
            .set("fetch.max.bytes", "70000");
        let got = consume_all(&cfg, topic, PARTITIONS, RECORDS, Duration::from_secs(180));
        assert_eq!(got.len(), RECORDS, "{pass}");
        assert_same(&records, &delivered, &got);
    }
}

/// A request budget smaller than one request: requests still go (one at a time per shard),
/// and nothing is lost.
#[test]
fn requests_larger_than_the_request_budget_are_served() {
    let broker = Broker::start(&[
        ("auto.create.topics.enable", "false"),
        ("queued.max.request.bytes", "100000"),
    ]);
    let topic = "small-budget";
    create_topic(&broker.admin_config(), topic, PARTITIONS, &[]);
    let records = keyed_records();
    let mut cfg = broker.producer_config();
    cfg.set("linger.ms", "20").set("batch.size", "1000000");
    let delivered = produce(&cfg, topic, &records);
    let got = consume_all(
        &broker.consumer_config(),
        topic,
        PARTITIONS,
        RECORDS,
        Duration::from_secs(180),
    );
    assert_same(&records, &delivered, &got);
}
