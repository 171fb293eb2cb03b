//! RecordBatch v2 on the driver's hot paths, written by hand so nothing is allocated per record.
//!
//! Producing: [`BatchBuilder`] appends records straight into one reused buffer; `finish` puts the
//! 61-byte header in front, compresses the records section if asked (kafka-protocol's codecs,
//! the same framing Kafka uses), and fills length and CRC-32C. Batches are non-idempotent:
//! producer id -1, base sequence -1, base offset 0.
//!
//! Consuming: [`walk_batches`] reads only batch headers (enough to count records and advance
//! the fetch offset); [`for_each_send_time`] additionally reads each record's value prefix, the
//! producer's intended send time, for end-to-end latency. Both trust nothing: every length is
//! bounds-checked and a malformed batch is reported, not panicked on.

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use gregor::record::{compute_crc, BatchHeader, HEADER_BYTES, LOG_OVERHEAD};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

/// Bytes of a record value taken by the send timestamp (u64, big-endian).
pub const SEND_TIME_BYTES: usize = 8;

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
    pub fn finish(&mut self, partition: i32, codec: Compression) -> Result<ClosedBatch> {
        if self.count == 0 {
            bail!("finish called on an empty batch of partition {partition}");
        }
        let mut out = BytesMut::with_capacity(HEADER_BYTES + self.records.len());
        put_header(&mut out, self.count, self.base_timestamp_ms, codec);
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
fn put_header(out: &mut BytesMut, count: u32, timestamp_ms: i64, codec: Compression) {
    out.put_i64(0); // base offset
    out.put_i32(0); // batch length, filled later
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // crc, filled later
    out.put_i16(codec as i16); // attributes: codec, CreateTime, not transactional
    out.put_i32(count as i32 - 1); // last offset delta
    out.put_i64(timestamp_ms); // base timestamp
    out.put_i64(timestamp_ms); // max timestamp (every delta is 0)
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
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
    /// Data records at or after the fetch offset (control batches skipped).
    pub records: u64,
    /// Where the next fetch starts.
    pub next_offset: Option<i64>,
}

/// Walks whole batches in `data` (a fetch may end in a partial one, which is left for the
/// next fetch). Calls `on_batch` with each data batch's header and bytes.
pub fn walk_batches(
    data: &Bytes,
    fetch_offset: i64,
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
        if !h.is_control() && h.last_offset() >= fetch_offset {
            let first = h.base_offset.max(fetch_offset);
            out.records += (h.last_offset() - first + 1) as u64;
            on_batch(&h, &data.slice(pos..end))?;
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
        b.finish(3, codec).unwrap()
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
        let first = b.finish(0, Compression::None).unwrap();
        assert!(b.is_empty());
        b.append(None, b"x", 2, 2);
        let second = b.finish(0, Compression::None).unwrap();
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
            let walked = walk_batches(&data, 3, |h, b| {
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
        assert!(walk_batches(&Bytes::from(bad), 0, |_, _| Ok(())).is_err());
        let mut lying = build(3, Compression::None, false).bytes.to_vec();
        lying[57..61].copy_from_slice(&100i32.to_be_bytes()); // claims 100 records, holds 3
        let data = Bytes::from(lying);
        let r = walk_batches(&data, 0, |h, b| for_each_send_time(h, b, 0, |_| {}));
        assert!(r.is_err());
    }
}
