//! Transaction markers: the control batch that ends a producer's transaction on a partition
//! (Kafka's EndTransactionMarker), built for WriteTxnMarkers and read back by producer state.
//!
//! A marker batch has the control and transactional attribute bits, the producer's id and
//! epoch, no sequence, and one uncompressed record: key = version i16 (0) + type i16 (0 abort,
//! 1 commit), value = version i16 (0) + coordinator epoch i32. Only control batches are ever
//! decoded here, never data batches.

use crate::record::{self, BatchHeader, HEADER_BYTES};

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

const ABORT: i16 = 0;
const COMMIT: i16 = 1;
/// Attributes of a marker batch: transactional (0x10) and control (0x20), no compression.
const MARKER_ATTRIBUTES: i16 = 0x30;

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a zigzag varint at `*at`, moving past it; None when the bytes end first.
fn get_varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        z |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// A marker batch for `producer_id`/`producer_epoch` (base offset 0, set on append).
pub fn build(producer_id: i64, producer_epoch: i16, marker: Marker, timestamp_ms: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&if marker.commit { COMMIT } else { ABORT }.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut body = vec![0u8]; // record attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0); // headers
    let mut rec = Vec::with_capacity(body.len() + 2);
    put_varint(&mut rec, body.len() as i64);
    rec.extend_from_slice(&body);

    let mut b = Vec::with_capacity(HEADER_BYTES + rec.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let len = (HEADER_BYTES - record::LOG_OVERHEAD + rec.len()) as i32;
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // record count
    b.extend_from_slice(&rec);
    let crc = record::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The marker a control batch carries; None for a data batch, a compressed or empty control
/// batch, or a control record of another type (Kafka has others, e.g. leader change).
pub fn parse(batch: &[u8]) -> Option<Marker> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.compression() != 0 || h.record_count < 1 {
        return None;
    }
    let mut at = HEADER_BYTES;
    let _len = get_varint(batch, &mut at)?;
    at += 1; // record attributes
    let _ts = get_varint(batch, &mut at)?;
    let _delta = get_varint(batch, &mut at)?;
    let key_len = get_varint(batch, &mut at)?;
    if key_len < 4 {
        return None;
    }
    let key = batch.get(at..at + 4)?;
    at += key_len as usize;
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let value_len = get_varint(batch, &mut at)?;
    // Kafka's reader takes the coordinator epoch from the value's bytes 2..6.
    let coordinator_epoch = match value_len {
        n if n >= 6 => {
            let v = batch.get(at..at + 6)?;
            i32::from_be_bytes([v[2], v[3], v[4], v[5]])
        }
        _ => return None,
    };
    match kind {
        ABORT => Some(Marker {
            commit: false,
            coordinator_epoch,
        }),
        COMMIT => Some(Marker {
            commit: true,
            coordinator_epoch,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_checks_out() {
        for (commit, epoch) in [(true, 0), (false, 7), (true, i32::MAX)] {
            let m = Marker {
                commit,
                coordinator_epoch: epoch,
            };
            let b = build(42, 3, m, 1_700_000_000_000);
            let h = record::validate(&b).expect("valid batch");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.record_count),
                (42, 3, 1)
            );
            assert_eq!(parse(&b), Some(m));
        }
    }

    #[test]
    fn data_batches_are_not_markers() {
        let b = crate::record::tests::make_batch(0, 2, 1);
        assert_eq!(parse(&b), None);
        let mut short = build(
            1,
            0,
            Marker {
                commit: true,
                coordinator_epoch: 1,
            },
            0,
        );
        short.truncate(HEADER_BYTES + 3);
        assert_eq!(parse(&short), None);
    }
}
