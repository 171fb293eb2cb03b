//! Text outputs: the per-run table and .hgrm percentile-distribution files (the format of
//! HdrHistogram's `outputPercentileDistribution`, readable by its online plotter), values in
//! milliseconds.
//!
//! Table rows: `produce` (mode: plain, idempotent, txn<N>), `commit` for transactional runs
//! (records/s holds commits per second, latencies are EndTxn round trips), and `consume` or
//! `e2e` (mode: the consumers' isolation level, committed or uncommitted). [`notes`] follow the
//! rows: the backlog of a backlog run, what retention deleted, and the per-interval table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::result::IntervalLatency;
use crate::result::RunResult;
use crate::stats::LatencySummary;

/// Header of the table [`table_rows`] fills.
pub fn table_header() -> String {
    format!(
        "{:<14} {:<10} {:>4} {:<11} {:<8} {:>11} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>6}",
        "label",
        "workload",
        "acks",
        "mode",
        "measure",
        "records/s",
        "MB/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9",
        "p99.99",
        "max ms",
        "errors",
        "drvCPU",
        "brkCPU"
    )
}

/// Table rows of one run: produce, commit for transactions, then consume and end-to-end where
/// measured.
pub fn table_rows(r: &RunResult) -> Vec<String> {
    let mode = match r.config.mode.as_str() {
        "" => "plain",
        m => m,
    };
    let t = &r.produce;
    let produce = (t.records_per_s, Some(t.mb_per_s));
    let mut rows = vec![row(r, mode, "produce", produce, Some(&r.produce_latency))];
    if let Some(x) = &r.transactions {
        let commits = (x.commits.records_per_s, None);
        rows.push(row(r, mode, "commit", commits, r.commit_latency.as_ref()));
    }
    if let Some(c) = &r.consume {
        let e2e = r.e2e_latency.as_ref();
        let what = if e2e.is_some() { "e2e" } else { "consume" };
        let isolation = match r.config.isolation_level.as_str() {
            "read_committed" => "committed",
            _ => "uncommitted",
        };
        rows.push(row(
            r,
            isolation,
            what,
            (c.records_per_s, Some(c.mb_per_s)),
            e2e,
        ));
    }
    rows
}

/// One row: `rate` is (per second, MB/s if it applies).
fn row(
    r: &RunResult,
    mode: &str,
    what: &str,
    rate: (f64, Option<f64>),
    lat: Option<&LatencySummary>,
) -> String {
    let ms = |v: f64| format!("{:.3}", v / 1000.0);
    let cols: [String; 6] = match lat.filter(|l| l.count > 0) {
        Some(l) => [
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.p9999_us),
            ms(l.max_us),
        ],
        None => Default::default(),
    };
    let cpu = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{:.0}%", c * 100.0));
    let mb = rate.1.map_or("-".to_string(), |m| format!("{m:.1}"));
    format!(
        "{:<14} {:<10} {:>4} {:<11} {:<8} {:>11.0} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>6}",
        r.label,
        r.config.workload,
        r.acks,
        mode,
        what,
        rate.0,
        mb,
        cols[0],
        cols[1],
        cols[2],
        cols[3],
        cols[4],
        cols[5],
        r.error_total() + r.missing_records,
        cpu(Some(r.driver_cpu.cores)),
        cpu(r.broker_cpu.map(|c| c.cores)),
    )
}

/// Lines under a run's rows: backlog, retention and per-interval figures, where the run has
/// them.
pub fn notes(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(b) = &r.backlog {
        let fill = &b.fill;
        let mb = fill.bytes as f64 / 1e6;
        out.push(format!(
            "  backlog: {mb:.0} MB ({} records) filled in {:.1}s ({:.1} MB/s)",
            fill.records, fill.seconds, fill.mb_per_s
        ));
        out.push(match b.drain_seconds {
            Some(s) => format!(
                "  backlog drained: every partition read past it {s:.1}s into the phase ({:.1} MB/s of backlog, {:.1} MB/s read) while producers wrote {:.1} MB/s",
                b.drain_mb_per_s, b.read_mb_per_s, r.produce.mb_per_s
            ),
            None => format!(
                "  backlog NOT drained: {} records unread when the consumers stopped (read {:.1} MB/s while producers wrote {:.1} MB/s)",
                b.unread_records, b.drain_mb_per_s, r.produce.mb_per_s
            ),
        });
        if b.drain_seconds.is_some() && b.unread_records > 0 {
            out.push(format!(
                "  {} records unread when the consumers stopped",
                b.unread_records
            ));
        }
    }
    if !r.config.topic_configs.is_empty() || r.records_deleted > 0 {
        let configs: Vec<String> = r
            .config
            .topic_configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push(format!(
            "  retention: {} records deleted from the partitions' start during the run (topic configs: {})",
            r.records_deleted,
            if configs.is_empty() { "none".to_string() } else { configs.join(",") }
        ));
    }
    if !r.intervals.is_empty() {
        out.push(format!(
            "  {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>9}",
            "from s", "to s", "prod p50", "p99", "p99.9", "e2e p50", "p99", "p99.9", "RSS MB"
        ));
        let ms = |l: &IntervalLatency, v: f64| match l.count {
            0 => "-".to_string(),
            _ => format!("{:.2}", v / 1000.0),
        };
        for i in &r.intervals {
            let (p, e) = (&i.produce, &i.e2e);
            out.push(format!(
                "  {:>8.0} {:>8.0} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>9}",
                i.t_start_s,
                i.t_end_s,
                ms(p, p.p50_us),
                ms(p, p.p99_us),
                ms(p, p.p999_us),
                ms(e, e.p50_us),
                ms(e, e.p99_us),
                ms(e, e.p999_us),
                i.broker_rss_mb
                    .map_or("-".to_string(), |m| format!("{m:.0}")),
            ));
        }
    }
    out
}

/// The .hgrm text of a nanosecond histogram, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    const NS_PER_MS: f64 = 1e6;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / NS_PER_MS;
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean(), h.stdev(), h.max() as f64)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        mean / NS_PER_MS,
        stdev / NS_PER_MS
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        max / NS_PER_MS,
        h.len()
    );
    out
}

/// Writes `h` as `<dir>/<name>.hgrm`; skips empty histograms.
pub fn write_hgrm(dir: &Path, name: &str, h: &Histogram<u64>) -> Result<()> {
    if h.is_empty() {
        return Ok(());
    }
    let path = dir.join(format!("{name}.hgrm"));
    std::fs::write(&path, hgrm(h)).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Throughput, TxnStats};
    use crate::stats::new_histogram;

    #[test]
    fn hgrm_has_header_rising_percentiles_and_footer() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000_000).unwrap(); // 1..1000 ms
        }
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(rows
            .windows(2)
            .all(|w| w[0][1] <= w[1][1] && w[0][2] <= w[1][2]));
        let last = rows.last().unwrap();
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 1000.0);
        assert!((last[0] - 1000.0).abs() < 1.0);
        assert!(text.contains("Total count    =         1000"));
    }

    #[test]
    fn table_rows_show_latency_in_ms_and_errors() {
        let mut r = RunResult {
            label: "gregor".into(),
            acks: "1".into(),
            ..RunResult::default()
        };
        r.produce = Throughput::new(1000, 1_000_000, 1.0);
        r.produce_latency.count = 1;
        r.produce_latency.p99_us = 1500.0;
        r.errors.insert("REQUEST_TIMED_OUT".into(), 3);
        let rows = table_rows(&r);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].contains("1.500"), "{}", rows[0]);
        assert!(rows[0].contains(" 3 "), "{}", rows[0]);
        assert!(rows[0].contains(" plain "), "{}", rows[0]);
        assert_eq!(table_header().len(), rows[0].len());
    }

    #[test]
    fn notes_show_backlog_retention_and_intervals() {
        use crate::result::BacklogStats;
        use crate::result::IntervalRow;
        let mut r = RunResult::default();
        assert!(notes(&r).is_empty());
        r.produce = Throughput::new(1000, 25_000_000, 1.0);
        r.backlog = Some(BacklogStats {
            fill: Throughput::new(500_000, 512_000_000, 4.0),
            drained: false,
            drain_seconds: None,
            drain_mb_per_s: 80.0,
            read_mb_per_s: 80.0,
            unread_records: 1234,
        });
        r.config.topic_configs = vec![("segment.bytes".into(), "1048576".into())];
        r.records_deleted = 99;
        r.intervals = vec![IntervalRow {
            t_start_s: 0.0,
            t_end_s: 60.0,
            produce: IntervalLatency {
                count: 3,
                p50_us: 1000.0,
                p99_us: 2500.0,
                p999_us: 12_000.0,
                max_us: 20_000.0,
            },
            broker_rss_mb: Some(420.0),
            ..IntervalRow::default()
        }];
        let lines = notes(&r);
        assert!(
            lines[0].contains("512 MB (500000 records) filled in 4.0s (128.0 MB/s)"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("NOT drained: 1234 records unread"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("99 records deleted") && lines[2].contains("segment.bytes=1048576")
        );
        let row: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            row,
            ["0", "60", "|", "1.00", "2.50", "12.00", "|", "-", "-", "-", "|", "420"]
        );
    }

    #[test]
    fn transactional_runs_get_a_commit_row_and_consumers_their_isolation() {
        let mut r = RunResult {
            label: "gregor".into(),
            acks: "all".into(),
            ..RunResult::default()
        };
        r.config.workload = "consume".into();
        r.config.mode = "txn100".into();
        r.config.isolation_level = "read_committed".into();
        r.produce = Throughput::new(1000, 1_000_000, 1.0);
        r.consume = Some(Throughput::new(900, 900_000, 1.0));
        r.transactions = Some(TxnStats {
            committed: 10,
            commits: Throughput::new(10, 0, 2.0),
            ..TxnStats::default()
        });
        r.commit_latency = Some(LatencySummary {
            count: 10,
            p99_us: 7_250.0,
            ..LatencySummary::default()
        });
        let rows = table_rows(&r);
        assert_eq!(rows.len(), 3);
        let cols: Vec<Vec<&str>> = rows
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(cols[0][3..5], ["txn100", "produce"]);
        assert_eq!(cols[1][3..7], ["txn100", "commit", "5", "-"]);
        assert_eq!(cols[1][9], "7.250", "{}", rows[1]);
        assert_eq!(cols[2][3..5], ["committed", "consume"]);
        assert!(rows.iter().all(|l| l.len() == table_header().len()));
    }
}
