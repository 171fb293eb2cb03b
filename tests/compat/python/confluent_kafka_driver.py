#!/usr/bin/env python3
"""confluent-kafka-python (librdkafka) driver for gregor's client-compatibility suite.

Usage: confluent_kafka_driver.py --bootstrap HOST:PORT   (contract: tests/compat/README.md)
"""

import logging
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ for compat_common in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import confluent_kafka  # noqa: E402
from confluent_kafka import (  # noqa: E402
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    ElectionType,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # noqa: E402
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

import compat_common as cc  # noqa: E402
from compat_common import Fail  # noqa: E402

LIB_VERSION = confluent_kafka.__version__
RDKAFKA_VERSION = confluent_kafka.libversion()[0]
CLIENT = "confluent-kafka-python"
VERSION = f"{LIB_VERSION} (librdkafka {RDKAFKA_VERSION})"

BOOTSTRAP = None


def conf(**extra):
    c = {
        "bootstrap.servers": BOOTSTRAP,
        "socket.timeout.ms": 10000,
        "error_cb": lambda err: cc.log(f"  librdkafka error_cb: {err}"),
        "logger": logging.getLogger("librdkafka"),
    }
    c.update(extra)
    return c


def admin(t):
    a = AdminClient(conf())
    return a


def result(fut, t, cap=15, what="answer"):
    try:
        return fut.result(timeout=t.left(cap))
    except TimeoutError as e:  # concurrent.futures.TimeoutError is TimeoutError on 3.11
        raise Fail(f"no {what} within {cap} s") from e


def create_topic(t, a, name, partitions, config=None):
    t.stage = f"create topic {name} ({partitions} partitions)"
    futs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=15,
    )
    result(futs[name], t, what="CreateTopics answer")


def producer(t, **extra):
    p = Producer(conf(**{"linger.ms": 5, "message.timeout.ms": 20000, **extra}))
    t.defer(lambda: p.flush(3))
    return p


def produce_all(t, p, topic, records, partition=None, timestamps=None):
    """Produces [(key, value)], waits for every delivery report; returns the reports."""
    reports = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            reports.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    t.stage = f"produce {len(records)} records to {topic}"
    for i, (k, v) in enumerate(records):
        kwargs = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        while True:
            try:
                p.produce(topic, key=k, value=v, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    t.stage = f"flush (waiting for {len(records)} delivery reports)"
    left = p.flush(t.left(30))
    if errors:
        raise Fail(f"{len(errors)} records failed delivery, e.g. {errors[0]}")
    if left:
        raise Fail(f"{left} records still undelivered after flush")
    if len(reports) != len(records):
        raise Fail(f"expected {len(records)} delivery reports, got {len(reports)}")
    return reports


def plain_consumer(t, **extra):
    c = Consumer(
        conf(
            **{
                "group.id": t.name("reader"),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **extra,
            }
        )
    )
    t.defer(c.close)
    return c


def read_range(t, c, topic, starts, ends, stop_at=None):
    """Assigns {partition: start offset} and polls until each partition reached its end offset
    (or stop_at records were read). Returns [(partition, offset, key, value, timestamp)]."""
    t.stage = f"read {topic} partitions {sorted(starts)} from {starts} to {ends}"
    c.assign([TopicPartition(topic, p, off) for p, off in starts.items()])
    out = []
    nxt = {}
    while True:
        done = all(nxt.get(p, -1) >= ends[p] or ends[p] <= 0 for p in starts)
        if done or (stop_at is not None and len(out) >= stop_at):
            return out
        t.check_deadline(f"reading ({len(out)} records so far, positions {nxt}, want {ends})")
        msgs = c.consume(500, timeout=min(0.5, t.left()))
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise Fail(f"consume error: {m.error()}")
            out.append((m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1]))
            nxt[m.partition()] = m.offset() + 1


def high_watermarks(t, c, topic, partitions):
    t.stage = f"get watermarks of {topic}"
    return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=t.left(10))[1] for p in partitions}


# ------------------------------------------------------------------------------------------------
# Flows


def flow_list_topics(t):
    a = admin(t)
    name = t.name()
    create_topic(t, a, name, 1)
    t.stage = "list all topics (AdminClient.list_topics)"
    md = a.list_topics(timeout=t.left(15))
    if name not in md.topics:
        raise Fail(f"topic {name} missing from the list of {len(md.topics)} topics")
    if not md.brokers:
        raise Fail("no brokers in Metadata")


def flow_admin_topics(t):
    a = admin(t)
    name = t.name()
    create_topic(t, a, name, 3, {"retention.ms": "3600000"})
    t.stage = "describe topic (describe_topics)"
    desc = result(a.describe_topics(TopicCollection([name]), request_timeout=10)[name], t)
    if len(desc.partitions) != 3:
        raise Fail(f"expected 3 partitions, described {len(desc.partitions)}")
    t.stage = "describe topic configs (describe_configs)"
    res = ConfigResource(ResourceType.TOPIC, name)
    configs = result(a.describe_configs([res], request_timeout=10)[res], t)
    got = configs.get("retention.ms")
    if got is None or got.value != "3600000":
        raise Fail(f"retention.ms: expected 3600000, got {got.value if got else None}")
    t.stage = "delete topic"
    result(a.delete_topics([name], operation_timeout=10, request_timeout=15)[name], t, what="DeleteTopics answer")
    t.stage = "see the topic gone (describe_topics)"

    def gone():
        try:
            result(a.describe_topics(TopicCollection([name]), request_timeout=5)[name], t, cap=6)
            return False
        except KafkaException as e:
            if e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return True
            raise

    cc.wait_until(t, gone, "the deleted topic to disappear", timeout=10, interval=0.3)


def flow_produce(codec):
    def run(t):
        a = admin(t)
        topic = t.name()
        create_topic(t, a, topic, 3)
        p = producer(t, **{"compression.type": codec})
        records = cc.make_records()
        produce_all(t, p, topic, records)
        c = plain_consumer(t)
        ends = high_watermarks(t, c, topic, range(3))
        if sum(ends.values()) != len(records):
            raise Fail(f"high watermarks {ends} add up to {sum(ends.values())}, expected {len(records)}")
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
    got = read_range(t, c, topic, {0: confluent_kafka.OFFSET_BEGINNING}, {0: 20})
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
    t.stage = "offsets_for_times (ListOffsets by timestamp)"
    found = c.offsets_for_times([TopicPartition(topic, 0, stamps[10] - 500)], timeout=t.left(10))
    if found[0].error or found[0].offset != 10:
        raise Fail(f"offsets_for_times({stamps[10] - 500}): expected offset 10, got {found[0].offset} {found[0].error}")
    t.stage = "admin list_offsets(OffsetSpec.for_timestamp)"
    tp = TopicPartition(topic, 0)
    info = result(a.list_offsets({tp: OffsetSpec.for_timestamp(stamps[10] - 500)}, request_timeout=10)[tp], t)
    if info.offset != 10:
        raise Fail(f"AdminClient.list_offsets by timestamp: expected offset 10, got {info.offset}")
    got = read_range(t, c, topic, {0: found[0].offset}, {0: 20})
    _expect_from(got, records, 10)
    if got[0][4] != stamps[10]:
        raise Fail(f"first record's timestamp {got[0][4]}, expected {stamps[10]}")


def _group_consumer(t, group, name):
    c = Consumer(
        conf(
            **{
                "group.id": group,
                "client.id": name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
            }
        )
    )
    t.defer(c.close)
    return c


def _owned(c):
    return sorted(tp.partition for tp in c.assignment())


def _commit(c, topic, offsets):
    res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    bad = [f"p{tp.partition}: {tp.error}" for tp in res if tp.error]
    if bad:
        raise Fail(f"commit errors: {bad}")


def _committed(t, c, topic, partitions):
    res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=t.left(10))
    bad = [f"p{tp.partition}: {tp.error}" for tp in res if tp.error]
    if bad:
        raise Fail(f"committed() errors: {bad}")
    return {tp.partition: tp.offset for tp in res}


def flow_group(t):
    a = admin(t)
    topic = t.name()
    group = t.name("group")
    create_topic(t, a, topic, 4)
    p = producer(t)
    produce_all(t, p, topic, [(b"k", f"v{i}".encode()) for i in range(8)], partition=None)
    c1 = _group_consumer(t, group, "member-1")
    c2 = _group_consumer(t, group, "member-2")
    c1.subscribe([topic])
    t.stage = "first member joins, waits for all 4 partitions"

    def poll_all(*cs):
        for c in cs:
            m = c.poll(0.05)
            if m is not None and m.error():
                raise Fail(f"poll error: {m.error()}")

    def c1_all():
        poll_all(c1)
        return _owned(c1) == [0, 1, 2, 3]

    cc.wait_until(t, c1_all, "member 1 to own all 4 partitions", timeout=20, interval=0)
    c2.subscribe([topic])
    t.stage = "second member joins; partitions split"

    def split():
        poll_all(c1, c2)
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
    got = _committed(t, c2, topic, range(4))
    if got != {0: 1, 1: 1, 2: 1, 3: 1}:
        raise Fail(f"committed offsets read back {got}, expected 1 for each partition")
    t.stage = "second member leaves (close)"
    c2.close()
    t.stage = "first member takes all 4 partitions"

    def all_back():
        poll_all(c1)
        return _owned(c1) == [0, 1, 2, 3]

    try:
        cc.wait_until(t, all_back, "member 1 to own all 4 partitions again", timeout=20, interval=0)
    except Fail:
        raise Fail(f"after member 2 left, member 1 owns {_owned(c1)}, expected [0, 1, 2, 3]")
    t.stage = "commit and read back after the rebalance"
    _commit(c1, topic, {p_: 2 for p_ in range(4)})
    got = _committed(t, c1, topic, range(4))
    if got != {0: 2, 1: 2, 2: 2, 3: 2}:
        raise Fail(f"committed offsets read back {got}, expected 2 for each partition")
    t.note(f"split {o1} / {o2}")


def flow_admin_groups(t):
    a = admin(t)
    topic = t.name()
    group = t.name("group")
    problems = []
    create_topic(t, a, topic, 2)
    c = _group_consumer(t, group, "member-1")
    c.subscribe([topic])
    t.stage = "member joins"

    def owns_both():
        c.poll(0.05)
        return _owned(c) == [0, 1]

    cc.wait_until(t, owns_both, "the member to own both partitions", timeout=20, interval=0)
    _commit(c, topic, {0: 1, 1: 2})

    t.stage = "list_consumer_groups"
    listing = result(a.list_consumer_groups(request_timeout=10), t)
    mine = [g for g in listing.valid if g.group_id == group]
    if not mine:
        raise Fail(f"group {group} missing from list_consumer_groups ({len(listing.valid)} groups, errors {listing.errors})")
    if mine[0].state != ConsumerGroupState.STABLE:
        problems.append(f"list_consumer_groups: state {mine[0].state}, expected STABLE")

    t.stage = "list_consumer_groups(types={CONSUMER}) (ListGroups v5 types filter)"
    listing = result(a.list_consumer_groups(request_timeout=10, types={ConsumerGroupType.CONSUMER}), t)
    if any(g.group_id == group for g in listing.valid):
        problems.append("list_consumer_groups(types={CONSUMER}) lists the classic group (ListGroups types filter ignored)")

    t.stage = "describe_consumer_groups"
    desc = result(a.describe_consumer_groups([group], request_timeout=10)[group], t)
    if desc.state != ConsumerGroupState.STABLE or len(desc.members) != 1:
        problems.append(f"describe: state {desc.state} with {len(desc.members)} members, expected STABLE with 1")
    else:
        assigned = sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions)
        if assigned != [0, 1]:
            problems.append(f"describe: member assignment {assigned}, expected [0, 1]")

    t.stage = "member leaves"
    c.close()

    t.stage = "list_consumer_group_offsets"

    def offsets():
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
        res = result(a.list_consumer_group_offsets([req], request_timeout=10)[group], t)
        return {tp.partition: tp.offset for tp in res.topic_partitions}

    got = offsets()
    if got != {0: 1, 1: 2}:
        problems.append(f"list_consumer_group_offsets: {got}, expected {{0: 1, 1: 2}}")

    t.stage = "alter_consumer_group_offsets"
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    res = result(a.alter_consumer_group_offsets([req], request_timeout=10)[group], t)
    bad = [f"p{tp.partition}: {tp.error}" for tp in res.topic_partitions if tp.error]
    if bad:
        problems.append(f"alter_consumer_group_offsets errors {bad}")
    got = offsets()
    if got != {0: 0, 1: 0}:
        problems.append(f"offsets after alter: {got}, expected {{0: 0, 1: 0}}")

    t.stage = "delete_consumer_groups"
    result(a.delete_consumer_groups([group], request_timeout=10)[group], t)
    listing = result(a.list_consumer_groups(request_timeout=10), t)
    if any(g.group_id == group for g in listing.valid):
        problems.append("group still listed after delete_consumer_groups")
    if problems:
        t.stage = "all admin calls made"
        raise Fail("; ".join(problems))


def flow_idempotent(t):
    a = admin(t)
    topic = t.name()
    create_topic(t, a, topic, 3)
    p = producer(t, **{"enable.idempotence": True, "acks": "all"})
    records = cc.make_records(300, 30)
    produce_all(t, p, topic, records)
    c = plain_consumer(t)
    ends = high_watermarks(t, c, topic, range(3))
    if sum(ends.values()) != len(records):
        raise Fail(f"high watermarks {ends} add up to {sum(ends.values())}, expected {len(records)}")
    got = read_range(t, c, topic, {p_: 0 for p_ in range(3)}, ends)
    problem = cc.check_records([r[:4] for r in got], n=300, keys=30, partitions=3)
    if problem:
        raise Fail(problem)


def _read_txn_topic(t, topic, isolation):
    """A consumer with isolation.level `isolation` reads partition 0 from the beginning until
    partition EOF (the last stable offset under read_committed) after at least as many records
    as the flow expects, or for at most 15 s. Returns [(offset, value)]."""
    want = len(cc.txn_expected(isolation == "read_committed"))
    c = plain_consumer(t, **{"isolation.level": isolation, "enable.partition.eof": True})
    t.stage = f"{isolation} consumer reads {topic} from the beginning (expects {want} records)"
    c.assign([TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    out = []
    eof = False
    end = time.monotonic() + t.left(15)
    while not (eof and len(out) >= want) and time.monotonic() < end:
        for m in c.consume(100, timeout=min(0.5, t.left())):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof = True
                    continue
                raise Fail(f"{isolation} consumer: {m.error()}")
            out.append((m.offset(), m.value()))
            eof = False
    return out


def flow_transactions(t):
    a = admin(t)
    topic = t.name()
    group = t.name("group")
    create_topic(t, a, topic, 1)
    first, aborted, last = cc.txn_batches()
    p = producer(t, **{"transactional.id": t.name("txn"), "transaction.timeout.ms": 30000})
    t.stage = "init_transactions (FindCoordinator(txn), InitProducerId with transactional.id)"
    p.init_transactions(t.left(15))

    t.stage = "transaction 1: begin_transaction"
    p.begin_transaction()
    produce_all(t, p, topic, first, partition=0)
    t.stage = "transaction 1: commit_transaction (EndTxn commit)"
    p.commit_transaction(t.left(15))

    t.stage = "transaction 2: begin_transaction"
    p.begin_transaction()
    produce_all(t, p, topic, aborted, partition=0)  # flushed: the records are in the log
    t.stage = "transaction 2: abort_transaction (EndTxn abort)"
    p.abort_transaction(t.left(15))

    t.stage = "transaction 3: begin_transaction"
    p.begin_transaction()
    produce_all(t, p, topic, last, partition=0)
    g = Consumer(conf(**{"group.id": group, "enable.auto.commit": False}))
    t.defer(g.close)
    t.stage = f"transaction 3: send_offsets_to_transaction (AddOffsetsToTxn, TxnOffsetCommit) for group {group}"
    p.send_offsets_to_transaction(
        [TopicPartition(topic, 0, cc.TXN_GROUP_OFFSET)], g.consumer_group_metadata(), t.left(15)
    )
    t.stage = "transaction 3: commit_transaction (EndTxn commit)"
    p.commit_transaction(t.left(15))

    committed = _read_txn_topic(t, topic, "read_committed")
    problem = cc.check_txn_read("read_committed consumer", committed, True)
    if problem:
        raise Fail(problem)
    uncommitted = _read_txn_topic(t, topic, "read_uncommitted")
    problem = cc.check_txn_read("read_uncommitted consumer", uncommitted, False)
    if problem:
        raise Fail(problem)

    t.stage = f"read the group's offset back (committed(), OffsetFetch for {group})"
    seen = {}

    def group_offset():
        seen["res"] = res = g.committed([TopicPartition(topic, 0)], timeout=t.left(5))
        return res[0].error is None and res[0].offset == cc.TXN_GROUP_OFFSET

    try:
        cc.wait_until(t, group_offset, "the offset committed in transaction 3", timeout=10, interval=0.3)
    except Fail:
        got = seen.get("res")
        raise Fail(
            f"committed() for group {group} gives "
            f"{[(tp.offset, str(tp.error)) for tp in got] if got else 'nothing'}, expected offset {cc.TXN_GROUP_OFFSET}"
        ) from None
    t.note(
        f"read_committed read offsets {cc.txn_offsets_note(committed)}, read_uncommitted "
        f"{cc.txn_offsets_note(uncommitted)}; group offset {cc.TXN_GROUP_OFFSET} read back"
    )


# ------------------------------------------------------------------------------------------------
# Calls gregor does not serve yet


def unsupported_calls(d):
    state = {}

    def shared_topic(t):
        if "topic" not in state:
            a = admin(t)
            name = cc.unique_name("unsupported")
            create_topic(t, a, name, 1)
            p = producer(t)
            produce_all(t, p, name, [(b"k", f"v{i}".encode()) for i in range(10)], partition=0)
            p.flush(2)
            state["topic"] = name
        return state["topic"]

    def one_future(fut_or_dict, t):
        futs = fut_or_dict.values() if isinstance(fut_or_dict, dict) else [fut_or_dict]
        for f in futs:
            result(f, t, cap=14)

    acl = AclBinding(
        ResourceType.TOPIC, "compat-acl", ResourcePatternType.LITERAL, "User:compat", "*",
        AclOperation.READ, AclPermissionType.ALLOW,
    )
    acl_filter = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
    )

    def admin_call(stage, call):
        def run(t):
            topic = shared_topic(t)
            a = admin(t)
            t.call(stage)
            one_future(call(a, topic), t)

        return run

    calls = [
        ("create_acls", "CreateAcls", admin_call("create_acls", lambda a, tp: a.create_acls([acl], request_timeout=10))),
        ("describe_acls", "DescribeAcls",
         admin_call("describe_acls", lambda a, tp: a.describe_acls(acl_filter, request_timeout=10))),
        ("delete_acls", "DeleteAcls",
         admin_call("delete_acls", lambda a, tp: a.delete_acls([acl_filter], request_timeout=10))),
        ("alter_configs", "AlterConfigs", admin_call(
            "alter_configs",
            lambda a, tp: a.alter_configs(
                [ConfigResource(ResourceType.TOPIC, tp, set_config={"retention.ms": "7200000"})], request_timeout=10
            ),
        )),
        ("incremental_alter_configs", "IncrementalAlterConfigs", admin_call(
            "incremental_alter_configs",
            lambda a, tp: a.incremental_alter_configs(
                [ConfigResource(ResourceType.TOPIC, tp, incremental_configs=[
                    ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
                ])],
                request_timeout=10,
            ),
        )),
        ("delete_records", "DeleteRecords", admin_call(
            "delete_records",
            lambda a, tp: a.delete_records([TopicPartition(tp, 0, 5)], request_timeout=10, operation_timeout=10),
        )),
        ("elect_leaders", "ElectLeaders", admin_call(
            "elect_leaders",
            # (no request_timeout: confluent-kafka 2.16.1 raises SystemError on any timeout kwarg here)
            lambda a, tp: a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(tp, 0)]),
        )),
        ("describe_user_scram_credentials", "DescribeUserScramCredentials", admin_call(
            "describe_user_scram_credentials",
            lambda a, tp: a.describe_user_scram_credentials(["compat"], request_timeout=10),
        )),
        ("alter_user_scram_credentials", "AlterUserScramCredentials", admin_call(
            "alter_user_scram_credentials",
            lambda a, tp: a.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(
                    "compat", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"secret-pw", b"salt"
                )],
                request_timeout=10,
            ),
        )),
    ]
    for call, api, fn in calls:
        d.unsupported(call, api, fn)


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
