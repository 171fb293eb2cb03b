#!/usr/bin/env python3
"""kafka-python driver for gregor's client-compatibility suite.

Usage: kafka_python_driver.py --bootstrap HOST:PORT   (contract: tests/compat/README.md)
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ for compat_common in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kafka  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import (  # noqa: E402
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    AbortTransactionSpec,
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    MemberToRemove,
    OffsetSpec,
    OffsetTimestamp,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka.structs import OffsetAndMetadata  # noqa: E402

import compat_common as cc  # noqa: E402
from compat_common import Fail  # noqa: E402

CLIENT = "kafka-python"
VERSION = kafka.__version__
BOOTSTRAP = None

COMMON = {"request_timeout_ms": 10000, "bootstrap_timeout_ms": 10000}


def admin(t):
    t.stage = "connect admin client"
    a = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, **COMMON)
    t.defer(a.close)
    return a


def create_topic(t, a, name, partitions, configs=None):
    t.stage = f"create topic {name} ({partitions} partitions)"
    a.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
        timeout_ms=10000,
    )


def producer(t, **extra):
    t.stage = "connect producer"
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, max_block_ms=15000, **COMMON, **extra)
    t.defer(lambda: p.close(timeout=3))
    return p


def produce_all(t, p, topic, records, partition=None, timestamps=None):
    """Sends [(key, value)] and waits for every acknowledgement; returns [(partition, offset)]."""
    t.stage = f"produce {len(records)} records to {topic}"
    futs = []
    for i, (k, v) in enumerate(records):
        kwargs = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamps is not None:
            kwargs["timestamp_ms"] = timestamps[i]
        futs.append(p.send(topic, key=k, value=v, **kwargs))
    t.stage = f"flush (waiting for {len(records)} acknowledgements)"
    p.flush(timeout=t.left(30))
    out = []
    errors = []
    for f in futs:
        try:
            md = f.get(timeout=t.left(5))
            out.append((md.partition, md.offset))
        except Exception as e:  # noqa: BLE001
            errors.append(cc.err_text(e))
    if errors:
        raise Fail(f"{len(errors)} of {len(records)} records failed, e.g. {errors[0]}")
    return out


def plain_consumer(t, **extra):
    t.stage = "connect consumer"
    c = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **COMMON,
        **extra,
    )
    t.defer(lambda: c.close(timeout_ms=3000))
    return c


def read_range(t, c, topic, starts, ends):
    """starts: {partition: offset or 'earliest'}; polls until each partition reached ends[p].
    Returns [(partition, offset, key, value, timestamp)]."""
    t.stage = f"read {topic} partitions {sorted(starts)} from {starts} to {ends}"
    tps = {p: TopicPartition(topic, p) for p in starts}
    c.assign(list(tps.values()))
    for p, off in starts.items():
        if off == "earliest":
            c.seek_to_beginning(tps[p])
        else:
            c.seek(tps[p], off)
    out = []
    nxt = {}
    while not all(nxt.get(p, -1) >= ends[p] or ends[p] <= 0 for p in starts):
        t.check_deadline(f"reading ({len(out)} records so far, positions {nxt}, want {ends})")
        batch = c.poll(timeout_ms=int(min(500, t.left() * 1000)))
        for tp, msgs in batch.items():
            for m in msgs:
                out.append((m.partition, m.offset, m.key, m.value, m.timestamp))
                nxt[m.partition] = m.offset + 1
    return out


def end_offsets(t, c, topic, partitions):
    t.stage = f"end offsets of {topic}"
    res = c.end_offsets([TopicPartition(topic, p) for p in partitions], timeout_ms=int(t.left(10) * 1000))
    return {tp.partition: off for tp, off in res.items()}


# ------------------------------------------------------------------------------------------------
# Flows


def flow_list_topics(t):
    a = admin(t)
    name = t.name()
    create_topic(t, a, name, 1)
    t.stage = "list all topics (KafkaAdminClient.list_topics)"
    topics = a.list_topics()
    if name not in topics:
        raise Fail(f"topic {name} missing from the list of {len(topics)} topics")
    t.stage = "list all topics (KafkaConsumer.topics)"
    c = plain_consumer(t)
    if name not in c.topics():
        raise Fail(f"topic {name} missing from KafkaConsumer.topics()")


def flow_admin_topics(t):
    a = admin(t)
    name = t.name()
    create_topic(t, a, name, 3, {"retention.ms": "3600000"})
    t.stage = "describe topic (describe_topics)"
    desc = a.describe_topics([name])
    if len(desc) != 1 or desc[0].get("error_code", 0) != 0:
        raise Fail(f"describe_topics: {desc}")
    if len(desc[0]["partitions"]) != 3:
        raise Fail(f"expected 3 partitions, described {len(desc[0]['partitions'])}")
    t.stage = "describe topic configs (describe_configs)"
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
    configs = res.get("topic", {}).get(name, {})
    got = configs.get("retention.ms")
    value = got.get("value") if isinstance(got, dict) else got
    if value != "3600000":
        raise Fail(f"retention.ms: expected 3600000, got {value!r} (of {len(configs)} configs)")
    t.stage = "delete topic"
    a.delete_topics([name], timeout_ms=10000)
    t.stage = "see the topic gone (list_topics)"
    cc.wait_until(t, lambda: name not in a.list_topics(), "the deleted topic to disappear", timeout=10, interval=0.3)


def flow_produce(codec):
    def run(t):
        a = admin(t)
        topic = t.name()
        create_topic(t, a, topic, 3)
        p = producer(t, compression_type=None if codec == "none" else codec)
        records = cc.make_records()
        produce_all(t, p, topic, records)
        c = plain_consumer(t)
        ends = end_offsets(t, c, topic, range(3))
        if sum(ends.values()) != len(records):
            raise Fail(f"end offsets {ends} add up to {sum(ends.values())}, expected {len(records)}")
        got = read_range(t, c, topic, {p_: 0 for p_ in range(3)}, ends)
        problem = cc.check_records([r[:4] for r in got], partitions=3)
        if problem:
            raise Fail(problem)
        t.note(cc.spread(got))

    return run


def _twenty(t, topic, timestamps=None):
    a = admin(t)
    create_topic(t, a, topic, 1)
    p = producer(t)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    produce_all(t, p, topic, records, partition=0, timestamps=timestamps)
    return a, records


def _expect_from(got, records, first):
    if not got:
        raise Fail("no records read")
    if got[0][1] != first:
        raise Fail(f"first record at offset {got[0][1]}, expected {first}")
    offsets = [r[1] for r in got]
    if offsets != list(range(first, 20)):
        raise Fail(f"offsets {offsets[:5]}... expected {first}..19 in order")
    for _, off, k, v, _ in got:
        if (k, v) != records[off]:
            raise Fail(f"offset {off}: got {(k, v)}, expected {records[off]}")


def flow_consume_earliest(t):
    topic = t.name()
    _, records = _twenty(t, topic)
    c = plain_consumer(t)
    got = read_range(t, c, topic, {0: "earliest"}, {0: 20})
    _expect_from(got, records, 0)


def flow_consume_offset(t):
    topic = t.name()
    _, records = _twenty(t, topic)
    c = plain_consumer(t)
    got = read_range(t, c, topic, {0: 10}, {0: 20})
    _expect_from(got, records, 10)


def flow_consume_timestamp(t):
    topic = t.name()
    base = int(time.time() * 1000) - 60000
    stamps = [base + i * 1000 for i in range(20)]
    a, records = _twenty(t, topic, timestamps=stamps)
    c = plain_consumer(t)
    tp = TopicPartition(topic, 0)
    t.stage = "offsets_for_times (ListOffsets by timestamp)"
    found = c.offsets_for_times({tp: stamps[10] - 500}, timeout_ms=int(t.left(10) * 1000))
    if found.get(tp) is None or found[tp].offset != 10:
        raise Fail(f"offsets_for_times({stamps[10] - 500}): expected offset 10, got {found.get(tp)}")
    t.stage = "admin list_partition_offsets(OffsetTimestamp)"
    res = a.list_partition_offsets({tp: OffsetTimestamp(stamps[10] - 500)})
    if res[tp].offset != 10:
        raise Fail(f"list_partition_offsets by timestamp: expected offset 10, got {res[tp]}")
    got = read_range(t, c, topic, {0: found[tp].offset}, {0: 20})
    _expect_from(got, records, 10)
    if got[0][4] != stamps[10]:
        raise Fail(f"first record's timestamp {got[0][4]}, expected {stamps[10]}")


def _group_consumer(t, group, name):
    c = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        client_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        **COMMON,
    )
    t.defer(lambda: c.close(timeout_ms=3000))
    return c


def _owned(c):
    return sorted(tp.partition for tp in c.assignment())


def _commit(c, topic, offsets):
    c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}, timeout_ms=10000)


def _committed(c, topic, partitions):
    return {p: c.committed(TopicPartition(topic, p), timeout_ms=5000) for p in partitions}


def flow_group(t):
    a = admin(t)
    topic = t.name()
    group = t.name("group")
    create_topic(t, a, topic, 4)
    p = producer(t)
    produce_all(t, p, topic, [(b"k", f"v{i}".encode()) for i in range(8)])
    c1 = _group_consumer(t, group, "member-1")
    c2 = _group_consumer(t, group, "member-2")
    c1.subscribe([topic])
    t.stage = "first member joins, waits for all 4 partitions"

    def c1_all():
        c1.poll(timeout_ms=50)
        return _owned(c1) == [0, 1, 2, 3]

    cc.wait_until(t, c1_all, "member 1 to own all 4 partitions", timeout=20, interval=0)
    c2.subscribe([topic])
    t.stage = "second member joins; partitions split"

    def split():
        c1.poll(timeout_ms=50)
        c2.poll(timeout_ms=50)
        o1, o2 = _owned(c1), _owned(c2)
        return o1 and o2 and not set(o1) & set(o2) and sorted(o1 + o2) == [0, 1, 2, 3]

    try:
        cc.wait_until(t, split, "the partitions to split between two members", timeout=25, interval=0)
    except Fail:
        raise Fail(f"no split between two members: member 1 owns {_owned(c1)}, member 2 owns {_owned(c2)}")
    o1, o2 = _owned(c1), _owned(c2)
    t.stage = f"commit offsets (member 1 owns {o1}, member 2 owns {o2})"
    _commit(c1, topic, {p_: 1 for p_ in o1})
    _commit(c2, topic, {p_: 1 for p_ in o2})
    t.stage = "read commits back"
    got = _committed(c2, topic, range(4))
    if got != {0: 1, 1: 1, 2: 1, 3: 1}:
        raise Fail(f"committed offsets read back {got}, expected 1 for each partition")
    t.stage = "second member leaves (close)"
    c2.close(timeout_ms=5000)
    t.stage = "first member takes all 4 partitions"

    def all_back():
        c1.poll(timeout_ms=50)
        return _owned(c1) == [0, 1, 2, 3]

    try:
        cc.wait_until(t, all_back, "member 1 to own all 4 partitions again", timeout=20, interval=0)
    except Fail:
        raise Fail(f"after member 2 left, member 1 owns {_owned(c1)}, expected [0, 1, 2, 3]")
    t.stage = "commit and read back after the rebalance"
    _commit(c1, topic, {p_: 2 for p_ in range(4)})
    got = _committed(c1, topic, range(4))
    if got != {0: 2, 1: 2, 2: 2, 3: 2}:
        raise Fail(f"committed offsets read back {got}, expected 2 for each partition")
    t.note(f"split {o1} / {o2}")


def _state(g):
    return g.get("group_state") or g.get("state")


def flow_admin_groups(t):
    a = admin(t)
    topic = t.name()
    group = t.name("group")
    problems = []
    create_topic(t, a, topic, 2)
    p = producer(t)
    produce_all(t, p, topic, [(b"k", f"v{i}".encode()) for i in range(3)], partition=0)
    produce_all(t, p, topic, [(b"k", f"v{i}".encode()) for i in range(3)], partition=1)
    c = _group_consumer(t, group, "member-1")
    c.subscribe([topic])
    t.stage = "member joins"

    def owns_both():
        c.poll(timeout_ms=50)
        return _owned(c) == [0, 1]

    cc.wait_until(t, owns_both, "the member to own both partitions", timeout=20, interval=0)
    _commit(c, topic, {0: 1, 1: 2})
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    t.stage = "list_groups"
    mine = [g for g in a.list_groups() if g["group_id"] == group]
    if not mine:
        raise Fail(f"group {group} missing from list_groups")
    t.stage = "list_groups(states_filter=['Stable']) (ListGroups v4)"
    if not any(g["group_id"] == group for g in a.list_groups(states_filter=["Stable"])):
        problems.append("list_groups(states_filter=[Stable]) does not list the stable group")
    t.stage = "list_groups(types_filter=['consumer']) (ListGroups v5)"
    if any(g["group_id"] == group for g in a.list_groups(types_filter=["consumer"])):
        problems.append("list_groups(types_filter=[consumer]) lists the classic group (ListGroups v5 types filter ignored)")

    t.stage = "describe_groups"
    desc = a.describe_groups([group])[group]
    members = desc.get("members") or []
    if desc.get("error") or _state(desc) != "Stable" or len(members) != 1:
        problems.append(f"describe_groups: state {_state(desc)} with {len(members)} members (error {desc.get('error')}), expected Stable with 1")
    member_id = members[0]["member_id"] if members else None
    if members:
        assignment = members[0].get("member_assignment")
        if not isinstance(assignment, dict):
            assignment = assignment.to_dict() if hasattr(assignment, "to_dict") else {}
        parts = [p_ for tpart in assignment.get("assigned_partitions") or [] for p_ in tpart.get("partitions") or []]
        if sorted(parts) != [0, 1]:
            problems.append(f"describe_groups: member assignment {assignment!r}, expected partitions [0, 1]")

    if member_id:
        t.stage = "remove_group_members (LeaveGroup v3+ by member id)"
        res = a.remove_group_members(group, [MemberToRemove(member_id=member_id)])
        errs = [str(e) for e in res.values() if e.__name__ != "NoError"]
        if errs:
            problems.append(f"remove_group_members errors {errs}")
        desc = a.describe_groups([group])[group]
        if desc.get("members"):
            problems.append(f"describe after remove_group_members: still {len(desc['members'])} members ({_state(desc)})")
    t.stage = "member closes"
    c.close(timeout_ms=3000)

    def offsets():
        res = a.list_group_offsets({group: [tp0, tp1]})[group]
        return {tp.partition: oam.offset for tp, oam in res.items()}

    t.stage = "list_group_offsets"
    got = offsets()
    if got != {0: 1, 1: 2}:
        problems.append(f"list_group_offsets: {got}, expected {{0: 1, 1: 2}}")

    t.stage = "alter_group_offsets"
    res = a.alter_group_offsets(group, {tp0: OffsetAndMetadata(0, "", None), tp1: OffsetAndMetadata(0, "", None)})
    errs = [f"{tp.partition}: {e.__name__}" for tp, e in res.items() if e.__name__ != "NoError"]
    if errs:
        problems.append(f"alter_group_offsets errors {errs}")
    got = offsets()
    if got != {0: 0, 1: 0}:
        problems.append(f"offsets after alter_group_offsets: {got}, expected {{0: 0, 1: 0}}")

    t.stage = "reset_group_offsets (ListOffsets + OffsetCommit)"
    res = a.reset_group_offsets(group, {tp0: OffsetSpec.LATEST, tp1: OffsetSpec.EARLIEST})
    errs = [f"{tp.partition}: {r['error'].__name__}" for tp, r in res.items() if r["error"].__name__ != "NoError"]
    if errs:
        problems.append(f"reset_group_offsets errors {errs}")
    got = offsets()
    if got != {0: 3, 1: 0}:
        problems.append(f"offsets after reset_group_offsets(p0 latest, p1 earliest): {got}, expected {{0: 3, 1: 0}}")

    t.stage = "delete_group_offsets (OffsetDelete)"
    res = a.delete_group_offsets(group, [tp1])
    errs = [f"{tp.partition}: {e.__name__}" for tp, e in res.items() if e.__name__ != "NoError"]
    if errs:
        problems.append(f"delete_group_offsets errors {errs}")
    got = offsets()
    if got.get(0) != 3 or got.get(1, -1) != -1:
        problems.append(f"offsets after delete_group_offsets(p1): {got}, expected p0=3 and p1 gone (-1)")

    t.stage = "delete_groups"
    res = dict(a.delete_groups([group]))
    if res.get(group) != "OK":
        problems.append(f"delete_groups: {res}")
    if any(g["group_id"] == group for g in a.list_groups()):
        problems.append("group still listed after delete_groups")
    if problems:
        t.stage = "all admin calls made"
        raise Fail("; ".join(problems))


def flow_idempotent(t):
    a = admin(t)
    topic = t.name()
    create_topic(t, a, topic, 3)
    p = producer(t, enable_idempotence=True, acks="all")
    records = cc.make_records(300, 30)
    produce_all(t, p, topic, records)
    c = plain_consumer(t)
    ends = end_offsets(t, c, topic, range(3))
    if sum(ends.values()) != len(records):
        raise Fail(f"end offsets {ends} add up to {sum(ends.values())}, expected {len(records)}")
    got = read_range(t, c, topic, {p_: 0 for p_ in range(3)}, ends)
    problem = cc.check_records([r[:4] for r in got], n=300, keys=30, partitions=3)
    if problem:
        raise Fail(problem)


def _read_txn_topic(t, topic, isolation):
    """A consumer with isolation_level `isolation` reads partition 0 from the beginning until it has
    as many records as the flow expects (for at most 15 s), then polls 0.5 s more for any extra.
    Returns [(offset, value)]."""
    want = len(cc.txn_expected(isolation == "read_committed"))
    c = plain_consumer(t, isolation_level=isolation)
    t.stage = f"{isolation} consumer reads {topic} from the beginning (expects {want} records)"
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out = []
    end = time.monotonic() + t.left(15)
    grace_end = None
    while time.monotonic() < (grace_end or end):
        for msgs in c.poll(timeout_ms=int(min(200, t.left() * 1000))).values():
            out.extend((m.offset, m.value) for m in msgs)
        if grace_end is None and len(out) >= want:
            grace_end = time.monotonic() + 0.5
    return out


def flow_transactions(t):
    a = admin(t)
    topic = t.name()
    group = t.name("group")
    create_topic(t, a, topic, 1)
    first, aborted, last = cc.txn_batches()
    p = producer(t, transactional_id=t.name("txn"), transaction_timeout_ms=30000)
    t.stage = "init_transactions (FindCoordinator(txn), InitProducerId with transactional.id)"
    p.init_transactions()

    t.stage = "transaction 1: begin_transaction"
    p.begin_transaction()
    produce_all(t, p, topic, first, partition=0)
    t.stage = "transaction 1: commit_transaction (EndTxn commit)"
    p.commit_transaction()

    t.stage = "transaction 2: begin_transaction"
    p.begin_transaction()
    produce_all(t, p, topic, aborted, partition=0)  # acknowledged: the records are in the log
    t.stage = "transaction 2: abort_transaction (EndTxn abort)"
    p.abort_transaction()

    t.stage = "transaction 3: begin_transaction"
    p.begin_transaction()
    produce_all(t, p, topic, last, partition=0)
    g = _group_consumer(t, group, "txn-offsets")
    t.stage = f"transaction 3: send_offsets_to_transaction (AddOffsetsToTxn, TxnOffsetCommit) for group {group}"
    p.send_offsets_to_transaction(
        {TopicPartition(topic, 0): OffsetAndMetadata(cc.TXN_GROUP_OFFSET, "", -1)}, g.group_metadata()
    )
    t.stage = "transaction 3: commit_transaction (EndTxn commit)"
    p.commit_transaction()

    committed = _read_txn_topic(t, topic, "read_committed")
    problem = cc.check_txn_read("read_committed consumer", committed, True)
    if problem:
        raise Fail(problem)
    uncommitted = _read_txn_topic(t, topic, "read_uncommitted")
    problem = cc.check_txn_read("read_uncommitted consumer", uncommitted, False)
    if problem:
        raise Fail(problem)

    t.stage = f"read the group's offset back (KafkaConsumer.committed, OffsetFetch for {group})"
    seen = {}

    def group_offset():
        seen["offset"] = g.committed(TopicPartition(topic, 0), timeout_ms=5000)
        return seen["offset"] == cc.TXN_GROUP_OFFSET

    try:
        cc.wait_until(t, group_offset, "the offset committed in transaction 3", timeout=10, interval=0.3)
    except Fail:
        raise Fail(f"committed() for group {group} gives {seen.get('offset')}, expected {cc.TXN_GROUP_OFFSET}") from None
    t.note(
        f"read_committed read offsets {cc.txn_offsets_note(committed)}, read_uncommitted "
        f"{cc.txn_offsets_note(uncommitted)}; group offset {cc.TXN_GROUP_OFFSET} read back"
    )


# ------------------------------------------------------------------------------------------------
# Calls gregor does not serve yet


def unsupported_calls(d):
    state = {}

    def topic(t):
        if "topic" not in state:
            a = admin(t)
            name = cc.unique_name("unsupported")
            create_topic(t, a, name, 1)
            p = producer(t)
            produce_all(t, p, name, [(b"k", f"v{i}".encode()) for i in range(10)], partition=0)
            state["topic"] = name
        return state["topic"]

    acl = ACL(
        principal="User:compat", host="*", operation=ACLOperation.READ, permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(ResourceType.TOPIC, "compat-acl", ACLResourcePatternType.LITERAL),
    )
    acl_filter = ACLFilter(
        principal=None, host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )

    def admin_call(stage, call):
        def run(t):
            name = topic(t)
            a = admin(t)
            t.call(stage)
            res = call(a, name)
            t.note(repr(res)[:200])

        return run

    def tp(name):
        return TopicPartition(name, 0)

    def describe_transactions(t):
        txn_id = t.name("txn")
        p = producer(t, transactional_id=txn_id)
        t.stage = f"setup: init_transactions, so that the coordinator knows {txn_id}"
        p.init_transactions()
        a = admin(t)
        t.call("describe_transactions")
        res = a.describe_transactions([txn_id])
        t.note(repr(res)[:200])

    calls = [
        ("create_acls", "CreateAcls", admin_call("create_acls", lambda a, n: _raise_acl(a.create_acls([acl])))),
        ("describe_acls", "DescribeAcls", admin_call("describe_acls", lambda a, n: a.describe_acls(acl_filter))),
        ("delete_acls", "DeleteAcls", admin_call("delete_acls", lambda a, n: a.delete_acls([acl_filter]))),
        ("alter_configs", "AlterConfigs", admin_call(
            "alter_configs(incremental=False)",
            lambda a, n: a.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n, configs={"retention.ms": "7200000"})], incremental=False
            ),
        )),
        ("incremental_alter_configs", "IncrementalAlterConfigs", admin_call(
            "alter_configs(incremental=True)",
            lambda a, n: a.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n, configs={"retention.ms": "7200000"})], incremental=True
            ),
        )),
        ("delete_records", "DeleteRecords",
         admin_call("delete_records", lambda a, n: a.delete_records({tp(n): 5}, timeout_ms=10000))),
        ("describe_log_dirs", "DescribeLogDirs", admin_call("describe_log_dirs", lambda a, n: a.describe_log_dirs())),
        ("alter_replica_log_dirs", "AlterReplicaLogDirs", admin_call(
            "alter_replica_log_dirs",
            lambda a, n: a.alter_replica_log_dirs({(n, 0, 1): "/tmp/compat-other-log-dir"}),
        )),
        ("elect_leaders", "ElectLeaders",
         admin_call("elect_leaders", lambda a, n: a.elect_leaders(0, [tp(n)], timeout_ms=10000))),
        ("alter_partition_reassignments", "AlterPartitionReassignments", admin_call(
            "alter_partition_reassignments",
            lambda a, n: a.alter_partition_reassignments({tp(n): [1]}, timeout_ms=10000),
        )),
        ("list_partition_reassignments", "ListPartitionReassignments",
         admin_call("list_partition_reassignments", lambda a, n: a.list_partition_reassignments(timeout_ms=10000))),
        ("describe_user_scram_credentials", "DescribeUserScramCredentials",
         admin_call("describe_user_scram_credentials", lambda a, n: a.describe_user_scram_credentials())),
        ("alter_user_scram_credentials", "AlterUserScramCredentials", admin_call(
            "alter_user_scram_credentials",
            lambda a, n: a.alter_user_scram_credentials(
                [UserScramCredentialUpsertion("compat", ScramMechanism.SCRAM_SHA_256, b"secret-pw")]
            ),
        )),
        ("describe_producers", "DescribeProducers",
         admin_call("describe_producers", lambda a, n: a.describe_producers([tp(n)]))),
        ("list_transactions", "ListTransactions", admin_call("list_transactions", lambda a, n: a.list_transactions())),
        ("describe_transactions", "DescribeTransactions", describe_transactions),
        ("find_hanging_transactions", "ListTransactions + DescribeProducers",
         admin_call("find_hanging_transactions", lambda a, n: a.find_hanging_transactions())),
        ("abort_transaction", "WriteTxnMarkers", admin_call(
            "abort_transaction",
            lambda a, n: a.abort_transaction(AbortTransactionSpec(tp(n), producer_id=1, producer_epoch=0)),
        )),
        ("describe_metadata_quorum", "DescribeQuorum",
         admin_call("describe_metadata_quorum", lambda a, n: a.describe_metadata_quorum())),
        ("describe_topic_partitions", "DescribeTopicPartitions",
         admin_call("describe_topic_partitions", lambda a, n: a.describe_topic_partitions([n]))),
        ("list_config_resources", "ListConfigResources",
         admin_call("list_config_resources", lambda a, n: a.list_config_resources())),
        ("update_features", "UpdateFeatures", admin_call(
            "update_features(validate_only)",
            lambda a, n: a.update_features({"compat.feature": 1}, validate_only=True, timeout_ms=10000),
        )),
    ]
    for call, api, fn in calls:
        d.unsupported(call, api, fn)


def _raise_acl(res):
    """create_acls returns {'succeeded': [...], 'failed': [(acl, error)]}: a failure is an error."""
    if isinstance(res, dict) and res.get("failed"):
        raise RuntimeError(f"create_acls failed: {res['failed'][0][1]!r}")
    return res


def main():
    global BOOTSTRAP
    args = cc.parse_args()
    BOOTSTRAP = args.bootstrap
    cc.setup_logging()
    d = cc.Driver(CLIENT, VERSION)
    d.flow("list_topics", flow_list_topics, 30)
    d.flow("admin_topics", flow_admin_topics, 40)
    for codec in cc.CODECS:
        d.flow(f"produce_{codec}", flow_produce(codec), 45)
    d.flow("consume_earliest", flow_consume_earliest, 30)
    d.flow("consume_offset", flow_consume_offset, 30)
    d.flow("consume_timestamp", flow_consume_timestamp, 30)
    d.flow("group", flow_group, 60)
    d.flow("admin_groups", flow_admin_groups, 45)
    d.flow("idempotent", flow_idempotent, 40)
    d.flow("transactions", flow_transactions, 60)
    unsupported_calls(d)
    d.finish()


if __name__ == "__main__":
    main()
