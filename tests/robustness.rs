//! Hostile and careless clients cannot make the broker's memory follow them, and a well-behaved
//! client (librdkafka) produces and consumes throughout with nothing acknowledged lost.
//!
//! Memory is the broker's own count from /proc/<pid>/status: VmRSS (resident) and VmSize
//! (reserved), each measured as growth over a baseline taken once the broker serves traffic.
//! The bounds, stated with each test:
//! - 10,000 idle connections (each served one request first): RSS grows < 100 MiB (10 KiB each).
//! - 1,000 connections that each send a 100 MiB length prefix and 1 KiB of its body, then
//!   stall, and 1,000 more with 2 MiB prefixes: RSS grows < 64 MiB and VmSize < 1 GiB
//!   (reserving from the prefixes would be 100 GiB, and 2 GiB for the small ones, which only
//!   get their buffers ahead of their bytes within 64 MiB per shard).
//! - 20 clients that each ask for 4 x 32 MiB of fetches and never read: RSS grows < 64 MiB
//!   (the answers are the fetch cache's buffers and file ranges, not copies), and they are cut
//!   off after `connections.max.unsent.ms`; a client that reads gets its 32 MiB. (A request's
//!   share of `queued.max.request.bytes` is held until its handler is done, not until its
//!   answer is written, so what a client that does not read holds is the answers it is owed,
//!   at most 64 requests' worth; the cut frees them.)
//!
//! Also: `max.connections` (new clients wait), `max.connections.per.ip` and its overrides
//! (over it: closed at once), `connections.max.idle.ms`, and Kafka 4.4's decoder limits (an
//! array over 1,000,000 elements or a tagged-field section over 10,000 fields closes the
//! connection).

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, FetchRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset};

use common::clients::{assign, consumer, create_topic};
use common::{encode_request, read_frame, Broker, RawClient};

const MIB: u64 = 1 << 20;

// ----- the broker's memory -----

/// A field of /proc/<pid>/status, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    kib * 1024
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    size: u64,
}

fn memory(broker: &Broker) -> Memory {
    let pid = broker.pid().expect("broker runs");
    Memory {
        rss: proc_status_bytes(pid, "VmRSS:"),
        size: proc_status_bytes(pid, "VmSize:"),
    }
}

/// Prints and checks the growth over `base`; returns it (rss, size).
fn check_growth(what: &str, base: Memory, now: Memory, rss_max: u64, size_max: u64) -> (u64, u64) {
    let rss = now.rss.saturating_sub(base.rss);
    let size = now.size.saturating_sub(base.size);
    println!(
        "{what}: RSS {} -> {} MiB (+{:.1} MiB), VmSize +{:.1} MiB",
        base.rss / MIB,
        now.rss / MIB,
        rss as f64 / MIB as f64,
        size as f64 / MIB as f64
    );
    assert!(
        rss < rss_max,
        "{what}: RSS grew {rss} bytes, bound {rss_max}"
    );
    assert!(
        size < size_max,
        "{what}: VmSize grew {size} bytes, bound {size_max}"
    );
    (rss, size)
}

/// Lifts this process's soft open-file limit to the hard one; panics if below `need`.
fn raise_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= need,
        "this test needs {need} open files; the hard limit is {}",
        lim.rlim_cur
    );
}

// ----- a well-behaved client -----

/// A delivery report: (partition, offset) or the error.
type Ack = Result<(i32, i64), String>;

struct Acks(Mutex<HashMap<usize, Ack>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, index: usize) {
        let v = match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap().insert(index, v);
    }
}

/// What the well-behaved client did.
struct Served {
    rounds: usize,
    /// Every acknowledged record: (offset, value).
    acked: Vec<(i64, String)>,
    slowest_round: Duration,
}

/// A librdkafka producer and consumer in a loop: each round produces 10 records (acks=all),
/// waits for their acknowledgements, and consumes them back, checking offsets and values.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Served>,
}

/// How long one round may take before the client counts as not served.
const ROUND_MAX: Duration = Duration::from_secs(20);

impl Traffic {
    fn start(broker: &Broker, topic: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let mut pcfg = broker.producer_config();
        pcfg.set("acks", "all").set("linger.ms", "1");
        let ccfg = broker.consumer_config();
        let topic = topic.to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let producer: BaseProducer<Acks> = pcfg
                .create_with_context(Acks(Mutex::new(HashMap::new())))
                .expect("producer");
            let consumer = consumer(&ccfg);
            assign(&consumer, &topic, &[(0, Offset::Beginning)]);
            let mut served = Served {
                rounds: 0,
                acked: Vec::new(),
                slowest_round: Duration::ZERO,
            };
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                round(&producer, &consumer, &topic, &mut served);
                served.slowest_round = served.slowest_round.max(started.elapsed());
                served.rounds += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            served
        });
        Traffic { stop, thread }
    }

    /// Stops after at least `min_rounds` rounds; what was served.
    fn finish(self, min_rounds: usize) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        let served = self
            .thread
            .join()
            .unwrap_or_else(|_| panic!("the well-behaved client failed (see above)"));
        println!(
            "well-behaved client: {} rounds, {} records, slowest round {:?}",
            served.rounds,
            served.acked.len(),
            served.slowest_round
        );
        assert!(
            served.rounds >= min_rounds,
            "only {} rounds served",
            served.rounds
        );
        served
    }
}

fn round(producer: &BaseProducer<Acks>, consumer: &BaseConsumer, topic: &str, s: &mut Served) {
    let first = s.acked.len();
    let values: Vec<String> = (0..10).map(|i| format!("round{}-{i}", s.rounds)).collect();
    for (i, v) in values.iter().enumerate() {
        let mut rec = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, first + i)
            .payload(v.as_bytes())
            .partition(0);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(format!("{e}").contains("Queue full"), "send: {e}");
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(ROUND_MAX).unwrap_or_else(|e| {
        panic!(
            "round {}: not acknowledged within {ROUND_MAX:?}: {e}",
            s.rounds
        )
    });
    let acks = producer.context().0.lock().unwrap().clone();
    for (i, v) in values.into_iter().enumerate() {
        match acks.get(&(first + i)) {
            Some(Ok((0, offset))) => s.acked.push((*offset, v)),
            other => panic!("round {}: record {i}: {other:?}", s.rounds),
        }
    }
    let deadline = Instant::now() + ROUND_MAX;
    let mut next = first;
    while next < s.acked.len() {
        assert!(
            Instant::now() < deadline,
            "round {}: consumed {} of {} acknowledged records",
            s.rounds,
            next,
            s.acked.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let (offset, value) = &s.acked[next];
                assert_eq!(m.offset(), *offset, "consumed out of order or lost");
                assert_eq!(m.payload(), Some(value.as_bytes()), "at offset {offset}");
                next += 1;
            }
            Some(Err(e)) => println!("consumer: {e}"),
            None => {}
        }
    }
}

/// A broker with a topic for the well-behaved client, traffic already running, and the memory
/// it uses then.
fn serving_broker(extra: &[(&str, &str)]) -> (Broker, Traffic, Memory) {
    let broker = Broker::start(extra);
    create_topic(&broker.admin_config(), "steady", 1, &[]);
    let traffic = Traffic::start(&broker, "steady");
    std::thread::sleep(Duration::from_secs(2));
    let base = memory(&broker);
    (broker, traffic, base)
}

// ----- raw connections -----

fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect(broker.addr()).unwrap_or_else(|e| panic!("connect: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn api_versions() -> Vec<u8> {
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("gregor-tests"))
        .with_client_software_version(StrBytes::from_static_str("0"));
    encode_request(&req, 3, 1)
}

/// Reads until the broker closes the connection; the bytes read, or None if it stays open
/// past `limit`.
fn drain_until_closed(s: &mut TcpStream, limit: Duration) -> Option<u64> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Some(total),
            Ok(n) => total += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(total),
            Err(e) => panic!("read: {e}"),
        }
    }
    None
}

// ----- the tests -----

#[test]
fn ten_thousand_idle_connections_stay_cheap() {
    const CONNECTIONS: usize = 10_000;
    raise_nofile(CONNECTIONS as u64 + 1000);
    let (broker, traffic, base) = serving_broker(&[]);
    let request = api_versions();
    let mut idle = Vec::with_capacity(CONNECTIONS);
    // Each connection is served one request (so it has read into the broker's buffers), then
    // stays idle. Opened in batches of 500, each batch's requests pipelined.
    for _ in 0..CONNECTIONS / 500 {
        let mut batch: Vec<TcpStream> = (0..500).map(|_| connect(&broker)).collect();
        for s in &mut batch {
            s.write_all(&request).unwrap();
        }
        for s in &mut batch {
            read_frame(s).unwrap_or_else(|e| panic!("ApiVersions on connection: {e}"));
        }
        idle.extend(batch);
    }
    std::thread::sleep(Duration::from_secs(1));
    let with_idle = memory(&broker);
    let (rss, _) = check_growth(
        "10,000 idle connections",
        base,
        with_idle,
        100 * MIB,
        4096 * MIB,
    );
    println!("per idle connection: {} bytes", rss / CONNECTIONS as u64);
    // They are all still served.
    for s in idle.iter_mut().step_by(97) {
        s.write_all(&request).unwrap();
        read_frame(s).unwrap_or_else(|e| panic!("an idle connection was dropped: {e}"));
    }
    drop(idle);
    traffic.finish(5);
}

#[test]
fn stalled_100_mib_length_prefixes_reserve_nothing() {
    const CONNECTIONS: usize = 1_000;
    const PREFIX: i32 = 100 << 20;
    raise_nofile(2 * CONNECTIONS as u64 + 1000);
    let (broker, traffic, base) = serving_broker(&[("socket.request.max.bytes", "209715200")]);
    let mut stalled = Vec::with_capacity(2 * CONNECTIONS);
    stall(&broker, PREFIX, CONNECTIONS, &mut stalled);
    std::thread::sleep(Duration::from_secs(2));
    check_growth(
        "1,000 stalled 100 MiB prefixes",
        base,
        memory(&broker),
        64 * MIB,
        1024 * MIB,
    );
    // 1,000 more with 2 MiB prefixes, each small enough to get its whole buffer at once: the
    // shards stop doing that once 64 MiB each is promised (2 GiB otherwise).
    stall(&broker, 2 << 20, CONNECTIONS, &mut stalled);
    std::thread::sleep(Duration::from_secs(2));
    check_growth(
        "and 1,000 stalled 2 MiB prefixes",
        base,
        memory(&broker),
        64 * MIB,
        1024 * MIB,
    );
    let mut c = RawClient::connect(broker.addr());
    c.assert_served("a new connection among the stalled ones");
    drop(stalled);
    traffic.finish(5);
}

/// A Fetch of up to `max_bytes` from offset 0 of partition 0.
fn fetch_request(topic: &str, max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(0)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(max_bytes)])])
}

/// A Produce (acks=1) of one batch of `n` records of `size` bytes to partition 0.
fn produce_request(topic: &str, n: usize, size: usize) -> ProduceRequest {
    common::produce_request(topic, 0, 1, common::plain_batch(&vec![vec![b'x'; size]; n]))
}

#[test]
fn clients_that_never_read_are_cut_off() {
    const READERS_NOT: usize = 20;
    const FETCHES: usize = 4;
    let (broker, traffic, _) = serving_broker(&[
        ("connections.max.unsent.bytes", "1048576"),
        ("connections.max.unsent.ms", "2000"),
    ]);
    // 32 MiB to fetch, in 128 batches of 256 KiB (held in the fetch cache, so the answers
    // are the cache's buffers).
    create_topic(&broker.admin_config(), "big", 1, &[]);
    let mut c = RawClient::connect(broker.addr());
    for _ in 0..128 {
        let resp = c.request(&produce_request("big", 4, 64 << 10), 9);
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    std::thread::sleep(Duration::from_secs(1));
    let base = memory(&broker);
    // Each asks for 32 MiB four times and reads nothing.
    let fetch = encode_request(&fetch_request("big", 32 << 20), 12, 1);
    let mut hogs: Vec<TcpStream> = Vec::new();
    for _ in 0..READERS_NOT {
        let mut s = connect(&broker);
        for _ in 0..FETCHES {
            s.write_all(&fetch).unwrap();
        }
        hogs.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    check_growth(
        "20 clients not reading 128 MiB each",
        base,
        memory(&broker),
        64 * MIB,
        1024 * MIB,
    );
    // Past connections.max.unsent.ms (and the watchdog's next look), they are all gone: each
    // gets what the socket buffers held, then the end.
    std::thread::sleep(Duration::from_secs(4));
    for (i, s) in hogs.iter_mut().enumerate() {
        let read = drain_until_closed(s, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("client {i}, which never read, is still connected"));
        assert!(
            read < (FETCHES as u64) * (32 << 20),
            "client {i} got {read} bytes: all it asked for, so it was not cut off"
        );
    }
    let cut = broker.stderr().matches("response bytes unread").count();
    assert_eq!(
        cut, READERS_NOT,
        "the broker says why it closed each of them"
    );
    // A client that reads is served in full (the rule is about not reading, not size).
    let mut c = RawClient::connect(broker.addr());
    let resp = c.request(&fetch_request("big", 32 << 20), 12);
    let records = resp.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    assert!(records > 16 << 20, "a reading client got {records} bytes");
    check_growth("after the cut", base, memory(&broker), 64 * MIB, 1024 * MIB);
    traffic.finish(10);
}

#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let broker = Broker::start(&[("connections.max.idle.ms", "1500")]);
    let opened = Instant::now();
    let mut idle = RawClient::connect(broker.addr());
    idle.assert_served("before going idle");
    // A client that stalls inside a frame is idle too.
    let mut partial = RawClient::connect(broker.addr());
    partial.send_bytes(&(100i32 << 20).to_be_bytes()).unwrap();
    let mut busy = RawClient::connect(broker.addr());
    while opened.elapsed() < Duration::from_secs(4) {
        busy.assert_served("a connection with a request every 300 ms");
        std::thread::sleep(Duration::from_millis(300));
    }
    idle.expect_closed("idle for 1.5 s");
    partial.expect_closed("stalled in a frame for 1.5 s");
    busy.assert_served("still open after 4 s");
    assert!(broker.stderr().contains("connections.max.idle.ms"));
}

/// Whether the broker answers ApiVersions on `s` within `wait` (false: no answer yet, the
/// connection still open).
fn answered_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("the waiting connection was closed: {e}"),
    }
}

#[test]
fn at_max_connections_new_clients_wait_for_a_slot() {
    let broker = Broker::start(&[("max.connections", "4")]);
    let mut open: Vec<RawClient> = (0..4).map(|_| RawClient::connect(broker.addr())).collect();
    for c in &mut open {
        c.assert_served("within max.connections");
    }
    // The fifth is left in the backlog, neither served nor closed, until a slot frees.
    let mut waiting = connect(&broker);
    waiting.write_all(&api_versions()).unwrap();
    assert!(
        !answered_within(&mut waiting, Duration::from_secs(1)),
        "a fifth connection was served with max.connections=4"
    );
    drop(open.pop());
    assert!(
        answered_within(&mut waiting, Duration::from_secs(10)),
        "the waiting connection was not served once a slot freed"
    );
    for c in &mut open {
        c.assert_served("the first ones are still served");
    }
}

/// A connection the broker serves, retried for up to 5 s.
fn served_soon(broker: &Broker) -> RawClient {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = RawClient::connect(broker.addr());
        c.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if c.stream.write_all(&api_versions()).is_ok() && c.read_frame().is_ok() {
            c.stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
            return c;
        }
        assert!(Instant::now() < deadline, "no connection served within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn over_max_connections_per_ip_is_closed_at_once() {
    // The override for 127.0.0.1 wins over the general per-IP limit.
    let broker = Broker::start(&[
        ("max.connections.per.ip", "100"),
        ("max.connections.per.ip.overrides", "127.0.0.1:3"),
    ]);
    // The broker counts a close when it notices it (the start-up probe's included), so a
    // connection may need a moment before it is served.
    let mut open: Vec<RawClient> = (0..3).map(|_| served_soon(&broker)).collect();
    let mut fourth = RawClient::connect(broker.addr());
    fourth.expect_closed("a fourth connection from 127.0.0.1");
    drop(open.pop());
    open.push(served_soon(&broker));
    for c in &mut open {
        c.assert_served("the first ones are still served");
    }
    assert!(broker
        .stderr()
        .contains("too many connections from 127.0.0.1"));
}

#[test]
fn counts_over_kafkas_decoder_limits_close_the_connection() {
    let broker = Broker::start(&[]);
    let mut bystander = RawClient::connect(broker.addr());
    bystander.assert_served("before");
    // Metadata v1 asking for 1,000,001 topics (each an empty name): over 1,000,000 elements.
    let mut body = BytesMut::new();
    body.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&5i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // client id: null
    body.extend_from_slice(&1_000_001i32.to_be_bytes());
    body.extend(std::iter::repeat_n(0u8, 2 * 1_000_001));
    let mut c = RawClient::connect(broker.addr());
    c.send_bytes(&common::frame(&body)).unwrap();
    c.expect_closed("an array of 1,000,001 elements");
    // ApiVersions v3 whose header carries 10,001 tagged fields.
    let mut header = BytesMut::new();
    header.extend_from_slice(&18i16.to_be_bytes());
    header.extend_from_slice(&3i16.to_be_bytes());
    header.extend_from_slice(&6i32.to_be_bytes());
    header.extend_from_slice(&(-1i16).to_be_bytes());
    header.extend_from_slice(&[0x91, 0x4e]); // 10,001 as an unsigned varint
    for tag in 0..10_001u32 {
        let mut t = tag;
        while t >= 0x80 {
            header.extend_from_slice(&[t as u8 | 0x80]);
            t >>= 7;
        }
        header.extend_from_slice(&[t as u8, 0]);
    }
    header.extend_from_slice(&[2, b't', 2, b'1', 0]);
    let mut c = RawClient::connect(broker.addr());
    c.send_bytes(&common::frame(&header)).unwrap();
    c.expect_closed("a tagged-field section of 10,001 fields");
    bystander.assert_served("after");
}

/// Opens `n` connections that each send a `prefix`-byte length and 1 KiB of its frame, then
/// stall.
fn stall(broker: &Broker, prefix: i32, n: usize, stalled: &mut Vec<TcpStream>) {
    let mut start = prefix.to_be_bytes().to_vec();
    start.extend(std::iter::repeat_n(0x5a, 1024));
    for _ in 0..n {
        let mut s = connect(broker);
        s.write_all(&start).unwrap();
        stalled.push(s);
    }
}
