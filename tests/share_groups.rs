//! Share groups (KIP-932): confluent-kafka's ShareConsumer (librdkafka's share consumer) and
//! raw ShareGroupHeartbeat / ShareFetch / ShareAcknowledge requests against a real broker:
//! consumers of one share group on one partition get distinct records, an unacknowledged
//! record comes back once its lock runs out, a record released as often as the delivery limit
//! is archived, acknowledgements survive a SIGKILL, bad requests get Kafka's errors, and group
//! configs set where a share group starts and how long it locks records.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use common::clients::{create_topic, produce, TestRecord};
use common::cluster::{create_topic_rf, Cluster};
use common::{Broker, RawClient};

// Kafka error codes.
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const UNKNOWN_TOPIC_ID: i16 = 100;
const FENCED_MEMBER_EPOCH: i16 = 110;
const INVALID_RECORD_STATE: i16 = 121;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

// Acknowledge types.
const ACCEPT: i8 = 1;
const RELEASE: i8 = 2;
const REJECT: i8 = 3;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn start_broker(extra: &[(&str, &str)]) -> Broker {
    let mut settings = vec![
        ("group.share.heartbeat.interval.ms", "500"),
        ("group.share.session.timeout.ms", "10000"),
    ];
    settings.extend_from_slice(extra);
    Broker::start(&settings)
}

fn topic_id(c: &mut RawClient, topic: &str) -> Uuid {
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(topic)))),
    ]));
    let r = c.request(&req, 12);
    r.topics[0].topic_id
}

fn heartbeat(
    c: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> ShareGroupHeartbeatResponse {
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_subscribed_topic_names(topics.map(|ts| ts.iter().map(|t| TopicName(s(t))).collect()));
    c.request(&req, 1)
}

/// Sets the share group's start offset on partition 0 (AlterShareGroupOffsets).
fn alter_start(
    c: &mut RawClient,
    group: &str,
    topic: &str,
    offset: i64,
) -> AlterShareGroupOffsetsResponse {
    c.request(&alter_request(group, topic, offset), 0)
}

fn alter_request(group: &str, topic: &str, offset: i64) -> AlterShareGroupOffsetsRequest {
    AlterShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![
            alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(TopicName(s(topic)))
                .with_partitions(vec![
                    alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                        .with_partition_index(0)
                        .with_start_offset(offset),
                ]),
        ])
}

/// The share group's start offset on partition 0 (DescribeShareGroupOffsets).
fn start_offset(c: &mut RawClient, group: &str, topic: &str) -> i64 {
    let r = c.request(&describe_request(group, topic), 0);
    let g = &r.groups[0];
    assert_eq!(g.error_code, 0, "{:?}", g.error_message);
    let p = &g.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    p.start_offset
}

fn describe_request(group: &str, topic: &str) -> DescribeShareGroupOffsetsRequest {
    DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![
                describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic)))
                    .with_partitions(vec![0]),
            ])),
    ])
}

/// One acknowledgement batch: offsets first..=last, one type for all or one per offset.
fn batch(first: i64, last: i64, types: &[i8]) -> (i64, i64, Vec<i8>) {
    (first, last, types.to_vec())
}

/// A ShareFetch of partition 0 of `topic`, with acknowledgements.
#[allow(clippy::too_many_arguments)]
fn share_fetch(
    c: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topic: Uuid,
    acks: &[(i64, i64, Vec<i8>)],
    max_wait_ms: i32,
) -> ShareFetchResponse {
    let batches = acks
        .iter()
        .map(|(f, l, t)| {
            share_fetch_request::AcknowledgementBatch::default()
                .with_first_offset(*f)
                .with_last_offset(*l)
                .with_acknowledge_types(t.clone())
        })
        .collect();
    let req = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(group))))
        .with_member_id(Some(s(member)))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_max_records(500)
        .with_batch_size(500)
        .with_topics(vec![share_fetch_request::FetchTopic::default()
            .with_topic_id(topic)
            .with_partitions(vec![
                share_fetch_request::FetchPartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(batches),
            ])]);
    c.request(&req, 1)
}

fn share_ack(
    c: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topic: Uuid,
    acks: &[(i64, i64, Vec<i8>)],
) -> ShareAcknowledgeResponse {
    let batches = acks
        .iter()
        .map(|(f, l, t)| {
            share_acknowledge_request::AcknowledgementBatch::default()
                .with_first_offset(*f)
                .with_last_offset(*l)
                .with_acknowledge_types(t.clone())
        })
        .collect();
    let req = ShareAcknowledgeRequest::default()
        .with_group_id(Some(GroupId(s(group))))
        .with_member_id(Some(s(member)))
        .with_share_session_epoch(epoch)
        .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
            .with_topic_id(topic)
            .with_partitions(vec![
                share_acknowledge_request::AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(batches),
            ])]);
    c.request(&req, 1)
}

/// The one partition of a fetch answer.
fn part(r: &ShareFetchResponse) -> &share_fetch_response::PartitionData {
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    &r.responses[0].partitions[0]
}

/// Offsets acquired, with their delivery counts.
fn acquired(r: &ShareFetchResponse) -> BTreeMap<i64, i16> {
    let p = part(r);
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    let mut out = BTreeMap::new();
    for a in &p.acquired_records {
        for o in a.first_offset..=a.last_offset {
            out.insert(o, a.delivery_count);
        }
    }
    // The batches sent cover every acquired offset.
    let records = p.records.clone().unwrap_or_default();
    let (headers, _) = common::walk_segment(&records);
    for o in out.keys() {
        assert!(
            headers
                .iter()
                .any(|h| h.base_offset <= *o && *o <= h.last_offset()),
            "offset {o} acquired but its batch was not sent"
        );
    }
    out
}

fn produce_n(b: &Broker, topic: &str, n: usize, tag: &str) {
    let records: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord::value(format!("{tag}-{i}")).in_partition(0))
        .collect();
    produce(&b.producer_config(), topic, &records);
}

fn range(first: i64, last: i64, count: i16) -> BTreeMap<i64, i16> {
    (first..=last).map(|o| (o, count)).collect()
}

/// Whether confluent-kafka (with its ShareConsumer) is importable; under CI it must be.
fn confluent_kafka_installed() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "from confluent_kafka import ShareConsumer"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("confluent-kafka is not installed: run tests/compat/python/setup.sh");
    }
    ok
}

#[test]
fn share_consumers_of_one_partition_get_distinct_records_and_acknowledge_them_all() {
    if !confluent_kafka_installed() {
        eprintln!("skipped: python3 has no confluent_kafka.ShareConsumer (tests/compat/python/setup.sh installs it)");
        return;
    }
    let b = start_broker(&[]);
    let (topic, group, n, records) = ("share-queue", "share-queue-group", 3, 3000);
    create_topic(&b.admin_config(), topic, 1, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/share_groups/share_consumers.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            &b.bootstrap(),
            topic,
            group,
            &n.to_string(),
            &records.to_string(),
        ])
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "share consumers failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let per: Vec<Vec<i64>> = serde_json::from_value(v["offsets"].clone()).unwrap();
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, offsets) in per.iter().enumerate() {
        eprintln!("consumer {i}: {} records", offsets.len());
        assert!(!offsets.is_empty(), "consumer {i} got nothing");
        for o in offsets {
            if let Some(other) = seen.insert(*o, i) {
                panic!("offset {o} delivered to consumers {other} and {i}");
            }
        }
    }
    let all: BTreeSet<i64> = seen.keys().copied().collect();
    assert_eq!(all, (0..records as i64).collect(), "every record, once");
    // Every acknowledgement arrived: the share group's start is the log end. (The first
    // tenth was produced before anyone joined: the group config share.auto.offset.reset=earliest,
    // set by the script with the AdminClient, is why they were read.)
    let mut c = b.raw();
    assert_eq!(start_offset(&mut c, group, topic), records as i64);
    // The members left when they closed.
    let d = c.request(
        &ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
        1,
    );
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
}

#[test]
fn locks_expire_into_redelivery_and_the_delivery_limit_archives() {
    let b = start_broker(&[
        ("group.share.record.lock.duration.ms", "1000"),
        ("group.share.delivery.count.limit", "2"),
    ]);
    let (topic, group) = ("share-locks", "share-locks-group");
    create_topic(&b.admin_config(), topic, 1, &[]);
    let mut c = b.raw();
    let tid = topic_id(&mut c, topic);
    produce_n(&b, topic, 10, "a");
    // The group starts at the earliest offset (by default it would start at the log end).
    let r = alter_start(&mut c, group, topic, 0);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);

    // Two members share the one partition.
    let h1 = heartbeat(&mut c, group, "m1", 0, Some(&[topic]));
    let h2 = heartbeat(&mut c, group, "m2", 0, Some(&[topic]));
    for h in [&h1, &h2] {
        assert_eq!(h.error_code, 0, "{:?}", h.error_message);
        let a = h.assignment.as_ref().expect("an assignment");
        assert_eq!(a.topic_partitions[0].partitions, vec![0]);
    }
    let mut c1 = b.raw();
    let mut c2 = b.raw();

    // m1 gets all ten; m2 nothing while they are locked.
    let got = acquired(&share_fetch(&mut c1, group, "m1", 0, tid, &[], 5000));
    assert_eq!(got, range(0, 9, 1));
    let r = share_fetch(&mut c2, group, "m2", 0, tid, &[], 200);
    assert!(acquired(&r).is_empty());
    assert_eq!(r.acquisition_lock_timeout_ms, 1000);
    // m1 accepts half and forgets the rest.
    let r = share_ack(&mut c1, group, "m1", 1, tid, &[batch(0, 4, &[ACCEPT])]);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(start_offset(&mut c, group, topic), 5);

    // After the lock, m2 gets the other half, delivered a second time (its fetch waits for
    // the lock to run out).
    let since = Instant::now();
    let got = acquired(&share_fetch(&mut c2, group, "m2", 1, tid, &[], 5000));
    assert_eq!(got, range(5, 9, 2));
    assert!(since.elapsed() < Duration::from_secs(5));
    // m1's lock is gone: its late acknowledgement is refused.
    let r = share_ack(&mut c1, group, "m1", 2, tid, &[batch(5, 9, &[ACCEPT])]);
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        INVALID_RECORD_STATE
    );

    // m2 releases 5..=7 (their second delivery: the limit, so archived), accepts 8 and 9.
    let r = share_fetch(
        &mut c2,
        group,
        "m2",
        2,
        tid,
        &[batch(5, 9, &[RELEASE, RELEASE, RELEASE, ACCEPT, ACCEPT])],
        200,
    );
    assert_eq!(part(&r).acknowledge_error_code, 0);
    assert!(
        acquired(&r).is_empty(),
        "archived records are not delivered again"
    );
    assert_eq!(start_offset(&mut c, group, topic), 10);

    // A record delivered once and released comes back; a rejected one does not.
    produce_n(&b, topic, 2, "b");
    let got = acquired(&share_fetch(&mut c1, group, "m1", 3, tid, &[], 5000));
    assert_eq!(got, range(10, 11, 1));
    let r = share_ack(
        &mut c1,
        group,
        "m1",
        4,
        tid,
        &[batch(10, 11, &[REJECT, RELEASE])],
    );
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    let got = acquired(&share_fetch(&mut c2, group, "m2", 3, tid, &[], 5000));
    assert_eq!(got, range(11, 11, 2));
    let r = share_ack(&mut c2, group, "m2", 4, tid, &[batch(11, 11, &[ACCEPT])]);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(start_offset(&mut c, group, topic), 12);

    // Closing a session releases what its member holds.
    produce_n(&b, topic, 1, "c");
    let got = acquired(&share_fetch(&mut c1, group, "m1", 5, tid, &[], 5000));
    assert_eq!(got, range(12, 12, 1));
    let r = share_ack(&mut c1, group, "m1", -1, tid, &[]);
    assert_eq!(r.error_code, 0);
    let got = acquired(&share_fetch(&mut c2, group, "m2", 5, tid, &[], 500));
    assert_eq!(
        got,
        range(12, 12, 2),
        "released at once, not after the lock"
    );
}

#[test]
fn acknowledgements_survive_a_sigkill() {
    let mut b = start_broker(&[]);
    let (topic, group) = ("share-durable", "share-durable-group");
    create_topic(&b.admin_config(), topic, 1, &[]);
    let mut c = b.raw();
    let tid = topic_id(&mut c, topic);
    produce_n(&b, topic, 20, "d");
    assert_eq!(alter_start(&mut c, group, topic, 0).error_code, 0);
    let h = heartbeat(&mut c, group, "m1", 0, Some(&[topic]));
    assert_eq!(h.error_code, 0);
    let got = acquired(&share_fetch(&mut c, group, "m1", 0, tid, &[], 5000));
    assert_eq!(got, range(0, 19, 1));
    // Accept 0..=9 and 12, release 10 and 11; 13..=19 stay acquired.
    let r = share_ack(
        &mut c,
        group,
        "m1",
        1,
        tid,
        &[
            batch(0, 9, &[ACCEPT]),
            batch(10, 12, &[RELEASE, RELEASE, ACCEPT]),
        ],
    );
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    drop(c);
    b.kill();
    b.start_again();

    let mut c = b.raw();
    assert_eq!(start_offset(&mut c, group, topic), 10);
    // The coordinator forgot the member: it joins again.
    let h = heartbeat(&mut c, group, "m1", h.member_epoch, None);
    assert_eq!(h.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(
        heartbeat(&mut c, group, "m1", 0, Some(&[topic])).error_code,
        0
    );
    // Nothing accepted comes back; the rest does, each counted once more.
    let got = acquired(&share_fetch(&mut c, group, "m1", 0, tid, &[], 5000));
    let mut want = range(10, 11, 2);
    want.extend(range(13, 19, 2));
    assert_eq!(got, want);
    let r = share_ack(
        &mut c,
        group,
        "m1",
        1,
        tid,
        &[batch(10, 11, &[ACCEPT]), batch(13, 19, &[ACCEPT])],
    );
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    drop(c);
    b.restart();
    let mut c = b.raw();
    assert_eq!(start_offset(&mut c, group, topic), 20);
}

#[test]
fn bad_share_requests_get_kafkas_errors_and_lose_nothing() {
    let b = start_broker(&[]);
    let (topic, group) = ("share-bad", "share-bad-group");
    create_topic(&b.admin_config(), topic, 1, &[]);
    let mut c = b.raw();
    let tid = topic_id(&mut c, topic);
    produce_n(&b, topic, 4, "e");
    assert_eq!(alter_start(&mut c, group, topic, 0).error_code, 0);

    // ShareGroupHeartbeat.
    assert_eq!(
        heartbeat(&mut c, group, "", 0, Some(&[topic])).error_code,
        INVALID_REQUEST
    );
    assert_eq!(
        heartbeat(&mut c, group, "m1", 0, None).error_code,
        INVALID_REQUEST
    );
    assert_eq!(
        heartbeat(&mut c, group, "m1", -2, None).error_code,
        INVALID_REQUEST
    );
    assert_eq!(
        heartbeat(&mut c, group, "nobody", 3, None).error_code,
        UNKNOWN_MEMBER_ID
    );
    let h = heartbeat(&mut c, group, "m1", 0, Some(&[topic]));
    assert_eq!(h.error_code, 0);
    assert_eq!(h.heartbeat_interval_ms, 500);
    let epoch = h.member_epoch;
    assert_eq!(
        heartbeat(&mut c, group, "m1", epoch + 1, None).error_code,
        FENCED_MEMBER_EPOCH
    );
    assert_eq!(heartbeat(&mut c, group, "m1", epoch, None).error_code, 0);
    // A group of another type is not a share group, and a share group's id is not theirs.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("classic-one")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    assert_eq!(c.request(&commit, 8).topics[0].partitions[0].error_code, 0);
    let r = heartbeat(&mut c, "classic-one", "m1", 0, Some(&[topic]));
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND);
    let commit = commit.with_group_id(GroupId(s(group)));
    assert_eq!(
        c.request(&commit, 8).topics[0].partitions[0].error_code,
        GROUP_ID_NOT_FOUND
    );
    // The offsets of a group with members stay as they are.
    assert_eq!(
        alter_start(&mut c, group, topic, 2).error_code,
        NON_EMPTY_GROUP
    );

    // Share sessions.
    let r = share_fetch(&mut c, group, "m1", 3, tid, &[], 0);
    assert_eq!(r.error_code, SHARE_SESSION_NOT_FOUND);
    let r = share_fetch(&mut c, group, "m1", 0, tid, &[batch(0, 0, &[ACCEPT])], 0);
    assert_eq!(
        r.error_code, INVALID_REQUEST,
        "no acknowledgements when opening"
    );
    let r = share_fetch(&mut c, group, "", 0, tid, &[], 0);
    assert_eq!(r.error_code, INVALID_REQUEST);
    let got = acquired(&share_fetch(&mut c, group, "m1", 0, tid, &[], 5000));
    assert_eq!(got, range(0, 3, 1));
    let r = share_fetch(&mut c, group, "m1", 7, tid, &[], 0);
    assert_eq!(r.error_code, INVALID_SHARE_SESSION_EPOCH);
    let r = share_ack(&mut c, group, "m1", 0, tid, &[batch(0, 0, &[ACCEPT])]);
    assert_eq!(r.error_code, INVALID_SHARE_SESSION_EPOCH);
    // Bad batches: per partition, and nothing of them applies.
    let r = share_ack(
        &mut c,
        group,
        "m1",
        1,
        tid,
        &[batch(0, 3, &[ACCEPT, ACCEPT])],
    );
    assert_eq!(r.responses[0].partitions[0].error_code, INVALID_REQUEST);
    let r = share_ack(&mut c, group, "m1", 2, tid, &[batch(0, 0, &[9])]);
    assert_eq!(r.responses[0].partitions[0].error_code, INVALID_REQUEST);
    let r = share_ack(&mut c, group, "m1", 3, tid, &[batch(2, 1, &[ACCEPT])]);
    assert_eq!(r.responses[0].partitions[0].error_code, INVALID_REQUEST);
    let r = share_ack(&mut c, group, "m1", 4, tid, &[batch(3, 9, &[ACCEPT])]);
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        INVALID_RECORD_STATE
    );
    let r = share_ack(&mut c, group, "m2", 1, tid, &[batch(0, 0, &[ACCEPT])]);
    assert_eq!(r.error_code, SHARE_SESSION_NOT_FOUND);
    // An unknown topic id in a session.
    let r = share_fetch(&mut c, group, "m1", 5, Uuid::from_u128(42), &[], 0);
    assert_eq!(r.error_code, 0);
    let unknown = r
        .responses
        .iter()
        .find(|t| t.topic_id == Uuid::from_u128(42))
        .expect("the unknown topic is answered");
    assert_eq!(unknown.partitions[0].error_code, UNKNOWN_TOPIC_ID);
    assert_eq!(
        start_offset(&mut c, group, topic),
        0,
        "nothing was acknowledged"
    );

    // The member's records are still its own, and acknowledging them works.
    let r = share_ack(&mut c, group, "m1", 6, tid, &[batch(0, 3, &[ACCEPT])]);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(start_offset(&mut c, group, topic), 4);
    // ListGroups and ShareGroupDescribe know it.
    let l = c.request(&ListGroupsRequest::default(), 5);
    let listed = l
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == group)
        .expect("listed");
    assert_eq!(listed.group_type.as_str(), "share");
    let d = c.request(
        &ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
        1,
    );
    let g = &d.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].member_id.as_str(), "m1");
    // Leaving, then deleting the group's offsets.
    assert_eq!(
        heartbeat(&mut c, group, "m1", epoch, None).member_epoch,
        epoch
    );
    assert_eq!(heartbeat(&mut c, group, "m1", -1, None).error_code, 0);
    let del = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![
            delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                .with_topic_name(TopicName(s(topic))),
        ]);
    let r = c.request(&del, 0);
    assert_eq!((r.error_code, r.responses[0].error_code), (0, 0));
    // With its state gone, the group has no start offset there.
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
    ]);
    let r = c.request(&req, 0);
    assert!(r.groups[0].topics.is_empty(), "{:?}", r.groups[0].topics);
    assert_eq!(start_offset(&mut c, group, topic), -1);
}

/// Short timeouts so that a failover resolves in seconds.
const FAST: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "3000"),
    ("group.share.heartbeat.interval.ms", "500"),
];

#[test]
fn share_partition_state_survives_a_leader_failover() {
    let mut cl = Cluster::start(3, FAST);
    let (topic, group) = ("share-failover", "share-failover-group");
    create_topic_rf(
        &cl.admin_config(),
        topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    );
    cl.wait_isr_all(topic, 1, 3, Duration::from_secs(30));
    let records: Vec<TestRecord> = (0..20)
        .map(|i| TestRecord::value(format!("f-{i}")).in_partition(0))
        .collect();
    let mut pcfg = cl.producer_config();
    pcfg.set("acks", "all");
    produce(&pcfg, topic, &records);

    // The group starts at 0, through its coordinator.
    let took = common::wait_until(Duration::from_secs(30), || {
        let Ok(coord) = cl.coordinator(1, group) else {
            return false;
        };
        cl.request(coord, &alter_request(group, topic, 0), 0)
            .is_ok_and(|r| r.error_code == 0 && r.responses[0].partitions[0].error_code == 0)
    });
    assert!(took, "the coordinator takes the start offset");
    let leader = cl.partition_view(topic, 0).expect("a leader").leader;
    let mut c = RawClient::connect(cl.node(leader).addr());
    let tid = topic_id(&mut c, topic);
    let got = acquired(&share_fetch(&mut c, group, "m1", 0, tid, &[], 5000));
    assert_eq!(got, range(0, 19, 1));
    let r = share_ack(&mut c, group, "m1", 1, tid, &[batch(0, 9, &[ACCEPT])]);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    drop(c);

    // The leader dies; the next one goes on from the stored state.
    cl.kill(leader);
    let next = cl.wait_leader_moved(topic, 0, leader, Duration::from_secs(30));
    let mut got = BTreeMap::new();
    let served = common::wait_until(Duration::from_secs(30), || {
        let mut c = RawClient::connect(cl.node(next).addr());
        let r = share_fetch(&mut c, group, "m2", 0, tid, &[], 2000);
        let p = &r.responses[0].partitions[0];
        if r.error_code != 0 || p.error_code != 0 || p.acquired_records.is_empty() {
            eprintln!(
                "new leader {next}: {} / {} {:?}",
                r.error_code, p.error_code, p.error_message
            );
            std::thread::sleep(Duration::from_millis(300));
            return false;
        }
        got = acquired(&r);
        true
    });
    assert!(served, "the new leader serves the share-partition");
    assert_eq!(
        got,
        range(10, 19, 2),
        "nothing accepted comes back; the rest does"
    );
    let coord = cl.coordinator(next, group).expect("a coordinator");
    let r = cl
        .request(coord, &describe_request(group, topic), 0)
        .expect("describe");
    assert_eq!(r.groups[0].topics[0].partitions[0].start_offset, 10);
}

/// An IncrementalAlterConfigs of group `group` (resource type GROUP, 32): (name, op, value).
fn alter_group(c: &mut RawClient, group: &str, ops: &[(&str, i8, Option<&str>)]) -> (i16, String) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let configs = ops
        .iter()
        .map(|(n, op, v)| {
            AlterableConfig::default()
                .with_name(s(n))
                .with_config_operation(*op)
                .with_value(v.map(s))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(GROUP_RESOURCE)
            .with_resource_name(s(group))
            .with_configs(configs),
    ]);
    let r = c.request(&req, 1);
    let r = &r.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// A group's configs as DescribeConfigs shows them: name -> (value, source).
fn describe_group(c: &mut RawClient, group: &str) -> BTreeMap<String, (String, i8)> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(GROUP_RESOURCE)
            .with_resource_name(s(group))
            .with_configuration_keys(None),
    ]);
    let r = c.request(&req, 4);
    let r = &r.results[0];
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    r.configs
        .iter()
        .map(|e| {
            let value = e.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (e.name.to_string(), (value, e.config_source))
        })
        .collect()
}

const GROUP_RESOURCE: i8 = 32;
const INVALID_CONFIG: i16 = 40;
// Config operations and sources.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_GROUP: i8 = 8;

#[test]
fn group_configs_set_where_a_share_group_starts_and_how_long_it_locks() {
    let mut b = start_broker(&[]);
    let (topic, group) = ("share-configs", "share-configs-group");
    create_topic(&b.admin_config(), topic, 1, &[]);
    let mut c = b.raw();
    let tid = topic_id(&mut c, topic);
    produce_n(&b, topic, 5, "a");

    // Before any override: the broker's settings (the test's static ones, or built in).
    let d = describe_group(&mut c, group);
    let names: Vec<&str> = d.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "consumer.heartbeat.interval.ms",
            "consumer.session.timeout.ms",
            "share.auto.offset.reset",
            "share.heartbeat.interval.ms",
            "share.record.lock.duration.ms",
            "share.session.timeout.ms",
        ]
    );
    assert_eq!(
        d["share.auto.offset.reset"],
        ("latest".into(), SOURCE_DEFAULT)
    );
    assert_eq!(
        d["share.record.lock.duration.ms"],
        ("30000".into(), SOURCE_DEFAULT)
    );
    assert_eq!(
        d["share.session.timeout.ms"],
        ("10000".into(), SOURCE_STATIC_BROKER)
    );

    // Bad names and values: INVALID_CONFIG with Kafka's text, and nothing is set.
    let refused = [
        (
            ("share.auto.offset.rest", SET, Some("earliest")),
            "Unknown group config name: share.auto.offset.rest",
        ),
        (
            ("share.auto.offset.reset", SET, Some("sideways")),
            "share.auto.offset.reset",
        ),
        (
            ("share.record.lock.duration.ms", SET, Some("999")),
            "share.record.lock.duration.ms",
        ),
        (
            ("share.record.lock.duration.ms", SET, None),
            "share.record.lock.duration.ms",
        ),
        (
            ("share.heartbeat.interval.ms", SET, Some("60000")),
            "share.session.timeout.ms must be greater than share.heartbeat.interval.ms",
        ),
        (
            ("share.auto.offset.reset", APPEND, Some("earliest")),
            "LIST",
        ),
    ];
    for (op, text) in refused {
        let (code, message) = alter_group(&mut c, group, &[op]);
        assert_eq!(code, INVALID_CONFIG, "{op:?}: {message}");
        assert!(message.contains(text), "{op:?}: {message}");
    }
    assert_eq!(describe_group(&mut c, group), d);

    // The group starts at the log start and locks records for 1.5 s, not the broker's 30 s.
    let (code, message) = alter_group(
        &mut c,
        group,
        &[
            ("share.auto.offset.reset", SET, Some("earliest")),
            ("share.record.lock.duration.ms", SET, Some("1500")),
            ("share.heartbeat.interval.ms", SET, Some("700")),
        ],
    );
    assert_eq!(code, 0, "{message}");
    let d = describe_group(&mut c, group);
    assert_eq!(
        d["share.auto.offset.reset"],
        ("earliest".into(), SOURCE_GROUP)
    );
    assert_eq!(
        d["share.record.lock.duration.ms"],
        ("1500".into(), SOURCE_GROUP)
    );
    // Another group keeps the broker's.
    let other = describe_group(&mut c, "another-group");
    assert_eq!(
        other["share.auto.offset.reset"],
        ("latest".into(), SOURCE_DEFAULT)
    );

    let h = heartbeat(&mut c, group, "m1", 0, Some(&[topic]));
    assert_eq!(h.error_code, 0, "{:?}", h.error_message);
    assert_eq!(h.heartbeat_interval_ms, 700);
    let mut c1 = b.raw();
    let r = share_fetch(&mut c1, group, "m1", 0, tid, &[], 5000);
    assert_eq!(
        acquired(&r),
        range(0, 4, 1),
        "earliest: the records produced before"
    );
    assert_eq!(r.acquisition_lock_timeout_ms, 1500);
    // Unacknowledged, they come back after the group's lock duration.
    let since = Instant::now();
    let r = share_fetch(&mut c1, group, "m1", 1, tid, &[], 10_000);
    assert_eq!(acquired(&r), range(0, 4, 2));
    assert!(
        since.elapsed() < Duration::from_secs(10),
        "redelivered after the group's lock, not the broker's"
    );
    let r = share_ack(&mut c1, group, "m1", 2, tid, &[batch(0, 4, &[ACCEPT])]);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(start_offset(&mut c, group, topic), 5);

    // Group configs are metadata: they survive a restart. Deleting one restores the broker's.
    b.restart();
    let mut c = b.raw();
    let d = describe_group(&mut c, group);
    assert_eq!(
        d["share.record.lock.duration.ms"],
        ("1500".into(), SOURCE_GROUP)
    );
    let (code, message) = alter_group(&mut c, group, &[("share.auto.offset.reset", DELETE, None)]);
    assert_eq!(code, 0, "{message}");
    let d = describe_group(&mut c, group);
    assert_eq!(
        d["share.auto.offset.reset"],
        ("latest".into(), SOURCE_DEFAULT)
    );
    assert_eq!(
        d["share.record.lock.duration.ms"],
        ("1500".into(), SOURCE_GROUP)
    );
}
