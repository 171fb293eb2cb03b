//! ListOffsets v7-v9's special timestamps over the raw protocol: MAX_TIMESTAMP (the record with
//! the largest timestamp), EARLIEST_LOCAL (the log start, without tiered storage) and
//! LATEST_TIERED (-1, no tiered storage).

mod common;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use common::clients::{create_topic, produce, TestRecord};
use common::Broker;

/// ListOffsets for partition 0 of `topic`: (error code, offset, timestamp).
fn list_offsets(broker: &Broker, topic: &str, timestamp: i64, version: i16) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp)])]);
    let resp = broker.raw().request(&req, version);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

fn at(ts: i64) -> TestRecord {
    TestRecord {
        key: None,
        value: Some(format!("at {ts}").into_bytes()),
        timestamp: Some(ts),
        headers: Vec::new(),
        partition: Some(0),
    }
}

#[test]
fn max_timestamp_earliest_local_and_latest_tiered() {
    let broker = Broker::start(&[]);
    let topic = "times";
    create_topic(&broker.admin_config(), topic, 1, &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Separate produce calls: one batch each, the largest timestamp in the middle.
    for ts in [now - 3_000, now - 1_000, now - 2_000] {
        produce(&broker.producer_config(), topic, &[at(ts)]);
    }
    for version in 7..=9 {
        assert_eq!(
            list_offsets(&broker, topic, -3, version),
            (0, 1, now - 1_000),
            "MAX_TIMESTAMP v{version}"
        );
    }
    assert_eq!(list_offsets(&broker, topic, -4, 8), (0, 0, -1));
    assert_eq!(list_offsets(&broker, topic, -5, 9), (0, -1, -1));
    // The earliest local offset follows the log start.
    let req = kafka_protocol::messages::DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("times")))
                .with_partitions(vec![
                    kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(2),
                ]),
        ]);
    let resp = broker.raw().request(&req, 2);
    assert_eq!(resp.topics[0].partitions[0].low_watermark, 2);
    assert_eq!(list_offsets(&broker, topic, -4, 9), (0, 2, -1));
    assert_eq!(list_offsets(&broker, topic, -2, 9), (0, 2, -1));
    // An empty topic has no record with a largest timestamp.
    create_topic(&broker.admin_config(), "empty", 1, &[]);
    assert_eq!(list_offsets(&broker, "empty", -3, 7), (0, -1, -1));
    // Older versions are answered as before.
    assert_eq!(list_offsets(&broker, topic, -1, 6).1, 3);
}
