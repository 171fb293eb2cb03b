//! Sparse offset and time indexes of one segment, in Kafka's on-disk layout.
//!
//! Owns the in-memory entries and their encoding; the segment decides when to add an entry (one
//! per `index.interval.bytes` of log, as Kafka's `LogSegment.append` does) and when to persist.
//! `.index`: 8-byte entries (relative offset u32 BE, file position u32 BE), both strictly
//! increasing. `.timeindex`: 12-byte entries (timestamp i64 BE, relative offset u32 BE),
//! timestamps strictly increasing, offsets non-decreasing. Decoding checks every one of these,
//! so a file that breaks them is reported as inconsistent and rebuilt from the log.

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// Maps an offset to a file position at or before the batch holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    base_offset: i64,
    /// (relative offset of a batch's last record, position of that batch).
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn new(base_offset: i64) -> Self {
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Entries held; the segment rolls when this reaches segment.index.bytes / 8.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn append(&mut self, offset: i64, position: u32) {
        let rel = relative(self.base_offset, offset);
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            assert!(
                rel > last_rel && position > last_pos,
                "offset index of segment {} goes backwards: ({rel}, {position}) after \
                 ({last_rel}, {last_pos})",
                self.base_offset
            );
        }
        self.entries.push((rel, position));
    }

    /// The largest indexed (offset, position) with offset <= `offset`, else the segment start.
    /// Scanning batches from the returned position reaches the batch holding `offset`.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let n = self
            .entries
            .partition_point(|&(rel, _)| self.base_offset + rel as i64 <= offset);
        match n {
            0 => (self.base_offset, 0),
            _ => {
                let (rel, pos) = self.entries[n - 1];
                (self.base_offset + rel as i64, pos)
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(rel, pos) in &self.entries {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }

    /// Reads an index file's bytes; `log_bytes` is the size of the segment's log, which every
    /// position must lie inside. Errors say why the file cannot be trusted.
    pub fn decode(base_offset: i64, bytes: &[u8], log_bytes: u64) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return Err(format!("size {} is not a multiple of 8", bytes.len()));
        }
        let mut index = OffsetIndex::new(base_offset);
        for (i, e) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if pos as u64 >= log_bytes {
                return Err(format!(
                    "entry {i} points at {pos}, past the log ({log_bytes})"
                ));
            }
            if let Some(&(last_rel, last_pos)) = index.entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    return Err(format!("entry {i} ({rel}, {pos}) is not increasing"));
                }
            }
            index.entries.push((rel, pos));
        }
        Ok(index)
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        let &(rel, pos) = self.entries.last()?;
        Some((self.base_offset + rel as i64, pos))
    }
}

/// Maps a timestamp to an offset before which no batch reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    base_offset: i64,
    /// (largest timestamp so far, relative offset of the batch that carried it).
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn new(base_offset: i64) -> Self {
        TimeIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Entries held; the segment rolls when this reaches segment.index.bytes / 12.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Adds an entry only if `timestamp` is larger than the last one (Kafka's `maybeAppend`).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let rel = relative(self.base_offset, offset);
        match self.entries.last() {
            Some(&(last_ts, _)) if timestamp <= last_ts => {}
            Some(&(_, last_rel)) => {
                assert!(
                    rel >= last_rel,
                    "time index of segment {} goes backwards: offset {rel} after {last_rel}",
                    self.base_offset
                );
                self.entries.push((timestamp, rel));
            }
            None => self.entries.push((timestamp, rel)),
        }
    }

    /// An offset such that every batch before its batch has max timestamp < `timestamp`.
    pub fn lookup_before(&self, timestamp: i64) -> Option<i64> {
        let n = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        (n > 0).then(|| self.base_offset + self.entries[n - 1].1 as i64)
    }

    /// The segment's largest timestamp once it is sealed (a final entry is added then).
    pub fn last_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|&(ts, _)| ts)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(ts, rel) in &self.entries {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        out
    }

    /// Reads a time index file's bytes; every offset must be below `next_offset`.
    pub fn decode(base_offset: i64, bytes: &[u8], next_offset: i64) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return Err(format!("size {} is not a multiple of 12", bytes.len()));
        }
        let mut index = TimeIndex::new(base_offset);
        for (i, e) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            if base_offset + rel as i64 >= next_offset {
                return Err(format!("entry {i} offset {rel} is past the segment"));
            }
            if let Some(&(last_ts, last_rel)) = index.entries.last() {
                if ts <= last_ts || rel < last_rel {
                    return Err(format!("entry {i} ({ts}, {rel}) is not increasing"));
                }
            }
            index.entries.push((ts, rel));
        }
        Ok(index)
    }
}

fn relative(base_offset: i64, offset: i64) -> u32 {
    let rel = offset - base_offset;
    assert!(
        (0..=u32::MAX as i64).contains(&rel),
        "offset {offset} does not fit segment {base_offset}"
    );
    rel as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::new(100);
        idx.append(105, 400);
        idx.append(120, 9000);
        let table = [
            (100, (100, 0)),
            (104, (100, 0)),
            (105, (105, 400)),
            (119, (105, 400)),
            (500, (120, 9000)),
        ];
        for (target, want) in table {
            assert_eq!(idx.lookup(target), want, "target {target}");
        }
        let back = OffsetIndex::decode(100, &idx.encode(), 10_000).unwrap();
        assert_eq!(back, idx);
    }

    #[test]
    fn offset_decode_rejects_inconsistent_files() {
        let mut idx = OffsetIndex::new(0);
        idx.append(5, 100);
        idx.append(9, 300);
        let good = idx.encode();
        let mut swapped = good[8..].to_vec();
        swapped.extend_from_slice(&good[..8]);
        let cases: &[(&str, Vec<u8>, u64)] = &[
            ("odd size", good[..7].to_vec(), 1000),
            ("past the log", good.clone(), 300),
            ("not increasing", swapped, 1000),
        ];
        for (name, bytes, log_bytes) in cases {
            assert!(OffsetIndex::decode(0, bytes, *log_bytes).is_err(), "{name}");
        }
        assert!(OffsetIndex::decode(0, &good, 301).is_ok());
    }

    #[test]
    fn time_index_keeps_only_increasing_timestamps() {
        let mut t = TimeIndex::new(10);
        t.maybe_append(1000, 12);
        t.maybe_append(900, 15);
        t.maybe_append(1000, 16);
        t.maybe_append(2000, 20);
        assert_eq!(t.entry_count(), 2);
        assert_eq!(t.last_timestamp(), Some(2000));
        assert_eq!(t.lookup_before(1000), None);
        assert_eq!(t.lookup_before(1001), Some(12));
        assert_eq!(t.lookup_before(5000), Some(20));
        let back = TimeIndex::decode(10, &t.encode(), 21).unwrap();
        assert_eq!(back, t);
        assert!(TimeIndex::decode(10, &t.encode(), 20).is_err());
        assert!(TimeIndex::decode(10, &t.encode()[..13], 21).is_err());
    }
}
