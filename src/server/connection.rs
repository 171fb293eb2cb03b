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

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::FutureExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use super::framing::{set_nonblocking, write_chunks, FrameReader};
use super::limits::{self, Activity, Admission};
use super::Outcome;
use crate::protocol::{self, ProtocolError};
use crate::shard::Shard;
use crate::storage::Chunk;

/// Requests in progress per connection before the reader waits.
pub const IN_FLIGHT_MAX: usize = 64;

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
    let (reader, writer) = stream.split();
    let activity = Activity::new();
    let rules = limits::Rules::new(&shard.config.connections);
    let watchdog = glommio::spawn_local(limits::watch(fd, activity.clone(), rules, peer.clone()));
    let (tx, rx) = local_channel::new_bounded::<glommio::Task<Outcome>>(IN_FLIGHT_MAX);
    let writer_task = glommio::spawn_local(write_responses(
        writer,
        fd,
        rx,
        peer.clone(),
        activity.clone(),
    ));
    if let Err(why) = read_requests(&shard, reader, &tx, &client_host, &activity).await {
        // The writer logs the close when it reaches it, after the responses before it.
        let close = glommio::spawn_local(async move { Outcome::Close(why) });
        let _ = tx.send(close).await;
    }
    drop(tx);
    writer_task.await;
    drop(watchdog);
    drop(admission);
}

/// Reads frames until EOF or a protocol error; returns why it stopped if it was an error.
async fn read_requests(
    shard: &Rc<Shard>,
    reader: futures::io::ReadHalf<TcpStream>,
    tx: &local_channel::LocalSender<glommio::Task<Outcome>>,
    client_host: &str,
    activity: &Activity,
) -> Result<(), String> {
    let mut frames = FrameReader::new(reader, shard.config.socket_request_max_bytes);
    let share = shard.request_share();
    while let Some(frame) = frames.next_frame().await.map_err(|e| e.to_string())? {
        activity.read();
        let task = match protocol::parse_request(frame.clone()) {
            Ok(mut req) => {
                req.client_host = client_host.to_string();
                // A request larger than the whole share still goes, alone.
                let cost = (frame.len() as u64).clamp(1, share);
                let held = shard
                    .request_bytes
                    .acquire_static_permit(cost)
                    .await
                    .map_err(|e| e.to_string())?;
                let handling = super::dispatch(shard, req);
                glommio::spawn_local(async move {
                    let outcome = handling.await;
                    drop(held);
                    outcome
                })
            }
            Err(e) => {
                let outcome = answer_unparsed(e, &frame);
                let close = matches!(outcome, Outcome::Close(_));
                let t = glommio::spawn_local(async move { outcome });
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
    rx: local_channel::LocalReceiver<glommio::Task<Outcome>>,
    peer: String,
    activity: Rc<Activity>,
) {
    let mut ready: Vec<Chunk> = Vec::new();
    let mut next = None;
    'conn: loop {
        let task = match next.take() {
            Some(t) => t,
            None => match rx.recv().await {
                Some(t) => t,
                None => break,
            },
        };
        let mut outcome = task.await;
        // Take every response that is already done, so they leave in one write.
        loop {
            match outcome {
                Outcome::Reply(frame) => ready.push(Chunk::Mem(frame)),
                Outcome::Chunks(chunks) => ready.extend(chunks),
                Outcome::NoReply => {}
                Outcome::Close(why) => {
                    tracing::info!(%peer, %why, "closing connection");
                    let _ = write_chunks(&mut writer, fd, &mut ready, &activity.send).await;
                    break 'conn;
                }
            }
            let Some(Some(mut t)) = rx.recv().now_or_never() else {
                break;
            };
            match (&mut t).now_or_never() {
                Some(o) => outcome = o,
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
    }
    let _ = writer.close().await;
    // The socket closes when `writer` drops, just below: the watchdog must not use it after.
    activity.open.set(false);
}
