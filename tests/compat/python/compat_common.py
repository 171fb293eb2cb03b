"""Shared helpers for the Python drivers of gregor's client-compatibility suite.

tests/compat/README.md is the contract: `<driver> --bootstrap HOST:PORT` prints one JSON line per
flow on stdout (client, version, flow, result, detail); everything else goes to stderr.

Each flow runs in a daemon thread of its own under its own deadline: a client call that hangs
costs that flow its deadline and nothing more (the thread is abandoned, the process ends with
os._exit). A watchdog reports every flow not yet reported as `fail` and exits before the run's
time budget is spent.
"""

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import threading
import time

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

# Records of the produce flows: 1,000 records, 100 keys, a per-key sequence number.
N_RECORDS = 1000
N_KEYS = 100


def parse_args():
    p = argparse.ArgumentParser(description="gregor client-compatibility driver")
    p.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    return p.parse_args()


def setup_logging():
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("COMPAT_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def unique_name(flow, kind=""):
    """A topic or group name unique to a flow: a prefix of the flow name plus a random suffix."""
    base = "".join(c if c.isalnum() or c in "._-" else "-" for c in flow)
    return f"{base}{'-' + kind if kind else ''}-{secrets.token_hex(4)}"


def err_text(e):
    if e is None:
        return "None"
    name = type(e).__name__
    msg = str(e)
    text = msg if msg.startswith(name) else (f"{name}: {msg}" if msg else name)
    cause = e.__cause__ or e.__context__
    if cause is not None and cause is not e and str(cause) and str(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return " ".join(text.split())[:600]


class Fail(Exception):
    """A flow's check did not hold: the message says expected vs got."""


class Result(Exception):
    """Ends a flow with a result other than pass (skip, xfail) and a detail."""

    def __init__(self, result, detail):
        super().__init__(detail)
        self.result = result
        self.detail = detail


class FlowTimeout(Exception):
    pass


class Flow:
    """What a flow function gets: its name, a stage label (reported on timeout), its deadline,
    cleanups to run afterwards and unique names."""

    def __init__(self, driver, name, deadline_s):
        self.driver = driver
        self.flow = name
        self.began = time.monotonic()
        self.deadline = self.began + deadline_s
        self.deadline_s = deadline_s
        self._stage = "start"
        self.in_call = False
        self.cleanups = []
        self.notes = []

    @property
    def stage(self):
        return self._stage

    @stage.setter
    def stage(self, s):
        self._stage = s
        log(f"  {self.flow} +{time.monotonic() - self.began:.1f}s: {s}")

    def call(self, stage):
        """Marks the start of the call under test (for unsupported:<call> lines): an error before
        this point is a failed setup, not the missing API."""
        self.stage = stage
        self.in_call = True

    def left(self, cap=None):
        """Seconds left before the flow's deadline (at least 0.1), at most cap."""
        rest = max(0.1, self.deadline - time.monotonic())
        return min(rest, cap) if cap is not None else rest

    def expired(self):
        return time.monotonic() >= self.deadline

    def check_deadline(self, what):
        if self.expired():
            raise FlowTimeout(f"deadline passed while {what}")

    def defer(self, fn):
        self.cleanups.append(fn)

    def name(self, kind=""):
        return unique_name(self.flow, kind)

    def note(self, text):
        """A remark that goes into the detail of a passing flow."""
        self.notes.append(text)


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def wait_until(t, predicate, what, timeout=None, interval=0.05):
    """Polls predicate() until it returns something truthy; Fail when the time is up."""
    end = time.monotonic() + (t.left() if timeout is None else min(timeout, t.left()))
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= end:
            raise Fail(f"gave up waiting for {what}")
        time.sleep(interval)


def _run_in_thread(fn, timeout):
    """Runs fn() in a daemon thread; returns (done, value, exception)."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported, never re-raised
            box["error"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        return False, None, None
    return True, box.get("value"), box.get("error")


class Driver:
    def __init__(self, client, version, total_budget_s=170):
        self.client = client
        self.version = version
        self.reported = set()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.current = None
        self.watchdog = threading.Timer(total_budget_s, self._abort_all)
        self.watchdog.daemon = True
        self.watchdog.start()

    def emit(self, flow, result, detail=""):
        with self.lock:
            if flow in self.reported:
                return
            self.reported.add(flow)
            line = {
                "client": self.client,
                "version": self.version,
                "flow": flow,
                "result": result,
                "detail": " ".join(str(detail or "").split()),
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            log(f"[{time.monotonic() - self.started:.1f}s] {flow}: {result} {line['detail']}")

    def _abort_all(self):
        pending = ([self.current] if self.current else []) + FLOWS
        for flow in pending:
            self.emit(flow, "fail", "driver watchdog: the whole run exceeded its time budget before this flow finished")
        sys.stdout.flush()
        os._exit(1)

    def _cleanups(self, t):
        def run_all():
            for c in reversed(t.cleanups):
                ok, _, err = _run_in_thread(c, 5)
                if not ok:
                    log(f"  {t.flow}: a cleanup hung for 5 s (abandoned)")
                elif err is not None:
                    log(f"  {t.flow}: cleanup error {err_text(err)}")

        _run_in_thread(run_all, 10)

    def flow(self, name, fn, deadline_s=45):
        """Runs fn(t) under a deadline. fn returns None (pass) or raises Fail/Result."""
        self.current = name
        t = Flow(self, name, deadline_s)
        log(f"{name}: begin")
        done, _, err = _run_in_thread(lambda: fn(t), deadline_s + 1)
        if not done:
            result, detail = "fail", f"timed out after {deadline_s} s at stage \"{t.stage}\""
        elif err is None:
            result, detail = "pass", "; ".join(t.notes)
        elif isinstance(err, Result):
            result, detail = err.result, err.detail
        elif isinstance(err, Fail):
            result, detail = "fail", f"at stage \"{t.stage}\": {err}"
        elif isinstance(err, (FlowTimeout, asyncio.TimeoutError)):
            result, detail = "fail", f"timed out after {deadline_s} s at stage \"{t.stage}\" ({err_text(err)})"
        else:
            result, detail = "fail", f"at stage \"{t.stage}\": {err_text(err)}"
        if done:
            self._cleanups(t)
        else:
            log(f"  {name}: flow thread abandoned (hung); its cleanups are skipped")
        log(f"{name} took {time.monotonic() - t.began:.1f} s")
        self.emit(name, result, detail)
        self.current = None

    def unsupported(self, call, api, fn, limit_s=15):
        """One `unsupported:<call>` line: xfail when the client gets an error within limit_s,
        pass when the call works, fail when it hangs."""
        name = f"unsupported:{call}"
        self.current = name
        t = Flow(self, name, limit_s)
        t.flow = f"unsupported-{call.replace('_', '-')}"
        began = time.monotonic()
        done, _, err = _run_in_thread(lambda: fn(t), limit_s)
        secs = time.monotonic() - began
        if not done and not t.in_call:
            result = "fail"
            detail = f"setup for {api} hung for {limit_s} s at stage \"{t.stage}\""
        elif not done:
            result = "fail"
            detail = f"{api}: no answer within {limit_s} s (hangs) at stage \"{t.stage}\""
        elif err is None:
            result, detail = "pass", f"{api} worked" + (": " + "; ".join(t.notes) if t.notes else "")
        elif isinstance(err, Result):
            result, detail = err.result, err.detail
        elif not t.in_call:
            result, detail = "fail", f"setup for {api} failed at stage \"{t.stage}\": {err_text(err)}"
        elif isinstance(err, (FlowTimeout, asyncio.TimeoutError)) or secs >= limit_s:
            result = "fail"
            detail = f"{api}: no answer within {limit_s} s (hangs) at stage \"{t.stage}\": {err_text(err)}"
        else:
            result = "xfail"
            detail = f"{api} not served by gregor; client error after {secs:.1f} s at stage \"{t.stage}\": {err_text(err)}"
        if done:
            self._cleanups(t)
        self.emit(name, result, detail)
        self.current = None

    def finish(self):
        self.watchdog.cancel()
        log(f"driver done in {time.monotonic() - self.started:.1f} s")
        sys.stdout.flush()
        sys.stderr.flush()
        # Clients may keep sockets or native threads alive (and abandoned flow threads may still
        # hang in a client call): the run is over.
        os._exit(0)


def run_async(t, coro_fn):
    """For asyncio clients: runs coro_fn(t) on a fresh event loop in the flow's thread, bounded by
    the flow's deadline; async cleanups registered with t.adefer run afterwards, bounded."""
    t.acleanups = []
    t.adefer = t.acleanups.append

    async def main():
        try:
            return await asyncio.wait_for(coro_fn(t), t.left())
        except asyncio.TimeoutError as e:
            raise FlowTimeout(f"flow deadline ({t.deadline_s} s)") from e
        finally:
            for c in reversed(t.acleanups):
                try:
                    await asyncio.wait_for(c(), 5)
                except BaseException as e:  # noqa: BLE001
                    log(f"  {t.flow}: async cleanup error {err_text(e)}")

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        try:
            pending = [x for x in asyncio.all_tasks(loop) if not x.done()]
            for x in pending:
                x.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=2))
        except BaseException:  # noqa: BLE001
            pass
        try:
            loop.close()
        except BaseException:  # noqa: BLE001
            pass


# ------------------------------------------------------------------------------------------------
# Records of the produce flows.


def make_records(n=N_RECORDS, keys=N_KEYS):
    """[(key, value)] as bytes: value is JSON {i, k, seq}."""
    out = []
    for i in range(n):
        k = i % keys
        out.append((f"key-{k}".encode(), json.dumps({"i": i, "k": k, "seq": i // keys}).encode()))
    return out


def check_records(consumed, n=N_RECORDS, keys=N_KEYS, partitions=None):
    """consumed: [(partition, offset, key bytes, value bytes)] in delivery order. Returns None when
    every record came back once, per-key order kept and each key stayed in one partition; else a
    description of the first problems found."""
    problems = []
    seen = {}
    key_partition = {}
    key_last_seq = {}
    used = {}
    for partition, offset, key, value in consumed:
        try:
            v = json.loads(value)
        except Exception:  # noqa: BLE001
            problems.append(f"unparsable value at p{partition}@{offset}")
            continue
        want_key = f"key-{v['k']}"
        got_key = key.decode() if isinstance(key, (bytes, bytearray)) else key
        if got_key != want_key:
            problems.append(f"record {v['i']}: key {got_key!r} != {want_key}")
        if v["i"] in seen:
            problems.append(f"record {v['i']} seen twice ({seen[v['i']]} and p{partition}@{offset})")
            continue
        seen[v["i"]] = f"p{partition}@{offset}"
        used[partition] = used.get(partition, 0) + 1
        if want_key in key_partition and key_partition[want_key] != partition:
            problems.append(f"{want_key} in partitions {key_partition[want_key]} and {partition}")
        key_partition[want_key] = partition
        last = key_last_seq.get(want_key, -1)
        if v["seq"] <= last:
            problems.append(f"{want_key}: seq {v['seq']} after {last} (order broken)")
        key_last_seq[want_key] = v["seq"]
    if len(seen) != n:
        missing = [i for i in range(n) if i not in seen][:5]
        problems.append(
            f"expected {n} distinct records, got {len(seen)} (of {len(consumed)} delivered); missing e.g. {missing}"
        )
    if len(key_partition) != keys:
        problems.append(f"expected {keys} keys, got {len(key_partition)}")
    if partitions and len(used) != partitions:
        problems.append(f"records landed on {len(used)} of {partitions} partitions ({sorted(used)})")
    return "; ".join(problems[:5]) if problems else None


# ------------------------------------------------------------------------------------------------
# The transactions flow: three transactions on a 1-partition topic (commit, abort, commit).

TXN_GROUP_OFFSET = 10  # committed for a group inside the last transaction (TxnOffsetCommit)


def txn_batches():
    """[(key, value)] bytes of the three transactions: committed, aborted, committed."""
    first = [(f"k{i}".encode(), f"commit1-{i}".encode()) for i in range(10)]
    aborted = [(f"k{i}".encode(), f"abort-{i}".encode()) for i in range(10)]
    last = [(f"k{i}".encode(), f"commit2-{i}".encode()) for i in range(5)]
    return first, aborted, last


def txn_expected(read_committed):
    first, aborted, last = txn_batches()
    return [v for _, v in first + ([] if read_committed else aborted) + last]


def check_txn_read(what, got, read_committed):
    """got: [(offset, value bytes)] as a consumer delivered them. None when the values are exactly
    the expected ones in order at increasing offsets; else what went wrong."""
    want = txn_expected(read_committed)
    values = [v for _, v in got]
    offsets = [o for o, _ in got]
    if values != want:
        wrong = next((i for i, (a, b) in enumerate(zip(values, want)) if a != b), min(len(values), len(want)))
        shown = [f"{o}:{v.decode(errors='replace') if isinstance(v, bytes) else v}" for o, v in got[wrong:wrong + 3]]
        return (
            f"{what} read {len(values)} records, expected {len(want)}; first difference at record {wrong}: "
            f"got {shown or 'nothing'}, expected {[w.decode() for w in want[wrong:wrong + 3]] or 'nothing'}"
        )
    if offsets != sorted(set(offsets)):
        return f"{what} read the expected values at offsets {offsets}, which do not increase"
    return None


def txn_offsets_note(got):
    """'0-9,22-26' for offsets [0..9, 22..26]."""
    runs = []
    for o, _ in got:
        if runs and o == runs[-1][1] + 1:
            runs[-1][1] = o
        else:
            runs.append([o, o])
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


def spread(consumed):
    counts = {}
    for partition, *_ in consumed:
        counts[partition] = counts.get(partition, 0) + 1
    return "records per partition " + " ".join(f"p{p}={c}" for p, c in sorted(counts.items()))
