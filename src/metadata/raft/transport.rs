//! The controller listener and the links between nodes of the metadata quorum: raft messages
//! between voters, and requests to the active controller (commands forwarded from other nodes,
//! broker heartbeats) with their responses.
//!
//! Frames are `[u32 length][u8 kind][payload]`: raft messages as raft-rs's protobuf, requests
//! and responses as JSON (a handful per second; readability wins). Each node keeps one
//! outbound connection per peer, redialled with backoff; a request travels on it and its
//! response comes back on it. A raft message to a peer that is unreachable is dropped: raft
//! sends again. Everything runs on the controller's executor, never on a shard's.
//!
//! On an SSL controller listener every link is mutual TLS: a node accepts only peers whose
//! certificate its trust store vouches for, and presents its own when it dials.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use protobuf::Message as _;
use raft::eraftpb::Message;
use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// A frame larger than this closes the link (a raft snapshot of the image fits easily).
pub const FRAME_BYTES_MAX: usize = 256 << 20;
const KIND_RAFT: u8 = 1;
const KIND_REQUEST: u8 = 2;
const KIND_RESPONSE: u8 = 3;
/// Outgoing frames queued per peer while its link is down; older raft messages are dropped.
const PEER_QUEUE_MAX: usize = 4096;
const REDIAL_MIN: Duration = Duration::from_millis(50);
const REDIAL_MAX: Duration = Duration::from_secs(1);

/// How long a TLS handshake on a controller link may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Mutual TLS for the controller links (an SSL controller listener).
#[derive(Clone)]
pub struct LinkTls {
    /// What this node accepts with: its certificate, and peers' required.
    pub server: Arc<rustls::ServerConfig>,
    /// What it dials with: the trust store, and its certificate presented.
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkTls")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub from: NodeId,
    pub body: T,
}

/// What arrives at this node, for the quorum to handle.
pub enum Inbound<Req> {
    Raft(Message),
    /// A request and where to send its response.
    Request(Envelope<Req>, Responder),
}

/// Sends the response to one request back on the link it came in on.
pub struct Responder {
    id: u64,
    out: Rc<LocalSender<Vec<u8>>>,
}

impl Responder {
    pub fn respond<Resp: Serialize>(self, me: NodeId, body: Resp) {
        let env = Envelope {
            id: self.id,
            from: me,
            body,
        };
        if let Ok(json) = serde_json::to_vec(&env) {
            let _ = self.out.try_send(frame(KIND_RESPONSE, &json));
        }
    }
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    let kind = body[0];
    body.remove(0);
    Ok((kind, body))
}

/// Runs `fut` for at most `dur`.
pub async fn within<T>(dur: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(glommio::timer::sleep(dur));
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

/// This node's links. `Req`/`Resp` are the quorum's request and response bodies.
pub struct Transport<Req, Resp> {
    me: NodeId,
    peers: RefCell<BTreeMap<NodeId, LocalSender<Vec<u8>>>>,
    addresses: BTreeMap<NodeId, SocketAddr>,
    pending: Rc<RefCell<HashMap<u64, oneshot::Sender<Resp>>>>,
    next_id: Cell<u64>,
    _req: std::marker::PhantomData<Req>,
}

impl<Req, Resp> Transport<Req, Resp>
where
    Req: Serialize + for<'de> Deserialize<'de> + 'static,
    Resp: Serialize + for<'de> Deserialize<'de> + 'static,
{
    /// Links to `addresses` (every node this one talks to) and, if `listen` is given, accepts
    /// links from others; what arrives goes to `inbox`.
    pub fn start(
        me: NodeId,
        listen: Option<TcpListener>,
        addresses: BTreeMap<NodeId, SocketAddr>,
        inbox: LocalSender<Inbound<Req>>,
        tls: Option<LinkTls>,
    ) -> Rc<Transport<Req, Resp>> {
        let t = Rc::new(Transport {
            me,
            peers: RefCell::new(BTreeMap::new()),
            addresses: addresses.clone(),
            pending: Rc::new(RefCell::new(HashMap::new())),
            next_id: Cell::new(1),
            _req: std::marker::PhantomData,
        });
        let inbox = Rc::new(inbox);
        if let Some(listener) = listen {
            let acceptor = tls
                .as_ref()
                .map(|t| futures_rustls::TlsAcceptor::from(t.server.clone()));
            glommio::spawn_local(accept_loop(listener, inbox.clone(), acceptor)).detach();
        }
        for (node, addr) in addresses {
            if node == me {
                continue;
            }
            let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_MAX);
            t.peers.borrow_mut().insert(node, tx);
            let pending = t.pending.clone();
            let connector = tls
                .as_ref()
                .map(|t| futures_rustls::TlsConnector::from(t.client.clone()));
            glommio::spawn_local(dial_loop::<Resp>(addr, rx, pending, connector)).detach();
        }
        t
    }

    pub fn knows(&self, node: NodeId) -> bool {
        self.addresses.contains_key(&node)
    }

    /// Queues a raft message; dropped when the peer's queue is full or unknown.
    pub fn send_raft(&self, msg: &Message) {
        let Ok(bytes) = msg.write_to_bytes() else {
            return;
        };
        if let Some(q) = self.peers.borrow().get(&(msg.to as NodeId)) {
            let _ = q.try_send(frame(KIND_RAFT, &bytes));
        }
    }

    /// Sends a request to `node` and waits up to `timeout` for its response.
    pub async fn request(&self, node: NodeId, body: Req, timeout: Duration) -> Option<Resp> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let env = Envelope {
            id,
            from: self.me,
            body,
        };
        let json = serde_json::to_vec(&env).ok()?;
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        let queued = match self.peers.borrow().get(&node) {
            Some(q) => q.try_send(frame(KIND_REQUEST, &json)).is_ok(),
            None => false,
        };
        let answer = if queued {
            within(timeout, rx).await.and_then(Result::ok)
        } else {
            None
        };
        self.pending.borrow_mut().remove(&id);
        answer
    }
}

async fn accept_loop<Req>(
    listener: TcpListener,
    inbox: Rc<LocalSender<Inbound<Req>>>,
    tls: Option<futures_rustls::TlsAcceptor>,
) where
    Req: for<'de> Deserialize<'de> + 'static,
{
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let inbox = inbox.clone();
                let Some(acceptor) = tls.clone() else {
                    glommio::spawn_local(serve_inbound(stream, inbox)).detach();
                    continue;
                };
                glommio::spawn_local(async move {
                    match within(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Some(Ok(tls)) => serve_inbound(tls, inbox).await,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "controller link refused: TLS handshake failed")
                        }
                        None => tracing::warn!("controller link refused: TLS handshake timed out"),
                    }
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One link from a peer: raft messages and requests in, responses out.
async fn serve_inbound<Req, S>(stream: S, inbox: Rc<LocalSender<Inbound<Req>>>)
where
    Req: for<'de> Deserialize<'de> + 'static,
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut reader, mut writer) = stream.split();
    let (out_tx, out_rx): (LocalSender<Vec<u8>>, LocalReceiver<Vec<u8>>) =
        local_channel::new_bounded(PEER_QUEUE_MAX);
    let out_tx = Rc::new(out_tx);
    let writer_task = glommio::spawn_local(async move {
        while let Some(f) = out_rx.recv().await {
            if writer.write_all(&f).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });
    loop {
        let (kind, body) = match read_frame(&mut reader).await {
            Ok(f) => f,
            Err(_) => break,
        };
        let item = match kind {
            KIND_RAFT => match Message::parse_from_bytes(&body) {
                Ok(m) => Inbound::Raft(m),
                Err(_) => break,
            },
            KIND_REQUEST => match serde_json::from_slice::<Envelope<Req>>(&body) {
                Ok(env) => {
                    let responder = Responder {
                        id: env.id,
                        out: out_tx.clone(),
                    };
                    Inbound::Request(env, responder)
                }
                Err(_) => break,
            },
            _ => break,
        };
        if inbox.send(item).await.is_err() {
            break;
        }
    }
    drop(out_tx);
    drop(writer_task);
}

/// The outbound link to one peer: dials, writes queued frames, reads responses; redials with
/// backoff when the link breaks.
async fn dial_loop<Resp>(
    addr: SocketAddr,
    queue: LocalReceiver<Vec<u8>>,
    pending: Rc<RefCell<HashMap<u64, oneshot::Sender<Resp>>>>,
    tls: Option<futures_rustls::TlsConnector>,
) where
    Resp: for<'de> Deserialize<'de> + 'static,
{
    let mut backoff = REDIAL_MIN;
    loop {
        let dialed = match within(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Some(Ok(s)) => {
                let _ = s.set_nodelay(true);
                match &tls {
                    None => Some(Dialed::Plain(s)),
                    Some(connector) => {
                        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
                        match within(HANDSHAKE_TIMEOUT, connector.connect(name, s)).await {
                            Some(Ok(t)) => Some(Dialed::Tls(Box::new(t))),
                            Some(Err(e)) => {
                                tracing::warn!(%addr, error = %e, "controller link: TLS handshake failed");
                                None
                            }
                            None => None,
                        }
                    }
                }
            }
            _ => None,
        };
        let Some(link) = dialed else {
            // Drop what piled up while the peer was away: raft resends what matters.
            while queue.try_recv().is_some() {}
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(REDIAL_MAX);
            continue;
        };
        backoff = REDIAL_MIN;
        let ended = match link {
            Dialed::Plain(s) => run_link(s, &queue, &pending).await,
            Dialed::Tls(s) => run_link(*s, &queue, &pending).await,
        };
        if ended {
            return;
        }
    }
}

/// A dialled connection, before its frames flow.
enum Dialed {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

/// Carries queued frames out and responses in until the connection fails (false) or the
/// transport is dropped (true).
async fn run_link<Resp, S>(
    stream: S,
    queue: &LocalReceiver<Vec<u8>>,
    pending: &Rc<RefCell<HashMap<u64, oneshot::Sender<Resp>>>>,
) -> bool
where
    Resp: for<'de> Deserialize<'de> + 'static,
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    {
        let (mut reader, mut writer) = stream.split();
        let responses = pending.clone();
        let reader_task = glommio::spawn_local(async move {
            while let Ok((kind, body)) = read_frame(&mut reader).await {
                if kind != KIND_RESPONSE {
                    continue;
                }
                if let Ok(env) = serde_json::from_slice::<Envelope<Resp>>(&body) {
                    if let Some(tx) = responses.borrow_mut().remove(&env.id) {
                        let _ = tx.send(env.body);
                    }
                }
            }
        });
        // Write until the link fails; the reader ends with it.
        loop {
            let Some(f) = queue.recv().await else {
                return true;
            };
            if writer.write_all(&f).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        drop(reader_task);
    }
    false
}

trait TryRecv<T> {
    fn try_recv(&self) -> Option<T>;
}

impl<T> TryRecv<T> for LocalReceiver<T> {
    fn try_recv(&self) -> Option<T> {
        use futures::FutureExt;
        self.recv().now_or_never().flatten()
    }
}
