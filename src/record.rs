//! RecordBatch v2 header view and CRC-32C, shared by the produce path, storage and recovery.
//!
//! The broker never decodes records on the hot path: it reads the 61-byte batch header, checks
//! the CRC-32C over everything after the CRC field, and rewrites the fields the broker owns (base
//! offset, and for LogAppendTime the attributes and max timestamp) in place. The byte layout is
//! Kafka's, so segment files are readable by Kafka's own tools and vice versa.

use thiserror::Error;

/// Bytes before the records: base offset .. record count.
pub const HEADER_BYTES: usize = 61;
/// Bytes that precede the batch-length field's own count (base offset + batch length).
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch shorter than its header: {len} bytes")]
    TooShort { len: usize },
    #[error("batch length field {declared} does not match the {actual} bytes present")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("unsupported magic {magic}")]
    BadMagic { magic: i8 },
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record count {count} inconsistent with last offset delta {last_offset_delta}")]
    BadCount { count: i32, last_offset_delta: i32 },
    #[error("unknown compression codec {codec}")]
    BadCompression { codec: i16 },
}

/// The fixed fields of a RecordBatch v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD + batch_length`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Reads the header fields; checks only that the header is present.
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        if b.len() < HEADER_BYTES {
            return Err(BatchError::TooShort { len: b.len() });
        }
        Ok(BatchHeader {
            base_offset: i64_at(b, BASE_OFFSET),
            batch_length: i32_at(b, BATCH_LENGTH),
            partition_leader_epoch: i32_at(b, LEADER_EPOCH),
            magic: b[MAGIC] as i8,
            crc: i32_at(b, CRC) as u32,
            attributes: i16_at(b, ATTRIBUTES),
            last_offset_delta: i32_at(b, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(b, BASE_TIMESTAMP),
            max_timestamp: i64_at(b, MAX_TIMESTAMP),
            producer_id: i64_at(b, PRODUCER_ID),
            producer_epoch: i16_at(b, PRODUCER_EPOCH),
            base_sequence: i32_at(b, BASE_SEQUENCE),
            record_count: i32_at(b, RECORD_COUNT),
        })
    }

    /// Total bytes of the batch on the wire and on disk.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C over the bytes the batch CRC covers (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// Full check of one batch that must fill `batch` exactly: length, magic, CRC and the header's
/// own consistency. Used when a producer hands us a batch and when storage reads one back.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.magic != 2 {
        return Err(BatchError::BadMagic { magic: h.magic });
    }
    let declared = LOG_OVERHEAD as i64 + h.batch_length as i64;
    if declared != batch.len() as i64 || h.batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: batch.len(),
        });
    }
    let computed = compute_crc(batch);
    if computed != h.crc {
        return Err(BatchError::BadCrc {
            stored: h.crc,
            computed,
        });
    }
    if h.compression() > 4 {
        return Err(BatchError::BadCompression {
            codec: h.compression(),
        });
    }
    if h.record_count < 0 || h.last_offset_delta < 0 {
        return Err(BatchError::BadCount {
            count: h.record_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Checks a batch as a producer sent it: besides [`validate`], a produced batch holds at least
/// one record and its offsets are contiguous from zero.
pub fn validate_produced(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = validate(batch)?;
    if h.record_count < 1 || h.last_offset_delta != h.record_count - 1 {
        return Err(BatchError::BadCount {
            count: h.record_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Writes the base offset; the CRC does not cover it, so nothing else changes.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the leader epoch the batch was appended under; the CRC does not cover it.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Writes the batch's max timestamp (for producers that left it -1) and recomputes the CRC.
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the record count and recomputes the CRC.
pub fn set_record_count(batch: &mut [u8], count: i32) {
    batch[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Marks the batch LogAppendTime with the broker's clock and recomputes the CRC, as Kafka does.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = i16_at(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A new batch with `header`'s fields (base offset, epochs, timestamps, producer, count) and
/// `records` as its record section, stored with compression `codec`; length and CRC are set.
pub fn rebuild(header: &[u8], codec: i16, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&header[..HEADER_BYTES]);
    out.extend_from_slice(records);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attrs = (i16_at(header, ATTRIBUTES) & !COMPRESSION_MASK) | (codec & COMPRESSION_MASK);
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// What lies at the start of a byte range that should hold batches back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A whole, valid batch of this many bytes.
    Batch(BatchHeader),
    /// Nothing more: the range is empty or only zero padding follows.
    End,
    /// A batch starts here but the range holds only part of it.
    Incomplete { needed: usize },
    /// The bytes here are not a valid batch.
    Corrupt(BatchError),
}

/// Looks at the next batch in `buf`, as recovery and fetch-by-position do.
pub fn scan(buf: &[u8]) -> Scan {
    if buf.is_empty() {
        return Scan::End;
    }
    if buf.len() < LOG_OVERHEAD {
        return if buf.iter().all(|b| *b == 0) {
            Scan::End
        } else {
            Scan::Incomplete {
                needed: LOG_OVERHEAD,
            }
        };
    }
    let batch_length = i32_at(buf, BATCH_LENGTH);
    if batch_length == 0 && i64_at(buf, BASE_OFFSET) == 0 {
        // Direct writes pad the last block with zeros; a zero length means padding.
        return Scan::End;
    }
    if batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return Scan::Corrupt(BatchError::LengthMismatch {
            declared: LOG_OVERHEAD as i64 + batch_length as i64,
            actual: buf.len(),
        });
    }
    let total = LOG_OVERHEAD + batch_length as usize;
    if buf.len() < total {
        return Scan::Incomplete { needed: total };
    }
    match validate(&buf[..total]) {
        Ok(h) => Scan::Batch(h),
        Err(e) => Scan::Corrupt(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid uncompressed batch with `count` empty-key records (test helper, also used
    /// by storage tests). Records are `attributes, timestamp delta, offset delta, key, value,
    /// headers` as varints; values are single bytes.
    pub fn make_batch(base_offset: i64, count: i32, ts: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let mut r = vec![0u8]; // attributes
            r.push(0); // timestamp delta 0 (zigzag)
            r.push((i as u8) << 1); // offset delta (zigzag, small)
            r.push(1); // key length -1 (zigzag)
            r.push(2); // value length 1
            r.push(b'a' + (i % 26) as u8);
            r.push(0); // no headers
            records.push((r.len() as u8) << 1);
            records.extend_from_slice(&r);
        }
        let mut b = vec![0u8; HEADER_BYTES];
        b[BASE_OFFSET..8].copy_from_slice(&base_offset.to_be_bytes());
        let len = (HEADER_BYTES - LOG_OVERHEAD + records.len()) as i32;
        b[BATCH_LENGTH..12].copy_from_slice(&len.to_be_bytes());
        b[LEADER_EPOCH..16].copy_from_slice(&(-1i32).to_be_bytes());
        b[MAGIC] = 2;
        b[LAST_OFFSET_DELTA..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[BASE_TIMESTAMP..35].copy_from_slice(&ts.to_be_bytes());
        b[MAX_TIMESTAMP..43].copy_from_slice(&ts.to_be_bytes());
        b[PRODUCER_ID..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[PRODUCER_EPOCH..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[BASE_SEQUENCE..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[RECORD_COUNT..61].copy_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = compute_crc(&b);
        b[CRC..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_round_trips_header() {
        let b = make_batch(0, 3, 1000);
        let h = validate_produced(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.total_bytes(), b.len());
        assert_eq!(h.max_timestamp, 1000);
        assert!(!h.is_log_append_time());
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let mut b = make_batch(0, 2, 5);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.next_offset(), 44);
    }

    #[test]
    fn log_append_time_sets_type_and_crc() {
        let mut b = make_batch(0, 2, 5);
        set_log_append_time(&mut b, 777);
        let h = validate(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 777);
    }

    #[test]
    fn every_corruption_is_caught() {
        let good = make_batch(0, 2, 5);
        type Mutate = fn(&mut Vec<u8>);
        let cases: &[(&str, Mutate)] = &[
            ("flip payload byte", |b| {
                let n = b.len() - 1;
                b[n] ^= 0xff
            }),
            ("flip crc", |b| b[CRC] ^= 1),
            ("magic 1", |b| b[MAGIC] = 1),
            ("truncate", |b| {
                b.pop();
            }),
            ("extra byte", |b| b.push(0)),
            ("header only", |b| b.truncate(40)),
            ("codec 7", |b| {
                b[ATTRIBUTES + 1] |= 7;
                let crc = compute_crc(b);
                b[CRC..21].copy_from_slice(&crc.to_be_bytes());
            }),
            ("count mismatch", |b| {
                b[RECORD_COUNT + 3] = 9;
                let crc = compute_crc(b);
                b[CRC..21].copy_from_slice(&crc.to_be_bytes());
            }),
        ];
        for (name, mutate) in cases {
            let mut b = good.clone();
            mutate(&mut b);
            assert!(validate_produced(&b).is_err(), "{name} not detected");
        }
    }

    #[test]
    fn scan_walks_batches_padding_and_torn_tails() {
        let a = make_batch(0, 2, 1);
        let b = make_batch(2, 1, 2);
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        match scan(&buf) {
            Scan::Batch(h) => assert_eq!(h.total_bytes(), a.len()),
            other => panic!("{other:?}"),
        }
        let rest = &buf[a.len()..];
        assert!(matches!(scan(rest), Scan::Batch(h) if h.base_offset == 2));
        assert_eq!(scan(&[]), Scan::End);
        assert_eq!(scan(&[0u8; 4096]), Scan::End);
        assert!(matches!(
            scan(&b[..b.len() - 3]),
            Scan::Incomplete { needed } if needed == b.len()
        ));
        let mut garbage = b.clone();
        garbage[30] ^= 0x55;
        assert!(matches!(
            scan(&garbage),
            Scan::Corrupt(BatchError::BadCrc { .. })
        ));
        assert!(matches!(scan(&[0xff; 100]), Scan::Corrupt(_)));
    }
}
