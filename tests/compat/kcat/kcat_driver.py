#!/usr/bin/env python3
"""kcat driver for gregor's client-compatibility suite.

Usage: kcat_driver.py --bootstrap HOST:PORT   (contract: tests/compat/README.md)

Drives the `kcat` command-line client (installed by setup.sh) through subprocesses; the standard
library only. Prints one JSON line per flow on stdout; progress and kcat's complaints go to stderr.

kcat has no admin API: it cannot create a topic with a given partition count (a topic it
produces to is auto-created with the broker's num.partitions, 1 by default). Flows that need
more partitions create their topic first with the gregor CLI (`gregor topics create`, binary
from $GREGOR_BIN or target/release/gregor of this repository): that is setup, not the client
under test. The group flow also reads the committed offsets back with `gregor groups describe`
besides watching kcat resume from them.

Every kcat call has a timeout bounded by its flow's deadline, so a hanging call costs that flow
and nothing more; a watchdog ends the whole run before its budget is spent.
"""

import argparse
import collections
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time

CLIENT = "kcat"

FLOWS = [
    "list_topics",
    "admin_topics",
    "produce_none",
    "produce_gzip",
    "produce_snappy",
    "produce_lz4",
    "produce_zstd",
    "consume_earliest",
    "consume_offset",
    "consume_timestamp",
    "group",
    "admin_groups",
    "idempotent",
    "transactions",
]

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N_RECORDS = 1000
N_KEYS = 100

HERE = os.path.dirname(os.path.abspath(__file__))
BOOTSTRAP = None
STARTED = time.monotonic()


def log(msg):
    sys.stderr.write(f"[{time.monotonic() - STARTED:6.1f}s] {msg}\n")
    sys.stderr.flush()


def one_line(text, limit=600):
    return " ".join(str(text or "").split())[:limit]


def gregor_bin():
    env = os.environ.get("GREGOR_BIN")
    if env:
        return env
    return os.path.normpath(os.path.join(HERE, "..", "..", "..", "target", "release", "gregor"))


def kcat_version():
    """'1.7.1 (librdkafka 2.0.2)' from `kcat -V`, or None when kcat is missing."""
    try:
        out = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout + out.stderr
    m = re.search(r"Version\s+(\S+)", text)
    lib = re.search(r"librdkafka\s+([0-9][^\s,)]*)", text)
    if not m:
        return one_line(text, 80) or "?"
    return f"{m.group(1)} (librdkafka {lib.group(1)})" if lib else m.group(1)


# ------------------------------------------------------------------------------------------------
# Flow machinery


class Fail(Exception):
    """A flow's check did not hold: the message says expected vs got."""


class Result(Exception):
    """Ends a flow with a result other than pass/fail (skip, xfail) and a detail."""

    def __init__(self, result, detail):
        super().__init__(detail)
        self.result = result
        self.detail = detail


class Flow:
    def __init__(self, name, deadline_s):
        self.flow = name
        self.began = time.monotonic()
        self.deadline_s = deadline_s
        self.deadline = self.began + deadline_s
        self._stage = "start"
        self.procs = []
        self.notes = []
        self.in_call = False

    @property
    def stage(self):
        return self._stage

    @stage.setter
    def stage(self, s):
        self._stage = s
        log(f"  {self.flow} +{time.monotonic() - self.began:.1f}s: {s}")

    def left(self, cap=None):
        rest = max(0.1, self.deadline - time.monotonic())
        return min(rest, cap) if cap is not None else rest

    def expired(self):
        return time.monotonic() >= self.deadline

    def name(self, kind=""):
        base = "".join(c if c.isalnum() or c in "._-" else "-" for c in self.flow)
        return f"{base}{'-' + kind if kind else ''}-{secrets.token_hex(4)}"

    def note(self, text):
        self.notes.append(text)

    def spawn(self, args, stdin=subprocess.DEVNULL):
        log(f"  {self.flow}: $ {' '.join(args)}")
        p = subprocess.Popen(
            args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                kill(p)


def kill(p, grace=0.0):
    """Ends a process this driver started (by its id, and its own process group)."""
    if p.poll() is not None:
        return
    if grace:
        try:
            p.send_signal(signal.SIGINT)
            p.wait(grace)
            return
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        try:
            p.kill()
        except OSError:
            pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def wait_until(t, predicate, what, timeout):
    end = time.monotonic() + min(timeout, t.left())
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= end:
            raise Fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class Driver:
    def __init__(self, version, total_budget_s=170):
        self.version = version
        self.reported = set()
        self.lock = threading.Lock()
        self.current = None
        self.watchdog = threading.Timer(total_budget_s, self._abort_all)
        self.watchdog.daemon = True
        self.watchdog.start()

    def emit(self, flow, result, detail=""):
        with self.lock:
            if flow in self.reported:
                return
            self.reported.add(flow)
            line = {"client": CLIENT, "version": self.version, "flow": flow, "result": result,
                    "detail": one_line(detail, 1200)}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            log(f"{flow}: {result} {line['detail']}")

    def _abort_all(self):
        cur = self.current
        if cur is not None:
            cur.cleanup()
        for flow in ([cur.flow] if cur else []) + FLOWS:
            self.emit(flow, "fail", "driver watchdog: the whole run exceeded its time budget before this flow finished")
        os._exit(1)

    def flow(self, name, fn, deadline_s):
        t = Flow(name, deadline_s)
        self.current = t
        log(f"{name}: begin (deadline {deadline_s} s)")
        try:
            fn(t)
            result, detail = "pass", "; ".join(t.notes)
        except Result as r:
            result, detail = r.result, r.detail
        except Fail as e:
            result, detail = "fail", f"at stage \"{t.stage}\": {e}"
        except Exception as e:  # noqa: BLE001 - a driver bug must not stop the other flows
            result, detail = "fail", f"at stage \"{t.stage}\": driver error {type(e).__name__}: {e}"
        finally:
            t.cleanup()
        log(f"{name} took {time.monotonic() - t.began:.1f} s")
        self.emit(name, result, detail)
        self.current = None

    def finish(self):
        self.watchdog.cancel()
        log(f"driver done in {time.monotonic() - STARTED:.1f} s")
        sys.stdout.flush()
        sys.stderr.flush()


# ------------------------------------------------------------------------------------------------
# kcat and gregor CLI calls


def kcat(*args):
    return ["kcat", "-b", BOOTSTRAP, *args]


def complaints(err):
    """kcat's stderr without its routine lines."""
    lines = [ln for ln in err.decode(errors="replace").splitlines()
             if ln.strip() and "Reached end of topic" not in ln and "Using transactional producer" not in ln]
    return " | ".join(lines[-6:])


def run(t, args, stdin=None, cap=30, what=None):
    """Runs a command to completion within min(cap, time left); Fail on timeout or non-zero exit.
    Returns (stdout bytes, stderr bytes)."""
    what = what or args[0]
    timeout = t.left(cap)
    p = t.spawn(args, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(p)
        out, err = p.communicate()
        why = f"flow deadline ({t.deadline_s} s) reached" if t.expired() else f"no exit within {timeout:.0f} s"
        raise Fail(f"{what}: {why} (hangs); stderr: {complaints(err) or '(empty)'}") from None
    if p.returncode != 0:
        raise Fail(f"{what} exited {p.returncode}: {complaints(err) or '(no stderr)'}")
    if complaints(err):
        log(f"  {t.flow}: {what} stderr: {complaints(err)}")
    return out, err


def create_topic(t, topic, partitions):
    """Setup through the gregor CLI: kcat cannot create a topic with a partition count."""
    t.stage = f"create topic {topic} with {partitions} partitions (setup: gregor topics create)"
    binary = gregor_bin()
    if not os.path.exists(binary):
        raise Fail(f"gregor CLI not found at {binary} (set GREGOR_BIN) for topic setup")
    run(t, [binary, "topics", "create", "--bootstrap-server", BOOTSTRAP, "--topic", topic,
            "--partitions", str(partitions)], cap=10, what="gregor topics create")


def group_offsets(t, group, topic):
    """{partition: committed offset or None} from `gregor groups describe`, and the raw text."""
    out, _ = run(t, [gregor_bin(), "groups", "describe", "--bootstrap-server", BOOTSTRAP, "--group", group],
                 cap=10, what="gregor groups describe")
    text = out.decode(errors="replace")
    got = {}
    for ln in text.splitlines():
        f = ln.split()
        if len(f) >= 4 and f[0] == group and f[1] == topic and f[2].isdigit():
            got[int(f[2])] = int(f[3]) if f[3].lstrip("-").isdigit() else None
    return got, text


def produce(t, topic, lines, *extra, cap=30, keyed=True):
    """kcat -P: one record per line ('key:value' with -K:)."""
    data = ("\n".join(lines) + "\n").encode()
    args = kcat("-P", "-t", topic, *(["-K:"] if keyed else []), *extra)
    t.stage = f"produce {len(lines)} records to {topic} ({' '.join(extra) or 'defaults'})"
    run(t, args, stdin=data, cap=cap, what="kcat -P")


def consume(t, topic, *extra, cap=30):
    """kcat -C -e -J: reads until the end of every partition; returns the JSON envelopes."""
    t.stage = f"consume {topic} ({' '.join(extra) or 'all partitions'}) with kcat -C -e -J"
    out, _ = run(t, kcat("-C", "-t", topic, "-e", "-J", *extra), cap=cap, what="kcat -C")
    msgs = []
    for ln in out.decode(errors="replace").splitlines():
        if not ln.strip():
            continue
        try:
            msgs.append(json.loads(ln))
        except ValueError:
            raise Fail(f"kcat -C printed a line that is not JSON: {ln[:200]!r}") from None
    return msgs


def end_offsets(t, topic, partitions):
    """Log end offsets through kcat -Q (ListOffsets, latest)."""
    t.stage = f"query end offsets of {topic} (kcat -Q, ListOffsets latest)"
    args = ["-Q", "-J"]
    for p in partitions:
        args += ["-t", f"{topic}:{p}:-1"]
    out, _ = run(t, kcat(*args), cap=15, what="kcat -Q")
    try:
        doc = json.loads(out.decode(errors="replace"))
        parts = doc[topic]
        return {p: parts[str(p)]["offset"] for p in partitions}
    except (ValueError, KeyError, TypeError):
        raise Fail(f"kcat -Q answered {one_line(out.decode(errors='replace'), 300)!r}") from None


# ------------------------------------------------------------------------------------------------
# Records of the produce flows


def make_lines(n=N_RECORDS, keys=N_KEYS):
    """'key-K:{"i": i, "k": K, "seq": s}' lines for kcat -P -K: (the key ends at the first ':')."""
    return [f"key-{i % keys}:" + json.dumps({"i": i, "k": i % keys, "seq": i // keys}) for i in range(n)]


def check_records(msgs, n=N_RECORDS, keys=N_KEYS, partitions=None):
    """None when every record came back once, per-key order kept and each key stayed in one
    partition; else the first problems found."""
    problems = []
    seen = {}
    key_partition = {}
    key_last_seq = {}
    used = collections.Counter()
    for m in msgs:
        part, off = m.get("partition"), m.get("offset")
        try:
            v = json.loads(m.get("payload"))
        except (TypeError, ValueError):
            problems.append(f"unparsable payload at p{part}@{off}: {str(m.get('payload'))[:80]!r}")
            continue
        want_key = f"key-{v['k']}"
        if m.get("key") != want_key:
            problems.append(f"record {v['i']}: key {m.get('key')!r}, expected {want_key}")
        if v["i"] in seen:
            problems.append(f"record {v['i']} seen twice ({seen[v['i']]} and p{part}@{off})")
            continue
        seen[v["i"]] = f"p{part}@{off}"
        used[part] += 1
        if want_key in key_partition and key_partition[want_key] != part:
            problems.append(f"{want_key} in partitions {key_partition[want_key]} and {part}")
        key_partition[want_key] = part
        last = key_last_seq.get(want_key, -1)
        if v["seq"] <= last:
            problems.append(f"{want_key}: seq {v['seq']} after {last} (order broken)")
        key_last_seq[want_key] = v["seq"]
    if len(seen) != n:
        missing = [i for i in range(n) if i not in seen][:5]
        problems.append(f"expected {n} distinct records, got {len(seen)} (of {len(msgs)} delivered); missing e.g. {missing}")
    if len(key_partition) != keys:
        problems.append(f"expected {keys} keys, got {len(key_partition)}")
    if partitions and len(used) != partitions:
        problems.append(f"records landed on {len(used)} of {partitions} partitions ({sorted(used)})")
    return "; ".join(problems[:5]) if problems else None


def spread(msgs):
    counts = collections.Counter(m.get("partition") for m in msgs)
    return "records per partition " + " ".join(f"p{p}={c}" for p, c in sorted(counts.items()))


# ------------------------------------------------------------------------------------------------
# Flows


def flow_list_topics(t):
    one, three = t.name("a"), t.name("b")
    create_topic(t, one, 1)
    create_topic(t, three, 3)
    t.stage = "list all topics (kcat -L -J, Metadata for every topic)"
    out, _ = run(t, kcat("-L", "-J"), cap=15, what="kcat -L")
    try:
        md = json.loads(out.decode(errors="replace"))
    except ValueError:
        raise Fail(f"kcat -L -J printed no JSON: {one_line(out.decode(errors='replace'), 300)!r}") from None
    brokers = {b.get("id") for b in md.get("brokers", [])}
    if not brokers:
        raise Fail("no brokers in the Metadata answer")
    topics = {x.get("topic"): x for x in md.get("topics", [])}
    problems = []
    for name, want in ((one, 1), (three, 3)):
        x = topics.get(name)
        if x is None:
            problems.append(f"topic {name} missing from the list of {len(topics)} topics")
            continue
        if x.get("error"):
            problems.append(f"{name}: error {x['error']}")
        parts = x.get("partitions", [])
        if sorted(p.get("partition") for p in parts) != list(range(want)):
            problems.append(f"{name}: partitions {[p.get('partition') for p in parts]}, expected 0..{want - 1}")
        for p in parts:
            if p.get("leader") not in brokers or p.get("error"):
                problems.append(f"{name} [{p.get('partition')}]: leader {p.get('leader')} (brokers {sorted(brokers)}) error {p.get('error')}")
    if problems:
        raise Fail("; ".join(problems[:5]))
    t.note(f"{len(topics)} topics, {len(brokers)} broker(s)")


def flow_produce(codec):
    def go(t):
        topic = t.name()
        create_topic(t, topic, 3)
        produce(t, topic, make_lines(), "-z", codec)
        ends = end_offsets(t, topic, range(3))
        if sum(ends.values()) != N_RECORDS:
            raise Fail(f"end offsets {ends} add up to {sum(ends.values())}, expected {N_RECORDS}")
        msgs = consume(t, topic)
        problem = check_records(msgs, partitions=3)
        if problem:
            raise Fail(problem)
        t.note(spread(msgs))

    return go


def twenty(t, topic, mid_timestamp=False):
    """20 records k0:v0 .. k19:v19 in partition 0 of a 1-partition topic (auto-created by kcat -P).
    With mid_timestamp, the two halves are produced apart and the time between them is returned."""
    lines = [f"k{i}:v{i}" for i in range(20)]
    if not mid_timestamp:
        produce(t, topic, lines, "-p", "0")
        return lines, None
    produce(t, topic, lines[:10], "-p", "0")
    time.sleep(0.05)
    mid = int(time.time() * 1000)
    time.sleep(0.05)
    produce(t, topic, lines[10:], "-p", "0")
    return lines, mid


def expect_from(msgs, lines, first):
    if not msgs:
        raise Fail("no records read")
    offsets = [m.get("offset") for m in msgs]
    if offsets[0] != first:
        raise Fail(f"first record at offset {offsets[0]}, expected {first}")
    if offsets != list(range(first, 20)):
        raise Fail(f"offsets {offsets[:5]}... ({len(offsets)} records), expected {first}..19 in order")
    for m in msgs:
        got = f"{m.get('key')}:{m.get('payload')}"
        if got != lines[m["offset"]]:
            raise Fail(f"offset {m['offset']}: got {got!r}, expected {lines[m['offset']]!r}")
        if m.get("partition") != 0:
            raise Fail(f"record from partition {m.get('partition')}, expected 0")


def flow_consume_earliest(t):
    topic = t.name()
    lines, _ = twenty(t, topic)
    msgs = consume(t, topic, "-p", "0", "-o", "beginning")
    expect_from(msgs, lines, 0)


def flow_consume_offset(t):
    topic = t.name()
    lines, _ = twenty(t, topic)
    msgs = consume(t, topic, "-p", "0", "-o", "10")
    expect_from(msgs, lines, 10)


def flow_consume_timestamp(t):
    topic = t.name()
    lines, mid = twenty(t, topic, mid_timestamp=True)
    t.stage = f"look up offset for timestamp {mid} (kcat -Q, ListOffsets by timestamp)"
    out, _ = run(t, kcat("-Q", "-J", "-t", f"{topic}:0:{mid}"), cap=15, what="kcat -Q")
    try:
        found = json.loads(out.decode(errors="replace"))[topic]["0"]["offset"]
    except (ValueError, KeyError, TypeError):
        raise Fail(f"kcat -Q answered {one_line(out.decode(errors='replace'), 300)!r}") from None
    if found != 10:
        raise Fail(f"ListOffsets for timestamp {mid} (between records 9 and 10): offset {found}, expected 10")
    msgs = consume(t, topic, "-p", "0", "-o", f"s@{mid}")
    expect_from(msgs, lines, 10)
    if not (msgs[0].get("ts") or 0) >= mid:
        raise Fail(f"first record's timestamp {msgs[0].get('ts')} is before the looked-up {mid}")


REBALANCE = re.compile(r"rebalanced \(memberid ([^)]*)\): (assigned|revoked):?(.*)")


class Member:
    """One `kcat -G group topic` process: its assignment (from the '% Group .. rebalanced ..:
    assigned/revoked: topic [p], ..' lines kcat prints on stderr) and the records it printed."""

    def __init__(self, t, label, group, topic):
        self.label = label
        self.lock = threading.Lock()
        self.assigned = set()
        self.history = []
        self.records = []
        self.stderr = collections.deque(maxlen=40)
        self.errors = []
        self.proc = t.spawn(kcat(
            "-G", group, "-u", "-J",
            "-X", f"client.id={label}",
            "-X", "auto.offset.reset=earliest",
            "-X", "auto.commit.interval.ms=500",
            "-X", "session.timeout.ms=6000",
            "-X", "heartbeat.interval.ms=500",
            topic,
        ))
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self):
        for raw in self.proc.stdout:
            ln = raw.decode(errors="replace").strip()
            if not ln:
                continue
            try:
                m = json.loads(ln)
            except ValueError:
                with self.lock:
                    self.errors.append(f"non-JSON output {ln[:120]!r}")
                continue
            with self.lock:
                self.records.append((m.get("partition"), m.get("offset"), m.get("payload")))

    def _read_err(self):
        for raw in self.proc.stderr:
            ln = raw.decode(errors="replace").rstrip()
            if not ln:
                continue
            with self.lock:
                self.stderr.append(ln)
                m = REBALANCE.search(ln)
                if m:
                    parts = {int(x) for x in re.findall(r"\[(\d+)\]", m.group(3))}
                    if m.group(2) == "assigned":
                        self.assigned = parts
                    else:
                        self.assigned = self.assigned - parts
                    self.history.append(f"{m.group(2)} {sorted(parts)}")
                elif "ERROR" in ln or "|FAIL|" in ln:
                    self.errors.append(ln)
            log(f"    {self.label}: {ln}")

    def owned(self):
        with self.lock:
            return set(self.assigned)

    def got(self, tag):
        with self.lock:
            return [r for r in self.records if str(r[2]).startswith(tag)]

    def check_alive(self):
        if self.proc.poll() is not None:
            raise Fail(f"{self.label} (kcat -G) exited {self.proc.returncode}: {self.describe()}")

    def describe(self):
        with self.lock:
            tail = [ln for ln in self.stderr if "Reached end" not in ln][-6:]
            return f"assignments {self.history}, stderr: {' | '.join(tail)}"

    def stop(self, t):
        kill(self.proc, grace=min(10, t.left()))
        return self.proc.returncode


def produce_round(t, topic, tag, per_partition=5):
    for p in range(4):
        produce(t, topic, [f"{tag}-p{p}-{i}" for i in range(per_partition)], "-p", str(p), keyed=False, cap=15)


def flow_group(t):
    topic = t.name()
    group = t.name("group")
    create_topic(t, topic, 4)
    produce_round(t, topic, "r1")
    all4 = {0, 1, 2, 3}

    t.stage = "member 1 joins (kcat -G) and gets all 4 partitions"
    m1 = Member(t, "member-1", group, topic)

    def m1_all():
        m1.check_alive()
        return m1.owned() == all4 and len(m1.got("r1")) >= 20

    try:
        wait_until(t, m1_all, "member 1 to own all 4 partitions and read the 20 records", 20)
    except Fail as e:
        raise Fail(f"{e}: member 1 {m1.describe()}, read {len(m1.got('r1'))} records") from None

    t.stage = "member 2 joins; the partitions split"
    m2 = Member(t, "member-2", group, topic)

    def split():
        m1.check_alive()
        m2.check_alive()
        o1, o2 = m1.owned(), m2.owned()
        return o1 and o2 and not o1 & o2 and o1 | o2 == all4

    try:
        wait_until(t, split, "the partitions to split between two members", 25)
    except Fail as e:
        raise Fail(f"{e}: member 1 {m1.describe()}; member 2 {m2.describe()}") from None
    o1, o2 = m1.owned(), m2.owned()

    produce_round(t, topic, "r2")
    t.stage = f"each member reads the new records of its own partitions (member 1 {sorted(o1)}, member 2 {sorted(o2)})"

    def both_read():
        return len(m1.got("r2")) >= 5 * len(o1) and len(m2.got("r2")) >= 5 * len(o2)

    try:
        wait_until(t, both_read, "both members to read the second round", 15)
    except Fail as e:
        raise Fail(f"{e}: member 1 read {len(m1.got('r2'))}, member 2 read {len(m2.got('r2'))}") from None
    for m, owned in ((m1, o1), (m2, o2)):
        stray = sorted({r[0] for r in m.got("r2")} - owned)
        if stray:
            raise Fail(f"{m.label} owns {sorted(owned)} but read records of partitions {stray}")

    t.stage = "auto-commits read back (gregor groups describe): 10 per partition"
    last = {}

    def committed(want):
        def ok():
            got, _ = group_offsets(t, group, topic)
            last["got"] = got
            return got == {p: want for p in all4}
        return ok

    try:
        wait_until(t, committed(10), "committed offsets 10 on every partition", 10)
    except Fail as e:
        raise Fail(f"{e}: describe shows {last.get('got')}") from None

    t.stage = "member 2 leaves (SIGINT: kcat closes the consumer)"
    rc = m2.stop(t)
    if rc != 0:
        raise Fail(f"member 2 exited {rc} on SIGINT: {m2.describe()}")

    t.stage = "member 1 gets all 4 partitions back"

    def m1_back():
        m1.check_alive()
        return m1.owned() == all4

    try:
        wait_until(t, m1_back, "member 1 to own all 4 partitions after member 2 left", 20)
    except Fail as e:
        raise Fail(f"{e}: member 1 {m1.describe()}") from None

    produce_round(t, topic, "r3")
    t.stage = "member 1 reads the third round from all 4 partitions, resuming at the committed offsets"
    try:
        wait_until(t, lambda: len(m1.got("r3")) >= 20, "member 1 to read the 20 records of the third round", 15)
    except Fail as e:
        raise Fail(f"{e}: it read {len(m1.got('r3'))}; {m1.describe()}") from None
    with m1.lock, m2.lock:
        payloads = [r[2] for r in m1.records + m2.records]
    dups = sorted(p for p, c in collections.Counter(payloads).items() if c > 1)
    if dups:
        raise Fail(f"{len(dups)} records delivered twice across the rebalance (committed offsets not resumed), e.g. {dups[:3]}")
    if len(payloads) != 60:
        raise Fail(f"the members read {len(payloads)} records in all, expected 60")

    t.stage = "auto-commits read back (gregor groups describe): 15 per partition"
    try:
        wait_until(t, committed(15), "committed offsets 15 on every partition", 10)
    except Fail as e:
        raise Fail(f"{e}: describe shows {last.get('got')}") from None
    t.stage = "member 1 leaves"
    rc = m1.stop(t)
    if rc != 0:
        raise Fail(f"member 1 exited {rc} on SIGINT: {m1.describe()}")
    t.note(f"split {sorted(o1)} / {sorted(o2)}; commits 10 then 15 per partition read back")


def flow_idempotent(t):
    topic = t.name()
    create_topic(t, topic, 3)
    produce(t, topic, make_lines(300, 30), "-X", "enable.idempotence=true", "-X", "acks=all")
    ends = end_offsets(t, topic, range(3))
    if sum(ends.values()) != 300:
        raise Fail(f"end offsets {ends} add up to {sum(ends.values())}, expected 300")
    msgs = consume(t, topic)
    problem = check_records(msgs, n=300, keys=30, partitions=3)
    if problem:
        raise Fail(problem)


# kcat 1.7.1 reads its input in blocking chunks of 1024 bytes: a line is produced only once the
# chunk that holds it is full, or at the end of the input.
KCAT_INPUT_CHUNK = 1024


def txn_lines():
    """'key:value' lines of the three transactions: committed, aborted, committed. The aborted
    transaction's input stays open until kcat is signalled, so its lines are padded to exactly one
    input chunk: all 10 are produced before the signal."""
    first = [f"k{i}:commit1-{i}" for i in range(10)]
    aborted = [f"k{i}:abort-{i}-" for i in range(10)]
    pad = KCAT_INPUT_CHUNK - sum(len(x) + 1 for x in aborted)
    aborted = [x + "." * (pad // 10 + (pad % 10 if i == 9 else 0)) for i, x in enumerate(aborted)]
    last = [f"k{i}:commit2-{i}" for i in range(5)]
    return first, aborted, last


def read_txn(t, topic, isolation, want):
    """kcat -C -e with isolation.level `isolation` from the beginning; reads again (for up to
    10 s) while what it read is a strict prefix of `want` (the last stable offset moves once the
    coordinator has written the markers). Returns the envelopes."""
    end = time.monotonic() + t.left(10)
    while True:
        msgs = consume(t, topic, "-X", f"isolation.level={isolation}", cap=10)
        got = [f"{m.get('key')}:{m.get('payload')}" for m in msgs]
        if len(got) >= len(want) or got != want[:len(got)] or time.monotonic() >= end:
            return msgs
        time.sleep(0.3)


def check_txn(what, msgs, want):
    got = [f"{m.get('key')}:{m.get('payload')}" for m in msgs]
    offsets = [m.get("offset") for m in msgs]
    if got != want:
        wrong = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        shown = [f"{o}:{g}" for o, g in zip(offsets[wrong:wrong + 3], got[wrong:wrong + 3])]
        raise Fail(f"{what} read {len(got)} records, expected {len(want)}; first difference at record {wrong}: "
                   f"got {shown or 'nothing'}, expected {want[wrong:wrong + 3] or 'nothing'}")
    if offsets != sorted(set(offsets)) or any(m.get("partition") != 0 for m in msgs):
        raise Fail(f"{what} read the expected records at offsets {offsets}, which do not increase")


def offset_runs(msgs):
    runs = []
    for m in msgs:
        o = m.get("offset")
        if runs and o == runs[-1][1] + 1:
            runs[-1][1] = o
        else:
            runs.append([o, o])
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


def flow_transactions(t):
    """kcat -P -X transactional.id=..: each kcat run is one transaction (InitProducerId with the
    transactional id, AddPartitionsToTxn, EndTxn), committed when stdin closes and aborted when
    kcat gets a termination signal. Three runs with one transactional id: commit 10 records,
    abort 10 (once they are in the log), commit 5. kcat offers no send_offsets_to_transaction."""
    topic = t.name()
    create_topic(t, topic, 1)
    first, aborted, last = txn_lines()
    txn = ["-K:", "-p", "0", "-X", f"transactional.id={t.name('txn')}"]

    produce(t, topic, first, *txn[1:], cap=20)

    # kcat -Q asks with a producer handle, which ignores isolation.level (ListOffsets gives the
    # last stable offset): count what a read_uncommitted consumer reads instead.
    read_uncommitted = ["-X", "isolation.level=read_uncommitted"]
    before = len(consume(t, topic, *read_uncommitted, cap=10))
    t.stage = f"transaction 2: kcat -P with 10 records ({KCAT_INPUT_CHUNK} bytes) on stdin, left open"
    data = ("\n".join(aborted) + "\n").encode()
    assert len(data) == KCAT_INPUT_CHUNK, len(data)
    p = t.spawn(kcat("-P", "-t", topic, *txn), stdin=subprocess.PIPE)
    try:
        p.stdin.write(data)
        p.stdin.flush()
    except OSError as e:
        kill(p)
        raise Fail(f"kcat -P (transaction 2) stopped reading its input: {e}; stderr: {complaints(p.stderr.read())}") from None
    t.stage = f"transaction 2: wait for the 10 records in the log ({before} + 10 read by a read_uncommitted consumer)"

    def written():
        if p.poll() is not None:
            raise Fail(f"kcat -P (transaction 2) exited {p.returncode} before its records were written: "
                       f"{complaints(p.stderr.read())}")
        return len(consume(t, topic, *read_uncommitted, cap=10)) >= before + 10

    wait_until(t, written, "the records of transaction 2 in the log", 15)
    t.stage = "transaction 2: SIGINT, end of input (kcat aborts: EndTxn abort)"
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(b"", timeout=t.left(15))
    except subprocess.TimeoutExpired:
        kill(p)
        _, err = p.communicate()
        raise Fail(f"kcat did not exit within 15 s of SIGINT (abort hangs); stderr: {complaints(err) or '(empty)'}") from None
    text = err.decode(errors="replace")
    errors = [ln for ln in text.splitlines() if ln.startswith("% ERROR")]
    if "Aborting transaction" not in text or errors:
        raise Fail(f"kcat exited {p.returncode} on SIGINT without a clean abort: {one_line(' | '.join(errors) or text, 400)}")

    produce(t, topic, last, *txn[1:], cap=20)

    committed = read_txn(t, topic, "read_committed", first + last)
    check_txn("read_committed consumer (kcat -C -X isolation.level=read_committed)", committed, first + last)
    uncommitted = read_txn(t, topic, "read_uncommitted", first + aborted + last)
    check_txn("read_uncommitted consumer (kcat -C -X isolation.level=read_uncommitted)", uncommitted,
              first + aborted + last)
    t.note(f"read_committed read offsets {offset_runs(committed)}, read_uncommitted {offset_runs(uncommitted)}; "
           "kcat offers no send_offsets_to_transaction")


def main():
    global BOOTSTRAP
    ap = argparse.ArgumentParser(description="kcat driver for gregor's client-compatibility suite")
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    BOOTSTRAP = ap.parse_args().bootstrap

    version = kcat_version()
    d = Driver(version or "not installed")
    if version is None:
        for f in FLOWS:
            d.emit(f, "fail", "kcat not found on PATH (run tests/compat/kcat/setup.sh)")
        d.finish()
        return 1
    log(f"kcat {version}, broker {BOOTSTRAP}, gregor CLI {gregor_bin()}")

    d.flow("list_topics", flow_list_topics, 30)
    d.emit("admin_topics", "skip", "kcat has no admin API (no CreateTopics/DescribeConfigs/DeleteTopics)")
    for codec in CODECS:
        d.flow(f"produce_{codec}", flow_produce(codec), 45)
    d.flow("consume_earliest", flow_consume_earliest, 30)
    d.flow("consume_offset", flow_consume_offset, 30)
    d.flow("consume_timestamp", flow_consume_timestamp, 30)
    d.flow("group", flow_group, 60)
    d.emit("admin_groups", "skip", "kcat has no admin API for groups (no ListGroups/DescribeGroups/OffsetDelete/DeleteGroups)")
    d.flow("idempotent", flow_idempotent, 45)
    d.flow("transactions", flow_transactions, 60)
    d.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
