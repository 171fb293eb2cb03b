//! Client framing against a fake in-process broker on 127.0.0.1 that answers with canned
//! responses encoded by kafka-protocol.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};

use super::{Client, ClientError};

/// How the fake broker answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// ApiVersions 0..=3 and Metadata 0..=12.
    Modern,
    /// Only ApiVersions 0..=2: a v3 request gets UNSUPPORTED_VERSION in a v0 body.
    OldApiVersions,
    /// Answers Metadata with the wrong correlation id.
    WrongCorrelation,
}

fn read_request(stream: &mut TcpStream) -> Option<(RequestHeader, Bytes)> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    let mut body = Bytes::from(body);
    let header = decode_request_header_from_buffer(&mut body).ok()?;
    Some((header, body))
}

fn write_response<M: Encodable>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    stream.write_all(&(buf.len() as i32).to_be_bytes()).unwrap();
    stream.write_all(&buf).unwrap();
}

fn api_versions(max_api_versions: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(vec![
        ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(0)
            .with_max_version(max_api_versions),
        ApiVersion::default()
            .with_api_key(ApiKey::Metadata as i16)
            .with_min_version(0)
            .with_max_version(12),
    ])
}

fn metadata() -> MetadataResponse {
    let partition = MetadataResponsePartition::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(1))
        .with_replica_nodes(vec![BrokerId(1)])
        .with_isr_nodes(vec![BrokerId(1)]);
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(9092)])
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(vec![partition])])
}

/// Serves one connection; returns the (api key, version) of every request it saw.
fn serve(listener: TcpListener, behaviour: Behaviour) -> JoinHandle<Vec<(i16, i16)>> {
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        while let Some((h, _body)) = read_request(&mut stream) {
            seen.push((h.request_api_key, h.request_api_version));
            let v = h.request_api_version;
            let id = h.correlation_id;
            match (ApiKey::try_from(h.request_api_key).unwrap(), behaviour) {
                (ApiKey::ApiVersions, Behaviour::OldApiVersions) if v > 2 => {
                    let resp = api_versions(2).with_error_code(35);
                    write_response(&mut stream, ApiKey::ApiVersions, 0, id, &resp);
                }
                (ApiKey::ApiVersions, Behaviour::OldApiVersions) => {
                    write_response(&mut stream, ApiKey::ApiVersions, v, id, &api_versions(2));
                }
                (ApiKey::ApiVersions, _) => {
                    write_response(&mut stream, ApiKey::ApiVersions, v, id, &api_versions(3));
                }
                (ApiKey::Metadata, Behaviour::WrongCorrelation) => {
                    write_response(&mut stream, ApiKey::Metadata, v, id + 100, &metadata());
                }
                (ApiKey::Metadata, _) => {
                    write_response(&mut stream, ApiKey::Metadata, v, id, &metadata());
                }
                (other, _) => panic!("fake broker got unexpected {other:?}"),
            }
        }
        seen
    })
}

fn start(behaviour: Behaviour) -> (String, JoinHandle<Vec<(i16, i16)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (addr, serve(listener, behaviour))
}

#[test]
fn negotiates_versions_and_round_trips_metadata() {
    let (addr, server) = start(Behaviour::Modern);
    let mut client = Client::connect(&addr, "test").unwrap();
    assert_eq!(client.version_for(ApiKey::Metadata).unwrap(), 12);
    assert!(matches!(
        client.version_for(ApiKey::Produce),
        Err(ClientError::ApiNotOffered { .. })
    ));
    let topic = client.topic_metadata("t").unwrap();
    assert_eq!(topic.partitions.len(), 1);
    assert_eq!(topic.partitions[0].leader_id, BrokerId(1));
    // The generic path works for any request type too.
    let resp = client
        .send(&MetadataRequest::default().with_topics(None))
        .unwrap();
    assert_eq!(resp.brokers.len(), 1);
    drop(client);
    let seen = server.join().unwrap();
    assert_eq!(
        seen,
        vec![
            (ApiKey::ApiVersions as i16, 3),
            (ApiKey::Metadata as i16, 12),
            (ApiKey::Metadata as i16, 12)
        ]
    );
}

#[test]
fn falls_back_when_api_versions_v3_is_unsupported() {
    let (addr, server) = start(Behaviour::OldApiVersions);
    let client = Client::connect(&addr, "test").unwrap();
    assert_eq!(client.version_for(ApiKey::Metadata).unwrap(), 12);
    drop(client);
    let seen = server.join().unwrap();
    assert_eq!(
        seen,
        vec![
            (ApiKey::ApiVersions as i16, 3),
            (ApiKey::ApiVersions as i16, 2)
        ]
    );
}

#[test]
fn wrong_correlation_id_is_rejected() {
    let (addr, server) = start(Behaviour::WrongCorrelation);
    let mut client = Client::connect(&addr, "test").unwrap();
    let err = client.metadata(None).unwrap_err();
    assert!(
        matches!(err, ClientError::CorrelationMismatch { .. }),
        "{err}"
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn connect_to_closed_port_fails_cleanly() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    assert!(matches!(
        Client::connect(&addr, "test"),
        Err(ClientError::Connect { .. })
    ));
}

#[test]
fn api_versions_response_decodes_at_every_version() {
    // The canned response the fake broker sends must itself round-trip at v0..=3.
    for v in 0..=3 {
        let mut buf = BytesMut::new();
        api_versions(3).encode(&mut buf, v).unwrap();
        let back = ApiVersionsResponse::decode(&mut buf.freeze(), v).unwrap();
        assert_eq!(back.api_keys.len(), 2);
    }
}
