//! A network fuzzer against a real broker: while a librdkafka producer keeps producing keyed
//! records with acks=all, raw connections send mutated valid requests of every key and version
//! the broker advertises (bit flips, truncation, lying size prefixes and array counts, huge
//! varints, garbage tails), in batches. After each batch a fresh connection gets well-formed
//! ApiVersions and Metadata answers; at the end every acknowledged record is read back at its
//! offset with its payload and the broker is still running.
//!
//! `GREGOR_FUZZ_ITERS` is the number of batches (default 40), `GREGOR_FUZZ_SEED` the seed; both
//! are printed, and a failure names the seed and the batch.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;

use common::clients::{consume_all, create_topic, producer, send_all, TestRecord};
use common::Broker;
use gregor::fuzz::{budget, hex, input, requests::request_corpus, Rng};
use rdkafka::producer::Producer;

const TOPIC: &str = "fuzz-acked";
const PARTITIONS: i32 = 3;
/// Requests per batch, sent over several connections.
const FRAMES_PER_BATCH: u64 = 60;
const FRAMES_PER_CONNECTION: u64 = 6;

/// A size-prefixed frame of `body`; sometimes the prefix lies.
fn framed(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => body.len() as i32 + 1 + rng.below(64) as i32,
        1 => body.len() as i32 - 1 - rng.below(8) as i32,
        2 => [0, -1, i32::MAX, 0x0100_0000][rng.below(4)],
        _ => body.len() as i32,
    };
    let mut f = len.to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Sends `frames` on one connection and drains what comes back until the broker answers
/// nothing more or closes.
fn send_connection(addr: std::net::SocketAddr, frames: &[Vec<u8>]) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return;
    };
    s.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    for f in frames {
        if s.write_all(f).is_err() {
            return;
        }
    }
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn assert_healthy(broker: &mut Broker, what: &str) {
    broker.assert_alive(what);
    let mut c = broker.raw();
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("gregor-tests"))
        .with_client_software_version(StrBytes::from_static_str("0"));
    let resp = c.request(&req, 3);
    assert_eq!(resp.error_code, 0, "{what}: ApiVersions");
    assert!(!resp.api_keys.is_empty(), "{what}: ApiVersions lists APIs");
    let meta = c.request(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(meta.brokers.len(), 1, "{what}: Metadata lists the broker");
    assert!(
        meta.topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC)),
        "{what}: Metadata lists {TOPIC}"
    );
}

#[test]
fn mutated_requests_never_harm_the_broker_or_acknowledged_records() {
    let (seed, batches) = budget("network", 40);
    let mut broker = Broker::start(&[("auto.create.topics.enable", "false")]);
    create_topic(&broker.admin_config(), TOPIC, PARTITIONS, &[]);
    let addr = broker.addr();

    // The producer: keyed records, acks=all, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut pcfg = broker.producer_config();
    pcfg.set("acks", "all");
    let producing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            const CAPACITY: usize = 1_000_000;
            let p = producer(&pcfg, CAPACITY);
            let mut records = Vec::new();
            while !stop.load(Ordering::Relaxed) && records.len() + 50 < CAPACITY {
                let round: Vec<TestRecord> = (records.len()..records.len() + 50)
                    .map(|i| TestRecord {
                        key: Some(format!("key-{}", i % 97).into_bytes()),
                        value: Some(format!("value-{i}-{seed}").into_bytes()),
                        timestamp: None,
                        headers: vec![],
                        partition: None,
                    })
                    .collect();
                send_all(&p, TOPIC, &round, records.len());
                records.extend(round);
                let _ = p.flush(Duration::from_secs(30));
            }
            let _ = p.flush(Duration::from_secs(60));
            let results = p.context().results.lock().unwrap().clone();
            // Only acknowledged records are promised; a failed delivery is not a loss.
            records
                .into_iter()
                .zip(results)
                .filter_map(|(r, d)| match d {
                    Some(Ok(pos)) => Some((pos, r)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    };

    let corpus = request_corpus();
    for batch in 0..batches {
        let mut rng = Rng::new(seed ^ batch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut conn = Vec::new();
        for k in 0..FRAMES_PER_BATCH {
            let iteration = batch * FRAMES_PER_BATCH + k;
            let body = input(seed, iteration, &corpus);
            let mut f = framed(&mut rng, &body);
            if rng.chance(8) {
                for _ in 0..1 + rng.below(64) {
                    f.push(rng.next_u64() as u8);
                }
            }
            conn.push(f);
            if conn.len() as u64 == FRAMES_PER_CONNECTION || k + 1 == FRAMES_PER_BATCH {
                send_connection(addr, &conn);
                conn.clear();
            }
        }
        let what = format!("GREGOR_FUZZ_SEED={seed} batch {batch}");
        let healthy = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_healthy(&mut broker, &what)
        }));
        if healthy.is_err() {
            let last = input(seed, (batch + 1) * FRAMES_PER_BATCH - 1, &corpus);
            panic!(
                "network fuzz failed after {what} (last request {}); broker log:\n{}",
                hex(&last, 256),
                broker.stderr()
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    let acked = producing.join().expect("producer thread");
    assert!(!acked.is_empty(), "the producer got acknowledgements");
    let got = consume_all(
        &broker.consumer_config(),
        TOPIC,
        PARTITIONS,
        acked.len(),
        Duration::from_secs(60),
    );
    let by_pos: HashMap<(i32, i64), _> = got.iter().map(|g| ((g.partition, g.offset), g)).collect();
    for (pos, r) in &acked {
        let g = by_pos
            .get(pos)
            .unwrap_or_else(|| panic!("seed {seed}: acknowledged {pos:?} was not read back"));
        assert_eq!(g.key, r.key, "seed {seed}: key at {pos:?}");
        assert_eq!(g.value, r.value, "seed {seed}: value at {pos:?}");
    }
    broker.assert_alive("after the fuzz batches");
    eprintln!(
        "fuzz target=network seed={seed} inputs={} batches={batches} acked={} crashes=0",
        batches * FRAMES_PER_BATCH,
        acked.len()
    );
}
