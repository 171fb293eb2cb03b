//! The result model of a run and its JSON file. Everything a report draws is in the JSON
//! (percentile curves and the throughput timeline included), so `--report-from` can redraw or
//! combine runs of several brokers without the histograms.
//!
//! Units: latencies in microseconds, throughput in records/s and MB/s with MB = 10^6 bytes of
//! record payload (key + value), as Kafka's perf tools count. Fields added after the first
//! files were written default when absent, so older files still read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cpu::CpuUse;
use crate::stats::LatencySummary;

/// Records and payload over a measured interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
}

impl Throughput {
    pub fn new(records: u64, bytes: u64, seconds: f64) -> Throughput {
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Throughput {
            records,
            bytes,
            seconds,
            records_per_s: per_s(records),
            mb_per_s: per_s(bytes) / 1e6,
        }
    }
}

/// One progress interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the phase started.
    pub t_s: f64,
    pub produced_mb_per_s: f64,
    pub produced_records_per_s: f64,
    pub consumed_mb_per_s: f64,
    pub consumed_records_per_s: f64,
    /// Resident memory of the broker processes (`--broker-pid`), MB = 10^6 bytes.
    #[serde(default)]
    pub broker_rss_mb: Option<f64>,
}

/// The knobs that shaped a run, repeated in each result so rows are self-describing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub workload: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub record_size: usize,
    pub key_cardinality: u64,
    /// Bytes of each key (keyed records).
    #[serde(default)]
    pub key_size: usize,
    /// Configs the topic was created with.
    #[serde(default)]
    pub topic_configs: Vec<(String, String)>,
    /// Backlog workload: payload bytes written before the measured phase.
    #[serde(default)]
    pub backlog_bytes: Option<u64>,
    pub compression: String,
    pub batch_size: usize,
    pub linger_ms: u64,
    pub producers: usize,
    pub consumers: usize,
    pub max_in_flight: usize,
    /// Records/s over all producers; `None` = unlimited.
    pub rate: Option<f64>,
    /// plain, idempotent or txn<N>.
    #[serde(default = "plain")]
    pub mode: String,
    /// Records per transaction (transactional runs).
    #[serde(default)]
    pub transaction_records: Option<u64>,
    /// The consumers' isolation level.
    #[serde(default = "read_uncommitted")]
    pub isolation_level: String,
}

fn plain() -> String {
    "plain".to_string()
}

fn read_uncommitted() -> String {
    "read_uncommitted".to_string()
}

/// What the transactions of a run came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TxnStats {
    pub committed: u64,
    /// Transactions aborted because one of their batches failed.
    pub aborted: u64,
    /// Acknowledged records of those transactions.
    pub aborted_records: u64,
    /// Commits after the warm-up: `records` counts transactions, `records_per_s` is commits/s.
    pub commits: Throughput,
}

/// The backlog of a backlog run and how the consumers got through it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BacklogStats {
    /// The fill before the measured phase (not measured for latency).
    pub fill: Throughput,
    /// Whether the consumers read past the backlog during the run (before producers stopped
    /// plus the drain timeout).
    pub drained: bool,
    /// From the start of the measured phase to the consumers reading past the backlog.
    pub drain_seconds: Option<f64>,
    /// Backlog payload over drain seconds when drained; else the payload consumed per second
    /// of the phase.
    pub drain_mb_per_s: f64,
    /// What the consumers read per second until they got past the backlog (backlog and the
    /// new records they read meanwhile); else the same as `drain_mb_per_s`.
    #[serde(default)]
    pub read_mb_per_s: f64,
    /// Records (backlog and new) the consumers had not read when they stopped.
    pub unread_records: u64,
}

/// Everything measured for one acks setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub label: String,
    pub acks: String,
    pub config: RunConfig,
    /// Acknowledged records after the warm-up (acks=0: written to the socket).
    pub produce: Throughput,
    pub consume: Option<Throughput>,
    pub produce_latency: LatencySummary,
    pub e2e_latency: Option<LatencySummary>,
    /// (percentile 0..100, microseconds) points of the distributions.
    pub produce_curve: Vec<[f64; 2]>,
    pub e2e_curve: Vec<[f64; 2]>,
    /// EndTxn commit round trips, one per transaction (transactional runs).
    #[serde(default)]
    pub commit_latency: Option<LatencySummary>,
    #[serde(default)]
    pub commit_curve: Vec<[f64; 2]>,
    #[serde(default)]
    pub transactions: Option<TxnStats>,
    /// Coordinator answers that were retried, by call and Kafka error name.
    #[serde(default)]
    pub retries: BTreeMap<String, u64>,
    /// Records a read_committed consumer dropped as part of an aborted transaction.
    #[serde(default)]
    pub aborted_records_skipped: u64,
    /// Error responses by Kafka error name; never retried.
    pub errors: BTreeMap<String, u64>,
    /// Records in batches the broker answered with an error.
    pub error_records: u64,
    /// Records produced without error that consumers never saw.
    pub missing_records: u64,
    pub driver_cpu: CpuUse,
    pub broker_cpu: Option<CpuUse>,
    pub timeline: Vec<Sample>,
    /// Per-interval percentiles and broker RSS (`--report-interval`).
    #[serde(default)]
    pub intervals: Vec<IntervalRow>,
    /// Backlog runs.
    #[serde(default)]
    pub backlog: Option<BacklogStats>,
    /// Records removed from the start of the topic's partitions during the run (retention).
    #[serde(default)]
    pub records_deleted: u64,
}

impl RunResult {
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The machine the run was on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
        }
    }
}

/// The JSON file of one driver invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    pub label: String,
    /// The command line that produced it.
    pub command: String,
    pub machine: Machine,
    pub runs: Vec<RunResult>,
}

impl ResultFile {
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<ResultFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }
}

/// (percentile, microseconds) points of a histogram, five per halving of the tail.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            [
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64 / 1000.0,
            ]
        })
        .collect()
}

/// Percentiles of one interval, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalLatency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// One interval of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalRow {
    /// Seconds since the end of warm-up.
    pub t_start_s: f64,
    pub t_end_s: f64,
    pub produce: IntervalLatency,
    pub e2e: IntervalLatency,
    /// The broker's resident memory at the last sample of the interval, and its largest.
    pub broker_rss_mb: Option<f64>,
    pub broker_rss_max_mb: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    fn sample_run() -> RunResult {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1_000).unwrap();
        }
        let mut errors = BTreeMap::new();
        errors.insert("NOT_LEADER_OR_FOLLOWER".to_string(), 2);
        RunResult {
            label: "gregor".into(),
            acks: "all".into(),
            config: RunConfig {
                workload: "end-to-end".into(),
                partitions: 12,
                record_size: 100,
                rate: Some(5e5),
                ..RunConfig::default()
            },
            produce: Throughput::new(2_000_000, 200_000_000, 2.0),
            consume: Some(Throughput::new(10, 1000, 0.5)),
            produce_latency: LatencySummary::of(&h),
            e2e_latency: None,
            produce_curve: percentile_curve(&h),
            e2e_curve: vec![],
            commit_latency: Some(LatencySummary::of(&h)),
            commit_curve: percentile_curve(&h),
            transactions: Some(TxnStats {
                committed: 20,
                aborted: 1,
                aborted_records: 100,
                commits: Throughput::new(20, 0, 2.0),
            }),
            retries: BTreeMap::from([("EndTxn: CONCURRENT_TRANSACTIONS".to_string(), 3)]),
            aborted_records_skipped: 0,
            errors,
            error_records: 40,
            missing_records: 0,
            driver_cpu: CpuUse::between(0.0, 1.0, 2.0),
            broker_cpu: None,
            timeline: vec![Sample {
                t_s: 1.0,
                produced_mb_per_s: 100.0,
                broker_rss_mb: Some(200.0),
                ..Sample::default()
            }],
            intervals: vec![IntervalRow {
                t_start_s: 0.0,
                t_end_s: 60.0,
                broker_rss_mb: Some(210.5),
                ..IntervalRow::default()
            }],
            backlog: Some(BacklogStats {
                fill: Throughput::new(10, 10_240, 1.0),
                drained: true,
                drain_seconds: Some(2.0),
                drain_mb_per_s: 0.005,
                read_mb_per_s: 0.006,
                unread_records: 0,
            }),
            records_deleted: 7,
        }
    }

    #[test]
    fn throughput_is_per_second_in_decimal_megabytes() {
        let t = Throughput::new(2_000_000, 200_000_000, 2.0);
        assert_eq!(t.records_per_s, 1_000_000.0);
        assert_eq!(t.mb_per_s, 100.0);
        assert_eq!(Throughput::new(5, 5, 0.0).records_per_s, 0.0);
    }

    #[test]
    fn result_json_round_trips_and_names_its_fields() {
        let file = ResultFile {
            label: "gregor".into(),
            command: "gregor-bench --acks all".into(),
            machine: Machine::here(),
            runs: vec![sample_run()],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        file.write(&path).unwrap();
        let back = ResultFile::read(&path).unwrap();
        assert_eq!(back, file);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let run = &v["runs"][0];
        assert_eq!(run["acks"], "all");
        assert_eq!(run["produce"]["records_per_s"], 1_000_000.0);
        assert_eq!(run["produce"]["mb_per_s"], 100.0);
        assert_eq!(run["errors"]["NOT_LEADER_OR_FOLLOWER"], 2);
        assert!(run["produce_latency"]["p99_us"].as_f64().unwrap() > 9_000.0);
        assert!(run["e2e_latency"].is_null());
        assert_eq!(back.runs[0].error_total(), 2);
        assert_eq!(run["transactions"]["commits"]["records_per_s"], 10.0);
        assert!(run["commit_latency"]["p99_us"].as_f64().unwrap() > 9_000.0);
    }

    #[test]
    fn files_written_before_transactions_still_read() {
        let mut v = serde_json::to_value(sample_run()).unwrap();
        let run = v.as_object_mut().unwrap();
        for k in [
            "commit_latency",
            "commit_curve",
            "transactions",
            "retries",
            "aborted_records_skipped",
            "intervals",
            "backlog",
            "records_deleted",
        ] {
            run.remove(k);
        }
        for s in run["timeline"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("broker_rss_mb");
        }
        let config = run["config"].as_object_mut().unwrap();
        for k in [
            "mode",
            "transaction_records",
            "isolation_level",
            "key_size",
            "topic_configs",
            "backlog_bytes",
        ] {
            config.remove(k);
        }
        let back: RunResult = serde_json::from_value(v).unwrap();
        assert_eq!(back.config.mode, "plain");
        assert_eq!(back.config.isolation_level, "read_uncommitted");
        assert!(back.transactions.is_none() && back.commit_latency.is_none());
        assert!(back.intervals.is_empty() && back.backlog.is_none());
        assert_eq!(back.timeline[0].broker_rss_mb, None);
    }

    #[test]
    fn curve_rises_to_the_max() {
        let run = sample_run();
        let c = &run.produce_curve;
        assert!(c.len() > 20);
        assert!(c
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
        let last = c.last().unwrap();
        assert_eq!(last[0], 100.0);
        assert!((last[1] - 10_000.0).abs() < 10.0);
    }
}
