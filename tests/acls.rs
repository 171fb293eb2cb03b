//! ACLs, driven by real clients: librdkafka over SASL_PLAINTEXT as users with and without
//! ACLs, `gregor acls` as kafka-acls.sh, and raw requests for every API a user without the
//! right ACL must be refused with Kafka's error code. Prefixed ACLs, deny over allow, super
//! users, changes without a restart, and ACLs kept across one.

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::clients::{create_topic, produce, producer, send_all, TestProducer, TestRecord};
use common::{free_port, gregor_bin, Broker, RawClient};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::ClientConfig;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const INVALID_REQUEST: i16 = 42;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const SECURITY_DISABLED: i16 = 54;

const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
    user_admin=\"admin-secret\" user_alice=\"alice-secret\" user_bob=\"bob-secret\";";

/// A broker with ACLs on: PLAINTEXT (User:ANONYMOUS, no ACLs) and SASL_PLAINTEXT with PLAIN
/// users admin (the super user), alice and bob. The tools log in as admin.
struct Secured {
    broker: Broker,
    sasl: u16,
    admin_properties: tempfile::NamedTempFile,
}

fn start() -> Secured {
    let sasl = free_port();
    let listeners = format!("SASL_PLAINTEXT://127.0.0.1:{sasl}");
    let broker = Broker::start_with_listeners(
        &listeners,
        &[
            ("inter.broker.listener.name", "PLAINTEXT"),
            ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
            ("sasl.enabled.mechanisms", "PLAIN"),
            ("authorizer.class.name", STANDARD_AUTHORIZER),
            ("super.users", "User:admin"),
        ],
    );
    let mut admin_properties = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut admin_properties,
        b"security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
          sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
          username=\"admin\" password=\"admin-secret\";\n",
    )
    .unwrap();
    Secured {
        broker,
        sasl,
        admin_properties,
    }
}

impl Secured {
    /// librdkafka producer settings for `user` over SASL_PLAINTEXT.
    fn as_user(&self, user: &str) -> ClientConfig {
        let mut c = self.broker.producer_config();
        c.set("bootstrap.servers", format!("127.0.0.1:{}", self.sasl))
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", user)
            .set("sasl.password", format!("{user}-secret"))
            .set("message.timeout.ms", "10000")
            .set("enable.idempotence", "false");
        c
    }

    fn consumer_as(&self, user: &str, group: &str) -> ClientConfig {
        let mut c = self.as_user(user);
        c.remove("partitioner");
        c.remove("message.timeout.ms");
        c.remove("linger.ms");
        c.remove("enable.idempotence");
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100");
        c
    }

    /// A raw connection authenticated as `user` with SASL PLAIN.
    fn raw_as(&self, user: &str) -> RawClient {
        let mut c = RawClient::connect(std::net::SocketAddr::from(([127, 0, 0, 1], self.sasl)));
        let h = c.request(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            1,
        );
        assert_eq!(h.error_code, 0, "handshake");
        let token = format!("\0{user}\0{user}-secret");
        let a = c.request(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
            2,
        );
        assert_eq!(
            a.error_code, 0,
            "authenticate {user}: {:?}",
            a.error_message
        );
        c
    }

    /// Runs `gregor acls ARGS` as admin; its stdout.
    fn acls(&self, args: &[&str]) -> String {
        let out = Command::new(gregor_bin())
            .arg("acls")
            .args(["--bootstrap-server", &format!("127.0.0.1:{}", self.sasl)])
            .args([
                "--command-config",
                &self.admin_properties.path().display().to_string(),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gregor acls {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn records(prefix: &str, n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord::value(format!("{prefix}-{i}")).in_partition(0))
        .collect()
}

/// Sends `n` records as the producer `cfg` and returns the delivery errors (empty: all went).
fn produce_errors(cfg: &ClientConfig, topic: &str, n: usize) -> Vec<String> {
    let p: TestProducer = producer(cfg, n);
    send_all(&p, topic, &records(topic, n), 0);
    let _ = p.flush(Duration::from_secs(30));
    let results = p.context().results.lock().unwrap().clone();
    results
        .into_iter()
        .filter_map(|r| match r {
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(e),
            None => Some("no delivery report".to_string()),
        })
        .collect()
}

/// Subscribes with group `cfg`'s group and polls until `n` records or an error arrive.
fn consume_in_group(cfg: &ClientConfig, topic: &str, n: usize) -> Result<usize, String> {
    let c: BaseConsumer = cfg.create().expect("consumer");
    c.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < n {
        if std::time::Instant::now() > deadline {
            return Err(format!("read {got} of {n} in 30 s"));
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    Ok(got)
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(name(s))
}

fn group_id(s: &str) -> GroupId {
    GroupId(name(s))
}

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(name(s))
}

fn one_record_batch() -> Bytes {
    gregor::client::batch::encode_batch(
        &[gregor::client::batch::ProducerRecord {
            value: Some(Bytes::from_static(b"x")),
            ..Default::default()
        }],
        common::now_ms(),
        kafka_protocol::records::Compression::None,
    )
    .unwrap()
}

/// Produces one record (a transactional batch of producer 1 when `txn` is given); the
/// partition's error code.
fn produce_code(c: &mut RawClient, topic: &str, txn: Option<&str>) -> i16 {
    let records = match txn {
        None => one_record_batch(),
        Some(_) => gregor::client::batch::encode_transactional_batch(
            &[gregor::client::batch::ProducerRecord {
                value: Some(Bytes::from_static(b"x")),
                ..Default::default()
            }],
            common::now_ms(),
            1,
            0,
        )
        .unwrap(),
    };
    let req = ProduceRequest::default()
        .with_transactional_id(txn.map(txn_id))
        .with_acks(-1)
        .with_timeout_ms(3000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    let r = c.request(&req, 9);
    r.responses[0].partition_responses[0].error_code
}

fn fetch_code(c: &mut RawClient, topic: &str) -> i16 {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r = c.request(&req, 12);
    r.responses[0].partitions[0].error_code
}

fn list_offsets_code(c: &mut RawClient, topic: &str) -> i16 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    c.request(&req, 7).topics[0].partitions[0].error_code
}

fn metadata(c: &mut RawClient, topics: Option<&[&str]>) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(t)))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(true);
    c.request(&req, 12)
}

fn topic_codes(r: &MetadataResponse) -> Vec<(String, i16)> {
    let mut v: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                t.error_code,
            )
        })
        .collect();
    v.sort();
    v
}

/// Every API alice has no ACL for answers its authorization error; each entry is (what,
/// error code got, error code expected).
fn refusals(c: &mut RawClient) -> Vec<(&'static str, i16, i16)> {
    let mut out = Vec::new();
    let mut check = |what: &'static str, got: i16, want: i16| out.push((what, got, want));

    check(
        "Produce to a topic without WRITE",
        produce_code(c, "payments", None),
        TOPIC_AUTHORIZATION_FAILED,
    );
    check(
        "transactional Produce without the transactional id",
        produce_code(c, "orders", Some("tx-1")),
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    check(
        "Fetch without READ",
        fetch_code(c, "orders"),
        TOPIC_AUTHORIZATION_FAILED,
    );
    check(
        "ListOffsets of a hidden topic",
        list_offsets_code(c, "secret"),
        TOPIC_AUTHORIZATION_FAILED,
    );
    let m = metadata(c, Some(&["secret", "does-not-exist"]));
    for (t, code) in topic_codes(&m) {
        let what = if t == "secret" {
            "Metadata of a hidden topic"
        } else {
            "Metadata auto-creating without CREATE"
        };
        check(what, code, TOPIC_AUTHORIZATION_FAILED);
    }

    let r = c.request(
        &CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic_name("new-topic"))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        5,
    );
    check(
        "CreateTopics",
        r.topics[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &DeleteTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topic_names(vec![topic_name("orders")]),
        4,
    );
    check(
        "DeleteTopics",
        r.responses[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name("orders"))
                    .with_count(3),
            ]),
        3,
    );
    check(
        "CreatePartitions",
        r.results[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic_name("payments"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(1),
                ])]),
        2,
    );
    check(
        "DeleteRecords",
        r.topics[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );

    let describe = |rt: i8, n: &str| {
        DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(rt)
                .with_resource_name(name(n)),
        ])
    };
    let r = c.request(&describe(2, "orders"), 4);
    check(
        "DescribeConfigs of a topic",
        r.results[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );
    let r = c.request(&describe(4, "1"), 4);
    check(
        "DescribeConfigs of the broker",
        r.results[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(name("orders"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(name("retention.ms"))
                    .with_value(Some(name("1000")))]),
        ]),
        2,
    );
    check(
        "AlterConfigs of a topic",
        r.responses[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(name(""))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(name("log.retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(name("1000"))),
                ]),
        ]),
        1,
    );
    check(
        "IncrementalAlterConfigs of the brokers",
        r.responses[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED,
    );

    let r = c.request(
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![name("other-group")]),
        4,
    );
    check(
        "FindCoordinator of another group",
        r.coordinators[0].error_code,
        GROUP_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![name("tx-1")]),
        4,
    );
    check(
        "FindCoordinator of a transactional id",
        r.coordinators[0].error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &JoinGroupRequest::default()
            .with_group_id(group_id("other-group"))
            .with_session_timeout_ms(10000)
            .with_rebalance_timeout_ms(10000)
            .with_member_id(name(""))
            .with_protocol_type(name("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(name("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"))]),
        5,
    );
    check("JoinGroup", r.error_code, GROUP_AUTHORIZATION_FAILED);
    let r = c.request(
        &SyncGroupRequest::default()
            .with_group_id(group_id("other-group"))
            .with_generation_id(1)
            .with_member_id(name("m")),
        3,
    );
    check("SyncGroup", r.error_code, GROUP_AUTHORIZATION_FAILED);
    let r = c.request(
        &HeartbeatRequest::default()
            .with_group_id(group_id("other-group"))
            .with_generation_id(1)
            .with_member_id(name("m")),
        3,
    );
    check("Heartbeat", r.error_code, GROUP_AUTHORIZATION_FAILED);
    let r = c.request(
        &LeaveGroupRequest::default()
            .with_group_id(group_id("other-group"))
            .with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(name("m"))
            ]),
        3,
    );
    check("LeaveGroup", r.error_code, GROUP_AUTHORIZATION_FAILED);
    let r = c.request(
        &OffsetCommitRequest::default()
            .with_group_id(group_id("other-group"))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic_name("payments"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                    ]),
            ]),
        8,
    );
    check(
        "OffsetCommit to another group",
        r.topics[0].partitions[0].error_code,
        GROUP_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &OffsetCommitRequest::default()
            .with_group_id(group_id("readers"))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                    ]),
            ]),
        8,
    );
    check(
        "OffsetCommit of a topic without READ",
        r.topics[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(group_id("other-group"))
                .with_topics(None),
        ]),
        8,
    );
    check(
        "OffsetFetch of another group",
        r.groups[0].error_code,
        GROUP_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &DescribeGroupsRequest::default().with_groups(vec![group_id("other-group")]),
        5,
    );
    check(
        "DescribeGroups",
        r.groups[0].error_code,
        GROUP_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &DeleteGroupsRequest::default().with_groups_names(vec![group_id("readers")]),
        2,
    );
    check(
        "DeleteGroups without DELETE",
        r.results[0].error_code,
        GROUP_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &OffsetDeleteRequest::default()
            .with_group_id(group_id("readers"))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(topic_name("payments"))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]),
        0,
    );
    check(
        "OffsetDelete without DELETE",
        r.error_code,
        GROUP_AUTHORIZATION_FAILED,
    );

    let r = c.request(
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id("tx-1")))
            .with_transaction_timeout_ms(10000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    );
    check(
        "InitProducerId of a transactional id",
        r.error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id("tx-1"))
            .with_v3_and_below_producer_id(ProducerId(1))
            .with_v3_and_below_producer_epoch(0)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partitions(vec![0]),
            ]),
        3,
    );
    check(
        "AddPartitionsToTxn",
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id("tx-1"))
            .with_producer_id(ProducerId(1))
            .with_producer_epoch(0)
            .with_group_id(group_id("readers")),
        3,
    );
    check(
        "AddOffsetsToTxn",
        r.error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &EndTxnRequest::default()
            .with_transactional_id(txn_id("tx-1"))
            .with_producer_id(ProducerId(1))
            .with_producer_epoch(0)
            .with_committed(true),
        3,
    );
    check(
        "EndTxn",
        r.error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id("tx-1"))
            .with_group_id(group_id("readers"))
            .with_producer_id(ProducerId(1))
            .with_producer_epoch(0)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("payments"))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                    ]),
            ]),
        3,
    );
    check(
        "TxnOffsetCommit",
        r.topics[0].partitions[0].error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(1))
                .with_producer_epoch(0)
                .with_transaction_result(true)
                .with_coordinator_epoch(0)
                .with_topics(vec![
                    write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(topic_name("orders"))
                        .with_partition_indexes(vec![0]),
                ]),
        ]),
        1,
    );
    check(
        "WriteTxnMarkers",
        r.markers[0].topics[0].partitions[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(topic_name("orders"))
                .with_partition_indexes(vec![0]),
        ]),
        0,
    );
    check(
        "DescribeProducers without READ",
        r.topics[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id("tx-1")]),
        0,
    );
    check(
        "DescribeTransactions",
        r.transaction_states[0].error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name("secret"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(0),
                    ]),
            ]),
        4,
    );
    check(
        "OffsetForLeaderEpoch of a hidden topic",
        r.topics[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED,
    );

    // Kafka answers DescribeCluster to everyone, with no operations for those who may not
    // describe the cluster.
    let r = c.request(
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        0,
    );
    let nothing = if r.cluster_authorized_operations == 0 {
        0
    } else {
        -1
    };
    check("DescribeCluster's authorized operations", nothing, 0);
    let r = c.request(&DescribeQuorumRequest::default(), 0);
    check("DescribeQuorum", r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let r = c.request(
        &DescribeUserScramCredentialsRequest::default().with_users(None),
        0,
    );
    check(
        "DescribeUserScramCredentials",
        r.error_code,
        CLUSTER_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &AlterUserScramCredentialsRequest::default().with_deletions(vec![
            alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                .with_name(name("bob"))
                .with_mechanism(2),
        ]),
        0,
    );
    check(
        "AlterUserScramCredentials",
        r.results[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED,
    );
    let r = c.request(
        &CreateAclsRequest::default().with_creations(vec![
            create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(name("secret"))
                .with_resource_pattern_type(3)
                .with_principal(name("User:alice"))
                .with_host(name("*"))
                .with_operation(2)
                .with_permission_type(3),
        ]),
        3,
    );
    check(
        "CreateAcls (granting herself everything)",
        r.results[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED,
    );
    let r = c.request(&any_acls_filter(), 3);
    check("DescribeAcls", r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let r = c.request(
        &DeleteAclsRequest::default().with_filters(vec![any_delete_filter()]),
        3,
    );
    check(
        "DeleteAcls",
        r.filter_results[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED,
    );
    out
}

fn any_acls_filter() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1)
}

fn any_delete_filter() -> delete_acls_request::DeleteAclsFilter {
    delete_acls_request::DeleteAclsFilter::default()
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1)
}

#[test]
fn a_user_does_exactly_what_her_acls_allow() {
    let s = start();
    let admin = s.as_user("admin");
    for t in ["orders", "payments", "secret"] {
        create_topic(&admin, t, 1, &[]);
    }
    produce(&admin, "payments", &records("payments", 10));

    // alice may write orders, and read payments with the group "readers".
    // The PLAINTEXT listener's anonymous principal may not manage ACLs.
    let anonymous = Command::new(gregor_bin())
        .args([
            "acls",
            "--list",
            "--bootstrap-server",
            &s.broker.bootstrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success()
            && String::from_utf8_lossy(&anonymous.stderr).contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{anonymous:?}"
    );

    let added = s.acls(&[
        "--add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "Write",
        "--topic",
        "orders",
    ]);
    assert!(added.contains("Adding ACL"), "{added}");
    s.acls(&[
        "--add",
        "--consumer",
        "--allow-principal",
        "User:alice",
        "--topic",
        "payments",
        "--group",
        "readers",
    ]);

    // What she may do works.
    let alice = s.as_user("alice");
    produce(&alice, "orders", &records("orders", 5));
    assert_eq!(
        consume_in_group(&s.consumer_as("alice", "readers"), "payments", 10),
        Ok(10)
    );
    // Idempotent producing needs WRITE on some topic (Kafka 4): she has it.
    let mut idempotent = alice.clone();
    idempotent.set("enable.idempotence", "true");
    produce(&idempotent, "orders", &records("orders-idem", 3));

    // What she may not do fails with Kafka's errors, through librdkafka ...
    let errors = produce_errors(&alice, "payments", 3);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.contains("authoriz")),
        "produce to payments: {errors:?}"
    );
    let other_group = consume_in_group(&s.consumer_as("alice", "other-group"), "payments", 1);
    assert!(
        other_group.as_ref().is_err_and(|e| e.contains("authoriz")),
        "consume with another group: {other_group:?}"
    );

    // ... and through every other API, raw.
    let mut raw = s.raw_as("alice");
    let m = metadata(&mut raw, None);
    assert_eq!(
        topic_codes(&m),
        vec![("orders".to_string(), 0), ("payments".to_string(), 0)],
        "the topic list shows only what alice may describe"
    );
    let wrong: Vec<_> = refusals(&mut raw)
        .into_iter()
        .filter(|(_, got, want)| got != want)
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong answers (what, got, expected): {wrong:#?}"
    );
    let groups = raw.request(&ListGroupsRequest::default(), 4);
    assert!(
        groups
            .groups
            .iter()
            .all(|g| g.group_id.as_str() == "readers"),
        "ListGroups shows only groups alice may describe: {:?}",
        groups.groups
    );
    // Nothing was written to payments by the refused produces.
    assert_eq!(
        common::clients::watermarks(&admin, "payments", 0).1,
        10,
        "refused produces appended nothing"
    );

    // Changes apply without a restart: taking WRITE away stops alice at once.
    let removed = s.acls(&[
        "--remove",
        "--allow-principal",
        "User:alice",
        "--operation",
        "Write",
        "--topic",
        "orders",
        "--force",
    ]);
    assert!(removed.contains("Removing ACL"), "{removed}");
    let mut raw = s.raw_as("alice");
    assert_eq!(
        produce_code(&mut raw, "orders", None),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(fetch_code(&mut raw, "payments"), 0);

    // A super user may do everything (last: as admin, the same requests change things).
    let mut admin_raw = s.raw_as("admin");
    let all: Vec<(&str, i16, i16)> = refusals(&mut admin_raw)
        .into_iter()
        .filter(|(_, got, _)| {
            [
                TOPIC_AUTHORIZATION_FAILED,
                GROUP_AUTHORIZATION_FAILED,
                CLUSTER_AUTHORIZATION_FAILED,
                TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            ]
            .contains(got)
        })
        .collect();
    assert!(all.is_empty(), "a super user was refused: {all:#?}");
    produce(&admin, "secret", &records("secret", 2));
}

#[test]
fn prefixed_acls_deny_over_allow_and_a_restart() {
    let mut s = start();
    let admin = s.as_user("admin");
    for t in ["orders", "orders-eu", "orders-us"] {
        create_topic(&admin, t, 1, &[]);
    }
    s.acls(&[
        "--add",
        "--allow-principal",
        "User:bob",
        "--operation",
        "Write",
        "--topic",
        "orders-",
        "--resource-pattern-type",
        "PREFIXED",
    ]);
    let mut raw = s.raw_as("bob");
    assert_eq!(produce_code(&mut raw, "orders-eu", None), 0);
    assert_eq!(produce_code(&mut raw, "orders-us", None), 0);
    assert_eq!(
        produce_code(&mut raw, "orders", None),
        TOPIC_AUTHORIZATION_FAILED
    );

    // A deny beats the prefixed allow, for that topic only, from the next request on.
    s.acls(&[
        "--add",
        "--deny-principal",
        "User:bob",
        "--operation",
        "Write",
        "--topic",
        "orders-eu",
    ]);
    assert_eq!(
        produce_code(&mut raw, "orders-eu", None),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(produce_code(&mut raw, "orders-us", None), 0);
    // A deny for everyone (User:*) on a host other than bob's does not apply to him.
    s.acls(&[
        "--add",
        "--deny-principal",
        "User:*",
        "--deny-host",
        "10.1.2.3",
        "--operation",
        "All",
        "--topic",
        "orders-us",
    ]);
    assert_eq!(produce_code(&mut raw, "orders-us", None), 0);

    let listed = s.acls(&["--list", "--topic", "orders-eu"]);
    assert!(
        listed.contains("name=orders-eu, patternType=LITERAL")
            && listed
                .contains("(principal=User:bob, host=*, operation=WRITE, permissionType=DENY)"),
        "{listed}"
    );
    let all = s.acls(&["--list"]);
    assert!(
        all.contains("name=orders-, patternType=PREFIXED") && all.contains("host=10.1.2.3"),
        "{all}"
    );

    // ACLs live in the metadata log: a restart keeps them.
    s.broker.restart();
    let mut raw = s.raw_as("bob");
    assert_eq!(
        produce_code(&mut raw, "orders-eu", None),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(produce_code(&mut raw, "orders-us", None), 0);
    assert_eq!(s.acls(&["--list"]), all);

    // Bad bindings are refused one by one with INVALID_REQUEST.
    let mut admin_raw = s.raw_as("admin");
    let bad = |rt: i8, n: &str, principal: &str| {
        create_acls_request::AclCreation::default()
            .with_resource_type(rt)
            .with_resource_name(name(n))
            .with_resource_pattern_type(3)
            .with_principal(name(principal))
            .with_host(name("*"))
            .with_operation(3)
            .with_permission_type(3)
    };
    let r = admin_raw.request(
        &CreateAclsRequest::default().with_creations(vec![
            bad(4, "not-the-cluster", "User:bob"),
            bad(2, "t", "bob"),
            bad(2, "", "User:bob"),
            bad(2, "fine", "User:bob"),
        ]),
        3,
    );
    let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![INVALID_REQUEST, INVALID_REQUEST, INVALID_REQUEST, 0]
    );

    // Everything bob's filter matches is removed, and reported.
    let removed = s.acls(&["--remove", "--allow-principal", "User:bob", "--force"]);
    assert!(
        removed.contains("name=orders-") && removed.contains("name=fine"),
        "{removed}"
    );
    let mut raw = s.raw_as("bob");
    assert_eq!(
        produce_code(&mut raw, "orders-eu", None),
        TOPIC_AUTHORIZATION_FAILED
    );
    // orders-us still has an ACL (the deny for another host), none allowing bob: refused.
    assert_eq!(
        produce_code(&mut raw, "orders-us", None),
        TOPIC_AUTHORIZATION_FAILED
    );
}

#[test]
fn without_an_authorizer_the_acl_apis_answer_security_disabled() {
    let b = Broker::start(&[]);
    let mut c = b.raw();
    let r = c.request(&any_acls_filter(), 3);
    assert_eq!(r.error_code, SECURITY_DISABLED);
    let r = c.request(
        &DeleteAclsRequest::default().with_filters(vec![any_delete_filter()]),
        3,
    );
    assert_eq!(r.filter_results[0].error_code, SECURITY_DISABLED);
    // And everything stays open: no ACLs, no refusals.
    assert_eq!(
        c.request(&DescribeClusterRequest::default(), 0).error_code,
        0
    );
    let r = c.request(
        &DescribeUserScramCredentialsRequest::default().with_users(None),
        0,
    );
    assert_eq!(r.error_code, 0);
}
