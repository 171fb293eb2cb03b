//! librdkafka helpers: create topics, produce with per-record delivery reports, consume by
//! `assign` (no group), all with deadlines.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, Timestamp, TopicPartitionList};

/// One record as a test produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Explicit CreateTime, or None to let the client stamp it.
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Fixed partition, or None for the partitioner's choice.
    pub partition: Option<i32>,
}

impl TestRecord {
    pub fn value(v: impl Into<Vec<u8>>) -> TestRecord {
        TestRecord {
            key: None,
            value: Some(v.into()),
            timestamp: None,
            headers: Vec::new(),
            partition: None,
        }
    }

    pub fn in_partition(mut self, p: i32) -> TestRecord {
        self.partition = Some(p);
        self
    }
}

/// One record as a consumer got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    /// The broker stamped the timestamp (LogAppendTime) rather than the producer.
    pub log_append_time: bool,
    pub headers: Vec<(String, Vec<u8>)>,
}

pub fn create_topic(
    bootstrap_cfg: &ClientConfig,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> =
        bootstrap_cfg.create().expect("create admin client");
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .operation_timeout(Some(Duration::from_secs(30)));
    let res = futures::executor::block_on(admin.create_topics([&t], &opts))
        .unwrap_or_else(|e| panic!("CreateTopics {name}: {e}"));
    for r in res {
        match r {
            Ok(_) => {}
            Err((topic, code)) => panic!("CreateTopics {topic}: {code:?}"),
        }
    }
}

/// A delivery report: (partition, offset) or the error text.
pub type Delivery = Result<(i32, i64), String>;

/// Collects delivery reports by the index given as the delivery opaque.
pub struct Collector {
    pub results: Mutex<Vec<Option<Delivery>>>,
}

impl ClientContext for Collector {}

impl ProducerContext for Collector {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, index: usize) {
        let v = match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.results.lock().unwrap()[index] = Some(v);
    }
}

pub type TestProducer = BaseProducer<Collector>;

pub fn producer(cfg: &ClientConfig, capacity: usize) -> TestProducer {
    cfg.create_with_context(Collector {
        results: Mutex::new(vec![None; capacity]),
    })
    .expect("create producer")
}

/// Sends `records[i]` with delivery opaque `first_index + i`; retries on a full local queue.
pub fn send_all(p: &TestProducer, topic: &str, records: &[TestRecord], first_index: usize) {
    for (i, r) in records.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec: BaseRecord<'_, Vec<u8>, Vec<u8>, usize> =
            BaseRecord::with_opaque_to(topic, first_index + i);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v);
        }
        if let Some(ts) = r.timestamp {
            rec = rec.timestamp(ts);
        }
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        if !r.headers.is_empty() {
            rec = rec.headers(headers);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    let full = e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull);
                    assert!(full, "send record {i}: {e}");
                    assert!(
                        Instant::now() < deadline,
                        "local queue stayed full for 60 s"
                    );
                    rec = back;
                    p.poll(Duration::from_millis(50));
                }
            }
        }
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
}

/// Flushes and returns the (partition, offset) of every record, panicking on any failure.
pub fn wait_delivered(p: &TestProducer, timeout: Duration) -> Vec<(i32, i64)> {
    let flushed = p.flush(timeout);
    let results = p.context().results.lock().unwrap().clone();
    let missing = results.iter().filter(|r| r.is_none()).count();
    let errors: Vec<(usize, &String)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Some(Err(e)) => Some((i, e)),
            _ => None,
        })
        .collect();
    assert!(
        missing == 0 && errors.is_empty() && flushed.is_ok(),
        "delivery: flush {flushed:?}, {missing} without report, {} failed (first: {:?})",
        errors.len(),
        errors.first()
    );
    results.into_iter().map(|r| r.unwrap().unwrap()).collect()
}

/// Produces `records` and returns each one's (partition, offset).
pub fn produce(cfg: &ClientConfig, topic: &str, records: &[TestRecord]) -> Vec<(i32, i64)> {
    let p = producer(cfg, records.len());
    send_all(&p, topic, records, 0);
    wait_delivered(&p, Duration::from_secs(120))
}

pub fn consumer(cfg: &ClientConfig) -> BaseConsumer {
    cfg.create().expect("create consumer")
}

pub fn assign(c: &BaseConsumer, topic: &str, starts: &[(i32, Offset)]) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in starts {
        tpl.add_partition_offset(topic, *p, *o).unwrap();
    }
    c.assign(&tpl).expect("assign");
}

pub fn to_got(m: &impl Message) -> Got {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(|v| v.to_vec()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (timestamp, log_append_time) = match m.timestamp() {
        Timestamp::NotAvailable => (None, false),
        Timestamp::CreateTime(t) => (Some(t), false),
        Timestamp::LogAppendTime(t) => (Some(t), true),
    };
    Got {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| k.to_vec()),
        value: m.payload().map(|v| v.to_vec()),
        timestamp,
        log_append_time,
        headers,
    }
}

/// Polls until `n` records arrived or `timeout` passed; panics with what it got on timeout.
pub fn poll_n(c: &BaseConsumer, n: usize, timeout: Duration) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::with_capacity(n);
    let mut errors: Vec<String> = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {n} records in {timeout:?}; errors: {:?}",
            got.len(),
            &errors[errors.len().saturating_sub(5)..]
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push(to_got(&m)),
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    got
}

/// Assigns all `partitions` from the beginning and reads `n` records.
pub fn consume_all(
    cfg: &ClientConfig,
    topic: &str,
    partitions: i32,
    n: usize,
    timeout: Duration,
) -> Vec<Got> {
    let c = consumer(cfg);
    let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    assign(&c, topic, &starts);
    poll_n(&c, n, timeout)
}

/// Checks that what was consumed is exactly what was produced, at the delivered offsets.
pub fn assert_same(records: &[TestRecord], delivered: &[(i32, i64)], got: &[Got]) {
    let by_pos: HashMap<(i32, i64), &Got> =
        got.iter().map(|g| ((g.partition, g.offset), g)).collect();
    assert_eq!(
        by_pos.len(),
        got.len(),
        "a (partition, offset) was consumed twice"
    );
    for (i, (r, pos)) in records.iter().zip(delivered).enumerate() {
        let g = by_pos
            .get(pos)
            .unwrap_or_else(|| panic!("record {i} delivered at {pos:?} was not consumed"));
        assert_eq!(g.key, r.key, "record {i} key at {pos:?}");
        assert_eq!(g.value, r.value, "record {i} value at {pos:?}");
        assert_eq!(g.headers, r.headers, "record {i} headers at {pos:?}");
        if let Some(ts) = r.timestamp {
            assert_eq!(g.timestamp, Some(ts), "record {i} timestamp at {pos:?}");
        }
    }
}

/// Low and high watermarks (ListOffsets earliest/latest).
/// Retries for up to 20 s: a leader elected a moment ago answers OFFSET_NOT_AVAILABLE until
/// its high watermark reaches its epoch's start (KIP-207).
pub fn watermarks(cfg: &ClientConfig, topic: &str, partition: i32) -> (i64, i64) {
    let c = consumer(cfg);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match c.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(w) => return w,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("watermarks {topic}-{partition}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("watermarks {topic}-{partition}: {e}"),
        }
    }
}

/// Destroys a client on a helper thread and waits at most `limit` for it. librdkafka 2.12
/// (the rdkafka crate's vendored copy) can hang in `rd_kafka_destroy` waiting for its broker
/// threads after a group consumer closed cleanly (confluentinc/librdkafka#5434; 2.16 does not, on
/// the same cluster state). What the test checks was read before; a stuck client is leaked.
pub fn destroy_within<T: Send + 'static>(client: T, limit: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(client);
        let _ = tx.send(());
    });
    if rx.recv_timeout(limit).is_err() {
        eprintln!("the client's destroy did not return in {limit:?}; leaving it behind");
    }
}
