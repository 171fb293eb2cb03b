#!/usr/bin/env python3
"""How a client sees gregor's port around start-up, a clean stop and a SIGKILL.

For each of RUNS fresh brokers (default 5): connects every 2 ms from the moment `gregor serve`
is spawned and sends ApiVersions v0 (answered / refused / reset), then SIGTERMs it and does the
same until it has exited and the port refuses; then starts it again, SIGKILLs it, reaps it and
counts the connections the dead broker's listening socket still completes (the kernel tears down
io_uring asynchronously) and for how long.
Usage: perf/listener.py [RUNS]   (GREGOR=target/release/gregor, PORT=29100, DATA=/var/tmp/gregor-listener)
"""
import os, shutil, signal, socket, struct, subprocess, sys, time

GREGOR = os.environ.get("GREGOR", os.path.join(os.path.dirname(__file__), "..", "target", "release", "gregor"))
PORT = int(os.environ.get("PORT", "29100"))
DATA = os.environ.get("DATA", "/var/tmp/gregor-listener")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def probe(port, timeout=2.0):
    """answered, refused or reset: one connection, one ApiVersions v0."""
    try:
        s = socket.create_connection(("127.0.0.1", port), 0.2)
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "reset"
    try:
        s.settimeout(timeout)
        body = struct.pack(">hhih", 18, 0, 1, -1)
        s.sendall(struct.pack(">i", len(body)) + body)
        return "answered" if len(s.recv(4)) == 4 else "reset"
    except OSError:
        return "reset"
    finally:
        s.close()


def spawn(run):
    shutil.rmtree(DATA, ignore_errors=True)
    return subprocess.Popen(
        [GREGOR, "serve", "--set", f"listeners=PLAINTEXT://127.0.0.1:{PORT + run}",
         "--set", f"log.dirs={DATA}", "--set", "admin.listeners="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tally(results):
    out = {}
    for r in results:
        out[r] = out.get(r, 0) + 1
    return " ".join(f"{k} {v}" for k, v in sorted(out.items()))


for run in range(RUNS):
    port = PORT + run
    p = spawn(run)
    seen = []
    while not seen or seen[-1] != "answered":
        seen.append(probe(port, 10.0))
        time.sleep(0.002)
    start = tally(seen)
    p.send_signal(signal.SIGTERM)
    seen = []
    while p.poll() is None or not seen or seen[-1] != "refused":
        seen.append(probe(port))
        time.sleep(0.002)
    stop = tally(seen)
    p = spawn(run)
    while probe(port, 10.0) != "answered":
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t0, completed = time.time(), 0
    while time.time() - t0 < 10:
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            completed += 1
        except OSError:
            break
        time.sleep(0.001)
    window = (time.time() - t0) * 1000
    print(f"run {run}: start-up [{start}]; SIGTERM [{stop}]; after SIGKILL and reap: "
          f"{completed} connections completed by the dead socket, refused after {window:.1f} ms")
shutil.rmtree(DATA, ignore_errors=True)
