//! A Fetch response framed around records that are not copied: the header fields are encoded
//! into small buffers and each partition's batches follow as they are held (cache buffers,
//! segment-file ranges), so the connection writer hands them to the kernel in place.
//!
//! The field order and version rules mirror the `kafka-protocol` codec's FetchResponse (v4-18);
//! the tests check byte equality against it for every version gregor serves.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::Encodable;

use crate::storage::Chunk;

/// Record chunks up to this size are copied into the surrounding header bytes: one more small
/// copy is cheaper than one more iovec entry.
const INLINE_BYTES: usize = 512;

/// The frame under construction: header bytes being written, then record chunks.
struct Out {
    parts: Vec<Chunk>,
    /// The first header buffer, kept mutable until the size prefix is known.
    first: Option<BytesMut>,
    cur: BytesMut,
}

impl Out {
    fn flush(&mut self) {
        if self.cur.is_empty() {
            return;
        }
        let cur = std::mem::take(&mut self.cur);
        if self.first.is_none() && self.parts.is_empty() {
            self.first = Some(cur);
        } else {
            self.parts.push(Chunk::Mem(cur.freeze()));
        }
    }

    fn records(&mut self, chunks: Vec<Chunk>) {
        for c in chunks {
            match c {
                Chunk::Mem(b) if b.len() <= INLINE_BYTES => self.cur.extend_from_slice(&b),
                Chunk::Held(b) if b.len() <= INLINE_BYTES => {
                    self.cur.extend_from_slice(&b.head);
                    self.cur.extend_from_slice(&b.rest);
                }
                c => {
                    self.flush();
                    self.parts.push(c);
                }
            }
        }
    }

    fn finish(mut self) -> Vec<Chunk> {
        self.flush();
        let mut first = self.first.take().unwrap_or_default();
        let total: usize = first.len() + self.parts.iter().map(Chunk::len).sum::<usize>();
        first[..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
        let mut out = Vec::with_capacity(self.parts.len() + 1);
        out.push(Chunk::Mem(first.freeze()));
        out.append(&mut self.parts);
        out
    }
}

/// Frames `resp` (its partitions' own `records` fields are ignored) with `records[topic][partition]` as
/// each partition's records, for a request of `version` with `correlation_id`.
pub fn encode(
    correlation_id: i32,
    version: i16,
    resp: &FetchResponse,
    mut records: Vec<Vec<Vec<Chunk>>>,
) -> anyhow::Result<Vec<Chunk>> {
    anyhow::ensure!((4..=18).contains(&version), "fetch v{version}");
    let mut out = Out {
        parts: Vec::new(),
        first: None,
        cur: BytesMut::with_capacity(256),
    };
    let buf = &mut out.cur;
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if version >= 12 {
        buf.put_u8(0); // response header v1: no tagged fields
    }
    buf.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(resp.error_code);
        buf.put_i32(resp.session_id);
    }
    array_len(buf, version, resp.responses.len());
    for (ti, topic) in resp.responses.iter().enumerate() {
        let buf = &mut out.cur;
        if version <= 12 {
            string(buf, version, topic.topic.as_bytes());
        }
        if version >= 13 {
            buf.put_slice(topic.topic_id.as_bytes());
        }
        array_len(buf, version, topic.partitions.len());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let chunks = records
                .get_mut(ti)
                .and_then(|t| t.get_mut(pi))
                .map(std::mem::take)
                .unwrap_or_default();
            partition(&mut out, version, p, chunks)?;
        }
        if version >= 12 {
            varint(&mut out.cur, 0); // no tagged fields
        }
    }
    if version >= 12 {
        let buf = &mut out.cur;
        if version >= 16 && !resp.node_endpoints.is_empty() {
            let mut field = BytesMut::new();
            structs(&mut field, version, Some(&resp.node_endpoints))?;
            varint(buf, 1);
            varint(buf, 0);
            varint(buf, field.len() as u32);
            buf.extend_from_slice(&field);
        } else {
            varint(buf, 0);
        }
    }
    Ok(out.finish())
}

fn varint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// An array's length: compact (length + 1, 0 for null) from v12, else an int32 (-1 for null).
fn array_len(buf: &mut BytesMut, version: i16, len: usize) {
    if version >= 12 {
        varint(buf, len as u32 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn null_array(buf: &mut BytesMut, version: i16) {
    if version >= 12 {
        varint(buf, 0);
    } else {
        buf.put_i32(-1);
    }
}

fn string(buf: &mut BytesMut, version: i16, s: &[u8]) {
    if version >= 12 {
        varint(buf, s.len() as u32 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s);
}

/// A nullable array of structs, each encoded by the codec.
fn structs<T: Encodable>(
    buf: &mut BytesMut,
    version: i16,
    items: Option<&Vec<T>>,
) -> anyhow::Result<()> {
    match items {
        None => null_array(buf, version),
        Some(items) => {
            array_len(buf, version, items.len());
            for i in items {
                i.encode(buf, version)?;
            }
        }
    }
    Ok(())
}

/// A tagged field holding one struct.
fn tagged<T: Encodable>(buf: &mut BytesMut, version: i16, tag: u32, v: &T) -> anyhow::Result<()> {
    varint(buf, tag);
    varint(buf, v.compute_size(version)? as u32);
    v.encode(buf, version)
}

fn partition(
    out: &mut Out,
    version: i16,
    p: &PartitionData,
    chunks: Vec<Chunk>,
) -> anyhow::Result<()> {
    let buf = &mut out.cur;
    buf.put_i32(p.partition_index);
    buf.put_i16(p.error_code);
    buf.put_i64(p.high_watermark);
    buf.put_i64(p.last_stable_offset);
    if version >= 5 {
        buf.put_i64(p.log_start_offset);
    }
    structs(buf, version, p.aborted_transactions.as_ref())?;
    if version >= 11 {
        buf.put_i32(p.preferred_read_replica.0);
    }
    let len: usize = chunks.iter().map(Chunk::len).sum();
    if version >= 12 {
        varint(buf, len as u32 + 1);
    } else {
        buf.put_i32(len as i32);
    }
    out.records(chunks);
    if version >= 12 {
        let buf = &mut out.cur;
        let diverging = p.diverging_epoch != Default::default();
        let leader = p.current_leader != Default::default();
        let snapshot = p.snapshot_id != Default::default();
        varint(buf, diverging as u32 + leader as u32 + snapshot as u32);
        if diverging {
            tagged(buf, version, 0, &p.diverging_epoch)?;
        }
        if leader {
            tagged(buf, version, 1, &p.current_leader)?;
        }
        if snapshot {
            tagged(buf, version, 2, &p.snapshot_id)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, SnapshotId,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};

    /// splitmix64: enough randomness for shapes, printed seed to replay.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    fn flatten(chunks: &[Chunk]) -> Vec<u8> {
        let mut v = Vec::new();
        for c in chunks {
            match c {
                Chunk::Mem(b) => v.extend_from_slice(b),
                Chunk::Held(b) => v.extend_from_slice(&b.contiguous()),
                Chunk::File(r) => v.extend(r.read_all().unwrap()),
            }
        }
        v
    }

    /// A random response; its records as the codec takes them and as chunks.
    fn random_response(
        rng: &mut Rng,
        version: i16,
        file: &std::sync::Arc<std::fs::File>,
        file_bytes: &[u8],
    ) -> (FetchResponse, FetchResponse, Vec<Vec<Vec<Chunk>>>) {
        let mut whole = FetchResponse::default()
            .with_throttle_time_ms(rng.below(100) as i32)
            .with_error_code(if version >= 7 { rng.below(3) as i16 } else { 0 })
            .with_session_id(0);
        let mut chunked = whole.clone();
        let mut all = Vec::new();
        for t in 0..rng.below(4) {
            let mut wt = FetchableTopicResponse::default()
                .with_topic(TopicName(format!("topic-{t}").into()))
                .with_topic_id(uuid::Uuid::from_u64_pair(rng.next(), rng.next()));
            let mut ct = wt.clone();
            let mut topic_chunks = Vec::new();
            for i in 0..rng.below(5) as i32 {
                let mut chunks = Vec::new();
                for _ in 0..rng.below(4) {
                    if rng.chance(30) {
                        let position = rng.below(file_bytes.len() as u64 / 2);
                        let len = rng.below(file_bytes.len() as u64 / 2) as usize;
                        chunks.push(Chunk::File(crate::storage::FileRange {
                            file: file.clone(),
                            position,
                            len,
                        }));
                    } else {
                        let len = rng.below(2000);
                        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                        if len >= 16 && rng.chance(50) {
                            // A batch held in two pieces, as the log keeps a stamped one.
                            chunks.push(Chunk::Held(crate::storage::HeldBatch {
                                head: Bytes::copy_from_slice(&b[..16]),
                                rest: Bytes::copy_from_slice(&b[16..]),
                            }));
                        } else {
                            chunks.push(Chunk::Mem(Bytes::from(b)));
                        }
                    }
                }
                let mut p = PartitionData::default()
                    .with_partition_index(i)
                    .with_error_code(rng.below(2) as i16)
                    .with_high_watermark(rng.next() as i64)
                    .with_last_stable_offset(rng.next() as i64)
                    .with_log_start_offset(if version >= 5 { rng.next() as i64 } else { -1 });
                if rng.chance(50) {
                    let txns = (0..rng.below(3))
                        .map(|_| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(rng.next() as i64))
                                .with_first_offset(rng.next() as i64)
                        })
                        .collect();
                    p = p.with_aborted_transactions(Some(txns));
                }
                if version >= 11 {
                    p = p.with_preferred_read_replica(BrokerId(rng.below(4) as i32 - 1));
                }
                if version >= 12 && rng.chance(30) {
                    p = p.with_diverging_epoch(
                        EpochEndOffset::default()
                            .with_epoch(rng.below(9) as i32)
                            .with_end_offset(rng.next() as i64),
                    );
                }
                if version >= 12 && rng.chance(20) {
                    p = p.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(2))
                            .with_leader_epoch(7),
                    );
                }
                if version >= 12 && rng.chance(20) {
                    p = p.with_snapshot_id(SnapshotId::default().with_end_offset(5).with_epoch(1));
                }
                let flat = Bytes::from(flatten(&chunks));
                wt.partitions.push(p.clone().with_records(Some(flat)));
                ct.partitions.push(p);
                topic_chunks.push(chunks);
            }
            whole.responses.push(wt);
            chunked.responses.push(ct);
            all.push(topic_chunks);
        }
        (whole, chunked, all)
    }

    #[test]
    fn frames_match_the_codec_byte_for_byte_in_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let file_bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &file_bytes).unwrap();
        let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        println!("seed {seed}");
        let mut rng = Rng(seed);
        for version in 4..=17i16 {
            for _ in 0..40 {
                let (whole, chunked, records) =
                    random_response(&mut rng, version, &file, &file_bytes);
                let header_version = if version >= 12 { 1 } else { 0 };
                let want =
                    crate::protocol::frame_response(9, header_version, &whole, version).unwrap();
                let got = encode(9, version, &chunked, records).unwrap();
                assert_eq!(flatten(&got), &want[..], "v{version} seed {seed}");
            }
        }
    }
}
