//! Tests only: a broker on 127.0.0.1 that plays the transaction coordinator and the leader of
//! every partition, and checks what a transactional producer sends it: every batch is
//! transactional with the producer id and latest epoch it handed out, and its partition was
//! added to the open transaction (else a violation is logged). A batch whose base sequence does
//! not follow the previous batch of its partition is answered OUT_OF_ORDER_SEQUENCE_NUMBER, as
//! Kafka does; each InitProducerId bumps the epoch and starts sequences again. It answers only
//! the APIs the producer side uses (ApiVersions, FindCoordinator, InitProducerId,
//! AddPartitionsToTxn, EndTxn, Produce).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use gregor::record::BatchHeader;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ApiVersionsResponse,
    EndTxnRequest, EndTxnResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub const PRODUCER_ID: i64 = 9;
/// The epoch of the first InitProducerId; each later one adds 1.
pub const PRODUCER_EPOCH: i16 = 2;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// Errors the fake answers on purpose.
#[derive(Debug, Clone, Copy, Default)]
pub struct Script {
    /// The first AddPartitionsToTxn gets CONCURRENT_TRANSACTIONS, the first EndTxn
    /// NOT_COORDINATOR.
    pub flaky_coordinator: bool,
    /// The first batch for this partition gets NOT_LEADER_OR_FOLLOWER.
    pub fail_first_batch_of: Option<i32>,
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every request as (api, version).
    pub requests: Vec<(ApiKey, i16)>,
    /// Every EndTxn: (commit, records produced in the transaction, partitions added).
    pub ended: Vec<(bool, u64, usize)>,
    /// Everything the producer got wrong.
    pub violations: Vec<String>,
    added: BTreeSet<i32>,
    records: u64,
    next_sequence: HashMap<i32, i32>,
    epoch: i16,
    script: Script,
}

impl Seen {
    pub fn count(&self, api: ApiKey) -> usize {
        self.requests.iter().filter(|(a, _)| *a == api).count()
    }
}

pub struct Fake {
    pub addr: String,
    pub seen: Arc<Mutex<Seen>>,
}

pub fn start(script: Script) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen {
        epoch: PRODUCER_EPOCH - 1,
        script,
        ..Seen::default()
    }));
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (stream, seen) = (stream.unwrap(), shared.clone());
            std::thread::spawn(move || serve(stream, port, &seen));
        }
    });
    Fake {
        addr: format!("127.0.0.1:{port}"),
        seen,
    }
}

fn serve(mut stream: TcpStream, port: u16, seen: &Mutex<Seen>) {
    while let Ok(frame) = crate::wire::read_frame(&mut stream) {
        let key = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).unwrap();
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let mut body = frame.clone();
        let header = RequestHeader::decode(&mut body, key.request_header_version(version));
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(header.unwrap().correlation_id)
            .encode(&mut out, key.response_header_version(version))
            .unwrap();
        let mut s = seen.lock().unwrap();
        s.requests.push((key, version));
        let fail = s.script.flaky_coordinator && s.count(key) == 1;
        answer(&mut s, key, version, body, (port, fail), &mut out);
        drop(s);
        stream.write_all(&(out.len() as i32).to_be_bytes()).unwrap();
        stream.write_all(&out).unwrap();
    }
}

/// Encodes the answer to one request into `out`; `(port, fail)`: the coordinator's port and
/// whether to answer with the scripted error.
fn answer(s: &mut Seen, key: ApiKey, v: i16, mut body: Bytes, at: (u16, bool), out: &mut BytesMut) {
    let (port, fail) = at;
    let encoded = match key {
        ApiKey::ApiVersions => {
            let api = |k: ApiKey, max: i16| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_max_version(max)
            };
            ApiVersionsResponse::default()
                .with_api_keys(vec![
                    api(ApiKey::ApiVersions, 3),
                    api(ApiKey::Produce, 12),
                    api(ApiKey::FindCoordinator, 6),
                    api(ApiKey::InitProducerId, 5),
                    api(ApiKey::AddPartitionsToTxn, 5),
                    api(ApiKey::EndTxn, 5),
                ])
                .encode(out, v)
        }
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::decode(&mut body, v).unwrap();
            if req.key_type != crate::txn::KEY_TYPE_TRANSACTION {
                s.violations
                    .push(format!("FindCoordinator key type {}", req.key_type));
            }
            FindCoordinatorResponse::default()
                .with_coordinators(vec![Coordinator::default()
                    .with_key(req.coordinator_keys[0].clone())
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(i32::from(port))])
                .encode(out, v)
        }
        ApiKey::InitProducerId => {
            s.epoch += 1;
            s.next_sequence.clear();
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(PRODUCER_ID))
                .with_producer_epoch(s.epoch)
                .encode(out, v)
        }
        ApiKey::AddPartitionsToTxn => {
            let req = AddPartitionsToTxnRequest::decode(&mut body, v).unwrap();
            let code = if fail { 51 } else { 0 };
            let mut results = Vec::new();
            for t in &req.v3_and_below_topics {
                for p in &t.partitions {
                    if code == 0 {
                        s.added.insert(*p);
                    }
                    results.push(
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(*p)
                            .with_partition_error_code(code),
                    );
                }
            }
            let name = req.v3_and_below_topics[0].name.clone();
            AddPartitionsToTxnResponse::default()
                .with_results_by_topic_v3_and_below(vec![AddPartitionsToTxnTopicResult::default()
                    .with_name(name)
                    .with_results_by_partition(results)])
                .encode(out, v)
        }
        ApiKey::EndTxn => {
            let req = EndTxnRequest::decode(&mut body, v).unwrap();
            let code = if fail { 16 } else { 0 };
            if code == 0 {
                let added = std::mem::take(&mut s.added).len();
                let records = std::mem::take(&mut s.records);
                s.ended.push((req.committed, records, added));
            }
            EndTxnResponse::default()
                .with_error_code(code)
                .encode(out, v)
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut body, v).unwrap();
            produce(s, &req).encode(out, v)
        }
        other => panic!("the fake broker does not answer {other:?}"),
    };
    encoded.unwrap();
}

fn produce(s: &mut Seen, req: &ProduceRequest) -> ProduceResponse {
    if req.transactional_id.is_none() {
        s.violations
            .push("Produce without a transactional id".into());
    }
    let mut responses = Vec::new();
    for t in &req.topic_data {
        let mut parts = Vec::new();
        for p in &t.partition_data {
            let records = p.records.clone().unwrap_or_default();
            let code = check_batch(s, p.index, &records);
            parts.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_error_code(code),
            );
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(TopicName(t.name.0.clone()))
                .with_partition_responses(parts),
        );
    }
    ProduceResponse::default().with_responses(responses)
}

/// Checks one batch and takes it; returns the error code to answer.
fn check_batch(s: &mut Seen, partition: i32, records: &[u8]) -> i16 {
    let h = match BatchHeader::parse(records) {
        Ok(h) => h,
        Err(e) => {
            s.violations.push(format!("partition {partition}: {e}"));
            return -1;
        }
    };
    if !s.added.contains(&partition) {
        s.violations.push(format!(
            "batch for partition {partition} before it was added"
        ));
    }
    if !h.is_transactional() || h.producer_id != PRODUCER_ID || h.producer_epoch != s.epoch {
        s.violations
            .push(format!("partition {partition}: header {h:?}"));
    }
    if s.script.fail_first_batch_of == Some(partition) {
        s.script.fail_first_batch_of = None;
        return NOT_LEADER_OR_FOLLOWER;
    }
    let want = s.next_sequence.get(&partition).copied().unwrap_or(0);
    if h.base_sequence != want {
        return OUT_OF_ORDER_SEQUENCE_NUMBER;
    }
    s.next_sequence.insert(partition, want + h.record_count);
    s.records += h.record_count as u64;
    0
}
