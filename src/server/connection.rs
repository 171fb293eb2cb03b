//! One client connection: framing, dispatch, and responses in request order.
//!
//! A reader reads size-prefixed frames and starts each request's handler at once (clients
//! pipeline up to max.in.flight requests); a writer awaits the handlers in arrival order and
//! writes their responses. At most [`IN_FLIGHT_MAX`] requests are in progress per connection,
//! and each holds its size in bytes of the shard's share of `queued.max.request.bytes` until
//! it is answered: when the writer falls behind or the shard has too many request bytes in
//! hand, the reader stops reading and TCP pushes back on the client.
//! Anything unparseable closes the connection after the responses already owed, as Kafka does.
//! A watchdog ([`limits::watch`]) closes connections that are idle or do not read their
//! responses; the connection's [`limits::Admission`] keeps its place in the broker's count.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use futures::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::FutureExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::framing::{
    set_nonblocking, write_chunks, write_chunks_through, FrameReader, Recv, SocketRecv, StreamRecv,
};
use super::limits::{self, Activity, Admission};
use super::Outcome;
use crate::config::{ClientListener, Config};
use crate::metrics::{self, Phase};
use crate::protocol::{self, ProtocolError, ANONYMOUS};
use crate::security::principal::PrincipalMapper;
use crate::security::sasl::{Authenticator, SaslError, SaslSettings, Step};
use crate::security::tls;
use crate::shard::Shard;
use crate::storage::Chunk;

/// Requests in progress per connection before the reader waits.
pub const IN_FLIGHT_MAX: usize = 64;

/// A request on its way through the connection: what it is, when it was read, and its
/// handling (which reports when its wait for room ended, when it was answered, and how long
/// it waited on others).
struct InFlight {
    api: i16,
    version: i16,
    read_at: Instant,
    handling: glommio::Task<Handled>,
}

struct Handled {
    outcome: Outcome,
    started: Instant,
    done: Instant,
    remote: Duration,
}

impl InFlight {
    /// A request not handled: its answer (the ApiVersions fallback, or a close) is not timed.
    fn untimed(outcome: Outcome) -> InFlight {
        let now = Instant::now();
        InFlight {
            api: -1,
            version: -1,
            read_at: now,
            handling: glommio::spawn_local(async move {
                Handled {
                    outcome,
                    started: now,
                    done: now,
                    remote: Duration::ZERO,
                }
            }),
        }
    }

    /// Adds the request's time by phase to this shard's metrics once it is written.
    fn record(&self, h: &Handled, dequeued: Instant, sent: Instant) {
        if self.api < 0 {
            return;
        }
        let handling = h.done.saturating_duration_since(h.started);
        let remote = h.remote.min(handling);
        metrics::request_done(
            self.api,
            self.version,
            &[
                (
                    Phase::Queue,
                    h.started.saturating_duration_since(self.read_at),
                ),
                (Phase::Local, handling - remote),
                (Phase::Remote, remote),
                (
                    Phase::ResponseQueue,
                    dequeued.saturating_duration_since(h.done),
                ),
                (
                    Phase::ResponseSend,
                    sent.saturating_duration_since(dequeued),
                ),
                (Phase::Total, sent.saturating_duration_since(self.read_at)),
            ],
        );
    }
}

/// A client listener as its connections see it: its name, TLS acceptor and SASL offer.
pub struct Listener {
    name: Arc<str>,
    tls: Option<futures_rustls::TlsAcceptor>,
    /// How a client certificate's subject becomes its user name.
    principals: PrincipalMapper,
    sasl: Option<Arc<SaslSettings>>,
    /// `connections.max.reauth.ms`, 0 for sessions that never expire.
    reauth_ms: i64,
    failed_auth_delay: Duration,
}

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Listener {
    pub fn new(config: &Config, spec: ClientListener) -> Result<Listener, String> {
        let security = &config.security;
        let tls = if spec.protocol.is_tls() {
            let server = tls::server_config(security, &spec.name).map_err(|e| e.to_string())?;
            Some(futures_rustls::TlsAcceptor::from(server))
        } else {
            None
        };
        let sasl = if spec.protocol.is_sasl() {
            Some(Arc::new(SaslSettings {
                mechanisms: security.sasl_mechanisms(&spec.name),
                plain_users: security
                    .plain_users(&spec.name)
                    .map_err(|e| e.to_string())?,
            }))
        } else {
            None
        };
        let rules = security
            .value(Some(&spec.name), "ssl.principal.mapping.rules")
            .unwrap_or_default();
        let principals = PrincipalMapper::parse(&rules)
            .map_err(|e| format!("ssl.principal.mapping.rules of {}: {e}", spec.name))?;
        Ok(Listener {
            name: Arc::from(spec.name.as_str()),
            tls,
            principals,
            sasl,
            reauth_ms: security.connections_max_reauth_ms,
            failed_auth_delay: Duration::from_millis(security.failed_authentication_delay_ms),
        })
    }
}

pub async fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    admission: Admission,
    listener: Rc<Listener>,
) {
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    if let Err(e) = set_nonblocking(fd) {
        tracing::warn!(%peer, error = %e, "cannot make the socket non-blocking; closing");
        return;
    }
    metrics::count(|c| c.connections_opened += 1);
    let conn = Conn {
        shard,
        peer,
        client_host: peer_addr
            .map(|a| format!("/{}", a.ip()))
            .unwrap_or_default(),
        activity: Activity::new(),
    };
    let rules = limits::Rules::new(&conn.shard.config.connections);
    let watchdog = glommio::spawn_local(limits::watch(
        fd,
        conn.activity.clone(),
        rules,
        conn.peer.clone(),
    ));
    match &listener.tls {
        None => {
            let (reader, writer) = stream.split();
            let session = Session::new(&listener, Arc::from(ANONYMOUS));
            let reader = SocketRecv::new(reader, fd);
            conn.run(reader, writer, Some(fd), session).await;
        }
        // Boxed: a plain connection's task does not carry the TLS handshake's state.
        Some(acceptor) => Box::pin(serve_tls(&conn, stream, acceptor, &listener)).await,
    }
    metrics::count(|c| c.connections_closed += 1);
    drop(watchdog);
    drop(admission);
}

/// A connection on a TLS listener: the handshake (within its time limit), the client
/// certificate's principal, then the same service as a plain connection.
async fn serve_tls(
    conn: &Conn,
    stream: TcpStream,
    acceptor: &futures_rustls::TlsAcceptor,
    listener: &Rc<Listener>,
) {
    let handshake = acceptor.accept(stream);
    let timeout = glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT);
    let tls = match futures::future::select(handshake, Box::pin(timeout)).await {
        futures::future::Either::Left((Ok(tls), _)) => Some(tls),
        futures::future::Either::Left((Err(e), _)) => {
            tracing::info!(peer = %conn.peer, listener = %listener.name, error = %e, "TLS handshake failed");
            None
        }
        futures::future::Either::Right(_) => {
            tracing::info!(peer = %conn.peer, listener = %listener.name, "TLS handshake timed out");
            None
        }
    };
    match tls {
        Some(tls) => {
            let subject = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| tls::certificate_subject(cert));
            let principal: Arc<str> = match subject {
                None => Arc::from(ANONYMOUS),
                Some(dn) => match listener.principals.name(&dn) {
                    Some(user) => Arc::from(format!("User:{user}")),
                    None => {
                        tracing::info!(peer = %conn.peer, listener = %listener.name, subject = %dn, "no ssl.principal.mapping.rules rule applies to the client certificate; closing");
                        metrics::count(|c| c.authentications_failed += 1);
                        return;
                    }
                },
            };
            let (reader, writer) = tls.split();
            let session = Session::new(listener, principal);
            conn.run(StreamRecv(reader), writer, None, session).await;
        }
        None => metrics::count(|c| c.tls_handshakes_failed += 1),
    }
}

/// What a connection's reader and writer share.
struct Conn {
    shard: Rc<Shard>,
    peer: String,
    client_host: String,
    activity: Rc<Activity>,
}

impl Conn {
    /// Serves the connection until it ends. `direct` is the socket's descriptor when responses
    /// may be written to it directly (sendmsg, sendfile): not under TLS.
    async fn run<R, W>(&self, reader: R, writer: W, direct: Option<RawFd>, mut session: Session)
    where
        R: Recv,
        W: AsyncWrite + Unpin + 'static,
    {
        let (tx, rx) = local_channel::new_bounded::<InFlight>(IN_FLIGHT_MAX);
        let writer_task = glommio::spawn_local(write_responses(
            writer,
            direct,
            rx,
            self.peer.clone(),
            self.activity.clone(),
        ));
        if let Err(why) = self.read_requests(reader, &tx, &mut session).await {
            // The writer logs the close when it reaches it, after the responses before it.
            let _ = tx.send(InFlight::untimed(Outcome::Close(why))).await;
        }
        drop(tx);
        writer_task.await;
    }

    /// Reads frames until EOF or a protocol error; returns why it stopped if it was an error.
    async fn read_requests<R: Recv>(
        &self,
        reader: R,
        tx: &local_channel::LocalSender<InFlight>,
        session: &mut Session,
    ) -> Result<(), String> {
        let shard = &self.shard;
        let mut frames = FrameReader::new(reader, shard.config.socket_request_max_bytes);
        let share = shard.request_share();
        loop {
            // While work for other shards backs up, read no more requests.
            shard.outbox_room().await;
            let Some(frame) = frames.next_frame().await.map_err(|e| e.to_string())? else {
                break;
            };
            let frame = own_unless_hot(frame);
            let read_at = Instant::now();
            self.activity.read();
            if std::mem::take(&mut session.legacy_tokens) {
                // A bare token answers with a bare token; a failure closes without one, as
                // Kafka does for SaslHandshake v0 clients.
                // Boxed, as the step below: an idle connection's task does not carry SASL state.
                let (reply, more) = Box::pin(session.exchange(shard, &frame, &self.peer))
                    .await
                    .map_err(|(_, why)| why)?;
                session.legacy_tokens = more;
                let mut framed = bytes::BytesMut::with_capacity(4 + reply.len());
                framed.extend_from_slice(&(reply.len() as u32).to_be_bytes());
                framed.extend_from_slice(&reply);
                tx.send(InFlight::untimed(Outcome::Reply(framed.freeze())))
                    .await
                    .map_err(|_| "writer gone".to_string())?;
                continue;
            }
            let task = match protocol::parse_request(frame.clone()) {
                Ok(mut req) => {
                    req.client_host = self.client_host.clone();
                    req.listener = session.listener.name.clone();
                    req.principal = session.principal.clone();
                    match session.gate(&req, Instant::now()) {
                        Gate::Dispatch => {}
                        Gate::Close(why) => return Err(why),
                        Gate::Sasl => {
                            let (outcome, close) =
                                Box::pin(session.step(shard, &req, &self.peer)).await;
                            tx.send(InFlight::untimed(outcome))
                                .await
                                .map_err(|_| "writer gone".to_string())?;
                            if let Some(why) = close {
                                return Err(why);
                            }
                            continue;
                        }
                    }
                    let (api, version) = (req.api_key as i16, req.api_version);
                    // A request larger than the whole share still goes, alone.
                    let cost = (frame.len() as u64).clamp(1, share);
                    let held = shard
                        .request_bytes
                        .acquire_static_permit(cost)
                        .await
                        .map_err(|e| e.to_string())?;
                    let started = Instant::now();
                    let remote = Rc::new(Cell::new(Duration::ZERO));
                    let handling = super::dispatch(shard, req, &remote);
                    let handling = glommio::spawn_local(async move {
                        let outcome = handling.await;
                        drop(held);
                        Handled {
                            outcome,
                            started,
                            done: Instant::now(),
                            remote: remote.get(),
                        }
                    });
                    InFlight {
                        api,
                        version,
                        read_at,
                        handling,
                    }
                }
                Err(e) => {
                    let outcome = answer_unparsed(e, &frame);
                    let close = matches!(outcome, Outcome::Close(_));
                    let t = InFlight::untimed(outcome);
                    tx.send(t).await.map_err(|_| "writer gone".to_string())?;
                    if close {
                        return Ok(());
                    }
                    continue;
                }
            };
            tx.send(task).await.map_err(|_| "writer gone".to_string())?;
        }
        Ok(())
    }
}

/// What a connection may do with a request, given its authentication.
enum Gate {
    Dispatch,
    /// A SASL request this connection's authenticator answers.
    Sasl,
    Close(String),
}

/// A connection's identity: who it is (its principal) and, on a SASL listener, where its
/// authentication stands.
struct Session {
    listener: Rc<Listener>,
    principal: Arc<str>,
    sasl: Option<Authenticator>,
    authenticated: bool,
    /// When a SASL session ends (KIP-368), if it does.
    expires: Option<Instant>,
    /// The next frame is a bare SASL token, not a request (after SaslHandshake v0).
    legacy_tokens: bool,
}

impl Session {
    fn new(listener: &Rc<Listener>, principal: Arc<str>) -> Session {
        Session {
            listener: listener.clone(),
            principal,
            sasl: listener.sasl.clone().map(Authenticator::new),
            authenticated: listener.sasl.is_none(),
            expires: None,
            legacy_tokens: false,
        }
    }

    fn gate(&self, req: &protocol::Request, now: Instant) -> Gate {
        let sasl_api = matches!(
            req.api_key,
            ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        if self.sasl.is_none() {
            // Not a SASL listener: Kafka answers these with ILLEGAL_SASL_STATE.
            return if sasl_api { Gate::Sasl } else { Gate::Dispatch };
        }
        if sasl_api {
            return Gate::Sasl;
        }
        if !self.authenticated {
            return if req.api_key == ApiKey::ApiVersions {
                Gate::Dispatch
            } else {
                Gate::Close(format!(
                    "unexpected {:?} request before SASL authentication",
                    req.api_key
                ))
            };
        }
        match self.expires {
            Some(at) if now >= at && req.api_key != ApiKey::ApiVersions => Gate::Close(format!(
                "the SASL session of {} expired (connections.max.reauth.ms) and the client did not re-authenticate",
                self.principal
            )),
            _ => Gate::Dispatch,
        }
    }

    /// Answers SaslHandshake or SaslAuthenticate; the second value says to close after it.
    async fn step(
        &mut self,
        shard: &Shard,
        req: &protocol::Request,
        peer: &str,
    ) -> (Outcome, Option<String>) {
        let reauth_allowed = self.listener.reauth_ms > 0;
        let offered = self
            .sasl
            .as_ref()
            .map(|a| a.mechanisms().to_vec())
            .unwrap_or_default();
        let answerable = self.sasl.is_some()
            && (!self.authenticated
                || reauth_allowed
                || self.sasl.as_ref().is_some_and(Authenticator::in_exchange));
        match req.api_key {
            ApiKey::SaslHandshake => {
                let body: SaslHandshakeRequest = match protocol::decode_body(req) {
                    Ok(b) => b,
                    Err(e) => return (Outcome::Close(e.to_string()), None),
                };
                let mechanisms = offered
                    .iter()
                    .map(|m| StrBytes::from_string(m.clone()))
                    .collect();
                let answer = |code: i16| {
                    super::reply(
                        req,
                        &SaslHandshakeResponse::default()
                            .with_error_code(code)
                            .with_mechanisms(mechanisms),
                    )
                };
                let Some(auth) = self.sasl.as_mut().filter(|_| answerable) else {
                    return (answer(ResponseError::IllegalSaslState.code()), None);
                };
                match auth.handshake(body.mechanism.as_str()) {
                    Ok(()) => {
                        // SaslHandshake v0: the exchange follows as bare size-prefixed tokens.
                        self.legacy_tokens = req.api_version == 0;
                        (answer(0), None)
                    }
                    Err(e @ SaslError::UnsupportedMechanism(_)) => (
                        answer(ResponseError::UnsupportedSaslMechanism.code()),
                        Some(e.to_string()),
                    ),
                    Err(e) => (
                        answer(ResponseError::IllegalSaslState.code()),
                        Some(e.to_string()),
                    ),
                }
            }
            _ => {
                let body: SaslAuthenticateRequest = match protocol::decode_body(req) {
                    Ok(b) => b,
                    Err(e) => return (Outcome::Close(e.to_string()), None),
                };
                let answer = |code: i16, message: Option<String>, bytes: Vec<u8>, lifetime: i64| {
                    super::reply(
                        req,
                        &SaslAuthenticateResponse::default()
                            .with_error_code(code)
                            .with_error_message(message.map(StrBytes::from_string))
                            .with_auth_bytes(bytes.into())
                            .with_session_lifetime_ms(lifetime),
                    )
                };
                if !answerable {
                    let why = "SaslAuthenticate is not expected on this connection".to_string();
                    return (
                        answer(
                            ResponseError::IllegalSaslState.code(),
                            Some(why),
                            Vec::new(),
                            0,
                        ),
                        None,
                    );
                }
                match self.exchange(shard, &body.auth_bytes, peer).await {
                    Ok((bytes, _)) => (answer(0, None, bytes, self.lifetime_if_done()), None),
                    Err((code, why)) => (
                        answer(code.code(), Some(why.clone()), Vec::new(), 0),
                        Some(why),
                    ),
                }
            }
        }
    }

    /// The session lifetime to report once authenticated (0 while the exchange goes on).
    fn lifetime_if_done(&self) -> i64 {
        let exchanging = self.sasl.as_ref().is_some_and(Authenticator::in_exchange);
        if exchanging {
            0
        } else {
            self.listener.reauth_ms
        }
    }

    /// Feeds one SASL message to the authenticator: the bytes to send back, and whether more
    /// are expected; or the error to answer with (logged, counted, and delayed by
    /// `connection.failed.authentication.delay.ms`), after which the connection closes.
    async fn exchange(
        &mut self,
        shard: &Shard,
        message: &[u8],
        peer: &str,
    ) -> Result<(Vec<u8>, bool), (ResponseError, String)> {
        let Some(auth) = self.sasl.as_mut() else {
            return Err((
                ResponseError::IllegalSaslState,
                "SASL is not enabled on this listener".to_string(),
            ));
        };
        let snap = shard.snapshot();
        let lookup = |user: &str, m| {
            snap.scram_credentials
                .get(user)
                .and_then(|c| c.get(&m))
                .cloned()
        };
        match auth.authenticate(message, lookup) {
            Ok(Step::Challenge(bytes)) => Ok((bytes, true)),
            Ok(Step::Done { user, reply }) => {
                metrics::count(|c| c.authentications_ok += 1);
                let lifetime = self.listener.reauth_ms;
                self.expires =
                    (lifetime > 0).then(|| Instant::now() + Duration::from_millis(lifetime as u64));
                if !self.authenticated {
                    tracing::debug!(%peer, %user, listener = %self.listener.name, "authenticated");
                }
                self.authenticated = true;
                self.principal = Arc::from(format!("User:{user}"));
                Ok((reply, false))
            }
            Err(e) => {
                metrics::count(|c| c.authentications_failed += 1);
                tracing::info!(%peer, listener = %self.listener.name, error = %e, "authentication failed");
                glommio::timer::sleep(self.listener.failed_auth_delay).await;
                let code = match e {
                    SaslError::Failed(_) => ResponseError::SaslAuthenticationFailed,
                    SaslError::UnsupportedMechanism(_) => ResponseError::UnsupportedSaslMechanism,
                    SaslError::IllegalState(_) => ResponseError::IllegalSaslState,
                };
                Err((code, e.to_string()))
            }
        }
    }
}

/// What to do with a request whose header we will not handle: ApiVersions of an unknown
/// version gets the v0 fallback (so the client can retry lower); anything else closes.
fn answer_unparsed(e: ProtocolError, frame: &[u8]) -> Outcome {
    if let ProtocolError::UnsupportedVersion { key, .. } = &e {
        if *key == kafka_protocol::messages::ApiKey::ApiVersions {
            if let Ok((_, _, correlation_id)) = protocol::peek_key_version(frame) {
                return Outcome::Reply(protocol::api_versions_fallback(correlation_id));
            }
        }
    }
    Outcome::Close(e.to_string())
}

async fn write_responses<W: AsyncWrite + Unpin>(
    mut writer: W,
    direct: Option<RawFd>,
    rx: local_channel::LocalReceiver<InFlight>,
    peer: String,
    activity: Rc<Activity>,
) {
    let mut ready: Vec<Chunk> = Vec::new();
    // The requests whose responses are in `ready`, timed once the write is done.
    let mut answered: Vec<(InFlight, Handled, Instant)> = Vec::new();
    let mut next = None;
    'conn: loop {
        let mut req = match next.take() {
            Some(t) => t,
            None => match rx.recv().await {
                Some(t) => t,
                None => break,
            },
        };
        let mut handled = (&mut req.handling).await;
        // Take every response that is already done, so they leave in one write.
        loop {
            let outcome = std::mem::replace(&mut handled.outcome, Outcome::NoReply);
            match outcome {
                Outcome::Reply(frame) => ready.push(Chunk::Mem(frame)),
                Outcome::Chunks(chunks) => ready.extend(chunks),
                Outcome::NoReply => {}
                Outcome::Close(why) => {
                    metrics::count(|c| c.connections_closed_on_error += 1);
                    tracing::debug!(%peer, %why, "closing connection");
                    let _ = write_all(&mut writer, direct, &mut ready, &activity.send).await;
                    break 'conn;
                }
            }
            answered.push((req, handled, Instant::now()));
            let Some(Some(mut t)) = rx.recv().now_or_never() else {
                break;
            };
            match (&mut t.handling).now_or_never() {
                Some(h) => {
                    req = t;
                    handled = h;
                }
                None => {
                    next = Some(t);
                    break;
                }
            }
        }
        if let Err(e) = write_all(&mut writer, direct, &mut ready, &activity.send).await {
            tracing::debug!(%peer, error = %e, "write failed");
            break;
        }
        let sent = Instant::now();
        for (req, handled, dequeued) in answered.drain(..) {
            req.record(&handled, dequeued, sent);
        }
    }
    let _ = writer.close().await;
    // The socket closes when `writer` drops, just below: the watchdog must not use it after.
    activity.open.set(false);
}

/// Writes responses straight to the socket when it can (`direct`), else through the stream
/// (TLS encrypts them: file ranges are read into memory first).
async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    direct: Option<RawFd>,
    chunks: &mut Vec<Chunk>,
    progress: &super::framing::SendProgress,
) -> std::io::Result<()> {
    match direct {
        Some(fd) => write_chunks(writer, fd, chunks, progress).await,
        None => write_chunks_through(writer, chunks, progress).await,
    }
}

/// Produce and Fetch requests keep their frame, a slice of the shard's receive arena, only while
/// they are handled. Any other request may leave a piece of itself in long-lived state (a group
/// member's metadata, say), which would keep the whole arena block it arrived in alive: it is
/// copied into a buffer of its own. Such requests are small and rare next to the hot two.
fn own_unless_hot(frame: bytes::Bytes) -> bytes::Bytes {
    const PRODUCE: i16 = 0;
    const FETCH: i16 = 1;
    let api_key = frame.get(..2).map(|k| i16::from_be_bytes([k[0], k[1]]));
    match api_key {
        Some(PRODUCE | FETCH) => frame,
        _ => bytes::Bytes::copy_from_slice(&frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_produce_and_fetch_frames_stay_where_they_arrived() {
        let block = bytes::Bytes::from(vec![0u8, 0, 0, 1, 0, 1, 0, 3, 0, 9, 0, 2, 0, 0]);
        let frame = |at: usize| block.slice(at..at + 4);
        for (at, kept) in [(0, true), (2, true), (6, false), (8, false), (10, false)] {
            let f = frame(at);
            let out = own_unless_hot(f.clone());
            assert_eq!(out, f);
            assert_eq!(out.as_ptr() == f.as_ptr(), kept, "api key at {at}");
        }
        assert!(own_unless_hot(bytes::Bytes::from_static(b"\x00")).len() == 1);
    }
}
