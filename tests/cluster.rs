//! Multi-node tests: real 3-node gregor clusters (tests/common/cluster.rs) under crashes
//! (SIGKILL), stalls (SIGSTOP), network cuts between nodes, controller and coordinator
//! failover, and a whole-cluster restart.
//!
//! The checker every data test ends with: each record acknowledged to a producer is read back
//! afterwards at exactly its acknowledged offset, acknowledged records of one producer are in
//! send order per partition and written once, and every record a consumer read during the run
//! is still there, unchanged, at the end.
//!
//! Run: `cargo test --release --test cluster -- --test-threads=1`.
//! `randomized_faults_with_seed` takes `GREGOR_FAULT_SEED` and `GREGOR_FAULT_ROUNDS`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, GroupId, ListOffsetsRequest, OffsetFetchRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use common::cluster::{
    create_topic_rf, parse_client_id, raw_request, replica_node, try_create_topic, Cluster,
    FirstHeader, NodeId,
};

/// Short timeouts so that each fault resolves in seconds.
const FAST: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "3000"),
    ("leader.imbalance.check.interval.seconds", "2"),
    ("group.initial.rebalance.delay.ms", "0"),
];

const MIN_ISR_2: &[(&str, &str)] = &[("min.insync.replicas", "2")];
const NOT_ENOUGH_REPLICAS: i16 = 19;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

// ----- records -----

fn value_of(tag: &str, seq: u64) -> Vec<u8> {
    format!("{tag}-{seq:09}").into_bytes()
}

/// (tag, seq) of a value written by `value_of`.
fn parse_value(v: &[u8]) -> Option<(String, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (tag, seq) = s.rsplit_once('-')?;
    Some((tag.to_string(), seq.parse().ok()?))
}

fn show(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// An acknowledged record: partition, offset, value.
type Acked = (i32, i64, Vec<u8>);

// ----- a producer thread -----

#[derive(Default)]
struct Acks {
    acked: Mutex<Vec<Acked>>,
    failed: Mutex<Vec<(Vec<u8>, String)>>,
    /// librdkafka's own log lines (its `eos` debug context: producer ids, epoch bumps and
    /// the errors behind them), the newest `CLIENT_LOG_LINES`: shown when a check fails.
    client_log: Mutex<std::collections::VecDeque<String>>,
}

const CLIENT_LOG_LINES: usize = 5000;

struct AckContext {
    acks: Arc<Acks>,
    values: Arc<Mutex<HashMap<usize, Vec<u8>>>>,
}

impl ClientContext for AckContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let mut lines = self.acks.client_log.lock().unwrap();
        if lines.len() == CLIENT_LOG_LINES {
            lines.pop_front();
        }
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        lines.push_back(format!("{:.3} {level:?} {fac} {message}", at.as_secs_f64()));
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, seq: usize) {
        let value = self.values.lock().unwrap().remove(&seq).unwrap_or_default();
        match r {
            Ok(m) => self
                .acks
                .acked
                .lock()
                .unwrap()
                .push((m.partition(), m.offset(), value)),
            Err((e, _)) => self
                .acks
                .failed
                .lock()
                .unwrap()
                .push((value, e.to_string())),
        }
    }
}

/// Writes `<tag>-<seq>` records round-robin over the partitions until stopped.
struct ProducerRun {
    stop: Arc<AtomicBool>,
    acks: Arc<Acks>,
    sent: Arc<AtomicU64>,
    send_errors: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

struct ProducerResult {
    acked: Vec<Acked>,
    failed: Vec<(Vec<u8>, String)>,
    sent: u64,
    send_errors: Vec<String>,
    client_log: Vec<String>,
}

fn acks_all_config(cl: &Cluster) -> ClientConfig {
    let mut c = cl.producer_config();
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "90000")
        .set("request.timeout.ms", "10000")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "500")
        .set("debug", "eos");
    c
}

fn start_producer(
    cfg: ClientConfig,
    topic: &str,
    partitions: i32,
    tag: &str,
    pace: Duration,
) -> ProducerRun {
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Acks::default());
    let sent = Arc::new(AtomicU64::new(0));
    let send_errors = Arc::new(Mutex::new(Vec::new()));
    let (stop2, acks2, sent2, errs2) = (
        stop.clone(),
        acks.clone(),
        sent.clone(),
        send_errors.clone(),
    );
    let topic = topic.to_string();
    let tag = tag.to_string();
    let handle = std::thread::spawn(move || {
        let values = Arc::new(Mutex::new(HashMap::new()));
        let p: BaseProducer<AckContext> = cfg
            .create_with_context(AckContext {
                acks: acks2,
                values: values.clone(),
            })
            .expect("create producer");
        let mut seq: u64 = 0;
        while !stop2.load(Ordering::SeqCst) {
            let v = value_of(&tag, seq);
            values.lock().unwrap().insert(seq as usize, v.clone());
            let mut rec: BaseRecord<'_, (), Vec<u8>, usize> =
                BaseRecord::with_opaque_to(&topic, seq as usize)
                    .payload(&v)
                    .partition((seq % partitions as u64) as i32);
            loop {
                match p.send(rec) {
                    Ok(()) => {
                        sent2.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                            && !stop2.load(Ordering::SeqCst) =>
                    {
                        rec = back;
                        p.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => {
                        values.lock().unwrap().remove(&(seq as usize));
                        let mut errs = errs2.lock().unwrap();
                        if errs.len() < 100 {
                            errs.push(format!("send {}: {e}", show(&v)));
                        }
                        drop(errs);
                        sleep_ms(100);
                        break;
                    }
                }
            }
            seq += 1;
            p.poll(Duration::ZERO);
            std::thread::sleep(pace);
        }
        let _ = p.flush(SECS(120));
        p.poll(Duration::ZERO);
    });
    ProducerRun {
        stop,
        acks,
        sent,
        send_errors,
        handle: Some(handle),
    }
}

impl ProducerRun {
    fn acked_count(&self) -> usize {
        self.acks.acked.lock().unwrap().len()
    }

    /// Stops sending, waits for every delivery report (flush, up to 120 s).
    fn finish(mut self) -> ProducerResult {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("producer thread");
        }
        ProducerResult {
            acked: std::mem::take(&mut *self.acks.acked.lock().unwrap()),
            failed: std::mem::take(&mut *self.acks.failed.lock().unwrap()),
            sent: self.sent.load(Ordering::SeqCst),
            send_errors: std::mem::take(&mut *self.send_errors.lock().unwrap()),
            client_log: std::mem::take(&mut *self.acks.client_log.lock().unwrap()).into(),
        }
    }
}

impl Drop for ProducerRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ----- a consumer thread -----

#[derive(Default)]
struct Seen {
    /// The first value read at each (partition, offset).
    records: BTreeMap<(i32, i64), Vec<u8>>,
    /// An offset read again with another value.
    conflicts: Vec<String>,
    /// A partition's offsets went backwards (a reset: not a violation in itself).
    rewinds: u64,
    errors: Vec<String>,
}

struct ConsumerRun {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    handle: Option<JoinHandle<()>>,
}

fn start_consumer(cfg: ClientConfig, topic: &str, partitions: i32) -> ConsumerRun {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop2, seen2) = (stop.clone(), seen.clone());
    let topic = topic.to_string();
    let handle = std::thread::spawn(move || {
        let c: BaseConsumer = cfg.create().expect("create consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).expect("assign");
        let mut last: HashMap<i32, i64> = HashMap::new();
        while !stop2.load(Ordering::SeqCst) {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let (p, off) = (m.partition(), m.offset());
                    let v = m.payload().unwrap_or_default().to_vec();
                    let mut s = seen2.lock().unwrap();
                    if last.get(&p).is_some_and(|l| off <= *l) {
                        s.rewinds += 1;
                    }
                    last.insert(p, off);
                    match s.records.get(&(p, off)) {
                        Some(old) if *old != v => {
                            let msg = format!(
                                "consumer read {topic}-{p}@{off} as {} and later as {}",
                                show(old),
                                show(&v)
                            );
                            s.conflicts.push(msg);
                        }
                        Some(_) => {}
                        None => {
                            s.records.insert((p, off), v);
                        }
                    }
                }
                Some(Err(e)) => {
                    let mut s = seen2.lock().unwrap();
                    if s.errors.len() < 50 {
                        s.errors.push(e.to_string());
                    }
                }
                None => {}
            }
        }
    });
    ConsumerRun {
        stop,
        seen,
        handle: Some(handle),
    }
}

impl ConsumerRun {
    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("consumer thread");
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for ConsumerRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ----- reading a whole topic back -----

type Log = BTreeMap<i32, Vec<(i64, Vec<u8>)>>;

fn high_watermark(cfg: &ClientConfig, topic: &str, partition: i32, timeout: Duration) -> i64 {
    let c: BaseConsumer = cfg.create().expect("create consumer");
    let deadline = Instant::now() + timeout;
    loop {
        match c.fetch_watermarks(topic, partition, SECS(5)) {
            Ok((_, hw)) => return hw,
            Err(e) if Instant::now() < deadline => {
                eprintln!("watermarks {topic}-{partition}: {e}; retrying");
                sleep_ms(500);
            }
            Err(e) => panic!("watermarks {topic}-{partition}: {e}"),
        }
    }
}

/// Every record of every partition below its high watermark, by partition, in offset order.
fn read_all(cl: &Cluster, topic: &str, partitions: i32, timeout: Duration) -> Log {
    let cfg = cl.consumer_config();
    let deadline = Instant::now() + timeout;
    let hws: Vec<i64> = (0..partitions)
        .map(|p| high_watermark(&cfg, topic, p, timeout))
        .collect();
    let c: BaseConsumer = cfg.create().expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut log: Log = (0..partitions).map(|p| (p, Vec::new())).collect();
    let done = |log: &Log| {
        (0..partitions).all(|p| {
            let hw = hws[p as usize];
            hw == 0 || log[&p].last().is_some_and(|(o, _)| *o >= hw - 1)
        })
    };
    let mut errors = Vec::new();
    while !done(&log) {
        assert!(
            Instant::now() < deadline,
            "read_all {topic}: high watermarks {hws:?}, read up to {:?} in {timeout:?}; errors {:?}",
            log.iter()
                .map(|(p, v)| (*p, v.last().map(|x| x.0)))
                .collect::<Vec<_>>(),
            &errors[errors.len().saturating_sub(5)..]
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition();
                if m.offset() < hws[p as usize] {
                    let v = m.payload().unwrap_or_default().to_vec();
                    let part = log.get_mut(&p).unwrap();
                    if part.last().is_none_or(|(o, _)| *o < m.offset()) {
                        part.push((m.offset(), v));
                    }
                }
            }
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    log
}

/// The checker: acknowledged records at their offsets, in order, once; consumed records still
/// there. Returns the violations.
fn violations(topic: &str, acked: &[Acked], seen: &Seen, log: &Log) -> Vec<String> {
    let mut out = Vec::new();
    let mut at: HashMap<(i32, i64), &Vec<u8>> = HashMap::new();
    for (p, recs) in log {
        for w in recs.windows(2) {
            if w[1].0 <= w[0].0 {
                out.push(format!(
                    "{topic}-{p}: offsets not increasing: {} then {}",
                    w[0].0, w[1].0
                ));
            }
        }
        for (o, v) in recs {
            at.insert((*p, *o), v);
        }
    }
    let end = |p: i32| {
        log.get(&p)
            .and_then(|r| r.last())
            .map(|x| x.0 + 1)
            .unwrap_or(0)
    };
    // librdkafka reports a record with no offset (-1001) when a later batch's success
    // acknowledged it implicitly (its own request timed out); it must be in its partition.
    let mut values_in: HashMap<(i32, &Vec<u8>), i64> = HashMap::new();
    for (p, recs) in log {
        for (o, v) in recs {
            values_in.insert((*p, v), *o);
        }
    }
    for (p, o, v) in acked {
        if *o < 0 {
            if !values_in.contains_key(&(*p, v)) {
                out.push(format!(
                    "acknowledged {} at {topic}-{p} with no offset ({o}) is missing",
                    show(v)
                ));
            }
            continue;
        }
        match at.get(&(*p, *o)) {
            None => out.push(format!(
                "acknowledged {} at {topic}-{p}@{o} is missing (partition read up to {})",
                show(v),
                end(*p)
            )),
            Some(got) if *got != v => out.push(format!(
                "acknowledged {} at {topic}-{p}@{o}, but the log holds {} there",
                show(v),
                show(got)
            )),
            _ => {}
        }
    }
    // Per producer (tag) and partition, acknowledged offsets follow send order.
    let mut by: BTreeMap<(String, i32), Vec<(i64, u64)>> = BTreeMap::new();
    for (p, o, v) in acked {
        // A record acknowledged with no offset is ordered by where the log holds it.
        let o = if *o < 0 {
            match values_in.get(&(*p, v)) {
                Some(o) => o,
                None => continue,
            }
        } else {
            o
        };
        if let Some((tag, seq)) = parse_value(v) {
            by.entry((tag, *p)).or_default().push((*o, seq));
        }
    }
    for ((tag, p), mut v) in by {
        v.sort();
        for w in v.windows(2) {
            if w[1].1 <= w[0].1 {
                out.push(format!(
                    "{topic}-{p}: {tag}-{} acknowledged at {} after {tag}-{} at {} (out of order)",
                    w[1].1, w[1].0, w[0].1, w[0].0
                ));
            }
        }
    }
    // Each value is written once.
    let mut where_: HashMap<&Vec<u8>, Vec<(i32, i64)>> = HashMap::new();
    for (p, recs) in log {
        for (o, v) in recs {
            where_.entry(v).or_default().push((*p, *o));
        }
    }
    for (v, places) in where_ {
        if places.len() > 1 {
            out.push(format!(
                "{} is in the log {} times: {places:?}",
                show(v),
                places.len()
            ));
        }
    }
    for ((p, o), v) in &seen.records {
        match at.get(&(*p, *o)) {
            None => out.push(format!(
                "a consumer read {} at {topic}-{p}@{o}; it is gone (partition read up to {})",
                show(v),
                end(*p)
            )),
            Some(got) if *got != v => out.push(format!(
                "a consumer read {} at {topic}-{p}@{o}; the log now holds {} there",
                show(v),
                show(got)
            )),
            _ => {}
        }
    }
    out.extend(seen.conflicts.iter().cloned());
    out.sort();
    out
}

fn assert_no_violations(what: &str, v: &[String]) {
    assert!(
        v.is_empty(),
        "{what}: {} violations; first ones:\n  {}",
        v.len(),
        v.iter().take(25).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

fn summary(name: &str, r: &ProducerResult, seen: &Seen, log: &Log) {
    eprintln!(
        "{name}: sent {}, acknowledged {}, failed {} (first: {:?}), send errors {} (first: {:?}); \
         consumer read {} (rewinds {}, errors {}: {:?}); log sizes {:?}",
        r.sent,
        r.acked.len(),
        r.failed.len(),
        r.failed.first().map(|(v, e)| (show(v), e)),
        r.send_errors.len(),
        r.send_errors.first(),
        seen.records.len(),
        seen.rewinds,
        seen.errors.len(),
        seen.errors.iter().take(3).collect::<Vec<_>>(),
        log.iter().map(|(p, v)| (*p, v.len())).collect::<Vec<_>>()
    );
}

// ----- raw requests -----

/// Produce one batch of `values` to `topic-partition` on node `node` (its real port):
/// (error code, base offset).
fn raw_produce(
    cl: &Cluster,
    node: NodeId,
    topic: &str,
    partition: i32,
    acks: i16,
    values: &[Vec<u8>],
) -> Result<(i16, i64), String> {
    let records: Vec<gregor::client::batch::ProducerRecord> = values
        .iter()
        .map(|v| gregor::client::batch::ProducerRecord {
            value: Some(Bytes::from(v.clone())),
            ..Default::default()
        })
        .collect();
    let batch = gregor::client::batch::encode_batch(
        &records,
        common::now_ms(),
        kafka_protocol::records::Compression::None,
    )
    .map_err(|e| e.to_string())?;
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(3000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let r = raw_request(cl.node(node).addr(), &req, 9, SECS(10))?;
    let p = r
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or("empty Produce response")?;
    Ok((p.error_code, p.base_offset))
}

/// ListOffsets latest (read-uncommitted: the high watermark) as node `node` answers it.
fn raw_latest_offset(
    cl: &Cluster,
    node: NodeId,
    topic: &str,
    partition: i32,
) -> Result<(i16, i64), String> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let r = cl.request(node, &req, 4)?;
    let p = r
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("empty ListOffsets response")?;
    Ok((p.error_code, p.offset))
}

/// Committed offsets of `group` for `topic` as node `node` answers OffsetFetch v7.
fn raw_offset_fetch(
    cl: &Cluster,
    node: NodeId,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>, String> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes((0..partitions).collect())]));
    let r = cl.request(node, &req, 7)?;
    if r.error_code != 0 {
        return Err(format!("OffsetFetch error {}", r.error_code));
    }
    let mut out = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(format!(
                    "OffsetFetch partition {} error {}",
                    p.partition_index, p.error_code
                ));
            }
            out.insert(p.partition_index, p.committed_offset);
        }
    }
    Ok(out)
}

/// FindCoordinator through the up nodes, then OffsetFetch from the coordinator, until both
/// succeed: (coordinator, offsets).
fn committed_offsets(
    cl: &Cluster,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> (NodeId, BTreeMap<i32, i64>) {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        for via in cl.up_nodes() {
            match cl.coordinator(via, group) {
                Ok(c) if cl.node(c).is_up() => {
                    match raw_offset_fetch(cl, c, group, topic, partitions) {
                        Ok(o) => return (c, o),
                        Err(e) => last = format!("coordinator {c}: {e}"),
                    }
                }
                Ok(c) => last = format!("node {via} names coordinator {c}, which is down"),
                Err(e) => last = format!("FindCoordinator via {via}: {e}"),
            }
        }
        sleep_ms(200);
    }
    panic!("no committed offsets of {group} within {timeout:?}: {last}");
}

/// Kafka's `Utils.abs(group.hashCode()) % partitions`.
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for u in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(u as i32);
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

/// Produces `values` (explicit partitions) with acks=all through the whole cluster; panics
/// unless all are acknowledged.
fn produce_all(cl: &Cluster, topic: &str, values: &[(i32, Vec<u8>)]) -> Vec<Acked> {
    let records: Vec<common::clients::TestRecord> = values
        .iter()
        .map(|(p, v)| common::clients::TestRecord::value(v.clone()).in_partition(*p))
        .collect();
    let mut cfg = acks_all_config(cl);
    cfg.set("message.timeout.ms", "60000");
    let delivered = common::clients::produce(&cfg, topic, &records);
    values
        .iter()
        .zip(delivered)
        .map(|((_, v), (p, o))| (p, o, v.clone()))
        .collect()
}

fn round_robin(tag: &str, n: u64, partitions: i32) -> Vec<(i32, Vec<u8>)> {
    (0..n)
        .map(|i| ((i % partitions as u64) as i32, value_of(tag, i)))
        .collect()
}

// ----- the harness itself -----

#[test]
fn proxy_parses_the_first_request_header() {
    let req = kafka_protocol::messages::ApiVersionsRequest::default();
    let frame = common::encode_request(&req, 3, 1); // client id "gregor-tests"
    for cut in 0..frame.len() {
        let r = parse_client_id(&frame[..cut]);
        if cut < 14 + "gregor-tests".len() {
            assert_eq!(r, FirstHeader::NeedMore, "{cut} bytes");
        } else {
            assert_eq!(
                r,
                FirstHeader::ClientId(Some("gregor-tests".into())),
                "{cut} bytes"
            );
        }
    }
    let mut null = vec![0, 0, 0, 10, 0, 1, 0, 12, 0, 0, 0, 5];
    null.extend_from_slice(&(-1i16).to_be_bytes());
    assert_eq!(parse_client_id(&null), FirstHeader::ClientId(None));
    assert_eq!(
        parse_client_id(&[0, 0, 0, 3, 1, 2, 3]),
        FirstHeader::Invalid
    );
    let mut long = vec![0, 0, 0, 12, 0, 1, 0, 12, 0, 0, 0, 5];
    long.extend_from_slice(&100i16.to_be_bytes());
    assert_eq!(
        parse_client_id(&long),
        FirstHeader::Invalid,
        "client id past the frame"
    );
    assert_eq!(replica_node("gregor-replica-3"), Some(3));
    assert_eq!(replica_node("gregor-replica-x"), None);
    assert_eq!(replica_node("rdkafka"), None);
}

#[test]
fn proxies_cut_and_heal_replica_fetches_and_controller_links() {
    let mut cl = Cluster::start(3, FAST);
    let mut controller = None;
    cl.wait_for("an agreed active controller", SECS(20), |cl| {
        controller = cl.controller();
        controller.is_some()
    });
    let c = controller.unwrap();
    let (x, y) = match c {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    // A Metadata request through `leader`'s broker proxy, claiming to be `follower`'s fetcher.
    let fetch_as = |cl: &Cluster, leader: NodeId, follower: NodeId| -> Result<(), String> {
        let req = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![]));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", cl.node(leader).advertised_port))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(SECS(3))).unwrap();
        let header = kafka_protocol::messages::RequestHeader::default()
            .with_request_api_key(3)
            .with_request_api_version(9)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_string(format!(
                "gregor-replica-{follower}"
            ))));
        let mut buf = bytes::BytesMut::new();
        kafka_protocol::protocol::encode_request_header_into_buffer(&mut buf, &header).unwrap();
        kafka_protocol::protocol::Encodable::encode(&req, &mut buf, 9).unwrap();
        std::io::Write::write_all(&mut s, &common::frame(&buf)).map_err(|e| e.to_string())?;
        common::read_frame(&mut s)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(fetch_as(&cl, x, y).is_ok(), "replica {y} reaches node {x}");
    let client_cfg = cl.consumer_config_for(x);
    cl.cut(x, y);
    assert!(
        fetch_as(&cl, x, y).is_err(),
        "replica {y} is refused by node {x} while cut"
    );
    assert!(
        fetch_as(&cl, y, x).is_err(),
        "replica {x} is refused by node {y} while cut"
    );
    assert!(
        fetch_as(&cl, x, c).is_ok(),
        "replica {c} still reaches node {x}"
    );
    let consumer: BaseConsumer = client_cfg.create().unwrap();
    consumer
        .fetch_metadata(None, SECS(10))
        .expect("clients are never cut");
    // x and y cannot talk; both still reach the controller, so both stay registered.
    sleep_ms(4000);
    cl.wait_brokers_live(3, SECS(10));
    cl.heal(x, y);
    assert!(
        fetch_as(&cl, x, y).is_ok(),
        "replica {y} reaches node {x} after heal"
    );
    // Cutting x from both others fences it.
    cl.cut(x, y);
    cl.cut(x, c);
    let mut rest = vec![y, c];
    rest.sort();
    cl.wait_for(
        &format!("node {x} is fenced in the others' view"),
        SECS(20),
        |cl| {
            rest.iter()
                .all(|&n| cl.brokers_seen_by(n).is_some_and(|b| b == rest))
        },
    );
    cl.heal_all();
    cl.wait_brokers_live(3, SECS(30));
}

// ----- the tests -----

#[test]
fn acks_all_survives_leader_kill_and_pause() {
    let started = Instant::now();
    let mut cl = Cluster::start(3, FAST);
    let topic = "kill-pause";
    create_topic_rf(&cl.admin_config(), topic, 3, 3, MIN_ISR_2);
    cl.wait_isr_all(topic, 3, 3, SECS(30));
    let prod = start_producer(
        acks_all_config(&cl),
        topic,
        3,
        "kp",
        Duration::from_millis(1),
    );
    let cons = start_consumer(cl.consumer_config(), topic, 3);
    let t0 = Instant::now();

    sleep_ms(3000);
    let l = cl
        .node_of_leader(topic, 0)
        .expect("partition 0 has a leader");
    eprintln!(
        "{:?}: SIGKILL node {l}, leader of {topic}-0 (acked so far {})",
        t0.elapsed(),
        prod.acked_count()
    );
    cl.kill(l);
    let nl = cl.wait_leader_moved(topic, 0, l, SECS(20));
    eprintln!("{:?}: node {nl} leads {topic}-0", t0.elapsed());
    sleep_ms(1000);
    cl.start_node(l);
    cl.wait_brokers_live(3, SECS(30));
    eprintln!("{:?}: node {l} is back", t0.elapsed());
    sleep_ms(2000);
    let o = cl
        .node_of_leader(topic, 0)
        .filter(|n| *n != l)
        .unwrap_or(nl);
    eprintln!(
        "{:?}: SIGSTOP node {o} for 5 s (acked so far {})",
        t0.elapsed(),
        prod.acked_count()
    );
    cl.pause(o);
    sleep_ms(5000);
    cl.resume(o);
    eprintln!("{:?}: SIGCONT node {o}", t0.elapsed());
    while t0.elapsed() < SECS(20) {
        sleep_ms(200);
    }
    let r = prod.finish();
    cl.wait_brokers_live(3, SECS(30));
    cl.wait_isr_all(topic, 3, 3, SECS(30));
    let seen = cons.finish();
    let log = read_all(&cl, topic, 3, SECS(60));
    summary("acks_all_survives_leader_kill_and_pause", &r, &seen, &log);
    assert_no_violations(
        "acks=all through a leader kill and a pause",
        &violations(topic, &r.acked, &seen, &log),
    );
    assert!(
        r.failed.is_empty() && r.send_errors.is_empty(),
        "with a 90 s message timeout every record should be delivered: {} failed (first {:?}), send errors {:?}",
        r.failed.len(),
        r.failed.first().map(|(v, e)| (show(v), e)),
        r.send_errors.first()
    );
    assert!(
        r.acked.len() > 1000,
        "only {} records acknowledged in 20 s",
        r.acked.len()
    );
    eprintln!(
        "acks_all_survives_leader_kill_and_pause took {:?}",
        started.elapsed()
    );
}

#[test]
fn randomized_faults_with_seed() {
    let started = Instant::now();
    let seed: u64 = std::env::var("GREGOR_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: u64 = std::env::var("GREGOR_FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    eprintln!("randomized_faults_with_seed: GREGOR_FAULT_SEED={seed} GREGOR_FAULT_ROUNDS={rounds}");
    let mut rng = common::Rng(seed);
    // Dropped after the cluster (declared first): the seed comes after the brokers' logs.
    let _guard = common::SeedGuard {
        test: "randomized_faults_with_seed",
        var: "GREGOR_FAULT_SEED",
        seed,
    };
    let mut cl = Cluster::start(3, FAST);
    let topic = "random-faults";
    create_topic_rf(&cl.admin_config(), topic, 3, 3, MIN_ISR_2);
    cl.wait_isr_all(topic, 3, 3, SECS(30));
    let prod = start_producer(
        acks_all_config(&cl),
        topic,
        3,
        "rf",
        Duration::from_millis(2),
    );
    let cons = start_consumer(cl.consumer_config(), topic, 3);
    let t0 = Instant::now();
    for round in 0..rounds {
        let hold = 300 + rng.below(2200);
        let a = 1 + rng.below(3) as NodeId;
        match rng.below(3) {
            0 => {
                eprintln!(
                    "{:?} round {round}: SIGKILL node {a}, down {hold} ms (acked {})",
                    t0.elapsed(),
                    prod.acked_count()
                );
                cl.kill(a);
                sleep_ms(hold);
                cl.start_node(a);
            }
            1 => {
                eprintln!(
                    "{:?} round {round}: SIGSTOP node {a} for {hold} ms (acked {})",
                    t0.elapsed(),
                    prod.acked_count()
                );
                cl.pause(a);
                sleep_ms(hold);
                cl.resume(a);
            }
            _ => {
                let b = 1 + ((a as u64 + rng.below(2)) % 3) as NodeId;
                eprintln!(
                    "{:?} round {round}: cut {a}-{b} for {hold} ms (acked {})",
                    t0.elapsed(),
                    prod.acked_count()
                );
                cl.cut(a, b);
                sleep_ms(hold);
                cl.heal(a, b);
            }
        }
        sleep_ms(100 + rng.below(700));
    }
    eprintln!("{:?}: faults over; healing", t0.elapsed());
    cl.heal_all();
    for id in cl.ids() {
        cl.resume(id);
    }
    cl.start_all();
    cl.wait_isr_all(topic, 3, 3, SECS(60));
    let acked_during_faults = prod.acked_count();
    let r = prod.finish();
    // Liveness once healed: a new producer gets everything acknowledged.
    let mut acked = r.acked.clone();
    acked.extend(produce_all(&cl, topic, &round_robin("final", 300, 3)));
    cl.wait_isr_all(topic, 3, 3, SECS(60));
    let seen = cons.finish();
    let log = read_all(&cl, topic, 3, SECS(60));
    summary("randomized_faults_with_seed", &r, &seen, &log);
    eprintln!("acknowledged while faults ran: {acked_during_faults}");
    let v = violations(topic, &acked, &seen, &log);
    if !v.is_empty() {
        eprintln!(
            "----- librdkafka's eos log (last {} lines) -----\n{}\n----- end of librdkafka's log -----",
            r.client_log.len(),
            r.client_log.join("\n")
        );
    }
    assert_no_violations(&format!("GREGOR_FAULT_SEED={seed}"), &v);
    assert!(
        acked_during_faults > 0,
        "GREGOR_FAULT_SEED={seed}: nothing acknowledged while faults ran"
    );
    eprintln!("randomized_faults_with_seed took {:?}", started.elapsed());
}

/// Segments of a partition dir on disk: (offset, value) of every record.
fn records_on_disk(dir: &std::path::Path) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    for seg in common::segment_files(dir) {
        let bytes = common::read_file(&seg);
        let (_, covered) = common::walk_segment(&bytes);
        let mut buf = Bytes::copy_from_slice(&bytes[..covered]);
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf)
            .unwrap_or_else(|e| panic!("decode {}: {e}", seg.display()));
        for set in sets {
            for r in set.records {
                out.push((r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()));
            }
        }
    }
    out
}

#[test]
fn acks_1_tail_on_a_cut_off_leader_is_truncated() {
    let started = Instant::now();
    let mut cl = Cluster::start(3, FAST);
    let topic = "cut-leader";
    create_topic_rf(&cl.admin_config(), topic, 3, 3, MIN_ISR_2);
    cl.wait_isr_all(topic, 3, 3, SECS(30));
    let mut controller = None;
    cl.wait_for("an agreed active controller", SECS(20), |cl| {
        controller = cl.controller();
        controller.is_some()
    });
    let controller = controller.unwrap();
    // A partition led by a node that is not the active controller, so that cutting the
    // leader off fences it (the controller stays with the majority).
    let (p, l) = (0..3)
        .find_map(|p| {
            cl.node_of_leader(topic, p)
                .filter(|l| *l != controller)
                .map(|l| (p, l))
        })
        .expect("a partition led by a node other than the controller");
    let others: Vec<NodeId> = cl.ids().into_iter().filter(|n| *n != l).collect();
    eprintln!("controller {controller}; {topic}-{p} led by {l}; others {others:?}");

    let before = produce_all(
        &cl,
        topic,
        &(0..20)
            .map(|i| (p, value_of("before", i)))
            .collect::<Vec<_>>(),
    );
    let n = before.len() as i64;
    assert_eq!(
        before.last().unwrap().1,
        n - 1,
        "the first records of {topic}-{p}"
    );
    cl.wait_isr_size(topic, p, 3, SECS(30));

    cl.cut(l, others[0]);
    cl.cut(l, others[1]);
    let cut_at = Instant::now();
    // acks=1 to the cut-off leader: acknowledged, but never replicated.
    let mut tail = Vec::new();
    for i in 0..3 {
        let v = vec![value_of("tail", 2 * i), value_of("tail", 2 * i + 1)];
        let (err, base) =
            raw_produce(&cl, l, topic, p, 1, &v).expect("acks=1 produce to the cut-off leader");
        assert_eq!(
            err, 0,
            "acks=1 produce to the cut-off leader (still leader in its own view)"
        );
        tail.push((base, v));
    }
    eprintln!(
        "acks=1 tail on node {l} at {:?}, {:?} after the cut",
        tail.iter().map(|t| t.0).collect::<Vec<_>>(),
        cut_at.elapsed()
    );
    assert_eq!(tail[0].0, n, "the tail starts at the log end");
    // Above the high watermark: no consumer may see it.
    let (err, hw) = raw_latest_offset(&cl, l, topic, p).expect("ListOffsets on the cut-off leader");
    assert_eq!(
        (err, hw),
        (0, n),
        "the cut-off leader's high watermark stays at the replicated end"
    );
    let c: BaseConsumer = cl.consumer_config_for(l).create().unwrap();
    common::clients::assign(&c, topic, &[(p, Offset::Beginning)]);
    let got = common::clients::poll_n(&c, n as usize, SECS(20));
    let deadline = Instant::now() + SECS(2);
    let mut extra = Vec::new();
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            extra.push((m.offset(), show(m.payload().unwrap_or_default())));
        }
    }
    drop(c);
    assert!(
        got.iter().all(|g| g.offset < n) && extra.is_empty(),
        "a consumer read past the high watermark {n}: {:?} then {extra:?}",
        got.last().map(|g| g.offset)
    );

    let nl = cl.wait_leader_moved(topic, p, l, SECS(20));
    eprintln!(
        "{:?} after the cut: node {nl} leads {topic}-{p}",
        cut_at.elapsed()
    );
    let after_bootstrap = others
        .iter()
        .map(|&o| cl.node(o).advertised())
        .collect::<Vec<_>>()
        .join(",");
    let mut cfg = acks_all_config(&cl);
    cfg.set("bootstrap.servers", &after_bootstrap)
        .set("message.timeout.ms", "30000");
    let after_values: Vec<common::clients::TestRecord> = (0..10)
        .map(|i| common::clients::TestRecord::value(value_of("after", i)).in_partition(p))
        .collect();
    let after_offsets = common::clients::produce(&cfg, topic, &after_values);
    eprintln!("acks=all after the move at {after_offsets:?}");

    cl.heal(l, others[0]);
    cl.heal(l, others[1]);
    cl.wait_brokers_live(3, SECS(30));
    cl.wait_isr_size(topic, p, 3, SECS(30));
    cl.wait_preferred_leaders(topic, 3, SECS(30));
    eprintln!(
        "healed; {topic}-{p} led by {:?}",
        cl.node_of_leader(topic, p)
    );

    let mut expected: Vec<(i64, Vec<u8>)> =
        before.iter().map(|(_, o, v)| (*o, v.clone())).collect();
    expected.extend(
        after_offsets
            .iter()
            .zip(&after_values)
            .map(|((_, o), r)| (*o, r.value.clone().unwrap())),
    );
    let log = read_all(&cl, topic, 3, SECS(60));
    let got: Vec<(i64, String)> = log[&p].iter().map(|(o, v)| (*o, show(v))).collect();
    let want: Vec<(i64, String)> = expected.iter().map(|(o, v)| (*o, show(v))).collect();
    assert_eq!(
        got, want,
        "{topic}-{p} read from the cluster: exactly the acks=all records, before and after"
    );
    // The old leader's own log, on disk.
    let on_disk: Vec<(i64, String)> = records_on_disk(&cl.node(l).partition_dir(topic, p))
        .into_iter()
        .map(|(o, v)| (o, show(&v)))
        .collect();
    assert!(
        on_disk.iter().all(|(_, v)| !v.starts_with("tail-")),
        "node {l} still holds its acks=1 tail on disk: {on_disk:?}"
    );
    assert_eq!(
        on_disk, want,
        "node {l}'s segments of {topic}-{p} after rejoining"
    );
    eprintln!(
        "acks_1_tail_on_a_cut_off_leader_is_truncated took {:?}",
        started.elapsed()
    );
}

#[test]
fn two_of_three_down_refuses_acks_all_then_recovers() {
    let started = Instant::now();
    let mut cl = Cluster::start(3, FAST);
    let topic = "two-down";
    create_topic_rf(&cl.admin_config(), topic, 3, 3, MIN_ISR_2);
    cl.wait_isr_all(topic, 3, 3, SECS(30));
    let mut acked = produce_all(&cl, topic, &round_robin("initial", 30, 3));

    // First node down: fenced (the other two keep the quorum), out of every ISR.
    let a: NodeId = 3;
    cl.kill(a);
    cl.wait_brokers_live(2, SECS(20));
    cl.wait_isr_all(topic, 3, 2, SECS(20));
    let s = cl
        .node_of_leader(topic, 0)
        .expect("a leader of partition 0");
    let b = cl.ids().into_iter().find(|n| *n != a && *n != s).unwrap();
    eprintln!("node {a} killed and fenced; survivor {s} leads {topic}-0; {b} goes next");
    // Second node out of the ISR. A majority of voters must stay up to commit the ISR change,
    // so b first stops replicating (it stays a voter), then dies.
    cl.cut_replication(s, b);
    // As in Kafka, a follower that stops fetching while it is at the leader's end stays in
    // sync until the leader's end moves: write one record (acks=1) so that b falls behind.
    let v = value_of("behind", 0);
    let (err, base) =
        raw_produce(&cl, s, topic, 0, 1, std::slice::from_ref(&v)).expect("acks=1 produce");
    assert_eq!(
        err, 0,
        "acks=1 to {topic}-0 on node {s} after cutting {b} off"
    );
    acked.push((0, base, v));
    cl.wait_for(&format!("{topic}-0's ISR is [{s}]"), SECS(20), |cl| {
        cl.partition_view(topic, 0)
            .is_some_and(|v| v.isr == vec![s])
    });
    let check_refused = |cl: &Cluster, when: &str, acked: &mut Vec<Acked>, seq: u64| {
        let (err, _) = raw_produce(cl, s, topic, 0, -1, &[value_of("refused", seq)])
            .expect("acks=all produce");
        assert_eq!(
            err, NOT_ENOUGH_REPLICAS,
            "{when}: acks=all to {topic}-0 on node {s} with an ISR of one"
        );
        let v = value_of("acks1", seq);
        let (err, base) =
            raw_produce(cl, s, topic, 0, 1, std::slice::from_ref(&v)).expect("acks=1 produce");
        assert_eq!(err, 0, "{when}: acks=1 to {topic}-0 on node {s}");
        acked.push((0, base, v));
    };
    check_refused(&cl, "one node dead, one not replicating", &mut acked, 0);
    // librdkafka retries NOT_ENOUGH_REPLICAS until its message timeout.
    let mut cfg = cl.producer_config_for(s);
    cfg.set("acks", "all").set("message.timeout.ms", "3000");
    let p = common::clients::producer(&cfg, 1);
    common::clients::send_all(
        &p,
        topic,
        &[common::clients::TestRecord::value(value_of("refused-rdkafka", 0)).in_partition(0)],
        0,
    );
    let _ = p.flush(SECS(10));
    let report = p.context().results.lock().unwrap()[0].clone();
    eprintln!("librdkafka acks=all delivery report: {report:?}");
    assert!(
        matches!(report, Some(Err(_))),
        "librdkafka acks=all must not be acknowledged: {report:?}"
    );
    drop(p);

    cl.kill(b);
    eprintln!("node {b} killed too: two of three down");
    sleep_ms(4000); // past the session timeout (no quorum is left to fence anyone)
    check_refused(&cl, "two of three nodes dead", &mut acked, 1);

    cl.heal_all();
    cl.start_node(a);
    cl.start_node(b);
    cl.wait_brokers_live(3, SECS(60));
    cl.wait_isr_all(topic, 3, 3, SECS(60));
    cl.wait_preferred_leaders(topic, 3, SECS(30));
    acked.extend(produce_all(&cl, topic, &round_robin("recovered", 30, 3)));
    let log = read_all(&cl, topic, 3, SECS(60));
    assert_no_violations(
        "after two of three nodes came back",
        &violations(topic, &acked, &Seen::default(), &log),
    );
    let refused: Vec<_> = log
        .values()
        .flatten()
        .filter(|(_, v)| v.starts_with(b"refused"))
        .map(|(o, v)| (*o, show(v)))
        .collect();
    eprintln!("refused acks=all records that are in the log anyway (allowed, never acknowledged): {refused:?}");
    eprintln!(
        "two_of_three_down_refuses_acks_all_then_recovers took {:?}",
        started.elapsed()
    );
}

/// Consumes `n` records of the subscribed topics, commits them (sync) and returns
/// the committed offsets.
fn group_consume_and_commit(cfg: &ClientConfig, topics: &[&str], n: usize) -> TopicPartitionList {
    let c: BaseConsumer = cfg.create().expect("group consumer");
    c.subscribe(topics).expect("subscribe");
    let got = common::clients::poll_n(&c, n, SECS(60));
    assert_eq!(got.len(), n);
    let deadline = Instant::now() + SECS(30);
    loop {
        match c.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("commit: {e}; retrying");
                c.poll(Duration::from_millis(200));
            }
            Err(e) => panic!("commit: {e}"),
        }
    }
    let committed = c.committed(SECS(30)).expect("committed offsets");
    common::clients::destroy_within(c, SECS(20));
    committed
}

fn offsets_of(tpl: &TopicPartitionList) -> BTreeMap<(String, i32), i64> {
    tpl.elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => o,
                other => panic!("{}-{}: committed {other:?}", e.topic(), e.partition()),
            };
            ((e.topic().to_string(), e.partition()), o)
        })
        .collect()
}

#[test]
fn controller_failover_and_whole_cluster_restart() {
    let started = Instant::now();
    let mut cl = Cluster::start(3, FAST);
    create_topic_rf(&cl.admin_config(), "before-failover", 3, 3, MIN_ISR_2);
    cl.wait_isr_all("before-failover", 3, 3, SECS(30));
    let mut acked_a = produce_all(&cl, "before-failover", &round_robin("a", 30, 3));

    let mut controller = None;
    cl.wait_for("an agreed active controller", SECS(20), |cl| {
        controller = cl.controller();
        controller.is_some()
    });
    let c = controller.unwrap();
    let other = cl.ids().into_iter().find(|n| *n != c).unwrap();
    eprintln!("active controller {c}: SIGKILL");
    cl.kill(c);
    let killed_at = Instant::now();
    let mut last = String::new();
    let mut created = false;
    while killed_at.elapsed() < SECS(20) {
        // Two live brokers: replication factor 2 (3 is INVALID_REPLICATION_FACTOR, as in Kafka).
        match try_create_topic(
            &cl.admin_config_for(other),
            "after-failover",
            3,
            2,
            &[],
            SECS(5),
        ) {
            Ok(()) => {
                created = true;
                break;
            }
            Err(e) if e.contains("TopicAlreadyExists") => {
                created = true;
                break;
            }
            Err(e) => last = e,
        }
        sleep_ms(200);
    }
    let took = killed_at.elapsed();
    eprintln!("CreateTopics through node {other} succeeded {took:?} after the controller died (last error {last:?})");
    assert!(
        created,
        "CreateTopics through node {other} kept failing for 20 s after the controller died: {last}"
    );
    assert!(
        took < SECS(10),
        "CreateTopics took {took:?} after the controller died"
    );
    let mut new_controller = None;
    cl.wait_for("a new agreed controller", SECS(20), |cl| {
        new_controller = cl.controller();
        new_controller.is_some_and(|n| n != c)
    });
    eprintln!("new controller {new_controller:?}");
    cl.start_node(c);
    cl.wait_brokers_live(3, SECS(30));
    cl.wait_isr_all("after-failover", 3, 2, SECS(30));
    let acked_b = produce_all(&cl, "after-failover", &round_robin("b", 30, 3));
    acked_a.extend(produce_all(
        &cl,
        "before-failover",
        &round_robin("a2", 30, 3),
    ));

    let group = "restart-group";
    let mut gcfg = cl.consumer_config();
    gcfg.set("group.id", group)
        .set("enable.auto.offset.store", "true")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    let committed = offsets_of(&group_consume_and_commit(
        &gcfg,
        &["before-failover", "after-failover"],
        90,
    ));
    eprintln!("committed: {committed:?}");
    let want: BTreeMap<(String, i32), i64> = (0..3)
        .map(|p| (("after-failover".to_string(), p), 10))
        .chain((0..3).map(|p| (("before-failover".to_string(), p), 20)))
        .collect();
    assert_eq!(committed, want, "the group committed everything it read");

    eprintln!("{:?}: stopping all three (SIGTERM)", started.elapsed());
    cl.stop_all();
    eprintln!("{:?}: starting all three", started.elapsed());
    cl.start_all();
    cl.wait_isr_all("before-failover", 3, 3, SECS(60));
    cl.wait_isr_all("after-failover", 3, 2, SECS(60));
    let md = cl.metadata(1, None).expect("metadata");
    let mut names: Vec<(String, usize)> = md
        .topics
        .iter()
        .filter_map(|t| Some((t.name.as_ref()?.to_string(), t.partitions.len())))
        .filter(|(n, _)| !n.starts_with("__"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("after-failover".to_string(), 3),
            ("before-failover".to_string(), 3)
        ],
        "topics after the restart"
    );
    for (topic, acked) in [("before-failover", &acked_a), ("after-failover", &acked_b)] {
        let log = read_all(&cl, topic, 3, SECS(60));
        assert_no_violations(
            &format!("{topic} after a whole-cluster restart"),
            &violations(topic, acked, &Seen::default(), &log),
        );
        assert_eq!(
            log.values().map(Vec::len).sum::<usize>(),
            acked.len(),
            "{topic}: nothing more than was acknowledged"
        );
    }
    for topic in ["before-failover", "after-failover"] {
        let (coord, offsets) = committed_offsets(&cl, group, topic, 3, SECS(30));
        let want_t: BTreeMap<i32, i64> = want
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), o)| (*p, *o))
            .collect();
        assert_eq!(
            offsets, want_t,
            "{group}'s offsets of {topic} after the restart (coordinator {coord})"
        );
    }
    eprintln!(
        "controller_failover_and_whole_cluster_restart took {:?}",
        started.elapsed()
    );
}

// ----- groups through a coordinator failover -----

struct GroupShared {
    stop: AtomicBool,
    /// Commit generation asked for by the test, and the last one each member finished.
    commit_asked: AtomicU64,
    commit_done: [AtomicU64; 2],
    /// Partitions each member holds.
    assigned: [AtomicU64; 2],
    /// (member, partition, offset, when).
    consumed: Mutex<Vec<(usize, i32, i64, Instant)>>,
    errors: Mutex<Vec<String>>,
}

fn group_member(
    cfg: ClientConfig,
    topic: String,
    me: usize,
    shared: Arc<GroupShared>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let c: BaseConsumer = cfg.create().expect("member");
        c.subscribe(&[&topic]).expect("subscribe");
        while !shared.stop.load(Ordering::SeqCst) {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => shared.consumed.lock().unwrap().push((
                    me,
                    m.partition(),
                    m.offset(),
                    Instant::now(),
                )),
                Some(Err(e)) => {
                    let mut errs = shared.errors.lock().unwrap();
                    if errs.len() < 50 {
                        errs.push(format!("member {me}: {e}"));
                    }
                }
                None => {}
            }
            if let Ok(a) = c.assignment() {
                shared.assigned[me].store(a.count() as u64, Ordering::SeqCst);
            }
            let asked = shared.commit_asked.load(Ordering::SeqCst);
            if shared.commit_done[me].load(Ordering::SeqCst) < asked {
                match c.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                        shared.commit_done[me].store(asked, Ordering::SeqCst)
                    }
                    Err(e) => {
                        let mut errs = shared.errors.lock().unwrap();
                        if errs.len() < 50 {
                            errs.push(format!("member {me} commit: {e}"));
                        }
                    }
                }
            }
        }
    })
}

#[test]
fn groups_survive_coordinator_failover() {
    let started = Instant::now();
    let mut cl = Cluster::start(3, FAST);
    let topic = "group-failover";
    let group = "failover-group";
    create_topic_rf(&cl.admin_config(), topic, 4, 3, MIN_ISR_2);
    cl.wait_isr_all(topic, 4, 3, SECS(30));
    let shared = Arc::new(GroupShared {
        stop: AtomicBool::new(false),
        commit_asked: AtomicU64::new(0),
        commit_done: [AtomicU64::new(0), AtomicU64::new(0)],
        assigned: [AtomicU64::new(0), AtomicU64::new(0)],
        consumed: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    });
    let mut gcfg = cl.consumer_config();
    gcfg.set("group.id", group)
        .set("enable.auto.offset.store", "true")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    let members: Vec<JoinHandle<()>> = (0..2)
        .map(|me| group_member(gcfg.clone(), topic.to_string(), me, shared.clone()))
        .collect();
    assert!(
        common::wait_until(SECS(30), || shared
            .assigned
            .iter()
            .all(|a| a.load(Ordering::SeqCst) == 2)),
        "the two members did not get two partitions each in 30 s: {:?}; errors {:?}",
        shared
            .assigned
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect::<Vec<_>>(),
        shared.errors.lock().unwrap()
    );
    produce_all(&cl, topic, &round_robin("g1", 400, 4));
    let covered = |shared: &GroupShared, end: i64| {
        let consumed = shared.consumed.lock().unwrap();
        (0..4).all(|p| (0..end).all(|o| consumed.iter().any(|(_, cp, co, _)| *cp == p && *co == o)))
    };
    assert!(
        common::wait_until(SECS(60), || covered(&shared, 100)),
        "the group did not consume the first 400 records in 60 s; errors {:?}",
        shared.errors.lock().unwrap()
    );
    let by_member = |shared: &GroupShared| {
        let consumed = shared.consumed.lock().unwrap();
        (0..2)
            .map(|m| consumed.iter().filter(|x| x.0 == m).count())
            .collect::<Vec<_>>()
    };
    eprintln!("records per member: {:?}", by_member(&shared));
    let commit = |shared: &GroupShared, what: &str| {
        let gen = shared.commit_asked.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(
            common::wait_until(SECS(30), || shared
                .commit_done
                .iter()
                .all(|d| d.load(Ordering::SeqCst) >= gen)),
            "{what}: members did not commit in 30 s; errors {:?}",
            shared.errors.lock().unwrap()
        );
    };
    commit(&shared, "first commit");
    let (coord, before) = committed_offsets(&cl, group, topic, 4, SECS(30));
    let want: BTreeMap<i32, i64> = (0..4).map(|p| (p, 100)).collect();
    assert_eq!(
        before, want,
        "offsets committed before the failover (coordinator {coord})"
    );
    let op = offsets_partition(group, 50);
    let op_leader = cl.node_of_leader("__consumer_offsets", op);
    assert_eq!(
        op_leader,
        Some(coord),
        "the coordinator of {group} leads __consumer_offsets-{op} (Kafka's placement)"
    );

    eprintln!("coordinator {coord}: SIGKILL");
    cl.kill(coord);
    let killed_at = Instant::now();
    let (new_coord, after) = committed_offsets(&cl, group, topic, 4, SECS(30));
    eprintln!(
        "new coordinator {new_coord} answers {:?} after the kill",
        killed_at.elapsed()
    );
    assert_ne!(new_coord, coord);
    assert_eq!(
        after, want,
        "offsets committed before the kill, from the new coordinator {new_coord}"
    );

    produce_all(&cl, topic, &round_robin("g2", 400, 4));
    assert!(
        common::wait_until(SECS(60), || covered(&shared, 200)),
        "the group did not consume the next 400 records within 60 s of the coordinator's death; errors {:?}",
        shared.errors.lock().unwrap()
    );
    eprintln!("records per member: {:?}", by_member(&shared));
    // Nothing below the committed offsets was consumed again after the kill.
    let rewound: Vec<(usize, i32, i64)> = shared
        .consumed
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p, o, t)| *t > killed_at && *o < before[p])
        .map(|(m, p, o, _)| (*m, *p, *o))
        .collect();
    assert!(
        rewound.is_empty(),
        "after the failover the group consumed {} records below its committed offsets, e.g. {:?}",
        rewound.len(),
        &rewound[..rewound.len().min(10)]
    );
    commit(&shared, "commit after the failover");
    let (c3, after2) = committed_offsets(&cl, group, topic, 4, SECS(30));
    let want2: BTreeMap<i32, i64> = (0..4).map(|p| (p, 200)).collect();
    assert_eq!(
        after2, want2,
        "offsets committed through the new coordinator {c3}"
    );

    shared.stop.store(true, Ordering::SeqCst);
    for m in members {
        m.join().expect("member thread");
    }
    // A new member starts from the committed offsets, not from the start.
    let fresh: BaseConsumer = gcfg.create().unwrap();
    fresh.subscribe(&[topic]).unwrap();
    produce_all(&cl, topic, &round_robin("g3", 4, 4));
    let got = common::clients::poll_n(&fresh, 4, SECS(60));
    let deadline = Instant::now() + SECS(2);
    let mut extra = Vec::new();
    while Instant::now() < deadline {
        if let Some(Ok(m)) = fresh.poll(Duration::from_millis(100)) {
            extra.push((m.partition(), m.offset()));
        }
    }
    let mut firsts: Vec<(i32, i64)> = got.iter().map(|g| (g.partition, g.offset)).collect();
    firsts.sort();
    assert_eq!(
        (firsts, extra),
        ((0..4).map(|p| (p, 200)).collect::<Vec<_>>(), vec![]),
        "a new member of {group} resumes at the committed offsets"
    );
    eprintln!(
        "groups_survive_coordinator_failover took {:?}",
        started.elapsed()
    );
}
