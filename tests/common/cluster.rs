//! A real multi-node gregor cluster on 127.0.0.1 for integration tests, with TCP proxies that
//! let a test cut the links between two nodes.
//!
//! Node ids are 1..=n and every method takes a node id (the ids Metadata reports). Each node
//! runs `gregor serve` as `broker,controller` in its own temp dir with:
//! - a real broker port and a real controller port;
//! - a broker-side proxy whose port the node advertises (clients and peers' follower fetchers
//!   connect there). It reads the first request header of each connection for its client id and
//!   refuses `gregor-replica-<k>` connections while node k is cut from this node;
//! - per ordered pair (i, j) a controller-link proxy: node i's `controller.quorum.voters` lists
//!   j at the proxy's port, which forwards to j's real controller port.
//!
//! `cut(i, j)` closes the controller links between i and j (both directions, existing and new
//! connections) and the replica fetch connections between them; clients are never cut.
//! The proxies are plain threads: an accept thread per proxy and two copy threads per
//! connection; a dead or stopped peer only blocks threads that a cut, heal or drop unblocks.
//!
//! Every wait has a deadline. When the test owning a cluster panics, each node's stderr is
//! printed (the tail, if long) and its temp dir is kept for inspection.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeQuorumRequest, FindCoordinatorRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use super::{decode_response, encode_request, free_port, read_frame, START_TIMEOUT};

pub type NodeId = i32;

/// Timeout of the harness's own raw requests (metadata polls and the like).
pub const RAW_TIMEOUT: Duration = Duration::from_secs(3);

// ----- the first request header -----

/// What the first bytes of a connection say about its client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstHeader {
    /// Not enough bytes yet.
    NeedMore,
    /// The request header's client id (None: a null client id).
    ClientId(Option<String>),
    /// Not a Kafka request header.
    Invalid,
}

/// Parses `[i32 size][i16 api key][i16 api version][i32 correlation id][i16 len][client id]`.
pub fn parse_client_id(buf: &[u8]) -> FirstHeader {
    if buf.len() < 4 {
        return FirstHeader::NeedMore;
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 10 {
        return FirstHeader::Invalid;
    }
    if buf.len() < 14 {
        return FirstHeader::NeedMore;
    }
    let len = i16::from_be_bytes([buf[12], buf[13]]);
    if len == -1 {
        return FirstHeader::ClientId(None);
    }
    if len < 0 || 10 + len as i64 > size as i64 {
        return FirstHeader::Invalid;
    }
    let end = 14 + len as usize;
    if buf.len() < end {
        return FirstHeader::NeedMore;
    }
    FirstHeader::ClientId(Some(String::from_utf8_lossy(&buf[14..end]).into_owned()))
}

/// The follower node a replica fetcher's client id names (`gregor-replica-<k>`).
pub fn replica_node(client_id: &str) -> Option<NodeId> {
    client_id.strip_prefix("gregor-replica-")?.parse().ok()
}

// ----- the network: which pairs are cut -----

/// Cut pairs, stored as (min, max).
#[derive(Default)]
pub struct Net {
    /// Controller links and replica fetches.
    cuts: Mutex<HashSet<(NodeId, NodeId)>>,
    /// Replica fetches only.
    replication_cuts: Mutex<HashSet<(NodeId, NodeId)>>,
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl Net {
    pub fn links_cut(&self, a: NodeId, b: NodeId) -> bool {
        self.cuts.lock().unwrap().contains(&pair(a, b))
    }

    pub fn replication_cut(&self, a: NodeId, b: NodeId) -> bool {
        self.links_cut(a, b) || self.replication_cuts.lock().unwrap().contains(&pair(a, b))
    }
}

// ----- proxies -----

#[derive(Debug, Clone, Copy)]
enum ProxyKind {
    /// In front of `node`'s broker port.
    Broker { node: NodeId },
    /// Node `from`'s controller link to node `to`.
    Link { from: NodeId, to: NodeId },
}

struct Conn {
    client_id: Option<String>,
    client: TcpStream,
    server: TcpStream,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

struct ProxyShared {
    kind: ProxyKind,
    target: SocketAddr,
    net: Arc<Net>,
    stop: AtomicBool,
    conns: Mutex<BTreeMap<u64, Conn>>,
    next_id: AtomicU64,
}

impl ProxyShared {
    fn allowed(&self, client_id: Option<&str>) -> bool {
        if self.stop.load(Ordering::SeqCst) {
            return false;
        }
        match self.kind {
            ProxyKind::Link { from, to } => !self.net.links_cut(from, to),
            ProxyKind::Broker { node } => match client_id.and_then(replica_node) {
                Some(k) => !self.net.replication_cut(node, k),
                None => true,
            },
        }
    }

    /// Closes every connection the current cuts forbid.
    fn sweep(&self) {
        let conns = self.conns.lock().unwrap();
        for c in conns.values() {
            if !self.allowed(c.client_id.as_deref()) {
                c.close();
            }
        }
    }

    fn close_all(&self) {
        for c in self.conns.lock().unwrap().values() {
            c.close();
        }
    }
}

struct Proxy {
    port: u16,
    shared: Arc<ProxyShared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn new(kind: ProxyKind, listener: TcpListener, target: SocketAddr, net: Arc<Net>) -> Proxy {
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(ProxyShared {
            kind,
            target,
            net,
            stop: AtomicBool::new(false),
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn proxy thread");
        Proxy {
            port,
            shared,
            accept: Some(accept),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept thread.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(500),
        );
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        self.shared.close_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(s) => {
                let sh = shared.clone();
                let spawned = std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn(move || serve(sh, s));
                if spawned.is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One proxied connection: connect to the target, learn the client id (broker proxies), check
/// the cuts, then copy both ways until either side ends or a cut closes it.
fn serve(shared: Arc<ProxyShared>, mut client: TcpStream) {
    if !shared.allowed(None) {
        return; // refused: dropping the stream closes it
    }
    let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared.conns.lock().unwrap().insert(
        id,
        Conn {
            client_id: None,
            client: c2,
            server: s2,
        },
    );
    let unregister = |shared: &ProxyShared| {
        if let Some(c) = shared.conns.lock().unwrap().remove(&id) {
            c.close();
        }
    };
    // A cut made between the first check and the registration.
    if !shared.allowed(None) {
        unregister(&shared);
        return;
    }
    let mut first = Vec::new();
    if let ProxyKind::Broker { .. } = shared.kind {
        let mut buf = [0u8; 4096];
        let client_id = loop {
            match parse_client_id(&first) {
                FirstHeader::NeedMore => {}
                FirstHeader::ClientId(c) => break c,
                FirstHeader::Invalid => break None,
            }
            match client.read(&mut buf) {
                Ok(0) => {
                    unregister(&shared);
                    return;
                }
                Ok(n) => first.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    unregister(&shared);
                    return;
                }
            }
        };
        if let Some(c) = shared.conns.lock().unwrap().get_mut(&id) {
            c.client_id = client_id.clone();
        }
        if !shared.allowed(client_id.as_deref()) {
            unregister(&shared);
            return;
        }
    }
    let (Ok(from_server), Ok(to_client)) = (server.try_clone(), client.try_clone()) else {
        unregister(&shared);
        return;
    };
    let back = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || pump(from_server, to_client));
    if back.is_err() {
        unregister(&shared);
        return;
    }
    let mut server = server;
    if first.is_empty() || server.write_all(&first).is_ok() {
        pump(client, server);
    }
    unregister(&shared);
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ----- nodes -----

pub struct Node {
    pub id: NodeId,
    /// The real broker port (the broker listens here).
    pub broker_port: u16,
    /// The real controller port.
    pub controller_port: u16,
    /// A free port of this node's for a further listener (`{extra_port}` in settings).
    pub extra_port: u16,
    /// The broker proxy's port: what the node advertises to clients and peers.
    pub advertised_port: u16,
    /// The admin HTTP port (`/metrics`, `/v1/ready`).
    pub admin_port: u16,
    dir: Option<tempfile::TempDir>,
    settings: Vec<(String, String)>,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

impl Node {
    fn dir_path(&self) -> PathBuf {
        self.dir.as_ref().expect("node dir").path().to_path_buf()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir_path().join("data")
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir().join(format!("{topic}-{partition}"))
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir_path().join("broker.stderr")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// The real broker address (not proxied).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.broker_port))
    }

    /// The advertised (proxied) address.
    pub fn advertised(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Running and not stopped by SIGSTOP: it should answer requests.
    pub fn is_up(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open node stderr file");
        writeln!(
            log,
            "===== gregor node {} start #{} =====",
            self.id, self.starts
        )
        .ok();
        self.child = Some(super::spawn_serve(None, &self.settings, log));
        self.paused = false;
    }

    /// Waits until the real broker port answers ApiVersions.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_err = String::from("never tried");
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("node {} exited during start-up with {status}", self.id);
            }
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("gregor-tests"))
                .with_client_software_version(StrBytes::from_static_str("0"));
            match raw_request(self.addr(), &req, 3, Duration::from_secs(2)) {
                Ok(r) if r.error_code == 0 => return,
                Ok(r) => last_err = format!("ApiVersions error {}", r.error_code),
                Err(e) => last_err = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "node {} did not answer ApiVersions on {} within {START_TIMEOUT:?}: {last_err}",
            self.id,
            self.addr()
        );
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.paused = false;
            // A dead process's io_uring is torn down asynchronously and can keep its listening
            // sockets for a moment; gregor refuses to start while its port accepts.
            for port in [self.broker_port, self.controller_port] {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let released = super::wait_until(Duration::from_secs(10), || {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
                });
                if !released {
                    eprintln!(
                        "warning: node {} port {port} still accepts 10 s after SIGKILL",
                        self.id
                    );
                }
            }
        }
    }

    fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if self.paused {
            self.signal(libc::SIGCONT);
            self.paused = false;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + super::STOP_TIMEOUT;
        loop {
            let child = self.child.as_mut().unwrap();
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    assert!(
                        status.success(),
                        "node {} exited with {status} after SIGTERM",
                        self.id
                    );
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    self.kill();
                    panic!(
                        "node {} did not exit within {:?} of SIGTERM",
                        self.id,
                        super::STOP_TIMEOUT
                    );
                }
            }
        }
    }
}

// ----- raw requests -----

/// One request on a fresh connection; errors (connect, timeout, decode) as text.
pub fn raw_request<R: Request>(
    addr: SocketAddr,
    req: &R,
    version: i16,
    timeout: Duration,
) -> Result<R::Response, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    s.write_all(&encode_request(req, version, 7))
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let body = read_frame(&mut s).map_err(|e| format!("read from {addr}: {e}"))?;
    let (corr, resp) = decode_response::<R>(&body, version)?;
    if corr != 7 {
        return Err(format!("correlation id {corr}"));
    }
    Ok(resp)
}

/// A partition as one node's Metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub error: i16,
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
}

// ----- the cluster -----

pub struct Cluster {
    nodes: Vec<Node>,
    net: Arc<Net>,
    broker_proxies: Vec<Proxy>,
    links: BTreeMap<(NodeId, NodeId), Proxy>,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn bind_local() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind proxy")
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) with the harness's settings plus `extra` (later wins), and
    /// waits until every node's Metadata lists all of them. In `extra` values, `{broker_port}`,
    /// `{advertised_port}` and `{controller_port}` stand for the node's own ports, and
    /// `{extra_port}` for one more free port of its own (for a further listener; see
    /// `Node::extra_port`).
    pub fn start(n: usize, extra: &[(&str, &str)]) -> Cluster {
        assert!(n >= 1);
        let net = Arc::new(Net::default());
        let ids: Vec<NodeId> = (1..=n as NodeId).collect();
        let broker_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
        let controller_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
        let admin_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
        let extra_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
        let broker_proxies: Vec<Proxy> = ids
            .iter()
            .map(|&id| {
                Proxy::new(
                    ProxyKind::Broker { node: id },
                    bind_local(),
                    local(broker_ports[id as usize - 1]),
                    net.clone(),
                )
            })
            .collect();
        let mut links = BTreeMap::new();
        for &from in &ids {
            for &to in &ids {
                if from != to {
                    let p = Proxy::new(
                        ProxyKind::Link { from, to },
                        bind_local(),
                        local(controller_ports[to as usize - 1]),
                        net.clone(),
                    );
                    links.insert((from, to), p);
                }
            }
        }
        let mut nodes = Vec::new();
        for &id in &ids {
            let i = id as usize - 1;
            let dir = tempfile::Builder::new()
                .prefix(&format!("gregor-cluster-n{id}-"))
                .tempdir()
                .expect("temp dir");
            let voters = ids
                .iter()
                .map(|&j| {
                    let port = if j == id {
                        controller_ports[i]
                    } else {
                        links[&(id, j)].port
                    };
                    format!("{j}@127.0.0.1:{port}")
                })
                .collect::<Vec<_>>()
                .join(",");
            let mut settings: Vec<(String, String)> = vec![
                ("node.id".into(), id.to_string()),
                ("process.roles".into(), "broker,controller".into()),
                (
                    "listeners".into(),
                    format!(
                        "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                        broker_ports[i], controller_ports[i]
                    ),
                ),
                ("controller.listener.names".into(), "CONTROLLER".into()),
                (
                    "advertised.listeners".into(),
                    format!("PLAINTEXT://127.0.0.1:{}", broker_proxies[i].port),
                ),
                ("controller.quorum.voters".into(), voters),
                (
                    "log.dirs".into(),
                    dir.path().join("data").display().to_string(),
                ),
                ("num.shards".into(), "2".into()),
                (
                    "admin.listeners".into(),
                    format!("127.0.0.1:{}", admin_ports[i]),
                ),
            ];
            for (k, v) in extra {
                let v = v
                    .replace("{broker_port}", &broker_ports[i].to_string())
                    .replace("{advertised_port}", &broker_proxies[i].port.to_string())
                    .replace("{controller_port}", &controller_ports[i].to_string())
                    .replace("{extra_port}", &extra_ports[i].to_string());
                settings.push((k.to_string(), v));
            }
            nodes.push(Node {
                id,
                broker_port: broker_ports[i],
                controller_port: controller_ports[i],
                advertised_port: broker_proxies[i].port,
                admin_port: admin_ports[i],
                extra_port: extra_ports[i],
                dir: Some(dir),
                settings,
                child: None,
                paused: false,
                starts: 0,
            });
        }
        let mut c = Cluster {
            nodes,
            net,
            broker_proxies,
            links,
        };
        c.start_all();
        c
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Nodes running and not paused.
    pub fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    /// Starts every node that is down (all at once: a quorum needs its peers), waits for their
    /// broker ports, then until every node up lists all brokers as live.
    pub fn start_all(&mut self) {
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| !n.is_running())
            .map(|n| n.id)
            .collect();
        for &id in &down {
            self.node_mut(id).spawn();
        }
        for &id in &down {
            self.node_mut(id).wait_ready();
        }
        let n = self.nodes.len();
        self.wait_brokers_live(n, Duration::from_secs(60));
    }

    /// Clean stop of every node (SIGTERM, exit 0), in id order.
    pub fn stop_all(&mut self) {
        for id in self.ids() {
            self.stop(id);
        }
    }

    /// SIGKILL, reap, and wait until the node's ports stop accepting.
    pub fn kill(&mut self, id: NodeId) {
        self.node_mut(id).kill();
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: NodeId) {
        let n = self.node_mut(id);
        if n.child.is_some() && !n.paused {
            n.signal(libc::SIGSTOP);
            n.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: NodeId) {
        let n = self.node_mut(id);
        if n.child.is_some() && n.paused {
            n.signal(libc::SIGCONT);
            n.paused = false;
        }
    }

    /// SIGTERM and wait for exit 0.
    pub fn stop(&mut self, id: NodeId) {
        self.node_mut(id).stop();
    }

    /// Starts a stopped or killed node again (same ports, same data dir) and waits until its
    /// broker port answers. It may not have registered yet: see `wait_brokers_live`.
    /// (`Cluster::start` is taken by the constructor.)
    pub fn start_node(&mut self, id: NodeId) {
        let n = self.node_mut(id);
        n.spawn();
        n.wait_ready();
    }

    /// Cuts the controller links between `a` and `b` (both directions; open connections are
    /// closed, new ones refused) and the replica fetches between them.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        assert_ne!(a, b);
        self.net.cuts.lock().unwrap().insert(pair(a, b));
        self.sweep(a, b);
    }

    pub fn heal(&mut self, a: NodeId, b: NodeId) {
        self.net.cuts.lock().unwrap().remove(&pair(a, b));
    }

    /// Cuts only the replica fetches between `a` and `b` (controller links stay).
    pub fn cut_replication(&mut self, a: NodeId, b: NodeId) {
        assert_ne!(a, b);
        self.net.replication_cuts.lock().unwrap().insert(pair(a, b));
        self.sweep(a, b);
    }

    pub fn heal_replication(&mut self, a: NodeId, b: NodeId) {
        self.net
            .replication_cuts
            .lock()
            .unwrap()
            .remove(&pair(a, b));
    }

    pub fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        self.net.links_cut(a, b)
    }

    /// Heals every cut.
    pub fn heal_all(&mut self) {
        self.net.cuts.lock().unwrap().clear();
        self.net.replication_cuts.lock().unwrap().clear();
    }

    fn sweep(&self, a: NodeId, b: NodeId) {
        self.links[&(a, b)].shared.sweep();
        self.links[&(b, a)].shared.sweep();
        self.broker_proxies[a as usize - 1].shared.sweep();
        self.broker_proxies[b as usize - 1].shared.sweep();
    }

    /// Every node's advertised address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.advertised())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn stderr(&self, id: NodeId) -> String {
        self.node(id).stderr()
    }

    // ----- client configs -----

    pub fn producer_config(&self) -> ClientConfig {
        producer_config(&self.bootstrap())
    }

    pub fn consumer_config(&self) -> ClientConfig {
        consumer_config(&self.bootstrap())
    }

    pub fn admin_config(&self) -> ClientConfig {
        admin_config(&self.bootstrap())
    }

    /// Producer settings bootstrapping from one node only.
    pub fn producer_config_for(&self, id: NodeId) -> ClientConfig {
        producer_config(&self.node(id).advertised())
    }

    pub fn consumer_config_for(&self, id: NodeId) -> ClientConfig {
        consumer_config(&self.node(id).advertised())
    }

    pub fn admin_config_for(&self, id: NodeId) -> ClientConfig {
        admin_config(&self.node(id).advertised())
    }

    // ----- metadata -----

    /// A raw request to node `id`'s real broker port.
    pub fn request<R: Request>(
        &self,
        id: NodeId,
        req: &R,
        version: i16,
    ) -> Result<R::Response, String> {
        raw_request(self.node(id).addr(), req, version, RAW_TIMEOUT)
    }

    /// Node `id`'s Metadata for `topics` (None: all topics).
    pub fn metadata(
        &self,
        id: NodeId,
        topics: Option<&[&str]>,
    ) -> Result<MetadataResponse, String> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.request(id, &req, 9)
    }

    /// How node `id` sees `topic`'s partitions (partition -> view); None if it cannot say.
    pub fn partitions_seen_by(
        &self,
        id: NodeId,
        topic: &str,
    ) -> Option<BTreeMap<i32, PartitionView>> {
        let md = self.metadata(id, Some(&[topic])).ok()?;
        let t = md.topics.into_iter().next()?;
        if t.error_code != 0 {
            return None;
        }
        Some(
            t.partitions
                .into_iter()
                .map(|p| {
                    (
                        p.partition_index,
                        PartitionView {
                            error: p.error_code,
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        },
                    )
                })
                .collect(),
        )
    }

    /// Every up node's view of one partition.
    pub fn partition_views(&self, topic: &str, partition: i32) -> Vec<(NodeId, PartitionView)> {
        self.up_nodes()
            .into_iter()
            .filter_map(|id| {
                let v = self.partitions_seen_by(id, topic)?.remove(&partition)?;
                Some((id, v))
            })
            .collect()
    }

    /// The newest view of a partition among the up nodes (highest leader epoch).
    pub fn partition_view(&self, topic: &str, partition: i32) -> Option<PartitionView> {
        self.partition_views(topic, partition)
            .into_iter()
            .map(|(_, v)| v)
            .max_by_key(|v| v.leader_epoch)
    }

    /// The leader of a partition in the newest view, if it has one.
    pub fn node_of_leader(&self, topic: &str, partition: i32) -> Option<NodeId> {
        self.partition_view(topic, partition)
            .map(|v| v.leader)
            .filter(|l| *l >= 0)
    }

    /// The active controller (the metadata quorum's leader), when every up node's
    /// DescribeQuorum agrees on it. (Metadata's controller id names a broker that forwards,
    /// as in Kafka's KRaft mode, not the quorum leader.)
    pub fn controller(&self) -> Option<NodeId> {
        let ids: Vec<NodeId> = self
            .up_nodes()
            .into_iter()
            .filter_map(|id| {
                let quorum = self
                    .request(id, &DescribeQuorumRequest::default(), 1)
                    .ok()?;
                let leader = quorum.topics.first()?.partitions.first()?.leader_id.0;
                (leader >= 0).then_some(leader)
            })
            .collect();
        if ids.len() != self.up_nodes().len() {
            return None;
        }
        let first = *ids.first()?;
        ids.iter().all(|c| *c == first).then_some(first)
    }

    /// The group coordinator as node `via` answers FindCoordinator.
    pub fn coordinator(&self, via: NodeId, group: &str) -> Result<NodeId, String> {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let r = self.request(via, &req, 3)?;
        if r.error_code != 0 {
            return Err(format!("FindCoordinator error {}", r.error_code));
        }
        Ok(r.node_id.0)
    }

    /// Live brokers in node `id`'s Metadata.
    pub fn brokers_seen_by(&self, id: NodeId) -> Option<Vec<NodeId>> {
        let md = self.metadata(id, Some(&[])).ok()?;
        let mut v: Vec<NodeId> = md.brokers.iter().map(|b| b.node_id.0).collect();
        v.sort();
        Some(v)
    }

    // ----- waits -----

    fn wait(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        if !super::wait_until(timeout, || cond(self)) {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
    }

    /// Until every up node's Metadata lists `n` live brokers.
    pub fn wait_brokers_live(&self, n: usize, timeout: Duration) {
        let mut last = Vec::new();
        let ok = super::wait_until(timeout, || {
            last = self
                .up_nodes()
                .into_iter()
                .map(|id| (id, self.brokers_seen_by(id)))
                .collect::<Vec<_>>();
            !last.is_empty()
                && last
                    .iter()
                    .all(|(_, b)| b.as_ref().is_some_and(|b| b.len() == n))
        });
        assert!(
            ok,
            "timed out after {timeout:?} waiting for {n} live brokers; (node, brokers it lists): {last:?}"
        );
    }

    /// Until the newest view of the partition names `leader`.
    pub fn wait_leader(&self, topic: &str, partition: i32, leader: NodeId, timeout: Duration) {
        let mut last = None;
        let ok = super::wait_until(timeout, || {
            last = self.partition_view(topic, partition);
            last.as_ref().is_some_and(|v| v.leader == leader)
        });
        assert!(
            ok,
            "timed out after {timeout:?} waiting until node {leader} leads {topic}-{partition}; last view {last:?}"
        );
    }

    /// Until the newest view of the partition has a leader other than `old`; returns it.
    pub fn wait_leader_moved(
        &self,
        topic: &str,
        partition: i32,
        old: NodeId,
        timeout: Duration,
    ) -> NodeId {
        let mut last = None;
        let ok = super::wait_until(timeout, || {
            last = self.partition_view(topic, partition);
            last.as_ref()
                .is_some_and(|v| v.leader >= 0 && v.leader != old)
        });
        assert!(
            ok,
            "timed out after {timeout:?} waiting until {topic}-{partition} has a leader other than {old}; last view {last:?}"
        );
        last.unwrap().leader
    }

    /// Until every up node sees an ISR of `k` replicas (and a leader) for the partition.
    pub fn wait_isr_size(&self, topic: &str, partition: i32, k: usize, timeout: Duration) {
        let mut last = Vec::new();
        let ok = super::wait_until(timeout, || {
            last = self.partition_views(topic, partition);
            last.len() == self.up_nodes().len()
                && last.iter().all(|(_, v)| v.isr.len() == k && v.leader >= 0)
        });
        assert!(
            ok,
            "timed out after {timeout:?} waiting for an ISR of {k} on {topic}-{partition}; views (node, view): {last:?}"
        );
    }

    /// `wait_isr_size` for every partition of a topic.
    pub fn wait_isr_all(&self, topic: &str, partitions: i32, k: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for p in 0..partitions {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_isr_size(topic, p, k, left.max(Duration::from_millis(1)));
        }
    }

    /// Until every partition of `topic` is led by its preferred (first) replica, in every up
    /// node's view.
    pub fn wait_preferred_leaders(&self, topic: &str, partitions: i32, timeout: Duration) {
        let mut last = Vec::new();
        let ok = super::wait_until(timeout, || {
            last = (0..partitions)
                .flat_map(|p| {
                    self.partition_views(topic, p)
                        .into_iter()
                        .map(move |(n, v)| (p, n, v))
                })
                .collect::<Vec<_>>();
            last.len() == partitions as usize * self.up_nodes().len()
                && last
                    .iter()
                    .all(|(_, _, v)| v.replicas.first() == Some(&v.leader))
        });
        assert!(
            ok,
            "timed out after {timeout:?} waiting for preferred leaders of {topic}; (partition, node, view): {last:?}"
        );
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl FnMut(&Self) -> bool) {
        self.wait(what, timeout, cond)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for n in &mut self.nodes {
            if n.paused {
                n.signal(libc::SIGCONT);
                n.paused = false;
            }
            n.kill();
        }
        // Proxies stop with their fields.
        if panicking {
            for n in &mut self.nodes {
                let text = n.stderr();
                let lines: Vec<&str> = text.lines().collect();
                const MAX_LINES: usize = 1500;
                let shown = &lines[lines.len().saturating_sub(MAX_LINES)..];
                let dir = n.dir.take().map(|d| d.keep());
                eprintln!(
                    "----- gregor node {} stderr ({} lines{}; dir kept: {:?}) -----\n{}\n----- end node {} -----",
                    n.id,
                    lines.len(),
                    if shown.len() < lines.len() { ", last shown" } else { "" },
                    dir,
                    shown.join("\n"),
                    n.id
                );
            }
        }
    }
}

// ----- client helpers -----

pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("api.version.request", "true")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "60000")
        .set("request.timeout.ms", "30000")
        .set("socket.timeout.ms", "30000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("linger.ms", "5");
    c
}

pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "gregor-tests")
        .set("api.version.request", "true")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("socket.timeout.ms", "30000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("fetch.wait.max.ms", "100");
    c
}

pub fn admin_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("api.version.request", "true")
        .set("socket.timeout.ms", "30000");
    c
}

/// CreateTopics with a replication factor; Err with the error text.
pub fn try_create_topic(
    cfg: &ClientConfig,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        cfg.create().map_err(|e| format!("admin client: {e}"))?;
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let res = futures::executor::block_on(admin.create_topics([&t], &opts))
        .map_err(|e| format!("CreateTopics {name}: {e}"))?;
    for r in res {
        if let Err((topic, code)) = r {
            return Err(format!("CreateTopics {topic}: {code:?}"));
        }
    }
    Ok(())
}

/// CreateTopics with a replication factor; panics on failure.
pub fn create_topic_rf(
    cfg: &ClientConfig,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) {
    try_create_topic(
        cfg,
        name,
        partitions,
        replication,
        configs,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
