//! The transaction coordinator over the raw protocol: FindCoordinator for transactional ids,
//! InitProducerId epochs and fencing, AddPartitionsToTxn and EndTxn refusals, transactional
//! offset commits, timeouts, and the coordinator's state surviving a restart.
//!
//! Tests named `merged_*` go through the partition side too: markers written into the data
//! partitions, transactional produce and DescribeProducers.

mod common;

use std::time::{Duration, Instant};

use common::{Broker, RawClient};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const NOT_COORDINATOR: i16 = 16;
const LOAD_IN_PROGRESS: i16 = 14;
const NOT_AVAILABLE: i16 = 15;
const CONCURRENT: i16 = 51;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_MAPPING: i16 = 49;
const INVALID_TIMEOUT: i16 = 50;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Retries `f` while it answers a code that means "not ready yet".
fn until_ready<T>(what: &str, mut f: impl FnMut() -> (i16, T)) -> (i16, T) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = f();
        let waiting = matches!(code, NOT_COORDINATOR | LOAD_IN_PROGRESS | NOT_AVAILABLE);
        if !waiting {
            return (code, v);
        }
        if Instant::now() > deadline {
            eprintln!("{what}: still not ready (code {code})");
            return (code, v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(extra: &[(&str, &str)]) -> Broker {
    let mut settings = vec![("transaction.state.log.num.partitions", "5")];
    settings.extend_from_slice(extra);
    Broker::start(&settings)
}

fn create_topic(c: &mut RawClient, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let resp = c.request(&req, 5);
    assert_eq!(resp.topics[0].error_code, 0, "create {topic}");
}

fn find_txn_coordinator(c: &mut RawClient, id: &str) -> (i16, i32) {
    let req = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s(id)]);
    let resp = c.request(&req, 4);
    let co = &resp.coordinators[0];
    (co.error_code, co.node_id.0)
}

/// InitProducerId for `id`, waiting out a loading coordinator and an abort in progress.
fn init(c: &mut RawClient, id: &str, timeout_ms: i32, version: i16) -> (i16, i64, i16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r = c.request(&req, version);
        let waiting = matches!(
            r.error_code,
            NOT_COORDINATOR | LOAD_IN_PROGRESS | NOT_AVAILABLE | CONCURRENT
        );
        if !waiting || Instant::now() > deadline {
            return (r.error_code, r.producer_id.0, r.producer_epoch);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn add_partitions(
    c: &mut RawClient,
    id: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    parts: Vec<i32>,
) -> Vec<i16> {
    let (_, codes) = until_ready("AddPartitionsToTxn", || {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(id)))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(parts.clone())]);
        let resp = c.request(&req, 3);
        let codes: Vec<i16> = resp
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect();
        (codes.first().copied().unwrap_or(-1), codes)
    });
    codes
}

fn end_txn(
    c: &mut RawClient,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
    v: i16,
) -> EndTxnResponse {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    c.request(&req, v)
}

fn describe(c: &mut RawClient, id: &str) -> describe_transactions_response::TransactionState {
    let req =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]);
    c.request(&req, 0).transaction_states.remove(0)
}

fn list(c: &mut RawClient, states: &[&str]) -> ListTransactionsResponse {
    let req = ListTransactionsRequest::default()
        .with_state_filters(states.iter().map(|x| s(x)).collect())
        .with_duration_filter(-1);
    c.request(&req, 1)
}

fn txn_offset_commit(
    c: &mut RawClient,
    id: &str,
    group: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    offset: i64,
) -> i16 {
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_group_id(GroupId(s(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])]);
    let (code, _) = until_ready("TxnOffsetCommit", || {
        let r = c.request(&req, 3);
        (r.topics[0].partitions[0].error_code, ())
    });
    code
}

/// (error code, committed offset) of partition 0 of `topic` for `group`.
fn offset_fetch(c: &mut RawClient, group: &str, topic: &str, require_stable: bool) -> (i16, i64) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![0]),
        ]))
        .with_require_stable(require_stable);
    let (_, r) = until_ready("OffsetFetch", || {
        let r = c.request(&req, 7);
        (r.error_code, r)
    });
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

#[test]
fn find_coordinator_answers_for_transactional_ids() {
    let broker = Broker::start(&[]);
    let mut c = broker.raw();
    let (code, node) = until_ready("FindCoordinator", || find_txn_coordinator(&mut c, "app-1"));
    assert_eq!(code, 0, "the coordinator is this broker");
    assert_eq!(node, 1);
    let (code, _) = find_txn_coordinator(&mut c, "");
    assert_eq!(code, 42, "an empty transactional id is INVALID_REQUEST");
}

#[test]
fn init_producer_id_twice_bumps_the_epoch() {
    let broker = start(&[("transaction.max.timeout.ms", "60000")]);
    let mut c = broker.raw();
    let (code, pid, epoch) = init(&mut c, "twice", 30_000, 4);
    assert_eq!(code, 0);
    assert!(pid >= 0);
    assert_eq!(epoch, 0);
    let (code, pid2, epoch2) = init(&mut c, "twice", 30_000, 4);
    assert_eq!(code, 0);
    assert_eq!(pid2, pid, "the same transactional id keeps its producer id");
    assert_eq!(
        epoch2, 1,
        "and the epoch moves on, fencing the first instance"
    );
    let (code, pid3, _) = init(&mut c, "another", 30_000, 4);
    assert_eq!(code, 0);
    assert_ne!(pid3, pid);
    let (code, _, _) = init(&mut c, "too-long", 60_001, 4);
    assert_eq!(code, INVALID_TIMEOUT);
}

#[test]
fn add_partitions_without_init_producer_id_is_invalid_mapping() {
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "orders", 2);
    let codes = add_partitions(&mut c, "never-initialised", 4242, 0, "orders", vec![0, 1]);
    assert_eq!(codes, vec![INVALID_MAPPING, INVALID_MAPPING]);
    // An initialised id with another producer id is refused the same way.
    let (_, pid, epoch) = init(&mut c, "known", 30_000, 4);
    let codes = add_partitions(&mut c, "known", pid + 1, epoch, "orders", vec![0]);
    assert_eq!(codes, vec![INVALID_MAPPING]);
    let codes = add_partitions(&mut c, "known", pid, epoch, "orders", vec![0, 1]);
    assert_eq!(codes, vec![0, 0]);
}

#[test]
fn end_txn_with_a_stale_epoch_is_fenced() {
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "fenced", 1);
    let (_, pid, first) = init(&mut c, "fence-me", 30_000, 4);
    let (_, _, second) = init(&mut c, "fence-me", 30_000, 4);
    assert_eq!(second, first + 1);
    // No transaction is open yet: ending one is INVALID_TXN_STATE.
    assert_eq!(
        end_txn(&mut c, "fence-me", pid, second, true, 3).error_code,
        INVALID_TXN_STATE
    );
    assert_eq!(
        add_partitions(&mut c, "fence-me", pid, second, "fenced", vec![0]),
        vec![0]
    );
    // The first instance's epoch: PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before.
    assert_eq!(
        end_txn(&mut c, "fence-me", pid, first, true, 3).error_code,
        PRODUCER_FENCED
    );
    assert_eq!(
        end_txn(&mut c, "fence-me", pid, first, true, 1).error_code,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        add_partitions(&mut c, "fence-me", pid, first, "fenced", vec![0]),
        vec![PRODUCER_FENCED]
    );
    // The current instance commits; the coordinator has written PrepareCommit.
    let r = end_txn(&mut c, "fence-me", pid, second, true, 3);
    assert_eq!(r.error_code, 0);
    let d = describe(&mut c, "fence-me");
    assert_eq!(d.error_code, 0);
    assert!(
        ["PrepareCommit", "CompleteCommit"].contains(&d.transaction_state.as_str()),
        "{}",
        d.transaction_state.as_str()
    );
    // Aborting it is refused: CONCURRENT_TRANSACTIONS while the markers are out (Kafka answers
    // so while a transition is pending), INVALID_TXN_STATE once the commit is complete.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let code = end_txn(&mut c, "fence-me", pid, second, false, 3).error_code;
        if code != CONCURRENT || Instant::now() > deadline {
            break code;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(again, INVALID_TXN_STATE);
}

#[test]
fn end_txn_v5_returns_the_bumped_epoch() {
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "tv2", 1);
    let (_, pid, epoch) = init(&mut c, "tv2-id", 30_000, 5);
    assert_eq!(
        add_partitions(&mut c, "tv2-id", pid, epoch, "tv2", vec![0]),
        vec![0]
    );
    let r = end_txn(&mut c, "tv2-id", pid, epoch, false, 5);
    assert_eq!(r.error_code, 0);
    assert_eq!((r.producer_id.0, r.producer_epoch), (pid, epoch + 1));
    // The old epoch cannot start anything now.
    assert_eq!(
        add_partitions(&mut c, "tv2-id", pid, epoch, "tv2", vec![0]),
        vec![PRODUCER_FENCED]
    );
}

#[test]
fn txn_offset_commit_is_pending_until_the_transaction_ends() {
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "in", 1);
    let (_, pid, epoch) = init(&mut c, "offsets-txn", 30_000, 4);
    // Offsets before the group's partition is in the transaction are refused (KIP-890).
    assert_eq!(
        txn_offset_commit(&mut c, "offsets-txn", "g1", pid, epoch, "in", 41),
        INVALID_TXN_STATE
    );
    assert_eq!(
        offset_fetch(&mut c, "g1", "in", true),
        (0, -1),
        "nothing was written"
    );
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s("offsets-txn")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(s("g1")));
    assert_eq!(c.request(&add, 3).error_code, 0);
    let d = describe(&mut c, "offsets-txn");
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!(d.topics[0].topic.0.as_str(), "__consumer_offsets");
    assert_eq!(
        txn_offset_commit(&mut c, "offsets-txn", "g1", pid, epoch, "in", 42),
        0
    );
    assert_eq!(
        offset_fetch(&mut c, "g1", "in", false),
        (0, -1),
        "not visible yet"
    );
    assert_eq!(
        offset_fetch(&mut c, "g1", "in", true).0,
        UNSTABLE_OFFSET_COMMIT,
        "a read_committed consumer is told to wait"
    );
}

#[test]
fn timed_out_transactions_are_aborted_by_the_coordinator() {
    let broker = start(&[(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "200",
    )]);
    let mut c = broker.raw();
    create_topic(&mut c, "slow", 1);
    let (_, pid, epoch) = init(&mut c, "sleepy", 1000, 4);
    assert_eq!(
        add_partitions(&mut c, "sleepy", pid, epoch, "slow", vec![0]),
        vec![0]
    );
    let ongoing = list(&mut c, &["Ongoing"]);
    assert!(ongoing
        .transaction_states
        .iter()
        .any(|t| t.transactional_id.0.as_str() == "sleepy"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let d = loop {
        let d = describe(&mut c, "sleepy");
        if d.transaction_state.as_str() != "Ongoing" || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        ["PrepareAbort", "CompleteAbort"].contains(&d.transaction_state.as_str()),
        "state {}",
        d.transaction_state.as_str()
    );
    assert_eq!(d.producer_epoch, epoch + 1, "the abort fenced the producer");
    let listed = list(&mut c, &["PrepareAbort", "CompleteAbort"]);
    assert!(listed
        .transaction_states
        .iter()
        .any(|t| t.transactional_id.0.as_str() == "sleepy" && t.producer_id.0 == pid));
    assert!(list(&mut c, &["Ongoing"])
        .transaction_states
        .iter()
        .all(|t| t.transactional_id.0.as_str() != "sleepy"));
    assert_eq!(
        end_txn(&mut c, "sleepy", pid, epoch, true, 3).error_code,
        PRODUCER_FENCED
    );
    let unknown = list(&mut c, &["Sleeping"]);
    assert_eq!(unknown.unknown_state_filters.len(), 1);
}

#[test]
fn coordinator_state_survives_a_restart() {
    let mut broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "kept", 1);
    let (_, pid, epoch) = init(&mut c, "durable", 30_000, 4);
    assert_eq!(
        add_partitions(&mut c, "durable", pid, epoch, "kept", vec![0]),
        vec![0]
    );
    drop(c);
    broker.restart();
    let mut c = broker.raw();
    let (code, d) = until_ready("DescribeTransactions", || {
        let d = describe(&mut c, "durable");
        (d.error_code, d)
    });
    assert_eq!(code, 0);
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!((d.producer_id.0, d.producer_epoch), (pid, epoch));
    assert_eq!(d.topics[0].topic.0.as_str(), "kept");
    // A new instance fences the old one: its open transaction is aborted first.
    let (code, pid2, epoch2) = init(&mut c, "durable", 30_000, 4);
    if code == 0 {
        assert_eq!(pid2, pid);
        assert_eq!(
            epoch2,
            epoch + 2,
            "one bump to fence and abort, one for the new instance"
        );
    } else {
        // Without the partition side the abort's markers are never written, and the new
        // instance waits for them.
        assert_eq!(code, CONCURRENT);
        assert_eq!(
            describe(&mut c, "durable").transaction_state.as_str(),
            "PrepareAbort"
        );
    }
}

/// Needs the WriteTxnMarkers handler: the commit marker makes the transactional offset count.
#[test]
fn merged_txn_offset_commit_then_commit_shows_the_offset_and_abort_does_not() {
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "in", 1);
    for (id, group, commit) in [("c-txn", "g-commit", true), ("a-txn", "g-abort", false)] {
        let (_, pid, epoch) = init(&mut c, id, 30_000, 4);
        let add = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(s(group)));
        assert_eq!(c.request(&add, 3).error_code, 0);
        assert_eq!(txn_offset_commit(&mut c, id, group, pid, epoch, "in", 7), 0);
        assert_eq!(end_txn(&mut c, id, pid, epoch, commit, 3).error_code, 0);
        let want_state = if commit {
            "CompleteCommit"
        } else {
            "CompleteAbort"
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while describe(&mut c, id).transaction_state.as_str() != want_state {
            assert!(Instant::now() < deadline, "{id} never reached {want_state}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let want = if commit { 7 } else { -1 };
        assert_eq!(offset_fetch(&mut c, group, "in", true), (0, want), "{id}");
    }
}

fn cli(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(common::gregor_bin())
        .args(args)
        .args(["--bootstrap-server", &broker.bootstrap()])
        .output()
        .expect("run gregor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn cli_lists_and_describes_transactions() {
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "cli-t", 2);
    let (_, pid, epoch) = init(&mut c, "cli-txn", 45_000, 4);
    assert_eq!(
        add_partitions(&mut c, "cli-txn", pid, epoch, "cli-t", vec![1]),
        vec![0]
    );
    let (ok, out, err) = cli(&broker, &["transactions", "list"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("cli-txn"))
        .unwrap_or_else(|| panic!("no row for cli-txn in\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols, vec!["cli-txn", "1", &pid.to_string(), "Ongoing"]);
    let (ok, out, err) = cli(
        &broker,
        &["transactions", "describe", "--transactional-id", "cli-txn"],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CoordinatorId\tTransactionalId"),
        "{out}"
    );
    let cols: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(
        cols[1..6],
        [
            "cli-txn",
            &pid.to_string(),
            &epoch.to_string(),
            "Ongoing",
            "45000"
        ]
    );
    assert_eq!(cols[8], "cli-t-1");
    let (ok, _, err) = cli(
        &broker,
        &["transactions", "describe", "--transactional-id", "nobody"],
    );
    assert!(!ok);
    assert!(err.contains("TRANSACTIONAL_ID_NOT_FOUND"), "{err}");
}

/// The coordinator of `id` as node `via` answers FindCoordinator (key type 1).
fn txn_coordinator_via(cl: &common::cluster::Cluster, via: i32, id: &str) -> Option<i32> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s(id)]);
    let r = cl.request(via, &req, 4).ok()?;
    let c = r.coordinators.first()?;
    (c.error_code == 0).then_some(c.node_id.0)
}

/// Retries `f` against the current coordinator of `id` until it answers a code that is not
/// "look again" / "still loading"; returns that coordinator and the answer.
fn on_coordinator<T>(
    cl: &common::cluster::Cluster,
    id: &str,
    avoid: Option<i32>,
    mut f: impl FnMut(i32) -> Option<(i16, T)>,
) -> (i32, i16, T) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for via in cl.up_nodes() {
            let Some(coord) = txn_coordinator_via(cl, via, id) else {
                continue;
            };
            if Some(coord) == avoid {
                continue;
            }
            if let Some((code, v)) = f(coord) {
                if !matches!(code, NOT_COORDINATOR | LOAD_IN_PROGRESS | NOT_AVAILABLE) {
                    return (coord, code, v);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator for {id} answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_coordinator_moves_with_its_partition_leader() {
    let mut cl =
        common::cluster::Cluster::start(3, &[("transaction.state.log.num.partitions", "3")]);
    let id = "moving";
    let init_req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let init = || {
        on_coordinator(&cl, id, None, |c| {
            let r = cl.request(c, &init_req, 4).ok()?;
            Some((r.error_code, (r.producer_id.0, r.producer_epoch)))
        })
    };
    let (_, code, _) = init();
    assert_eq!(code, 0);
    // A second instance: epoch 1, and epoch 0 is stale from now on.
    let (coord, code, (pid, epoch)) = init();
    assert_eq!((code, epoch), (0, 1));
    let create = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("moved")))
            .with_num_partitions(1)
            .with_replication_factor(3)])
        .with_timeout_ms(10_000);
    let created = cl.request(coord, &create, 5).expect("create topic");
    assert_eq!(created.topics[0].error_code, 0);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s("moved")))
            .with_partitions(vec![0])]);
    let (_, code, ()) = on_coordinator(&cl, id, None, |c| {
        let r = cl.request(c, &add, 3).ok()?;
        Some((
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
            (),
        ))
    });
    assert_eq!(code, 0);

    cl.kill(coord);
    let describe_req =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]);
    let (new_coord, code, d) = on_coordinator(&cl, id, Some(coord), |c| {
        let mut r = cl.request(c, &describe_req, 0).ok()?;
        let d = r.transaction_states.remove(0);
        Some((d.error_code, d))
    });
    assert_eq!(code, 0);
    assert_ne!(new_coord, coord);
    assert_eq!(
        d.transaction_state.as_str(),
        "Ongoing",
        "the new coordinator loaded it"
    );
    assert_eq!((d.producer_id.0, d.producer_epoch), (pid, epoch));
    // The stale epoch is still fenced on the new coordinator, the current one is served.
    let end = |e: i16| {
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(e)
            .with_committed(false)
    };
    let stale = cl.request(new_coord, &end(epoch - 1), 3).expect("EndTxn");
    assert_eq!(stale.error_code, PRODUCER_FENCED);
    let aborted = cl.request(new_coord, &end(epoch), 3).expect("EndTxn");
    assert_eq!(aborted.error_code, 0);
    let mut r = cl.request(new_coord, &describe_req, 0).expect("describe");
    let state = r.transaction_states.remove(0).transaction_state;
    assert!(
        ["PrepareAbort", "CompleteAbort"].contains(&state.as_str()),
        "{}",
        state.as_str()
    );
}

/// A transactional batch of one record for `pid` at `epoch`, sequence `seq`.
fn transactional_batch(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let rec = gregor::client::batch::ProducerRecord {
        key: None,
        value: Some(bytes::Bytes::from_static(b"in-a-transaction")),
        headers: Vec::new(),
    };
    let batch = gregor::client::batch::encode_batch(
        &[rec],
        common::now_ms(),
        kafka_protocol::records::Compression::None,
    )
    .expect("encode");
    let mut b = batch.to_vec();
    let attributes = i16::from_be_bytes([b[21], b[22]]) | 0x10;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = gregor::record::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Needs the partition side: transactional produce, DescribeProducers and WriteTxnMarkers.
#[test]
fn merged_cli_describes_producers_and_aborts_a_hanging_transaction() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "hang", 1);
    let (_, pid, epoch) = init(&mut c, "hanger", 60_000, 4);
    assert_eq!(
        add_partitions(&mut c, "hanger", pid, epoch, "hang", vec![0]),
        vec![0]
    );
    let produce = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s("hanger"))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s("hang")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(bytes::Bytes::from(transactional_batch(
                    pid, epoch, 0,
                ))))])]);
    let r = c.request(&produce, 9);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    let args = [
        "transactions",
        "describe-producers",
        "--topic",
        "hang",
        "--partition",
        "0",
    ];
    let (ok, out, err) = cli(&broker, &args);
    assert!(ok, "{err}");
    let row: Vec<String> = out
        .lines()
        .find(|l| l.starts_with(&format!("{pid}\t")))
        .unwrap_or_else(|| panic!("no producer {pid} in\n{out}"))
        .split('\t')
        .map(String::from)
        .collect();
    assert_eq!(row[1], epoch.to_string());
    assert_eq!(row[5], "0", "the open transaction starts at offset 0");

    let abort = [
        "transactions",
        "abort",
        "--topic",
        "hang",
        "--partition",
        "0",
        "--producer-id",
        &pid.to_string(),
        "--producer-epoch",
        &epoch.to_string(),
        "--coordinator-epoch",
        "0",
    ];
    let (ok, _, err) = cli(&broker, &abort);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&broker, &args);
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.starts_with(&format!("{pid}\t")));
    assert!(
        row.is_none_or(|r| r.ends_with("\tNone")),
        "the transaction is no longer open: {out}"
    );
}

/// AddPartitionsToTxn v4 as partition leaders send it (KIP-890): verify_only checks without
/// adding, batched by transaction.
#[test]
fn verify_only_reports_partitions_outside_the_transaction() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "v", 2);
    let (_, pid, epoch) = init(&mut c, "verified", 30_000, 4);
    assert_eq!(
        add_partitions(&mut c, "verified", pid, epoch, "v", vec![0]),
        vec![0]
    );
    let txn = |id: &str, e: i16| {
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(e)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s("v")))
                .with_partitions(vec![0, 1])])
    };
    let req = AddPartitionsToTxnRequest::default()
        .with_transactions(vec![txn("verified", epoch), txn("verified", epoch + 1)]);
    let resp = c.request(&req, 4);
    assert_eq!(resp.error_code, 0);
    let codes: Vec<Vec<i16>> = resp
        .results_by_transaction
        .iter()
        .map(|r| {
            r.topic_results[0]
                .results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
                .collect()
        })
        .collect();
    const TRANSACTION_ABORTABLE: i16 = 120;
    assert_eq!(
        codes[0],
        vec![0, TRANSACTION_ABORTABLE],
        "partition 1 was never added"
    );
    assert_eq!(codes[1], vec![PRODUCER_FENCED, PRODUCER_FENCED]);
    // Verification adds nothing.
    let d = describe(&mut c, "verified");
    assert_eq!(d.topics[0].partitions, vec![0]);
}

#[test]
fn idle_transactional_ids_expire() {
    let broker = start(&[
        ("transactional.id.expiration.ms", "1000"),
        (
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "100",
        ),
        (
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            "200",
        ),
    ]);
    let mut c = broker.raw();
    let (code, pid, _) = init(&mut c, "short-lived", 30_000, 4);
    assert_eq!(code, 0);
    assert_eq!(describe(&mut c, "short-lived").error_code, 0);
    const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
    let deadline = Instant::now() + Duration::from_secs(15);
    while describe(&mut c, "short-lived").error_code != TRANSACTIONAL_ID_NOT_FOUND {
        assert!(Instant::now() < deadline, "the idle id was never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Forgotten: the next InitProducerId starts it afresh with a new producer id.
    let (code, pid2, epoch2) = init(&mut c, "short-lived", 30_000, 4);
    assert_eq!(code, 0);
    assert_ne!(pid2, pid);
    assert_eq!(epoch2, 0);
}

/// librdkafka's transactional producer commits consumed offsets through the coordinator
/// (AddOffsetsToTxn, TxnOffsetCommit on the group coordinator, EndTxn). Whether the offset
/// then counts is decided by the commit marker: the merged test checks that.
#[test]
fn librdkafka_sends_offsets_to_a_transaction_and_commits_it() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, Producer};
    use rdkafka::{Offset, TopicPartitionList};
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "consumed", 1);
    let mut pcfg = broker.producer_config();
    pcfg.set("transactional.id", "rdkafka-offsets");
    let producer: BaseProducer = pcfg.create().expect("producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    let mut ccfg = broker.consumer_config();
    ccfg.set("group.id", "txn-group");
    let consumer: BaseConsumer = ccfg.create().expect("consumer");
    let meta = consumer.group_metadata().expect("group metadata");
    producer.begin_transaction().expect("begin");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("consumed", 0, Offset::Offset(5))
        .unwrap();
    producer
        .send_offsets_to_transaction(&offsets, &meta, Duration::from_secs(30))
        .expect("send_offsets_to_transaction");
    assert_eq!(
        offset_fetch(&mut c, "txn-group", "consumed", true).0,
        UNSTABLE_OFFSET_COMMIT,
        "the offset is pending in the transaction"
    );
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit_transaction");
    let d = describe(&mut c, "rdkafka-offsets");
    assert!(
        ["PrepareCommit", "CompleteCommit"].contains(&d.transaction_state.as_str()),
        "{}",
        d.transaction_state.as_str()
    );
}

/// Produces one transactional batch to partition 0 of `topic`; the partition's error code.
fn produce_transactional(c: &mut RawClient, id: &str, topic: &str, batch: Vec<u8>) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let produce = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(bytes::Bytes::from(batch)))])]);
    c.request(&produce, 9).responses[0].partition_responses[0].error_code
}

/// A transactional batch for a partition the producer never added is refused by the leader's
/// verification with INVALID_TXN_STATE and not written; the partitions it did add take theirs,
/// the commit shows them, and the broker keeps serving.
#[test]
fn a_transactional_batch_for_a_partition_never_added_is_refused() {
    let broker = start(&[]);
    let mut c = broker.raw();
    create_topic(&mut c, "added", 1);
    create_topic(&mut c, "not-added", 1);
    let (code, pid, epoch) = init(&mut c, "stray", 60_000, 4);
    assert_eq!(code, 0);
    assert_eq!(
        add_partitions(&mut c, "stray", pid, epoch, "added", vec![0]),
        vec![0]
    );
    assert_eq!(
        produce_transactional(
            &mut c,
            "stray",
            "not-added",
            transactional_batch(pid, epoch, 0)
        ),
        INVALID_TXN_STATE
    );
    assert_eq!(
        produce_transactional(&mut c, "stray", "added", transactional_batch(pid, epoch, 0)),
        0
    );
    // A producer id the coordinator never handed out for this transactional id (Kafka's
    // coordinator answers the verification with INVALID_PRODUCER_ID_MAPPING, passed on as is).
    assert_eq!(
        produce_transactional(
            &mut c,
            "stray",
            "added",
            transactional_batch(pid + 77, 0, 0)
        ),
        INVALID_MAPPING
    );
    let r = end_txn(&mut c, "stray", pid, epoch, true, 3);
    assert_eq!(r.error_code, 0);
    let ends = |c: &mut RawClient, topic: &str| {
        let req = kafka_protocol::messages::ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![
                kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]);
        c.request(&req, 4).topics[0].partitions[0].offset
    };
    assert_eq!(
        ends(&mut c, "not-added"),
        0,
        "the refused batch was written"
    );
    // The added partition holds the batch and, once the markers land, the commit marker.
    assert!(
        common::wait_until(Duration::from_secs(10), || ends(&mut c, "added") == 2),
        "the added partition's end is {}",
        ends(&mut c, "added")
    );
    c.assert_served("after the refused batch");
}
