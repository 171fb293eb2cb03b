#!/usr/bin/env python3
"""Burrow driver for gregor's client-compatibility suite (tests/compat/README.md).

Usage: burrow_driver.py --bootstrap HOST:PORT

Burrow (LinkedIn's consumer lag monitor; Debian's package, built on sarama 1.22) watches a
cluster: it polls the partitions' end offsets (ListOffsets) and reads the committed offsets from
__consumer_offsets itself (Fetch), then serves each group's lag over HTTP.

One flow, `lag`: a 1-partition topic gets N records (kcat -P), a consumer group commits after
K of them (kcat -G ... -c K), Burrow starts against the broker, and its
/v3/kafka/<cluster>/consumer/<group>/lag must report the N-K records left unconsumed.
Topic creation uses the gregor CLI ($GREGOR_BIN or target/release/gregor of this repository):
setup, not the client under test. Burrow insists on a ZooKeeper for its own locking; an in-memory
one (fake_zookeeper.py) stands in, since Debian's needs a JRE.

Standard library only; prints one JSON line per flow on stdout, progress on stderr.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_zookeeper import FakeZooKeeper  # noqa: E402

CLIENT = "Burrow"
FLOWS = ["lag"]
N_RECORDS = 100
N_CONSUMED = 40
HERE = os.path.dirname(os.path.abspath(__file__))
STARTED = time.monotonic()


def log(msg):
    sys.stderr.write(f"[{time.monotonic() - STARTED:.1f}s] {msg}\n")
    sys.stderr.flush()


def burrow_version():
    try:
        v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "burrow"], capture_output=True,
                           text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        v = ""
    if not v:
        return None
    upstream = v.rsplit("-", 1)[0] if "-" in v else v
    return f"{upstream} (Debian {v})"


def gregor_bin():
    b = os.environ.get("GREGOR_BIN")
    if b:
        return b
    return os.path.normpath(os.path.join(HERE, "..", "..", "..", "target", "release", "gregor"))


def die_with_parent():
    """In the child: SIGKILL when the driver goes away, however it ends (no stray Burrow)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(kind):
    return f"lag-{kind + '-' if kind else ''}{secrets.token_hex(4)}"


class Fail(Exception):
    pass


class XFail(Exception):
    pass


def probe_api_versions(bootstrap):
    """gregor's advertised version ranges ({api_key: (min, max)}) from one raw ApiVersions v0
    request: used only to explain a failure, never to change what Burrow does."""
    host, port = bootstrap.rsplit(":", 1)
    body = struct.pack(">hhih", 18, 0, 1, 5) + b"probe"
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    _, _, err, n = struct.unpack(">iihi", data[:14])
    if err:
        return None
    out, off = {}, 14
    for _ in range(n):
        k, lo, hi = struct.unpack(">hhh", data[off:off + 6])
        out[k] = (lo, hi)
        off += 6
    return out


def burrow_log_events(d):
    events = []
    try:
        with open(os.path.join(d, "burrow.log"), errors="replace") as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return events


def listoffsets_v0_gap(d, bootstrap, group):
    """Burrow 1.2.1's cluster module polls end offsets with a sarama OffsetRequest of version 0
    (ListOffsets v0), whatever kafka-version says. When gregor does not serve v0 it closes the
    connection, Burrow logs "failed to fetch offsets from broker" (EOF) and, knowing no topic,
    drops every commit it reads. Returns the xfail detail when that is what happened."""
    events = burrow_log_events(d)
    fails = [e for e in events if e.get("msg") == "failed to fetch offsets from broker"]
    commits = [e for e in events if e.get("msg") == "consumer offset" and e.get("group") == group]
    # Enough to be sure; a little longer (one poll a second) to see the commit read too.
    if len(fails) < 3 or (not commits and len(fails) < 20):
        return None
    try:
        ranges = probe_api_versions(bootstrap) or {}
    except (OSError, struct.error) as e:
        log(f"ApiVersions probe failed: {e}")
        return None
    lo_hi = ranges.get(2)
    if lo_hi is None or lo_hi[0] <= 0:
        return None
    dropped = [e for e in events if e.get("msg") == "dropped" and e.get("reason") == "no topic"]
    seen = (f"its consumer module did read the group's commit from __consumer_offsets (offset "
            f"{commits[-1].get('offset')}) but dropped it for want of the topic" if commits and dropped else
            f"{len(commits)} commit(s) of the group decoded from __consumer_offsets")
    return (f"Burrow 1.2.1's cluster module sends ListOffsets v0 (a sarama OffsetRequest without a "
            f"version, whatever kafka-version says); gregor serves ListOffsets v{lo_hi[0]}-{lo_hi[1]} "
            f"(Kafka 4.0 removed v0, KIP-896) and closed the connection: Burrow logged \"failed to "
            f"fetch offsets from broker\" (sarama_error {fails[-1].get('sarama_error')}) "
            f"{len(fails)} times, knows no topic and so reports no lag; {seen}")


class Driver:
    def __init__(self, version):
        self.version = version
        self.reported = set()
        self.lock = threading.Lock()

    def emit(self, flow, result, detail=""):
        with self.lock:
            if flow in self.reported:
                return
            self.reported.add(flow)
            line = {"client": CLIENT, "version": self.version, "flow": flow, "result": result,
                    "detail": " ".join(str(detail).split())[:1500]}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            log(f"{flow}: {result} {line['detail']}")


def run(cmd, timeout, stdin=None):
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise Fail(f"{' '.join(cmd[:3])}... exited {p.returncode}: {p.stderr.strip()[-400:]}")
    return p.stdout


def http_get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def burrow_config(d, bootstrap, zk_port, http_port):
    return f"""
[general]
pidfile="{d}/burrow.pid"

[logging]
filename="{d}/burrow.log"
level="debug"

[zookeeper]
servers=["127.0.0.1:{zk_port}"]
timeout=6
root-path="/burrow"

[client-profile.gregor]
client-id="burrow-compat"
kafka-version="2.0.0"

[cluster.gregor]
class-name="kafka"
servers=["{bootstrap}"]
client-profile="gregor"
topic-refresh=2
offset-refresh=1

[consumer.gregor]
class-name="kafka"
cluster="gregor"
servers=["{bootstrap}"]
client-profile="gregor"
offsets-topic="__consumer_offsets"
start-latest=false

[httpserver.default]
address="127.0.0.1:{http_port}"

[storage.default]
class-name="inmemory"
workers=4
intervals=10
expire-group=604800
min-distance=1
"""


def burrow_log_summary(d, limit=6):
    """The Burrow log's warnings and errors (de-duplicated), for a failure's detail."""
    path = os.path.join(d, "burrow.log")
    seen, out = set(), []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("level") not in ("warn", "error", "panic", "fatal"):
                    continue
                keep = {k: v for k, v in e.items() if k not in ("ts", "level", "caller")}
                s = json.dumps(keep, sort_keys=True)
                key = (e.get("msg"), e.get("error"), e.get("reason"))
                if key in seen:
                    continue
                seen.add(key)
                out.append(s)
    except OSError as e:
        return f"no Burrow log ({e})"
    return "; ".join(out[-limit:]) if out else "no warnings or errors in Burrow's log"


def flow_lag(bootstrap, deadline):
    topic, group = unique(""), unique("g")
    lag_expected = N_RECORDS - N_CONSUMED
    tmp = tempfile.mkdtemp(prefix="burrow-compat-")
    zk = burrow = None
    try:
        log(f"setup: topic {topic} (1 partition) with the gregor CLI")
        run([gregor_bin(), "topics", "create", "--bootstrap-server", bootstrap, "--topic", topic,
             "--partitions", "1"], 15)
        log(f"kcat -P: {N_RECORDS} records")
        run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0"], 15,
            stdin="".join(f"v-{i}\n" for i in range(N_RECORDS)))
        log(f"kcat -G {group}: consume {N_CONSUMED}, commit, leave")
        out = run(["kcat", "-b", bootstrap, "-G", group, "-c", str(N_CONSUMED),
                   "-X", "auto.offset.reset=earliest", "-q", "-f", "%o\n", topic], 30)
        offsets = [int(x) for x in out.split()]
        if offsets != list(range(N_CONSUMED)):
            raise Fail(f"kcat -G read offsets {offsets[:3]}..{offsets[-3:]} ({len(offsets)}), expected 0..{N_CONSUMED - 1}")

        zk = FakeZooKeeper()
        http_port = free_port()
        with open(os.path.join(tmp, "burrow.toml"), "w") as f:
            f.write(burrow_config(tmp, bootstrap, zk.port, http_port))
        log(f"starting Burrow (ZooKeeper stand-in on {zk.port}, HTTP on {http_port}, config in {tmp})")
        out_f = open(os.path.join(tmp, "burrow.out"), "w")
        burrow = subprocess.Popen(["Burrow", "-config-dir", tmp], cwd=tmp, stdout=out_f,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, preexec_fn=die_with_parent)
        base = f"http://127.0.0.1:{http_port}/v3/kafka/gregor"
        last = "no answer yet"
        while time.monotonic() < deadline:
            if burrow.poll() is not None:
                with open(os.path.join(tmp, "burrow.out"), errors="replace") as f:
                    tail = f.read()[-600:]
                raise Fail(f"Burrow exited {burrow.returncode}: {tail} / {burrow_log_summary(tmp)}")
            time.sleep(0.5)
            gap = listoffsets_v0_gap(tmp, bootstrap, group)
            if gap:
                raise XFail(gap)
            try:
                st = http_get(f"{base}/consumer/{group}/lag")
            except urllib.error.HTTPError as e:
                try:
                    last = f"HTTP {e.code}: {e.read().decode()[:200]}"
                except OSError:
                    last = f"HTTP {e.code}"
                continue
            except (OSError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            status = st.get("status") or {}
            parts = status.get("partitions") or []
            last = json.dumps(status)[:500]
            p0 = next((p for p in parts if p.get("topic") == topic and p.get("partition") == 0), None)
            if not p0 or not p0.get("end"):
                continue
            end_offset = p0["end"].get("offset")
            if end_offset != N_CONSUMED:
                continue
            if p0.get("current_lag") == lag_expected and status.get("totallag") == lag_expected:
                return (f"lag {lag_expected} of {N_RECORDS} reported after "
                        f"{time.monotonic() - (deadline - 60):.0f} s (committed offset {end_offset}, "
                        f"group status {status.get('status')})")
            last = (f"partition 0: committed {end_offset}, current_lag {p0.get('current_lag')}, "
                    f"totallag {status.get('totallag')}")
        # Timed out: say what Burrow knew.
        known = []
        for what, url in (("topics", f"{base}/topic"), ("consumers", f"{base}/consumer"),
                          (f"topic {topic}", f"{base}/topic/{topic}"),
                          (f"group {group}", f"{base}/consumer/{group}")):
            try:
                known.append(f"{what}: {json.dumps(http_get(url))[:300]}")
            except (OSError, ValueError, urllib.error.HTTPError) as e:
                known.append(f"{what}: {e}")
        raise Fail(f"expected lag {lag_expected} (committed {N_CONSUMED} of {N_RECORDS}) from "
                   f"{base}/consumer/{group}/lag within the deadline; last: {last}; Burrow knew: "
                   f"{' | '.join(known)}; Burrow log: {burrow_log_summary(tmp)}")
    finally:
        if burrow is not None and burrow.poll() is None:
            os.killpg(burrow.pid, signal.SIGTERM)
            try:
                burrow.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(burrow.pid, signal.SIGKILL)
        if zk is not None:
            zk.close()
        if os.environ.get("BURROW_KEEP_TMP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    version = burrow_version()
    d = Driver(version or "not installed")
    if version is None or shutil.which("Burrow") is None:
        d.emit("lag", "fail", "Burrow is not installed (run tests/compat/burrow/setup.sh)")
        return 1
    if shutil.which("kcat") is None:
        d.emit("lag", "fail", "kcat is not installed (needed to produce and commit)")
        return 1
    # Whole-run watchdog, well inside the suite's 3 minutes.
    threading.Timer(120, lambda: (d.emit("lag", "fail", "driver watchdog: 120 s passed"), os._exit(1))).start()
    deadline_s = 60
    start = time.monotonic()
    result = {}

    def body():
        try:
            result["ok"] = flow_lag(args.bootstrap, start + deadline_s - 2)
        except Fail as e:
            result["fail"] = str(e)
        except XFail as e:
            result["xfail"] = str(e)
        except subprocess.TimeoutExpired as e:
            result["fail"] = f"timed out: {' '.join(e.cmd[:4])}..."
        except Exception as e:  # noqa: BLE001 - reported
            result["fail"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(deadline_s + 8)  # + the cleanup's bound
    if "ok" in result:
        d.emit("lag", "pass", result["ok"])
    elif "xfail" in result:
        d.emit("lag", "xfail", result["xfail"])
    elif "fail" in result:
        d.emit("lag", "fail", result["fail"])
    else:
        d.emit("lag", "fail", f"timed out after {deadline_s} s")
    log(f"driver done in {time.monotonic() - STARTED:.1f} s")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
