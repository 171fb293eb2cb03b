//! Kafka request/response framing, free of I/O: a request becomes one size-prefixed frame, and
//! a response frame body is checked against the correlation id it answers before it is decoded.
//!
//! Header versions come from kafka-protocol's `ApiKey::{request,response}_header_version`, so a
//! flexible (tagged-field) header is used exactly when the API version calls for it.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use super::error::ClientError;

/// Largest response frame we accept; a larger size prefix means a broken stream, not data.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// The API key of a request type.
pub fn api_key_of<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY).map_err(|()| ClientError::UnknownApiKey { key: R::KEY })
}

/// Encodes `size | header | body` for one request.
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Vec<u8>, ClientError> {
    let api = api_key_of::<R>()?;
    let encode_err = |e: anyhow::Error| ClientError::Encode {
        api,
        version,
        message: e.to_string(),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0u8; 4]); // size, filled below
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(encode_err)?;
    req.encode(&mut buf, version).map_err(encode_err)?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| ClientError::FrameSize {
        size: buf.len() as i64,
        max: i32::MAX as usize,
    })?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.to_vec())
}

/// Checks the size prefix of a response frame and returns the body length.
pub fn body_len(size_prefix: [u8; 4]) -> Result<usize, ClientError> {
    let size = i32::from_be_bytes(size_prefix);
    if size < 0 || size as usize > RESPONSE_BYTES_MAX {
        return Err(ClientError::FrameSize {
            size: size as i64,
            max: RESPONSE_BYTES_MAX,
        });
    }
    Ok(size as usize)
}

/// Strips the response header from a frame body after checking its correlation id; returns the
/// response body still to be decoded.
pub fn strip_response_header(
    api: ApiKey,
    version: i16,
    mut frame: Bytes,
    correlation_id: i32,
) -> Result<Bytes, ClientError> {
    let header =
        ResponseHeader::decode(&mut frame, api.response_header_version(version)).map_err(|e| {
            ClientError::Decode {
                api,
                version,
                message: format!("header: {e}"),
            }
        })?;
    if header.correlation_id != correlation_id {
        return Err(ClientError::CorrelationMismatch {
            sent: correlation_id,
            got: header.correlation_id,
        });
    }
    Ok(frame)
}

/// Decodes a response body of request type `R`.
pub fn decode_body<R: Request>(version: i16, mut body: Bytes) -> Result<R::Response, ClientError> {
    let api = api_key_of::<R>()?;
    R::Response::decode(&mut body, version).map_err(|e| ClientError::Decode {
        api,
        version,
        message: e.to_string(),
    })
}

/// The leading error code of a response body whose first field is one (ApiVersions).
pub fn peek_error_code(body: &Bytes) -> Option<i16> {
    (body.len() >= 2).then(|| body.clone().get_i16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn request_frame_has_size_prefix_and_header() {
        let req = MetadataRequest::default().with_topics(None);
        let frame = encode_request(&req, 12, 7, "cli").unwrap();
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(size as usize, frame.len() - 4);
        let mut body = Bytes::copy_from_slice(&frame[4..]);
        let header = RequestHeader::decode(&mut body, 2).unwrap();
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.request_api_version, 12);
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("cli"));
        let decoded = MetadataRequest::decode(&mut body, 12).unwrap();
        assert_eq!(decoded, req);
    }

    #[test]
    fn bad_size_prefixes_are_rejected() {
        assert!(body_len((-1i32).to_be_bytes()).is_err());
        assert!(body_len(((RESPONSE_BYTES_MAX + 1) as i32).to_be_bytes()).is_err());
        assert_eq!(body_len(10i32.to_be_bytes()).unwrap(), 10);
    }

    #[test]
    fn correlation_mismatch_is_an_error() {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(5)
            .encode(&mut buf, 0)
            .unwrap();
        let r = strip_response_header(ApiKey::ApiVersions, 3, buf.freeze(), 6);
        assert!(matches!(
            r,
            Err(ClientError::CorrelationMismatch { sent: 6, got: 5 })
        ));
    }
}
