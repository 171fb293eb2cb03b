//! The wire edge over the kafka-protocol crate: request headers, response framing, and the table
//! of API versions this broker implements (the single source of truth for ApiVersions).
//!
//! Nothing here trusts the peer: header parsing fails cleanly on short or unknown input, and the
//! caller closes the connection, as Kafka does.

use std::sync::{Arc, LazyLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

pub mod legacy_produce;

/// The APIs this broker implements and the versions of each it handles.
///
/// Produce is handled from v3 (Kafka 4 removed v0-v2, KIP-896) but advertised from v0: librdkafka
/// before 2.10 turns compression off when a broker's Produce minimum is above 0, so Kafka 4
/// advertises 0 and answers v0-v2 with UNSUPPORTED_VERSION (KAFKA-18659). We do the same.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
    (ApiKey::ReadShareGroupState, 0, 0),
    (ApiKey::WriteShareGroupState, 0, 0),
    (ApiKey::DeleteShareGroupState, 0, 0),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// The range a request of this key must fall in to be handled, if the key is implemented.
pub fn handled_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// The range written into ApiVersions responses.
fn advertised_versions(key: ApiKey, min: i16, max: i16) -> (i16, i16) {
    match key {
        ApiKey::Produce => (0, max),
        _ => (min, max),
    }
}

/// The ApiVersions response for a supported request version.
pub fn api_versions_response() -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            let (min, max) = advertised_versions(*key, *min, *max);
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys)
}

/// The answer to an ApiVersions request of a version we do not know: a v0 response carrying
/// UNSUPPORTED_VERSION and our ApiVersions range, so the client can retry with a version we
/// speak. Kafka sends exactly this (v0 body, v0 header) whatever version was asked.
pub fn api_versions_fallback(correlation_id: i32) -> Bytes {
    let (min, max) = handled_versions(ApiKey::ApiVersions).unwrap_or((0, 0));
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(min)
            .with_max_version(max)]);
    frame_response(correlation_id, 0, &body, 0).unwrap_or_else(|e| {
        panic!("encoding the fixed ApiVersions fallback cannot fail: {e}");
    })
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("request shorter than a header: {len} bytes")]
    Short { len: usize },
    #[error("unknown api key {key}")]
    UnknownApiKey { key: i16 },
    #[error("{key:?} version {version} is not supported")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("malformed {what}: {why}")]
    Malformed { what: String, why: String },
}

/// A parsed request header and the body bytes after it.
#[derive(Debug, Clone)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The peer as Kafka reports it to group tools (`/127.0.0.1`); set by the connection.
    pub client_host: String,
    /// The listener the request came in on (upper case), and who sent it (`User:alice`,
    /// `User:ANONYMOUS` when the listener does not authenticate); set by the connection.
    pub listener: Arc<str>,
    pub principal: Arc<str>,
    pub body: Bytes,
}

/// The principal of a connection that did not authenticate (Kafka's KafkaPrincipal.ANONYMOUS).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A request's listener and principal until its connection sets them, shared (no allocation
/// per request).
static UNSET: LazyLock<(Arc<str>, Arc<str>)> =
    LazyLock::new(|| (Arc::from("PLAINTEXT"), Arc::from(ANONYMOUS)));

/// Reads the fixed start of a header without trusting the rest.
pub fn peek_key_version(frame: &[u8]) -> Result<(i16, i16, i32), ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::Short { len: frame.len() });
    }
    let mut b = &frame[..8];
    Ok((b.get_i16(), b.get_i16(), b.get_i32()))
}

/// Splits a request frame into its header and body.
///
/// Produce v0-v2 parse too: they are advertised and must be answered (see `legacy_produce`).
/// Unknown keys and unsupported versions come back as errors before the rest of the header is
/// read, so the caller can answer ApiVersions with the fallback and close for anything else.
pub fn parse_request(mut frame: Bytes) -> Result<Request, ProtocolError> {
    let (key, version, _) = peek_key_version(&frame)?;
    let api_key = ApiKey::try_from(key).map_err(|_| ProtocolError::UnknownApiKey { key })?;
    let refused_produce = api_key == ApiKey::Produce && (0..3).contains(&version);
    match handled_versions(api_key) {
        Some((min, max)) if (min..=max).contains(&version) || refused_produce => {}
        _ => {
            return Err(ProtocolError::UnsupportedVersion {
                key: api_key,
                version,
            })
        }
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| {
        ProtocolError::Malformed {
            what: "request header".to_string(),
            why: e.to_string(),
        }
    })?;
    Ok(Request {
        api_key,
        api_version: version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        client_host: String::new(),
        listener: UNSET.0.clone(),
        principal: UNSET.1.clone(),
        body: frame,
    })
}

/// Decodes a request body of the version the header named.
///
/// Bytes after the fields of that version are ignored, as Kafka's request parser ignores them:
/// clients send fields of newer minor revisions (librdkafka 2.12+ does so in Metadata v12), and
/// refusing them would cut those clients off. A body too short for its fields is an error.
pub fn decode_body<T: Decodable>(req: &Request) -> Result<T, ProtocolError> {
    let mut body = req.body.clone();
    T::decode(&mut body, req.api_version).map_err(|e| ProtocolError::Malformed {
        what: format!("{:?} v{} body", req.api_key, req.api_version),
        why: e.to_string(),
    })
}

/// Encodes a size-prefixed response frame: length, correlation id, (tagged fields), body.
pub fn frame_response<T: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &T,
    version: i16,
) -> anyhow::Result<Bytes> {
    let size = body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(size + 9);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // no tagged fields in the response header
    }
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Encodes the response to `req` with the header version its API and version call for.
pub fn respond<T: Encodable>(req: &Request, body: &T) -> anyhow::Result<Bytes> {
    let header_version = req.api_key.response_header_version(req.api_version);
    frame_response(req.correlation_id, header_version, body, req.api_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;

    fn request_frame(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn every_supported_range_is_one_the_codec_speaks() {
        for (key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(
                valid.min <= *min && *max <= valid.max,
                "{key:?} {min}-{max} outside codec range {valid:?}"
            );
        }
    }

    #[test]
    fn parses_every_api_versions_version() {
        for v in 0..=4 {
            let frame = request_frame(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
            let req = parse_request(frame).unwrap();
            assert_eq!(req.correlation_id, 7);
            assert_eq!(req.client_id.as_deref(), Some("t"));
            let _: ApiVersionsRequest = decode_body(&req).unwrap();
        }
    }

    #[test]
    fn rejects_unknown_keys_versions_and_short_frames() {
        let mut raw = BytesMut::new();
        raw.put_i16(999);
        raw.put_i16(0);
        raw.put_i32(1);
        raw.put_i16(-1);
        assert_eq!(
            parse_request(raw.freeze()).unwrap_err(),
            ProtocolError::UnknownApiKey { key: 999 }
        );
        let frame = request_frame(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default());
        let mut bumped = BytesMut::from(&frame[..]);
        bumped[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            parse_request(bumped.freeze()),
            Err(ProtocolError::UnsupportedVersion { version: 99, .. })
        ));
        assert!(matches!(
            parse_request(Bytes::from_static(&[0, 18, 0])),
            Err(ProtocolError::Short { .. })
        ));
    }

    #[test]
    fn trailing_body_bytes_are_ignored_and_short_bodies_refused() {
        use kafka_protocol::messages::MetadataRequest;
        for version in [1, 9, 12] {
            let all = MetadataRequest::default().with_topics(None);
            let frame = request_frame(ApiKey::Metadata, version, &all);
            let mut longer = BytesMut::from(&frame[..]);
            longer.put_slice(&[0, 0, 0]);
            let req = parse_request(longer.freeze()).unwrap();
            let body: MetadataRequest = decode_body(&req).unwrap();
            assert!(body.topics.is_none(), "v{version}: all topics");
            let mut short = BytesMut::from(&frame[..]);
            short.truncate(short.len() - 2);
            let req = parse_request(short.freeze()).unwrap();
            assert!(decode_body::<MetadataRequest>(&req).is_err(), "v{version}");
        }
    }

    fn put_varint(buf: &mut BytesMut, mut v: u32) {
        while v >= 0x80 {
            buf.put_u8(v as u8 | 0x80);
            v >>= 7;
        }
        buf.put_u8(v as u8);
    }

    /// A tagged-field section of `n` empty fields with tags 0..n.
    fn tagged_fields(n: u32) -> BytesMut {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, n);
        for tag in 0..n {
            put_varint(&mut buf, tag);
            put_varint(&mut buf, 0);
        }
        buf
    }

    #[test]
    fn arrays_over_a_million_elements_are_refused() {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
        let body = |n: usize| {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_indexes(vec![0; n])]))
        };
        for (version, n, ok) in [
            (1, 1_000_000, true),
            (1, 1_000_001, false),
            (7, 1_000_000, true),
            (7, 1_000_001, false),
        ] {
            let req = parse_request(request_frame(ApiKey::OffsetFetch, version, &body(n))).unwrap();
            let got = decode_body::<OffsetFetchRequest>(&req);
            assert_eq!(
                got.is_ok(),
                ok,
                "v{version}, {n} partitions: {:?}",
                got.err()
            );
        }
        // A count larger than the bytes left is refused before anything is reserved.
        let frame = request_frame(ApiKey::OffsetFetch, 1, &body(3));
        let mut lying = BytesMut::from(&frame[..]);
        let at = lying.len() - 16;
        lying[at..at + 4].copy_from_slice(&900_000i32.to_be_bytes());
        let req = parse_request(lying.freeze()).unwrap();
        let e = decode_body::<OffsetFetchRequest>(&req).unwrap_err();
        assert!(e.to_string().contains("bytes remaining"), "{e}");
    }

    #[test]
    fn tagged_field_sections_over_ten_thousand_fields_are_refused() {
        // ApiVersions v3: a flexible header (v2) and a flexible body, each ending in a section.
        let frame = |header_fields: u32, body_fields: u32| {
            let mut buf = BytesMut::new();
            buf.put_i16(ApiKey::ApiVersions as i16);
            buf.put_i16(3);
            buf.put_i32(9);
            buf.put_i16(-1); // client id: null
            buf.put_slice(&tagged_fields(header_fields));
            buf.put_u8(2); // client software name "t"
            buf.put_u8(b't');
            buf.put_u8(2); // client software version "1"
            buf.put_u8(b'1');
            buf.put_slice(&tagged_fields(body_fields));
            buf.freeze()
        };
        let req = parse_request(frame(10_000, 10_000)).unwrap();
        let body: ApiVersionsRequest = decode_body(&req).unwrap();
        assert_eq!(body.unknown_tagged_fields.len(), 10_000);
        let req = parse_request(frame(0, 10_001)).unwrap();
        let e = decode_body::<ApiVersionsRequest>(&req).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        assert!(matches!(
            parse_request(frame(10_001, 0)),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn fallback_is_a_v0_api_versions_response() {
        let frame = api_versions_fallback(42);
        // length, correlation id, error code, array of one (key, min, max)
        let expect: &[u8] = &[
            0, 0, 0, 16, 0, 0, 0, 42, 0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4,
        ];
        assert_eq!(&frame[..], expect);
    }

    #[test]
    fn produce_is_advertised_from_zero() {
        let resp = api_versions_response();
        let produce = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
        assert_eq!(handled_versions(ApiKey::Produce), Some((3, 11)));
    }
}
