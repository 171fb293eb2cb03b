//! DeleteRecords through librdkafka's admin client: the log start moves, fetches below it get
//! OFFSET_OUT_OF_RANGE, whole segments below it go, it survives a restart, and refusals carry
//! Kafka's codes.

mod common;

use std::time::Duration;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use common::clients::{create_topic, produce, watermarks, TestRecord};
use common::{raw_fetch, segment_files, Broker};

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

fn records(n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord::value(format!("record-{i:05}-{}", "x".repeat(100))).in_partition(0))
        .collect()
}

/// DeleteRecords for one partition: the new low watermark, or the error code.
fn delete_records(
    broker: &Broker,
    topic: &str,
    partition: i32,
    before: Offset,
) -> Result<i64, RDKafkaErrorCode> {
    let admin: AdminClient<DefaultClientContext> = broker.admin_config().create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, before).unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let res = futures::executor::block_on(admin.delete_records(&tpl, &opts))
        .expect("DeleteRecords request");
    let elem = res
        .find_partition(topic, partition)
        .expect("partition in result");
    match elem.error() {
        Ok(()) => match elem.offset() {
            Offset::Offset(o) => Ok(o),
            other => panic!("low watermark {other:?}"),
        },
        Err(rdkafka::error::KafkaError::OffsetFetch(code)) => Err(code),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[test]
fn delete_records_moves_the_log_start_and_survives_a_restart() {
    let mut broker = Broker::start(&[("log.segment.bytes", "16384")]);
    let topic = "trimmed";
    create_topic(&broker.admin_config(), topic, 1, &[]);
    let n = 600;
    let mut cfg = broker.producer_config();
    cfg.set("batch.num.messages", "20");
    produce(&cfg, topic, &records(n));
    let dir = broker.partition_dir(topic, 0);
    let segments_before = segment_files(&dir).len();
    assert!(segments_before > 3);

    assert_eq!(
        delete_records(&broker, topic, 0, Offset::Offset(400)),
        Ok(400)
    );
    assert_eq!(
        watermarks(&broker.consumer_config(), topic, 0),
        (400, n as i64)
    );
    let (code, start) = raw_fetch(&broker, topic, 100);
    assert_eq!((code, start), (OFFSET_OUT_OF_RANGE, 400));
    let (code, _) = raw_fetch(&broker, topic, 400);
    assert_eq!(code, 0);
    assert!(
        segment_files(&dir).len() < segments_before,
        "segments wholly below the new start are deleted"
    );
    // A consumer from the beginning starts at the new log start.
    let got = common::clients::consume_all(
        &broker.consumer_config(),
        topic,
        1,
        n - 400,
        Duration::from_secs(30),
    );
    assert_eq!(got[0].offset, 400);

    // Lower than the start changes nothing; past the high watermark is out of range.
    assert_eq!(
        delete_records(&broker, topic, 0, Offset::Offset(10)),
        Ok(400)
    );
    assert_eq!(
        delete_records(&broker, topic, 0, Offset::Offset(n as i64 + 5)),
        Err(RDKafkaErrorCode::OffsetOutOfRange)
    );

    broker.restart();
    assert_eq!(
        watermarks(&broker.consumer_config(), topic, 0),
        (400, n as i64)
    );
    // Offset -1: up to the high watermark.
    assert_eq!(delete_records(&broker, topic, 0, Offset::End), Ok(n as i64));
    assert_eq!(
        watermarks(&broker.consumer_config(), topic, 0),
        (n as i64, n as i64)
    );
    let more = produce(&broker.producer_config(), topic, &records(1));
    assert_eq!(more[0].1, n as i64);
}

#[test]
fn delete_records_refusals_carry_kafkas_codes() {
    let broker = Broker::start(&[]);
    create_topic(
        &broker.admin_config(),
        "compacted",
        1,
        &[("cleanup.policy", "compact")],
    );
    assert_eq!(
        delete_records(&broker, "compacted", 0, Offset::Offset(0)),
        Err(RDKafkaErrorCode::PolicyViolation)
    );
    create_topic(&broker.admin_config(), "one", 1, &[]);
    // librdkafka checks partitions against its metadata first: ask raw for unknown ones, and
    // for an internal topic.
    for (topic, partition, code) in [
        ("one", 3, UNKNOWN_TOPIC_OR_PARTITION),
        ("nowhere", 0, UNKNOWN_TOPIC_OR_PARTITION),
        ("__consumer_offsets", 0, INVALID_TOPIC_EXCEPTION),
    ] {
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(0)])]);
        for version in 0..=2 {
            let resp = broker.raw().request(&req, version);
            let p = &resp.topics[0].partitions[0];
            assert_eq!(
                (p.partition_index, p.error_code, p.low_watermark),
                (partition, code, -1),
                "{topic}-{partition} v{version}"
            );
        }
    }
    assert_eq!(
        delete_records(&broker, "one", 0, Offset::Offset(0)),
        Ok(0),
        "the broker goes on serving"
    );
}

#[test]
fn the_delete_records_tool_takes_kafkas_json_and_flags() {
    let broker = Broker::start(&[]);
    create_topic(&broker.admin_config(), "tool", 2, &[]);
    let mut recs = records(20);
    recs.extend(records(10).into_iter().map(|r| r.in_partition(1)));
    produce(&broker.producer_config(), "tool", &recs);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("offsets.json");
    std::fs::write(
        &json,
        r#"{"partitions":[{"topic":"tool","partition":0,"offset":7},
            {"topic":"tool","partition":1,"offset":-1}],"version":1}"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(common::gregor_bin())
            .arg("delete-records")
            .args(["--bootstrap-server", &broker.bootstrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--offset-json-file", json.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("partition: tool-0\tlow_watermark: 7"),
        "{text}"
    );
    assert!(
        text.contains("partition: tool-1\tlow_watermark: 10"),
        "{text}"
    );
    assert_eq!(watermarks(&broker.consumer_config(), "tool", 0), (7, 20));

    let out = run(&["--topic", "tool", "--partition", "0", "--offset", "12"]);
    assert!(out.status.success());
    assert_eq!(watermarks(&broker.consumer_config(), "tool", 0), (12, 20));
    // Past the high watermark: the error is named and the exit code says so.
    let out = run(&["--topic", "tool", "--offset", "99"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OFFSET_OUT_OF_RANGE"), "{text}");
}
