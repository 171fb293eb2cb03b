//! The record-level half of compaction, pure code: walking the records of a RecordBatch v2 and
//! building the batch that keeps only some of them.
//!
//! Offsets never change: a kept record's bytes are copied as they are (its offset and timestamp
//! are deltas from the batch's unchanged base offset and base timestamp), and the rebuilt batch
//! keeps the original last offset delta, as Kafka's `MemoryRecords.filterTo` does, so producer
//! sequence bookkeeping still sees the whole batch. Only the record section is decompressed;
//! what is kept is compressed again with the batch's codec.

use thiserror::Error;

use crate::compression::{self, CodecError};
use crate::config::LogConfig;
use crate::record::{self, BatchHeader, HEADER_BYTES};

/// What the filter sees of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    /// None: a record without a key.
    pub key: Option<&'a [u8]>,
    /// None: a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// A record whose value is null (a tombstone).
    pub tombstone: bool,
    /// The record's bytes, length prefix included.
    pub raw: &'a [u8],
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record section malformed at byte {0}")]
    Malformed(usize),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A zig-zag varint (Kafka's `ByteUtils.readVarlong`), and where it ends.
fn varlong(b: &[u8], at: usize) -> Result<(i64, usize), RecordError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(at + i).ok_or(RecordError::Malformed(at))?;
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), at + i + 1));
        }
    }
    Err(RecordError::Malformed(at))
}

/// The records of an uncompressed record section, in order.
pub fn records(section: &[u8], base_offset: i64) -> Result<Vec<RecordView<'_>>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < section.len() {
        let start = at;
        let (len, body) = varlong(section, at)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| body.checked_add(l))
            .filter(|e| *e <= section.len())
            .ok_or(RecordError::Malformed(start))?;
        let rec = &section[..end];
        // attributes (1 byte), timestamp delta, offset delta, key, value
        let (_, p) = varlong(rec, body + 1)?;
        let (offset_delta, p) = varlong(rec, p)?;
        let (key_len, p) = varlong(rec, p)?;
        let (key, p) = if key_len < 0 {
            (None, p)
        } else {
            let e = p + key_len as usize;
            (Some(rec.get(p..e).ok_or(RecordError::Malformed(p))?), e)
        };
        let (value_len, p) = varlong(rec, p)?;
        let value = if value_len < 0 {
            None
        } else {
            Some(
                rec.get(p..p + value_len as usize)
                    .ok_or(RecordError::Malformed(p))?,
            )
        };
        out.push(RecordView {
            offset: base_offset + offset_delta,
            key,
            value,
            tombstone: value_len < 0,
            raw: &section[start..end],
        });
        at = end;
    }
    Ok(out)
}

/// The uncompressed record section of a batch.
pub fn record_section(batch: &[u8], header: &BatchHeader) -> Result<Vec<u8>, RecordError> {
    Ok(compression::decompress(
        header.compression(),
        &batch[HEADER_BYTES..],
    )?)
}

/// Every record of the batch has a key (what a compacted topic requires of produced batches).
pub fn all_keyed(batch: &[u8], header: &BatchHeader) -> Result<bool, RecordError> {
    let section = record_section(batch, header)?;
    Ok(records(&section, header.base_offset)?
        .iter()
        .all(|r| r.key.is_some()))
}

/// What became of a batch under a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays: the batch is kept byte for byte.
    Whole,
    /// Some records stay: the rebuilt batch.
    Part(Vec<u8>),
    /// No record stays.
    Gone,
}

/// Keeps the records `keep` accepts. A control batch is always kept whole (its records are
/// markers, not keyed data); a batch left with no record is `Gone`, unless `keep_empty`, in
/// which case an empty batch with the same offsets and producer fields stands in for it (Kafka
/// keeps the last batch of each idempotent producer that way).
pub fn filter_batch(
    batch: &[u8],
    header: &BatchHeader,
    config: &LogConfig,
    keep_empty: bool,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Filtered, RecordError> {
    if header.is_control() {
        return Ok(Filtered::Whole);
    }
    let section = record_section(batch, header)?;
    let all = records(&section, header.base_offset)?;
    let kept: Vec<&RecordView<'_>> = all.iter().filter(|r| keep(r)).collect();
    if kept.len() == all.len() {
        return Ok(Filtered::Whole);
    }
    if kept.is_empty() {
        if !keep_empty {
            return Ok(Filtered::Gone);
        }
        return Ok(Filtered::Part(with_count(
            record::rebuild(batch, 0, &[]),
            0,
        )));
    }
    let raw: Vec<u8> = kept.iter().flat_map(|r| r.raw.iter().copied()).collect();
    let codec = header.compression();
    let packed = compression::compress(codec, &raw, config)?;
    let rebuilt = record::rebuild(batch, codec, &packed);
    Ok(Filtered::Part(with_count(rebuilt, kept.len() as i32)))
}

/// Sets the record count and recomputes the CRC.
fn with_count(mut batch: Vec<u8>, count: i32) -> Vec<u8> {
    record::set_record_count(&mut batch, count);
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::batch::{encode_batch, ProducerRecord};
    use bytes::Bytes;
    use kafka_protocol::records::Compression;

    fn batch(recs: &[(Option<&str>, Option<&str>)], compression: Compression) -> Vec<u8> {
        let records: Vec<ProducerRecord> = recs
            .iter()
            .map(|(k, v)| ProducerRecord {
                key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                ..Default::default()
            })
            .collect();
        let mut b = encode_batch(&records, 0, compression).unwrap().to_vec();
        record::set_base_offset(&mut b, 100);
        b
    }

    #[test]
    fn records_are_walked_with_their_offsets_keys_and_tombstones() {
        for c in [Compression::None, Compression::Zstd, Compression::Lz4] {
            let b = batch(
                &[(Some("a"), Some("1")), (None, Some("2")), (Some("c"), None)],
                c,
            );
            let h = record::validate(&b).unwrap();
            let section = record_section(&b, &h).unwrap();
            let rs = records(&section, h.base_offset).unwrap();
            let seen: Vec<_> = rs.iter().map(|r| (r.offset, r.key, r.tombstone)).collect();
            assert_eq!(
                seen,
                vec![
                    (100, Some(&b"a"[..]), false),
                    (101, None, false),
                    (102, Some(&b"c"[..]), true)
                ]
            );
            assert!(!all_keyed(&b, &h).unwrap());
        }
    }

    #[test]
    fn a_filtered_batch_keeps_its_offsets_and_is_valid() {
        let config = LogConfig::default();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let b = batch(
                &[
                    (Some("a"), Some("1")),
                    (Some("b"), Some("2")),
                    (Some("a"), Some("3")),
                ],
                c,
            );
            let h = record::validate(&b).unwrap();
            let Filtered::Part(out) =
                filter_batch(&b, &h, &config, false, |r| r.offset != 100).unwrap()
            else {
                panic!("expected a rebuilt batch");
            };
            let oh = record::validate(&out).unwrap();
            assert_eq!(
                (oh.base_offset, oh.last_offset(), oh.record_count),
                (100, 102, 2)
            );
            assert_eq!(oh.compression(), h.compression());
            let section = record_section(&out, &oh).unwrap();
            let offsets: Vec<i64> = records(&section, oh.base_offset)
                .unwrap()
                .iter()
                .map(|r| r.offset)
                .collect();
            assert_eq!(offsets, vec![101, 102]);
            assert_eq!(
                filter_batch(&b, &h, &config, false, |_| true).unwrap(),
                Filtered::Whole
            );
            assert_eq!(
                filter_batch(&b, &h, &config, false, |_| false).unwrap(),
                Filtered::Gone
            );
            let Filtered::Part(empty) = filter_batch(&b, &h, &config, true, |_| false).unwrap()
            else {
                panic!("expected an empty batch");
            };
            let eh = record::validate(&empty).unwrap();
            assert_eq!(
                (eh.record_count, eh.last_offset(), eh.compression()),
                (0, 102, 0)
            );
        }
    }

    #[test]
    fn malformed_sections_are_errors_not_panics() {
        let b = batch(&[(Some("a"), Some("1"))], Compression::None);
        let h = record::validate(&b).unwrap();
        let section = record_section(&b, &h).unwrap();
        for cut in 0..section.len() {
            let _ = records(&section[..cut], 0);
        }
        assert!(records(&[0xff; 11], 0).is_err());
        assert!(records(&[0x7e], 0).is_err());
    }
}
