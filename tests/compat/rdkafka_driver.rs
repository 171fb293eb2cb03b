//! The librdkafka driver of the compatibility suite, through the `rdkafka` crate (which vendors
//! librdkafka 2.12): the flows of tests/compat/README.md, in process, with the crate's defaults
//! except where a flow names a setting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::common::Broker;
use super::Row;

const CLIENT: &str = "rdkafka (Rust)";
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

type FlowResult = Result<(&'static str, String), String>;
type Flow = Box<dyn Fn(&Broker) -> FlowResult>;

fn pass() -> FlowResult {
    Ok(("pass", String::new()))
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{nanos:x}")
}

fn base(broker: &Broker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.bootstrap());
    c
}

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    base(broker).create().expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(15)))
}

fn create_topic(broker: &Broker, name: &str, partitions: i32) -> Result<(), String> {
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let r = block(admin(broker).create_topics([&t], &opts())).map_err(|e| e.to_string())?;
    match &r[0] {
        Ok(_) => Ok(()),
        Err((_, e)) => Err(format!("create {name}: {e}")),
    }
}

pub fn run(broker: &Broker) -> Vec<Row> {
    let (version_n, version) = rdkafka::util::get_rdkafka_version();
    let version = format!("0.39 (librdkafka {version}, {version_n:#x})");
    let flows: Vec<(&str, Flow)> = vec![
        ("list_topics", Box::new(list_topics)),
        ("admin_topics", Box::new(admin_topics)),
        ("produce_none", Box::new(|b| produce_codec(b, "none"))),
        ("produce_gzip", Box::new(|b| produce_codec(b, "gzip"))),
        ("produce_snappy", Box::new(|b| produce_codec(b, "snappy"))),
        ("produce_lz4", Box::new(|b| produce_codec(b, "lz4"))),
        ("produce_zstd", Box::new(|b| produce_codec(b, "zstd"))),
        ("consume_earliest", Box::new(consume_earliest)),
        ("consume_offset", Box::new(consume_offset)),
        ("consume_timestamp", Box::new(consume_timestamp)),
        ("group", Box::new(group)),
        ("admin_groups", Box::new(admin_groups)),
        ("idempotent", Box::new(idempotent)),
        ("transactions", Box::new(transactions)),
        ("unsupported:alter_configs", Box::new(alter_configs)),
        ("unsupported:delete_records", Box::new(delete_records)),
    ];
    flows
        .into_iter()
        .map(|(flow, f)| {
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(broker)))
                .unwrap_or_else(|p| {
                    Err(p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".to_string()))
                });
            let (result, detail) = match outcome {
                Ok(x) => x,
                Err(e) => ("fail", e),
            };
            let (result, detail) = if result != "fail" && started.elapsed() > FLOW_TIMEOUT {
                ("fail", format!("took {:?}", started.elapsed()))
            } else {
                (result, detail)
            };
            Row::new(CLIENT, &version, flow, result, &detail)
        })
        .collect()
}

fn list_topics(b: &Broker) -> FlowResult {
    let name = unique("listed");
    create_topic(b, &name, 1)?;
    let c: BaseConsumer = base(b).create().map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if md.topics().iter().any(|t| t.name() == name) {
        pass()
    } else {
        Err(format!("{name} not among all topics"))
    }
}

fn admin_topics(b: &Broker) -> FlowResult {
    let name = unique("admin");
    let a = admin(b);
    let t = NewTopic::new(&name, 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let r = block(a.create_topics([&t], &opts())).map_err(|e| e.to_string())?;
    r[0].clone().map_err(|(_, e)| format!("create: {e}"))?;
    let c: BaseConsumer = base(b).create().map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(&name), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let parts = md.topics()[0].partitions().len();
    if parts != 3 {
        return Err(format!("described {parts} partitions, want 3"));
    }
    let cfg = block(a.describe_configs([&ResourceSpecifier::Topic(&name)], &opts()))
        .map_err(|e| e.to_string())?;
    let res = cfg[0]
        .as_ref()
        .map_err(|e| format!("describe configs: {e}"))?;
    let retention = res.get("retention.ms").and_then(|e| e.value.clone());
    if retention.as_deref() != Some("3600000") {
        return Err(format!("retention.ms described as {retention:?}"));
    }
    let r = block(a.delete_topics(&[&name], &opts())).map_err(|e| e.to_string())?;
    r[0].clone().map_err(|(_, e)| format!("delete: {e}"))?;
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if md.topics().iter().any(|t| t.name() == name) {
        return Err("deleted topic still listed".into());
    }
    pass()
}

/// Produces `(key, value)` pairs and waits until all are acknowledged.
fn produce_all(
    cfg: &ClientConfig,
    topic: &str,
    records: &[(String, String)],
) -> Result<(), String> {
    let p: BaseProducer = cfg.create().map_err(|e| e.to_string())?;
    for (k, v) in records {
        let mut rec = BaseRecord::to(topic).key(k.as_str()).payload(v.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(Duration::from_millis(10));
                    rec = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// (partition, offset, key, value) of everything in `topic` from the start.
fn read_all(b: &Broker, topic: &str, n: usize) -> Result<Vec<(i32, i64, String, String)>, String> {
    let c: BaseConsumer = base(b)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.map_err(|e| e.to_string())?;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.push((m.partition(), m.offset(), key, value));
        }
    }
    Ok(out)
}

/// Every record once, each key in one partition, per-key order kept.
fn check_keyed(sent: &[(String, String)], got: &[(i32, i64, String, String)]) -> FlowResult {
    if got.len() != sent.len() {
        return Err(format!("read {} of {} records", got.len(), sent.len()));
    }
    let mut by_part: BTreeMap<i32, Vec<&(i32, i64, String, String)>> = BTreeMap::new();
    for g in got {
        by_part.entry(g.0).or_default().push(g);
    }
    let mut key_part: HashMap<&str, i32> = HashMap::new();
    let mut seen = HashSet::new();
    let mut order: HashMap<&str, Vec<&str>> = HashMap::new();
    for part in by_part.values_mut() {
        part.sort_by_key(|g| g.1);
        for (p, _, k, v) in part.iter().map(|g| (g.0, g.1, &g.2, &g.3)) {
            if *key_part.entry(k).or_insert(p) != p {
                return Err(format!("key {k} in two partitions"));
            }
            if !seen.insert(v.as_str()) {
                return Err(format!("{v} read twice"));
            }
            order.entry(k).or_default().push(v);
        }
    }
    let mut want: HashMap<&str, Vec<&str>> = HashMap::new();
    for (k, v) in sent {
        want.entry(k).or_default().push(v);
    }
    if want != order {
        return Err("per-key order differs from the order produced".into());
    }
    pass()
}

fn keyed_records(tag: &str) -> Vec<(String, String)> {
    (0..1000)
        .map(|i| (format!("key-{}", i % 100), format!("{tag}-{i}")))
        .collect()
}

fn produce_codec(b: &Broker, codec: &str) -> FlowResult {
    let topic = unique(&format!("codec-{codec}"));
    create_topic(b, &topic, 3)?;
    let sent = keyed_records(codec);
    let mut cfg = base(b);
    cfg.set("compression.codec", codec);
    produce_all(&cfg, &topic, &sent)?;
    check_keyed(&sent, &read_all(b, &topic, sent.len())?)
}

/// A 1-partition topic holding `n` records with CreateTime 1000*i + 1_700_000_000_000.
fn filled_topic(b: &Broker, n: usize) -> Result<String, String> {
    let topic = unique("consume");
    create_topic(b, &topic, 1)?;
    let p: BaseProducer = base(b).create().map_err(|e| e.to_string())?;
    for i in 0..n {
        let v = format!("v{i}");
        let ts = 1_700_000_000_000 + 1000 * i as i64;
        p.send(
            BaseRecord::<(), str>::to(&topic)
                .payload(&v)
                .timestamp(ts)
                .partition(0),
        )
        .map_err(|(e, _)| e.to_string())?;
    }
    p.flush(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(topic)
}

fn first_from(b: &Broker, topic: &str, start: Offset) -> Result<(i64, String), String> {
    let c: BaseConsumer = base(b)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, start)
        .map_err(|e| e.to_string())?;
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.map_err(|e| e.to_string())?;
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            return Ok((m.offset(), v));
        }
    }
    Err("nothing read".into())
}

fn consume_earliest(b: &Broker) -> FlowResult {
    let topic = filled_topic(b, 10)?;
    match first_from(b, &topic, Offset::Beginning)? {
        (0, v) if v == "v0" => pass(),
        other => Err(format!("first record {other:?}")),
    }
}

fn consume_offset(b: &Broker) -> FlowResult {
    let topic = filled_topic(b, 10)?;
    match first_from(b, &topic, Offset::Offset(6))? {
        (6, v) if v == "v6" => pass(),
        other => Err(format!("first record {other:?}")),
    }
}

fn consume_timestamp(b: &Broker) -> FlowResult {
    let topic = filled_topic(b, 10)?;
    let c: BaseConsumer = base(b)
        .set("group.id", unique("ts"))
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(1_700_000_000_000 + 4500))
        .map_err(|e| e.to_string())?;
    let found = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let offset = found
        .find_partition(&topic, 0)
        .map(|p| p.offset())
        .ok_or("no answer for the partition")?;
    if offset != Offset::Offset(5) {
        return Err(format!("timestamp lookup gave {offset:?}, want offset 5"));
    }
    match first_from(b, &topic, offset)? {
        (5, _) => pass(),
        other => Err(format!("first record {other:?}")),
    }
}

fn group_member(b: &Broker, group: &str, topic: &str) -> Result<BaseConsumer, String> {
    let c: BaseConsumer = base(b)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .map_err(|e| e.to_string())?;
    c.subscribe(&[topic]).map_err(|e| e.to_string())?;
    Ok(c)
}

fn assigned(c: &BaseConsumer) -> Vec<i32> {
    c.assignment()
        .map(|t| t.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

fn group(b: &Broker) -> FlowResult {
    let topic = unique("grouped");
    let group = unique("group");
    create_topic(b, &topic, 4)?;
    let sent: Vec<(String, String)> = (0..40)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    produce_all(&base(b), &topic, &sent)?;
    let one = group_member(b, &group, &topic)?;
    let two = group_member(b, &group, &topic)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut read = 0;
    loop {
        for c in [&one, &two] {
            if let Some(Ok(_)) = c.poll(Duration::from_millis(50)) {
                read += 1;
            }
        }
        let (a, b2) = (assigned(&one), assigned(&two));
        let split = !a.is_empty() && !b2.is_empty() && a.len() + b2.len() == 4;
        if split && a.iter().all(|p| !b2.contains(p)) && read >= 10 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("no split of 4 partitions: {a:?} / {b2:?}"));
        }
    }
    one.commit_consumer_state(CommitMode::Sync)
        .map_err(|e| format!("commit: {e}"))?;
    let committed = one
        .committed(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if committed
        .elements()
        .iter()
        .all(|e| e.offset() == Offset::Invalid)
    {
        return Err("no committed offset read back".into());
    }
    drop(two);
    let deadline = Instant::now() + Duration::from_secs(40);
    while assigned(&one).len() != 4 {
        one.poll(Duration::from_millis(100));
        if Instant::now() > deadline {
            return Err(format!(
                "survivor has {:?} after the other left",
                assigned(&one)
            ));
        }
    }
    pass()
}

fn admin_groups(b: &Broker) -> FlowResult {
    let topic = unique("admin-grouped");
    let group = unique("admin-group");
    create_topic(b, &topic, 1)?;
    produce_all(&base(b), &topic, &[("k".into(), "v".into())])?;
    {
        let c = group_member(b, &group, &topic)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.poll(Duration::from_millis(100)).is_none() {
            if Instant::now() > deadline {
                return Err("member read nothing".into());
            }
        }
        c.commit_consumer_state(CommitMode::Sync)
            .map_err(|e| e.to_string())?;
        let list = c
            .fetch_group_list(Some(&group), Duration::from_secs(10))
            .map_err(|e| format!("list/describe groups: {e}"))?;
        let g = list.groups().first().ok_or("group not described")?;
        if g.members().len() != 1 {
            return Err(format!("{} members described", g.members().len()));
        }
    }
    let r = block(admin(b).delete_groups(&[&group], &opts())).map_err(|e| e.to_string())?;
    r[0].clone()
        .map_err(|(_, e)| format!("delete group: {e}"))?;
    pass()
}

fn idempotent(b: &Broker) -> FlowResult {
    let topic = unique("idempotent");
    create_topic(b, &topic, 3)?;
    let sent = keyed_records("idem");
    let mut cfg = base(b);
    cfg.set("enable.idempotence", "true");
    produce_all(&cfg, &topic, &sent)?;
    check_keyed(&sent, &read_all(b, &topic, sent.len())?)
}

/// The offset committed for a group inside the last transaction (TxnOffsetCommit).
const TXN_GROUP_OFFSET: i64 = 10;

/// The three transactions of the flow: committed, aborted, committed.
fn txn_batches() -> [Vec<(String, String)>; 3] {
    let batch = |tag: &str, n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("k{i}"), format!("{tag}-{i}")))
            .collect()
    };
    [
        batch("commit1", 10),
        batch("abort", 10),
        batch("commit2", 5),
    ]
}

/// Sends `records` to partition 0 and waits until the producer's queue is empty.
fn send_flushed(p: &BaseProducer, topic: &str, records: &[(String, String)]) -> Result<(), String> {
    for (k, v) in records {
        let mut rec = BaseRecord::to(topic)
            .key(k.as_str())
            .payload(v.as_str())
            .partition(0);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    p.poll(Duration::from_millis(10));
                    rec = back;
                }
                Err((e, _)) => return Err(format!("send: {e}")),
            }
        }
    }
    p.flush(Duration::from_secs(15))
        .map_err(|e| format!("flush: {e}"))
}

/// (offset, value) of partition 0 read from the beginning with `isolation`, until partition
/// EOF (the last stable offset under read_committed) after at least `want` records, or 15 s.
fn read_txn(
    b: &Broker,
    topic: &str,
    isolation: &str,
    want: usize,
) -> Result<Vec<(i64, String)>, String> {
    let c: BaseConsumer = base(b)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut eof = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(eof && out.len() >= want) && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                out.push((m.offset(), v));
                eof = false;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => eof = true,
            Some(Err(e)) => return Err(format!("{isolation} consumer: {e}")),
            None => {}
        }
    }
    Ok(out)
}

/// None when `got` holds exactly `want` in order at increasing offsets.
fn txn_problem(what: &str, got: &[(i64, String)], want: &[&str]) -> Option<String> {
    let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
    if values != want {
        let at = values
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(values.len().min(want.len()));
        let shown: Vec<String> = got
            .iter()
            .skip(at)
            .take(3)
            .map(|(o, v)| format!("{o}:{v}"))
            .collect();
        let wanted: Vec<&str> = want.iter().skip(at).take(3).copied().collect();
        return Some(format!(
            "{what} read {} records, expected {}; first difference at record {at}: got {shown:?}, expected {wanted:?}",
            values.len(),
            want.len()
        ));
    }
    if got.windows(2).any(|w| w[1].0 <= w[0].0) {
        let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
        return Some(format!(
            "{what} read the expected values at offsets {offsets:?}, which do not increase"
        ));
    }
    None
}

/// "0-9,22-26" for offsets 0..=9 and 22..=26.
fn offset_runs(got: &[(i64, String)]) -> String {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for (o, _) in got {
        match runs.last_mut() {
            Some(last) if *o == last.1 + 1 => last.1 = *o,
            _ => runs.push((*o, *o)),
        }
    }
    runs.iter()
        .map(|(a, b)| {
            if a == b {
                format!("{a}")
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn transactions(b: &Broker) -> FlowResult {
    let topic = unique("txn");
    let group = unique("txn-group");
    create_topic(b, &topic, 1)?;
    let [first, aborted, last] = txn_batches();
    let timeout = Duration::from_secs(15);
    let p: BaseProducer = base(b)
        .set("transactional.id", unique("txn-id"))
        .set("transaction.timeout.ms", "30000")
        .create()
        .map_err(|e| e.to_string())?;
    p.init_transactions(timeout)
        .map_err(|e| format!("init_transactions: {e}"))?;

    p.begin_transaction()
        .map_err(|e| format!("transaction 1: begin_transaction: {e}"))?;
    send_flushed(&p, &topic, &first).map_err(|e| format!("transaction 1: {e}"))?;
    p.commit_transaction(timeout)
        .map_err(|e| format!("transaction 1: commit_transaction: {e}"))?;

    p.begin_transaction()
        .map_err(|e| format!("transaction 2: begin_transaction: {e}"))?;
    // Flushed: the records are in the log when the transaction is aborted.
    send_flushed(&p, &topic, &aborted).map_err(|e| format!("transaction 2: {e}"))?;
    p.abort_transaction(timeout)
        .map_err(|e| format!("transaction 2: abort_transaction: {e}"))?;

    p.begin_transaction()
        .map_err(|e| format!("transaction 3: begin_transaction: {e}"))?;
    send_flushed(&p, &topic, &last).map_err(|e| format!("transaction 3: {e}"))?;
    let member: BaseConsumer = base(b)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let cgm = member
        .group_metadata()
        .ok_or("no group metadata from a consumer with a group.id")?;
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(TXN_GROUP_OFFSET))
        .map_err(|e| e.to_string())?;
    p.send_offsets_to_transaction(&offsets, &cgm, timeout)
        .map_err(|e| format!("transaction 3: send_offsets_to_transaction for {group}: {e}"))?;
    p.commit_transaction(timeout)
        .map_err(|e| format!("transaction 3: commit_transaction: {e}"))?;

    let value = |(_, v): &(String, String)| v.clone();
    let want_committed: Vec<String> = first.iter().chain(&last).map(value).collect();
    let want_all: Vec<String> = first
        .iter()
        .chain(&aborted)
        .chain(&last)
        .map(value)
        .collect();
    let want_committed: Vec<&str> = want_committed.iter().map(String::as_str).collect();
    let want_all: Vec<&str> = want_all.iter().map(String::as_str).collect();
    let committed = read_txn(b, &topic, "read_committed", want_committed.len())?;
    if let Some(problem) = txn_problem("read_committed consumer", &committed, &want_committed) {
        return Err(problem);
    }
    let uncommitted = read_txn(b, &topic, "read_uncommitted", want_all.len())?;
    if let Some(problem) = txn_problem("read_uncommitted consumer", &uncommitted, &want_all) {
        return Err(problem);
    }

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = member
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .map_err(|e| format!("committed_offsets for {group}: {e}"))?;
        let offset = got.find_partition(&topic, 0).map(|e| e.offset());
        if offset == Some(Offset::Offset(TXN_GROUP_OFFSET)) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "committed_offsets for {group} gives {offset:?}, expected offset {TXN_GROUP_OFFSET}"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok((
        "pass",
        format!(
            "read_committed read offsets {}, read_uncommitted {}; group offset {TXN_GROUP_OFFSET} read back",
            offset_runs(&committed),
            offset_runs(&uncommitted)
        ),
    ))
}

/// An unserved call must fail fast with an error, never hang.
fn expect_error<T: std::fmt::Debug>(
    api: &str,
    started: Instant,
    r: Result<T, String>,
) -> FlowResult {
    match r {
        Ok(v) => Ok(("pass", format!("{api} worked: {v:?}"))),
        Err(e) if started.elapsed() < Duration::from_secs(15) => {
            Ok(("xfail", format!("{api} not served yet: {e}")))
        }
        Err(e) => Err(format!("{api} took {:?} to fail: {e}", started.elapsed())),
    }
}

fn alter_configs(b: &Broker) -> FlowResult {
    let topic = unique("alter");
    create_topic(b, &topic, 1)?;
    let started = Instant::now();
    let change = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "1000");
    let r = block(admin(b).alter_configs([&change], &opts()))
        .map_err(|e| e.to_string())
        .and_then(|r| match &r[0] {
            Ok(_) => Ok(()),
            Err((_, e)) => Err(e.to_string()),
        });
    expect_error("AlterConfigs (issue 9)", started, r)
}

fn delete_records(b: &Broker) -> FlowResult {
    let topic = filled_topic(b, 3)?;
    let started = Instant::now();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(1))
        .map_err(|e| e.to_string())?;
    let r = block(admin(b).delete_records(&tpl, &opts()))
        .map_err(|e| e.to_string())
        .and_then(|t| match t.elements().first().map(|e| e.error()) {
            Some(Err(e)) => Err(e.to_string()),
            _ => Ok(()),
        });
    expect_error("DeleteRecords (issue 9)", started, r)
}
