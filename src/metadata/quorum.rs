//! The Raft metadata quorum of one node: the raft-rs node and its Ready loop, the metadata
//! image it applies, command execution on the active controller (forwarded there from other
//! nodes), broker heartbeats and fencing.
//!
//! Runs on the controller's own executor (the "metadata core"), never on a shard that serves
//! partitions: raft log fsyncs and controller network traffic block nothing else. Shards reach
//! it by message and receive every new image as an immutable `Arc<Snapshot>`.
//!
//! A broker-only node (`process.roles=broker`) runs no raft: it sends commands and heartbeats
//! to the active controller and receives the image in heartbeat responses.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use raft::eraftpb::{ConfState, Entry, EntryType, Message, Snapshot as RaftSnapshot};
use raft::{RawNode, StateRole};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::controller::{plan, Command, Reply, Settings};
use super::image::{Record, Snapshot};
use super::raft::storage::DiskStorage;
use super::raft::transport::{within, Envelope, Inbound, Responder, Transport};
use super::MetadataError;
use crate::types::NodeId;

/// One raft tick; elections time out after `ELECTION_TICKS` of them without a leader.
const TICK: Duration = Duration::from_millis(100);
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;
/// How long a command may wait for its records to commit.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries applied between two snapshots of the image (compaction of the raft log).
const SNAPSHOT_EVERY: u64 = 1000;
const INBOX_MAX: usize = 4096;

/// Where and how this node takes part.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node: NodeId,
    /// The voters' controller addresses (`controller.quorum.voters`).
    pub voters: BTreeMap<NodeId, SocketAddr>,
    /// Whether this node is a voter (process.roles includes controller).
    pub controller: bool,
    /// The raft log directory (`<log.dirs>/__cluster_metadata-0`).
    pub dir: PathBuf,
    pub settings: Settings,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Mutual TLS on the controller links (an SSL controller listener), or none.
    pub tls: Option<super::raft::transport::LinkTls>,
}

/// What nodes ask the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Command(Command),
    DescribeQuorum,
    Heartbeat {
        node: NodeId,
        incarnation: Uuid,
        image_version: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Command(Result<Reply, WireError>),
    Heartbeat {
        fenced: bool,
        /// The image, when the heartbeat said it had an older one (broker-only nodes).
        image: Option<Vec<u8>>,
    },
    NotLeader {
        leader: Option<NodeId>,
    },
    Quorum(QuorumStatus),
}

/// What DescribeQuorum reports: the leader's view of the metadata log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader: Option<NodeId>,
    /// The raft term: Kafka's leader epoch of the metadata partition.
    pub term: u64,
    /// The commit index: the metadata log's high watermark.
    pub commit: u64,
    /// Each voter and how far its log matches the leader's (-1: unknown here).
    pub voters: Vec<(NodeId, i64)>,
}

/// One info line for the metadata changes an operator wants to see in the log, as each node
/// applies them.
fn log_event(r: &Record) {
    match r {
        Record::TopicCreated {
            name,
            id,
            assignments,
            ..
        } => tracing::info!(topic = %name, %id, partitions = assignments.len(), "topic created"),
        Record::PartitionsAdded { name, assignments } => {
            tracing::info!(topic = %name, added = assignments.len(), "partitions added")
        }
        Record::TopicDeleted { name } => tracing::info!(topic = %name, "topic deleted"),
        Record::BrokerRegistered {
            node, host, port, ..
        } => {
            tracing::info!(node, %host, port, "broker registered")
        }
        _ => {}
    }
}

/// Where this voter stands in the metadata log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    pub term: u64,
    /// The commit index (the metadata log's high watermark).
    pub committed: u64,
    /// The last entry applied to the image here.
    pub applied: u64,
    pub last_index: u64,
    /// This node is the active controller.
    pub leader: bool,
}

/// A [`MetadataError`] as it crosses the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub kind: String,
    pub message: String,
}

impl From<&MetadataError> for WireError {
    fn from(e: &MetadataError) -> Self {
        WireError {
            kind: e.kind().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<WireError> for MetadataError {
    fn from(w: WireError) -> Self {
        MetadataError::from_kind(&w.kind, w.message)
    }
}

/// A committed entry: the records of one command and, for its proposer, who is waiting.
#[derive(Debug, Serialize, Deserialize)]
struct Proposal {
    origin: NodeId,
    id: u64,
    records: Vec<Record>,
}

enum Input {
    Inbound(Inbound<Request>),
    Propose(Vec<u8>),
}

/// The active controller's memory of broker heartbeats (not replicated: a new controller
/// starts everyone's session afresh).
#[derive(Default)]
struct Sessions {
    last_seen: HashMap<NodeId, Instant>,
}

/// A command waiting for its records to be applied: its answer, and where to send it.
type Waiter = (Reply, oneshot::Sender<Result<Reply, MetadataError>>);

pub struct Quorum {
    config: QuorumConfig,
    raw: RefCell<Option<RawNode<DiskStorage>>>,
    image: RefCell<Snapshot>,
    transport: Rc<Transport<Request, Response>>,
    inbox: Rc<LocalSender<Input>>,
    waiters: RefCell<HashMap<u64, Waiter>>,
    next_proposal: Cell<u64>,
    /// Commands run one at a time on the active controller, each against the image its
    /// predecessor left.
    command_lock: glommio::sync::Semaphore,
    sessions: RefCell<Sessions>,
    was_leader: Cell<bool>,
    applied_since_snapshot: Cell<u64>,
    /// The last index in the log when this node started: entries up to it are replays, not
    /// news, and are not logged as events.
    replayed_to: u64,
    /// Called with every new image (hands it to the shards).
    publish: Box<dyn Fn(Arc<Snapshot>)>,
}

impl Quorum {
    /// Opens the raft storage, rebuilds the image from its snapshot (the entries after it are
    /// applied again as raft hands them back) and starts the driver and the links.
    pub fn start(
        config: QuorumConfig,
        listener: Option<glommio::net::TcpListener>,
        publish: Box<dyn Fn(Arc<Snapshot>)>,
        legacy: Option<Snapshot>,
    ) -> std::io::Result<Rc<Quorum>> {
        let (inbox_tx, inbox_rx) = local_channel::new_bounded::<Input>(INBOX_MAX);
        let (net_tx, net_rx) = local_channel::new_bounded::<Inbound<Request>>(INBOX_MAX);
        let transport = Transport::start(
            config.node,
            listener,
            config.voters.clone(),
            net_tx,
            config.tls.clone(),
        );
        let (raw, image) = if config.controller {
            let (raw, image) = open_raft(&config, legacy)?;
            (Some(raw), image)
        } else {
            (None, Snapshot::default())
        };
        let replayed_to = raw.as_ref().map_or(0, |r| r.raft.raft_log.last_index());
        let q = Rc::new(Quorum {
            config,
            raw: RefCell::new(raw),
            image: RefCell::new(image),
            transport,
            inbox: Rc::new(inbox_tx),
            waiters: RefCell::new(HashMap::new()),
            next_proposal: Cell::new(1),
            command_lock: glommio::sync::Semaphore::new(1),
            sessions: RefCell::new(Sessions::default()),
            was_leader: Cell::new(false),
            applied_since_snapshot: Cell::new(0),
            replayed_to,
            publish,
        });
        // Network input joins the driver's inbox.
        let inbox = q.inbox.clone();
        glommio::spawn_local(async move {
            while let Some(m) = net_rx.recv().await {
                if inbox.send(Input::Inbound(m)).await.is_err() {
                    break;
                }
            }
        })
        .detach();
        glommio::spawn_local(Quorum::drive(q.clone(), inbox_rx)).detach();
        glommio::spawn_local(Quorum::fence_expired(q.clone())).detach();
        if q.config.voters.len() == 1 && q.config.controller {
            q.with_raw(|raw| {
                let _ = raw.campaign();
            });
        }
        Ok(q)
    }

    /// The image as this node last applied it.
    pub fn image(&self) -> Arc<Snapshot> {
        let mut s = self.image.borrow().clone();
        s.controller = self.leader();
        Arc::new(s)
    }

    pub fn node(&self) -> NodeId {
        self.config.node
    }

    /// The active controller, if known.
    pub fn leader(&self) -> Option<NodeId> {
        let raw = self.raw.borrow();
        match raw.as_ref() {
            Some(r) if r.raft.leader_id != raft::INVALID_ID => Some(r.raft.leader_id as NodeId),
            Some(_) => None,
            None => self.image.borrow().controller,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raw
            .borrow()
            .as_ref()
            .is_some_and(|r| r.raft.state == StateRole::Leader)
    }

    fn with_raw<T>(&self, f: impl FnOnce(&mut RawNode<DiskStorage>) -> T) -> Option<T> {
        self.raw.borrow_mut().as_mut().map(f)
    }

    /// Runs a command on the active controller (here, or forwarded) and returns its answer
    /// once its records are committed and applied here.
    pub async fn execute(self: &Rc<Self>, cmd: Command) -> Result<Reply, MetadataError> {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if self.is_leader() {
                return self.execute_here(cmd).await;
            }
            if let Some(leader) = self.leader().filter(|l| self.transport.knows(*l)) {
                let req = Request::Command(cmd.clone());
                // A leader that dies does not answer: give up on it as soon as this node
                // learns it is no longer the leader (an election started or ended), and
                // forward to the next one, rather than waiting out the whole timeout.
                let asked = std::pin::pin!(self.transport.request(leader, req, COMMAND_TIMEOUT));
                let deposed = std::pin::pin!(async {
                    while self.leader() == Some(leader) {
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                    }
                });
                let answer = match futures::future::select(asked, deposed).await {
                    futures::future::Either::Left((answer, _)) => answer,
                    futures::future::Either::Right(_) => None,
                };
                if let Some(Response::Command(r)) = answer {
                    let r = r.map_err(MetadataError::from);
                    // Wait until this node has applied what the leader committed.
                    self.wait_applied_after(&r).await;
                    return r;
                }
            }
            if Instant::now() > deadline {
                return Err(MetadataError::NotController(
                    "no active controller reachable".to_string(),
                ));
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_applied_after(&self, _r: &Result<Reply, MetadataError>) {
        // The leader answers after applying; followers apply on the next heartbeat round of
        // raft (a commit index moves with heartbeats). A short wait keeps read-your-writes for
        // the common case without a version handshake.
        let start = self.image.borrow().version;
        let _ = within(Duration::from_millis(500), async {
            while self.image.borrow().version == start {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    async fn execute_here(self: &Rc<Self>, cmd: Command) -> Result<Reply, MetadataError> {
        let Ok(_permit) = self.command_lock.acquire_permit(1).await else {
            return Err(MetadataError::NotController("shutting down".into()));
        };
        if let Command::RegisterBroker { node, .. } | Command::UnfenceBroker { node, .. } = &cmd {
            // A registration (or the end of the broker's start-up) opens a new session: the
            // last heartbeat of an old incarnation, or one from before a long start-up, must
            // not fence the broker at once.
            self.sessions
                .borrow_mut()
                .last_seen
                .insert(*node, Instant::now());
        }
        let planned = plan(&self.image.borrow(), &cmd, &self.config.settings);
        let (records, reply) = planned?;
        if records.is_empty() {
            return Ok(reply);
        }
        let id = self.next_proposal.get();
        self.next_proposal.set(id + 1);
        let proposal = Proposal {
            origin: self.config.node,
            id,
            records,
        };
        let data = serde_json::to_vec(&proposal)
            .unwrap_or_else(|e| panic!("metadata records do not serialize: {e}"));
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(id, (reply, tx));
        if self.inbox.send(Input::Propose(data)).await.is_err() {
            self.waiters.borrow_mut().remove(&id);
            return Err(MetadataError::NotController("shutting down".into()));
        }
        match within(COMMAND_TIMEOUT, rx).await {
            Some(Ok(r)) => r,
            _ => {
                self.waiters.borrow_mut().remove(&id);
                Err(MetadataError::NotController(
                    "the command was not committed in time".to_string(),
                ))
            }
        }
    }

    /// The driver: ticks, raft messages and proposals in; Ready handled after each.
    async fn drive(self: Rc<Self>, inbox: LocalReceiver<Input>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match within(wait, inbox.recv()).await {
                Some(Some(input)) => self.handle(input),
                Some(None) => return,
                None => {}
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                self.with_raw(|raw| raw.tick());
            }
            if let Err(e) = self.on_ready() {
                // The raft log cannot be written: this node must not go on voting.
                tracing::error!(error = %e, "metadata log write failed; stopping");
                eprintln!("gregor: metadata log write failed: {e}");
                std::process::exit(1);
            }
            self.notice_role_change();
        }
    }

    fn handle(self: &Rc<Self>, input: Input) {
        match input {
            Input::Propose(data) => {
                let proposed = self.with_raw(|raw| raw.propose(vec![], data));
                if !matches!(proposed, Some(Ok(()))) {
                    self.fail_waiters("this node is no longer the active controller");
                }
            }
            Input::Inbound(Inbound::Raft(m)) => {
                self.with_raw(|raw| {
                    let _ = raw.step(m);
                });
            }
            Input::Inbound(Inbound::Request(env, responder)) => {
                let q = self.clone();
                glommio::spawn_local(async move { q.serve(env, responder).await }).detach();
            }
        }
    }

    async fn serve(self: Rc<Self>, env: Envelope<Request>, responder: Responder) {
        if !self.is_leader() {
            let leader = self.leader();
            responder.respond(self.config.node, Response::NotLeader { leader });
            return;
        }
        let resp = match env.body {
            Request::Command(cmd) => {
                let r = self.execute_here(cmd).await;
                Response::Command(r.map_err(|e| WireError::from(&e)))
            }
            Request::Heartbeat {
                node,
                incarnation,
                image_version,
            } => self.heartbeat_here(node, incarnation, image_version),
            Request::DescribeQuorum => Response::Quorum(self.status_here()),
        };
        responder.respond(self.config.node, resp);
    }

    fn heartbeat_here(&self, node: NodeId, incarnation: Uuid, image_version: u64) -> Response {
        let image = self.image.borrow();
        // Only the registered incarnation keeps the session: a restarted broker heartbeats
        // before its registration lands, and must not keep its old self's session alive.
        if image
            .brokers
            .get(&node)
            .is_some_and(|b| b.incarnation == incarnation)
        {
            self.sessions
                .borrow_mut()
                .last_seen
                .insert(node, Instant::now());
        }
        let fenced = image
            .brokers
            .get(&node)
            .is_none_or(|b| b.fenced || b.incarnation != incarnation);
        let image = (image_version < image.version).then(|| image.to_bytes());
        Response::Heartbeat { fenced, image }
    }

    /// The quorum as this node sees it (full voter progress only on the leader).
    /// This node's own place in the metadata log, for the metrics; None on a node that is not
    /// a voter (it follows the image through heartbeats, not the log).
    pub fn position(&self) -> Option<LogPosition> {
        let raw = self.raw.borrow();
        let r = raw.as_ref()?;
        Some(LogPosition {
            term: r.raft.term,
            committed: r.raft.raft_log.committed,
            applied: r.raft.raft_log.applied,
            last_index: r.raft.raft_log.last_index(),
            leader: r.raft.state == StateRole::Leader,
        })
    }

    fn status_here(&self) -> QuorumStatus {
        let raw = self.raw.borrow();
        let Some(r) = raw.as_ref() else {
            return QuorumStatus {
                leader: self.leader(),
                ..Default::default()
            };
        };
        let leader = (r.raft.leader_id != raft::INVALID_ID).then_some(r.raft.leader_id as NodeId);
        let mut voters: Vec<(NodeId, i64)> = self
            .config
            .voters
            .keys()
            .map(|id| {
                let matched = if r.raft.state == StateRole::Leader {
                    r.raft
                        .prs()
                        .get(*id as u64)
                        .map_or(-1, |p| p.matched as i64)
                } else if *id == self.config.node {
                    r.raft.raft_log.last_index() as i64
                } else {
                    -1
                };
                (*id, matched)
            })
            .collect();
        voters.sort_unstable();
        QuorumStatus {
            leader,
            term: r.raft.term,
            commit: r.raft.raft_log.committed,
            voters,
        }
    }

    /// DescribeQuorum: the active controller's view (asked of it when this node is not it).
    pub async fn status(self: &Rc<Self>) -> QuorumStatus {
        if self.is_leader() {
            return self.status_here();
        }
        if let Some(leader) = self.leader().filter(|l| self.transport.knows(*l)) {
            let asked = self
                .transport
                .request(leader, Request::DescribeQuorum, Duration::from_secs(2))
                .await;
            if let Some(Response::Quorum(s)) = asked {
                return s;
            }
        }
        self.status_here()
    }

    /// Sends this broker's heartbeat to the active controller; true when it is registered and
    /// not fenced. A broker-only node adopts the image the answer carries.
    pub async fn heartbeat(self: &Rc<Self>, incarnation: Uuid) -> Option<bool> {
        let version = self.image.borrow().version;
        if self.is_leader() {
            let Response::Heartbeat { fenced, .. } =
                self.heartbeat_here(self.config.node, incarnation, version)
            else {
                return None;
            };
            return Some(!fenced);
        }
        let leader = self
            .leader()
            .or_else(|| self.config.voters.keys().next().copied())?;
        let req = Request::Heartbeat {
            node: self.config.node,
            incarnation,
            image_version: version,
        };
        let timeout = self
            .config
            .heartbeat_interval
            .max(Duration::from_millis(500));
        let Some(answer) = self.transport.request(leader, req, timeout).await else {
            // No answer: the controller may be gone. A broker-only node has no raft of its own
            // to learn the next leader from, so it asks the next voter, which answers or
            // names the leader.
            if !self.config.controller {
                let next = self
                    .config
                    .voters
                    .range(leader + 1..)
                    .chain(self.config.voters.iter())
                    .map(|(n, _)| *n)
                    .find(|n| *n != leader);
                self.image.borrow_mut().controller = next;
            }
            return None;
        };
        match answer {
            Response::Heartbeat { fenced, image } => {
                if let Some(bytes) = image.filter(|_| !self.config.controller) {
                    self.adopt_image(&bytes, leader);
                }
                Some(!fenced)
            }
            Response::NotLeader { leader: Some(l) } if !self.config.controller => {
                self.image.borrow_mut().controller = Some(l);
                None
            }
            _ => None,
        }
    }

    fn adopt_image(&self, bytes: &[u8], leader: NodeId) {
        match Snapshot::restore(
            bytes,
            &self.config.settings.defaults,
            Some(self.config.node),
        ) {
            Ok(mut s) => {
                s.controller = Some(leader);
                *self.image.borrow_mut() = s;
                (self.publish)(self.image());
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a metadata image that does not load"),
        }
    }

    /// The active controller fences brokers whose session expired.
    async fn fence_expired(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(250)).await;
            if !self.is_leader() {
                continue;
            }
            let now = Instant::now();
            let expired: Vec<NodeId> = {
                let image = self.image.borrow();
                let mut sessions = self.sessions.borrow_mut();
                image
                    .brokers
                    .values()
                    .filter(|b| !b.fenced && b.node != self.config.node)
                    .filter(|b| {
                        // A broker first seen now (just registered) gets a whole session.
                        let seen = *sessions.last_seen.entry(b.node).or_insert(now);
                        now.duration_since(seen) > self.config.session_timeout
                    })
                    .map(|b| b.node)
                    .collect()
            };
            for node in expired {
                tracing::info!(node, "broker session expired: fencing it");
                if let Err(e) = self.execute(Command::FenceBroker { node }).await {
                    tracing::warn!(node, error = %e, "fencing failed");
                }
            }
        }
    }

    fn notice_role_change(&self) {
        let leader = self.is_leader();
        if leader && !self.was_leader.get() {
            // Every known broker gets a full session from now: heartbeats went to the old one.
            let now = Instant::now();
            let nodes: Vec<NodeId> = self.image.borrow().brokers.keys().copied().collect();
            let mut sessions = self.sessions.borrow_mut();
            for n in nodes {
                sessions.last_seen.insert(n, now);
            }
            tracing::info!(
                node = self.config.node,
                "this node is the active controller"
            );
        }
        if !leader && self.was_leader.get() {
            self.fail_waiters("leadership moved to another controller");
        }
        if leader != self.was_leader.get() {
            (self.publish)(self.image());
        }
        self.was_leader.set(leader);
    }

    fn fail_waiters(&self, why: &str) {
        for (_, (_, tx)) in self.waiters.borrow_mut().drain() {
            let _ = tx.send(Err(MetadataError::NotController(why.to_string())));
        }
    }

    /// raft-rs's Ready protocol: send, persist, apply, advance.
    fn on_ready(&self) -> std::io::Result<()> {
        let mut guard = self.raw.borrow_mut();
        let Some(raw) = guard.as_mut() else {
            return Ok(());
        };
        if !raw.has_ready() {
            return Ok(());
        }
        let mut ready = raw.ready();
        self.send(ready.take_messages());
        let mut changed = false;
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            raw.mut_store().apply_snapshot(snap.clone())?;
            self.install_snapshot(&snap);
            changed = true;
        }
        changed |= self.apply(ready.take_committed_entries());
        raw.mut_store().append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            raw.mut_store().set_hard_state(hs)?;
        }
        self.send(ready.take_persisted_messages());
        let mut light = raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            raw.mut_store().set_commit(commit)?;
        }
        self.send(light.take_messages());
        changed |= self.apply(light.take_committed_entries());
        raw.advance_apply();
        self.maybe_compact(raw)?;
        drop(guard);
        if changed {
            (self.publish)(self.image());
        }
        Ok(())
    }

    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            self.transport.send_raft(&m);
        }
    }

    fn install_snapshot(&self, snap: &RaftSnapshot) {
        match Snapshot::restore(
            snap.get_data(),
            &self.config.settings.defaults,
            Some(self.config.node),
        ) {
            Ok(image) => *self.image.borrow_mut() = image,
            Err(e) => panic!("metadata snapshot from the leader does not load: {e}"),
        }
    }

    /// Applies committed entries to the image; resolves this node's waiting commands.
    fn apply(&self, entries: Vec<Entry>) -> bool {
        let mut changed = false;
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            let proposal: Proposal = match serde_json::from_slice(&entry.data) {
                Ok(p) => p,
                Err(e) => panic!(
                    "committed metadata entry {} does not parse: {e}",
                    entry.index
                ),
            };
            {
                let mut image = self.image.borrow_mut();
                for r in proposal.records {
                    if entry.index > self.replayed_to {
                        log_event(&r);
                    }
                    image.apply(r, &self.config.settings.defaults);
                }
            }
            changed = true;
            self.applied_since_snapshot
                .set(self.applied_since_snapshot.get() + 1);
            if proposal.origin == self.config.node {
                if let Some((reply, tx)) = self.waiters.borrow_mut().remove(&proposal.id) {
                    let _ = tx.send(Ok(reply));
                }
            }
        }
        changed
    }

    /// Snapshots the image every `SNAPSHOT_EVERY` entries so start-up replays little.
    fn maybe_compact(&self, raw: &mut RawNode<DiskStorage>) -> std::io::Result<()> {
        if self.applied_since_snapshot.get() < SNAPSHOT_EVERY {
            return Ok(());
        }
        let applied = raw.raft.raft_log.applied;
        let data = self.image.borrow().to_bytes();
        raw.mut_store().compact_to_snapshot(applied, data)?;
        self.applied_since_snapshot.set(0);
        Ok(())
    }
}

/// Opens the raft node on its storage; the image starts from the stored snapshot (or from a
/// migrated single-node metadata log, written as the first snapshot).
fn open_raft(
    config: &QuorumConfig,
    legacy: Option<Snapshot>,
) -> std::io::Result<(RawNode<DiskStorage>, Snapshot)> {
    let voters: Vec<u64> = config.voters.keys().map(|n| *n as u64).collect();
    let mut storage = DiskStorage::open(&config.dir, &voters)?;
    if let Some(image) = legacy {
        let last = raft::Storage::last_index(&storage)
            .map_err(|e| std::io::Error::other(format!("raft storage: {e}")))?;
        if storage.snapshot_ref().get_metadata().index == 0 && last == 0 {
            seed_snapshot(&mut storage, &image, &voters)?;
        }
    }
    let snap = storage.snapshot_ref().clone();
    let image = if snap.get_data().is_empty() {
        Snapshot {
            node: Some(config.node),
            ..Snapshot::default()
        }
    } else {
        Snapshot::restore(
            snap.get_data(),
            &config.settings.defaults,
            Some(config.node),
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
    };
    let raft_config = raft::Config {
        id: config.node as u64,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        applied: snap.get_metadata().index,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let raw = RawNode::new(&raft_config, storage, &logger)
        .map_err(|e| std::io::Error::other(format!("raft: {e}")))?;
    Ok((raw, image))
}

/// Writes a migrated image as the first raft snapshot (index 1, term 1).
fn seed_snapshot(
    storage: &mut DiskStorage,
    image: &Snapshot,
    voters: &[u64],
) -> std::io::Result<()> {
    let mut snap = RaftSnapshot::default();
    snap.set_data(image.to_bytes().into());
    let meta = snap.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    let cs = ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    };
    meta.set_conf_state(cs);
    storage.apply_snapshot(snap)
}
