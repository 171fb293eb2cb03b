//! Fuzz targets over public decoders: requests as the server parses them, RecordBatch checks
//! and record walks, `__consumer_offsets` and `__transaction_state` records, producer
//! snapshots, transaction indexes and transaction markers.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::Compression;

use super::requests::{request_corpus, versions};
use super::run;
use crate::client::batch::{decode_batch, encode_batch, ProducerRecord};
use crate::protocol::{self, legacy_produce, parse_request, SUPPORTED};
use crate::record::{self, Scan};

/// What the server does with a request frame: header, then the body of its key and version
/// (Produce v0-v2 through the legacy refusal). A decoded body also re-encodes and decodes
/// again without panicking.
fn check_request(b: &[u8]) {
    let _ = protocol::peek_key_version(b);
    let Ok(req) = parse_request(Bytes::copy_from_slice(b)) else {
        return;
    };
    assert!(protocol::handled_versions(req.api_key).is_some());
    if req.api_key == ApiKey::Produce && req.api_version < 3 {
        let _ = legacy_produce::refuse(req.correlation_id, req.api_version, req.body.clone());
        return;
    }
    crate::with_body_type!(req.api_key, check_body(&req), ());
}

/// The body decoded as the server decodes it; if that succeeds, it encodes and the encoding
/// decodes, neither panicking. The values are not compared: the crate writes some decoded
/// values (overlong varints, unknown tagged fields, records read from the wire) in a form that
/// decodes to a different value or not at all, and the broker never re-encodes a request.
fn check_body<T: Decodable + Encodable>(req: &protocol::Request) {
    let Ok(decoded) = protocol::decode_body::<T>(req) else {
        return;
    };
    let mut again = BytesMut::new();
    if decoded.encode(&mut again, req.api_version).is_ok() {
        let _ = T::decode(&mut again.freeze(), req.api_version);
    }
}

#[test]
fn fuzz_request_decoding() {
    let corpus = request_corpus();
    // Every key the broker serves at every version has a valid frame in the corpus.
    for &(key, min, max) in SUPPORTED {
        for version in versions(key, min, max) {
            assert!(
                corpus.iter().any(|f| protocol::peek_key_version(f)
                    .is_ok_and(|(k, v, _)| k == key as i16 && v == version)),
                "{key:?} v{version} has no corpus frame"
            );
        }
    }
    for f in &corpus {
        check_request(f);
    }
    run("request_decoding", 300_000, &corpus, check_request);
}

fn batch_corpus() -> Vec<Vec<u8>> {
    let mut corpus = vec![
        record::tests::make_batch(0, 1, 1000),
        record::tests::make_batch(5, 3, 1000),
    ];
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let records: Vec<ProducerRecord> = (0..4)
            .map(|i| ProducerRecord {
                key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
                value: (i != 3).then(|| Bytes::from(vec![b'v'; 20 + i])),
                headers: vec![],
            })
            .collect();
        corpus.push(
            encode_batch(&records, 1_700_000_000_000, codec)
                .unwrap()
                .to_vec(),
        );
    }
    corpus.push(crate::producer::marker::build(
        42,
        3,
        crate::producer::marker::Marker {
            commit: true,
            coordinator_epoch: 7,
        },
        1000,
    ));
    corpus
}

/// With a recomputed CRC, if the input is long enough to hold one.
fn with_crc(b: &[u8]) -> Option<Vec<u8>> {
    (b.len() >= record::HEADER_BYTES).then(|| {
        let mut v = b.to_vec();
        let crc = record::compute_crc(&v);
        v[17..21].copy_from_slice(&crc.to_be_bytes());
        v
    })
}

fn check_batch_once(b: &[u8]) {
    let parsed = record::BatchHeader::parse(b);
    if let Ok(h) = record::validate(b) {
        assert_eq!(h.total_bytes(), b.len(), "a valid batch fills its bytes");
        assert_eq!(Ok(h), parsed);
        assert!(h.record_count >= 0 && h.last_offset_delta >= 0 && h.compression() <= 4);
        let _ = crate::producer::marker::parse(b);
        let _ = decode_batch(Bytes::copy_from_slice(b));
        if let Ok(section) =
            crate::compression::decompress(h.compression(), &b[record::HEADER_BYTES..])
        {
            let _ = crate::storage::compact::records(&section, h.base_offset);
        }
    }
    if let Ok(h) = record::validate_produced(b) {
        assert_eq!(h.last_offset_delta, h.record_count - 1);
    }
    match record::scan(b) {
        Scan::Batch(h) => {
            assert!(h.total_bytes() <= b.len());
            assert!(record::validate(&b[..h.total_bytes()]).is_ok());
        }
        Scan::Incomplete { needed } => assert!(needed > b.len()),
        Scan::End | Scan::Corrupt(_) => {}
    }
}

fn check_batch(b: &[u8]) {
    check_batch_once(b);
    if let Some(fixed) = with_crc(b) {
        check_batch_once(&fixed);
    }
}

/// Found by `fuzz_record_batches`: a batch with a correct CRC whose record count says
/// i32::MAX made the crate's record decoder reserve that many records up front (about 140 GB)
/// and the allocation failure aborted the process. A produced batch with max timestamp -1 is
/// decoded this way (to find its max timestamp), so one request could kill the broker.
#[test]
fn a_batch_claiming_two_billion_records_fails_to_decode() {
    let mut b = encode_batch(
        &[ProducerRecord {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        }],
        1000,
        Compression::None,
    )
    .unwrap()
    .to_vec();
    b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes()); // last offset delta
    b[35..43].copy_from_slice(&(-1i64).to_be_bytes()); // max timestamp
    b[57..61].copy_from_slice(&i32::MAX.to_be_bytes()); // record count
    let crc = record::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(record::validate_produced(&b).is_ok());
    assert!(decode_batch(Bytes::from(b.clone())).is_err());
    check_batch(&b);
}

#[test]
fn fuzz_record_batches() {
    let corpus = batch_corpus();
    for b in &corpus {
        assert!(record::validate(b).is_ok());
    }
    run("record_batches", 100_000, &corpus, check_batch);
}

fn group_corpus() -> Vec<Vec<u8>> {
    use crate::group::store;
    // Key and value in one input: a 2-byte key length, the key, then the value.
    let join = |k: Bytes, v: Option<Bytes>| {
        let mut b = (k.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(&k);
        if let Some(v) = v {
            b.extend_from_slice(&v);
        }
        b
    };
    let offset = store::CommittedOffset {
        offset: 42,
        leader_epoch: 3,
        metadata: "meta".to_string(),
        commit_ms: 1_700_000_000_000,
    };
    let mut corpus = vec![
        join(
            store::offset_key("group", "orders", 2),
            Some(store::offset_value(&offset)),
        ),
        join(store::offset_key("g", "t", 0), None),
        join(store::group_key("group"), None),
    ];
    // The consumer group (KIP-848) records, keys 3 to 8.
    for r in crate::group::consumer::records::tests::samples() {
        let (k, v) = crate::group::consumer::records::encode("group", &r);
        corpus.push(join(k, v));
    }
    // A share-partition's state (KIP-932).
    let state = crate::share::partition::Persisted {
        state_epoch: 1,
        start: 10,
        runs: vec![(10, 12, 0, 2), (13, 13, 4, 5)],
    };
    corpus.push(join(
        store::share_state_key("group", uuid::Uuid::from_u128(7), 3),
        Some(Bytes::from(crate::share::store::encode(&state))),
    ));
    corpus
}

fn check_group(b: &[u8]) {
    if b.len() < 2 {
        return;
    }
    let klen = (u16::from_be_bytes([b[0], b[1]]) as usize).min(b.len() - 2);
    let key = Bytes::copy_from_slice(&b[2..2 + klen]);
    let rest = &b[2 + klen..];
    let value = (!rest.is_empty()).then(|| Bytes::copy_from_slice(rest));
    let _ = crate::group::store::decode(Some(key.clone()), value);
    let _ = crate::group::store::decode(Some(key), None);
    let _ = crate::group::codec::subscription_topics(&Bytes::copy_from_slice(b));
}

#[test]
fn fuzz_consumer_offsets_records() {
    let mut corpus = group_corpus();
    // Group values with members, as the coordinator writes them, come from its own tests'
    // encoder; subscriptions are fuzzed from a consumer protocol metadata blob too.
    let mut sub = vec![0u8, 1, 0, 0, 0, 2, 0, 6];
    sub.extend_from_slice(b"orders");
    sub.extend_from_slice(&[0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
    corpus.push(sub);
    run("consumer_offsets_records", 100_000, &corpus, check_group);
}

fn check_txn_log(b: &[u8]) {
    use crate::txn::log;
    if b.len() < 2 {
        return;
    }
    let klen = (u16::from_be_bytes([b[0], b[1]]) as usize).min(b.len() - 2);
    let key = Bytes::copy_from_slice(&b[2..2 + klen]);
    let value = Bytes::copy_from_slice(&b[2 + klen..]);
    let id = log::decode_key(key).unwrap_or_default();
    if let Ok(m) = log::decode_value(&id, value) {
        let again = log::decode_value(&id, log::value(&m)).expect("re-encoded value decodes");
        assert_eq!(again, m, "re-encoded transaction metadata decodes the same");
    }
}

#[test]
fn fuzz_transaction_log_records() {
    use crate::txn::log;
    use crate::txn::state::TxnMetadata;
    use crate::types::TopicPartition;
    let mut m = TxnMetadata::new("txn-1", 4000, 60_000, 1_700_000_000_000);
    let mut corpus = Vec::new();
    for parts in [0, 3] {
        for p in 0..parts {
            m.partitions.insert(TopicPartition::new("orders", p));
        }
        let k = log::key("txn-1");
        let mut b = (k.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(&k);
        b.extend_from_slice(&log::value(&m));
        corpus.push(b);
    }
    run("transaction_log_records", 100_000, &corpus, check_txn_log);
}

fn check_small_files(b: &[u8]) {
    use crate::producer::snapshot;
    use crate::storage::txn_index;
    let Some((&which, rest)) = b.split_first() else {
        return;
    };
    match which % 2 {
        0 => {
            let mut fixed = rest.to_vec();
            if fixed.len() >= 10 {
                let crc = crc32c::crc32c(&fixed[10..]);
                fixed[2..6].copy_from_slice(&crc.to_be_bytes());
            }
            for input in [rest, &fixed[..]] {
                if let Ok(entries) = snapshot::decode(input) {
                    assert_eq!(snapshot::decode(&snapshot::encode(&entries)), Ok(entries));
                }
            }
        }
        _ => {
            if let Ok(entries) = txn_index::decode(rest) {
                assert_eq!(txn_index::decode(&txn_index::encode(&entries)), Ok(entries));
            }
        }
    }
}

#[test]
fn fuzz_producer_snapshots_and_txn_indexes() {
    use crate::producer::snapshot;
    use crate::producer::SnapshotEntry;
    use crate::storage::txn_index::{self, AbortedTxn};
    let entry = SnapshotEntry {
        producer_id: 7,
        epoch: 2,
        last_sequence: 99,
        last_offset: 1234,
        offset_delta: 4,
        timestamp: 1_700_000_000_000,
        coordinator_epoch: 1,
        txn_first_offset: -1,
    };
    let aborted = AbortedTxn {
        producer_id: 7,
        first_offset: 10,
        last_offset: 20,
        last_stable_offset: 10,
    };
    let mut corpus = Vec::new();
    for entries in [vec![], vec![entry], vec![entry, entry]] {
        let mut b = vec![0u8];
        b.extend_from_slice(&snapshot::encode(&entries));
        corpus.push(b);
    }
    for entries in [vec![aborted], vec![aborted, aborted]] {
        let mut b = vec![1u8];
        b.extend_from_slice(&txn_index::encode(&entries));
        corpus.push(b);
    }
    run(
        "producer_snapshots_txn_indexes",
        100_000,
        &corpus,
        check_small_files,
    );
}
