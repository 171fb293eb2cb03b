//! A small blocking Kafka protocol client used by the client tools and the bench driver.
//!
//! One [`Client`] owns one TCP connection and sends one request at a time (no pipelining), so a
//! response always answers the request just sent; the correlation id is still checked. Every
//! codec is kafka-protocol's. On connect the client sends ApiVersions and from then on uses, per
//! API, the highest version both sides support ([`versions`]).
//!
//! - [`frame`]: request/response framing, no I/O.
//! - [`ops`]: convenience calls (metadata, topics, produce, fetch, list offsets) that turn
//!   per-topic/partition error codes into [`ClientError::Kafka`].
//! - [`groups`]: consumer group calls (coordinator, describe, list, delete, offsets).
//! - [`batch`]: RecordBatch v2 building and reading on top of kafka-protocol's codec.
//! - [`partitioner`]: Kafka's default key partitioner (murmur2).

pub mod batch;
pub mod error;
pub mod frame;
pub mod groups;
pub mod ops;
pub mod partitioner;
pub mod security;
pub mod transactions;
pub mod versions;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};

pub use error::{error_name, ClientError};
pub use security::ClientSecurity;
pub use versions::BrokerVersions;

/// How long a blocking read may wait for a response before the call fails.
pub const READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// ApiVersions answers UNSUPPORTED_VERSION with a v0 body listing what it does support.
const UNSUPPORTED_VERSION: i16 = 35;

/// A connection's byte stream: TCP, or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One blocking connection to one broker.
pub struct Client {
    addr: String,
    stream: Stream,
    client_id: String,
    next_correlation_id: i32,
    versions: BrokerVersions,
}

impl Client {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub fn connect(addr: &str, client_id: &str) -> Result<Client, ClientError> {
        Client::connect_with(addr, client_id, &ClientSecurity::plaintext())
    }

    /// Connects to `addr` with TLS and SASL as `security` says, then negotiates API versions
    /// and authenticates (SaslHandshake v1, SaslAuthenticate).
    pub fn connect_with(
        addr: &str,
        client_id: &str,
        security: &ClientSecurity,
    ) -> Result<Client, ClientError> {
        let tcp = connect_stream(addr)?;
        let stream = match &security.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = security::server_name(addr).map_err(ClientError::Unexpected)?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| ClientError::Unexpected(format!("TLS to {addr}: {e}")))?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        };
        let mut client = Client {
            addr: addr.to_string(),
            stream,
            client_id: client_id.to_string(),
            next_correlation_id: 0,
            versions: BrokerVersions::default(),
        };
        client.versions = client.negotiate()?;
        if let Some(login) = &security.sasl {
            client.authenticate(login)?;
        }
        Ok(client)
    }

    /// SASL: the handshake names the mechanism, then the exchange runs over SaslAuthenticate.
    fn authenticate(&mut self, login: &security::SaslLogin) -> Result<(), ClientError> {
        let mechanism = StrBytes::from_string(login.mechanism.clone());
        let h = self.send_version(
            &SaslHandshakeRequest::default().with_mechanism(mechanism),
            1,
        )?;
        error::check_code(h.error_code, None, || {
            format!(
                "SaslHandshake {} (broker offers {:?})",
                login.mechanism, h.mechanisms
            )
        })?;
        let (mut exchange, mut token) = login.start();
        loop {
            let r = self.send_version(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                1,
            )?;
            error::check_code(r.error_code, r.error_message.as_deref(), || {
                format!(
                    "SASL {} authentication as {}",
                    login.mechanism, login.username
                )
            })?;
            match exchange.next(&r.auth_bytes) {
                Ok(Some(next)) => token = next,
                Ok(None) => break,
                Err(e) => {
                    return Err(ClientError::Unexpected(format!(
                        "{} exchange: {e}",
                        login.mechanism
                    )))
                }
            }
        }
        Ok(())
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's advertised API ranges.
    pub fn versions(&self) -> &BrokerVersions {
        &self.versions
    }

    /// The version this client uses for `api` with this broker.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, ClientError> {
        self.versions.pick(api)
    }

    /// Changes how long a read may block (long-poll fetches need more than their max wait).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.stream
            .tcp()
            .set_read_timeout(Some(timeout))
            .map_err(|source| self.io_err(source))
    }

    /// Sends `req` at the negotiated version and waits for its response.
    pub fn send<R: Request>(&mut self, req: &R) -> Result<R::Response, ClientError> {
        let version = self.version_for(frame::api_key_of::<R>()?)?;
        self.send_version(req, version)
    }

    /// Sends `req` at an explicit version and waits for its response.
    pub fn send_version<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let body = self.round_trip(req, version)?;
        frame::decode_body::<R>(version, body)
    }

    /// Sends `req` at the negotiated version without reading a response (Produce with acks=0,
    /// which the broker never answers).
    pub fn send_no_response<R: Request>(&mut self, req: &R) -> Result<(), ClientError> {
        let version = self.version_for(frame::api_key_of::<R>()?)?;
        let correlation_id = self.take_correlation_id();
        let bytes = frame::encode_request(req, version, correlation_id, &self.client_id)?;
        self.stream
            .write_all(&bytes)
            .map_err(|source| self.io_err(source))
    }

    /// Writes one request and reads the matching response body (header stripped).
    fn round_trip<R: Request>(&mut self, req: &R, version: i16) -> Result<Bytes, ClientError> {
        let api = frame::api_key_of::<R>()?;
        let correlation_id = self.take_correlation_id();
        let bytes = frame::encode_request(req, version, correlation_id, &self.client_id)?;
        self.stream
            .write_all(&bytes)
            .map_err(|source| self.io_err(source))?;
        let body = self.read_frame()?;
        frame::strip_response_header(api, version, body, correlation_id)
    }

    fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|source| self.io_err(source))?;
        let len = frame::body_len(size)?;
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .map_err(|source| self.io_err(source))?;
        Ok(Bytes::from(body))
    }

    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    fn io_err(&self, reason: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            reason,
        }
    }

    /// ApiVersions at our highest version; if the broker does not support it, it answers with
    /// a v0 body and we retry at the highest version it listed (Kafka's client does the same).
    fn negotiate(&mut self) -> Result<BrokerVersions, ClientError> {
        let (_, ours) = versions::client_range(ApiKey::ApiVersions);
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("gregor"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let body = self.round_trip(&req, ours)?;
        let resp = if frame::peek_error_code(&body) == Some(UNSUPPORTED_VERSION) {
            let v0 = decode_api_versions(body, 0)?;
            let theirs = v0
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .map_or(0, |k| k.max_version);
            let version = ours.min(theirs);
            let body = self.round_trip(&req, version)?;
            decode_api_versions(body, version)?
        } else {
            decode_api_versions(body, ours)?
        };
        error::check_code(resp.error_code, None, || "ApiVersions".to_string())?;
        Ok(BrokerVersions::new(
            resp.api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        ))
    }
}

fn decode_api_versions(mut body: Bytes, version: i16) -> Result<ApiVersionsResponse, ClientError> {
    ApiVersionsResponse::decode(&mut body, version).map_err(|e| ClientError::Decode {
        api: ApiKey::ApiVersions,
        version,
        message: e.to_string(),
    })
}

fn connect_stream(addr: &str) -> Result<TcpStream, ClientError> {
    let connect_err = |reason| ClientError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let mut last_err = None;
    for sock in addr.to_socket_addrs().map_err(connect_err)? {
        match TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT) {
            Ok(stream) => {
                // Requests are small and answered one at a time; Nagle would only add latency.
                stream.set_nodelay(true).map_err(connect_err)?;
                stream
                    .set_read_timeout(Some(READ_TIMEOUT_DEFAULT))
                    .map_err(connect_err)?;
                return Ok(stream);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(connect_err(last_err.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address resolved to nothing")
    })))
}

#[cfg(test)]
mod tests;
