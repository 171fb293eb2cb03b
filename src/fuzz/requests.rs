//! Valid request frames (without size prefix) of every key and version the broker serves:
//! the fuzz corpus of the request decoding target and of the network fuzzer.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;

use crate::client::batch::{encode_batch, ProducerRecord};
use crate::protocol::SUPPORTED;

/// A request frame (without the size prefix) for `body` at `version`.
fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn name(s: &'static str) -> StrBytes {
    StrBytes::from_static_str(s)
}

/// Calls `$f::<T>($args)` with `T` the request body type of `$key`, as the server's dispatch
/// decodes it; `$none` for keys the broker does not serve.
#[macro_export]
#[doc(hidden)]
macro_rules! with_body_type {
    ($key:expr, $f:ident($($arg:expr),*), $none:expr) => {
        match $key {
            ApiKey::Produce => $f::<ProduceRequest>($($arg),*),
            ApiKey::Fetch => $f::<FetchRequest>($($arg),*),
            ApiKey::ListOffsets => $f::<ListOffsetsRequest>($($arg),*),
            ApiKey::Metadata => $f::<MetadataRequest>($($arg),*),
            ApiKey::ApiVersions => $f::<ApiVersionsRequest>($($arg),*),
            ApiKey::CreateTopics => $f::<CreateTopicsRequest>($($arg),*),
            ApiKey::DeleteTopics => $f::<DeleteTopicsRequest>($($arg),*),
            ApiKey::DescribeConfigs => $f::<DescribeConfigsRequest>($($arg),*),
            ApiKey::AlterConfigs => $f::<AlterConfigsRequest>($($arg),*),
            ApiKey::IncrementalAlterConfigs => $f::<IncrementalAlterConfigsRequest>($($arg),*),
            ApiKey::CreatePartitions => $f::<CreatePartitionsRequest>($($arg),*),
            ApiKey::DescribeCluster => $f::<DescribeClusterRequest>($($arg),*),
            ApiKey::FindCoordinator => $f::<FindCoordinatorRequest>($($arg),*),
            ApiKey::JoinGroup => $f::<JoinGroupRequest>($($arg),*),
            ApiKey::SyncGroup => $f::<SyncGroupRequest>($($arg),*),
            ApiKey::Heartbeat => $f::<HeartbeatRequest>($($arg),*),
            ApiKey::LeaveGroup => $f::<LeaveGroupRequest>($($arg),*),
            ApiKey::OffsetCommit => $f::<OffsetCommitRequest>($($arg),*),
            ApiKey::OffsetFetch => $f::<OffsetFetchRequest>($($arg),*),
            ApiKey::DescribeGroups => $f::<DescribeGroupsRequest>($($arg),*),
            ApiKey::ListGroups => $f::<ListGroupsRequest>($($arg),*),
            ApiKey::DeleteGroups => $f::<DeleteGroupsRequest>($($arg),*),
            ApiKey::OffsetDelete => $f::<OffsetDeleteRequest>($($arg),*),
            ApiKey::ConsumerGroupHeartbeat => $f::<ConsumerGroupHeartbeatRequest>($($arg),*),
            ApiKey::ConsumerGroupDescribe => $f::<ConsumerGroupDescribeRequest>($($arg),*),
            ApiKey::ShareGroupHeartbeat => $f::<ShareGroupHeartbeatRequest>($($arg),*),
            ApiKey::ShareGroupDescribe => $f::<ShareGroupDescribeRequest>($($arg),*),
            ApiKey::ShareFetch => $f::<ShareFetchRequest>($($arg),*),
            ApiKey::ShareAcknowledge => $f::<ShareAcknowledgeRequest>($($arg),*),
            ApiKey::DescribeShareGroupOffsets => {
                $f::<DescribeShareGroupOffsetsRequest>($($arg),*)
            }
            ApiKey::AlterShareGroupOffsets => $f::<AlterShareGroupOffsetsRequest>($($arg),*),
            ApiKey::DeleteShareGroupOffsets => $f::<DeleteShareGroupOffsetsRequest>($($arg),*),
            ApiKey::ReadShareGroupState => $f::<ReadShareGroupStateRequest>($($arg),*),
            ApiKey::WriteShareGroupState => $f::<WriteShareGroupStateRequest>($($arg),*),
            ApiKey::DeleteShareGroupState => $f::<DeleteShareGroupStateRequest>($($arg),*),
            ApiKey::InitProducerId => $f::<InitProducerIdRequest>($($arg),*),
            ApiKey::OffsetForLeaderEpoch => $f::<OffsetForLeaderEpochRequest>($($arg),*),
            ApiKey::DescribeQuorum => $f::<DescribeQuorumRequest>($($arg),*),
            ApiKey::DeleteRecords => $f::<DeleteRecordsRequest>($($arg),*),
            ApiKey::WriteTxnMarkers => $f::<WriteTxnMarkersRequest>($($arg),*),
            ApiKey::DescribeProducers => $f::<DescribeProducersRequest>($($arg),*),
            ApiKey::AddPartitionsToTxn => $f::<AddPartitionsToTxnRequest>($($arg),*),
            ApiKey::AddOffsetsToTxn => $f::<AddOffsetsToTxnRequest>($($arg),*),
            ApiKey::EndTxn => $f::<EndTxnRequest>($($arg),*),
            ApiKey::TxnOffsetCommit => $f::<TxnOffsetCommitRequest>($($arg),*),
            ApiKey::DescribeTransactions => $f::<DescribeTransactionsRequest>($($arg),*),
            ApiKey::ListTransactions => $f::<ListTransactionsRequest>($($arg),*),
            ApiKey::SaslHandshake => $f::<SaslHandshakeRequest>($($arg),*),
            ApiKey::SaslAuthenticate => $f::<SaslAuthenticateRequest>($($arg),*),
            ApiKey::DescribeUserScramCredentials => {
                $f::<DescribeUserScramCredentialsRequest>($($arg),*)
            }
            ApiKey::AlterUserScramCredentials => {
                $f::<AlterUserScramCredentialsRequest>($($arg),*)
            }
            ApiKey::DescribeAcls => $f::<DescribeAclsRequest>($($arg),*),
            ApiKey::CreateAcls => $f::<CreateAclsRequest>($($arg),*),
            ApiKey::DeleteAcls => $f::<DeleteAclsRequest>($($arg),*),
            _ => $none,
        }
    };
}

fn default_frame<T: Encodable + Default>(key: ApiKey, version: i16) -> Option<Vec<u8>> {
    frame(key, version, &T::default())
}

/// Frames of every request the broker serves at `version`: the default body, and for some
/// keys a populated one.
fn request_frames(key: ApiKey, version: i16) -> Vec<Vec<u8>> {
    let mut v: Vec<Option<Vec<u8>>> = vec![with_body_type!(key, default_frame(key, version), None)];
    match key {
        ApiKey::ConsumerGroupHeartbeat => v.push(frame(
            key,
            version,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(name("g")))
                .with_member_id(name("m1"))
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(name("orders"))]))
                .with_subscribed_topic_regex(Some(name("or.*")))
                .with_topic_partitions(Some(vec![
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(uuid::Uuid::from_u128(7))
                        .with_partitions(vec![0, 1]),
                ])),
        )),
        ApiKey::ShareGroupHeartbeat => v.push(frame(
            key,
            version,
            &ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(name("sg")))
                .with_member_id(name("m1"))
                .with_subscribed_topic_names(Some(vec![TopicName(name("orders"))])),
        )),
        ApiKey::ShareFetch => v.push(frame(
            key,
            version,
            &ShareFetchRequest::default()
                .with_group_id(Some(GroupId(name("sg"))))
                .with_member_id(Some(name("m1")))
                .with_max_wait_ms(10)
                .with_max_bytes(1 << 20)
                .with_max_records(100)
                .with_topics(vec![share_fetch_request::FetchTopic::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![
                        share_fetch_request::FetchPartition::default()
                            .with_partition_index(0)
                            .with_acknowledgement_batches(vec![
                                share_fetch_request::AcknowledgementBatch::default()
                                    .with_first_offset(0)
                                    .with_last_offset(3)
                                    .with_acknowledge_types(vec![1]),
                            ]),
                    ])]),
        )),
        ApiKey::ShareAcknowledge => v.push(frame(
            key,
            version,
            &ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(name("sg"))))
                .with_member_id(Some(name("m1")))
                .with_share_session_epoch(1)
                .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![
                        share_acknowledge_request::AcknowledgePartition::default()
                            .with_partition_index(0)
                            .with_acknowledgement_batches(vec![
                                share_acknowledge_request::AcknowledgementBatch::default()
                                    .with_first_offset(0)
                                    .with_last_offset(1)
                                    .with_acknowledge_types(vec![1, 2]),
                            ]),
                    ])]),
        )),
        ApiKey::Metadata => v.push(frame(
            key,
            version,
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(name("orders")))),
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(name("t")))),
            ])),
        )),
        ApiKey::Produce => {
            let batch = encode_batch(
                &[ProducerRecord {
                    key: Some(Bytes::from_static(b"k")),
                    value: Some(Bytes::from_static(b"value")),
                    headers: vec![("h".to_string(), Some(Bytes::from_static(b"x")))],
                }],
                1_700_000_000_000,
                Compression::None,
            )
            .expect("encode a batch");
            v.push(frame(
                key,
                version,
                &ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![produce_request::TopicProduceData::default()
                        .with_name(TopicName(name("orders")))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch)),
                        ])]),
            ));
        }
        ApiKey::CreateTopics => v.push(frame(
            key,
            version,
            &CreateTopicsRequest::default()
                .with_timeout_ms(1000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(name("orders")))
                    .with_num_partitions(3)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(name("cleanup.policy"))
                            .with_value(Some(name("compact"))),
                    ])]),
        )),
        ApiKey::DeleteTopics => v.push(frame(
            key,
            version,
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![TopicName(name("a")), TopicName(name("b"))]),
        )),
        ApiKey::FindCoordinator => v.push(frame(
            key,
            version,
            &FindCoordinatorRequest::default()
                .with_key(name("group"))
                .with_coordinator_keys(vec![name("g1"), name("g2")]),
        )),
        ApiKey::DeleteGroups => v.push(frame(
            key,
            version,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(name("g1")), GroupId(name("g2"))]),
        )),
        _ => {}
    }
    v.into_iter().flatten().collect()
}

/// The versions a request of `key` is parsed at: the handled range, and Produce v0-v2 too.
pub fn versions(key: ApiKey, min: i16, max: i16) -> std::ops::RangeInclusive<i16> {
    if key == ApiKey::Produce {
        0..=max
    } else {
        min..=max
    }
}

/// A Produce v0-v2 frame (the crate no longer encodes these versions): header v1, acks,
/// timeout, one topic with two partitions, one with a message set and one empty.
fn legacy_produce_frame(version: i16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&7i32.to_be_bytes());
    b.extend_from_slice(&4i16.to_be_bytes());
    b.extend_from_slice(b"fuzz");
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&1000i32.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&6i16.to_be_bytes());
    b.extend_from_slice(b"orders");
    b.extend_from_slice(&2i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&5i32.to_be_bytes());
    b.extend_from_slice(b"hello");
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b
}

pub fn request_corpus() -> Vec<Vec<u8>> {
    let mut corpus = Vec::new();
    for &(key, min, max) in SUPPORTED {
        for version in versions(key, min, max) {
            corpus.extend(request_frames(key, version));
            if key == ApiKey::Produce && version < 3 {
                corpus.push(legacy_produce_frame(version));
            }
        }
    }
    corpus
}
