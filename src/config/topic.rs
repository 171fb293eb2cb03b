//! Topic-level settings: every config Kafka 4 defines for a topic, with its broker-level default
//! and Kafka's validation rules and messages.
//!
//! A topic keeps its overrides as strings in the metadata; [`LogConfig::resolve`] applies them
//! to the broker defaults. Values are checked here exactly once, when a topic is created (or
//! the broker starts), so the resolved config of a stored topic always parses.

use std::collections::BTreeMap;

use super::{invalid, ConfigError};

/// How record timestamps are set: by the producer or by the broker at append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The codec batches are stored with (`compression.type`). `Producer` keeps what the producer
/// sent; anything else makes the broker recompress batches that differ, as Kafka does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    /// Kafka's names, in the order Kafka lists them in its validation message.
    const NAMES: &'static [(&'static str, CompressionType)] = &[
        ("uncompressed", CompressionType::Uncompressed),
        ("zstd", CompressionType::Zstd),
        ("lz4", CompressionType::Lz4),
        ("snappy", CompressionType::Snappy),
        ("gzip", CompressionType::Gzip),
        ("producer", CompressionType::Producer),
    ];

    pub fn name(self) -> &'static str {
        CompressionType::NAMES
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("producer", |(n, _)| n)
    }

    /// The RecordBatch attribute bits (0-4) of this codec; None for `producer`.
    pub fn attribute(self) -> Option<i16> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
        }
    }
}

/// The settings a partition log needs, resolved from broker defaults and topic overrides.
///
/// Some are acted on by subsystems that do not exist yet (the cleaner, replication); they are
/// validated and stored now so that topics created today keep them when those land.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// Random extra age, up to this, before a time-based roll (spreads rolls of many logs).
    pub segment_jitter_ms: i64,
    /// Largest offset index of a segment; a segment rolls when its index would outgrow it.
    pub segment_index_bytes: u32,
    /// -1 means keep forever.
    pub retention_ms: i64,
    /// -1 means no size limit.
    pub retention_bytes: i64,
    pub index_interval_bytes: u32,
    /// Largest record batch accepted, in bytes (Kafka's max.message.bytes).
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    /// CreateTime timestamps older than now minus this are refused (INVALID_TIMESTAMP).
    pub timestamp_before_max_ms: i64,
    /// CreateTime timestamps newer than now plus this are refused (INVALID_TIMESTAMP).
    pub timestamp_after_max_ms: i64,
    /// fdatasync after this many messages; None relies on direct writes alone.
    pub flush_messages: Option<u64>,
    /// fdatasync when the oldest unsynced write is this old; None relies on direct writes alone.
    pub flush_ms: Option<u64>,
    /// `delete`, `compact`, or both, comma-separated.
    pub cleanup_policy: String,
    pub compression_type: CompressionType,
    /// -1 is zlib's default level.
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
    /// acks=all needs at least this many in-sync replicas (NOT_ENOUGH_REPLICAS otherwise).
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// How long deleted segment files linger before they are unlinked.
    pub file_delete_delay_ms: i64,
    /// Reserve a whole segment's blocks when it is created.
    pub preallocate: bool,
    pub leader_replication_throttled_replicas: String,
    pub follower_replication_throttled_replicas: String,
    /// Tiered storage is not built; `true` is refused as Kafka refuses it on a broker without it.
    pub remote_storage_enable: bool,
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    pub remote_log_copy_disable: bool,
    pub remote_log_delete_on_disable: bool,
    /// Kafka's broker-level `producer.id.expiration.ms`: a producer with no transaction open
    /// and no batch newer than this is forgotten (the partition log checks it periodically).
    /// Kafka has no topic-level twin; it rides here so each log has it.
    pub producer_id_expiration_ms: i64,
    /// gregor's `log.segment.allocate.ahead.bytes` (broker level, no topic twin): the writer
    /// keeps the active segment's file allocated and sized this far ahead of its write
    /// position, extending it by this much at a time (never past segment.bytes), so direct
    /// writes overwrite allocated blocks inside the file size instead of growing the file
    /// (which io_uring cannot complete without a worker thread). 0 turns it off. Unlike
    /// `preallocate` (a whole segment, without changing the file size) it moves the file's
    /// size; sealing trims the file back to its data.
    pub allocate_ahead_bytes: u64,
    /// gregor's `log.segment.allocate.ahead.zero`: writes also zero-fill the allocated window
    /// ahead of the data (1 MiB at a time), so later writes land on written blocks rather than
    /// unwritten extents, which a direct write can only convert from a kernel worker thread.
    pub allocate_ahead_zero: bool,
    /// Bounds on per-client tables (`producer.state.max.producers.per.partition`,
    /// `group.max.size`; broker level, no topic twin): see `config::bounds`.
    pub bounds: super::bounds::ClientBounds,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            segment_jitter_ms: 0,
            segment_index_bytes: 10 << 20,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            // Kafka 4 refuses records more than an hour in the future by default (KIP-1030).
            timestamp_after_max_ms: 3_600_000,
            flush_messages: None,
            flush_ms: None,
            cleanup_policy: "delete".to_string(),
            compression_type: CompressionType::Producer,
            compression_gzip_level: -1,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            file_delete_delay_ms: 60_000,
            preallocate: false,
            leader_replication_throttled_replicas: String::new(),
            follower_replication_throttled_replicas: String::new(),
            remote_storage_enable: false,
            local_retention_ms: -2,
            local_retention_bytes: -2,
            remote_log_copy_disable: false,
            remote_log_delete_on_disable: false,
            producer_id_expiration_ms: 86_400_000,
            allocate_ahead_bytes: 32 << 20,
            allocate_ahead_zero: false,
            bounds: super::bounds::ClientBounds::default(),
        }
    }
}

/// Every topic-level config of Kafka 4, with the broker setting that gives its default (None
/// where Kafka has no broker-level twin), in the order DescribeConfigs lists them.
pub const TOPIC_CONFIGS: &[(&str, Option<&str>)] = &[
    ("cleanup.policy", Some("log.cleanup.policy")),
    ("compression.gzip.level", Some("compression.gzip.level")),
    ("compression.lz4.level", Some("compression.lz4.level")),
    ("compression.type", Some("compression.type")),
    ("compression.zstd.level", Some("compression.zstd.level")),
    (
        "delete.retention.ms",
        Some("log.cleaner.delete.retention.ms"),
    ),
    ("file.delete.delay.ms", Some("log.segment.delete.delay.ms")),
    ("flush.messages", Some("log.flush.interval.messages")),
    ("flush.ms", Some("log.flush.interval.ms")),
    (
        "follower.replication.throttled.replicas",
        Some("follower.replication.throttled.replicas"),
    ),
    ("index.interval.bytes", Some("log.index.interval.bytes")),
    (
        "leader.replication.throttled.replicas",
        Some("leader.replication.throttled.replicas"),
    ),
    ("local.retention.bytes", Some("log.local.retention.bytes")),
    ("local.retention.ms", Some("log.local.retention.ms")),
    (
        "max.compaction.lag.ms",
        Some("log.cleaner.max.compaction.lag.ms"),
    ),
    ("max.message.bytes", Some("message.max.bytes")),
    (
        "message.timestamp.after.max.ms",
        Some("log.message.timestamp.after.max.ms"),
    ),
    (
        "message.timestamp.before.max.ms",
        Some("log.message.timestamp.before.max.ms"),
    ),
    ("message.timestamp.type", Some("log.message.timestamp.type")),
    (
        "min.cleanable.dirty.ratio",
        Some("log.cleaner.min.cleanable.ratio"),
    ),
    (
        "min.compaction.lag.ms",
        Some("log.cleaner.min.compaction.lag.ms"),
    ),
    ("min.insync.replicas", Some("min.insync.replicas")),
    ("preallocate", Some("log.preallocate")),
    ("remote.log.copy.disable", None),
    ("remote.log.delete.on.disable", None),
    ("remote.storage.enable", None),
    ("retention.bytes", Some("log.retention.bytes")),
    ("retention.ms", Some("log.retention.ms")),
    ("segment.bytes", Some("log.segment.bytes")),
    ("segment.index.bytes", Some("log.index.size.max.bytes")),
    ("segment.jitter.ms", Some("log.roll.jitter.ms")),
    ("segment.ms", Some("log.roll.ms")),
    (
        "unclean.leader.election.enable",
        Some("unclean.leader.election.enable"),
    ),
];

/// Kafka's ConfigDef messages, so an admin client shows the same text either broker gives.
fn not_a_number(name: &str, value: &str, kind: &str) -> ConfigError {
    invalid(name, value, format!("Not a number of type {kind}"))
}

fn long_at_least(name: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| not_a_number(name, value, "LONG"))?;
    if v < min {
        return Err(invalid(
            name,
            value,
            format!("Value must be at least {min}"),
        ));
    }
    Ok(v)
}

fn int_between(name: &str, value: &str, min: i32, max: i32) -> Result<i32, ConfigError> {
    let v: i32 = value
        .trim()
        .parse()
        .map_err(|_| not_a_number(name, value, "INT"))?;
    if v < min {
        return Err(invalid(
            name,
            value,
            format!("Value must be at least {min}"),
        ));
    }
    if v > max {
        return Err(invalid(
            name,
            value,
            format!("Value must be no more than {max}"),
        ));
    }
    Ok(v)
}

fn boolean(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(
            name,
            value,
            "Expected value to be either true or false",
        )),
    }
}

fn one_of<'a>(name: &str, value: &str, valid: &[&'a str]) -> Result<&'a str, ConfigError> {
    valid
        .iter()
        .find(|v| **v == value.trim())
        .copied()
        .ok_or_else(|| {
            invalid(
                name,
                value,
                format!("String must be one of: {}", valid.join(", ")),
            )
        })
}

fn cleanup_policy(name: &str, value: &str) -> Result<String, ConfigError> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    for p in &parts {
        one_of(name, p, &["compact", "delete"])?;
    }
    Ok(parts.join(","))
}

/// Kafka uses Long.MAX_VALUE for "never flush"; so do we, as None.
fn flush(name: &str, value: &str, min: i64) -> Result<Option<u64>, ConfigError> {
    let v = long_at_least(name, value, min)?;
    Ok((v != i64::MAX).then_some(v as u64))
}

fn gzip_level(name: &str, value: &str) -> Result<i32, ConfigError> {
    let v: i32 = value
        .trim()
        .parse()
        .map_err(|_| not_a_number(name, value, "INT"))?;
    if v != -1 && !(1..=9).contains(&v) {
        return Err(invalid(
            name,
            value,
            "Value must be between 1 and 9 or equal to -1",
        ));
    }
    Ok(v)
}

/// `*`, empty, or `partition:broker` pairs, as Kafka's ThrottledReplicaListValidator wants.
fn throttled_replicas(name: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    let pair_ok = |p: &str| {
        p.trim().split_once(':').is_some_and(|(a, b)| {
            a.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        })
    };
    if v.is_empty() || v == "*" || v.split(',').all(pair_ok) {
        return Ok(v.to_string());
    }
    Err(invalid(
        name,
        value,
        "must be the literal '*' or a list of replicas in the following format: \
         [partitionId]:[brokerId],[partitionId]:[brokerId],...",
    ))
}

impl LogConfig {
    /// Applies one topic-level setting (Kafka's topic config name).
    pub fn set_topic(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let n = name;
        match name {
            "cleanup.policy" => self.cleanup_policy = cleanup_policy(n, value)?,
            "compression.type" => {
                let names: Vec<&str> = CompressionType::NAMES.iter().map(|(s, _)| *s).collect();
                let chosen = one_of(n, value, &names)?;
                self.compression_type = CompressionType::NAMES
                    .iter()
                    .find(|(s, _)| *s == chosen)
                    .map_or(CompressionType::Producer, |(_, c)| *c);
            }
            "compression.gzip.level" => self.compression_gzip_level = gzip_level(n, value)?,
            "compression.lz4.level" => self.compression_lz4_level = int_between(n, value, 1, 17)?,
            "compression.zstd.level" => {
                self.compression_zstd_level = int_between(n, value, -131_072, 22)?
            }
            "delete.retention.ms" => self.delete_retention_ms = long_at_least(n, value, 0)?,
            "file.delete.delay.ms" => self.file_delete_delay_ms = long_at_least(n, value, 0)?,
            "flush.messages" => self.flush_messages = flush(n, value, 1)?,
            "flush.ms" => self.flush_ms = flush(n, value, 0)?,
            "follower.replication.throttled.replicas" => {
                self.follower_replication_throttled_replicas = throttled_replicas(n, value)?
            }
            "leader.replication.throttled.replicas" => {
                self.leader_replication_throttled_replicas = throttled_replicas(n, value)?
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = int_between(n, value, 0, i32::MAX)? as u32
            }
            "local.retention.bytes" => self.local_retention_bytes = long_at_least(n, value, -2)?,
            "local.retention.ms" => self.local_retention_ms = long_at_least(n, value, -2)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = long_at_least(n, value, 1)?,
            "max.message.bytes" => {
                self.max_message_bytes = int_between(n, value, 0, i32::MAX)? as u32
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max_ms = long_at_least(n, value, 0)?
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max_ms = long_at_least(n, value, 0)?
            }
            "message.timestamp.type" => {
                self.timestamp_type = match one_of(n, value, &["CreateTime", "LogAppendTime"])? {
                    "CreateTime" => TimestampType::CreateTime,
                    _ => TimestampType::LogAppendTime,
                }
            }
            "min.cleanable.dirty.ratio" => {
                let v: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| not_a_number(n, value, "DOUBLE"))?;
                if !(0.0..=1.0).contains(&v) {
                    let why = if v < 0.0 {
                        "Value must be at least 0"
                    } else {
                        "Value must be no more than 1"
                    };
                    return Err(invalid(n, value, why));
                }
                self.min_cleanable_dirty_ratio = v;
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = long_at_least(n, value, 0)?,
            "min.insync.replicas" => self.min_insync_replicas = int_between(n, value, 1, i32::MAX)?,
            "preallocate" => self.preallocate = boolean(n, value)?,
            "remote.log.copy.disable" => self.remote_log_copy_disable = boolean(n, value)?,
            "remote.log.delete.on.disable" => {
                self.remote_log_delete_on_disable = boolean(n, value)?
            }
            "remote.storage.enable" => self.remote_storage_enable = boolean(n, value)?,
            "retention.bytes" => self.retention_bytes = long_at_least(n, value, i64::MIN)?,
            "retention.ms" => self.retention_ms = long_at_least(n, value, -1)?,
            "segment.bytes" => self.segment_bytes = int_between(n, value, 14, i32::MAX)? as u64,
            "segment.index.bytes" => {
                self.segment_index_bytes = int_between(n, value, 4, i32::MAX)? as u32
            }
            "segment.jitter.ms" => self.segment_jitter_ms = long_at_least(n, value, 0)?,
            "segment.ms" => self.segment_ms = long_at_least(n, value, 1)?,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = boolean(n, value)?
            }
            _ => return Err(ConfigError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// Checks across settings that Kafka makes once all of a topic's values are known.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms {
            return Err(ConfigError::Conflict(format!(
                "conflict topic config setting min.compaction.lag.ms ({}) > \
                 max.compaction.lag.ms ({})",
                self.min_compaction_lag_ms, self.max_compaction_lag_ms
            )));
        }
        if self.remote_storage_enable {
            return Err(ConfigError::Conflict(
                "Tiered Storage functionality is disabled in the broker. \
                 Topic cannot be configured with remote log storage."
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// The broker defaults with a topic's overrides applied. Overrides were validated when the
    /// topic was created, so a failure here means the metadata itself is corrupt.
    pub fn resolve(
        defaults: &LogConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, ConfigError> {
        let mut c = defaults.clone();
        for (k, v) in overrides {
            c.set_topic(k, v)?;
        }
        c.check()?;
        Ok(c)
    }

    pub fn compacted(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p == "compact")
    }

    pub fn deletes(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p == "delete")
    }

    /// The value of a topic-level setting as DescribeConfigs reports it.
    pub fn get_topic(&self, name: &str) -> Option<String> {
        let never = |v: Option<u64>| v.map_or(i64::MAX.to_string(), |v| v.to_string());
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.clone(),
            "compression.type" => self.compression_type.name().to_string(),
            "compression.gzip.level" => self.compression_gzip_level.to_string(),
            "compression.lz4.level" => self.compression_lz4_level.to_string(),
            "compression.zstd.level" => self.compression_zstd_level.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "flush.messages" => never(self.flush_messages),
            "flush.ms" => never(self.flush_ms),
            "follower.replication.throttled.replicas" => {
                self.follower_replication_throttled_replicas.clone()
            }
            "leader.replication.throttled.replicas" => {
                self.leader_replication_throttled_replicas.clone()
            }
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "local.retention.bytes" => self.local_retention_bytes.to_string(),
            "local.retention.ms" => self.local_retention_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "preallocate" => self.preallocate.to_string(),
            "remote.log.copy.disable" => self.remote_log_copy_disable.to_string(),
            "remote.log.delete.on.disable" => self.remote_log_delete_on_disable.to_string(),
            "remote.storage.enable" => self.remote_storage_enable.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "segment.jitter.ms" => self.segment_jitter_ms.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_topic_config_sets_and_reads_back() {
        for (name, _) in TOPIC_CONFIGS {
            let mut c = LogConfig::default();
            let current = c
                .get_topic(name)
                .unwrap_or_else(|| panic!("{name} has no value"));
            c.set_topic(name, &current)
                .unwrap_or_else(|e| panic!("{name}={current}: {e}"));
            assert_eq!(c.get_topic(name).unwrap(), current, "{name}");
        }
    }

    #[test]
    fn refusals_carry_kafkas_messages() {
        let table: &[(&str, &str, &str)] = &[
            (
                "retention.ms",
                "abc",
                "Invalid value abc for configuration retention.ms: Not a number of type LONG",
            ),
            (
                "segment.bytes",
                "3",
                "Invalid value 3 for configuration segment.bytes: Value must be at least 14",
            ),
            (
                "compression.type",
                "brotli",
                "Invalid value brotli for configuration compression.type: String must be one \
                 of: uncompressed, zstd, lz4, snappy, gzip, producer",
            ),
            (
                "cleanup.policy",
                "keep",
                "Invalid value keep for configuration cleanup.policy: String must be one of: \
                 compact, delete",
            ),
            (
                "preallocate",
                "yes",
                "Invalid value yes for configuration preallocate: Expected value to be either \
                 true or false",
            ),
            (
                "min.cleanable.dirty.ratio",
                "1.5",
                "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be \
                 no more than 1",
            ),
            (
                "no.such.config",
                "1",
                "Unknown topic config name: no.such.config",
            ),
        ];
        for (name, value, want) in table {
            let err = LogConfig::default().set_topic(name, value).unwrap_err();
            assert_eq!(err.kafka_message(), *want, "{name}={value}");
        }
    }

    #[test]
    fn cross_checks_and_tiered_storage() {
        let mut o = BTreeMap::new();
        o.insert("min.compaction.lag.ms".to_string(), "10".to_string());
        o.insert("max.compaction.lag.ms".to_string(), "5".to_string());
        let e = LogConfig::resolve(&LogConfig::default(), &o).unwrap_err();
        assert!(
            e.kafka_message().contains("min.compaction.lag.ms (10) >"),
            "{e}"
        );
        let mut o = BTreeMap::new();
        o.insert("remote.storage.enable".to_string(), "true".to_string());
        let e = LogConfig::resolve(&LogConfig::default(), &o).unwrap_err();
        assert!(e.kafka_message().starts_with("Tiered Storage"), "{e}");
    }

    #[test]
    fn cleanup_policy_roles() {
        let mut c = LogConfig::default();
        assert!(c.deletes() && !c.compacted());
        c.set_topic("cleanup.policy", "compact, delete").unwrap();
        assert!(c.deletes() && c.compacted());
        assert_eq!(c.get_topic("cleanup.policy").unwrap(), "compact,delete");
        c.set_topic("cleanup.policy", "compact").unwrap();
        assert!(!c.deletes() && c.compacted());
    }
}
