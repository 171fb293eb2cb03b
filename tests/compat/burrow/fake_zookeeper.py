"""A tiny in-memory ZooKeeper server, enough for Burrow's own coordination.

Burrow 1.2 refuses to start without a [zookeeper] section: it connects, creates its root path
and takes a lock (ephemeral sequential node + children) before its notifier evaluates. It reads
consumer offsets from Kafka itself (class-name "kafka"), so nothing under test goes through here.
Debian's ZooKeeper needs a JRE; this speaks the few ZooKeeper requests Burrow's client
(samuel/go-zookeeper) sends: connect, ping, create, delete, exists, getData, setData,
getChildren(2), sync, setWatches, close. Watches are accepted and never fire.
"""

import socket
import struct
import threading

OP_CREATE, OP_DELETE, OP_EXISTS, OP_GETDATA, OP_SETDATA = 1, 2, 3, 4, 5
OP_GETCHILDREN, OP_SYNC, OP_PING, OP_GETCHILDREN2 = 8, 9, 11, 12
OP_CREATE2, OP_CLOSE, OP_SETWATCHES = 15, -11, 101
ZNONODE, ZNODEEXISTS, ZNOTEMPTY, ZUNIMPLEMENTED = -101, -110, -111, -6
FLAG_EPHEMERAL, FLAG_SEQUENCE = 1, 2


class _Reader:
    def __init__(self, b):
        self.b, self.o = b, 0

    def i32(self):
        (v,) = struct.unpack_from(">i", self.b, self.o)
        self.o += 4
        return v

    def i64(self):
        (v,) = struct.unpack_from(">q", self.b, self.o)
        self.o += 8
        return v

    def boolean(self):
        v = self.b[self.o] != 0
        self.o += 1
        return v

    def buf(self):
        n = self.i32()
        if n < 0:
            return None
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def string(self):
        v = self.buf()
        return None if v is None else v.decode()


def _s(x):
    b = x.encode() if isinstance(x, str) else (x or b"")
    return struct.pack(">i", len(b)) + b


class _Node:
    def __init__(self, data=b"", owner=0, zxid=0):
        self.data, self.owner, self.version, self.cversion = data, owner, 0, 0
        self.czxid = self.mzxid = self.pzxid = zxid
        self.seq = 0


class FakeZooKeeper:
    def __init__(self, host="127.0.0.1", port=0):
        self.lock = threading.Lock()
        self.nodes = {"/": _Node()}
        self.zxid = 0
        self.next_session = 0x1000
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (opcode, path) for diagnostics
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    # --- tree -----------------------------------------------------------------------------------
    @staticmethod
    def _parent(path):
        p = path.rsplit("/", 1)[0]
        return p or "/"

    def _children(self, path):
        pre = path.rstrip("/") + "/"
        return [p[len(pre):] for p in self.nodes if p.startswith(pre) and "/" not in p[len(pre):] and p != path]

    def _stat(self, n, path):
        return struct.pack(">qqqqiiiqiiq", n.czxid, n.mzxid, 0, 0, n.version, n.cversion, 0,
                           n.owner, len(n.data or b""), len(self._children(path)), n.pzxid)

    def _drop_session(self, session):
        with self.lock:
            for p in [p for p, n in self.nodes.items() if n.owner == session]:
                del self.nodes[p]

    # --- wire -----------------------------------------------------------------------------------
    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _recv(c, n):
        b = b""
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b

    def _frame(self, c):
        (n,) = struct.unpack(">i", self._recv(c, 4))
        return self._recv(c, n)

    @staticmethod
    def _send(c, body):
        c.sendall(struct.pack(">i", len(body)) + body)

    def _serve(self, c):
        session = 0
        try:
            r = _Reader(self._frame(c))
            r.i32()  # protocol version
            r.i64()  # last zxid seen
            timeout = r.i32()
            with self.lock:
                self.next_session += 1
                session = self.next_session
            self._send(c, struct.pack(">iiq", 0, timeout, session) + _s(b"\0" * 16))
            while True:
                r = _Reader(self._frame(c))
                xid, op = r.i32(), r.i32()
                err, body = self._handle(op, r, session)
                with self.lock:
                    zxid = self.zxid
                self._send(c, struct.pack(">iqi", xid, zxid, err) + (body if err == 0 else b""))
                if op == OP_CLOSE:
                    break
        except (EOFError, OSError, struct.error):
            pass
        finally:
            if session:
                self._drop_session(session)
            try:
                c.close()
            except OSError:
                pass

    def _handle(self, op, r, session):
        if op in (OP_PING, OP_CLOSE, OP_SETWATCHES):
            return 0, b""
        path = r.string()
        self.requests.append((op, path))
        with self.lock:
            if op in (OP_CREATE, OP_CREATE2):
                data = r.buf()
                for _ in range(r.i32()):  # ACLs
                    r.i32()
                    r.string()
                    r.string()
                flags = r.i32()
                parent = self._parent(path)
                if parent not in self.nodes:
                    return ZNONODE, b""
                if flags & FLAG_SEQUENCE:
                    pn = self.nodes[parent]
                    path = "%s%010d" % (path, pn.seq)
                    pn.seq += 1
                if path in self.nodes:
                    return ZNODEEXISTS, b""
                self.zxid += 1
                self.nodes[path] = _Node(data or b"", session if flags & FLAG_EPHEMERAL else 0, self.zxid)
                self.nodes[parent].cversion += 1
                self.nodes[parent].pzxid = self.zxid
                body = _s(path)
                if op == OP_CREATE2:
                    body += self._stat(self.nodes[path], path)
                return 0, body
            if op == OP_DELETE:
                if path not in self.nodes:
                    return ZNONODE, b""
                if self._children(path):
                    return ZNOTEMPTY, b""
                del self.nodes[path]
                self.zxid += 1
                return 0, b""
            if op == OP_SYNC:
                return 0, _s(path)
            n = self.nodes.get(path)
            if n is None:
                return ZNONODE, b""
            if op == OP_EXISTS:
                return 0, self._stat(n, path)
            if op == OP_GETDATA:
                return 0, _s(n.data) + self._stat(n, path)
            if op == OP_SETDATA:
                n.data = r.buf() or b""
                n.version += 1
                self.zxid += 1
                n.mzxid = self.zxid
                return 0, self._stat(n, path)
            if op in (OP_GETCHILDREN, OP_GETCHILDREN2):
                kids = self._children(path)
                body = struct.pack(">i", len(kids)) + b"".join(_s(k) for k in kids)
                if op == OP_GETCHILDREN2:
                    body += self._stat(n, path)
                return 0, body
        return ZUNIMPLEMENTED, b""
