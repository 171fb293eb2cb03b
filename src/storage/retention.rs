//! Which segments retention deletes: a pure decision over segment summaries, so every rule is
//! tested without a disk. The log applies it (`log.rs`), rolling first when the active segment
//! would go too.
//!
//! Kafka's rules (`UnifiedLog.deleteOldSegments`): segments go oldest first; by time when the
//! segment's largest timestamp is more than `retention_ms` old; by size while the log minus the
//! oldest segment still holds at least `retention_bytes`. An empty last segment never goes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub size_bytes: u64,
    /// Largest batch timestamp, or the file's mtime when the segment holds none.
    pub largest_timestamp_ms: i64,
}

/// How many segments, from the oldest, retention deletes.
pub fn deletable_count(
    segments: &[SegmentSummary],
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> usize {
    let candidates = match segments.last() {
        Some(last) if last.size_bytes == 0 => &segments[..segments.len() - 1],
        _ => segments,
    };
    let by_time = if retention_ms < 0 {
        0
    } else {
        candidates
            .iter()
            .take_while(|s| now_ms.saturating_sub(s.largest_timestamp_ms) > retention_ms)
            .count()
    };
    let by_size = if retention_bytes < 0 {
        0
    } else {
        let mut left: i64 = segments.iter().map(|s| s.size_bytes as i64).sum();
        candidates
            .iter()
            .take_while(|s| {
                let keep = left - s.size_bytes as i64 >= retention_bytes;
                if keep {
                    left -= s.size_bytes as i64;
                }
                keep
            })
            .count()
    };
    by_time.max(by_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(size_bytes: u64, largest_timestamp_ms: i64) -> SegmentSummary {
        SegmentSummary {
            size_bytes,
            largest_timestamp_ms,
        }
    }

    #[test]
    fn retention_rules() {
        let three = [seg(100, 1000), seg(100, 2000), seg(100, 3000)];
        let with_empty = [seg(100, 1000), seg(0, 0)];
        // (name, segments, now_ms, retention_ms, retention_bytes, deleted)
        type Case<'a> = (&'a str, &'a [SegmentSummary], i64, i64, i64, usize);
        let table: &[Case] = &[
            ("keep forever", &three, 10_000, -1, -1, 0),
            ("nothing old", &three, 1500, 1000, -1, 0),
            ("oldest is old", &three, 2500, 1000, -1, 1),
            ("exactly at limit stays", &three, 2000, 1000, -1, 0),
            ("all old", &three, 10_000, 1000, -1, 3),
            ("size fits", &three, 0, -1, 300, 0),
            ("size over by one segment", &three, 0, -1, 200, 1),
            ("size over by a bit", &three, 0, -1, 250, 0),
            ("size zero deletes all", &three, 0, -1, 0, 3),
            ("time then size", &three, 2500, 1000, 100, 2),
            ("empty active never goes", &with_empty, 10_000, 1, 0, 1),
            ("no segments", &[], 10_000, 1, 0, 0),
        ];
        for (name, segs, now, ms, bytes, want) in table {
            assert_eq!(deletable_count(segs, *now, *ms, *bytes), *want, "{name}");
        }
    }
}
