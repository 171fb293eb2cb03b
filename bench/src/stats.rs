//! What a run counts and measures. Counters are shared atomics (read by the progress line);
//! latency histograms are owned by one thread each and merged when the run ends, so the hot
//! paths never contend on a lock. Broker errors are counted by Kafka error name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// Largest latency a histogram holds (one hour); larger samples saturate to it.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;
/// Significant decimal digits kept: 0.1% value resolution.
pub const LATENCY_SIGFIG: u8 = 3;

/// A latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts, so this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGFIG)
        .unwrap_or_else(|e| panic!("histogram bounds 1..{LATENCY_NS_MAX} rejected: {e}"))
}

/// Adds `from` into `into` (the per-thread histograms of one run become one).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<()> {
    into.add(from).context("merging latency histograms")
}

/// Records every record of a batch, spreading intended times evenly between first and last.
pub fn record_batch(h: &mut Histogram<u64>, first_ns: u64, last_ns: u64, count: u32, done_ns: u64) {
    let n = u64::from(count.max(1));
    let span = last_ns.saturating_sub(first_ns);
    for i in 0..n {
        let intended = first_ns + if n > 1 { span * i / (n - 1) } else { 0 };
        h.saturating_record(done_ns.saturating_sub(intended).max(1));
    }
}

/// Shared counters of one run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records handed to the socket (all, warm-up included).
    pub sent_records: AtomicU64,
    /// Records acknowledged without error (acks=0: written to the socket).
    pub acked_records: AtomicU64,
    pub acked_bytes: AtomicU64,
    /// Acknowledged records whose intended send time is after the warm-up.
    pub measured_acked_records: AtomicU64,
    pub measured_acked_bytes: AtomicU64,
    pub consumed_records: AtomicU64,
    pub consumed_bytes: AtomicU64,
    /// Records the broker answered with an error (never retried).
    pub error_records: AtomicU64,
    /// Error responses or failed requests, by Kafka error name.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Coordinator answers that were retried (after a back-off, or at a re-found coordinator),
    /// by Kafka error name: not failures, but each one is waiting.
    retries: Mutex<BTreeMap<String, u64>>,
    /// Transactions ended with a commit (all / started after the warm-up).
    pub committed_txns: AtomicU64,
    pub measured_committed_txns: AtomicU64,
    /// Transactions ended with an abort because one of their batches failed.
    pub aborted_txns: AtomicU64,
    /// Acknowledged records of aborted transactions (a read_committed consumer never sees them).
    pub aborted_records: AtomicU64,
    /// Records a read_committed consumer dropped as part of an aborted transaction.
    pub aborted_records_skipped: AtomicU64,
    /// Clock reading of the last commit.
    pub last_commit_ns: AtomicU64,
    /// Clock reading of the last acknowledgement / consumed batch.
    pub last_ack_ns: AtomicU64,
    pub last_consume_ns: AtomicU64,
    /// Backlog runs: partitions whose consumer has not yet read past the backlog's end.
    pub backlog_partitions_left: AtomicU64,
    /// Backlog runs: clock reading when the last partition's consumer read past the backlog's
    /// end (0 until then), and the records consumed by then.
    pub backlog_drained_ns: AtomicU64,
    pub backlog_drained_consumed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn touch(at: &AtomicU64, now_ns: u64) {
        at.fetch_max(now_ns, Ordering::Relaxed);
    }

    /// Sets `at` to `now_ns` unless it is set already.
    pub fn mark_once(at: &AtomicU64, now_ns: u64) {
        let _ = at.compare_exchange(0, now_ns.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Counts one error occurrence under `name`.
    pub fn error(&self, name: &str) {
        self.error_n(name, 1);
    }

    /// Counts `n` error occurrences under `name`.
    pub fn error_n(&self, name: &str, n: u64) {
        let mut map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(name.to_string()).or_insert(0) += n;
    }

    /// Counts one retried coordinator answer under `name`.
    pub fn retry(&self, name: &str) {
        self.retry_n(name, 1);
    }

    pub fn retry_n(&self, name: &str, n: u64) {
        let mut map = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(name.to_string()).or_insert(0) += n;
    }

    pub fn retries(&self) -> BTreeMap<String, u64> {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn error_total(&self) -> u64 {
        self.errors().values().sum()
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            p9999_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histogram_equals_one_fed_everything() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        let mut all = new_histogram();
        for v in 1..=10_000u64 {
            let ns = v * 997;
            if v % 3 == 0 { &mut a } else { &mut b }.record(ns).unwrap();
            all.record(ns).unwrap();
        }
        let mut merged = new_histogram();
        merge(&mut merged, &a).unwrap();
        merge(&mut merged, &b).unwrap();
        assert_eq!(merged.len(), 10_000);
        assert_eq!(LatencySummary::of(&merged), LatencySummary::of(&all));
        assert_eq!(merged.max(), all.max());
    }

    #[test]
    fn summary_percentiles_are_in_microseconds() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap(); // 1..1000 us
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn batch_latency_spreads_intended_times() {
        let mut h = new_histogram();
        record_batch(&mut h, 1_000, 2_000, 3, 5_000);
        assert_eq!(h.len(), 3);
        assert_eq!(h.max(), h.highest_equivalent(4_000));
        assert_eq!(h.min(), h.lowest_equivalent(3_000));
        // A clock that reads earlier than the intended time records 1 ns, not a wrap-around.
        record_batch(&mut h, 9_000, 9_000, 1, 5_000);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn errors_are_counted_by_name() {
        let c = Counters::default();
        c.error("NOT_LEADER_OR_FOLLOWER");
        c.error("NOT_LEADER_OR_FOLLOWER");
        c.error("REQUEST_TIMED_OUT");
        assert_eq!(c.error_total(), 3);
        assert_eq!(c.errors()["NOT_LEADER_OR_FOLLOWER"], 2);
        c.retry("CONCURRENT_TRANSACTIONS");
        assert_eq!(c.retries()["CONCURRENT_TRANSACTIONS"], 1);
        assert_eq!(c.error_total(), 3, "a retry is not an error");
    }
}
