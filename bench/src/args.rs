//! Command-line knobs of the driver and their validation. Everything a run needs is decided
//! here, so the workers never see a string: acks become Kafka's i16, compression the codec id,
//! `--rate 0` / `unlimited` becomes `None`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

/// Smallest record the driver writes: the value carries an 8-byte send timestamp.
pub const RECORD_SIZE_MIN: usize = 8;

/// What the driver measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Producers only; produce-acknowledge latency.
    Produce,
    /// Fill a fresh topic, then consumers read it from the start; consume throughput.
    Consume,
    /// Producers and consumers together; produce and end-to-end latency.
    #[value(alias = "e2e")]
    EndToEnd,
    /// Fill `--backlog-bytes` first (not measured), then producers at `--rate` while consumers
    /// read from the start: produce and end-to-end latency, and how fast the backlog drains.
    Backlog,
}

pub use gregor::client::batch::Codec;

/// Which records a consumer's Fetch may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
pub enum IsolationLevel {
    /// Everything up to the high watermark, open and aborted transactions included.
    #[value(name = "read_uncommitted", alias = "read-uncommitted")]
    ReadUncommitted,
    /// Up to the last stable offset, without the records of aborted transactions.
    #[value(name = "read_committed", alias = "read-committed")]
    ReadCommitted,
}

impl IsolationLevel {
    /// Fetch's isolation_level field.
    pub fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "read_uncommitted",
            IsolationLevel::ReadCommitted => "read_committed",
        }
    }
}

/// How producers present themselves to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No producer id (the driver's default).
    Plain,
    /// A producer id and per-partition sequences.
    Idempotent,
    /// Idempotent, with transactions of this many records.
    Transactional(u64),
}

impl Mode {
    /// Name in tables and result files.
    pub fn name(self) -> String {
        match self {
            Mode::Plain => "plain".to_string(),
            Mode::Idempotent => "idempotent".to_string(),
            Mode::Transactional(n) => format!("txn{n}"),
        }
    }

    /// Suffix of topic and file names; none for plain, so those names stay as they were.
    pub fn suffix(self) -> String {
        match self {
            Mode::Plain => String::new(),
            Mode::Idempotent => "-idem".to_string(),
            Mode::Transactional(n) => format!("-txn{n}"),
        }
    }
}

/// Kafka's upper bound on unanswered requests per connection of an idempotent producer.
pub const IDEMPOTENT_IN_FLIGHT_MAX: usize = 5;

/// Load driver for Kafka-compatible brokers: produce, consume and end-to-end latency.
#[derive(Debug, Clone, Parser)]
#[command(name = "gregor-bench", version)]
pub struct Args {
    /// Bootstrap broker, host:port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic name prefix; each acks setting gets a fresh topic `<topic>-<run>-acks<a>`.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    #[arg(long, value_enum, default_value = "produce")]
    pub workload: Workload,
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Bytes of each record value (at least 8: the send timestamp).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Distinct keys; 0 = unkeyed records with sticky partitioning. Keyed records go to
    /// `murmur2(key) % partitions`, Kafka's default partitioner.
    #[arg(long, visible_alias = "keys", default_value_t = 0)]
    pub key_cardinality: u64,
    /// Bytes of each record key (keyed records only): the key number in decimal, zero-padded.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Configs of the created topic, `name=value` (comma separated), e.g.
    /// `segment.bytes=8388608,retention.bytes=33554432`.
    #[arg(long, value_delimiter = ',')]
    pub topic_config: Vec<String>,
    /// Backlog workload: bytes of record payload to write before the measured phase (e.g.
    /// 10GB, 200MB, 512MiB).
    #[arg(long, value_parser = parse_size, default_value = "1GB")]
    pub backlog_bytes: u64,
    /// Per-interval latency percentiles and broker RSS (e.g. 60s); off unless given.
    #[arg(long, value_parser = parse_duration)]
    pub report_interval: Option<Duration>,
    /// One or more of 0, 1, all (comma separated); each runs in turn on a fresh topic.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    pub acks: Vec<String>,
    /// Largest batch per partition, in bytes of encoded records (Kafka's batch.size).
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// How long an open batch may wait for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Codec,
    /// Producer threads; each has its own connection per leader.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer threads (consume and end-to-end workloads); partitions are split among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Unanswered produce requests allowed per connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Idempotent producers: a producer id from InitProducerId, sequences per partition.
    #[arg(long)]
    pub idempotent: bool,
    /// Transactional producers, one or more transaction sizes in records (comma separated);
    /// each runs in turn on a fresh topic, 0 = idempotent without transactions.
    #[arg(long, value_delimiter = ',')]
    pub transaction_records: Vec<u64>,
    /// Transactional ids are `<prefix>-<topic>-<producer>`.
    #[arg(long, default_value = "gregor-bench")]
    pub transactional_id_prefix: String,
    /// Transaction timeout sent with InitProducerId.
    #[arg(long, default_value_t = 60_000)]
    pub transaction_timeout_ms: i32,
    /// Consumers' Fetch isolation level.
    #[arg(long, value_enum, default_value = "read_uncommitted")]
    pub isolation_level: IsolationLevel,
    /// Records per second over all producers (open loop), or `unlimited`.
    #[arg(long, default_value = "unlimited")]
    pub rate: String,
    /// Measured time, after the warm-up (e.g. 30s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Records to produce in total (including warm-up), instead of --duration.
    #[arg(long)]
    pub records: Option<u64>,
    /// Time at the start whose samples and counts are not measured.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Largest produce request in bytes (Kafka's max.request.size).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_request_size: usize,
    /// Bytes of closed batches a producer may hold while its requests are in flight.
    #[arg(long, default_value_t = 32 << 20)]
    pub buffer_memory: usize,
    /// Broker-side wait of a fetch that finds nothing new.
    #[arg(long, default_value_t = 100)]
    pub fetch_max_wait_ms: i32,
    /// Most bytes one fetch may return for one partition.
    #[arg(long, default_value_t = 8 << 20)]
    pub fetch_partition_max_bytes: i32,
    /// How long consumers may take, after the producers stop, to see every record.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub drain_timeout: Duration,
    /// Broker process ids (comma separated, e.g. every node of a local cluster): their summed
    /// CPU use is reported next to the driver's.
    #[arg(long, value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
    /// Label of this broker in the outputs (e.g. gregor, tansu-memory).
    #[arg(long, default_value = "broker")]
    pub label: String,
    /// Directory for the .hgrm files, result.json and report.svg.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Keep the topics after each run instead of deleting them.
    #[arg(long)]
    pub keep_topics: bool,
    /// Progress line interval; 0 turns it off.
    #[arg(long, default_value_t = 1)]
    pub progress_secs: u64,
    /// Run nothing: draw one report from these result.json files (e.g. two brokers).
    #[arg(long, num_args = 1..)]
    pub report_from: Vec<PathBuf>,
    /// Title of the report chart; defaults to the label.
    #[arg(long)]
    pub title: Option<String>,
}

/// A validated run plan derived from [`Args`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub acks: Vec<i16>,
    /// Producer modes; each runs in turn for every acks setting.
    pub modes: Vec<Mode>,
    /// Records per second over all producers; `None` = as fast as acknowledgements allow.
    pub rate: Option<f64>,
    pub stop: Stop,
    /// Configs of the created topic.
    pub topic_configs: Vec<(String, String)>,
}

/// When producers stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After warm-up plus this long.
    After(Duration),
    /// After this many records in total.
    Records(u64),
}

impl Args {
    /// Checks every knob and derives the plan.
    pub fn plan(&self) -> Result<Plan> {
        if self.record_size < RECORD_SIZE_MIN {
            bail!("--record-size must be at least {RECORD_SIZE_MIN}");
        }
        if self.partitions < 1 || self.producers < 1 || self.max_in_flight < 1 {
            bail!("--partitions, --producers and --max-in-flight must be at least 1");
        }
        if self.consumers < 1 && self.workload != Workload::Produce {
            bail!("--consumers must be at least 1 for this workload");
        }
        if self.batch_size < self.record_size.min(1 << 10) {
            bail!("--batch-size is smaller than one record");
        }
        let acks = self
            .acks
            .iter()
            .map(|a| parse_acks(a))
            .collect::<Result<Vec<_>>>()?;
        let modes = self.modes();
        if modes.iter().any(|m| *m != Mode::Plain) {
            if acks.iter().any(|a| *a != -1) {
                bail!("--idempotent and --transaction-records need --acks all, as Kafka's producer does");
            }
            if self.max_in_flight > IDEMPOTENT_IN_FLIGHT_MAX {
                bail!("idempotent producers allow at most {IDEMPOTENT_IN_FLIGHT_MAX} requests in flight");
            }
        }
        if self.key_cardinality > 0 {
            let digits = key_digits(self.key_cardinality - 1);
            if self.key_size < digits {
                bail!(
                    "--key-size {} cannot hold {} distinct keys ({digits} digits)",
                    self.key_size,
                    self.key_cardinality
                );
            }
        }
        if self.workload == Workload::Backlog && self.backlog_bytes < self.record_size as u64 {
            bail!("--backlog-bytes is smaller than one record");
        }
        if self
            .report_interval
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            bail!("--report-interval must be at least 1s");
        }
        let topic_configs = self
            .topic_config
            .iter()
            .map(|c| parse_topic_config(c))
            .collect::<Result<Vec<_>>>()?;
        let stop = match (self.duration, self.records) {
            (Some(_), Some(_)) => bail!("give --duration or --records, not both"),
            (Some(d), None) => Stop::After(d),
            (None, Some(n)) => Stop::Records(n),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        Ok(Plan {
            acks,
            modes,
            rate: parse_rate(&self.rate)?,
            stop,
            topic_configs,
        })
    }
}

impl Args {
    fn modes(&self) -> Vec<Mode> {
        if self.transaction_records.is_empty() {
            return vec![if self.idempotent {
                Mode::Idempotent
            } else {
                Mode::Plain
            }];
        }
        self.transaction_records
            .iter()
            .map(|n| match n {
                0 => Mode::Idempotent,
                n => Mode::Transactional(*n),
            })
            .collect()
    }
}

/// `0`, `1` or `all` (also `-1`) to Kafka's acks value.
pub fn parse_acks(s: &str) -> Result<i16> {
    match s.trim() {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => bail!("--acks: {other:?} is not 0, 1 or all"),
    }
}

/// Kafka's spelling of an acks value, used in file names and tables.
pub fn acks_name(acks: i16) -> &'static str {
    match acks {
        0 => "0",
        1 => "1",
        _ => "all",
    }
}

/// `unlimited`, `0` or a positive number of records per second.
pub fn parse_rate(s: &str) -> Result<Option<f64>> {
    if s == "unlimited" {
        return Ok(None);
    }
    let r: f64 = s
        .parse()
        .with_context(|| format!("--rate {s:?} is not a number"))?;
    if !r.is_finite() || r < 0.0 {
        bail!("--rate must be positive");
    }
    Ok((r > 0.0).then_some(r))
}

/// Decimal digits of `n` (at least 1).
pub fn key_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// `name=value` of `--topic-config`.
pub fn parse_topic_config(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => bail!("--topic-config {s:?} is not name=value"),
    }
}

/// `10GB`, `200MB`, `512MiB`, `64KB` or a bare number of bytes (KB/MB/GB are powers of 10,
/// KiB/MiB/GiB powers of 2).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{s:?}: unit must be B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 0.0 {
        return Err(format!("{s:?} is not a size"));
    }
    Ok(bytes as u64)
}

/// `250ms`, `30s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_rate_and_durations_parse() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("0").unwrap(), 0);
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_rate("unlimited").unwrap(), None);
        assert_eq!(parse_rate("0").unwrap(), None);
        assert_eq!(parse_rate("5000").unwrap(), Some(5000.0));
        assert!(parse_rate("-3").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn sizes_keys_and_topic_configs_parse() {
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("200MB").unwrap(), 200_000_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(key_digits(0), 1);
        assert_eq!(key_digits(9_999), 4);
        assert_eq!(key_digits(10_000), 5);
        let args = Args::parse_from([
            "b",
            "--keys",
            "10000",
            "--key-size",
            "4",
            "--topic-config",
            "segment.bytes=1048576, retention.ms=60000",
        ]);
        let plan = args.plan().unwrap();
        assert_eq!(args.key_cardinality, 10_000);
        assert_eq!(
            plan.topic_configs,
            vec![
                ("segment.bytes".to_string(), "1048576".to_string()),
                ("retention.ms".to_string(), "60000".to_string())
            ]
        );
        let narrow = Args::parse_from(["b", "--keys", "10001", "--key-size", "4"]);
        assert!(narrow.plan().is_err());
        assert!(Args::parse_from(["b", "--topic-config", "x"])
            .plan()
            .is_err());
        let backlog = Args::parse_from(["b", "--workload", "backlog", "--backlog-bytes", "200MB"]);
        assert_eq!(backlog.backlog_bytes, 200_000_000);
        assert!(backlog.plan().is_ok());
    }

    #[test]
    fn plan_reads_acks_list_and_stop() {
        let args = Args::parse_from(["b", "--acks", "0,1,all", "--records", "10"]);
        let plan = args.plan().unwrap();
        assert_eq!(plan.acks, vec![0, 1, -1]);
        assert_eq!(plan.stop, Stop::Records(10));
        let both = Args::parse_from(["b", "--records", "1", "--duration", "1s"]);
        assert!(both.plan().is_err());
        assert_eq!(plan.modes, vec![Mode::Plain]);
    }

    #[test]
    fn transaction_sizes_become_modes_and_need_acks_all() {
        let args = Args::parse_from([
            "b",
            "--acks",
            "all",
            "--transaction-records",
            "0,100,1000",
            "--isolation-level",
            "read_committed",
        ]);
        let plan = args.plan().unwrap();
        assert_eq!(
            plan.modes,
            vec![
                Mode::Idempotent,
                Mode::Transactional(100),
                Mode::Transactional(1000)
            ]
        );
        assert_eq!(args.isolation_level.code(), 1);
        let names: Vec<String> = plan.modes.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["idempotent", "txn100", "txn1000"]);
        assert_eq!(Mode::Plain.suffix(), "");
        let idem = Args::parse_from(["b", "--acks", "all", "--idempotent"]);
        assert_eq!(idem.plan().unwrap().modes, vec![Mode::Idempotent]);
        assert_eq!(idem.isolation_level, IsolationLevel::ReadUncommitted);
        let acks1 = Args::parse_from(["b", "--acks", "1", "--transaction-records", "10"]);
        assert!(acks1.plan().is_err());
        let window =
            Args::parse_from(["b", "--acks", "all", "--idempotent", "--max-in-flight", "6"]);
        assert!(window.plan().is_err());
    }
}
