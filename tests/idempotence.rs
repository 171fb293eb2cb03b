//! Idempotent producers: InitProducerId, retries answered with their first offsets, gaps and
//! stale epochs refused, and librdkafka's idempotent producer delivering exactly once.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::clients::{self, TestRecord};
use common::{Broker, RawClient};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const CRC: usize = 17;

fn create(c: &mut RawClient, topic: &str) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(10_000);
    let resp = c.request(&req, 7);
    assert_eq!(resp.topics[0].error_code, 0);
}

/// A valid batch of `count` records stamped with the producer fields (CRC recomputed).
fn idempotent_batch(pid: i64, epoch: i16, seq: i32, count: usize) -> Vec<u8> {
    let wire: Vec<gregor::client::batch::ProducerRecord> = (0..count)
        .map(|i| gregor::client::batch::ProducerRecord {
            key: None,
            value: Some(Bytes::from(format!("s{seq}-{i}"))),
            headers: Vec::new(),
        })
        .collect();
    let batch = gregor::client::batch::encode_batch(
        &wire,
        common::now_ms(),
        kafka_protocol::records::Compression::None,
    )
    .expect("encode");
    let mut b = batch.to_vec();
    b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&pid.to_be_bytes());
    b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&seq.to_be_bytes());
    let crc = gregor::record::compute_crc(&b);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    gregor::record::validate_produced(&b).expect("test batch is valid");
    b
}

/// (error code, base offset) of producing `batch` to partition 0.
fn produce(c: &mut RawClient, topic: &str, batch: Vec<u8>) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    let resp = c.request(&req, 9);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn retries_get_their_first_offsets_and_gaps_are_refused() {
    let broker = Broker::start(&[]);
    let mut c = broker.raw();
    create(&mut c, "idem");
    let init = c.request(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
        4,
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);
    assert_eq!(epoch, 0);
    let second = c.request(
        &InitProducerIdRequest::default().with_transactional_id(None),
        4,
    );
    assert_ne!(second.producer_id.0, pid, "every producer gets its own id");

    assert_eq!(
        produce(&mut c, "idem", idempotent_batch(pid, epoch, 0, 3)),
        (0, 0)
    );
    // The same batch again (a retry after a lost answer): same offsets, nothing appended.
    assert_eq!(
        produce(&mut c, "idem", idempotent_batch(pid, epoch, 0, 3)),
        (0, 0)
    );
    // A gap in the sequence.
    assert_eq!(
        produce(&mut c, "idem", idempotent_batch(pid, epoch, 5, 1)).0,
        45
    );
    assert_eq!(
        produce(&mut c, "idem", idempotent_batch(pid, epoch, 3, 2)),
        (0, 3)
    );
    // An epoch older than the one the partition has seen.
    let bumped = c.request(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        4,
    );
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (pid, epoch + 1)
    );
    assert_eq!(
        produce(&mut c, "idem", idempotent_batch(pid, epoch + 1, 0, 1)),
        (0, 5)
    );
    assert_eq!(
        produce(&mut c, "idem", idempotent_batch(pid, epoch, 5, 1)).0,
        47
    );
    // A transactional id is the transaction coordinator's: it answers with its own producer
    // id (see tests/transactions_raw.rs), never one of the idempotent producer's epochs.
    let txn = c.request(
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(StrBytes::from_static_str("t").into()))
            .with_transaction_timeout_ms(60_000),
        4,
    );
    if txn.error_code == 0 {
        assert_ne!(txn.producer_id.0, pid);
        assert_eq!(txn.producer_epoch, 0);
    } else {
        // The coordinator may still be loading right after start-up.
        assert!([14, 15, 16].contains(&txn.error_code), "{}", txn.error_code);
    }

    let (low, high) = clients::watermarks(&broker.consumer_config(), "idem", 0);
    assert_eq!(
        (low, high),
        (0, 6),
        "six records stored, the retry not among them"
    );
}

#[test]
fn librdkafka_idempotent_producer_delivers_exactly_once() {
    let broker = Broker::start(&[]);
    let topic = "exactly-once";
    clients::create_topic(&broker.admin_config(), topic, 3, &[]);
    let mut cfg = broker.producer_config();
    cfg.set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5");
    let records: Vec<TestRecord> = (0..20_000)
        .map(|i| TestRecord::value(format!("v{i}")).in_partition(i % 3))
        .collect();
    let delivered = clients::produce(&cfg, topic, &records);
    assert_eq!(delivered.len(), records.len());
    let got = clients::consume_all(
        &broker.consumer_config(),
        topic,
        3,
        records.len(),
        Duration::from_secs(60),
    );
    assert_eq!(got.len(), records.len());
    let values: HashSet<Vec<u8>> = got
        .iter()
        .map(|g| g.value.clone().unwrap_or_default())
        .collect();
    assert_eq!(values.len(), records.len(), "no record twice");
    clients::assert_same(&records, &delivered, &got);
}

#[test]
fn librdkafka_transactional_producers_initialise_and_fence_each_other() {
    use rdkafka::producer::{BaseProducer, Producer};
    let broker = Broker::start(&[]);
    let mut cfg = broker.producer_config();
    cfg.set("transactional.id", "compat-txn");
    let first: BaseProducer = cfg.create().expect("producer");
    first
        .init_transactions(Duration::from_secs(30))
        .expect("the coordinator gives the first instance its producer id");
    let second: BaseProducer = cfg.create().expect("producer");
    second
        .init_transactions(Duration::from_secs(30))
        .expect("a second instance takes over the transactional id");
    // (That the first instance is fenced is checked on the wire in tests/transactions_raw.rs:
    // librdkafka ends an empty transaction without asking the coordinator.)
    second
        .begin_transaction()
        .expect("the new instance can begin");
    second
        .abort_transaction(Duration::from_secs(10))
        .expect("and abort its empty transaction");
}
