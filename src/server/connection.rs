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

use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::FutureExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use super::framing::{set_nonblocking, write_chunks, FrameReader};
use super::limits::{self, Activity, Admission};
use super::Outcome;
use crate::metrics::{self, Phase};
use crate::protocol::{self, ProtocolError};
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

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, admission: Admission) {
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    let client_host = peer_addr
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    if let Err(e) = set_nonblocking(fd) {
        tracing::warn!(%peer, error = %e, "cannot make the socket non-blocking; closing");
        return;
    }
    metrics::count(|c| c.connections_opened += 1);
    let (reader, writer) = stream.split();
    let activity = Activity::new();
    let rules = limits::Rules::new(&shard.config.connections);
    let watchdog = glommio::spawn_local(limits::watch(fd, activity.clone(), rules, peer.clone()));
    let (tx, rx) = local_channel::new_bounded::<InFlight>(IN_FLIGHT_MAX);
    let writer_task = glommio::spawn_local(write_responses(
        writer,
        fd,
        rx,
        peer.clone(),
        activity.clone(),
    ));
    if let Err(why) = read_requests(&shard, reader, &tx, &client_host, &activity).await {
        // The writer logs the close when it reaches it, after the responses before it.
        let _ = tx.send(InFlight::untimed(Outcome::Close(why))).await;
    }
    drop(tx);
    writer_task.await;
    metrics::count(|c| c.connections_closed += 1);
    drop(watchdog);
    drop(admission);
}

/// Reads frames until EOF or a protocol error; returns why it stopped if it was an error.
async fn read_requests(
    shard: &Rc<Shard>,
    reader: futures::io::ReadHalf<TcpStream>,
    tx: &local_channel::LocalSender<InFlight>,
    client_host: &str,
    activity: &Activity,
) -> Result<(), String> {
    let mut frames = FrameReader::new(reader, shard.config.socket_request_max_bytes);
    let share = shard.request_share();
    while let Some(frame) = frames.next_frame().await.map_err(|e| e.to_string())? {
        let read_at = Instant::now();
        activity.read();
        let task = match protocol::parse_request(frame.clone()) {
            Ok(mut req) => {
                req.client_host = client_host.to_string();
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

async fn write_responses(
    mut writer: futures::io::WriteHalf<TcpStream>,
    fd: RawFd,
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
                    let _ = write_chunks(&mut writer, fd, &mut ready, &activity.send).await;
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
        if let Err(e) = write_chunks(&mut writer, fd, &mut ready, &activity.send).await {
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
