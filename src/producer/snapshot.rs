//! Producer state snapshots: `<20-digit offset>.snapshot` in the partition directory, in
//! Kafka's format v1 (a Kafka broker reads ours and we read its): version i16 (1), CRC-32C
//! u32 over everything after it, an i32 entry count, then per producer: producer id i64,
//! epoch i16, last sequence i32, last offset i64, offset delta i32, timestamp i64, coordinator
//! epoch i32, first offset of the open transaction i64 (-1: none).
//!
//! v1 keeps one batch per producer, so only a producer's last batch is recognised as a retry
//! right after a snapshot is loaded; the batches replayed from the log after the snapshot's
//! offset bring the rest back. The snapshot at offset N holds the state of every batch below N.

use super::state::SnapshotEntry;

pub const SUFFIX: &str = "snapshot";
const VERSION: i16 = 1;
const ENTRIES_AT: usize = 6;
const ENTRY_BYTES: usize = 46;

/// Why a snapshot file cannot be used (recovery then rebuilds from the log instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot of {len} bytes is too short")]
    TooShort { len: usize },
    #[error("unknown snapshot version {0}")]
    Version(i16),
    #[error("snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("snapshot says {count} entries in {len} bytes")]
    Count { count: i32, len: usize },
}

pub fn encode(entries: &[SnapshotEntry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(ENTRIES_AT + 4 + entries.len() * ENTRY_BYTES);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for e in entries {
        b.extend_from_slice(&e.producer_id.to_be_bytes());
        b.extend_from_slice(&e.epoch.to_be_bytes());
        b.extend_from_slice(&e.last_sequence.to_be_bytes());
        b.extend_from_slice(&e.last_offset.to_be_bytes());
        b.extend_from_slice(&e.offset_delta.to_be_bytes());
        b.extend_from_slice(&e.timestamp.to_be_bytes());
        b.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        b.extend_from_slice(&e.txn_first_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&b[ENTRIES_AT..]);
    b[2..ENTRIES_AT].copy_from_slice(&crc.to_be_bytes());
    b
}

fn be<const N: usize>(b: &[u8], at: &mut usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[*at..*at + N]);
    *at += N;
    a
}

pub fn decode(b: &[u8]) -> Result<Vec<SnapshotEntry>, SnapshotError> {
    if b.len() < ENTRIES_AT + 4 {
        return Err(SnapshotError::TooShort { len: b.len() });
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let stored = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
    let computed = crc32c::crc32c(&b[ENTRIES_AT..]);
    if stored != computed {
        return Err(SnapshotError::Crc { stored, computed });
    }
    let count = i32::from_be_bytes([b[6], b[7], b[8], b[9]]);
    let body = b.len() - ENTRIES_AT - 4;
    if count < 0 || body != count as usize * ENTRY_BYTES {
        return Err(SnapshotError::Count {
            count,
            len: b.len(),
        });
    }
    let mut at = ENTRIES_AT + 4;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        out.push(SnapshotEntry {
            producer_id: i64::from_be_bytes(be(b, &mut at)),
            epoch: i16::from_be_bytes(be(b, &mut at)),
            last_sequence: i32::from_be_bytes(be(b, &mut at)),
            last_offset: i64::from_be_bytes(be(b, &mut at)),
            offset_delta: i32::from_be_bytes(be(b, &mut at)),
            timestamp: i64::from_be_bytes(be(b, &mut at)),
            coordinator_epoch: i32::from_be_bytes(be(b, &mut at)),
            txn_first_offset: i64::from_be_bytes(be(b, &mut at)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<SnapshotEntry> {
        vec![
            SnapshotEntry {
                producer_id: 1,
                epoch: 0,
                last_sequence: 4,
                last_offset: 20,
                offset_delta: 2,
                timestamp: 1_700_000_000_000,
                coordinator_epoch: -1,
                txn_first_offset: -1,
            },
            SnapshotEntry {
                producer_id: i64::MAX,
                epoch: i16::MAX,
                last_sequence: -1,
                last_offset: -1,
                offset_delta: 0,
                timestamp: -1,
                coordinator_epoch: 9,
                txn_first_offset: 18,
            },
        ]
    }

    #[test]
    fn a_snapshot_round_trips_in_kafkas_layout() {
        let b = encode(&entries());
        assert_eq!(b.len(), 10 + 2 * 46);
        assert_eq!(&b[0..2], &[0, 1], "version 1");
        assert_eq!(&b[6..10], &[0, 0, 0, 2], "entry count");
        assert_eq!(decode(&b), Ok(entries()));
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let good = encode(&entries());
        let mut flipped = good.clone();
        flipped[30] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(SnapshotError::Crc { .. })));
        let mut version = good.clone();
        version[1] = 2;
        assert_eq!(decode(&version), Err(SnapshotError::Version(2)));
        assert!(matches!(
            decode(&good[..good.len() - 3]),
            Err(SnapshotError::Crc { .. })
        ));
        assert_eq!(decode(&good[..5]), Err(SnapshotError::TooShort { len: 5 }));
    }
}
