//! Acknowledged records survive a clean stop and a SIGKILL, at the offsets the broker gave them,
//! across several segments; producing afterwards continues at the next offset.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::clients::{
    assert_same, consume_all, create_topic, produce, producer, send_all, watermarks, TestRecord,
};
use common::{segment_files, Broker};
use rdkafka::producer::Producer;

const PARTITIONS: i32 = 3;
/// Small segments so a few thousand records cross several of them.
const SEGMENT_BYTES: &str = "65536";

fn records(tag: &str, n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| {
            let mut v = format!("{tag}-{i:06}-").into_bytes();
            v.resize(200, b'x');
            TestRecord {
                key: Some(format!("{tag}-k{i}").into_bytes()),
                value: Some(v),
                timestamp: None,
                headers: Vec::new(),
                partition: Some(i as i32 % PARTITIONS),
            }
        })
        .collect()
}

fn start() -> Broker {
    Broker::start(&[("log.segment.bytes", SEGMENT_BYTES)])
}

/// Produces one round with acks=1 and one with acks=all; returns records and delivered offsets.
fn produce_both_acks(broker: &Broker, topic: &str, n: usize) -> (Vec<TestRecord>, Vec<(i32, i64)>) {
    let mut all_records = Vec::new();
    let mut all_delivered = Vec::new();
    for acks in ["1", "all"] {
        let recs = records(&format!("acks{acks}"), n);
        let mut cfg = broker.producer_config();
        // Small batches, so segments roll several times.
        cfg.set("acks", acks).set("batch.num.messages", "100");
        let delivered = produce(&cfg, topic, &recs);
        all_records.extend(recs);
        all_delivered.extend(delivered);
    }
    (all_records, all_delivered)
}

fn end_offsets(delivered: &[(i32, i64)]) -> HashMap<i32, i64> {
    let mut ends = HashMap::new();
    for (p, o) in delivered {
        let e = ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    ends
}

/// After a restart: everything acknowledged reads back at its offset, the log ends where it
/// ended, and new records get the next offsets.
fn check_after_restart(
    broker: &Broker,
    topic: &str,
    records: &[TestRecord],
    delivered: &[(i32, i64)],
) {
    let ends = end_offsets(delivered);
    for p in 0..PARTITIONS {
        let (low, high) = watermarks(&broker.consumer_config(), topic, p);
        assert_eq!(low, 0, "partition {p} log start");
        assert_eq!(high, ends[&p], "partition {p} log end after restart");
    }
    let got = consume_all(
        &broker.consumer_config(),
        topic,
        PARTITIONS,
        records.len(),
        Duration::from_secs(90),
    );
    assert_same(records, delivered, &got);

    let more = records_for_after(30);
    let mut cfg = broker.producer_config();
    cfg.set("acks", "all");
    let delivered_more = produce(&cfg, topic, &more);
    let mut next = ends.clone();
    for (i, (p, o)) in delivered_more.iter().enumerate() {
        let want = next.get_mut(p).unwrap();
        assert_eq!(
            *o, *want,
            "record {i} produced after restart to partition {p}"
        );
        *want += 1;
    }
}

fn records_for_after(n: usize) -> Vec<TestRecord> {
    records("after", n)
}

fn assert_several_segments(broker: &Broker, topic: &str) {
    let segs = segment_files(&broker.partition_dir(topic, 0));
    assert!(segs.len() >= 3, "expected several segments, found {segs:?}");
}

#[test]
fn clean_stop_keeps_acknowledged_records() {
    let mut broker = start();
    let topic = "durable-clean";
    create_topic(&broker.admin_config(), topic, PARTITIONS, &[]);
    let (records, delivered) = produce_both_acks(&broker, topic, 2_000);
    assert_several_segments(&broker, topic);
    broker.restart();
    check_after_restart(&broker, topic, &records, &delivered);
    // And once more, with the records written after the first restart included.
    broker.restart();
    let ends = end_offsets(&delivered);
    for p in 0..PARTITIONS {
        let (_, high) = watermarks(&broker.consumer_config(), topic, p);
        assert_eq!(
            high,
            ends[&p] + 10,
            "partition {p} after the second restart"
        );
    }
}

#[test]
fn sigkill_keeps_acknowledged_records() {
    let mut broker = start();
    let topic = "durable-kill";
    create_topic(&broker.admin_config(), topic, PARTITIONS, &[]);
    let (records, delivered) = produce_both_acks(&broker, topic, 2_000);
    assert_several_segments(&broker, topic);
    broker.kill();
    broker.start_again();
    check_after_restart(&broker, topic, &records, &delivered);
}

/// SIGKILL while a producer is mid-stream: every record acknowledged before the crash is there at
/// its offset afterwards; unacknowledged ones may or may not be, but never at an acknowledged
/// offset.
#[test]
fn sigkill_during_produce_keeps_acknowledged_records() {
    let mut broker = start();
    let topic = "durable-midstream";
    create_topic(&broker.admin_config(), topic, PARTITIONS, &[]);
    let records = records("mid", 20_000);
    let mut cfg = broker.producer_config();
    cfg.set("acks", "all")
        .set("message.timeout.ms", "5000")
        .set("linger.ms", "2")
        .set("batch.num.messages", "50");
    let p = producer(&cfg, records.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    // Send in chunks until a few thousand are acknowledged, then crash the broker.
    while sent < records.len() {
        let end = (sent + 200).min(records.len());
        send_all(&p, topic, &records[sent..end], sent);
        sent = end;
        p.poll(Duration::from_millis(10));
        let acked = count_acked(&p);
        if acked >= 3_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {acked} acknowledged in 60 s"
        );
    }
    broker.kill();
    let _ = p.flush(Duration::from_secs(30));
    let results = p.context().results.lock().unwrap().clone();
    drop(p);
    let mut acked_records = Vec::new();
    let mut acked_at = Vec::new();
    for (r, res) in records.iter().zip(&results) {
        if let Some(Ok(pos)) = res {
            acked_records.push(r.clone());
            acked_at.push(*pos);
        }
    }
    assert!(acked_records.len() >= 3_000);

    broker.start_again();
    let mut ends = HashMap::new();
    let mut total = 0;
    for part in 0..PARTITIONS {
        let (low, high) = watermarks(&broker.consumer_config(), topic, part);
        assert_eq!(low, 0);
        total += high as usize;
        ends.insert(part, high);
    }
    let acked_ends = end_offsets(&acked_at);
    for part in 0..PARTITIONS {
        assert!(
            ends[&part] >= acked_ends[&part],
            "partition {part}: log end {} below acknowledged end {}",
            ends[&part],
            acked_ends[&part]
        );
    }
    let got = consume_all(
        &broker.consumer_config(),
        topic,
        PARTITIONS,
        total,
        Duration::from_secs(90),
    );
    assert_same(&acked_records, &acked_at, &got);

    let more = records_for_after(30);
    let delivered_more = produce(&broker.producer_config(), topic, &more);
    for (p, o) in &delivered_more {
        assert!(
            *o >= ends[p],
            "new record at {o} below log end {} of partition {p}",
            ends[p]
        );
    }
}

fn count_acked(p: &common::clients::TestProducer) -> usize {
    p.context()
        .results
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r, Some(Ok(_))))
        .count()
}
