//! Every broker setting, with Kafka's name where Kafka has one, validated at start-up.
//!
//! Settings come from three places, later ones winning: the defaults below, an optional TOML
//! file (`gregor serve --config FILE`), and `--set name=value` flags. In the TOML file a name may
//! be written dotted (`log.retention.ms = 1000`, which TOML reads as nested tables) or quoted
//! (`"log.retention.ms" = 1000`); both are flattened back to Kafka's dotted name.
//!
//! Topic-level overrides (`retention.ms`, `segment.bytes`, ...) are kept per topic as strings in
//! the metadata and resolved against the broker defaults by [`LogConfig::resolve`].

use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

pub mod alter;
pub mod bounds;
mod cleaner;
mod cluster;
mod connections;
pub mod group;
pub mod security;
mod topic;
mod transactions;
pub use cleaner::CleanerConfig;
pub use cluster::{ClusterConfig, CLUSTER_CONFIGS};
pub use connections::{ConnectionConfig, CONNECTION_CONFIGS};
pub use security::{SecurityConfig, SecurityProtocol, SECURITY_CONFIGS};
pub use topic::{CompressionType, LogConfig, TimestampType, TOPIC_CONFIGS};
pub use transactions::{TxnConfig, TXN_CONFIGS};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown setting `{0}`")]
    Unknown(String),
    #[error("setting `{name}`: invalid value `{value}`: {why}")]
    Invalid {
        name: String,
        value: String,
        why: String,
    },
    #[error("cannot read config file {path}: {why}")]
    File { path: String, why: String },
    /// Values that are each valid but conflict (Kafka's InvalidConfigurationException text).
    #[error("{0}")]
    Conflict(String),
}

impl ConfigError {
    /// The text Kafka gives for the same refusal of a topic config, for CreateTopics answers.
    pub fn kafka_message(&self) -> String {
        match self {
            ConfigError::Unknown(name) => format!("Unknown topic config name: {name}"),
            ConfigError::Invalid { name, value, why } => {
                format!("Invalid value {value} for configuration {name}: {why}")
            }
            other => other.to_string(),
        }
    }
}

/// Broker-wide settings. Built once at start-up, then shared read-only by every shard.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: i32,
    /// The inter-broker listener: the one named by `inter.broker.listener.name`, else the
    /// first in `listeners` that is not a controller listener. Clients may use it too.
    pub listener: SocketAddr,
    /// The controller listener, when `listeners` names one.
    pub controller_listener: Option<SocketAddr>,
    /// The inter-broker listener's advertised host and port: what this broker registers.
    pub advertised_listener: (String, u16),
    /// `listeners` as given: (name, host, port); resolved against controller.listener.names.
    listeners_raw: Vec<(String, String, u16)>,
    /// `advertised.listeners` as given, if given.
    advertised_raw: Option<Vec<(String, String, u16)>>,
    pub cluster: ClusterConfig,
    /// `log.dirs`: one or more directories, each on its own device as a rule. A new partition
    /// goes to the one holding the fewest partitions; the metadata log lives in the first.
    pub log_dirs: Vec<PathBuf>,
    /// Number of shards (cores); 0 means one per available core.
    pub num_shards: usize,
    pub socket_request_max_bytes: u32,
    /// Bytes of requests read and not yet answered, across the broker (Kafka's
    /// queued.max.request.bytes; unbounded there by default, bounded here). Each shard gets an
    /// equal share; a connection stops reading while its shard's share is used up.
    pub queued_max_request_bytes: u64,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub retention_check_interval_ms: u64,
    /// Bytes of recent batches each shard keeps in memory for fetches at the log tail.
    pub fetch_cache_bytes: usize,
    /// Memory glommio pins per shard for io_uring buffers.
    pub io_memory_bytes: usize,
    /// The admin HTTP listener (`/metrics`, `/v1/health`, `/v1/ready`); None when
    /// `admin.listeners` is empty.
    pub admin_listener: Option<SocketAddr>,
    /// How log lines are written (`log.format`).
    pub log_format: LogFormat,
    pub groups: GroupConfig,
    pub cleaner: CleanerConfig,
    pub connections: ConnectionConfig,
    pub security: SecurityConfig,
    pub txn: TxnConfig,
    pub log: LogConfig,
    /// The names set from the file or the command line (STATIC_BROKER_CONFIG in
    /// DescribeConfigs; the others are DEFAULT_CONFIG).
    pub explicit: std::collections::BTreeSet<String>,
}

/// A listener clients connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientListener {
    /// Upper case, as Kafka compares listener names.
    pub name: String,
    pub addr: SocketAddr,
    pub protocol: SecurityProtocol,
    pub advertised: (String, u16),
}

/// `log.format`: human-readable lines, or one JSON object per line for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `admin.listeners`: `host:port` (an `http://` prefix is allowed); empty turns it off.
fn parse_admin_listener(name: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let v = value.trim();
    let v = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
    if v.is_empty() {
        return Ok(None);
    }
    if v.contains(',') {
        return Err(invalid(name, value, "one admin listener only"));
    }
    let v = match v.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => v.to_string(),
    };
    v.parse()
        .map(Some)
        .map_err(|_| invalid(name, value, "expected an IP address and port, or nothing"))
}

/// Consumer group coordinator settings (Kafka's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_segment_bytes: u64,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub offset_metadata_max_bytes: usize,
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member without a heartbeat
    /// for this long is removed.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: how often such members heartbeat.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.assignors`: the server assignors offered, the first the default.
    pub consumer_assignors: Vec<String>,
    /// `group.consumer.max.size`.
    pub consumer_max_size: i32,
    /// `group.share.session.timeout.ms`: a share group member without a heartbeat for this
    /// long is removed.
    pub share_session_timeout_ms: i32,
    /// `group.share.heartbeat.interval.ms`.
    pub share_heartbeat_interval_ms: i32,
    /// `group.share.max.size`.
    pub share_max_size: i32,
    /// `group.share.record.lock.duration.ms`: how long a delivered record stays acquired.
    pub share_record_lock_duration_ms: i32,
    /// `group.share.delivery.count.limit`: deliveries before a record is archived.
    pub share_delivery_count_limit: i32,
    /// `group.share.partition.max.record.locks`: in-flight records per share-partition.
    pub share_partition_max_record_locks: i32,
    /// `group.share.max.share.sessions`: open share sessions per broker.
    pub share_max_share_sessions: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 100 << 20,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_assignors: vec!["uniform".into(), "range".into()],
            consumer_max_size: i32::MAX,
            share_session_timeout_ms: 45_000,
            share_heartbeat_interval_ms: 5_000,
            share_max_size: 200,
            share_record_lock_duration_ms: 30_000,
            share_delivery_count_limit: 5,
            share_partition_max_record_locks: 2_000,
            share_max_share_sessions: 2_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            listener: SocketAddr::from(([127, 0, 0, 1], 9092)),
            controller_listener: None,
            advertised_listener: ("127.0.0.1".to_string(), 9092),
            listeners_raw: vec![("PLAINTEXT".to_string(), "127.0.0.1".to_string(), 9092)],
            advertised_raw: None,
            cluster: ClusterConfig::default(),
            log_dirs: vec![PathBuf::from("./data")],
            num_shards: 0,
            socket_request_max_bytes: 104_857_600,
            queued_max_request_bytes: 512 << 20,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            retention_check_interval_ms: 300_000,
            fetch_cache_bytes: 256 << 20,
            io_memory_bytes: 2 << 20,
            admin_listener: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            log_format: LogFormat::Text,
            groups: GroupConfig::default(),
            cleaner: CleanerConfig::default(),
            connections: ConnectionConfig::default(),
            security: SecurityConfig::default(),
            txn: TxnConfig::default(),
            log: LogConfig::default(),
            explicit: Default::default(),
        }
    }
}

pub(crate) fn invalid(name: &str, value: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

pub(crate) fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, "not a number in range"))
}

pub(crate) fn parse_min<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    name: &str,
    value: &str,
    min: T,
) -> Result<T, ConfigError> {
    let v: T = parse_num(name, value)?;
    if v < min {
        return Err(invalid(name, value, format!("must be at least {min}")));
    }
    Ok(v)
}

pub(crate) fn parse_between<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    name: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    let v = parse_min(name, value, min)?;
    if v > max {
        return Err(invalid(name, value, format!("must be at most {max}")));
    }
    Ok(v)
}

pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "expected true or false")),
    }
}

/// `NAME://host:port,...`; a bare `host:port` or `:port` (all interfaces) is PLAINTEXT.
fn parse_listeners(name: &str, value: &str) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (listener, rest) = match entry.split_once("://") {
            Some((l, rest)) => (l.to_string(), rest),
            None => ("PLAINTEXT".to_string(), entry),
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(name, value, "expected host:port"))?;
        let port: u16 = parse_num(name, port)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        out.push((listener, host.to_string(), port));
    }
    if out.is_empty() {
        return Err(invalid(name, value, "no listener"));
    }
    Ok(out)
}

/// Broker-level names, in the order DescribeConfigs lists them.
pub const BROKER_CONFIGS: &[&str] = &[
    "node.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "num.shards",
    "socket.request.max.bytes",
    "queued.max.request.bytes",
    "auto.create.topics.enable",
    "num.partitions",
    "default.replication.factor",
    "log.retention.check.interval.ms",
    "fetch.cache.bytes",
    "io.memory.bytes",
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.backoff.ms",
    "replica.high.watermark.checkpoint.interval.ms",
    "offsets.topic.replication.factor",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "log.cleaner.enable",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.threads",
    "offset.metadata.max.bytes",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.assignors",
    "group.consumer.max.size",
    "group.share.session.timeout.ms",
    "group.share.heartbeat.interval.ms",
    "group.share.max.size",
    "group.share.record.lock.duration.ms",
    "group.share.delivery.count.limit",
    "group.share.partition.max.record.locks",
    "group.share.max.share.sessions",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.segment.bytes",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "transaction.partition.verification.enable",
    "log.cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "log.cleaner.delete.retention.ms",
    "log.segment.delete.delay.ms",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "follower.replication.throttled.replicas",
    "log.index.interval.bytes",
    "leader.replication.throttled.replicas",
    "log.local.retention.bytes",
    "log.local.retention.ms",
    "log.cleaner.max.compaction.lag.ms",
    "message.max.bytes",
    "log.message.timestamp.after.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.type",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "min.insync.replicas",
    "log.preallocate",
    "log.retention.bytes",
    "log.retention.ms",
    "log.segment.bytes",
    "log.index.size.max.bytes",
    "log.roll.jitter.ms",
    "log.roll.ms",
    "unclean.leader.election.enable",
    "producer.id.expiration.ms",
    "log.segment.allocate.ahead.bytes",
    "log.segment.allocate.ahead.zero",
    "admin.listeners",
    "log.format",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "connections.max.idle.ms",
    "connections.max.unsent.bytes",
    "connections.max.unsent.ms",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "ssl.enabled.protocols",
    "sasl.enabled.mechanisms",
    "connections.max.reauth.ms",
    "connection.failed.authentication.delay.ms",
    "producer.state.max.producers.per.partition",
    "group.max.size",
];

impl Config {
    /// Applies one broker setting by its Kafka name. The value is the text form (TOML values are
    /// turned into text first, so `--set` and the file behave the same).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        self.set_value(name, value)?;
        let canonical = match name {
            "broker.id" => "node.id",
            "log.dir" => "log.dirs",
            "log.retention.hours" => "log.retention.ms",
            "log.roll.hours" => "log.roll.ms",
            other => other,
        };
        self.explicit.insert(canonical.to_string());
        Ok(())
    }

    /// Whether `name` was given in the file or on the command line.
    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains(name)
    }

    fn set_value(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if let Some((topic_name, _)) = TOPIC_CONFIGS
            .iter()
            .find(|(_, broker)| *broker == Some(name))
        {
            // Report the name the operator wrote, not the topic-level twin.
            return self.log.set_topic(topic_name, value).map_err(|e| match e {
                ConfigError::Invalid { value, why, .. } => ConfigError::Invalid {
                    name: name.to_string(),
                    value,
                    why,
                },
                other => other,
            });
        }
        match name {
            "log.retention.hours" => {
                let h: i64 = parse_min(name, value, -1)?;
                self.log.retention_ms = if h < 0 { -1 } else { h * 3_600_000 };
            }
            "log.roll.hours" => self.log.segment_ms = parse_min::<i64>(name, value, 1)? * 3_600_000,
            "node.id" | "broker.id" => self.node_id = parse_min(name, value, 0)?,
            "listeners" => {
                self.listeners_raw = parse_listeners(name, value)?;
                self.resolve_listeners(name, value)?;
            }
            "advertised.listeners" => {
                self.advertised_raw = Some(parse_listeners(name, value)?);
                self.resolve_listeners(name, value)?;
            }
            "log.dirs" | "log.dir" => {
                let mut dirs: Vec<PathBuf> = Vec::new();
                for dir in value.split(',').map(str::trim) {
                    if dir.is_empty() {
                        return Err(invalid(name, value, "empty path"));
                    }
                    let dir = PathBuf::from(dir);
                    if dirs.contains(&dir) {
                        return Err(invalid(name, value, "a directory is listed twice"));
                    }
                    dirs.push(dir);
                }
                self.log_dirs = dirs;
            }
            "num.shards" => self.num_shards = parse_num(name, value)?,
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes = parse_min(name, value, 1)?
            }
            "queued.max.request.bytes" => {
                let v: i64 = parse_num(name, value)?;
                self.queued_max_request_bytes = match v {
                    -1 => u64::MAX,
                    v if v > 0 => v as u64,
                    _ => return Err(invalid(name, value, "must be positive, or -1 for no bound")),
                };
            }
            "auto.create.topics.enable" => {
                self.auto_create_topics_enable = parse_bool(name, value)?
            }
            "num.partitions" => self.num_partitions = parse_min(name, value, 1)?,
            "default.replication.factor" => {
                self.default_replication_factor = parse_min(name, value, 1)?
            }
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse_min(name, value, 1)?
            }
            "fetch.cache.bytes" => self.fetch_cache_bytes = parse_num(name, value)?,
            "producer.id.expiration.ms" => {
                self.log.producer_id_expiration_ms = parse_min(name, value, 1)?
            }
            "io.memory.bytes" => self.io_memory_bytes = parse_min(name, value, 64 << 10)?,
            "log.segment.allocate.ahead.bytes" => {
                self.log.allocate_ahead_bytes = parse_num(name, value)?
            }
            "log.segment.allocate.ahead.zero" => {
                self.log.allocate_ahead_zero = parse_bool(name, value)?
            }
            "admin.listeners" => self.admin_listener = parse_admin_listener(name, value)?,
            "log.format" => {
                self.log_format = match value.trim() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(invalid(name, value, "expected text or json")),
                }
            }
            "controller.listener.names" => {
                self.cluster.set(name, value)?;
                self.resolve_listeners(name, value)?;
            }
            "inter.broker.listener.name" => {
                self.security.set(name, value)?;
                self.resolve_listeners(name, value)?;
            }
            _ if self.security.set(name, value)? => {}
            _ if self.cluster.set(name, value)? => {}
            _ if self.cleaner.set(name, value)? => {}
            _ if self.connections.set(name, value)? => {}
            _ if self.txn.set(name, value)? => {}
            _ if self.log.bounds.set(name, value)? => {}
            _ => return self.set_group(name, value),
        }
        Ok(())
    }

    /// The value of a broker setting as DescribeConfigs reports it.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some((topic_name, _)) = TOPIC_CONFIGS
            .iter()
            .find(|(_, broker)| *broker == Some(name))
        {
            return self.log.get_topic(topic_name);
        }
        let (host, port) = &self.advertised_listener;
        Some(match name {
            "node.id" => self.node_id.to_string(),
            "listeners" => show_listeners(&self.listeners_raw),
            "advertised.listeners" => match &self.advertised_raw {
                Some(a) => show_listeners(a),
                None => format!("PLAINTEXT://{host}:{port}"),
            },
            "log.dirs" => self
                .log_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
            "num.shards" => self.num_shards.to_string(),
            "producer.id.expiration.ms" => self.log.producer_id_expiration_ms.to_string(),
            "socket.request.max.bytes" => self.socket_request_max_bytes.to_string(),
            "queued.max.request.bytes" => match self.queued_max_request_bytes {
                u64::MAX => "-1".to_string(),
                v => v.to_string(),
            },
            "auto.create.topics.enable" => self.auto_create_topics_enable.to_string(),
            "num.partitions" => self.num_partitions.to_string(),
            "default.replication.factor" => self.default_replication_factor.to_string(),
            "log.retention.check.interval.ms" => self.retention_check_interval_ms.to_string(),
            "fetch.cache.bytes" => self.fetch_cache_bytes.to_string(),
            "io.memory.bytes" => self.io_memory_bytes.to_string(),
            "log.segment.allocate.ahead.bytes" => self.log.allocate_ahead_bytes.to_string(),
            "log.segment.allocate.ahead.zero" => self.log.allocate_ahead_zero.to_string(),
            "admin.listeners" => self
                .admin_listener
                .map_or_else(String::new, |a| a.to_string()),
            "log.format" => match self.log_format {
                LogFormat::Text => "text".to_string(),
                LogFormat::Json => "json".to_string(),
            },
            _ => {
                return self
                    .cluster
                    .get(name)
                    .or_else(|| self.cleaner.get(name))
                    .or_else(|| self.connections.get(name))
                    .or_else(|| self.security.get(name))
                    .or_else(|| self.txn.get(name))
                    .or_else(|| self.log.bounds.get(name))
                    .or_else(|| self.get_group(name))
            }
        })
    }

    /// Splits `listeners` into the client listener and the controller listener, and picks
    /// the advertised client address.
    fn resolve_listeners(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let is_controller = |l: &str| self.cluster.is_controller_listener(l);
        let inter_broker = self.security.inter_broker_listener_name.as_deref();
        let client = self
            .listeners_raw
            .iter()
            .find(|(l, _, _)| {
                !is_controller(l) && inter_broker.is_none_or(|n| l.eq_ignore_ascii_case(n))
            })
            .cloned();
        let controller = self
            .listeners_raw
            .iter()
            .find(|(l, _, _)| is_controller(l))
            .cloned();
        let to_addr = |(_, host, port): &(String, String, u16)| -> Result<SocketAddr, ConfigError> {
            format!("{host}:{port}")
                .parse()
                .map_err(|_| invalid(name, value, "expected an IP address and port"))
        };
        self.controller_listener = controller.as_ref().map(to_addr).transpose()?;
        if let Some(c) = &client {
            self.listener = to_addr(c)?;
        }
        if let Some((name, host, port)) = client {
            self.advertised_listener = self.advertised_of(&name, &host, port);
        }
        Ok(())
    }

    /// Where clients are told to reach listener `name` (bound to `host:port`): its entry in
    /// `advertised.listeners`, else its own address (a wildcard host becomes 127.0.0.1).
    fn advertised_of(&self, name: &str, host: &str, port: u16) -> (String, u16) {
        let (host, port) = self
            .advertised_raw
            .as_ref()
            .and_then(|a| a.iter().find(|(l, _, _)| l.eq_ignore_ascii_case(name)))
            .map_or((host, port), |(_, h, p)| (h.as_str(), *p));
        if host == "0.0.0.0" || host == "::" {
            ("127.0.0.1".to_string(), port)
        } else {
            (host.to_string(), port)
        }
    }

    /// Every listener that serves clients (all but the controller listener), with its
    /// security protocol and advertised address, the inter-broker listener first.
    pub fn client_listeners(&self) -> Vec<ClientListener> {
        let mut out: Vec<ClientListener> = self
            .listeners_raw
            .iter()
            .filter(|(l, _, _)| !self.cluster.is_controller_listener(l))
            .filter_map(|(name, host, port)| {
                let addr = format!("{host}:{port}").parse().ok()?;
                Some(ClientListener {
                    name: name.to_ascii_uppercase(),
                    addr,
                    protocol: self.security.protocol_of(name)?,
                    advertised: self.advertised_of(name, host, *port),
                })
            })
            .collect();
        if let Some(i) = out.iter().position(|l| l.addr == self.listener) {
            let first = out.remove(i);
            out.insert(0, first);
        }
        out
    }

    fn set_group(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let g = &mut self.groups;
        match name {
            "offsets.topic.num.partitions" => {
                g.offsets_topic_num_partitions = parse_min(name, value, 1)?
            }
            "offsets.topic.segment.bytes" => {
                g.offsets_topic_segment_bytes = parse_min(name, value, 14)?
            }
            "offsets.retention.minutes" => {
                g.offsets_retention_ms = parse_min::<i64>(name, value, 1)? * 60_000
            }
            "offsets.retention.check.interval.ms" => {
                g.offsets_retention_check_interval_ms = parse_min(name, value, 1)?
            }
            "offset.metadata.max.bytes" => g.offset_metadata_max_bytes = parse_num(name, value)?,
            "group.initial.rebalance.delay.ms" => {
                g.initial_rebalance_delay_ms = parse_min(name, value, 0)?
            }
            "group.min.session.timeout.ms" => g.min_session_timeout_ms = parse_min(name, value, 1)?,
            "group.max.session.timeout.ms" => g.max_session_timeout_ms = parse_min(name, value, 1)?,
            "group.consumer.session.timeout.ms" => {
                g.consumer_session_timeout_ms = parse_min(name, value, 1)?
            }
            "group.consumer.heartbeat.interval.ms" => {
                g.consumer_heartbeat_interval_ms = parse_min(name, value, 1)?
            }
            "group.consumer.max.size" => g.consumer_max_size = parse_min(name, value, 1)?,
            "group.consumer.assignors" => g.consumer_assignors = parse_assignors(name, value)?,
            "group.share.session.timeout.ms" => {
                g.share_session_timeout_ms = parse_min(name, value, 1)?
            }
            "group.share.heartbeat.interval.ms" => {
                g.share_heartbeat_interval_ms = parse_min(name, value, 1)?
            }
            "group.share.max.size" => g.share_max_size = parse_between(name, value, 1, 1000)?,
            "group.share.record.lock.duration.ms" => {
                g.share_record_lock_duration_ms = parse_between(name, value, 1000, 3_600_000)?
            }
            "group.share.delivery.count.limit" => {
                g.share_delivery_count_limit = parse_between(name, value, 2, 10)?
            }
            "group.share.partition.max.record.locks" => {
                g.share_partition_max_record_locks = parse_between(name, value, 100, 10_000)?
            }
            "group.share.max.share.sessions" => {
                g.share_max_share_sessions = parse_min(name, value, 1)?
            }
            _ => return Err(ConfigError::Unknown(name.to_string())),
        }
        Ok(())
    }

    fn get_group(&self, name: &str) -> Option<String> {
        let g = &self.groups;
        Some(match name {
            "offsets.topic.num.partitions" => g.offsets_topic_num_partitions.to_string(),
            "offsets.topic.segment.bytes" => g.offsets_topic_segment_bytes.to_string(),
            "offsets.retention.minutes" => (g.offsets_retention_ms / 60_000).to_string(),
            "offsets.retention.check.interval.ms" => {
                g.offsets_retention_check_interval_ms.to_string()
            }
            "offset.metadata.max.bytes" => g.offset_metadata_max_bytes.to_string(),
            "group.initial.rebalance.delay.ms" => g.initial_rebalance_delay_ms.to_string(),
            "group.min.session.timeout.ms" => g.min_session_timeout_ms.to_string(),
            "group.max.session.timeout.ms" => g.max_session_timeout_ms.to_string(),
            "group.consumer.session.timeout.ms" => g.consumer_session_timeout_ms.to_string(),
            "group.consumer.heartbeat.interval.ms" => g.consumer_heartbeat_interval_ms.to_string(),
            "group.consumer.max.size" => g.consumer_max_size.to_string(),
            "group.consumer.assignors" => g.consumer_assignors.join(","),
            "group.share.session.timeout.ms" => g.share_session_timeout_ms.to_string(),
            "group.share.heartbeat.interval.ms" => g.share_heartbeat_interval_ms.to_string(),
            "group.share.max.size" => g.share_max_size.to_string(),
            "group.share.record.lock.duration.ms" => g.share_record_lock_duration_ms.to_string(),
            "group.share.delivery.count.limit" => g.share_delivery_count_limit.to_string(),
            "group.share.partition.max.record.locks" => {
                g.share_partition_max_record_locks.to_string()
            }
            "group.share.max.share.sessions" => g.share_max_share_sessions.to_string(),
            _ => return None,
        })
    }

    /// Reads a TOML file and applies every setting in it.
    pub fn apply_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: path.to_string(),
                why: e.to_string(),
            })?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (name, value) in flat {
            self.set(&name, &value)?;
        }
        Ok(())
    }

    /// Applies `name=value` pairs as given on the command line.
    pub fn apply_overrides(&mut self, pairs: &[String]) -> Result<(), ConfigError> {
        for pair in pairs {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(pair, "", "expected name=value"))?;
            self.set(name.trim(), value.trim())?;
        }
        Ok(())
    }

    /// Cross-setting checks that no single `set` can make.
    /// Where the metadata log lives (Kafka's `metadata.log.dir` default): the first of
    /// `log.dirs`.
    pub fn metadata_log_dir(&self) -> &std::path::Path {
        &self.log_dirs[0]
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.groups.min_session_timeout_ms > self.groups.max_session_timeout_ms {
            return Err(invalid(
                "group.min.session.timeout.ms",
                &self.groups.min_session_timeout_ms.to_string(),
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        if self.log.max_message_bytes > self.socket_request_max_bytes {
            return Err(invalid(
                "message.max.bytes",
                &self.log.max_message_bytes.to_string(),
                "must not exceed socket.request.max.bytes",
            ));
        }
        if self.cluster.controller && !self.cluster.voters.is_empty() {
            if !self.cluster.voters.contains_key(&self.node_id) {
                return Err(invalid(
                    "controller.quorum.voters",
                    &self
                        .cluster
                        .get("controller.quorum.voters")
                        .unwrap_or_default(),
                    format!(
                        "a controller must be a voter, and node.id {} is not listed",
                        self.node_id
                    ),
                ));
            }
            if self.controller_listener.is_none() {
                return Err(invalid(
                    "listeners",
                    &show_listeners(&self.listeners_raw),
                    "a controller of a quorum of several needs a listener named in \
                     controller.listener.names",
                ));
            }
        }
        if !self.cluster.controller && self.cluster.voters.is_empty() {
            return Err(invalid(
                "controller.quorum.voters",
                "",
                "a broker-only node must be told where the controllers are",
            ));
        }
        self.check_listeners()?;
        self.connections.check()?;
        self.log.check()
    }
}

impl Config {
    /// Every listener has a security protocol; the inter-broker listener exists; the
    /// controller listener is PLAINTEXT or SSL (the metadata quorum's links do not speak
    /// SASL); TLS listeners have key material; SASL listeners have mechanisms.
    fn check_listeners(&self) -> Result<(), ConfigError> {
        let shown = show_listeners(&self.listeners_raw);
        let mut names = std::collections::BTreeSet::new();
        for (name, _, _) in &self.listeners_raw {
            if !names.insert(name.to_ascii_uppercase()) {
                return Err(invalid(
                    "listeners",
                    &shown,
                    format!("listener {name} is named twice"),
                ));
            }
            if self.security.protocol_of(name).is_none() {
                return Err(
                    self.protocol_map_error(format!("no security protocol for listener {name}"))
                );
            }
        }
        let listeners = self.client_listeners();
        if let Some(name) = &self.security.inter_broker_listener_name {
            if !listeners.iter().any(|l| &l.name == name) {
                return Err(invalid(
                    "inter.broker.listener.name",
                    name,
                    format!("no such listener in listeners ({shown})"),
                ));
            }
        }
        if listeners.is_empty() {
            return Err(invalid("listeners", &shown, "no listener for clients"));
        }
        for name in &self.cluster.controller_listener_names {
            if self.security.protocol_of(name).is_some_and(|p| p.is_sasl()) {
                return Err(self.protocol_map_error(format!(
                    "the controller listener {name} must be PLAINTEXT or SSL (mutual TLS): the \
                     metadata quorum's links do not speak SASL"
                )));
            }
        }
        for l in &listeners {
            if l.protocol.is_tls()
                && self
                    .security
                    .value(Some(&l.name), "ssl.keystore.location")
                    .is_none()
            {
                return Err(invalid(
                    "ssl.keystore.location",
                    "",
                    format!(
                        "listener {} is {} and needs a PEM key and certificate chain",
                        l.name,
                        l.protocol.name()
                    ),
                ));
            }
            if l.protocol.is_sasl() && self.security.sasl_mechanisms(&l.name).is_empty() {
                return Err(invalid(
                    "sasl.enabled.mechanisms",
                    "",
                    format!(
                        "listener {} is {} and offers no mechanism",
                        l.name,
                        l.protocol.name()
                    ),
                ));
            }
            self.security.plain_users(&l.name)?;
        }
        Ok(())
    }
}

impl Config {
    fn protocol_map_error(&self, why: String) -> ConfigError {
        let map = self
            .security
            .get("listener.security.protocol.map")
            .unwrap_or_default();
        invalid("listener.security.protocol.map", &map, why)
    }
}

fn show_listeners(l: &[(String, String, u16)]) -> String {
    l.iter()
        .map(|(n, h, p)| format!("{n}://{h}:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), parts.join(",")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// `group.consumer.assignors`: names (`uniform`, `range`) or Kafka's class names for them.
fn parse_assignors(name: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for a in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let short = match a.rsplit('.').next().unwrap_or(a) {
            "uniform" | "UniformAssignor" => "uniform",
            "range" | "RangeAssignor" => "range",
            _ => {
                return Err(ConfigError::Invalid {
                    name: name.to_string(),
                    value: value.to_string(),
                    why: format!("unknown assignor {a} (uniform and range are offered)"),
                })
            }
        };
        out.push(short.to_string());
    }
    if out.is_empty() {
        return Err(ConfigError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            why: "at least one assignor is needed".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_are_a_local_single_node_broker() {
        let c = Config::default();
        assert_eq!(c.listener.to_string(), "127.0.0.1:9092");
        assert_eq!(c.log_dirs, vec![PathBuf::from("./data")]);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.log.max_message_bytes, 1_048_588);
        c.validate().unwrap();
    }

    #[test]
    fn toml_dotted_and_quoted_names_both_apply() {
        let mut c = Config::default();
        let text = r#"
            log.retention.ms = 1000
            "log.segment.bytes" = 4096
            listeners = "PLAINTEXT://127.0.0.1:19092"
            log.dirs = ["/tmp/a", "/tmp/b"]
            auto.create.topics.enable = false
        "#;
        c.apply_toml(text, "x.toml").unwrap();
        assert_eq!(c.log.retention_ms, 1000);
        assert_eq!(c.log.segment_bytes, 4096);
        assert_eq!(c.listener.port(), 19092);
        assert_eq!(
            c.log_dirs,
            vec![PathBuf::from("/tmp/a"), PathBuf::from("/tmp/b")]
        );
        assert_eq!(c.get("log.dirs").as_deref(), Some("/tmp/a,/tmp/b"));
        let mut twice = Config::default();
        assert!(twice.set("log.dirs", "/tmp/a, /tmp/a").is_err());
        assert!(twice.set("log.dirs", "/tmp/a,").is_err());
        assert!(!c.auto_create_topics_enable);
    }

    #[test]
    fn bad_settings_are_rejected_with_their_name() {
        let table: &[(&str, &str)] = &[
            ("no.such.setting", "1"),
            ("log.segment.bytes", "abc"),
            ("log.segment.bytes", "3"),
            ("num.partitions", "0"),
            ("auto.create.topics.enable", "yes"),
            ("listeners", "SSL://h:1"),
            ("log.message.timestamp.type", "Now"),
            ("log.cleanup.policy", "keep"),
            ("admin.listeners", "localhost:9644"),
            ("admin.listeners", "127.0.0.1:1,127.0.0.1:2"),
            ("log.format", "xml"),
        ];
        for (name, value) in table {
            let mut c = Config::default();
            assert!(c.set(name, value).is_err(), "{name}={value} accepted");
        }
    }

    #[test]
    fn overrides_and_topic_resolution() {
        let mut c = Config::default();
        c.apply_overrides(&["log.retention.hours=1".into(), "num.shards=3".into()])
            .unwrap();
        assert_eq!(c.log.retention_ms, 3_600_000);
        assert_eq!(c.num_shards, 3);
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "5".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let r = LogConfig::resolve(&c.log, &o).unwrap();
        assert_eq!(r.retention_ms, 5);
        assert_eq!(r.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(r.get_topic("retention.ms").unwrap(), "5");
        assert_eq!(r.get_topic("flush.ms").unwrap(), i64::MAX.to_string());
    }

    #[test]
    fn every_listed_setting_reads_back_what_was_set() {
        for name in BROKER_CONFIGS {
            let c = Config::default();
            let value = c.get(name).unwrap_or_else(|| panic!("{name} has no value"));
            let mut d = Config::default();
            d.set(name, &value)
                .unwrap_or_else(|e| panic!("{name}={value} rejected: {e}"));
            assert_eq!(d.get(name), Some(value), "{name}");
        }
        for (name, _) in TOPIC_CONFIGS {
            let log = Config::default().log;
            let value = log.get_topic(name).unwrap();
            let mut l = log.clone();
            l.set_topic(name, &value).unwrap();
            assert_eq!(l, log, "{name}");
        }
        let mut c = Config::default();
        let e = c.set("log.segment.bytes", "lots").unwrap_err();
        assert!(e.to_string().contains("log.segment.bytes"), "{e}");
    }

    #[test]
    fn advertised_listener_wins_whatever_the_order() {
        for text in [
            "advertised.listeners = \"PLAINTEXT://broker.example:9093\"\nlisteners = \"PLAINTEXT://0.0.0.0:19092\"",
            "listeners = \"PLAINTEXT://0.0.0.0:19092\"\nadvertised.listeners = \"PLAINTEXT://broker.example:9093\"",
        ] {
            let mut c = Config::default();
            c.apply_toml(text, "x.toml").unwrap();
            assert_eq!(c.advertised_listener, ("broker.example".to_string(), 9093));
            assert_eq!(c.listener.port(), 19092);
        }
    }

    #[test]
    fn the_admin_listener_is_on_by_default_and_empty_turns_it_off() {
        let mut c = Config::default();
        assert_eq!(c.admin_listener, Some("127.0.0.1:9644".parse().unwrap()));
        for (value, want) in [
            ("", None),
            ("http://127.0.0.1:19644/", Some("127.0.0.1:19644")),
            (":9000", Some("0.0.0.0:9000")),
            ("[::1]:9644", Some("[::1]:9644")),
        ] {
            c.set("admin.listeners", value).unwrap();
            assert_eq!(
                c.admin_listener,
                want.map(|w| w.parse().unwrap()),
                "{value:?}"
            );
        }
        c.set("log.format", "json").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn message_max_must_fit_a_request() {
        let mut c = Config::default();
        c.set("message.max.bytes", "200000000").unwrap();
        assert!(c.validate().is_err());
    }
}
