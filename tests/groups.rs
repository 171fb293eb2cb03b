//! Consumer groups with real clients: librdkafka consumers (eager range/roundrobin,
//! cooperative-sticky, static membership) against a real broker, the `gregor groups` tool,
//! and raw-protocol requests for every bad input the coordinator must reject as Kafka does.
//!
//! Partition ownership is tracked through the rebalance callbacks of every member, including
//! one run in a child process (this test binary re-executed) so that it can be SIGKILLed:
//! each assign checks that nobody else holds the partition at that moment.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use common::clients::create_topic;
use common::members::{
    committed, gregor_client, log_ends, produce_spread, wait_for, ChildMember, Member, Registry,
    Seen, Tracker, SESSION_TIMEOUT_MS,
};
use common::{cli, cli_ok, encode_request, wait_until, Broker, RawClient};

/// Longest wait for a group to settle after a membership change.
const SETTLE: Duration = Duration::from_secs(40);

// Kafka error codes.
const ILLEGAL_GENERATION: i16 = 22;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

fn start_broker() -> Broker {
    Broker::start(&[("group.initial.rebalance.delay.ms", "0")])
}

fn group_config(b: &Broker, group: &str, strategy: &str, name: &str) -> ClientConfig {
    let mut c = b.consumer_config();
    c.set("group.id", group)
        .set("client.id", name)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "500")
        .set("max.poll.interval.ms", "30000")
        .set("partition.assignment.strategy", strategy)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("enable.auto.offset.store", "false")
        .set("topic.metadata.refresh.interval.ms", "2000");
    c
}

/// Not a test on its own: with the child env var set it is the killable member's consumer
/// loop (see `common::members::ChildMember`).
#[test]
fn child_member_entry() {
    common::members::child_entry();
}

// ----- broker-side views -----

/// (state, member count) from DescribeGroups.
fn group_state(b: &Broker, group: &str) -> (String, usize) {
    let g = gregor_client(b)
        .describe_group(group)
        .expect("describe group");
    (g.group_state.to_string(), g.members.len())
}

/// Committed offsets, retrying while the coordinator is (re)loading after a restart.
fn committed_when_loaded(b: &Broker, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match gregor_client(b).committed_offsets(group) {
            Ok(rows) => {
                return rows
                    .into_iter()
                    .filter(|(t, _, o)| t == topic && *o >= 0)
                    .map(|(_, p, o)| (p, o))
                    .collect()
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("offset fetch after restart: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("offset fetch of {group} after restart: {e}"),
        }
    }
}

// ----- librdkafka scenarios -----

#[test]
fn rebalances_keep_one_owner_per_partition_and_commit_exactly() {
    let b = start_broker();
    let (topic, group, parts) = ("g-main", "main-group", 6);
    create_topic(&b.admin_config(), topic, parts, &[]);
    let reg = Arc::new(Registry::default());
    let seen: Seen = Arc::default();
    let cfg = |name: &str| group_config(&b, group, "range", name);
    produce_spread(&b, topic, parts, 0, 25_000);
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::spawn(cfg(n), n, topic, &reg, &seen))
        .collect();
    let three: BTreeMap<String, usize> = [("a".into(), 2), ("b".into(), 2), ("c".into(), 2)].into();
    wait_for("a, b, c own 2 partitions each", SETTLE, || {
        reg.counts() == three
    });

    // A fourth member joins (in a child process, so it can be killed later).
    let child = ChildMember::spawn(&b, group, topic, "range", &reg);
    let four = wait_until(SETTLE, || reg.owned() == 6 && reg.counts().len() == 4);
    assert!(
        four,
        "4 owners of 6 partitions: {:?}, group {:?}",
        reg.counts(),
        group_state(&b, group)
    );
    produce_spread(&b, topic, parts, 25_000, 25_000);

    // One leaves cleanly.
    members.remove(2).stop();
    wait_for("a, b and the child own all 6 partitions", SETTLE, || {
        let c = reg.counts();
        reg.owned() == 6 && c.len() == 3 && !c.contains_key("c")
    });
    produce_spread(&b, topic, parts, 50_000, 25_000);

    // One is killed: the session timeout must remove it.
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
        "the killed member's partitions moved after {took:?}, before its session timed out"
    );
    produce_spread(&b, topic, parts, 75_000, 25_000);

    let ends = log_ends(&b, topic, parts);
    assert_eq!(
        ends.values().sum::<i64>(),
        100_000,
        "log end offsets {ends:?}"
    );
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
            "partition {p}: {missing} of {end} records never consumed"
        );
    }
    assert_eq!(committed(&b, group, topic), ends, "committed after close");
    assert_eq!(group_state(&b, group), ("Empty".to_string(), 0));
}

#[test]
fn eight_consumers_on_six_partitions_leave_two_idle() {
    let b = start_broker();
    let (topic, group) = ("g-eight", "eight");
    create_topic(&b.admin_config(), topic, 6, &[]);
    let reg = Arc::new(Registry::default());
    let seen: Seen = Arc::default();
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let members: Vec<Member> = names
        .iter()
        .map(|n| {
            Member::spawn(
                group_config(&b, group, "roundrobin", n),
                n,
                topic,
                &reg,
                &seen,
            )
        })
        .collect();
    let settled = || {
        let counts = reg.counts();
        group_state(&b, group) == ("Stable".to_string(), 8)
            && counts.len() == 6
            && counts.values().all(|c| *c == 1)
    };
    wait_for(
        "6 members with one partition each in a stable group of 8",
        SETTLE,
        settled,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        settled(),
        "the group did not stay settled: {:?}",
        reg.counts()
    );
    let idle: Vec<&str> = names
        .iter()
        .filter(|n| reg.owned_by(n).is_empty())
        .map(String::as_str)
        .collect();
    assert_eq!(idle.len(), 2, "idle members: {idle:?}");
    // The tool shows the two idle members with no partition.
    let out = cli_ok(&b, &["groups", "describe", "--group", group]);
    let rows = describe_rows(&out);
    assert_eq!(rows.len(), 8, "{out}");
    assert_eq!(rows.iter().filter(|r| r[1] == "-").count(), 2, "{out}");
    assert!(out.contains("Stable"), "{out}");
    reg.assert_no_violations();
    drop(members);
}

#[test]
fn two_groups_read_one_topic_independently() {
    let b = start_broker();
    let topic = "g-shared";
    create_topic(&b.admin_config(), topic, 3, &[]);
    produce_spread(&b, topic, 3, 0, 3_000);
    let ends = log_ends(&b, topic, 3);
    let reg1 = Arc::new(Registry::default());
    let reg2 = Arc::new(Registry::default());
    let seen1: Seen = Arc::default();
    let seen2: Seen = Arc::default();
    let m1 = Member::spawn(
        group_config(&b, "shared-1", "range", "x"),
        "x",
        topic,
        &reg1,
        &seen1,
    );
    wait_for("group 1 commits everything", SETTLE, || {
        committed(&b, "shared-1", topic) == ends
    });
    // Group 2 starts after group 1 finished and still reads everything from the start.
    let m2 = Member::spawn(
        group_config(&b, "shared-2", "range", "y"),
        "y",
        topic,
        &reg2,
        &seen2,
    );
    wait_for("group 2 commits everything", SETTLE, || {
        committed(&b, "shared-2", topic) == ends
    });
    assert_eq!(seen1.lock().unwrap().len(), 3_000);
    assert_eq!(seen2.lock().unwrap().len(), 3_000);
    m1.stop();
    m2.stop();
    // Resetting one group leaves the other alone.
    cli_ok(
        &b,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "shared-1",
            "--topic",
            topic,
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(
        committed(&b, "shared-1", topic),
        [(0, 0), (1, 0), (2, 0)].into()
    );
    assert_eq!(committed(&b, "shared-2", topic), ends);
    let list = cli_ok(&b, &["groups", "list"]);
    assert!(
        list.lines().any(|l| l == "shared-1") && list.lines().any(|l| l == "shared-2"),
        "{list}"
    );
}

/// A consumer that joins `group`, waits for all `partitions` of `topic`, and commits `offsets`.
fn commit_as_member(
    b: &Broker,
    group: &str,
    topic: &str,
    partitions: usize,
    offsets: &[(i32, i64)],
) {
    let reg = Arc::new(Registry::default());
    let ctx = Tracker {
        name: "committer".into(),
        registry: reg.clone(),
        log: Mutex::new(Vec::new()),
        rebalances: AtomicUsize::new(0),
    };
    let cfg = group_config(b, group, "range", "committer");
    let c: BaseConsumer<Tracker> = cfg.create_with_context(ctx).expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + SETTLE;
    while reg.owned() < partitions {
        assert!(
            Instant::now() < deadline,
            "committer never got its partitions"
        );
        let _ = c.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

#[test]
fn committed_offsets_survive_clean_and_hard_restarts() {
    let mut b = start_broker();
    let (topic, group) = ("g-durable", "durable");
    create_topic(&b.admin_config(), topic, 3, &[]);
    produce_spread(&b, topic, 3, 0, 300);
    commit_as_member(&b, group, topic, 3, &[(0, 10), (1, 20), (2, 30)]);
    let first: BTreeMap<i32, i64> = [(0, 10), (1, 20), (2, 30)].into();
    assert_eq!(committed(&b, group, topic), first);

    b.restart();
    assert_eq!(
        committed_when_loaded(&b, group, topic),
        first,
        "after a clean restart"
    );
    // A member resumes where the group left off.
    let reg = Arc::new(Registry::default());
    let seen: Seen = Arc::default();
    let m = Member::spawn(
        group_config(&b, group, "range", "resumer"),
        "resumer",
        topic,
        &reg,
        &seen,
    );
    wait_for("the resumed member reads the rest", SETTLE, || {
        seen.lock().unwrap().len() >= 240
    });
    m.stop();
    let seen = seen.lock().unwrap().clone();
    for (p, from) in &first {
        let min = seen.iter().filter(|(q, _)| q == p).map(|(_, o)| *o).min();
        assert_eq!(
            min,
            Some(*from),
            "partition {p} resumed at the committed offset"
        );
    }
    commit_as_member(&b, group, topic, 3, &[(0, 40), (1, 50), (2, 60)]);
    let second: BTreeMap<i32, i64> = [(0, 40), (1, 50), (2, 60)].into();

    b.kill();
    b.start_again();
    assert_eq!(
        committed_when_loaded(&b, group, topic),
        second,
        "after SIGKILL"
    );
}

#[test]
fn static_member_restarted_within_session_timeout_keeps_its_partitions() {
    let b = start_broker();
    let (topic, group) = ("g-static", "static");
    create_topic(&b.admin_config(), topic, 4, &[]);
    let reg = Arc::new(Registry::default());
    let seen: Seen = Arc::default();
    let cfg = |name: &str| {
        let mut c = group_config(&b, group, "range", name);
        c.set("group.instance.id", format!("instance-{name}"));
        c
    };
    let mut a = Member::spawn(cfg("sa"), "sa", topic, &reg, &seen);
    let mut bm = Member::spawn(cfg("sb"), "sb", topic, &reg, &seen);
    let split: BTreeMap<String, usize> = [("sa".into(), 2), ("sb".into(), 2)].into();
    wait_for("sa and sb own 2 partitions each", SETTLE, || {
        reg.counts() == split
    });
    std::thread::sleep(Duration::from_secs(1));
    // Restart each in turn (one of them is the group leader); the other must not notice.
    for name in ["sb", "sa"] {
        let (restarted, other) = if name == "sb" { (bm, a) } else { (a, bm) };
        let before = reg.owned_by(name);
        let other_rebalances = other.rebalances();
        let other_parts = reg.owned_by(&other.tracker.name);
        restarted.stop();
        let again = Member::spawn(cfg(name), name, topic, &reg, &seen);
        wait_for(
            &format!("{name} gets its partitions back"),
            Duration::from_secs(20),
            || reg.owned_by(name) == before,
        );
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            other.rebalances(),
            other_rebalances,
            "restarting static member {name} rebalanced the other member: {:?}",
            other.log()
        );
        assert_eq!(reg.owned_by(&other.tracker.name), other_parts);
        assert_eq!(reg.owned_by(name), before);
        if name == "sb" {
            (bm, a) = (again, other);
        } else {
            (a, bm) = (again, other);
        }
    }
    assert_eq!(group_state(&b, group), ("Stable".to_string(), 2));
    reg.assert_no_violations();
    drop((a, bm));
}

#[test]
fn cooperative_sticky_join_moves_only_the_partitions_taken() {
    let b = start_broker();
    let (topic, group) = ("g-coop", "coop");
    create_topic(&b.admin_config(), topic, 6, &[]);
    produce_spread(&b, topic, 6, 0, 600);
    let reg = Arc::new(Registry::default());
    let seen: Seen = Arc::default();
    let cfg = |name: &str| group_config(&b, group, "cooperative-sticky", name);
    let a = Member::spawn(cfg("ca"), "ca", topic, &reg, &seen);
    let bm = Member::spawn(cfg("cb"), "cb", topic, &reg, &seen);
    let split: BTreeMap<String, usize> = [("ca".into(), 3), ("cb".into(), 3)].into();
    wait_for("ca and cb own 3 partitions each", SETTLE, || {
        reg.counts() == split
    });
    std::thread::sleep(Duration::from_secs(1));
    let before_a = reg.owned_by("ca");
    let before_b = reg.owned_by("cb");
    let (log_a, log_b) = (a.log().len(), bm.log().len());
    let c = Member::spawn(cfg("cc"), "cc", topic, &reg, &seen);
    let three: BTreeMap<String, usize> =
        [("ca".into(), 2), ("cb".into(), 2), ("cc".into(), 2)].into();
    wait_for("2 partitions each after cc joins", SETTLE, || {
        reg.counts() == three
    });
    std::thread::sleep(Duration::from_secs(1));
    let taken: BTreeSet<i32> = reg.owned_by("cc").into_iter().collect();
    for (m, before, from) in [(&a, &before_a, log_a), (&bm, &before_b, log_b)] {
        let log = m.log();
        let revoked: Vec<i32> = log[from..]
            .iter()
            .filter(|(k, _)| *k == "revoke")
            .flat_map(|(_, ps)| ps.clone())
            .collect();
        assert_eq!(
            revoked.len(),
            1,
            "{} revoked {revoked:?}: {:?}",
            m.tracker.name,
            &log[from..]
        );
        assert!(
            taken.contains(&revoked[0]),
            "{} gave up {revoked:?}, cc took {taken:?}",
            m.tracker.name
        );
        let kept: Vec<i32> = before
            .iter()
            .copied()
            .filter(|p| !revoked.contains(p))
            .collect();
        assert_eq!(
            reg.owned_by(&m.tracker.name),
            kept,
            "{} keeps the rest",
            m.tracker.name
        );
    }
    reg.assert_no_violations();
    // The others kept consuming: new records on every partition reach their owners.
    let before = seen.lock().unwrap().len();
    produce_spread(&b, topic, 6, 600, 600);
    wait_for("all 1200 records consumed", SETTLE, || {
        seen.lock().unwrap().len() >= before + 600
    });
    drop((a, bm, c));
}

// ----- the group tool -----

fn cli_err(b: &Broker, args: &[&str]) -> String {
    let out = cli(b, args);
    assert!(!out.status.success(), "gregor {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The rows of describe's partition table (after its header line), split on whitespace.
fn describe_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip_while(|l| !l.starts_with("GROUP ") || !l.contains("CURRENT-OFFSET"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// (partition, current, log end, lag, consumer id) per partition row of describe.
fn describe_partitions(out: &str) -> Vec<(String, String, String, String, String)> {
    describe_rows(out)
        .into_iter()
        .filter(|r| r[2] != "-")
        .map(|r| {
            (
                r[2].clone(),
                r[3].clone(),
                r[4].clone(),
                r[5].clone(),
                r[6].clone(),
            )
        })
        .collect()
}

/// The NEW-OFFSET column of a reset plan, by partition.
fn plan(out: &str) -> BTreeMap<i32, i64> {
    out.lines()
        .skip_while(|l| !l.contains("NEW-OFFSET"))
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            Some((c.get(2)?.parse().ok()?, c.get(3)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn group_tool_describes_lag_and_resets_a_stopped_group() {
    let b = start_broker();
    let (topic, group) = ("g-tools", "tools");
    create_topic(&b.admin_config(), topic, 3, &[]);
    let t0 = common::now_ms();
    produce_spread(&b, topic, 3, 0, 90);

    // An active member with committed offsets 10, 20, 30 of 30 each.
    let reg = Arc::new(Registry::default());
    let ctx = Tracker {
        name: "tool-member".into(),
        registry: reg.clone(),
        log: Mutex::new(Vec::new()),
        rebalances: AtomicUsize::new(0),
    };
    let c: BaseConsumer<Tracker> = group_config(&b, group, "range", "tool-member")
        .create_with_context(ctx)
        .expect("consumer");
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + SETTLE;
    while reg.owned() < 3 {
        assert!(Instant::now() < deadline, "member never got its partitions");
        let _ = c.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in [(0, 10), (1, 20), (2, 30)] {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();

    let out = cli_ok(&b, &["groups", "describe", "--group", group]);
    let rows = describe_partitions(&out);
    let want = [
        ("0", "10", "30", "20"),
        ("1", "20", "30", "10"),
        ("2", "30", "30", "0"),
    ];
    assert_eq!(rows.len(), 3, "{out}");
    for (row, (p, cur, end, lag)) in rows.iter().zip(want) {
        assert_eq!(
            (&*row.0, &*row.1, &*row.2, &*row.3),
            (p, cur, end, lag),
            "{out}"
        );
        assert_ne!(row.4, "-", "an active member owns partition {p}: {out}");
    }
    assert!(out.contains("Stable") && out.contains("range"), "{out}");

    // An active group cannot be reset.
    let err = cli_err(
        &b,
        &[
            "groups",
            "reset-offsets",
            "--group",
            group,
            "--topic",
            topic,
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(err.contains("inactive"), "{err}");
    assert_eq!(
        committed(&b, group, topic),
        [(0, 10), (1, 20), (2, 30)].into()
    );
    let err = cli_err(&b, &["groups", "delete", "--group", group]);
    assert!(err.contains("NON_EMPTY_GROUP"), "{err}");

    drop(c);
    wait_for("the group is empty", SETTLE, || {
        group_state(&b, group).0 == "Empty"
    });
    let out = cli_ok(&b, &["groups", "describe", "--group", group]);
    assert!(out.contains("has no active members"), "{out}");
    let rows = describe_partitions(&out);
    assert_eq!(
        rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(),
        ["20", "10", "0"],
        "{out}"
    );
    assert!(rows.iter().all(|r| r.4 == "-"), "{out}");

    let reset = |extra: &[&str]| {
        let mut args = vec!["groups", "reset-offsets", "--group", group];
        args.extend_from_slice(extra);
        let out = cli_ok(&b, &args);
        (plan(&out), committed(&b, group, topic))
    };
    let (p, now) = reset(&["--topic", topic, "--to-earliest"]);
    assert_eq!(p, [(0, 0), (1, 0), (2, 0)].into(), "plan of --to-earliest");
    assert_eq!(
        now,
        [(0, 10), (1, 20), (2, 30)].into(),
        "a dry run changes nothing"
    );
    let (_, now) = reset(&["--topic", topic, "--to-earliest", "--dry-run"]);
    assert_eq!(
        now,
        [(0, 10), (1, 20), (2, 30)].into(),
        "--dry-run changes nothing"
    );
    let (_, now) = reset(&[
        "--topic",
        &format!("{topic}:1"),
        "--shift-by",
        "-5",
        "--execute",
    ]);
    assert_eq!(
        now,
        [(0, 10), (1, 15), (2, 30)].into(),
        "--shift-by -5 on partition 1"
    );
    let (_, now) = reset(&["--all-topics", "--to-offset", "25", "--execute"]);
    assert_eq!(now, [(0, 25), (1, 25), (2, 25)].into(), "--to-offset 25");
    let (_, now) = reset(&["--topic", topic, "--to-offset", "1000", "--execute"]);
    assert_eq!(
        now,
        [(0, 30), (1, 30), (2, 30)].into(),
        "--to-offset past the end is clamped"
    );
    let (_, now) = reset(&["--topic", topic, "--to-earliest", "--execute"]);
    assert_eq!(now, [(0, 0), (1, 0), (2, 0)].into(), "--to-earliest");
    let (_, now) = reset(&["--topic", topic, "--to-latest", "--execute"]);
    assert_eq!(now, [(0, 30), (1, 30), (2, 30)].into(), "--to-latest");
    let past = datetime(t0 - 60_000);
    let (_, now) = reset(&["--topic", topic, "--to-datetime", &past, "--execute"]);
    assert_eq!(now, [(0, 0), (1, 0), (2, 0)].into(), "--to-datetime {past}");

    let list = cli_ok(&b, &["groups", "list"]);
    assert!(list.lines().any(|l| l == group), "{list}");
    cli_ok(&b, &["groups", "delete", "--group", group]);
    let list = cli_ok(&b, &["groups", "list"]);
    assert!(!list.lines().any(|l| l == group), "{list}");
    let err = cli_err(&b, &["groups", "describe", "--group", group]);
    assert!(err.contains("does not exist"), "{err}");
    let err = cli_err(&b, &["groups", "delete", "--group", group]);
    assert!(err.contains("GROUP_ID_NOT_FOUND"), "{err}");
}

/// `ms` as `YYYY-MM-DDTHH:mm:SS.sssZ`.
fn datetime(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1_000 % 60,
        rem % 1_000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

// ----- raw protocol: batched requests and bad input -----

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    rebalance_ms: i32,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_session_timeout_ms(6_000)
        .with_rebalance_timeout_ms(rebalance_ms)
        .with_member_id(sb(member))
        .with_group_instance_id(instance.map(sb))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(Bytes::from_static(
                b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff",
            ))])
}

/// A raw member that joined (v5, answering MEMBER_ID_REQUIRED when asked) and synced as
/// the only member: (member id, generation).
fn raw_member(c: &mut RawClient, group: &str, instance: Option<&str>) -> (String, i32) {
    let mut r = c.request(&join_req(group, "", instance, 3_000), 5);
    if r.error_code == MEMBER_ID_REQUIRED {
        assert!(
            !r.member_id.is_empty(),
            "MEMBER_ID_REQUIRED carries the new member id"
        );
        r = c.request(&join_req(group, &r.member_id, instance, 3_000), 5);
    }
    assert_eq!(r.error_code, 0, "join {group}: {r:?}");
    let member = r.member_id.to_string();
    let s = c.request(
        &sync_req(group, &member, instance, r.generation_id, true),
        5,
    );
    assert_eq!(s.error_code, 0, "sync {group}");
    (member, r.generation_id)
}

fn sync_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
    leader: bool,
) -> SyncGroupRequest {
    let assignments = if leader {
        vec![SyncGroupRequestAssignment::default()
            .with_member_id(sb(member))
            .with_assignment(Bytes::from_static(
                b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff",
            ))]
    } else {
        Vec::new()
    };
    SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(generation)
        .with_member_id(sb(member))
        .with_group_instance_id(instance.map(sb))
        .with_protocol_type(Some(sb("consumer")))
        .with_protocol_name(Some(sb("range")))
        .with_assignments(assignments)
}

fn heartbeat(
    c: &mut RawClient,
    group: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(generation)
        .with_member_id(sb(member))
        .with_group_instance_id(instance.map(sb));
    c.request(&req, 4).error_code
}

/// OffsetCommit v8 of `offsets` on `topic`; the per-partition error codes.
fn commit(
    c: &mut RawClient,
    group: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let parts = offsets
        .iter()
        .map(|(p, o)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(sb(member))
        .with_group_instance_id(instance.map(sb))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partitions(parts)]);
    c.request(&req, 8)
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[test]
fn batched_group_requests() {
    let b = start_broker();
    let topic = "g-batched";
    create_topic(&b.admin_config(), topic, 2, &[]);
    let mut c = b.raw();
    // FindCoordinator v4 with several keys, one invalid.
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![sb("batch-a"), sb(""), sb("batch-b")]);
    let r = c.request(&req, 4);
    let codes: Vec<(String, i16, i32)> = r
        .coordinators
        .iter()
        .map(|k| (k.key.to_string(), k.error_code, k.port))
        .collect();
    let port = i32::from(b.port);
    assert_eq!(
        codes,
        [
            ("batch-a".into(), 0, port),
            ("".into(), INVALID_GROUP_ID, -1),
            ("batch-b".into(), 0, port)
        ]
    );
    // Two groups with offsets, fetched in one OffsetFetch v8.
    assert_eq!(
        commit(&mut c, "batch-a", "", None, -1, topic, &[(0, 5), (1, 6)]),
        [0, 0]
    );
    assert_eq!(
        commit(&mut c, "batch-b", "", None, -1, topic, &[(0, 7)]),
        [0]
    );
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(sb("batch-a")))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(sb("batch-b")))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(sb("")))
            .with_topics(None),
    ]);
    let r = c.request(&req, 8);
    // (group, error code, [(partition, committed offset)])
    type GroupOffsets = (String, i16, Vec<(i32, i64)>);
    let got: Vec<GroupOffsets> = r
        .groups
        .iter()
        .map(|g| {
            let offsets = g
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.committed_offset))
                })
                .collect();
            (g.group_id.to_string(), g.error_code, offsets)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("batch-a".into(), 0, vec![(0, 5), (1, 6)]),
            ("batch-b".into(), 0, vec![(0, 7)]),
            ("".into(), INVALID_GROUP_ID, vec![]),
        ]
    );
    // LeaveGroup v3 with two members of one group at once.
    let mut c2 = b.raw();
    let (m1, _) = raw_member(&mut c, "batch-leave", Some("i1"));
    // The second member's join parks until the first rejoins or its rebalance timeout passes.
    c2.send_bytes(&encode_request(
        &join_req("batch-leave", "", Some("i2"), 3_000),
        5,
        900,
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = c.request(&join_req("batch-leave", &m1, Some("i1"), 3_000), 5);
    assert_eq!(r.error_code, 0, "{r:?}");
    let body = c2.read_frame().expect("second join answered");
    let (_, r2) = common::decode_response::<JoinGroupRequest>(&body, 5).unwrap();
    assert_eq!(r2.error_code, 0, "{r2:?}");
    let req = LeaveGroupRequest::default()
        .with_group_id(GroupId(sb("batch-leave")))
        .with_members(vec![
            MemberIdentity::default()
                .with_member_id(sb(&m1))
                .with_group_instance_id(Some(sb("i1"))),
            MemberIdentity::default()
                .with_member_id(sb(""))
                .with_group_instance_id(Some(sb("i2"))),
            MemberIdentity::default().with_member_id(sb("nobody")),
        ]);
    let r = c.request(&req, 4);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [0, 0, UNKNOWN_MEMBER_ID], "{r:?}");
    assert_eq!(group_state(&b, "batch-leave"), ("Empty".to_string(), 0));
    // DeleteGroups: several at once, each with its own answer.
    let req = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(sb("batch-a")),
        GroupId(sb("no-such-group")),
        GroupId(sb("")),
    ]);
    let r = c.request(&req, 2);
    let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
    assert_eq!(codes, [0, GROUP_ID_NOT_FOUND, INVALID_GROUP_ID]);
    let r = c.request(&ListGroupsRequest::default(), 4);
    let names: BTreeSet<String> = r.groups.iter().map(|g| g.group_id.to_string()).collect();
    assert!(
        names.contains("batch-b") && !names.contains("batch-a"),
        "{names:?}"
    );
}

#[test]
fn bad_group_requests_get_kafka_errors_and_lose_nothing() {
    let b = start_broker();
    let topic = "g-bad";
    create_topic(&b.admin_config(), topic, 2, &[]);
    let mut c = b.raw();
    // A bystander group with committed offsets that nothing below may disturb.
    assert_eq!(
        commit(&mut c, "bystander", "", None, -1, topic, &[(0, 3), (1, 4)]),
        [0, 0]
    );

    // Empty and overlong group ids.
    let long = "g".repeat(300);
    for id in ["", long.as_str()] {
        let r = c.request(&join_req(id, "", None, 3_000), 5);
        assert_eq!(r.error_code, INVALID_GROUP_ID, "join {:.10}", id);
        assert_eq!(heartbeat(&mut c, id, "m", None, 1), INVALID_GROUP_ID);
        assert_eq!(
            commit(&mut c, id, "", None, -1, topic, &[(0, 1)]),
            [INVALID_GROUP_ID]
        );
        let r = c.request(&sync_req(id, "m", None, 1, false), 5);
        assert_eq!(r.error_code, INVALID_GROUP_ID);
    }

    // A stable group of one member.
    let group = "bad-inputs";
    let (m1, gen1) = raw_member(&mut c, group, None);
    assert_eq!(
        commit(&mut c, group, &m1, None, gen1, topic, &[(0, 10)]),
        [0]
    );
    assert_eq!(heartbeat(&mut c, group, &m1, None, gen1), 0);
    assert_eq!(
        heartbeat(&mut c, group, "stranger", None, gen1),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut c, group, &m1, None, gen1 + 5),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut c, "no-such-group", "m", None, 1),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        commit(&mut c, group, "stranger", None, gen1, topic, &[(0, 99)]),
        [UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        commit(&mut c, group, &m1, None, gen1 + 5, topic, &[(0, 99)]),
        [ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit(&mut c, "no-such-group", "m", None, 3, topic, &[(0, 99)]),
        [ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit(&mut c, group, "", None, -1, topic, &[(0, 99)]),
        [UNKNOWN_MEMBER_ID],
        "a simple commit to an active group"
    );
    let r = c.request(
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]),
        2,
    );
    assert_eq!(r.results[0].error_code, NON_EMPTY_GROUP);

    // A second member starts a rebalance: the first one's heartbeat says so.
    let mut c2 = b.raw();
    c2.send_bytes(&encode_request(&join_req(group, "", None, 3_000), 5, 500))
        .unwrap();
    let body = c2.read_frame().expect("member id required");
    let (_, r) = common::decode_response::<JoinGroupRequest>(&body, 5).unwrap();
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    let m2 = r.member_id.to_string();
    c2.send_bytes(&encode_request(&join_req(group, &m2, None, 3_000), 5, 501))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || heartbeat(
            &mut c, group, &m1, None, gen1
        ) == REBALANCE_IN_PROGRESS),
        "heartbeat during a rebalance should be REBALANCE_IN_PROGRESS"
    );
    // m1 does not rejoin: after the rebalance timeout m2 is alone in the next generation, and
    // until it syncs the group is completing its rebalance.
    let body = c2
        .read_frame()
        .expect("second join answered after the rebalance timeout");
    let (_, r) = common::decode_response::<JoinGroupRequest>(&body, 5).unwrap();
    assert_eq!(r.error_code, 0, "{r:?}");
    let gen2 = r.generation_id;
    assert!(gen2 > gen1);
    assert_eq!(
        commit(&mut c2, group, &m2, None, gen2, topic, &[(0, 99)]),
        [REBALANCE_IN_PROGRESS]
    );
    assert_eq!(
        heartbeat(&mut c, group, &m1, None, gen1),
        UNKNOWN_MEMBER_ID,
        "m1 was dropped"
    );
    // Kafka checks the member before the state: checked at the end so the rest still runs.
    let dropped_member_commit = commit(&mut c, group, &m1, None, gen1, topic, &[(0, 99)]);
    let s = c2.request(&sync_req(group, &m2, None, gen2, true), 5);
    assert_eq!(s.error_code, 0);
    assert_eq!(
        commit(&mut c2, group, &m2, None, gen2 - 1, topic, &[(0, 99)]),
        [ILLEGAL_GENERATION]
    );

    // Static membership: a second incarnation with the same instance id fences the first.
    let sgroup = "bad-static";
    let mut c3 = b.raw();
    let (old, sgen) = raw_member(&mut c3, sgroup, Some("inst"));
    assert_eq!(
        commit(&mut c3, sgroup, &old, Some("inst"), sgen, topic, &[(1, 7)]),
        [0]
    );
    let r = c.request(&join_req(sgroup, "", Some("inst"), 3_000), 5);
    assert_eq!(r.error_code, 0, "{r:?}");
    let new = r.member_id.to_string();
    assert_ne!(new, old);
    assert_eq!(
        heartbeat(&mut c3, sgroup, &old, Some("inst"), sgen),
        FENCED_INSTANCE_ID
    );
    let fenced_commit = commit(&mut c3, sgroup, &old, Some("inst"), sgen, topic, &[(1, 99)]);
    let r = c3.request(&sync_req(sgroup, &old, Some("inst"), sgen, true), 5);
    assert_eq!(r.error_code, FENCED_INSTANCE_ID);

    // Nothing committed was lost; other groups were not touched.
    assert_eq!(committed(&b, "bystander", topic), [(0, 3), (1, 4)].into());
    assert_eq!(committed(&b, group, topic), [(0, 10)].into());
    assert_eq!(committed(&b, sgroup, topic), [(1, 7)].into());
    let mut fresh = b.raw();
    fresh.assert_served("after the bad requests");
    let mut wrong = Vec::new();
    if dropped_member_commit != [UNKNOWN_MEMBER_ID] {
        wrong.push(format!(
            "commit by a member dropped in the last rebalance, group completing it: \
             {dropped_member_commit:?}, Kafka says UNKNOWN_MEMBER_ID (25)"
        ));
    }
    if fenced_commit != [FENCED_INSTANCE_ID] {
        wrong.push(format!(
            "commit by a fenced static member: {fenced_commit:?}, Kafka says \
             FENCED_INSTANCE_ID (82)"
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
