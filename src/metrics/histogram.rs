//! Latency histograms with fixed, Prometheus-style buckets: recording is a bucket search and
//! two `Cell` updates on the owning thread; samples of several shards add up bucket by bucket.

use std::cell::Cell;
use std::time::Duration;

/// Upper bounds of the buckets in nanoseconds (10 µs to 60 s); one more bucket above them.
pub const BOUNDS_NS: [u64; 21] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// Buckets including the one above the last bound (Prometheus' `+Inf`).
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// A histogram of one thread. Not `Sync`: only its shard records into it.
#[derive(Debug)]
pub struct Histogram {
    counts: [Cell<u64>; BUCKETS],
    sum_ns: Cell<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| Cell::new(0)),
            sum_ns: Cell::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn record_ns(&self, ns: u64) {
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        let c = &self.counts[i];
        c.set(c.get() + 1);
        self.sum_ns.set(self.sum_ns.get().saturating_add(ns));
    }

    pub fn sample(&self) -> HistogramSample {
        HistogramSample {
            counts: std::array::from_fn(|i| self.counts[i].get()),
            sum_ns: self.sum_ns.get(),
        }
    }
}

/// A histogram's counts at one moment, per bucket (not cumulative), and the sum of the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSample {
    pub counts: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl Default for HistogramSample {
    fn default() -> Self {
        HistogramSample {
            counts: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramSample {
    pub fn merge(&mut self, other: &HistogramSample) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Cumulative counts at each bound, then the total (`le="+Inf"`).
    pub fn cumulative(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts.iter().scan(0u64, |acc, c| {
            *acc += c;
            Some(*acc)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::default();
        h.record_ns(0);
        h.record_ns(10_000); // on the first bound: `le` is inclusive
        h.record_ns(10_001);
        h.record(Duration::from_millis(1));
        h.record(Duration::from_secs(3600));
        let s = h.sample();
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[1], 1);
        assert_eq!(
            s.counts[BOUNDS_NS.iter().position(|&b| b == 1_000_000).unwrap()],
            1
        );
        assert_eq!(s.counts[BUCKETS - 1], 1);
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum_ns, 10_000 + 10_001 + 1_000_000 + 3_600_000_000_000);
        let cum: Vec<u64> = s.cumulative().collect();
        assert_eq!(cum.len(), BUCKETS);
        assert!(cum.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*cum.last().unwrap(), 5);
    }

    #[test]
    fn samples_of_several_shards_add_up() {
        let (a, b) = (Histogram::default(), Histogram::default());
        for ns in [5_000, 70_000, 2_000_000_000] {
            a.record_ns(ns);
        }
        b.record_ns(70_000);
        let mut m = a.sample();
        m.merge(&b.sample());
        assert_eq!(m.count(), 4);
        assert_eq!(m.counts[3], 2);
        assert_eq!(m.sum_ns, 5_000 + 70_000 * 2 + 2_000_000_000);
    }
}
