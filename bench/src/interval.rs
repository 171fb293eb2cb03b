//! Per-interval latency for long runs (`--report-interval`): produce and end-to-end
//! percentiles of each interval of the measured phase, next to the broker's resident memory, so
//! a soak shows step changes in the tail or memory growth at a glance.
//!
//! Each recording thread owns an [`IntervalHist`] holding the histogram of the interval it is
//! in; when a sample falls in a later interval (and when the thread ends) that histogram is
//! added to the shared [`IntervalSink`], one histogram per interval and measure. The hot paths
//! take the sink's lock once per interval per thread. A sample's interval is the one its
//! completion time (acknowledgement, consumption) falls in, counted from the end of warm-up;
//! samples completing after the measured phase ended (the last acknowledgements and
//! consumption) count in its last interval.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use crate::result::{IntervalLatency, IntervalRow, Sample};
use crate::stats::{self, LATENCY_NS_MAX};

/// Interval histograms keep 2 significant digits (1%): a tenth of the memory of the run's
/// histograms, as a long run holds one per interval and measure.
const INTERVAL_SIGFIG: u8 = 2;

/// Which latency a histogram holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Produce,
    EndToEnd,
}

fn new_interval_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, INTERVAL_SIGFIG)
        .unwrap_or_else(|e| panic!("histogram bounds 1..{LATENCY_NS_MAX} rejected: {e}"))
}

/// Index of the interval `at_ns` falls in; `None` before `start_ns`.
pub fn bucket(start_ns: u64, interval_ns: u64, at_ns: u64) -> Option<usize> {
    (at_ns >= start_ns && interval_ns > 0).then(|| ((at_ns - start_ns) / interval_ns) as usize)
}

/// The per-interval histograms of one phase, shared by its recording threads.
#[derive(Debug)]
pub struct IntervalSink {
    /// End of warm-up: interval 0 starts here.
    pub start_ns: u64,
    pub interval_ns: u64,
    /// The interval the phase's end falls in, when the end is known (`--duration`).
    last: Option<usize>,
    produce: Mutex<Vec<Histogram<u64>>>,
    e2e: Mutex<Vec<Histogram<u64>>>,
}

impl IntervalSink {
    /// Intervals of `interval_ns` from `start_ns`; a phase ending at `end_ns` has its last
    /// interval cut there.
    pub fn new(start_ns: u64, interval_ns: u64, end_ns: Option<u64>) -> Arc<IntervalSink> {
        let interval_ns = interval_ns.max(1);
        let last = end_ns.and_then(|e| bucket(start_ns, interval_ns, e.saturating_sub(1)));
        Arc::new(IntervalSink {
            start_ns,
            interval_ns,
            last,
            produce: Mutex::new(Vec::new()),
            e2e: Mutex::new(Vec::new()),
        })
    }

    fn slot(&self, m: Measure) -> &Mutex<Vec<Histogram<u64>>> {
        match m {
            Measure::Produce => &self.produce,
            Measure::EndToEnd => &self.e2e,
        }
    }

    fn add(&self, m: Measure, idx: usize, h: &Histogram<u64>) {
        let mut all = self.slot(m).lock().unwrap_or_else(|p| p.into_inner());
        while all.len() <= idx {
            all.push(new_interval_histogram());
        }
        // Same bounds and precision on both sides, so adding cannot fail.
        let _ignored = all[idx].add(h);
    }

    /// Whether interval `i` is part of the phase (every interval is, when the end is unknown).
    pub fn within(&self, i: usize) -> bool {
        self.last.is_none_or(|last| i <= last)
    }

    /// A recorder for one thread.
    pub fn recorder(self: &Arc<Self>, m: Measure) -> IntervalHist {
        IntervalHist {
            sink: self.clone(),
            measure: m,
            idx: 0,
            cur: new_interval_histogram(),
        }
    }

    /// Percentiles of interval `idx` so far (empty when nothing was added).
    pub fn summary(&self, m: Measure, idx: usize) -> IntervalLatency {
        let all = self.slot(m).lock().unwrap_or_else(|p| p.into_inner());
        all.get(idx)
            .map_or_else(IntervalLatency::default, IntervalLatency::of)
    }

    /// Intervals with at least one sample of either measure.
    fn len(&self) -> usize {
        let n = |m| self.slot(m).lock().unwrap_or_else(|p| p.into_inner()).len();
        n(Measure::Produce).max(n(Measure::EndToEnd))
    }

    /// The rows of the report: every interval from warm-up end to `end_ns` (and any later one
    /// with samples), with the broker's RSS taken from the progress samples (`wall_start_ns`:
    /// the clock reading of t_s = 0).
    pub fn rows(&self, end_ns: u64, timeline: &[Sample], wall_start_ns: u64) -> Vec<IntervalRow> {
        let last =
            bucket(self.start_ns, self.interval_ns, end_ns.saturating_sub(1)).map_or(0, |b| b + 1);
        (0..last.max(self.len()))
            .map(|i| self.row(i, end_ns, timeline, wall_start_ns))
            .collect()
    }

    /// Row `i`; an interval past `end_ns` is cut there (the phase's last one).
    pub fn row(
        &self,
        i: usize,
        end_ns: u64,
        timeline: &[Sample],
        wall_start_ns: u64,
    ) -> IntervalRow {
        let from = self.start_ns + i as u64 * self.interval_ns;
        let to = (from + self.interval_ns).min(end_ns.max(from + 1));
        let rss = rss_in(timeline, wall_start_ns, from, to);
        IntervalRow {
            t_start_s: (from - self.start_ns) as f64 / 1e9,
            t_end_s: (to - self.start_ns) as f64 / 1e9,
            produce: self.summary(Measure::Produce, i),
            e2e: self.summary(Measure::EndToEnd, i),
            broker_rss_mb: rss.map(|r| r.0),
            broker_rss_max_mb: rss.map(|r| r.1),
        }
    }
}

/// (last, max) broker RSS of the samples taken in `[from_ns, to_ns)`.
pub fn rss_in(
    timeline: &[Sample],
    wall_start_ns: u64,
    from_ns: u64,
    to_ns: u64,
) -> Option<(f64, f64)> {
    let mut out: Option<(f64, f64)> = None;
    for s in timeline {
        let at = wall_start_ns + (s.t_s * 1e9) as u64;
        if at < from_ns || at >= to_ns {
            continue;
        }
        if let Some(mb) = s.broker_rss_mb {
            out = Some(out.map_or((mb, mb), |(_, max)| (mb, max.max(mb))));
        }
    }
    out
}

/// One thread's histogram of the interval it is recording in.
#[derive(Debug)]
pub struct IntervalHist {
    sink: Arc<IntervalSink>,
    measure: Measure,
    idx: usize,
    cur: Histogram<u64>,
}

impl IntervalHist {
    /// Moves to the interval of `at_ns`; false before the first interval (warm-up).
    fn enter(&mut self, at_ns: u64) -> bool {
        let Some(idx) = bucket(self.sink.start_ns, self.sink.interval_ns, at_ns) else {
            return false;
        };
        let idx = self.sink.last.map_or(idx, |last| idx.min(last));
        if idx != self.idx {
            self.flush();
            self.idx = idx;
        }
        true
    }

    /// One latency sample completed at `at_ns`.
    pub fn record(&mut self, at_ns: u64, latency_ns: u64) {
        if self.enter(at_ns) {
            self.cur.saturating_record(latency_ns.max(1));
        }
    }

    /// A batch completed at `at_ns`, intended times spread as [`stats::record_batch`] does.
    pub fn record_batch(&mut self, first_ns: u64, last_ns: u64, count: u32, at_ns: u64) {
        if self.enter(at_ns) {
            stats::record_batch(&mut self.cur, first_ns, last_ns, count, at_ns);
        }
    }

    /// Adds what this thread holds to the sink.
    pub fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.sink.add(self.measure, self.idx, &self.cur);
            self.cur.reset();
        }
    }
}

impl Drop for IntervalHist {
    fn drop(&mut self) {
        self.flush();
    }
}

impl IntervalLatency {
    pub fn of(h: &Histogram<u64>) -> IntervalLatency {
        if h.is_empty() {
            return IntervalLatency::default();
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        IntervalLatency {
            count: h.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1000.0,
        }
    }
}

/// The progress line of one finished interval.
pub fn line(tag: &str, i: usize, row: &IntervalRow) -> String {
    let ms = |v: f64| v / 1000.0;
    let lat = |l: &IntervalLatency| match l.count {
        0 => "-".to_string(),
        _ => format!(
            "p50 {:.2} p99 {:.2} p99.9 {:.2} ms",
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.p999_us)
        ),
    };
    let rss = row
        .broker_rss_mb
        .map_or(String::new(), |r| format!(" | broker RSS {r:.0} MB"));
    format!(
        "[{tag}] interval {i} ({:.0}-{:.0}s): produce {} | e2e {}{rss}",
        row.t_start_s,
        row.t_end_s,
        lat(&row.produce),
        lat(&row.e2e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fall_in_the_interval_of_their_completion() {
        assert_eq!(bucket(1_000, 100, 999), None);
        assert_eq!(bucket(1_000, 100, 1_000), Some(0));
        assert_eq!(bucket(1_000, 100, 1_099), Some(0));
        assert_eq!(bucket(1_000, 100, 1_100), Some(1));
        assert_eq!(bucket(1_000, 100, 1_950), Some(9));
    }

    #[test]
    fn threads_add_their_intervals_to_the_sink() {
        let sink = IntervalSink::new(1_000_000, 1_000_000, None);
        let mut a = sink.recorder(Measure::Produce);
        let mut b = sink.recorder(Measure::Produce);
        a.record(500_000, 7); // warm-up: not counted
        for i in 0..100u64 {
            a.record(1_000_000 + i, 1_000 * (i + 1)); // interval 0: 1..100 us
            b.record(2_500_000 + i, 50_000); // interval 1: 50 us
        }
        a.record_batch(3_000_000, 3_000_000, 10, 3_100_000); // interval 2: 10 x 100 ns
        drop(a);
        drop(b);
        let i0 = sink.summary(Measure::Produce, 0);
        assert_eq!(i0.count, 100);
        assert!((i0.p50_us - 50.0).abs() < 1.0, "{i0:?}");
        assert!((i0.p99_us - 99.0).abs() < 1.5, "{i0:?}");
        let i1 = sink.summary(Measure::Produce, 1);
        assert_eq!(i1.count, 100);
        assert!((i1.p999_us - 50.0).abs() < 0.5, "{i1:?}");
        assert_eq!(sink.summary(Measure::Produce, 2).count, 10);
        assert_eq!(sink.summary(Measure::EndToEnd, 0).count, 0);
        // Rows cover the phase to its end, even intervals without samples.
        let rows = sink.rows(5_500_000, &[], 0);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[4].t_start_s, 0.004);
        assert_eq!(rows[4].t_end_s, 0.0045);
        assert_eq!(rows[3].produce.count, 0);
        assert!(rows[0].broker_rss_mb.is_none());
    }

    #[test]
    fn samples_after_the_end_count_in_the_last_interval() {
        let sink = IntervalSink::new(0, 100, Some(250));
        let mut a = sink.recorder(Measure::EndToEnd);
        a.record(120, 5_000);
        a.record(260, 6_000); // after the end: interval 2 (200-250)
        a.record(999, 7_000);
        drop(a);
        let rows = sink.rows(250, &[], 0);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].e2e.count, 1);
        assert_eq!(rows[2].e2e.count, 2);
        assert_eq!(rows[2].t_end_s, 250e-9);
    }

    #[test]
    fn rss_of_an_interval_is_its_last_and_largest_sample() {
        let s = |t_s: f64, mb: Option<f64>| Sample {
            t_s,
            broker_rss_mb: mb,
            ..Sample::default()
        };
        let timeline = [
            s(1.0, Some(100.0)),
            s(2.0, Some(180.0)),
            s(3.0, Some(150.0)),
            s(4.0, None),
            s(5.0, Some(90.0)),
        ];
        // t_s = 0 at 10 s; the interval [11 s, 14 s) holds the first three samples.
        let sec = 1_000_000_000u64;
        assert_eq!(
            rss_in(&timeline, 10 * sec, 11 * sec, 14 * sec),
            Some((150.0, 180.0))
        );
        assert_eq!(rss_in(&timeline, 10 * sec, 14 * sec, 15 * sec), None);
        assert_eq!(
            rss_in(&timeline, 10 * sec, 14 * sec, 16 * sec),
            Some((90.0, 90.0))
        );
    }

    #[test]
    fn interval_line_shows_milliseconds_and_rss() {
        let row = IntervalRow {
            t_start_s: 60.0,
            t_end_s: 120.0,
            produce: IntervalLatency {
                count: 5,
                p50_us: 1_500.0,
                p99_us: 2_000.0,
                p999_us: 9_000.0,
                max_us: 9_000.0,
            },
            broker_rss_mb: Some(312.4),
            ..IntervalRow::default()
        };
        let l = line("gregor acks=1", 1, &row);
        assert!(l.contains("interval 1 (60-120s)"), "{l}");
        assert!(l.contains("p99.9 9.00 ms"), "{l}");
        assert!(l.contains("e2e -"), "{l}");
        assert!(l.ends_with("broker RSS 312 MB"), "{l}");
    }
}
