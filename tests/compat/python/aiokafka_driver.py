#!/usr/bin/env python3
"""aiokafka driver for gregor's client-compatibility suite.

Usage: aiokafka_driver.py --bootstrap HOST:PORT   (contract: tests/compat/README.md)

Each flow runs on a fresh event loop in its own thread (compat_common.run_async), bounded by the
flow's deadline; clients are stopped afterwards, each stop bounded.
"""

import asyncio
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ for compat_common in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiokafka  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete  # noqa: E402
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: E402
from aiokafka.errors import for_code  # noqa: E402
from aiokafka.structs import OffsetAndMetadata  # noqa: E402

import compat_common as cc  # noqa: E402
from compat_common import Fail  # noqa: E402

CLIENT = "aiokafka"
VERSION = aiokafka.__version__
BOOTSTRAP = None


def sync(coro_fn):
    """A flow function for Driver.flow from an async one."""
    return lambda t: cc.run_async(t, coro_fn)


async def admin(t):
    t.stage = "start admin client"
    a = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=10000)
    t.adefer(a.close)
    await a.start()
    return a


def _raise_errors(what, errors):
    """errors: [(name, error_code, message?)] from a response; raises on a non-zero code."""
    for e in errors:
        if e[1]:
            msg = e[2] if len(e) > 2 else ""
            raise for_code(e[1])(f"{what} {e[0]}: {msg}")


async def create_topic(t, a, name, partitions, configs=None):
    t.stage = f"create topic {name} ({partitions} partitions)"
    res = await a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=configs or {})],
        timeout_ms=10000,
    )
    _raise_errors("CreateTopics", res.topic_errors)


async def producer(t, **extra):
    t.stage = "start producer"
    p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, request_timeout_ms=10000, **extra)
    t.adefer(p.stop)
    await p.start()
    return p


async def produce_all(t, p, topic, records, partition=None, timestamps=None):
    """Sends [(key, value)] and waits for every acknowledgement."""
    t.stage = f"produce {len(records)} records to {topic}"
    futs = []
    for i, (k, v) in enumerate(records):
        kwargs = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamps is not None:
            kwargs["timestamp_ms"] = timestamps[i]
        futs.append(await p.send(topic, key=k, value=v, **kwargs))
    t.stage = f"waiting for {len(records)} acknowledgements"
    results = await asyncio.gather(*futs, return_exceptions=True)
    errors = [cc.err_text(r) for r in results if isinstance(r, BaseException)]
    if errors:
        raise Fail(f"{len(errors)} of {len(records)} records failed, e.g. {errors[0]}")
    return [(r.partition, r.offset) for r in results]


async def plain_consumer(t, **extra):
    t.stage = "start consumer"
    c = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10000,
        **extra,
    )
    t.adefer(c.stop)
    await c.start()
    return c


async def read_range(t, c, topic, starts, ends):
    """starts: {partition: offset or 'earliest'}; reads until each partition reached ends[p].
    Returns [(partition, offset, key, value, timestamp)]."""
    t.stage = f"read {topic} partitions {sorted(starts)} from {starts} to {ends}"
    tps = {p: TopicPartition(topic, p) for p in starts}
    c.assign(list(tps.values()))
    for p, off in starts.items():
        if off == "earliest":
            await c.seek_to_beginning(tps[p])
        else:
            c.seek(tps[p], off)
    out = []
    nxt = {}
    while not all(nxt.get(p, -1) >= ends[p] or ends[p] <= 0 for p in starts):
        batch = await c.getmany(timeout_ms=500)
        for tp, msgs in batch.items():
            for m in msgs:
                out.append((m.partition, m.offset, m.key, m.value, m.timestamp))
                nxt[m.partition] = m.offset + 1
    return out


async def end_offsets(t, c, topic, partitions):
    t.stage = f"end offsets of {topic}"
    res = await c.end_offsets([TopicPartition(topic, p) for p in partitions])
    return {tp.partition: off for tp, off in res.items()}


# ------------------------------------------------------------------------------------------------
# Flows


async def flow_list_topics(t):
    a = await admin(t)
    name = t.name()
    await create_topic(t, a, name, 1)
    t.stage = "list all topics (AIOKafkaAdminClient.list_topics)"
    topics = await a.list_topics()
    if name not in topics:
        raise Fail(f"topic {name} missing from the list of {len(topics)} topics")
    t.stage = "list all topics (AIOKafkaConsumer.topics)"
    c = await plain_consumer(t)
    if name not in await c.topics():
        raise Fail(f"topic {name} missing from AIOKafkaConsumer.topics()")


async def flow_admin_topics(t):
    a = await admin(t)
    name = t.name()
    await create_topic(t, a, name, 3, {"retention.ms": "3600000"})
    t.stage = "describe topic (describe_topics)"
    desc = await a.describe_topics([name])
    if len(desc) != 1 or desc[0].get("error_code", 0) != 0:
        raise Fail(f"describe_topics: {desc}")
    if len(desc[0]["partitions"]) != 3:
        raise Fail(f"expected 3 partitions, described {len(desc[0]['partitions'])}")
    t.stage = "describe topic configs (describe_configs)"
    responses = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    value = None
    for resp in responses:
        for res in resp.to_object()["resources"]:
            if res["error_code"]:
                raise Fail(f"describe_configs error {res['error_code']}: {res.get('error_message')}")
            for entry in res["config_entries"]:
                if entry["config_names"] == "retention.ms":
                    value = entry["config_value"]
    if value != "3600000":
        raise Fail(f"retention.ms: expected 3600000, got {value!r}")
    t.stage = "delete topic"
    res = await a.delete_topics([name], timeout_ms=10000)
    _raise_errors("DeleteTopics", res.topic_error_codes)
    t.stage = "see the topic gone (list_topics)"
    for _ in range(30):
        if name not in await a.list_topics():
            return
        await asyncio.sleep(0.3)
    raise Fail("deleted topic still listed after 9 s")


def flow_produce(codec):
    async def run(t):
        a = await admin(t)
        topic = t.name()
        await create_topic(t, a, topic, 3)
        p = await producer(t, compression_type=None if codec == "none" else codec)
        records = cc.make_records()
        await produce_all(t, p, topic, records)
        c = await plain_consumer(t)
        ends = await end_offsets(t, c, topic, range(3))
        if sum(ends.values()) != len(records):
            raise Fail(f"end offsets {ends} add up to {sum(ends.values())}, expected {len(records)}")
        got = await read_range(t, c, topic, {p_: 0 for p_ in range(3)}, ends)
        problem = cc.check_records([r[:4] for r in got], partitions=3)
        if problem:
            raise Fail(problem)
        t.note(cc.spread(got))

    return run


async def _twenty(t, topic, timestamps=None):
    a = await admin(t)
    await create_topic(t, a, topic, 1)
    p = await producer(t)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    await produce_all(t, p, topic, records, partition=0, timestamps=timestamps)
    return records


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


async def flow_consume_earliest(t):
    topic = t.name()
    records = await _twenty(t, topic)
    c = await plain_consumer(t)
    got = await read_range(t, c, topic, {0: "earliest"}, {0: 20})
    _expect_from(got, records, 0)


async def flow_consume_offset(t):
    topic = t.name()
    records = await _twenty(t, topic)
    c = await plain_consumer(t)
    got = await read_range(t, c, topic, {0: 10}, {0: 20})
    _expect_from(got, records, 10)


async def flow_consume_timestamp(t):
    topic = t.name()
    base = int(time.time() * 1000) - 60000
    stamps = [base + i * 1000 for i in range(20)]
    records = await _twenty(t, topic, timestamps=stamps)
    c = await plain_consumer(t)
    tp = TopicPartition(topic, 0)
    t.stage = "offsets_for_times (ListOffsets by timestamp)"
    found = await c.offsets_for_times({tp: stamps[10] - 500})
    if found.get(tp) is None or found[tp].offset != 10:
        raise Fail(f"offsets_for_times({stamps[10] - 500}): expected offset 10, got {found.get(tp)}")
    got = await read_range(t, c, topic, {0: found[tp].offset}, {0: 20})
    _expect_from(got, records, 10)
    if got[0][4] != stamps[10]:
        raise Fail(f"first record's timestamp {got[0][4]}, expected {stamps[10]}")


async def _group_consumer(t, group, name):
    c = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        client_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        request_timeout_ms=10000,
    )
    t.adefer(c.stop)
    await c.start()
    return c


def _owned(c):
    return sorted(tp.partition for tp in c.assignment())


async def _commit(c, topic, offsets):
    await c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in offsets.items()})


async def _committed(c, topic, partitions):
    return {p: await c.committed(TopicPartition(topic, p)) for p in partitions}


async def _wait(t, predicate, what, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await predicate():
            return
    raise Fail(f"gave up waiting for {what} after {timeout} s")


async def flow_group(t):
    a = await admin(t)
    topic = t.name()
    group = t.name("group")
    await create_topic(t, a, topic, 4)
    p = await producer(t)
    await produce_all(t, p, topic, [(b"k", f"v{i}".encode()) for i in range(8)])
    c1 = await _group_consumer(t, group, "member-1")
    c2 = await _group_consumer(t, group, "member-2")
    c1.subscribe([topic])
    t.stage = "first member joins, waits for all 4 partitions"

    async def c1_all():
        await c1.getmany(timeout_ms=50)
        return _owned(c1) == [0, 1, 2, 3]

    await _wait(t, c1_all, "member 1 to own all 4 partitions", 20)
    c2.subscribe([topic])
    t.stage = "second member joins; partitions split"

    async def split():
        await asyncio.gather(c1.getmany(timeout_ms=50), c2.getmany(timeout_ms=50))
        o1, o2 = _owned(c1), _owned(c2)
        return o1 and o2 and not set(o1) & set(o2) and sorted(o1 + o2) == [0, 1, 2, 3]

    try:
        await _wait(t, split, "the partitions to split between two members", 25)
    except Fail:
        raise Fail(f"no split between two members: member 1 owns {_owned(c1)}, member 2 owns {_owned(c2)}")
    o1, o2 = _owned(c1), _owned(c2)
    t.stage = f"commit offsets (member 1 owns {o1}, member 2 owns {o2})"
    await _commit(c1, topic, {p_: 1 for p_ in o1})
    await _commit(c2, topic, {p_: 1 for p_ in o2})
    t.stage = "read commits back"
    got = await _committed(c2, topic, range(4))
    if got != {0: 1, 1: 1, 2: 1, 3: 1}:
        raise Fail(f"committed offsets read back {got}, expected 1 for each partition")
    t.stage = "second member leaves (stop)"
    await c2.stop()
    t.stage = "first member takes all 4 partitions"

    async def all_back():
        await c1.getmany(timeout_ms=50)
        return _owned(c1) == [0, 1, 2, 3]

    try:
        await _wait(t, all_back, "member 1 to own all 4 partitions again", 20)
    except Fail:
        raise Fail(f"after member 2 left, member 1 owns {_owned(c1)}, expected [0, 1, 2, 3]")
    t.stage = "commit and read back after the rebalance"
    await _commit(c1, topic, {p_: 2 for p_ in range(4)})
    got = await _committed(c1, topic, range(4))
    if got != {0: 2, 1: 2, 2: 2, 3: 2}:
        raise Fail(f"committed offsets read back {got}, expected 2 for each partition")
    t.note(f"split {o1} / {o2}")


async def flow_admin_groups(t):
    """aiokafka's admin client offers list_consumer_groups, describe_consumer_groups and
    list_consumer_group_offsets; no alter, reset or delete of groups or offsets."""
    a = await admin(t)
    topic = t.name()
    group = t.name("group")
    problems = []
    await create_topic(t, a, topic, 2)
    c = await _group_consumer(t, group, "member-1")
    c.subscribe([topic])
    t.stage = "member joins"

    async def owns_both():
        await c.getmany(timeout_ms=50)
        return _owned(c) == [0, 1]

    await _wait(t, owns_both, "the member to own both partitions", 20)
    await _commit(c, topic, {0: 1, 1: 2})

    t.stage = "list_consumer_groups"
    groups = await a.list_consumer_groups()
    mine = [g for g in groups if g[0] == group]
    if not mine:
        raise Fail(f"group {group} missing from list_consumer_groups ({len(groups)} groups)")
    if mine[0][1] != "consumer":
        problems.append(f"list_consumer_groups: protocol type {mine[0][1]!r}, expected 'consumer'")

    t.stage = "describe_consumer_groups"
    responses = await a.describe_consumer_groups([group])
    groups = [g for r in responses for g in r.to_object()["groups"] if g["group"] == group]
    if not groups:
        raise Fail(f"describe_consumer_groups: group {group} not in the answer")
    g = groups[0]
    if g["error_code"] or g["state"] != "Stable" or len(g["members"]) != 1:
        problems.append(
            f"describe: error {g['error_code']}, state {g['state']} with {len(g['members'])} members, "
            "expected Stable with 1"
        )
    if g.get("protocol_type") != "consumer":
        problems.append(f"describe: protocol_type {g.get('protocol_type')!r}, expected 'consumer'")

    t.stage = "member leaves (stop)"
    await c.stop()

    t.stage = "list_consumer_group_offsets"
    res = await a.list_consumer_group_offsets(group)
    got = {tp.partition: oam.offset for tp, oam in res.items() if tp.topic == topic}
    if got != {0: 1, 1: 2}:
        problems.append(f"list_consumer_group_offsets: {got}, expected {{0: 1, 1: 2}}")
    t.stage = "describe_consumer_groups after leave"
    responses = await a.describe_consumer_groups([group])
    groups = [g for r in responses for g in r.to_object()["groups"] if g["group"] == group]
    if not groups or groups[0]["state"] != "Empty":
        problems.append(f"describe after the member left: {groups[0]['state'] if groups else None}, expected Empty")
    if problems:
        t.stage = "all admin calls made"
        raise Fail("; ".join(problems))
    t.note("aiokafka offers no alter/reset/delete of groups or offsets")


async def flow_idempotent(t):
    a = await admin(t)
    topic = t.name()
    await create_topic(t, a, topic, 3)
    p = await producer(t, enable_idempotence=True, acks="all")
    records = cc.make_records(300, 30)
    await produce_all(t, p, topic, records)
    c = await plain_consumer(t)
    ends = await end_offsets(t, c, topic, range(3))
    if sum(ends.values()) != len(records):
        raise Fail(f"end offsets {ends} add up to {sum(ends.values())}, expected {len(records)}")
    got = await read_range(t, c, topic, {p_: 0 for p_ in range(3)}, ends)
    problem = cc.check_records([r[:4] for r in got], n=300, keys=30, partitions=3)
    if problem:
        raise Fail(problem)


async def _read_txn_topic(t, topic, isolation):
    """A consumer with isolation_level `isolation` reads partition 0 from the beginning until it has
    as many records as the flow expects (for at most 15 s), then reads 0.5 s more for any extra.
    Returns [(offset, value)]."""
    want = len(cc.txn_expected(isolation == "read_committed"))
    c = await plain_consumer(t, isolation_level=isolation)
    t.stage = f"{isolation} consumer reads {topic} from the beginning (expects {want} records)"
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    await c.seek_to_beginning(tp)
    out = []
    end = time.monotonic() + t.left(15)
    grace_end = None
    while time.monotonic() < (grace_end or end):
        for msgs in (await c.getmany(timeout_ms=200)).values():
            out.extend((m.offset, m.value) for m in msgs)
        if grace_end is None and len(out) >= want:
            grace_end = time.monotonic() + 0.5
    return out


async def flow_transactions(t):
    a = await admin(t)
    topic = t.name()
    group = t.name("group")
    await create_topic(t, a, topic, 1)
    first, aborted, last = cc.txn_batches()
    t.stage = "start transactional producer (FindCoordinator(txn), InitProducerId with transactional.id)"
    p = await producer(t, transactional_id=t.name("txn"), transaction_timeout_ms=30000)

    t.stage = "transaction 1: begin_transaction (waits for the producer id)"
    await p.begin_transaction()
    await produce_all(t, p, topic, first, partition=0)
    t.stage = "transaction 1: commit_transaction (EndTxn commit)"
    await p.commit_transaction()

    t.stage = "transaction 2: begin_transaction"
    await p.begin_transaction()
    await produce_all(t, p, topic, aborted, partition=0)  # acknowledged: the records are in the log
    t.stage = "transaction 2: abort_transaction (EndTxn abort)"
    await p.abort_transaction()

    t.stage = "transaction 3: begin_transaction"
    await p.begin_transaction()
    await produce_all(t, p, topic, last, partition=0)
    t.stage = f"transaction 3: send_offsets_to_transaction (AddOffsetsToTxn, TxnOffsetCommit) for group {group}"
    await p.send_offsets_to_transaction({TopicPartition(topic, 0): cc.TXN_GROUP_OFFSET}, group)
    t.stage = "transaction 3: commit_transaction (EndTxn commit)"
    await p.commit_transaction()

    committed = await _read_txn_topic(t, topic, "read_committed")
    problem = cc.check_txn_read("read_committed consumer", committed, True)
    if problem:
        raise Fail(problem)
    uncommitted = await _read_txn_topic(t, topic, "read_uncommitted")
    problem = cc.check_txn_read("read_uncommitted consumer", uncommitted, False)
    if problem:
        raise Fail(problem)

    t.stage = f"read the group's offset back (AIOKafkaConsumer.committed, OffsetFetch for {group})"
    g = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False, request_timeout_ms=10000)
    t.adefer(g.stop)
    await g.start()
    got = None
    end = time.monotonic() + 10
    while time.monotonic() < end:
        got = await g.committed(TopicPartition(topic, 0))
        if got == cc.TXN_GROUP_OFFSET:
            break
        await asyncio.sleep(0.3)
    else:
        raise Fail(f"committed() for group {group} gives {got}, expected {cc.TXN_GROUP_OFFSET}")
    t.note(
        f"read_committed read offsets {cc.txn_offsets_note(committed)}, read_uncommitted "
        f"{cc.txn_offsets_note(uncommitted)}; group offset {cc.TXN_GROUP_OFFSET} read back"
    )


# ------------------------------------------------------------------------------------------------
# Calls gregor does not serve yet


def unsupported_calls(d):
    async def setup_topic(t):
        a = await admin(t)
        name = cc.unique_name("unsupported")
        await create_topic(t, a, name, 1)
        p = await producer(t)
        await produce_all(t, p, name, [(b"k", f"v{i}".encode()) for i in range(10)], partition=0)
        return a, name

    async def alter_configs(t):
        a, name = await setup_topic(t)
        t.call("alter_configs")
        responses = await a.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "7200000"})]
        )
        for resp in responses:
            for res in resp.to_object()["resources"]:
                if res["error_code"]:
                    raise for_code(res["error_code"])(res.get("error_message"))

    async def delete_records(t):
        a, name = await setup_topic(t)
        t.call("delete_records")
        await a.delete_records({TopicPartition(name, 0): RecordsToDelete(before_offset=5)}, timeout_ms=10000)

    calls = [
        ("alter_configs", "AlterConfigs", alter_configs),
        ("delete_records", "DeleteRecords", delete_records),
    ]
    for call, api, fn in calls:
        d.unsupported(call, api, sync(fn))


def main():
    global BOOTSTRAP
    args = cc.parse_args()
    BOOTSTRAP = args.bootstrap
    cc.setup_logging()
    d = cc.Driver(CLIENT, VERSION)
    d.flow("list_topics", sync(flow_list_topics), 30)
    d.flow("admin_topics", sync(flow_admin_topics), 40)
    for codec in cc.CODECS:
        d.flow(f"produce_{codec}", sync(flow_produce(codec)), 45)
    d.flow("consume_earliest", sync(flow_consume_earliest), 30)
    d.flow("consume_offset", sync(flow_consume_offset), 30)
    d.flow("consume_timestamp", sync(flow_consume_timestamp), 30)
    d.flow("group", sync(flow_group), 60)
    d.flow("admin_groups", sync(flow_admin_groups), 45)
    d.flow("idempotent", sync(flow_idempotent), 40)
    d.flow("transactions", sync(flow_transactions), 60)
    unsupported_calls(d)
    d.finish()


if __name__ == "__main__":
    main()
