//! One Kafka connection from this broker to another, on the shard's reactor: a request at a
//! time, encoded and decoded with the kafka-protocol codecs. What followers fetch with.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};

use crate::metadata::raft::transport::within;

/// A response larger than this closes the link (the fetch size settings are far below it).
const RESPONSE_BYTES_MAX: usize = 256 << 20;

pub struct Link {
    stream: TcpStream,
    next_correlation_id: i32,
    client_id: StrBytes,
}

fn io_err(why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

impl Link {
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> std::io::Result<Link> {
        let stream = within(timeout, TcpStream::connect(addr))
            .await
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(Link {
            stream,
            next_correlation_id: 1,
            client_id: StrBytes::from_string(client_id.to_string()),
        })
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
