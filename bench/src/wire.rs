//! The driver's network edge: sockets, request encoding into a reused buffer, response frames,
//! and the in-flight window that lets a connection pipeline requests.
//!
//! Framing and header checks are the project's own (`gregor::client::frame`); this module adds
//! only what pipelining needs: encoding without a copy per request and a counting window
//! ([`Slots`]) shared by a connection's writer and its reader thread.

use std::io::Read;
use std::net::TcpStream;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use gregor::client::frame;
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};

/// Client id the driver sends on data connections.
pub const CLIENT_ID: &str = "gregor-bench";

/// Opens a data connection: Nagle off (requests must leave at once), large socket buffers are
/// left to the kernel's autotuning.
pub fn connect(addr: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(stream)
}

/// Encodes `size | header | body` of one request into `buf` (cleared first).
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    req: &R,
    version: i16,
    correlation_id: i32,
) -> Result<()> {
    let api = frame::api_key_of::<R>()?;
    buf.clear();
    buf.extend_from_slice(&[0u8; 4]);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
        .encode(buf, api.request_header_version(version))
        .with_context(|| format!("encode {api:?} v{version} header"))?;
    req.encode(buf, version)
        .with_context(|| format!("encode {api:?} v{version}"))?;
    let size = i32::try_from(buf.len() - 4).context("request larger than 2 GiB")?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Reads one response frame (its body, header still on).
pub fn read_frame(stream: &mut impl Read) -> Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).context("read response size")?;
    let len = frame::body_len(size)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).context("read response body")?;
    Ok(Bytes::from(body))
}

/// As [`read_frame`], into `buf`'s memory: once the previous frame read through `buf` is
/// dropped, the next reuses its allocation instead of faulting in and zeroing fresh pages (the
/// consumer's multi-megabyte fetch responses).
pub fn read_frame_reusing(stream: &mut impl Read, buf: &mut BytesMut) -> Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).context("read response size")?;
    let len = frame::body_len(size)?;
    buf.clear();
    buf.resize(len, 0);
    stream
        .read_exact(&mut buf[..])
        .context("read response body")?;
    Ok(buf.split().freeze())
}

/// Checks the header of a response to request type `R` and decodes its body.
pub fn decode_response<R: Request>(
    version: i16,
    frame_body: Bytes,
    correlation_id: i32,
) -> Result<R::Response> {
    let api = frame::api_key_of::<R>()?;
    let body = frame::strip_response_header(api, version, frame_body, correlation_id)?;
    Ok(frame::decode_body::<R>(version, body)?)
}

/// A connection's window of unanswered requests: the writer takes a slot per request, the
/// reader gives it back per response. A failed reader closes the window so the writer stops
/// instead of waiting forever.
#[derive(Debug)]
pub struct Slots {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Debug)]
struct SlotState {
    free: usize,
    capacity: usize,
    failure: Option<String>,
}

impl Slots {
    pub fn new(capacity: usize) -> Slots {
        Slots {
            state: Mutex::new(SlotState {
                free: capacity,
                capacity,
                failure: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot if one is free.
    pub fn try_acquire(&self) -> Result<bool> {
        let mut s = self.lock();
        if let Some(f) = &s.failure {
            bail!("connection failed: {f}");
        }
        if s.free == 0 {
            return Ok(false);
        }
        s.free -= 1;
        Ok(true)
    }

    /// Waits up to `timeout` for a slot to be given back (or the window to close).
    pub fn wait(&self, timeout: Duration) {
        let s = self.lock();
        if s.free == 0 && s.failure.is_none() {
            let _unused = self.changed.wait_timeout(s, timeout);
        }
    }

    /// Whether a slot is taken (an answer is due, which will give it back).
    pub fn busy(&self) -> bool {
        let s = self.lock();
        s.free < s.capacity
    }

    /// Waits up to `timeout` for the next slot to be given back, however many are free.
    pub fn wait_release(&self, timeout: Duration) {
        let s = self.lock();
        if s.failure.is_none() {
            let _unused = self.changed.wait_timeout(s, timeout);
        }
    }

    pub fn release(&self) {
        let mut s = self.lock();
        assert!(
            s.free < s.capacity,
            "slot released with all {} free",
            s.capacity
        );
        s.free += 1;
        self.changed.notify_all();
    }

    /// Marks the connection failed; wakes the writer.
    pub fn fail(&self, why: String) {
        self.lock().failure = Some(why);
        self.changed.notify_all();
    }

    /// Waits until every slot is back, the window failed, or `timeout` passed.
    pub fn wait_idle(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let mut s = self.lock();
        while s.free < s.capacity && s.failure.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                bail!("{} requests still unanswered", s.capacity - s.free);
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        match &s.failure {
            Some(f) => bail!("connection failed: {f}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn window_hands_out_at_most_capacity() {
        let s = Slots::new(2);
        assert!(s.try_acquire().unwrap());
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap());
        s.release();
        assert!(s.try_acquire().unwrap());
        assert!(s.wait_idle(Duration::from_millis(10)).is_err());
        s.release();
        s.release();
        s.wait_idle(Duration::from_millis(10)).unwrap();
        s.fail("reset".into());
        assert!(s.try_acquire().is_err());
    }

    #[test]
    fn encoded_request_matches_the_client_framing() {
        let req = MetadataRequest::default().with_topics(None);
        let mut buf = BytesMut::new();
        encode_request(&mut buf, &req, 12, 9).unwrap();
        let theirs = frame::encode_request(&req, 12, 9, CLIENT_ID).unwrap();
        assert_eq!(&buf[..], &theirs[..]);
        let mut body = Bytes::copy_from_slice(&buf[4..]);
        let header = RequestHeader::decode(&mut body, 2).unwrap();
        assert_eq!(header.correlation_id, 9);
    }
}
