//! The partition side of exactly-once: producer state that survives restarts (snapshots),
//! transactional batches and markers (WriteTxnMarkers), the last stable offset and the
//! aborted-transaction index seen by read_committed fetches and ListOffsets, control batches
//! refused from clients, and a retried idempotent batch answered by a new leader.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{create_topic_rf, raw_request, Cluster};
use common::{Broker, RawClient};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DescribeProducersRequest, FetchRequest, FetchResponse,
    ListOffsetsRequest, ProduceRequest, ProducerId, TopicName, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const ATTRIBUTES: usize = 21;
const CRC: usize = 17;

const INVALID_RECORD: i16 = 87;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
const INVALID_TXN_STATE: i16 = 48;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create(c: &mut RawClient, topic: &str, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)])
        .with_timeout_ms(10_000);
    let resp = c.request(&req, 7);
    assert_eq!(resp.topics[0].error_code, 0, "create {topic}");
}

/// A batch of `count` records with the producer fields set (transactional when `txn`).
fn batch(pid: i64, epoch: i16, seq: i32, count: usize, txn: bool, pad: usize) -> Vec<u8> {
    let wire: Vec<gregor::client::batch::ProducerRecord> = (0..count)
        .map(|i| gregor::client::batch::ProducerRecord {
            key: None,
            value: Some(Bytes::from(format!("{pid}-{seq}-{i}-{}", "x".repeat(pad)))),
            headers: Vec::new(),
        })
        .collect();
    let encoded = gregor::client::batch::encode_batch(
        &wire,
        common::now_ms(),
        kafka_protocol::records::Compression::None,
    )
    .expect("encode");
    let mut b = encoded.to_vec();
    b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&pid.to_be_bytes());
    b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&seq.to_be_bytes());
    if txn {
        let attrs = i16::from_be_bytes([b[ATTRIBUTES], b[ATTRIBUTES + 1]]) | 0x10;
        b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    }
    let crc = gregor::record::compute_crc(&b);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    gregor::record::validate_produced(&b).expect("test batch is valid");
    b
}

fn produce_req(topic: &str, batch: Vec<u8>, txn_id: Option<&str>) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(txn_id.map(|t| StrBytes::from_string(t.to_string()).into()))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])])
}

/// (error code, base offset) of producing `batch` to partition 0.
fn produce(c: &mut RawClient, topic: &str, batch: Vec<u8>, txn_id: Option<&str>) -> (i16, i64) {
    let resp = c.request(&produce_req(topic, batch, txn_id), 9);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn marker_req(topic: &str, pid: i64, epoch: i16, commit: bool, ce: i32) -> WriteTxnMarkersRequest {
    WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(ce)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(name(topic))
            .with_partition_indexes(vec![0])])])
}

/// The error code WriteTxnMarkers answers for partition 0 of `topic`.
fn write_marker(
    c: &mut RawClient,
    topic: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
    ce: i32,
) -> i16 {
    let resp = c.request(&marker_req(topic, pid, epoch, commit, ce), 1);
    let m = &resp.markers[0];
    assert_eq!(m.producer_id.0, pid);
    m.topics[0].partitions[0].error_code
}

fn fetch_req(topic: &str, offset: i64, isolation: i8) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(50)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])])
}

/// What a fetch from 0 shows: (HW, LSO, base offsets of the batches, aborted (pid, first)).
type Seen = (i64, i64, Vec<i64>, Option<Vec<(i64, i64)>>);

fn seen(resp: &FetchResponse) -> Seen {
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let records = p.records.clone().unwrap_or_default();
    let (headers, _) = common::walk_segment(&records);
    let aborted = p.aborted_transactions.as_ref().map(|a| {
        a.iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect()
    });
    (
        p.high_watermark,
        p.last_stable_offset,
        headers.iter().map(|h| h.base_offset).collect(),
        aborted,
    )
}

fn fetch(c: &mut RawClient, topic: &str, isolation: i8) -> Seen {
    seen(&c.request(&fetch_req(topic, 0, isolation), 12))
}

fn latest_req(topic: &str, isolation: i8) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])])
}

/// ListOffsets LATEST under `isolation`.
fn latest(c: &mut RawClient, topic: &str, isolation: i8) -> i64 {
    let req = latest_req(topic, isolation);
    let resp = c.request(&req, 5);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Batches of producer `pid` in every segment of `dir`.
fn batches_of(dir: &Path, pid: i64) -> usize {
    common::segment_files(dir)
        .iter()
        .map(|f| {
            let (headers, _) = common::walk_segment(&common::read_file(f));
            headers.iter().filter(|h| h.producer_id == pid).count()
        })
        .sum()
}

fn files_with(dir: &Path, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(ext))
        .collect();
    out.sort();
    out
}

#[test]
fn an_idempotent_retry_across_segment_rolls_and_restarts_keeps_its_offset() {
    let mut broker = Broker::start(&[]);
    let topic = "idem-roll";
    let mut c = broker.raw();
    create(&mut c, topic, &[("segment.bytes", "2048")]);
    let pid = 4242;
    let first = || batch(pid, 0, 0, 3, false, 10);
    assert_eq!(produce(&mut c, topic, first(), None), (0, 0));
    // Plain batches from others: the idempotent one ends up in an old segment.
    for i in 0..40 {
        let (err, _) = produce(&mut c, topic, batch(-1, -1, -1, 2, false, 100), None);
        assert_eq!(err, 0, "filler {i}");
    }
    let dir = broker.partition_dir(topic, 0);
    assert!(common::segment_files(&dir).len() >= 4, "segments rolled");
    assert!(
        !files_with(&dir, ".snapshot").is_empty(),
        "a snapshot at each roll"
    );
    drop(c);

    // A crash: the newest roll snapshot holds the producer, its batch is in the first segment.
    broker.kill();
    broker.start_again();
    let mut c = broker.raw();
    assert_eq!(
        produce(&mut c, topic, first(), None),
        (0, 0),
        "the retry after a crash gets its first offset"
    );
    assert_eq!(batches_of(&dir, pid), 1, "written once");
    drop(c);

    // A clean restart: the snapshot at the log end is all recovery needs.
    broker.restart();
    let mut c = broker.raw();
    assert_eq!(produce(&mut c, topic, first(), None), (0, 0));
    let (err, next) = produce(&mut c, topic, batch(pid, 0, 3, 1, false, 10), None);
    assert_eq!(err, 0);
    assert_eq!(
        produce(&mut c, topic, batch(pid, 0, 9, 1, false, 10), None).0,
        45
    );
    assert_eq!(
        batches_of(&dir, pid),
        2,
        "the retry not written, the next one once"
    );
    let (hw, _, _, _) = fetch(&mut c, topic, 0);
    assert_eq!(hw, next + 1);
}

#[test]
fn markers_end_transactions_for_read_committed_fetches_and_survive_restarts() {
    let mut broker = Broker::start(&[
        // Markers are written here by hand for producers no coordinator knows.
        ("transaction.partition.verification.enable", "false"),
    ]);
    let topic = "txn";
    let mut c = broker.raw();
    create(&mut c, topic, &[]);
    let (a, b, tid) = (1000, 2000, Some("tid"));
    assert_eq!(
        produce(&mut c, topic, batch(a, 0, 0, 3, true, 0), tid),
        (0, 0)
    );
    assert_eq!(
        produce(&mut c, topic, batch(b, 0, 0, 2, true, 0), tid),
        (0, 3)
    );
    assert_eq!(
        produce(&mut c, topic, batch(-1, -1, -1, 1, false, 0), None),
        (0, 5)
    );
    assert_eq!(
        fetch(&mut c, topic, 1),
        (6, 0, vec![], Some(vec![])),
        "A open at 0"
    );
    assert_eq!(latest(&mut c, topic, 1), 0);
    assert_eq!(latest(&mut c, topic, 0), 6);
    assert_eq!(
        produce(&mut c, topic, batch(a, 0, 3, 1, false, 0), None).0,
        INVALID_TXN_STATE,
        "a plain batch inside A's transaction"
    );

    assert_eq!(write_marker(&mut c, topic, a, 0, true, 5), 0, "commit A");
    assert_eq!(
        fetch(&mut c, topic, 1),
        (7, 3, vec![0], Some(vec![])),
        "B open at 3"
    );
    assert_eq!(latest(&mut c, topic, 1), 3);
    assert_eq!(
        write_marker(&mut c, topic, a, 0, false, 4),
        TRANSACTION_COORDINATOR_FENCED,
        "a marker from an older coordinator"
    );
    assert_eq!(write_marker(&mut c, topic, b, 0, false, 5), 0, "abort B");
    let all = vec![0, 3, 5, 6, 7];
    assert_eq!(
        fetch(&mut c, topic, 1),
        (8, 8, all.clone(), Some(vec![(b, 3)]))
    );
    assert_eq!(
        fetch(&mut c, topic, 0),
        (8, 8, all.clone(), None),
        "read_uncommitted"
    );
    assert_eq!(latest(&mut c, topic, 1), 8);
    // From its marker on the aborted transaction is still reported; past it, not.
    let marker = seen(&c.request(&fetch_req(topic, 7, 1), 12));
    assert_eq!(marker, (8, 8, vec![7], Some(vec![(b, 3)])));
    let past = seen(&c.request(&fetch_req(topic, 8, 1), 12));
    assert_eq!(past, (8, 8, vec![], Some(vec![])));
    assert_eq!(
        write_marker(&mut c, "no-such-topic", a, 0, true, 5),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    // A third producer leaves a transaction open across the restart.
    let cc = 3000;
    assert_eq!(
        produce(&mut c, topic, batch(cc, 2, 0, 1, true, 0), tid),
        (0, 8)
    );
    assert_eq!(
        produce(&mut c, topic, batch(cc, 1, 1, 1, true, 0), tid).0,
        INVALID_PRODUCER_EPOCH
    );
    drop(c);
    let dir = broker.partition_dir(topic, 0);
    broker.restart();
    assert_eq!(
        files_with(&dir, ".txnindex").len(),
        1,
        "{:?}",
        files_with(&dir, "")
    );
    assert!(!files_with(&dir, ".snapshot").is_empty());
    let mut c = broker.raw();
    let mut all9 = all.clone();
    all9.push(8);
    assert_eq!(fetch(&mut c, topic, 1), (9, 8, all, Some(vec![(b, 3)])));
    assert_eq!(
        latest(&mut c, topic, 1),
        8,
        "C still open after the restart"
    );
    let described = c.request(
        &DescribeProducersRequest::default().with_topics(vec![
            kafka_protocol::messages::describe_producers_request::TopicRequest::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![0]),
        ]),
        0,
    );
    let p = &described.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let states: Vec<(i64, i32, i64, i32)> = p
        .active_producers
        .iter()
        .map(|s| {
            (
                s.producer_id.0,
                s.producer_epoch,
                s.current_txn_start_offset,
                s.coordinator_epoch,
            )
        })
        .collect();
    assert_eq!(states, vec![(a, 0, -1, 5), (b, 0, -1, 5), (cc, 2, 8, -1)]);
    assert_eq!(write_marker(&mut c, topic, cc, 2, true, 6), 0);
    assert_eq!(
        fetch(&mut c, topic, 1),
        (10, 10, [all9, vec![9]].concat(), Some(vec![(b, 3)]))
    );

    // A crash rebuilds the same from the log and the snapshots.
    drop(c);
    broker.kill();
    broker.start_again();
    let mut c = broker.raw();
    let after = fetch(&mut c, topic, 1);
    assert_eq!((after.0, after.1, after.3), (10, 10, Some(vec![(b, 3)])));
}

#[test]
fn a_control_batch_from_a_client_is_refused_and_the_broker_keeps_serving() {
    let broker = Broker::start(&[]);
    let topic = "ctl";
    let mut c = broker.raw();
    create(&mut c, topic, &[]);
    let marker = gregor::producer::marker::build(
        77,
        0,
        gregor::producer::Marker {
            commit: true,
            coordinator_epoch: 0,
        },
        common::now_ms(),
    );
    assert_eq!(
        produce(&mut c, topic, marker, Some("tid")).0,
        INVALID_RECORD
    );
    assert_eq!(
        produce(&mut c, topic, batch(-1, -1, -1, 2, false, 0), None),
        (0, 0)
    );
    let (hw, lso, batches, _) = fetch(&mut c, topic, 1);
    assert_eq!((hw, lso, batches), (2, 2, vec![0]));
}

#[test]
fn a_new_leader_answers_a_retried_idempotent_batch_with_its_first_offset() {
    const SECS: fn(u64) -> Duration = Duration::from_secs;
    let fast: &[(&str, &str)] = &[
        ("broker.session.timeout.ms", "3000"),
        ("broker.heartbeat.interval.ms", "500"),
        ("replica.lag.time.max.ms", "3000"),
    ];
    let mut cl = Cluster::start(3, fast);
    let topic = "idem-failover";
    create_topic_rf(
        &cl.admin_config(),
        topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    );
    cl.wait_isr_all(topic, 1, 3, SECS(30));
    let leader = cl.node_of_leader(topic, 0).expect("a leader");
    let pid = 777;
    let send = |cl: &Cluster, node, b: Vec<u8>| {
        let r = raw_request(
            cl.node(node).addr(),
            &produce_req(topic, b, None),
            9,
            SECS(10),
        )
        .expect("produce answered");
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    assert_eq!(send(&cl, leader, batch(-1, -1, -1, 2, false, 0)), (0, 0));
    let retried = || batch(pid, 0, 0, 3, false, 0);
    assert_eq!(send(&cl, leader, retried()), (0, 2));
    cl.kill(leader);
    let new = cl.wait_leader_moved(topic, 0, leader, SECS(20));
    let answered = common::wait_until(SECS(20), || send(&cl, new, retried()) == (0, 2));
    assert!(answered, "the new leader answers the retry with offset 2");
    assert_eq!(
        send(&cl, new, batch(pid, 0, 3, 1, false, 0)),
        (0, 5),
        "nothing written twice"
    );
}
