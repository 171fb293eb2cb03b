//! Bad input from the network gets the answer a Kafka 4 broker gives, and never harms anyone else:
//! a client connected before the bad one is still served afterwards, and every record
//! acknowledged before is still there.
//!
//! Error codes are Kafka's (clients/.../protocol/Errors.java); where the broker answers instead of
//! closing, the cases follow Kafka's KafkaApis / ProduceRequest.validateRecords / UnifiedLog:
//! - CRC mismatch: LogValidator -> CorruptRecordException -> CORRUPT_MESSAGE (2)
//! - magic != 2 in Produce v3+: ProduceRequest.validateRecords -> InvalidRecordException ->
//!   INVALID_RECORD (87)
//! - batch > max.message.bytes: RecordTooLargeException -> MESSAGE_TOO_LARGE (10)
//! - unframeable / unparsable / unknown-API requests: the connection is closed.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Encodable, StrBytes};

use common::clients::{consume_all, watermarks};
use common::{frame, Broker, RawClient};

const NONE: i16 = 0;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_RECORD: i16 = 87;

const TOPIC: &str = "good";
const REQUEST_MAX_BYTES: usize = 200_000;
const MESSAGE_MAX_BYTES: usize = 20_000;
const PRODUCE_VERSION: i16 = 9;

fn start() -> Broker {
    let broker = Broker::start(&[
        ("auto.create.topics.enable", "false"),
        ("socket.request.max.bytes", "200000"),
        ("message.max.bytes", "20000"),
    ]);
    let mut c = broker.raw();
    let resp = create_topics(&mut c, &[(TOPIC, 1)]);
    assert_eq!(resp.topics[0].error_code, NONE, "create {TOPIC}");
    broker
}

fn create_topics(c: &mut RawClient, topics: &[(&str, i32)]) -> CreateTopicsResponse {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(-1)
                })
                .collect(),
        );
    let resp = c.request(&req, 5);
    assert_eq!(resp.topics.len(), topics.len(), "one result per topic");
    resp
}

/// A valid RecordBatch v2 holding `values`, encoded by kafka-protocol.
fn batch(values: &[Vec<u8>]) -> Vec<u8> {
    let b = common::plain_batch(values).to_vec();
    let h = gregor::record::validate_produced(&b).expect("test batch is valid");
    assert_eq!(
        (h.producer_id, h.base_sequence),
        (-1, -1),
        "a plain, non-idempotent batch"
    );
    b
}

fn small_batch(tag: &str) -> Vec<u8> {
    batch(&[
        format!("{tag}-1").into_bytes(),
        format!("{tag}-2").into_bytes(),
    ])
}

fn produce_request(topic: &str, partition: i32, records: Vec<u8>) -> ProduceRequest {
    common::produce_request(topic, partition, -1, Bytes::from(records))
}

fn produce(
    c: &mut RawClient,
    topic: &str,
    partition: i32,
    records: Vec<u8>,
) -> PartitionProduceResponse {
    let resp = c.request(&produce_request(topic, partition, records), PRODUCE_VERSION);
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].partition_responses.len(), 1);
    resp.responses[0].partition_responses[0].clone()
}

/// Runs one bad-input case between two good produces on a connection opened before it.
/// Returns the broker for further checks; asserts nothing acknowledged was lost.
struct Harness {
    broker: Broker,
    bystander: RawClient,
    acked: i64,
}

impl Harness {
    fn new() -> Harness {
        let broker = start();
        let mut h = Harness {
            bystander: broker.raw(),
            broker,
            acked: 0,
        };
        h.bystander.assert_served("before");
        h.produce_good("before");
        h
    }

    fn produce_good(&mut self, tag: &str) {
        let r = produce(&mut self.bystander, TOPIC, 0, small_batch(tag));
        assert_eq!(r.error_code, NONE, "{tag}: good produce");
        assert_eq!(
            r.base_offset, self.acked,
            "{tag}: base offset of a good produce"
        );
        self.acked += 2;
    }

    /// The bystander still works and nothing acknowledged is lost.
    fn check(mut self, what: &str) {
        // Give a crash a moment to happen, so it is reported as a crash.
        std::thread::sleep(Duration::from_millis(100));
        self.broker.assert_alive(what);
        self.bystander.assert_served(what);
        self.produce_good(what);
        let (low, high) = watermarks(&self.broker.consumer_config(), TOPIC, 0);
        assert_eq!((low, high), (0, self.acked), "{what}: watermarks");
        let got = consume_all(
            &self.broker.consumer_config(),
            TOPIC,
            1,
            self.acked as usize,
            Duration::from_secs(30),
        );
        assert_eq!(got.len() as i64, self.acked);
        // A fresh connection is served too.
        self.broker.raw().assert_served(what);
    }
}

fn header_bytes(api_key: i16, version: i16, correlation_id: i32) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bad-input")));
    let mut buf = BytesMut::new();
    encode_request_header_into_buffer(&mut buf, &header).expect("encode header");
    buf
}

#[test]
fn oversized_frame_closes_the_connection() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    let size = (REQUEST_MAX_BYTES + 1) as i32;
    let mut bytes = size.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    // The broker may close before reading everything; a failed write is fine too.
    let _ = bad.send_bytes(&bytes);
    bad.expect_closed("frame larger than socket.request.max.bytes");
    h.check("after an oversized frame");
}

#[test]
fn negative_frame_size_closes_the_connection() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    let _ = bad.send_bytes(&(-5i32).to_be_bytes());
    bad.expect_closed("negative frame size");
    h.check("after a negative frame size");
}

#[test]
fn garbage_body_closes_the_connection() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    // A Produce v9 header followed by bytes that cannot be a Produce body.
    let mut body = header_bytes(ApiKey::Produce as i16, PRODUCE_VERSION, 7);
    body.put_slice(&[0xff; 40]);
    bad.send_bytes(&frame(&body)).unwrap();
    bad.expect_closed("garbage request body");
    h.check("after a garbage body");
}

#[test]
fn truncated_header_closes_the_connection() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    bad.send_bytes(&frame(&[0, 18, 0])).unwrap();
    bad.expect_closed("truncated request header");
    h.check("after a truncated header");
}

#[test]
fn array_length_beyond_the_frame_closes_the_connection() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    // Produce v3 (not flexible): transactional id null, acks, timeout, then a topic array that
    // claims two billion entries in a 30-byte frame.
    let mut body = header_bytes(ApiKey::Produce as i16, 3, 8);
    body.put_i16(-1);
    body.put_i16(1);
    body.put_i32(1000);
    body.put_i32(i32::MAX);
    body.put_slice(&[0u8; 8]);
    bad.send_bytes(&frame(&body)).unwrap();
    bad.expect_closed("array length beyond the frame");
    h.check("after an array length beyond the frame");
}

#[test]
fn unknown_api_key_closes_the_connection() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    // Header v1 written by hand: kafka-protocol refuses to encode an unknown key.
    let mut body = BytesMut::new();
    body.put_i16(12_345);
    body.put_i16(0);
    body.put_i32(9);
    body.put_i16(-1);
    bad.send_bytes(&frame(&body)).unwrap();
    bad.expect_closed("unknown API key");
    h.check("after an unknown API key");
}

#[test]
fn an_unsupported_version_of_another_api_closes_the_connection() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    // Metadata v99: Kafka cannot parse the header of a version it does not know, and closes.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(99);
    body.put_i32(11);
    body.put_i16(-1);
    bad.send_bytes(&frame(&body)).unwrap();
    bad.expect_closed("Metadata v99");
    h.check("after Metadata v99");
}

#[test]
fn api_versions_with_an_unsupported_version_gets_a_v0_error_response() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    // ApiVersions v99: header v2 (as for v3+), then a v3 body the broker cannot know the shape of.
    let mut body = header_bytes(ApiKey::ApiVersions as i16, 99, 42);
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("bad-input"))
        .with_client_software_version(StrBytes::from_static_str("99"))
        .encode(&mut body, 3)
        .unwrap();
    bad.send_bytes(&frame(&body)).unwrap();
    let resp = bad
        .read_frame()
        .expect("an ApiVersions v0 response, not a closed connection");
    // Response header v0 (correlation id only), body v0.
    let mut buf = Bytes::from(resp);
    let corr = i32::from_be_bytes(buf.split_to(4).as_ref().try_into().unwrap());
    assert_eq!(corr, 42, "correlation id");
    let r = ApiVersionsResponse::decode(&mut buf, 0).expect("decodes as ApiVersions v0");
    assert_eq!(r.error_code, UNSUPPORTED_VERSION);
    let av = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("the error response lists ApiVersions' own range");
    assert_eq!(av.min_version, 0);
    assert!(av.max_version >= 3, "ApiVersions max {}", av.max_version);
    // Kafka keeps the connection open: the client retries with a version it now knows.
    bad.assert_served("same connection after UNSUPPORTED_VERSION");
    h.check("after ApiVersions v99");
}

#[test]
fn produce_with_a_flipped_crc_is_corrupt_message() {
    let mut h = Harness::new();
    let mut bad = h.broker.raw();
    let mut b = small_batch("crc");
    b[17] ^= 0x01; // first CRC byte
    let r = produce(&mut bad, TOPIC, 0, b);
    assert_eq!(r.error_code, CORRUPT_MESSAGE, "flipped CRC");
    // A flipped payload byte is the same error.
    let mut b = small_batch("payload");
    let n = b.len() - 2;
    b[n] ^= 0x40;
    let r = produce(&mut bad, TOPIC, 0, b);
    assert_eq!(r.error_code, CORRUPT_MESSAGE, "flipped payload byte");
    bad.assert_served("the producing connection stays open");
    h.produce_good("after corrupt batches");
    h.check("after corrupt batches");
}

#[test]
fn produce_with_magic_1_is_invalid_record() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    let mut b = small_batch("magic");
    b[16] = 1; // magic; not covered by the CRC
    let r = produce(&mut bad, TOPIC, 0, b);
    assert_eq!(
        r.error_code, INVALID_RECORD,
        "magic 1 in Produce v{PRODUCE_VERSION} (Kafka: ProduceRequest.validateRecords)"
    );
    h.check("after a magic-1 batch");
}

#[test]
fn produce_of_a_batch_over_message_max_bytes_is_message_too_large() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    let b = batch(&[vec![b'x'; MESSAGE_MAX_BYTES + 100]]);
    assert!(b.len() < REQUEST_MAX_BYTES);
    let r = produce(&mut bad, TOPIC, 0, b);
    assert_eq!(r.error_code, MESSAGE_TOO_LARGE);
    h.check("after a too-large batch");
}

#[test]
fn produce_to_an_unknown_topic_or_partition() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    let r = produce(&mut bad, "no-such-topic", 0, small_batch("unknown"));
    assert_eq!(
        r.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "unknown topic, auto-create off"
    );
    let r = produce(&mut bad, TOPIC, 7, small_batch("unknown"));
    assert_eq!(
        r.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "partition 7 of a 1-partition topic"
    );
    assert!(
        !h.broker.partition_dir("no-such-topic", 0).exists(),
        "no log dir for a topic that was not created"
    );
    h.check("after produce to unknown topics");
}

#[test]
fn create_topics_with_invalid_names() {
    let h = Harness::new();
    let mut c = h.broker.raw();
    let long = "x".repeat(250);
    for name in ["bad/name", "..", ".", "", "space name", "ü", long.as_str()] {
        let resp = create_topics(&mut c, &[(name, 1)]);
        assert_eq!(
            resp.topics[0].error_code, INVALID_TOPIC_EXCEPTION,
            "CreateTopics {name:?}"
        );
    }
    // 249 characters is the longest legal name.
    let ok = "y".repeat(249);
    let resp = create_topics(&mut c, &[(ok.as_str(), 1)]);
    assert_eq!(resp.topics[0].error_code, NONE, "249-character name");
    h.check("after invalid topic names");
}

#[test]
fn create_topics_with_invalid_partition_counts() {
    let h = Harness::new();
    let mut c = h.broker.raw();
    for n in [0, -2, -100] {
        let resp = create_topics(&mut c, &[("parts", n)]);
        assert_eq!(
            resp.topics[0].error_code, INVALID_PARTITIONS,
            "{n} partitions"
        );
    }
    // -1 asks for the broker default (num.partitions).
    let resp = create_topics(&mut c, &[("parts", -1)]);
    assert_eq!(
        resp.topics[0].error_code, NONE,
        "-1 partitions = broker default"
    );
    assert_eq!(
        resp.topics[0].num_partitions, 1,
        "broker default num.partitions"
    );
    h.check("after invalid partition counts");
}

#[test]
fn duplicate_create_topics_is_topic_already_exists() {
    let h = Harness::new();
    let mut c = h.broker.raw();
    let resp = create_topics(&mut c, &[("dup", 2)]);
    assert_eq!(resp.topics[0].error_code, NONE);
    let resp = create_topics(&mut c, &[("dup", 2)]);
    assert_eq!(resp.topics[0].error_code, TOPIC_ALREADY_EXISTS);
    let resp = create_topics(&mut c, &[(TOPIC, 3)]);
    assert_eq!(resp.topics[0].error_code, TOPIC_ALREADY_EXISTS);
    h.check("after duplicate CreateTopics");
}

/// Produce v2 is below Kafka 4's floor (v3): the broker answers UNSUPPORTED_VERSION or closes.
#[test]
fn produce_v2_is_unsupported() {
    let h = Harness::new();
    let mut bad = h.broker.raw();
    // Produce v2 by hand (kafka-protocol starts at v3): acks, timeout, [topic, [partition, set]].
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Produce as i16);
    body.put_i16(2);
    body.put_i32(77);
    body.put_i16(-1); // client id null
    body.put_i16(1); // acks
    body.put_i32(5_000); // timeout
    body.put_i32(1); // one topic
    body.put_i16(TOPIC.len() as i16);
    body.put_slice(TOPIC.as_bytes());
    body.put_i32(1); // one partition
    body.put_i32(0);
    let set = small_batch("v2");
    body.put_i32(set.len() as i32);
    body.put_slice(&set);
    bad.send_bytes(&frame(&body)).unwrap();
    match bad.read_frame() {
        Err(_) => {} // closed: what Kafka 4 does for a removed version
        Ok(resp) => {
            // Produce v2 response: header v0, [topic, [partition, error, base, append time]].
            let mut b = Bytes::from(resp);
            let corr = i32::from_be_bytes(b.split_to(4).as_ref().try_into().unwrap());
            assert_eq!(corr, 77);
            let topics = i32::from_be_bytes(b.split_to(4).as_ref().try_into().unwrap());
            assert_eq!(topics, 1);
            let name_len = i16::from_be_bytes(b.split_to(2).as_ref().try_into().unwrap());
            let _ = b.split_to(name_len as usize);
            let _parts = b.split_to(4);
            let _partition = b.split_to(4);
            let error = i16::from_be_bytes(b.split_to(2).as_ref().try_into().unwrap());
            assert_eq!(
                error, UNSUPPORTED_VERSION,
                "Produce v2 answered with error {error}"
            );
        }
    }
    h.check("after Produce v2");
}

/// Several bad inputs on one connection after another from many clients: the broker is still up.
#[test]
fn a_burst_of_bad_connections_does_not_hurt_the_broker() {
    let h = Harness::new();
    for i in 0..50u8 {
        let mut bad = h.broker.raw();
        let junk: Vec<u8> = (0..64u8)
            .map(|j| j.wrapping_mul(31).wrapping_add(i))
            .collect();
        let _ = bad.send_bytes(&junk);
        drop(bad);
    }
    std::thread::sleep(Duration::from_millis(200));
    h.check("after 50 junk connections");
}
