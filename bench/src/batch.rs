//! RecordBatch v2 on the driver's hot paths, written by hand so nothing is allocated per record.
//!
//! Producing: [`BatchBuilder`] appends records straight into one reused buffer; `finish` puts the
//! 61-byte header in front, compresses the records section if asked (kafka-protocol's codecs,
//! the same framing Kafka uses), and fills length and CRC-32C. The producer fields come from a
//! [`ProducerStamp`]: none (producer id -1, base sequence -1), an idempotent producer, or a
//! transactional one (attributes bit 0x10). Base offset is 0.
//!
//! Consuming: [`walk_batches`] reads only batch headers (enough to count records and advance
//! the fetch offset), skips control batches, and under read_committed drops the batches of
//! aborted transactions as Kafka's consumer does ([`TxnFilter`]); [`for_each_send_time`]
//! additionally reads each record's value prefix, the producer's intended send time, for
//! end-to-end latency. Both trust nothing: every length is bounds-checked and a malformed batch
//! is reported, not panicked on.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use gregor::record::{compute_crc, BatchHeader, HEADER_BYTES, LOG_OVERHEAD};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

/// Bytes of a record value taken by the send timestamp (u64, big-endian).
pub const SEND_TIME_BYTES: usize = 8;
/// Batch attributes bit of a transactional batch.
pub const TRANSACTIONAL_BIT: i16 = 0x10;
/// Batch attributes bit of a control batch (transaction markers).
pub const CONTROL_BIT: i16 = 0x20;
/// Control record type of an abort marker (the key is version i16, type i16; commit is 1).
const CONTROL_TYPE_ABORT: i16 = 0;

/// The producer fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

impl ProducerStamp {
    /// A producer without idempotence: every field -1.
    pub const NONE: ProducerStamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
    };
}

/// The sequence after `count` records starting at `sequence`: it wraps from i32::MAX to 0, as
/// Kafka's producer and broker count.
pub fn next_sequence(sequence: i32, count: u32) -> i32 {
    let count = count as i64;
    ((sequence as i64 + count) % (i32::MAX as i64 + 1)) as i32
}

/// A closed batch ready to send, with what the acknowledgement path needs to know.
#[derive(Debug, Clone)]
pub struct ClosedBatch {
    pub partition: i32,
    pub bytes: Bytes,
    pub count: u32,
    /// Intended send time of the first and last record (records in between are evenly spread
    /// under a fixed rate, and created back to back when unlimited).
    pub first_intended_ns: u64,
    pub last_intended_ns: u64,
    /// Key and value bytes of all records: the payload that MB/s counts.
    pub payload_bytes: u64,
}

/// One partition's open batch. The records buffer is reused from batch to batch.
#[derive(Debug)]
pub struct BatchBuilder {
    records: BytesMut,
    count: u32,
    payload_bytes: u64,
    first_intended_ns: u64,
    last_intended_ns: u64,
    opened_ns: u64,
    base_timestamp_ms: i64,
}

impl BatchBuilder {
    pub fn new(capacity: usize) -> BatchBuilder {
        BatchBuilder {
            records: BytesMut::with_capacity(capacity),
            count: 0,
            payload_bytes: 0,
            first_intended_ns: 0,
            last_intended_ns: 0,
            opened_ns: 0,
            base_timestamp_ms: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// When the first record of the open batch was appended (for linger).
    pub fn opened_ns(&self) -> u64 {
        self.opened_ns
    }

    /// Encoded bytes of the records so far (uncompressed).
    pub fn records_len(&self) -> usize {
        self.records.len()
    }

    /// Encoded size of one record with these key and value lengths, at offset delta `count`.
    pub fn record_len(&self, key_len: Option<usize>, value_len: usize) -> usize {
        let body = record_body_len(self.count as i64, key_len, value_len);
        varint_len(zigzag(body as i64)) + body
    }

    /// Appends one record whose value is `send time | filler`.
    pub fn append(&mut self, key: Option<&[u8]>, filler: &[u8], intended_ns: u64, now_ns: u64) {
        if self.count == 0 {
            self.first_intended_ns = intended_ns;
            self.opened_ns = now_ns;
            self.base_timestamp_ms = crate::clock::wall_ms();
        }
        let value_len = SEND_TIME_BYTES + filler.len();
        let offset_delta = self.count as i64;
        let body = record_body_len(offset_delta, key.map(<[u8]>::len), value_len);
        let b = &mut self.records;
        put_varint(b, zigzag(body as i64));
        b.put_u8(0); // attributes
        b.put_u8(0); // timestamp delta 0 (zigzag)
        put_varint(b, zigzag(offset_delta));
        match key {
            Some(k) => {
                put_varint(b, zigzag(k.len() as i64));
                b.put_slice(k);
            }
            None => put_varint(b, zigzag(-1)),
        }
        put_varint(b, zigzag(value_len as i64));
        b.put_u64(intended_ns);
        b.put_slice(filler);
        b.put_u8(0); // no headers
        self.count += 1;
        self.payload_bytes += (value_len + key.map_or(0, <[u8]>::len)) as u64;
        self.last_intended_ns = intended_ns;
    }

    /// Closes the open batch into wire bytes and resets the builder for the next one.
    pub fn finish(
        &mut self,
        partition: i32,
        codec: Compression,
        stamp: ProducerStamp,
    ) -> Result<ClosedBatch> {
        if self.count == 0 {
            bail!("finish called on an empty batch of partition {partition}");
        }
        let mut out = BytesMut::with_capacity(HEADER_BYTES + self.records.len());
        put_header(&mut out, self.count, self.base_timestamp_ms, codec, stamp);
        compress_into(&mut out, &self.records, codec)?;
        let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).context("batch too large")?;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        let closed = ClosedBatch {
            partition,
            bytes: out.freeze(),
            count: self.count,
            first_intended_ns: self.first_intended_ns,
            last_intended_ns: self.last_intended_ns,
            payload_bytes: self.payload_bytes,
        };
        self.records.clear();
        self.count = 0;
        self.payload_bytes = 0;
        Ok(closed)
    }
}

/// The 61 header bytes with length and CRC zeroed (filled by `finish`).
fn put_header(
    out: &mut BytesMut,
    count: u32,
    timestamp_ms: i64,
    codec: Compression,
    stamp: ProducerStamp,
) {
    let txn = if stamp.transactional {
        TRANSACTIONAL_BIT
    } else {
        0
    };
    out.put_i64(0); // base offset
    out.put_i32(0); // batch length, filled later
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // crc, filled later
    out.put_i16(codec as i16 | txn); // attributes: codec, CreateTime, transactional or not
    out.put_i32(count as i32 - 1); // last offset delta
    out.put_i64(timestamp_ms); // base timestamp
    out.put_i64(timestamp_ms); // max timestamp (every delta is 0)
    out.put_i64(stamp.producer_id);
    out.put_i16(stamp.producer_epoch);
    out.put_i32(stamp.base_sequence);
    out.put_i32(count as i32);
}

fn compress_into(out: &mut BytesMut, records: &[u8], codec: Compression) -> Result<()> {
    let copy = |tmp: &mut BytesMut| {
        tmp.put_slice(records);
        Ok(())
    };
    match codec {
        Compression::None => out.put_slice(records),
        Compression::Gzip => Gzip::compress(out, copy)?,
        Compression::Snappy => Snappy::compress(out, copy)?,
        Compression::Lz4 => Lz4::compress(out, copy)?,
        Compression::Zstd => Zstd::compress(out, copy)?,
    }
    Ok(())
}

fn record_body_len(offset_delta: i64, key_len: Option<usize>, value_len: usize) -> usize {
    let key = match key_len {
        Some(k) => varint_len(zigzag(k as i64)) + k,
        None => 1,
    };
    // attributes + timestamp delta + offset delta + key + value + header count
    2 + varint_len(zigzag(offset_delta))
        + key
        + varint_len(zigzag(value_len as i64))
        + value_len
        + 1
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// Reads a zigzag varint at `*pos`, advancing it; `None` if it runs off the end or is too long.
fn get_varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    None
}

/// What a walk over one partition's fetched bytes found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walked {
    /// Data records at or after the fetch offset (control batches and, under read_committed,
    /// aborted transactions skipped).
    pub records: u64,
    /// Records at or after the fetch offset dropped as part of an aborted transaction.
    pub aborted_records: u64,
    /// Where the next fetch starts.
    pub next_offset: Option<i64>,
}

/// The read_committed side of a walk: which producers' batches belong to an aborted
/// transaction, from the fetch response's aborted_transactions list. Kafka's consumer logic:
/// an aborted transaction starts counting at its first offset and ends at that producer's
/// abort marker; transactional batches of a producer in between are dropped.
#[derive(Debug, Clone, Default)]
pub struct TxnFilter {
    read_committed: bool,
    /// (first offset, producer id), latest first offset first, so the next one is at the end.
    pending: Vec<(i64, i64)>,
    aborted: HashSet<i64>,
}

impl TxnFilter {
    /// Keeps every data batch (control batches are still skipped).
    pub fn read_uncommitted() -> TxnFilter {
        TxnFilter::default()
    }

    /// Drops aborted transactions given as (producer id, first offset) pairs.
    pub fn read_committed(aborted: impl IntoIterator<Item = (i64, i64)>) -> TxnFilter {
        let mut pending: Vec<(i64, i64)> = aborted.into_iter().map(|(p, o)| (o, p)).collect();
        pending.sort_unstable_by(|a, b| b.cmp(a));
        TxnFilter {
            read_committed: true,
            pending,
            aborted: HashSet::new(),
        }
    }

    /// Whether the data of this batch is kept; `batch` is its whole bytes.
    fn keep(&mut self, h: &BatchHeader, batch: &Bytes) -> Result<bool> {
        if !self.read_committed || h.producer_id < 0 {
            return Ok(!h.is_control());
        }
        while self.pending.last().is_some_and(|a| a.0 <= h.last_offset()) {
            if let Some((_, pid)) = self.pending.pop() {
                self.aborted.insert(pid);
            }
        }
        if h.is_control() {
            if control_type(h, batch)? == Some(CONTROL_TYPE_ABORT) {
                self.aborted.remove(&h.producer_id);
            }
            return Ok(false);
        }
        Ok(!(h.is_transactional() && self.aborted.contains(&h.producer_id)))
    }
}

/// The type of a control batch's first record (0 abort, 1 commit), read from its key.
fn control_type(h: &BatchHeader, batch: &Bytes) -> Result<Option<i16>> {
    if h.record_count < 1 {
        return Ok(None);
    }
    let records = decompress(h, batch.slice(HEADER_BYTES..))?;
    let mut pos = 0usize;
    let bad = || anyhow::anyhow!("control batch at offset {}: bad record", h.base_offset);
    get_varint(&records, &mut pos).ok_or_else(bad)?; // record length
    pos += 1; // attributes
    get_varint(&records, &mut pos).ok_or_else(bad)?; // timestamp delta
    get_varint(&records, &mut pos).ok_or_else(bad)?; // offset delta
    let key_len = get_varint(&records, &mut pos).ok_or_else(bad)?;
    if key_len < 4 || pos + 4 > records.len() {
        return Err(bad());
    }
    Ok(Some(i16::from_be_bytes([
        records[pos + 2],
        records[pos + 3],
    ])))
}

/// Walks whole batches in `data` (a fetch may end in a partial one, which is left for the
/// next fetch). Calls `on_batch` with each kept data batch's header and bytes.
pub fn walk_batches(
    data: &Bytes,
    fetch_offset: i64,
    txn: &mut TxnFilter,
    mut on_batch: impl FnMut(&BatchHeader, &Bytes) -> Result<()>,
) -> Result<Walked> {
    let mut out = Walked::default();
    let mut pos = 0usize;
    while data.len() - pos >= HEADER_BYTES {
        let h = BatchHeader::parse(&data[pos..]).map_err(anyhow::Error::msg)?;
        if h.magic != 2 || h.batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
            bail!(
                "bad batch at byte {pos}: magic {} length {}",
                h.magic,
                h.batch_length
            );
        }
        let end = pos + h.total_bytes();
        if end > data.len() {
            break;
        }
        out.next_offset = Some(h.next_offset());
        let batch = data.slice(pos..end);
        let keep = txn.keep(&h, &batch)?;
        if h.last_offset() >= fetch_offset {
            let first = h.base_offset.max(fetch_offset);
            let n = (h.last_offset() - first + 1) as u64;
            if keep {
                out.records += n;
                on_batch(&h, &batch)?;
            } else if !h.is_control() {
                out.aborted_records += n;
            }
        }
        pos = end;
    }
    Ok(out)
}

/// Calls `f` with the send time carried by each record of `batch` at or after `fetch_offset`.
pub fn for_each_send_time(
    h: &BatchHeader,
    batch: &Bytes,
    fetch_offset: i64,
    mut f: impl FnMut(u64),
) -> Result<()> {
    let records = decompress(h, batch.slice(HEADER_BYTES..))?;
    let mut pos = 0usize;
    let bad = |what: &str| anyhow::anyhow!("batch at offset {}: bad record {what}", h.base_offset);
    for _ in 0..h.record_count.max(0) {
        let len = get_varint(&records, &mut pos).ok_or_else(|| bad("length"))?;
        let end = pos
            .checked_add(usize::try_from(len).map_err(|_| bad("length"))?)
            .filter(|e| *e <= records.len())
            .ok_or_else(|| bad("length"))?;
        let body = &records[..end];
        let mut p = pos + 1; // attributes
        get_varint(body, &mut p).ok_or_else(|| bad("timestamp"))?;
        let offset_delta = get_varint(body, &mut p).ok_or_else(|| bad("offset"))?;
        let key_len = get_varint(body, &mut p).ok_or_else(|| bad("key"))?;
        p += usize::try_from(key_len.max(0)).map_err(|_| bad("key"))?;
        let value_len = get_varint(body, &mut p).ok_or_else(|| bad("value"))?;
        if value_len >= SEND_TIME_BYTES as i64 && p + SEND_TIME_BYTES <= end {
            let mut t = [0u8; SEND_TIME_BYTES];
            t.copy_from_slice(&body[p..p + SEND_TIME_BYTES]);
            if h.base_offset + offset_delta >= fetch_offset {
                f(u64::from_be_bytes(t));
            }
        }
        pos = end;
    }
    Ok(())
}

fn decompress(h: &BatchHeader, mut records: Bytes) -> Result<Bytes> {
    let take = |b: &mut Bytes| Ok(b.clone());
    let out = match h.compression() {
        0 => records,
        1 => Gzip::decompress(&mut records, take)?,
        2 => Snappy::decompress(&mut records, take)?,
        3 => Lz4::decompress(&mut records, take)?,
        4 => Zstd::decompress(&mut records, take)?,
        c => bail!("unknown codec {c} at offset {}", h.base_offset),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gregor::client::batch::read_fetched;
    use kafka_protocol::records::{
        Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn build(n: u32, codec: Compression, keyed: bool) -> ClosedBatch {
        let mut b = BatchBuilder::new(1024);
        for i in 0..n {
            let key = format!("key-{i}");
            let key = keyed.then_some(key.as_bytes());
            b.append(key, b"filler-bytes", 1000 + u64::from(i), 7);
        }
        b.finish(3, codec, ProducerStamp::NONE).unwrap()
    }

    #[test]
    fn built_batches_are_valid_kafka_batches_for_every_codec() {
        for codec in CODECS {
            for keyed in [false, true] {
                let c = build(200, codec, keyed);
                let h = gregor::record::validate_produced(&c.bytes).unwrap();
                assert_eq!(h.record_count, 200);
                assert_eq!(h.producer_id, -1);
                assert_eq!(h.compression(), codec as i16);
                // kafka-protocol's decoder reads what we wrote, record for record.
                let fetched = read_fetched(&c.bytes, 0, &[], false).unwrap();
                assert_eq!(fetched.records.len(), 200);
                let r = &fetched.records[5];
                assert_eq!(r.offset, 5);
                assert_eq!(r.key.is_some(), keyed);
                let v = r.value.as_ref().unwrap();
                assert_eq!(&v[..8], &1005u64.to_be_bytes());
                assert_eq!(&v[8..], b"filler-bytes");
            }
        }
    }

    #[test]
    fn builder_is_reused_and_predicts_record_sizes() {
        let mut b = BatchBuilder::new(64);
        let want = b.record_len(Some(3), 8 + 5);
        b.append(Some(b"abc"), b"hello", 1, 1);
        assert_eq!(b.records_len(), want);
        let first = b.finish(0, Compression::None, ProducerStamp::NONE).unwrap();
        assert!(b.is_empty());
        b.append(None, b"x", 2, 2);
        let second = b.finish(0, Compression::None, ProducerStamp::NONE).unwrap();
        assert_eq!(second.count, 1);
        assert_eq!(first.payload_bytes, 3 + 13);
        assert_eq!(second.first_intended_ns, 2);
    }

    #[test]
    fn walk_counts_records_and_reads_send_times_past_partial_tail() {
        for codec in CODECS {
            let a = build(10, codec, false);
            let mut second = build(5, codec, true).bytes.to_vec();
            gregor::record::set_base_offset(&mut second, 10);
            let mut data = a.bytes.to_vec();
            data.extend_from_slice(&second);
            data.extend_from_slice(&second[..30]); // a torn tail
            let data = Bytes::from(data);
            let mut times = Vec::new();
            let walked = walk_batches(&data, 3, &mut TxnFilter::read_uncommitted(), |h, b| {
                for_each_send_time(h, b, 3, |t| times.push(t))
            })
            .unwrap();
            assert_eq!(walked.records, 12, "{codec:?}");
            assert_eq!(walked.next_offset, Some(15));
            assert_eq!(times.len(), 12);
            assert_eq!(times[0], 1003);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut bad = build(3, Compression::None, false).bytes.to_vec();
        bad[16] = 7; // magic
        let mut ru = TxnFilter::read_uncommitted();
        assert!(walk_batches(&Bytes::from(bad), 0, &mut ru, |_, _| Ok(())).is_err());
        let mut lying = build(3, Compression::None, false).bytes.to_vec();
        lying[57..61].copy_from_slice(&100i32.to_be_bytes()); // claims 100 records, holds 3
        let data = Bytes::from(lying);
        let r = walk_batches(&data, 0, &mut ru, |h, b| {
            for_each_send_time(h, b, 0, |_| {})
        });
        assert!(r.is_err());
    }

    fn stamp(producer_id: i64, base_sequence: i32, transactional: bool) -> ProducerStamp {
        ProducerStamp {
            producer_id,
            producer_epoch: 3,
            base_sequence,
            transactional,
        }
    }

    #[test]
    fn transactional_batches_carry_producer_fields_and_the_transactional_bit() {
        for codec in CODECS {
            let mut b = BatchBuilder::new(1024);
            for i in 0..7 {
                b.append(None, b"x", i, i);
            }
            let c = b.finish(4, codec, stamp(77, 1000, true)).unwrap();
            let h = gregor::record::validate_produced(&c.bytes).unwrap();
            assert_eq!(h.producer_id, 77);
            assert_eq!(h.producer_epoch, 3);
            assert_eq!(h.base_sequence, 1000);
            assert_eq!(h.record_count, 7);
            assert!(h.is_transactional() && !h.is_control());
            assert_eq!(h.attributes, codec as i16 | TRANSACTIONAL_BIT);
            // kafka-protocol's decoder sees the same header.
            let info = RecordBatchDecoder::decode_batch_info(&mut c.bytes.clone()).unwrap();
            assert!(info[0].transactional && !info[0].control);
            assert_eq!(
                (
                    info[0].producer_id,
                    info[0].producer_epoch,
                    info[0].base_sequence
                ),
                (77, 3, 1000)
            );
            // Idempotent, not transactional: producer fields, no bit.
            b.append(None, b"x", 1, 1);
            let c = b.finish(4, codec, stamp(77, 1007, false)).unwrap();
            let h = gregor::record::validate_produced(&c.bytes).unwrap();
            assert!(!h.is_transactional());
            assert_eq!((h.producer_id, h.base_sequence), (77, 1007));
        }
    }

    #[test]
    fn sequences_wrap_to_zero_after_i32_max() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(10, 1), 11);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 2, 5), 2);
    }

    /// A transaction marker as Kafka writes it, encoded by kafka-protocol (not by this module).
    fn marker(base_offset: i64, producer_id: i64, commit: bool) -> Vec<u8> {
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 3,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
            value: Some(Bytes::from(vec![0, 0, 0, 0, 0, 0])),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
        let mut out = buf.to_vec();
        gregor::record::set_base_offset(&mut out, base_offset);
        out
    }

    fn txn_batch(base_offset: i64, n: u32, producer_id: i64) -> Vec<u8> {
        let mut b = BatchBuilder::new(1024);
        for i in 0..n {
            b.append(None, b"x", u64::from(i), 0);
        }
        let st = if producer_id >= 0 {
            stamp(producer_id, 0, true)
        } else {
            ProducerStamp::NONE
        };
        let c = b.finish(0, Compression::None, st);
        let mut out = c.unwrap().bytes.to_vec();
        gregor::record::set_base_offset(&mut out, base_offset);
        out
    }

    /// Offsets 0-9 pid 5 (committed at 10), 11-15 pid 6 (aborted at 16), 17-19 pid 5 (open),
    /// 20-22 without a producer.
    fn transactional_log() -> Bytes {
        let parts = [
            txn_batch(0, 10, 5),
            marker(10, 5, true),
            txn_batch(11, 5, 6),
            marker(16, 6, false),
            txn_batch(17, 3, 5),
            txn_batch(20, 3, -1),
        ];
        Bytes::from(parts.concat())
    }

    #[test]
    fn control_batches_are_skipped_and_never_counted() {
        let data = transactional_log();
        let mut seen = Vec::new();
        let mut ru = TxnFilter::read_uncommitted();
        let w = walk_batches(&data, 0, &mut ru, |h, _| {
            seen.push((h.base_offset, h.is_control()));
            Ok(())
        })
        .unwrap();
        assert_eq!(w.records, 21);
        assert_eq!(w.aborted_records, 0);
        assert_eq!(w.next_offset, Some(23));
        assert_eq!(seen, [(0, false), (11, false), (17, false), (20, false)]);
        // Starting at the commit marker: the marker is passed over, not counted.
        let w = walk_batches(&data, 10, &mut TxnFilter::read_uncommitted(), |_, _| Ok(()));
        assert_eq!(w.unwrap().records, 11);
    }

    #[test]
    fn read_committed_drops_aborted_transactions_up_to_their_marker() {
        let data = transactional_log();
        let walk = |from: i64, aborted: &[(i64, i64)]| {
            let mut rc = TxnFilter::read_committed(aborted.iter().copied());
            walk_batches(&data, from, &mut rc, |h, _| {
                assert!(!h.is_control());
                Ok(())
            })
            .unwrap()
        };
        let w = walk(0, &[(6, 11)]);
        assert_eq!((w.records, w.aborted_records), (16, 5));
        assert_eq!(w.next_offset, Some(23));
        // Nothing aborted: everything but the markers.
        assert_eq!(walk(0, &[]).records, 21);
        // The abort marker at 16 ends pid 6's aborted run: an aborted pid 5 transaction from 17
        // drops only pid 5's later batch, and the non-transactional batch stays.
        let w = walk(0, &[(5, 17), (6, 11)]);
        assert_eq!((w.records, w.aborted_records), (13, 8));
        // A fetch from inside the aborted batch counts only what is at or after the offset.
        let w = walk(12, &[(6, 11)]);
        assert_eq!((w.records, w.aborted_records), (6, 4));
    }
}
