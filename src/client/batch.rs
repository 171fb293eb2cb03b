//! RecordBatch v2 on the client side: building a batch to produce and reading the batches a
//! fetch (or a segment file) returns, over kafka-protocol's encoder and decoder (all codecs).
//!
//! Every batch is checked with `crate::record` (length, magic, CRC-32C) before its records are
//! decoded, the same check the broker makes on the way in. A fetch may end in a partial batch
//! (the broker cuts at max bytes); that tail is dropped, not an error.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use super::error::ClientError;
use crate::record::{self, BatchHeader, Scan};

/// Codec of produced batches, as Kafka's compression.type names them (CLI and bench flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes `records` as one non-idempotent RecordBatch v2 (base offset 0, no producer id).
pub fn encode_batch(
    records: &[ProducerRecord],
    timestamp_ms: i64,
    compression: Compression,
) -> Result<Bytes, ClientError> {
    let wire: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| to_wire_record(r, i as i64, timestamp_ms))
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &wire, &options)
        .map_err(|e| ClientError::Records(format!("encode: {e}")))?;
    Ok(buf.freeze())
}

/// Encodes `records` as one transactional RecordBatch v2 of `producer_id` at `epoch`, with no
/// sequence (as Kafka's coordinators write transactional offset commits).
pub fn encode_transactional_batch(
    records: &[ProducerRecord],
    timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Bytes, ClientError> {
    let wire: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: true,
            producer_id,
            producer_epoch,
            ..to_wire_record(r, i as i64, timestamp_ms)
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &wire, &options)
        .map_err(|e| ClientError::Records(format!("encode: {e}")))?;
    Ok(buf.freeze())
}

fn to_wire_record(r: &ProducerRecord, offset: i64, timestamp_ms: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        // The encoder starts a new batch whenever `offset - sequence` changes, and derives the
        // base sequence from the first record: offset-1 keeps one batch and base sequence -1.
        sequence: offset as i32 - 1,
        timestamp_type: TimestampType::Creation,
        offset,
        timestamp: timestamp_ms,
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
            .collect(),
    }
}

/// Decodes the records of exactly one batch (`batch` must hold it whole).
pub fn decode_batch(batch: Bytes) -> Result<Vec<Record>, ClientError> {
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| ClientError::Records(format!("decode: {e}")))?;
    Ok(set.records)
}

/// One whole batch found in a byte range: its header, where it starts, and its bytes.
#[derive(Debug, Clone)]
pub struct RawBatch {
    pub header: BatchHeader,
    pub position: usize,
    pub bytes: Bytes,
}

/// How a walk over back-to-back batches ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The range ended exactly after the last batch, or only zero padding followed.
    Clean,
    /// A batch starts at `position` but the range holds only part of it.
    Incomplete { position: usize, needed: usize },
    /// The bytes at `position` are not a valid batch.
    Corrupt { position: usize, error: String },
}

/// Splits a range of back-to-back batches into whole, CRC-checked batches and reports how the
/// range ended. Never fails: what follows the last good batch is described by the [`Tail`].
pub fn split_batches(buf: &Bytes) -> (Vec<RawBatch>, Tail) {
    let mut batches = Vec::new();
    let mut pos = 0;
    loop {
        match record::scan(&buf[pos..]) {
            Scan::Batch(header) => {
                let len = header.total_bytes();
                batches.push(RawBatch {
                    header,
                    position: pos,
                    bytes: buf.slice(pos..pos + len),
                });
                pos += len;
            }
            Scan::End => return (batches, Tail::Clean),
            Scan::Incomplete { needed } => {
                return (
                    batches,
                    Tail::Incomplete {
                        position: pos,
                        needed,
                    },
                )
            }
            Scan::Corrupt(e) => {
                return (
                    batches,
                    Tail::Corrupt {
                        position: pos,
                        error: e.to_string(),
                    },
                )
            }
        }
    }
}

/// An aborted transaction as a fetch response lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// What a consumer sees of one partition's fetched bytes.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Data records at or after the fetch offset, in offset order.
    pub records: Vec<Record>,
    /// Where the next fetch starts: after the last whole batch (control or aborted included).
    pub next_offset: Option<i64>,
}

/// Turns fetched bytes into the records a consumer delivers: skips records before
/// `fetch_offset` (a compressed batch is returned whole), control batches, and under
/// read_committed the batches of aborted transactions (Kafka's consumer algorithm: a producer
/// is aborted from its aborted-transaction first offset until its ABORT marker).
pub fn read_fetched(
    data: &Bytes,
    fetch_offset: i64,
    aborted: &[AbortedTxn],
    read_committed: bool,
) -> Result<Fetched, ClientError> {
    let (batches, tail) = split_batches(data);
    if let (true, Tail::Corrupt { position, error }) = (batches.is_empty(), &tail) {
        return Err(ClientError::Records(format!(
            "corrupt batch at byte {position} of fetch data: {error}"
        )));
    }
    let mut pending: Vec<AbortedTxn> = aborted.to_vec();
    pending.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
    let mut aborted_pids = std::collections::HashSet::new();
    let mut out = Fetched::default();
    for batch in batches {
        let h = batch.header;
        out.next_offset = Some(h.next_offset());
        if read_committed && h.producer_id >= 0 {
            while pending
                .last()
                .is_some_and(|a| a.first_offset <= h.last_offset())
            {
                if let Some(a) = pending.pop() {
                    aborted_pids.insert(a.producer_id);
                }
            }
            if h.is_control() {
                let records = decode_batch(batch.bytes.clone())?;
                if records.first().is_some_and(is_abort_marker) {
                    aborted_pids.remove(&h.producer_id);
                }
            } else if h.is_transactional() && aborted_pids.contains(&h.producer_id) {
                continue;
            }
        }
        if h.is_control() {
            continue;
        }
        let records = decode_batch(batch.bytes)?;
        out.records
            .extend(records.into_iter().filter(|r| r.offset >= fetch_offset));
    }
    Ok(out)
}

/// A control record's key is `version: i16, type: i16`; type 0 is ABORT, 1 is COMMIT.
fn is_abort_marker(r: &Record) -> bool {
    r.key
        .as_ref()
        .is_some_and(|k| k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ALL_CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(n: usize) -> Vec<ProducerRecord> {
        (0..n)
            .map(|i| ProducerRecord {
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(i % 50)))),
                headers: if i % 3 == 0 {
                    vec![
                        ("h".to_string(), Some(Bytes::from("v"))),
                        ("n".into(), None),
                    ]
                } else {
                    vec![]
                },
            })
            .collect()
    }

    #[test]
    fn batch_round_trips_with_every_codec() {
        let input = sample(100);
        for codec in ALL_CODECS {
            let bytes = encode_batch(&input, 1_700_000_000_000, codec).unwrap();
            let h = record::validate_produced(&bytes).unwrap();
            assert_eq!(h.record_count, 100, "{codec:?}");
            assert_eq!(h.compression(), codec as i16);
            assert_eq!(h.base_sequence, -1);
            assert_eq!(h.producer_id, -1);
            let fetched = read_fetched(&bytes, 0, &[], false).unwrap();
            assert_eq!(fetched.next_offset, Some(100));
            assert_eq!(fetched.records.len(), 100);
            for (i, (got, want)) in fetched.records.iter().zip(&input).enumerate() {
                assert_eq!(got.offset, i as i64);
                assert_eq!(got.key, want.key, "{codec:?} #{i}");
                assert_eq!(got.value, want.value);
                assert_eq!(got.timestamp, 1_700_000_000_000);
                let headers: Vec<(String, Option<Bytes>)> = got
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                assert_eq!(headers, want.headers);
            }
        }
    }

    #[test]
    fn fetch_skips_records_before_offset_and_partial_tail() {
        let mut a = BytesMut::from(&encode_batch(&sample(5), 1, Compression::Lz4).unwrap()[..]);
        let mut b = encode_batch(&sample(3), 2, Compression::None)
            .unwrap()
            .to_vec();
        record::set_base_offset(&mut b, 5);
        a.extend_from_slice(&b);
        let c = encode_batch(&sample(2), 3, Compression::None).unwrap();
        a.extend_from_slice(&c[..c.len() / 2]);
        let data = a.freeze();
        let fetched = read_fetched(&data, 3, &[], false).unwrap();
        let offsets: Vec<i64> = fetched.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![3, 4, 5, 6, 7]);
        assert_eq!(fetched.next_offset, Some(8));
    }

    /// A transactional batch of `n` records (or a control marker) for producer `pid` at `base`.
    fn txn_batch(pid: i64, base: i64, n: usize, marker: Option<i16>) -> Vec<u8> {
        let records: Vec<Record> = (0..n as i64)
            .map(|i| {
                let mut r = to_wire_record(&ProducerRecord::default(), base + i, 1);
                r.transactional = true;
                r.producer_id = pid;
                r.producer_epoch = 0;
                r.sequence = i as i32;
                if let Some(kind) = marker {
                    r.control = true;
                    r.key = Some(Bytes::copy_from_slice(&[0, 0, 0, kind as u8]));
                    r.value = Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
                } else {
                    r.value = Some(Bytes::from(format!("p{pid}-{}", base + i)));
                }
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.to_vec()
    }

    #[test]
    fn read_committed_drops_aborted_transactions_and_markers() {
        // Producer 1 commits offsets 0-1 (marker at 2); producer 2 aborts 3-4 (marker at 5);
        // producer 1 then writes 6 again in a new transaction.
        let mut data = Vec::new();
        data.extend(txn_batch(1, 0, 2, None));
        data.extend(txn_batch(1, 2, 1, Some(1)));
        data.extend(txn_batch(2, 3, 2, None));
        data.extend(txn_batch(2, 5, 1, Some(0)));
        data.extend(txn_batch(1, 6, 1, None));
        let data = Bytes::from(data);
        let aborted = [AbortedTxn {
            producer_id: 2,
            first_offset: 3,
        }];
        let offsets = |f: Fetched| f.records.iter().map(|r| r.offset).collect::<Vec<_>>();
        let committed = read_fetched(&data, 0, &aborted, true).unwrap();
        assert_eq!(committed.next_offset, Some(7));
        assert_eq!(offsets(committed), vec![0, 1, 6]);
        let uncommitted = read_fetched(&data, 0, &aborted, false).unwrap();
        assert_eq!(offsets(uncommitted), vec![0, 1, 3, 4, 6]);
    }

    #[test]
    fn corrupt_first_batch_is_an_error() {
        let mut b = encode_batch(&sample(2), 1, Compression::None)
            .unwrap()
            .to_vec();
        let n = b.len();
        b[n - 1] ^= 0xff;
        assert!(read_fetched(&Bytes::from(b), 0, &[], false).is_err());
    }
}
