//! The defects a new user of another client hits first, each checked the way Kafka 4 answers
//! the same bytes: trailing request bytes ignored, every Kafka topic config accepted and
//! honored (compression.type recompresses, min.insync.replicas, timestamp bounds), ListGroups
//! type filters, authorized-operation bit fields, and topic names that collide.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DescribeGroupsRequest, GroupId, ListGroupsRequest,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::clients::{self, TestRecord};
use common::{frame, Broker};

const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_CONFIG: i16 = 40;
const NOT_ENOUGH_REPLICAS: i16 = 19;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn create(broker: &Broker, name: &str, configs: &[(&str, &str)]) -> CreateTopicsResponse {
    let topic = CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(1)
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        );
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![topic]);
    broker.raw().request(&req, 7)
}

#[test]
fn librdkafka_2_12_lists_all_topics() {
    // The rdkafka crate vendors librdkafka 2.12, whose "all topics" Metadata v12 request carries
    // bytes after the fields of v12; Kafka ignores them, and so must we.
    let broker = Broker::start(&[]);
    for t in ["listed-a", "listed-b"] {
        clients::create_topic(&broker.admin_config(), t, 2, &[]);
    }
    let consumer: BaseConsumer = broker.consumer_config().create().expect("consumer");
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("list all topics");
    let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    for t in ["listed-a", "listed-b"] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
}

#[test]
fn bytes_after_a_requests_fields_are_ignored_and_short_bodies_close() {
    let broker = Broker::start(&[]);
    clients::create_topic(&broker.admin_config(), "trailing", 1, &[]);
    let all_topics = MetadataRequest::default().with_topics(None);
    for version in [1i16, 9, 12] {
        let mut bytes = common::encode_request(&all_topics, version, 41);
        bytes.extend_from_slice(&[0, 0, 0]);
        let len = (bytes.len() - 4) as i32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        let mut c = broker.raw();
        c.send_bytes(&bytes).unwrap();
        let body = c.read_frame().expect("answered despite trailing bytes");
        let (corr, resp) = common::decode_response::<MetadataRequest>(&body, version).unwrap();
        assert_eq!(corr, 41);
        let resp: MetadataResponse = resp;
        assert!(
            resp.topics
                .iter()
                .any(|t| t.name.as_ref().map(|n| n.as_str()) == Some("trailing")),
            "v{version}"
        );
        c.assert_served("after trailing bytes");
    }
    // A body too short for its fields is still malformed: the connection closes, others live.
    let mut other = broker.raw();
    let mut short = BytesMut::new();
    let whole = common::encode_request(&all_topics, 12, 42);
    short.put_slice(&whole[4..whole.len() - 2]);
    let mut c = broker.raw();
    c.send_bytes(&frame(&short)).unwrap();
    c.expect_closed("Metadata v12 cut short");
    other.assert_served("a client connected before the bad one");
}

/// Every topic config Kafka 4 defines, each at a valid value other than its default.
const EVERY_TOPIC_CONFIG: &[(&str, &str)] = &[
    ("cleanup.policy", "compact,delete"),
    ("compression.gzip.level", "5"),
    ("compression.lz4.level", "3"),
    ("compression.type", "zstd"),
    ("compression.zstd.level", "7"),
    ("delete.retention.ms", "1000"),
    ("file.delete.delay.ms", "1000"),
    ("flush.messages", "100000"),
    ("flush.ms", "100000"),
    ("follower.replication.throttled.replicas", "*"),
    ("index.interval.bytes", "8192"),
    ("leader.replication.throttled.replicas", "0:1"),
    ("local.retention.bytes", "-2"),
    ("local.retention.ms", "-2"),
    ("max.compaction.lag.ms", "100000"),
    ("max.message.bytes", "2000000"),
    ("message.timestamp.after.max.ms", "7200000"),
    ("message.timestamp.before.max.ms", "86400000"),
    ("message.timestamp.type", "LogAppendTime"),
    ("min.cleanable.dirty.ratio", "0.25"),
    ("min.compaction.lag.ms", "10"),
    ("min.insync.replicas", "1"),
    ("preallocate", "true"),
    ("remote.log.copy.disable", "false"),
    ("remote.log.delete.on.disable", "false"),
    ("remote.storage.enable", "false"),
    ("retention.bytes", "1000000000"),
    ("retention.ms", "100000000"),
    ("segment.bytes", "100000000"),
    ("segment.index.bytes", "1000000"),
    ("segment.jitter.ms", "1000"),
    ("segment.ms", "100000000"),
    ("unclean.leader.election.enable", "true"),
];

#[test]
fn every_kafka_topic_config_is_accepted_and_described() {
    let broker = Broker::start(&[]);
    let resp = create(&broker, "configured", EVERY_TOPIC_CONFIG);
    let t = &resp.topics[0];
    assert_eq!(t.error_code, 0, "{:?}", t.error_message);
    let mut client = gregor::client::Client::connect(&broker.bootstrap(), "t").unwrap();
    let described = client.describe_topic_configs("configured").unwrap();
    for (name, value) in EVERY_TOPIC_CONFIG {
        let e = described
            .iter()
            .find(|e| e.name == *name)
            .unwrap_or_else(|| panic!("{name} not described"));
        assert_eq!(e.value.as_deref(), Some(*value), "{name}");
    }
    // Refused only as Kafka refuses, with Kafka's messages.
    let refusals: &[(&str, &str, &str)] = &[
        (
            "no.such.config",
            "1",
            "Unknown topic config name: no.such.config",
        ),
        (
            "compression.type",
            "brotli",
            "Invalid value brotli for configuration compression.type: String must be one of: \
             uncompressed, zstd, lz4, snappy, gzip, producer",
        ),
        (
            "retention.ms",
            "soon",
            "Invalid value soon for configuration retention.ms: Not a number of type LONG",
        ),
        (
            "remote.storage.enable",
            "true",
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured \
             with remote log storage.",
        ),
    ];
    for (i, (name, value, message)) in refusals.iter().enumerate() {
        let resp = create(&broker, &format!("refused-{i}"), &[(name, value)]);
        let t = &resp.topics[0];
        assert_eq!(t.error_code, INVALID_CONFIG, "{name}={value}");
        assert_eq!(t.error_message.as_deref(), Some(*message), "{name}={value}");
    }
    let mut c = broker.raw();
    let md = c.request(&MetadataRequest::default().with_topics(None), 12);
    assert!(
        !md.topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|n| n.starts_with("refused"))),
        "a refused topic is not created"
    );
}

/// Codec bits of every batch stored in a partition's segments.
fn stored_codecs(broker: &Broker, topic: &str) -> Vec<i16> {
    let mut codecs = Vec::new();
    for seg in common::segment_files(&broker.partition_dir(topic, 0)) {
        let (batches, _) = common::walk_segment(&common::read_file(&seg));
        codecs.extend(batches.iter().map(|b| b.compression()));
    }
    codecs
}

#[test]
fn compression_type_recompresses_whatever_the_producer_sent() {
    let broker = Broker::start(&[]);
    let topic = "recompressed";
    let resp = create(&broker, topic, &[("compression.type", "zstd")]);
    assert_eq!(resp.topics[0].error_code, 0);
    let mut delivered = Vec::new();
    let mut all = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4"] {
        let mut cfg = broker.producer_config();
        cfg.set("compression.codec", codec);
        let records: Vec<TestRecord> = (0..200)
            .map(|i| {
                let mut r = TestRecord::value(format!("{codec} value {i} ").repeat(8));
                r.key = Some(format!("k{i}").into_bytes());
                r.headers = vec![("codec".to_string(), codec.as_bytes().to_vec())];
                r.in_partition(0)
            })
            .collect();
        delivered.extend(clients::produce(&cfg, topic, &records));
        all.extend(records);
    }
    let codecs = stored_codecs(&broker, topic);
    assert!(!codecs.is_empty());
    assert!(
        codecs.iter().all(|c| *c == 4),
        "every stored batch is zstd: {codecs:?}"
    );
    let got = clients::consume_all(
        &broker.consumer_config(),
        topic,
        1,
        all.len(),
        Duration::from_secs(30),
    );
    clients::assert_same(&all, &delivered, &got);

    // "producer" keeps each producer's codec.
    clients::create_topic(&broker.admin_config(), "kept", 1, &[]);
    let mut cfg = broker.producer_config();
    cfg.set("compression.codec", "lz4");
    let compressible = TestRecord::value("x".repeat(2000)).in_partition(0);
    clients::produce(&cfg, "kept", &[compressible]);
    assert_eq!(stored_codecs(&broker, "kept"), vec![3]);
}

/// Produces one record and returns the delivery error librdkafka reports, if any.
fn delivery_error(cfg: &rdkafka::ClientConfig, topic: &str, ts: Option<i64>) -> Option<String> {
    use rdkafka::producer::{DeliveryResult, ProducerContext};
    use rdkafka::ClientContext;
    use std::sync::{Arc, Mutex};
    struct Ctx(Arc<Mutex<Option<Option<String>>>>);
    impl ClientContext for Ctx {}
    impl ProducerContext for Ctx {
        type DeliveryOpaque = ();
        fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
            let e = r.as_ref().err().map(|(e, _)| e.to_string());
            *self.0.lock().unwrap() = Some(e);
        }
    }
    let seen = Arc::new(Mutex::new(None));
    let producer: BaseProducer<Ctx> = cfg
        .create_with_context(Ctx(seen.clone()))
        .expect("producer");
    let mut record = BaseRecord::<(), [u8], ()>::to(topic)
        .payload(b"v".as_slice())
        .partition(0);
    if let Some(ts) = ts {
        record = record.timestamp(ts);
    }
    producer.send(record).map_err(|(e, _)| e).expect("queued");
    let _ = producer.flush(Duration::from_secs(20));
    let outcome = seen.lock().unwrap().clone();
    outcome.expect("a delivery report")
}

#[test]
fn min_insync_replicas_and_timestamp_bounds_are_enforced() {
    let broker = Broker::start(&[]);
    assert_eq!(
        create(&broker, "two-isr", &[("min.insync.replicas", "2")]).topics[0].error_code,
        0
    );
    // NOT_ENOUGH_REPLICAS is retriable: librdkafka retries it until its timeout, so look at
    // the broker's answer itself.
    let produce = |acks: i16| -> i16 {
        let batch = gregor::client::batch::encode_batch(
            &[gregor::client::batch::ProducerRecord {
                value: Some(Bytes::from_static(b"v")),
                ..Default::default()
            }],
            common::now_ms(),
            kafka_protocol::records::Compression::None,
        )
        .unwrap();
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s("two-isr")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))])]);
        broker.raw().request(&req, 9).responses[0].partition_responses[0].error_code
    };
    assert_eq!(
        produce(-1),
        NOT_ENOUGH_REPLICAS,
        "acks=all with an ISR of one"
    );
    assert_eq!(produce(1), 0, "acks=1 is fine");
    let mut all = broker.producer_config();
    all.set("acks", "all").set("message.timeout.ms", "3000");
    assert!(delivery_error(&all, "two-isr", None).is_some());
    let mut one = broker.producer_config();
    one.set("acks", "1");
    assert_eq!(
        delivery_error(&one, "two-isr", None),
        None,
        "acks=1 is fine"
    );
    assert_eq!(
        clients::watermarks(&broker.consumer_config(), "two-isr", 0),
        (0, 2),
        "only the acks=1 records were written"
    );

    clients::create_topic(&broker.admin_config(), "stamped", 1, &[]);
    let hours_ahead = common::now_ms() + 2 * 3_600_000;
    let err = delivery_error(&one, "stamped", Some(hours_ahead)).expect("too far ahead");
    assert!(
        err.contains("InvalidTimestamp") || err.contains("timestamp"),
        "{err}"
    );
    assert_eq!(
        delivery_error(&one, "stamped", Some(common::now_ms())),
        None
    );
    assert_eq!(
        delivery_error(&one, "stamped", None),
        None,
        "the client's own stamp"
    );
}

fn commit_simple_offset(broker: &Broker, group: &str, topic: &str) {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)])]);
    let resp = broker.raw().request(&req, 8);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
}

#[test]
fn list_groups_filters_by_type_and_state_and_ops_are_reported() {
    let broker = Broker::start(&[]);
    clients::create_topic(&broker.admin_config(), "grouped", 1, &[]);
    commit_simple_offset(&broker, "simple-group", "grouped");
    let list = |types: &[&str], states: &[&str]| -> Vec<String> {
        let req = ListGroupsRequest::default()
            .with_types_filter(types.iter().map(|t| s(t)).collect())
            .with_states_filter(states.iter().map(|t| s(t)).collect());
        let resp = broker.raw().request(&req, 5);
        assert_eq!(resp.error_code, 0);
        resp.groups.iter().map(|g| g.group_id.to_string()).collect()
    };
    let found = vec!["simple-group".to_string()];
    assert_eq!(list(&[], &[]), found);
    assert_eq!(list(&["classic"], &[]), found);
    assert_eq!(
        list(&["Classic"], &[]),
        found,
        "types match case-insensitively"
    );
    assert_eq!(list(&["consumer"], &[]), Vec::<String>::new());
    assert_eq!(list(&["share", "consumer"], &[]), Vec::<String>::new());
    assert_eq!(list(&["classic"], &["Empty"]), found);
    assert_eq!(list(&["classic"], &["Stable"]), Vec::<String>::new());

    // Authorized operations: every operation of the resource type (no authorizer), when asked.
    const TOPIC_OPS: i32 = 0b1101_1111_1000;
    const CLUSTER_OPS: i32 = 0b1_1111_1010_0000;
    const GROUP_OPS: i32 = 0b1101_0100_1000;
    let mut c = broker.raw();
    let req = MetadataRequest::default()
        .with_topics(None)
        .with_include_topic_authorized_operations(true);
    let md = c.request(&req, 12);
    assert!(md
        .topics
        .iter()
        .all(|t| t.topic_authorized_operations == TOPIC_OPS));
    let md = c.request(&MetadataRequest::default().with_topics(None), 12);
    assert!(md
        .topics
        .iter()
        .all(|t| t.topic_authorized_operations == i32::MIN));
    let md = c.request(
        &MetadataRequest::default()
            .with_topics(None)
            .with_include_cluster_authorized_operations(true),
        10,
    );
    assert_eq!(md.cluster_authorized_operations, CLUSTER_OPS);
    let dc = c.request(
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        1,
    );
    assert_eq!(dc.cluster_authorized_operations, CLUSTER_OPS);
    let dg = c.request(
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s("simple-group"))])
            .with_include_authorized_operations(true),
        5,
    );
    assert_eq!(dg.groups[0].authorized_operations, GROUP_OPS);
}

#[test]
fn topic_names_that_collide_on_dot_and_underscore_are_refused() {
    let broker = Broker::start(&[]);
    assert_eq!(create(&broker, "my.topic_1", &[]).topics[0].error_code, 0);
    let resp = create(&broker, "my_topic.1", &[]);
    let t = &resp.topics[0];
    assert_eq!(t.error_code, INVALID_TOPIC_EXCEPTION);
    assert_eq!(
        t.error_message.as_deref(),
        Some("Topic 'my_topic.1' collides with existing topic: my.topic_1")
    );
    // Through librdkafka's admin client as well.
    let admin: AdminClient<DefaultClientContext> = broker.admin_config().create().unwrap();
    let rt = tokio_free_block_on(admin.create_topics(
        &[NewTopic::new("my_topic_1", 1, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))
    .expect("admin call");
    assert!(
        matches!(rt[0], Err((_, RDKafkaErrorCode::InvalidTopic))),
        "{rt:?}"
    );
}

/// Drives an rdkafka admin future to completion on this thread.
fn tokio_free_block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_cache() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    let broker = Broker::start(&[]);
    let records: Vec<TestRecord> = (0..5)
        .map(|i| TestRecord::value(format!("{i}")).in_partition(0))
        .collect();
    clients::produce(&broker.producer_config(), "epochs", &records);
    let ask = |current: i32, epoch: i32| {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(s("epochs")))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)])]);
        let resp = broker.raw().request(&req, 4);
        let p = resp.topics[0].partitions[0].clone();
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(
        ask(0, 0),
        (0, 0, 5),
        "the current epoch ends at the log end"
    );
    assert_eq!(ask(-1, 0), (0, 0, 5));
    assert_eq!(
        ask(3, 0).0,
        75,
        "UNKNOWN_LEADER_EPOCH for an epoch from the future"
    );
    let dq = broker.raw().request(
        &kafka_protocol::messages::DescribeQuorumRequest::default(),
        2,
    );
    let p = &dq.topics[0].partitions[0];
    assert_eq!(p.leader_id.0, 1);
    assert_eq!(p.current_voters.len(), 1);
}
