//! One Kafka connection from this broker to another, on the shard's reactor: a request at a
//! time, encoded and decoded with the kafka-protocol codecs. What followers fetch with, and
//! what carries transaction markers and verifications. It speaks the inter-broker listener's
//! security protocol: TLS (rustls) and SASL as `ClientSecurity::inter_broker` describes.

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};

use crate::client::security::SaslLogin;
use crate::client::ClientSecurity;
use crate::metadata::raft::transport::within;
use crate::shard::Shard;

/// This node's inter-broker client settings, built once per shard from the config (checked
/// at start-up, so building them again cannot fail).
#[derive(Default)]
struct InterBroker(OnceCell<Rc<ClientSecurity>>);

pub fn inter_broker_security(shard: &Shard) -> Rc<ClientSecurity> {
    shard
        .service::<InterBroker>()
        .0
        .get_or_init(|| {
            Rc::new(
                ClientSecurity::inter_broker(&shard.config).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "inter-broker security settings");
                    ClientSecurity::plaintext()
                }),
            )
        })
        .clone()
}

/// The connection's bytes: TCP, or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.read_exact(buf).await,
            Stream::Tls(s) => s.read_exact(buf).await,
        }
    }
}

/// A response larger than this closes the link (the fetch size settings are far below it).
const RESPONSE_BYTES_MAX: usize = 256 << 20;

pub struct Link {
    stream: Stream,
    next_correlation_id: i32,
    client_id: StrBytes,
}

fn io_err(why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

impl Link {
    /// Connects to another broker's inter-broker listener as this shard's settings say.
    pub async fn to_broker(
        shard: &Shard,
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> std::io::Result<Link> {
        Link::connect(addr, client_id, timeout, &inter_broker_security(shard)).await
    }

    /// Connects to `addr`, then runs the TLS handshake and the SASL exchange `security` asks
    /// for, all within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &ClientSecurity,
    ) -> std::io::Result<Link> {
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let started = std::time::Instant::now();
        let tcp = within(timeout, TcpStream::connect(addr))
            .await
            .ok_or_else(timed_out)?
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream = match &security.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = crate::client::security::server_name(addr).map_err(io_err)?;
                let connector = futures_rustls::TlsConnector::from(config.clone());
                let left = timeout.saturating_sub(started.elapsed());
                let tls = within(left, connector.connect(name, tcp))
                    .await
                    .ok_or_else(timed_out)??;
                Stream::Tls(Box::new(tls))
            }
        };
        let mut link = Link {
            stream,
            next_correlation_id: 1,
            client_id: StrBytes::from_string(client_id.to_string()),
        };
        if let Some(login) = &security.sasl {
            let left = timeout.saturating_sub(started.elapsed());
            within(left, link.authenticate(login))
                .await
                .ok_or_else(timed_out)??;
        }
        Ok(link)
    }

    /// SaslHandshake, then SaslAuthenticate until the exchange is complete.
    async fn authenticate(&mut self, login: &SaslLogin) -> std::io::Result<()> {
        let mechanism = StrBytes::from_string(login.mechanism.clone());
        let h = self
            .request(
                &SaslHandshakeRequest::default().with_mechanism(mechanism),
                1,
            )
            .await?;
        if h.error_code != 0 {
            return Err(io_err(format!(
                "SaslHandshake {}: error {} (broker offers {:?})",
                login.mechanism, h.error_code, h.mechanisms
            )));
        }
        let (mut exchange, mut token) = login.start();
        loop {
            let r = self
                .request(
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                    1,
                )
                .await?;
            if r.error_code != 0 {
                return Err(io_err(format!(
                    "SASL {} as {}: error {} {}",
                    login.mechanism,
                    login.username,
                    r.error_code,
                    r.error_message.as_deref().unwrap_or("")
                )));
            }
            match exchange.next(&r.auth_bytes).map_err(io_err)? {
                Some(next) => token = next,
                None => return Ok(()),
            }
        }
    }

    /// Sends `req` at `version` and reads its response.
    pub async fn request<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> std::io::Result<R::Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 0]);
        encode_request_header_into_buffer(&mut buf, &header).map_err(io_err)?;
        req.encode(&mut buf, version).map_err(io_err)?;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await?;
        let size = u32::from_be_bytes(size) as usize;
        if size > RESPONSE_BYTES_MAX {
            return Err(io_err(format!("response of {size} bytes")));
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let hv = <R::Response as HeaderVersion>::header_version(version);
        let rh = ResponseHeader::decode(&mut body, hv).map_err(io_err)?;
        if rh.correlation_id != correlation_id {
            return Err(io_err(format!(
                "correlation id {} for request {correlation_id}",
                rh.correlation_id
            )));
        }
        <R::Response as Decodable>::decode(&mut body, version).map_err(io_err)
    }
}
