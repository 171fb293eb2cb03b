//! Exactly-once with librdkafka's transactional and idempotent producers: commits visible to
//! read_committed at once, aborts never, fencing, a hanging transaction aborted after a restart,
//! a lost acknowledgement answered without a second copy, and a transactional copier that
//! stays exactly-once while leaders and the transaction coordinator are killed.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::clients::{self, destroy_within, Got, TestRecord};
use common::cluster::{self as cl, Cluster};
use common::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);

fn txn_producer(base: &ClientConfig, id: &str, timeout_ms: u32) -> BaseProducer {
    let mut cfg = base.clone();
    cfg.set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("message.timeout.ms", timeout_ms.min(60_000).to_string())
        .set("socket.timeout.ms", timeout_ms.min(30_000).to_string())
        .set("request.timeout.ms", timeout_ms.min(30_000).to_string())
        .set("linger.ms", "2");
    cfg.create().expect("create transactional producer")
}

fn isolated(base: &ClientConfig, level: &str) -> ClientConfig {
    let mut cfg = base.clone();
    cfg.set("isolation.level", level);
    cfg
}

/// Sends `n` records with values `{prefix}-{i}` to partition 0 of each topic, then flushes
/// (the records are written, inside whatever transaction is open).
fn send(p: &BaseProducer, topics: &[&str], prefix: &str, n: usize) {
    for t in topics {
        for i in 0..n {
            let v = format!("{prefix}-{i}");
            let mut rec: BaseRecord<'_, (), String> = BaseRecord::to(t).partition(0).payload(&v);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert_eq!(
                            e.rdkafka_error_code(),
                            Some(RDKafkaErrorCode::QueueFull),
                            "send: {e}"
                        );
                        rec = back;
                        p.poll(Duration::from_millis(20));
                    }
                }
            }
        }
    }
    p.flush(T).expect("flush");
}

/// A consumer of partition 0 of every topic, from the beginning.
fn reader(cfg: &ClientConfig, topics: &[&str]) -> BaseConsumer {
    let c = clients::consumer(cfg);
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        tpl.add_partition_offset(t, 0, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).expect("assign");
    c
}

/// Everything `c` returns within `quiet` of the last record (at most `limit` overall).
fn drain(c: &BaseConsumer, quiet: Duration, limit: Duration) -> Vec<Got> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut got = Vec::new();
    while last.elapsed() < quiet && start.elapsed() < limit {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                got.push(clients::to_got(&m));
                last = Instant::now();
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    got
}

fn values(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| String::from_utf8(g.value.clone().unwrap_or_default()).unwrap())
        .collect()
}

fn count_with(got: &[Got], prefix: &str) -> usize {
    values(got)
        .iter()
        .filter(|v| v.starts_with(&format!("{prefix}-")))
        .count()
}

#[test]
fn commit_shows_three_topics_at_once_and_abort_shows_nothing() {
    let broker = Broker::start(&[]);
    let topics = ["txa", "txb", "txc"];
    for t in topics {
        clients::create_topic(&broker.admin_config(), t, 1, &[]);
    }
    let committed_cfg = isolated(&broker.consumer_config(), "read_committed");
    let uncommitted_cfg = isolated(&broker.consumer_config(), "read_uncommitted");
    let p = txn_producer(&broker.producer_config(), "tx-visibility", 60_000);
    p.init_transactions(T).expect("init_transactions");

    p.begin_transaction().expect("begin");
    send(&p, &topics, "first", 10);
    // Written but open: read_uncommitted sees it, read_committed nothing.
    let ru = reader(&uncommitted_cfg, &topics);
    assert_eq!(clients::poll_n(&ru, 30, T).len(), 30);
    let rc = reader(&committed_cfg, &topics);
    let before = drain(&rc, Duration::from_secs(2), Duration::from_secs(5));
    assert!(
        before.is_empty(),
        "read_committed saw an open transaction: {before:?}"
    );
    p.commit_transaction(T).expect("commit");
    let after = clients::poll_n(&rc, 30, T);
    assert_eq!(count_with(&after, "first"), 30, "{:?}", values(&after));

    p.begin_transaction().expect("begin");
    send(&p, &topics, "aborted", 10);
    p.abort_transaction(T).expect("abort");
    p.begin_transaction().expect("begin");
    send(&p, &topics, "third", 5);
    p.commit_transaction(T).expect("commit");

    // read_committed skips the aborted transaction and goes on past it.
    let more = drain(&rc, Duration::from_secs(2), T);
    assert_eq!(count_with(&more, "aborted"), 0, "{:?}", values(&more));
    assert_eq!(count_with(&more, "third"), 15, "{:?}", values(&more));
    assert_eq!(more.len(), 15);
    // A new read_committed consumer from the beginning sees both commits and no abort.
    let all = drain(&reader(&committed_cfg, &topics), Duration::from_secs(2), T);
    assert_eq!(all.len(), 45, "{:?}", values(&all));
    assert_eq!(count_with(&all, "aborted"), 0);
    // read_uncommitted sees all 75 records (control batches are never records).
    let everything = drain(
        &reader(&uncommitted_cfg, &topics),
        Duration::from_secs(2),
        T,
    );
    assert_eq!(everything.len(), 75, "{:?}", values(&everything));
    assert_eq!(count_with(&everything, "aborted"), 30);
}

#[test]
fn read_committed_never_passes_an_open_transaction() {
    let broker = Broker::start(&[]);
    clients::create_topic(&broker.admin_config(), "txopen", 1, &[]);
    let p = txn_producer(&broker.producer_config(), "tx-open", 60_000);
    p.init_transactions(T).expect("init_transactions");
    p.begin_transaction().expect("begin");
    send(&p, &["txopen"], "txn", 5);
    // Plain records after the open transaction's first offset.
    let plain: Vec<TestRecord> = (0..5)
        .map(|i| TestRecord::value(format!("plain-{i}")).in_partition(0))
        .collect();
    clients::produce(&broker.producer_config(), "txopen", &plain);
    let rc = reader(
        &isolated(&broker.consumer_config(), "read_committed"),
        &["txopen"],
    );
    let held = drain(&rc, Duration::from_secs(3), Duration::from_secs(6));
    assert!(
        held.is_empty(),
        "passed the open transaction: {:?}",
        values(&held)
    );
    // The LSO is the open transaction's first offset; the high watermark is past it.
    let uncommitted = isolated(&broker.consumer_config(), "read_uncommitted");
    assert_eq!(clients::watermarks(&uncommitted, "txopen", 0).1, 10);
    let committed = isolated(&broker.consumer_config(), "read_committed");
    assert_eq!(clients::watermarks(&committed, "txopen", 0).1, 0);
    p.commit_transaction(T).expect("commit");
    let got = clients::poll_n(&rc, 10, T);
    let v = values(&got);
    assert_eq!(&v[..5], &["txn-0", "txn-1", "txn-2", "txn-3", "txn-4"]);
    assert_eq!(count_with(&got, "plain"), 5);
}

#[test]
fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
    let broker = Broker::start(&[]);
    clients::create_topic(&broker.admin_config(), "txfence", 1, &[]);
    let first = txn_producer(&broker.producer_config(), "tx-fence", 60_000);
    first.init_transactions(T).expect("init first");
    first.begin_transaction().expect("begin first");
    send(&first, &["txfence"], "zombie", 5);

    let second = txn_producer(&broker.producer_config(), "tx-fence", 60_000);
    second.init_transactions(T).expect("init second");

    // The first producer's next send or its commit fails, fatally.
    let mut failed = None;
    for i in 0..3 {
        let v = format!("late-{i}");
        let _ = first.send(
            BaseRecord::<(), String>::to("txfence")
                .partition(0)
                .payload(&v),
        );
        let _ = first.flush(Duration::from_secs(5));
    }
    match first.commit_transaction(T) {
        Ok(()) => {}
        Err(KafkaError::Transaction(e)) => failed = Some(e),
        Err(e) => panic!("commit of the fenced producer: unexpected {e}"),
    }
    let e = failed.expect("the fenced producer's commit succeeded");
    assert!(e.is_fatal(), "fenced error is not fatal: {e}");
    assert!(
        matches!(
            e.code(),
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        ),
        "fenced producer got {e}"
    );

    second.begin_transaction().expect("begin second");
    send(&second, &["txfence"], "live", 3);
    second.commit_transaction(T).expect("commit second");

    let committed = drain(
        &reader(
            &isolated(&broker.consumer_config(), "read_committed"),
            &["txfence"],
        ),
        Duration::from_secs(2),
        T,
    );
    assert_eq!(values(&committed), ["live-0", "live-1", "live-2"]);
    let all = drain(
        &reader(
            &isolated(&broker.consumer_config(), "read_uncommitted"),
            &["txfence"],
        ),
        Duration::from_secs(2),
        T,
    );
    assert_eq!(count_with(&all, "zombie"), 5, "{:?}", values(&all));
    assert_eq!(count_with(&all, "live"), 3);
    destroy_within(first, Duration::from_secs(10));
}

#[test]
fn a_hanging_transaction_is_aborted_after_a_restart_and_the_lso_moves_on() {
    let mut broker = Broker::start(&[(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "500",
    )]);
    clients::create_topic(&broker.admin_config(), "txhang", 1, &[]);
    let p = txn_producer(&broker.producer_config(), "tx-hang", 4_000);
    p.init_transactions(T).expect("init_transactions");
    p.begin_transaction().expect("begin");
    send(&p, &["txhang"], "hanging", 5);
    // The producer goes silent; the broker crashes in the middle of its transaction.
    broker.kill();
    broker.start_again();
    let plain: Vec<TestRecord> = (0..3)
        .map(|i| TestRecord::value(format!("after-{i}")).in_partition(0))
        .collect();
    clients::produce(&broker.producer_config(), "txhang", &plain);
    // The recovered coordinator aborts the transaction when its timeout passes; the LSO then
    // passes it and read_committed sees the later records only.
    let rc = reader(
        &isolated(&broker.consumer_config(), "read_committed"),
        &["txhang"],
    );
    let got = clients::poll_n(&rc, 3, Duration::from_secs(60));
    assert_eq!(values(&got), ["after-0", "after-1", "after-2"]);
    let rest = drain(&rc, Duration::from_secs(1), Duration::from_secs(3));
    assert!(rest.is_empty(), "{:?}", values(&rest));
    destroy_within(p, Duration::from_secs(10));
}

/// A TCP proxy in front of one broker that can swallow the response to the next Produce
/// request and cut the connection, as a network that loses an acknowledgement does. While
/// `hold` is set it refuses new connections (accepts and closes at once).
struct Proxy {
    port: u16,
    drop_next_produce: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    hold: Arc<AtomicBool>,
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn write_frame(s: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    s.write_all(&(body.len() as i32).to_be_bytes())?;
    s.write_all(body)
}

impl Proxy {
    fn start(listen: TcpListener, broker_port: u16) -> Proxy {
        let port = listen.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            drop_next_produce: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicUsize::new(0)),
            hold: Arc::new(AtomicBool::new(false)),
        };
        let (budget, dropped, hold) = (
            proxy.drop_next_produce.clone(),
            proxy.dropped.clone(),
            proxy.hold.clone(),
        );
        std::thread::spawn(move || {
            for client in listen.incoming() {
                let Ok(client) = client else { continue };
                if hold.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", broker_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let produce_ids = Arc::new(Mutex::new(HashSet::<i32>::new()));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let ids = produce_ids.clone();
                std::thread::spawn(move || {
                    while let Ok(req) = read_frame(&mut c_in) {
                        if req.len() >= 8 && i16::from_be_bytes([req[0], req[1]]) == 0 {
                            let id = i32::from_be_bytes([req[4], req[5], req[6], req[7]]);
                            ids.lock().unwrap().insert(id);
                        }
                        if write_frame(&mut s_out, &req).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                let (budget, dropped, hold) = (budget.clone(), dropped.clone(), hold.clone());
                std::thread::spawn(move || {
                    while let Ok(resp) = read_frame(&mut s_in) {
                        let id = i32::from_be_bytes([resp[0], resp[1], resp[2], resp[3]]);
                        let produce = produce_ids.lock().unwrap().remove(&id);
                        if produce
                            && budget
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                                    b.checked_sub(1)
                                })
                                .is_ok()
                        {
                            // The acknowledgement is lost with the connection.
                            hold.store(true, Ordering::SeqCst);
                            dropped.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if write_frame(&mut c_out, &resp).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                    let _ = s_in.shutdown(Shutdown::Both);
                });
            }
        });
        proxy
    }
}

#[test]
fn a_lost_acknowledgement_writes_the_batch_once_across_a_restart_too() {
    let listen = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listen.local_addr().unwrap().port();
    let advertised = format!("PLAINTEXT://127.0.0.1:{proxy_port}");
    let mut broker = Broker::start(&[("advertised.listeners", advertised.as_str())]);
    let proxy = Proxy::start(listen, broker.addr().port());
    let bootstrap = format!("127.0.0.1:{}", proxy.port);
    let mut pcfg = cl::producer_config(&bootstrap);
    pcfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "200");
    clients::create_topic(&cl::admin_config(&bootstrap), "lostack", 1, &[]);

    for restart in [false, true] {
        let p = clients::producer(&pcfg, 1);
        let phase = if restart { "restart" } else { "plain" };
        proxy.drop_next_produce.store(1, Ordering::SeqCst);
        clients::send_all(
            &p,
            "lostack",
            &[TestRecord::value(format!("{phase}-once")).in_partition(0)],
            0,
        );
        assert!(
            common::wait_until(T, || {
                p.poll(Duration::from_millis(10));
                proxy.dropped.load(Ordering::SeqCst) > restart as usize
            }),
            "the produce response was never dropped"
        );
        if restart {
            broker.kill();
            broker.start_again();
        }
        proxy.hold.store(false, Ordering::SeqCst);
        let delivered = clients::wait_delivered(&p, Duration::from_secs(60));
        let (_, hw) = clients::watermarks(&cl::consumer_config(&bootstrap), "lostack", 0);
        let expected_end = 1 + restart as i64;
        assert_eq!(
            hw, expected_end,
            "{phase}: the retried batch was written twice (delivered at {delivered:?})"
        );
        assert_eq!(delivered, vec![(0, expected_end - 1)], "{phase}");
        destroy_within(p, Duration::from_secs(10));
    }
    let got = clients::consume_all(&cl::consumer_config(&bootstrap), "lostack", 1, 2, T);
    assert_eq!(values(&got), ["plain-once", "restart-once"]);
}

// ----- the transactional copier under failures -----

const PARTITIONS: i32 = 3;

/// The coordinator of `transactional_id` as node `via` answers FindCoordinator.
fn txn_coordinator(cluster: &Cluster, via: i32, transactional_id: &str) -> Option<i32> {
    let req = kafka_protocol::messages::FindCoordinatorRequest::default()
        .with_key(kafka_protocol::protocol::StrBytes::from_string(
            transactional_id.to_string(),
        ))
        .with_key_type(1);
    let r = cluster.request(via, &req, 3).ok()?;
    (r.error_code == 0).then_some(r.node_id.0)
}

/// Copies `input` to `output` partition by partition, in transactions of at most `batch`
/// records with the consumed offsets committed inside them. Any failure aborts what it can
/// and starts over with a new producer and consumer from the committed offsets, as a
/// consume-transform-produce service does; every 25th transaction it drops both clients with
/// the transaction open, as a crashed copier would. Returns once every input record is
/// committed.
fn copier(bootstrap: &str, ends: BTreeMap<i32, i64>, batch: usize, restarts: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    let transactions = AtomicUsize::new(0);
    'session: loop {
        assert!(
            Instant::now() < deadline,
            "the copier did not finish in 600 s"
        );
        let mut pcfg = cl::producer_config(bootstrap);
        pcfg.set("transactional.id", "copier")
            .set("transaction.timeout.ms", "30000")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        let producer: BaseProducer = pcfg.create().expect("producer");
        if let Err(e) = producer.init_transactions(T) {
            eprintln!("copier: init_transactions: {e}");
            restarts.fetch_add(1, Ordering::SeqCst);
            destroy_within(producer, Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let mut ccfg = cl::consumer_config(bootstrap);
        ccfg.set("group.id", "copier-group")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = ccfg.create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset("copy-in", p, Offset::Stored)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let metadata = consumer.group_metadata().expect("group metadata");
        // Where each input partition stands: known once committed offsets are fetched.
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "the copier did not finish in 600 s"
            );
            let mut taken = Vec::new();
            let started = Instant::now();
            while taken.len() < batch && started.elapsed() < Duration::from_millis(500) {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => taken.push(clients::to_got(&m)),
                    Some(Err(e)) => eprintln!("copier: consume: {e}"),
                    None => {}
                }
            }
            if taken.is_empty() {
                // Done when the committed position of every partition is its end.
                if let Ok(c) = consumer.committed(Duration::from_secs(10)) {
                    let done = c.elements().iter().all(
                        |e| matches!(e.offset(), Offset::Offset(o) if o == ends[&e.partition()]),
                    );
                    if done {
                        destroy_within(consumer, Duration::from_secs(10));
                        destroy_within(producer, Duration::from_secs(10));
                        return;
                    }
                }
                continue;
            }
            let result = (|| -> Result<(), KafkaError> {
                producer.begin_transaction()?;
                for g in &taken {
                    let key = format!("{}:{}", g.partition, g.offset);
                    let value = g.value.clone().unwrap_or_default();
                    let mut rec: BaseRecord<'_, String, Vec<u8>> = BaseRecord::to("copy-out")
                        .partition(g.partition)
                        .key(&key)
                        .payload(&value);
                    loop {
                        match producer.send(rec) {
                            Ok(()) => break,
                            Err((e, back))
                                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                            {
                                rec = back;
                                producer.poll(Duration::from_millis(10));
                            }
                            Err((e, _)) => return Err(e),
                        }
                    }
                    next.insert(g.partition, g.offset + 1);
                }
                let mut offsets = TopicPartitionList::new();
                for (p, o) in &next {
                    offsets
                        .add_partition_offset("copy-in", *p, Offset::Offset(*o))
                        .unwrap();
                }
                producer.send_offsets_to_transaction(&offsets, &metadata, T)?;
                producer.flush(T)?;
                Ok(())
            })();
            // Every 25th transaction the copier "crashes" with its transaction open: the
            // next instance's InitProducerId must abort it, records and offsets alike.
            let result = match result {
                Ok(()) if transactions.fetch_add(1, Ordering::SeqCst) % 25 == 24 => {
                    eprintln!("copier: crashing with a transaction open");
                    restarts.fetch_add(1, Ordering::SeqCst);
                    destroy_within(consumer, Duration::from_secs(10));
                    destroy_within(producer, Duration::from_secs(10));
                    continue 'session;
                }
                Ok(()) => producer.commit_transaction(T),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                eprintln!("copier: transaction failed, starting over: {e}");
                let _ = producer.abort_transaction(Duration::from_secs(10));
                restarts.fetch_add(1, Ordering::SeqCst);
                destroy_within(consumer, Duration::from_secs(10));
                destroy_within(producer, Duration::from_secs(10));
                continue 'session;
            }
        }
    }
}

#[test]
fn a_transactional_copier_is_exactly_once_while_leaders_and_the_coordinator_are_killed() {
    const RECORDS: usize = 100_000;
    let mut cluster = Cluster::start(3, &[]);
    let admin = cluster.admin_config();
    for t in ["copy-in", "copy-out"] {
        cl::try_create_topic(&admin, t, PARTITIONS, 3, &[("min.insync.replicas", "2")], T)
            .unwrap_or_else(|e| panic!("create {t}: {e}"));
    }
    let input: Vec<TestRecord> = (0..RECORDS)
        .map(|i| {
            let p = (i % PARTITIONS as usize) as i32;
            TestRecord::value(format!("r{i}")).in_partition(p)
        })
        .collect();
    let mut pcfg = cluster.producer_config();
    pcfg.set("acks", "all").set("enable.idempotence", "true");
    let delivered = clients::produce(&pcfg, "copy-in", &input);
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in &delivered {
        let e = ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    // What each input partition holds, in order.
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut by_pos: Vec<((i32, i64), String)> = delivered
        .iter()
        .zip(&input)
        .map(|(pos, r)| (*pos, String::from_utf8(r.value.clone().unwrap()).unwrap()))
        .collect();
    by_pos.sort();
    for ((p, _), v) in by_pos {
        expected.entry(p).or_default().push(v);
    }

    let bootstrap = cluster.bootstrap();
    let restarts = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (bootstrap, ends, restarts, done) = (
            bootstrap.clone(),
            ends.clone(),
            restarts.clone(),
            done.clone(),
        );
        std::thread::spawn(move || {
            copier(&bootstrap, ends, 400, &restarts);
            done.store(true, Ordering::SeqCst);
        })
    };
    // Kill, in turn, the transaction coordinator and the leaders of input and output
    // partitions, each brought back before the next kill.
    let mut kills = Vec::new();
    for round in 0..6 {
        std::thread::sleep(Duration::from_secs(4));
        if done.load(Ordering::SeqCst) {
            break;
        }
        let via = cluster.up_nodes()[0];
        let victim = match round % 3 {
            0 => txn_coordinator(&cluster, via, "copier"),
            1 => cluster.node_of_leader("copy-out", round % PARTITIONS),
            _ => cluster.node_of_leader("copy-in", round % PARTITIONS),
        };
        let Some(victim) = victim else { continue };
        cluster.kill(victim);
        kills.push(victim);
        std::thread::sleep(Duration::from_secs(2));
        cluster.start_node(victim);
        cluster.wait_brokers_live(3, Duration::from_secs(60));
    }
    worker.join().expect("copier panicked");
    eprintln!(
        "copier finished after kills of {kills:?}, {} restarts",
        restarts.load(Ordering::SeqCst)
    );
    assert!(!kills.is_empty(), "the copier finished before any kill");
    assert!(
        restarts.load(Ordering::SeqCst) > 0,
        "no transaction was left open by a crashed copier"
    );

    // The output, read with read_committed, holds every input record exactly once, in the
    // input partition's order.
    let mut rc = cluster.consumer_config();
    rc.set("isolation.level", "read_committed");
    let got = clients::consume_all(
        &rc,
        "copy-out",
        PARTITIONS,
        RECORDS,
        Duration::from_secs(120),
    );
    let extra = drain(
        &{
            let c = clients::consumer(&rc);
            let starts: Vec<(i32, Offset)> = (0..PARTITIONS)
                .map(|p| {
                    let end = got
                        .iter()
                        .filter(|g| g.partition == p)
                        .map(|g| g.offset + 1)
                        .max()
                        .unwrap_or(0);
                    (p, Offset::Offset(end))
                })
                .collect();
            let mut tpl = TopicPartitionList::new();
            for (p, o) in starts {
                tpl.add_partition_offset("copy-out", p, o).unwrap();
            }
            c.assign(&tpl).unwrap();
            c
        },
        Duration::from_secs(2),
        Duration::from_secs(5),
    );
    assert!(
        extra.is_empty(),
        "{} records beyond the input's count",
        extra.len()
    );
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for g in &got {
        let v = String::from_utf8(g.value.clone().unwrap()).unwrap();
        out.entry(g.partition).or_default().push((g.offset, v));
    }
    for (p, want) in &expected {
        let mut have = out.remove(p).unwrap_or_default();
        have.sort();
        let have: Vec<String> = have.into_iter().map(|(_, v)| v).collect();
        if &have != want {
            let dup = have.len() - have.iter().collect::<HashSet<_>>().len();
            panic!(
                "partition {p}: {} records out for {} in ({dup} duplicates); first difference at {:?}",
                have.len(),
                want.len(),
                have.iter().zip(want).position(|(a, b)| a != b)
            );
        }
    }
}
