"""N confluent-kafka ShareConsumers (librdkafka's KIP-932 share consumer) of one share group
on one topic, driven by tests/share_groups.rs.

Usage: share_consumers.py BOOTSTRAP TOPIC GROUP N RECORDS

First the group is set to start at the log start (the group config
`share.auto.offset.reset=earliest`, set with the AdminClient as `kafka-configs --entity-type
groups` would) and a tenth of the records are produced before any consumer joins: the group
reads them only because of that config. Each consumer runs in a thread of its own (an instance is used by one thread only), spends
50 ms on each non-empty poll, and accepts what it gets (implicit acknowledgement). Once every consumer has joined and polled,
the other records are produced in small batches over a few seconds, so the consumers compete for
them. The consumers run until together they have RECORDS distinct offsets, or 60 s pass; then
they commit their acknowledgements and close (leaving the group).

Prints one JSON object on stdout: {"offsets": [[offsets of consumer 0], ...]}. Logs go to
stderr.
"""

import json
import sys
import threading
import time

from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)


def main():
    bootstrap, topic, group, n, records = sys.argv[1:6]
    n, records = int(n), int(records)
    got = [[] for _ in range(n)]
    polled = [threading.Event() for _ in range(n)]
    done = threading.Event()
    errors = []
    lock = threading.Lock()

    def seen():
        with lock:
            return len({o for g in got for o in g})

    def consume(i):
        c = ShareConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": f"share-{i}",
            }
        )
        try:
            c.subscribe([topic])
            deadline = time.time() + 60
            while time.time() < deadline and not done.is_set():
                msgs = c.poll(0.5) or []
                polled[i].set()
                for m in msgs:
                    if m.error():
                        with lock:
                            errors.append(str(m.error()))
                        continue
                    with lock:
                        got[i].append(m.offset())
                if msgs:
                    # Work on them a while, as a real consumer would; meanwhile the others
                    # take what arrives.
                    time.sleep(0.05)
                if seen() >= records:
                    done.set()
            # The last poll's records are accepted by a commit (close alone releases them).
            c.commit_sync(30)
        finally:
            c.close()

    admin = AdminClient({"bootstrap.servers": bootstrap})
    earliest = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[
            ConfigEntry(
                "share.auto.offset.reset",
                "earliest",
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    for f in admin.incremental_alter_configs([earliest]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    before = records // 10
    for j in range(before):
        p.produce(topic, value=b"record-%d" % j, partition=0)
    p.flush(30)

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for e in polled:
        if not e.wait(30):
            print("a consumer never polled", file=sys.stderr)
            sys.exit(2)
    # Give every member time to get its assignment and open its share session.
    time.sleep(2)
    per_batch = 50
    for b in range(before, records, per_batch):
        for j in range(b, min(b + per_batch, records)):
            p.produce(topic, value=b"record-%d" % j, partition=0)
        p.flush(30)
        time.sleep(0.05)
    for t in threads:
        t.join(90)
    if errors:
        print("consumer errors: %s" % errors[:5], file=sys.stderr)
    print(json.dumps({"offsets": got}))


if __name__ == "__main__":
    main()
