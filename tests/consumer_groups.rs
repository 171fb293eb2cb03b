//! Consumer groups of the broker-driven protocol (KIP-848, `group.protocol=consumer`), driven
//! by librdkafka consumers and by raw ConsumerGroupHeartbeat requests: one owner per partition
//! through joins, a clean leave and a SIGKILL, exact committed offsets, Kafka's errors for bad
//! heartbeats, and group state that survives a restart.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;

use common::clients::create_topic;
use common::members::{
    committed, log_ends, produce_spread, wait_for, ChildMember, Member, Registry, Seen,
    CONSUMER_PROTOCOL, SESSION_TIMEOUT_MS,
};
use common::{cli_ok, Broker, RawClient};

/// Longest wait for a group to settle after a membership change.
const SETTLE: Duration = Duration::from_secs(40);

// Kafka error codes.
const INVALID_REQUEST: i16 = 42;
const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNSUPPORTED_ASSIGNOR: i16 = 112;
const STALE_MEMBER_EPOCH: i16 = 113;
const UNRELEASED_INSTANCE_ID: i16 = 111;

/// Not a test on its own: with the child env var set it is the killable member's consumer
/// loop (see `common::members::ChildMember`).
#[test]
fn child_member_entry() {
    common::members::child_entry();
}

fn start_broker() -> Broker {
    Broker::start(&[
        ("group.consumer.session.timeout.ms", "6000"),
        ("group.consumer.heartbeat.interval.ms", "500"),
        ("group.initial.rebalance.delay.ms", "0"),
    ])
}

/// A member of the classic protocol (eager `range`), committing as the others do.
fn classic_config(b: &Broker, group: &str, name: &str) -> ClientConfig {
    let mut c = b.consumer_config();
    c.set("group.id", group)
        .set("client.id", name)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "500")
        .set("partition.assignment.strategy", "range")
        .set("max.poll.interval.ms", "30000")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("enable.auto.offset.store", "false")
        .set("topic.metadata.refresh.interval.ms", "2000");
    c
}

/// The group's type as ListGroups v5 reports it ("classic" or "consumer").
fn group_type(b: &Broker, group: &str) -> String {
    let r = b.raw().request(&ListGroupsRequest::default(), 5);
    r.groups
        .iter()
        .find(|g| g.group_id.as_str() == group)
        .map(|g| g.group_type.to_string())
        .unwrap_or_default()
}

fn member_config(b: &Broker, group: &str, name: &str) -> ClientConfig {
    let mut c = b.consumer_config();
    c.set("group.id", group)
        .set("group.protocol", "consumer")
        .set("client.id", name)
        .set("max.poll.interval.ms", "30000")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("enable.auto.offset.store", "false")
        .set("topic.metadata.refresh.interval.ms", "2000");
    c
}

fn describe(b: &Broker, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let req = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.into()))]);
    let mut r = b.raw().request(&req, 0);
    r.groups.remove(0)
}

#[test]
fn consumer_protocol_members_keep_one_owner_per_partition_and_commit_exactly() {
    let b = start_broker();
    let (topic, group, parts) = ("kip848", "kip848-group", 6);
    create_topic(&b.admin_config(), topic, parts, &[]);
    let reg = Arc::new(Registry::default());
    let seen: Seen = Arc::default();
    produce_spread(&b, topic, parts, 0, 25_000);
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::spawn(member_config(&b, group, n), n, topic, &reg, &seen))
        .collect();
    let three: BTreeMap<String, usize> = [("a".into(), 2), ("b".into(), 2), ("c".into(), 2)].into();
    wait_for("a, b, c own 2 partitions each", SETTLE, || {
        reg.counts() == three
    });
    let d = describe(&b, group);
    assert_eq!(d.error_code, 0);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.assignor_name.as_str(), "uniform");
    assert_eq!(d.members.len(), 3);
    for m in &d.members {
        assert_eq!(
            m.member_epoch, d.group_epoch,
            "every member at the group epoch"
        );
        assert_eq!(
            m.assignment.topic_partitions,
            m.target_assignment.topic_partitions
        );
    }
    // The tool shows the epochs and each member's current and target assignment.
    let out = cli_ok(&b, &["groups", "describe", "--group", group]);
    let epoch = d.group_epoch.to_string();
    let summary = out.lines().nth(1).expect("summary row");
    // GROUP COORDINATOR (ID) STRATEGY STATE GROUP-EPOCH TARGET-EPOCH #MEMBERS
    let cells: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(
        (cells[0], cells[3], cells[4], cells[5], cells[6]),
        (group, "uniform", "Stable", epoch.as_str(), epoch.as_str()),
        "{out}"
    );
    let member_rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.contains("CURRENT-EPOCH"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(member_rows.len(), 3, "{out}");
    for r in &member_rows {
        // GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS CURRENT-EPOCH CURRENT TARGET-EPOCH TARGET
        assert_eq!(r[4], "2", "{out}");
        assert_eq!(r[5], epoch, "{out}");
        assert_eq!(r[6], r[8], "current is the target: {out}");
        assert!(r[6].starts_with(&format!("{topic}:")), "{out}");
    }

    // A fourth member joins (in a child process, so it can be killed later).
    let child = ChildMember::spawn(&b, group, topic, CONSUMER_PROTOCOL, &reg);
    wait_for("4 owners of 6 partitions", SETTLE, || {
        reg.owned() == 6 && reg.counts().len() == 4
    });
    produce_spread(&b, topic, parts, 25_000, 25_000);

    // One leaves cleanly.
    members.remove(2).stop();
    wait_for("a, b and the child own all 6 partitions", SETTLE, || {
        let c = reg.counts();
        reg.owned() == 6 && c.len() == 3 && !c.contains_key("c")
    });
    produce_spread(&b, topic, parts, 50_000, 25_000);

    // One is killed: its session (6 s here) must end before its partitions move.
    let killed_at = Instant::now();
    child.kill(&reg);
    let two: BTreeMap<String, usize> = [("a".into(), 3), ("b".into(), 3)].into();
    wait_for(
        "a and b own 3 partitions each after the kill",
        SETTLE,
        || reg.counts() == two,
    );
    let took = killed_at.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "the killed member's partitions moved after {took:?}, before its session ended"
    );
    produce_spread(&b, topic, parts, 75_000, 25_000);

    let ends = log_ends(&b, topic, parts);
    assert_eq!(ends.values().sum::<i64>(), 100_000, "log ends {ends:?}");
    wait_for(
        "committed offsets reach the log end",
        Duration::from_secs(60),
        || committed(&b, group, topic) == ends,
    );
    for m in members {
        m.stop();
    }
    reg.assert_no_violations();
    let seen = seen.lock().unwrap();
    for (p, end) in &ends {
        let missing = (0..*end).filter(|o| !seen.contains(&(*p, *o))).count();
        assert_eq!(
            missing, 0,
            "partition {p}: {missing} of {end} never consumed"
        );
    }
    assert_eq!(committed(&b, group, topic), ends, "committed after close");
    let d = describe(&b, group);
    assert_eq!(d.group_state.as_str(), "Empty");
    assert!(d.members.is_empty());
}

fn heartbeat(
    c: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
    owned: Option<Vec<TopicPartitions>>,
) -> ConsumerGroupHeartbeatResponse {
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_string(member.into()))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 })
        .with_subscribed_topic_names(topics.map(|ts| {
            ts.iter()
                .map(|t| TopicName(StrBytes::from_string(t.to_string())))
                .collect()
        }))
        .with_topic_partitions(owned);
    c.request(&req, 1)
}

fn owned_of(r: &ConsumerGroupHeartbeatResponse) -> Vec<TopicPartitions> {
    r.assignment
        .as_ref()
        .map(|a| {
            a.topic_partitions
                .iter()
                .map(|tp| {
                    TopicPartitions::default()
                        .with_topic_id(tp.topic_id)
                        .with_partitions(tp.partitions.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn commit(
    c: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topic: &str,
    offset: i64,
) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id_or_member_epoch(epoch)
        .with_member_id(StrBytes::from_string(member.into()))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let r = c.request(&req, 9);
    r.topics[0].partitions[0].error_code
}

fn fetch_committed(
    c: &mut RawClient,
    group: &str,
    member: Option<(&str, i32)>,
    topic: &str,
) -> (i16, i64) {
    let g = OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(member.map(|(m, _)| StrBytes::from_string(m.into())))
        .with_member_epoch(member.map_or(-1, |(_, e)| e))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_indexes(vec![0])]));
    let r = c.request(&OffsetFetchRequest::default().with_groups(vec![g]), 9);
    let g = &r.groups[0];
    if g.error_code != 0 {
        return (g.error_code, -1);
    }
    (0, g.topics[0].partitions[0].committed_offset)
}

#[test]
fn bad_heartbeats_get_kafkas_errors_and_nothing_committed_is_lost() {
    let mut b = start_broker();
    let (topic, group) = ("kip848-raw", "kip848-raw-group");
    create_topic(&b.admin_config(), topic, 2, &[]);
    let mut c = b.raw();

    // Join: the member names itself (v1), gets epoch 1 and both partitions.
    let r = heartbeat(&mut c, group, "m1", 0, Some(&[topic]), Some(vec![]));
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.member_id.as_deref(), Some("m1"));
    assert_eq!(r.heartbeat_interval_ms, 500);
    let epoch = r.member_epoch;
    assert!(epoch >= 1);
    let owned = owned_of(&r);
    assert_eq!(owned.iter().map(|t| t.partitions.len()).sum::<usize>(), 2);
    assert_eq!(commit(&mut c, group, "m1", epoch, topic, 42), 0);

    // Stale and future epochs are fenced; unknown members are unknown; bad shapes are
    // INVALID_REQUEST; a foreign assignor is refused.
    let r = heartbeat(&mut c, group, "m1", epoch + 5, None, None);
    assert_eq!(r.error_code, FENCED_MEMBER_EPOCH);
    let r = heartbeat(&mut c, group, "nobody", epoch, None, None);
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    let r = heartbeat(&mut c, group, "m1", -3, None, None);
    assert_eq!(r.error_code, INVALID_REQUEST);
    let r = heartbeat(&mut c, group, "", 0, Some(&[topic]), Some(vec![]));
    assert_eq!(r.error_code, INVALID_REQUEST, "v1 needs a member id");
    let r = heartbeat(&mut c, group, "m2", 0, Some(&[topic]), Some(owned.clone()));
    assert_eq!(
        r.error_code, INVALID_REQUEST,
        "a joining member owns nothing"
    );
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_string("m3".into()))
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_string(topic.into()))]))
        .with_server_assignor(Some(StrBytes::from_string("sticky".into())))
        .with_topic_partitions(Some(vec![]));
    assert_eq!(c.request(&req, 1).error_code, UNSUPPORTED_ASSIGNOR);

    // Offsets: a commit or fetch at another epoch is stale, by an unknown member refused.
    assert_eq!(
        commit(&mut c, group, "m1", epoch - 1, topic, 7),
        STALE_MEMBER_EPOCH
    );
    assert_eq!(
        commit(&mut c, group, "m1", epoch + 1, topic, 7),
        STALE_MEMBER_EPOCH
    );
    assert_eq!(
        commit(&mut c, group, "ghost", epoch, topic, 7),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        fetch_committed(&mut c, group, Some(("m1", epoch + 1)), topic).0,
        STALE_MEMBER_EPOCH
    );
    assert_eq!(
        fetch_committed(&mut c, group, Some(("m1", epoch)), topic),
        (0, 42)
    );
    assert_eq!(fetch_committed(&mut c, group, None, topic), (0, 42));

    // A static member: a second instance with the same id is refused while the first is in.
    let join_static = |c: &mut RawClient, member: &str| {
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_instance_id(Some(StrBytes::from_string("instance-1".into())))
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_string(topic.into()))]))
            .with_topic_partitions(Some(vec![]));
        c.request(&req, 1)
    };
    assert_eq!(join_static(&mut c, "s1").error_code, 0);
    assert_eq!(join_static(&mut c, "s2").error_code, UNRELEASED_INSTANCE_ID);

    // The broker keeps serving, and after a hard restart the group (members, epochs) and the
    // committed offset are all there: the member heartbeats on at its epoch.
    c.assert_served("after bad heartbeats");
    let before = describe(&b, group);
    b.kill();
    b.start_again();
    let mut c = b.raw();
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = heartbeat(&mut c, group, "m1", epoch, None, None);
        if r.error_code == 0 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
        c = b.raw();
    };
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let after = describe(&b, group);
    assert_eq!(after.group_epoch, before.group_epoch);
    assert_eq!(after.assignment_epoch, before.assignment_epoch);
    let view = |d: &consumer_group_describe_response::DescribedGroup| {
        let mut v: Vec<_> = d
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.member_epoch,
                    m.target_assignment.clone(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(view(&after), view(&before));
    assert_eq!(fetch_committed(&mut c, group, None, topic), (0, 42));
}

#[test]
fn a_group_upgrades_online_from_classic_to_consumer_members_and_back() {
    let b = start_broker();
    let (topic, group, parts) = ("kip848-migrate", "kip848-migrate-group", 6);
    create_topic(&b.admin_config(), topic, parts, &[]);
    let reg = Arc::new(Registry::default());
    let seen: Seen = Arc::default();
    let classic = |n: &str| Member::spawn(classic_config(&b, group, n), n, topic, &reg, &seen);
    let consumer = |n: &str| Member::spawn(member_config(&b, group, n), n, topic, &reg, &seen);
    let mut produced = 0;
    let mut more = |n: usize| {
        produce_spread(&b, topic, parts, produced, n);
        produced += n;
    };
    let owners = |want: &[&str]| {
        let c = reg.counts();
        reg.owned() == 6 && c.len() == want.len() && want.iter().all(|w| c.contains_key(*w))
    };

    // A classic group of two.
    more(10_000);
    let a = classic("a");
    let bb = classic("b");
    wait_for("classic a and b own all partitions", SETTLE, || {
        owners(&["a", "b"])
    });
    assert_eq!(group_type(&b, group), "classic");

    // A consumer-protocol member joins: the group becomes a consumer group online, and the
    // classic members stay in it.
    let c = consumer("c");
    wait_for("a, b and c own all partitions", SETTLE, || {
        owners(&["a", "b", "c"])
    });
    assert_eq!(group_type(&b, group), "consumer");
    let d = describe(&b, group);
    assert_eq!(d.members.len(), 3);
    more(10_000);

    // The classic members leave and another consumer-protocol member joins: an upgraded
    // group.
    let dd = consumer("d");
    a.stop();
    bb.stop();
    wait_for("c and d own all partitions", SETTLE, || owners(&["c", "d"]));
    assert_eq!(group_type(&b, group), "consumer");
    more(10_000);

    // Back: a classic member joins the consumer group, then the consumer-protocol members
    // leave; the group turns classic again and the classic members rebalance among themselves.
    let e = classic("e");
    wait_for("c, d and e own all partitions", SETTLE, || {
        owners(&["c", "d", "e"])
    });
    c.stop();
    dd.stop();
    wait_for("e owns all partitions", SETTLE, || owners(&["e"]));
    assert_eq!(group_type(&b, group), "classic");
    let f = classic("f");
    wait_for("e and f own all partitions", SETTLE, || owners(&["e", "f"]));
    more(10_000);

    let ends = log_ends(&b, topic, parts);
    assert_eq!(ends.values().sum::<i64>(), produced as i64);
    wait_for(
        "committed offsets reach the log end",
        Duration::from_secs(60),
        || committed(&b, group, topic) == ends,
    );
    e.stop();
    f.stop();
    reg.assert_no_violations();
    let seen = seen.lock().unwrap();
    for (p, end) in &ends {
        let missing = (0..*end).filter(|o| !seen.contains(&(*p, *o))).count();
        assert_eq!(
            missing, 0,
            "partition {p}: {missing} of {end} never consumed"
        );
    }
    assert_eq!(committed(&b, group, topic), ends, "committed after close");
}
