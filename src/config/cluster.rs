//! Cluster settings, with Kafka's names: roles, the controller quorum, the controller
//! listener, broker sessions, and replication.
//!
//! With none of them set a node is a quorum of one (`process.roles=broker,controller`,
//! `node.id=1`, no controller listener): exactly the single broker gregor always was.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{invalid, parse_bool, parse_min, ConfigError};
use crate::types::NodeId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `process.roles` includes `broker`: serves clients and holds partitions.
    pub broker: bool,
    /// `process.roles` includes `controller`: a voter of the metadata quorum.
    pub controller: bool,
    /// `controller.quorum.voters`: id -> controller address. Empty: this node alone.
    pub voters: BTreeMap<NodeId, SocketAddr>,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    pub broker_session_timeout_ms: u64,
    pub broker_heartbeat_interval_ms: u64,
    pub replica_lag_time_max_ms: i64,
    pub replica_fetch_wait_max_ms: i32,
    pub replica_fetch_max_bytes: i32,
    pub replica_fetch_response_max_bytes: i32,
    pub replica_fetch_backoff_ms: u64,
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    pub offsets_topic_replication_factor: i16,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            broker: true,
            controller: true,
            voters: BTreeMap::new(),
            controller_listener_names: vec!["CONTROLLER".to_string()],
            broker_session_timeout_ms: 9000,
            broker_heartbeat_interval_ms: 2000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_backoff_ms: 1000,
            replica_high_watermark_checkpoint_interval_ms: 5000,
            offsets_topic_replication_factor: 3,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
        }
    }
}

/// Names this module owns, in the order DescribeConfigs lists them.
pub const CLUSTER_CONFIGS: &[&str] = &[
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
];

/// `1@host:port,2@host:port`.
pub fn parse_voters(name: &str, value: &str) -> Result<BTreeMap<NodeId, SocketAddr>, ConfigError> {
    let mut voters = BTreeMap::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| invalid(name, value, format!("`{part}` is not id@host:port")))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| invalid(name, value, format!("`{id}` is not a node id")))?;
        let addr = resolve(addr.trim())
            .ok_or_else(|| invalid(name, value, format!("`{addr}` is not host:port")))?;
        if voters.insert(id, addr).is_some() {
            return Err(invalid(name, value, format!("node {id} is listed twice")));
        }
    }
    Ok(voters)
}

/// `host:port` to an address (names resolve once, at start-up).
pub fn resolve(addr: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs().ok()?.next()
}

impl ClusterConfig {
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        match name {
            "process.roles" => {
                let roles: Vec<&str> = value.split(',').map(str::trim).collect();
                if roles.iter().any(|r| !matches!(*r, "broker" | "controller")) || roles.is_empty()
                {
                    return Err(invalid(name, value, "expected broker, controller or both"));
                }
                self.broker = roles.contains(&"broker");
                self.controller = roles.contains(&"controller");
            }
            "controller.quorum.voters" => self.voters = parse_voters(name, value)?,
            "controller.listener.names" => {
                self.controller_listener_names =
                    value.split(',').map(|s| s.trim().to_string()).collect()
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = parse_min(name, value, 1)?
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_min(name, value, 1)?
            }
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = parse_min(name, value, 1)?,
            "replica.fetch.wait.max.ms" => {
                self.replica_fetch_wait_max_ms = parse_min(name, value, 0)?
            }
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = parse_min(name, value, 0)?,
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes = parse_min(name, value, 0)?
            }
            "replica.fetch.backoff.ms" => {
                self.replica_fetch_backoff_ms = parse_min(name, value, 0)?
            }
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.replica_high_watermark_checkpoint_interval_ms = parse_min(name, value, 1)?
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = parse_min(name, value, 1)?
            }
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance_enable = parse_bool(name, value)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds = parse_min(name, value, 1)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "process.roles" => match (self.broker, self.controller) {
                (true, true) => "broker,controller".to_string(),
                (true, false) => "broker".to_string(),
                _ => "controller".to_string(),
            },
            "controller.quorum.voters" => self
                .voters
                .iter()
                .map(|(id, a)| format!("{id}@{a}"))
                .collect::<Vec<_>>()
                .join(","),
            "controller.listener.names" => self.controller_listener_names.join(","),
            "broker.session.timeout.ms" => self.broker_session_timeout_ms.to_string(),
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms.to_string(),
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms.to_string(),
            "replica.fetch.wait.max.ms" => self.replica_fetch_wait_max_ms.to_string(),
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes.to_string(),
            "replica.fetch.response.max.bytes" => self.replica_fetch_response_max_bytes.to_string(),
            "replica.fetch.backoff.ms" => self.replica_fetch_backoff_ms.to_string(),
            "replica.high.watermark.checkpoint.interval.ms" => self
                .replica_high_watermark_checkpoint_interval_ms
                .to_string(),
            "offsets.topic.replication.factor" => self.offsets_topic_replication_factor.to_string(),
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable.to_string(),
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds.to_string()
            }
            _ => return None,
        })
    }

    pub fn is_controller_listener(&self, name: &str) -> bool {
        self.controller_listener_names.iter().any(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_bad_ones_are_named() {
        let v = parse_voters(
            "controller.quorum.voters",
            "1@127.0.0.1:9093, 2@127.0.0.1:9094",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[&2].port(), 9094);
        for bad in ["1@", "x@127.0.0.1:1", "1-127.0.0.1:9", "1@a:1,1@a:2"] {
            let e = parse_voters("controller.quorum.voters", bad).unwrap_err();
            assert!(
                e.to_string().contains("controller.quorum.voters"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn roles_and_settings_read_back() {
        let mut c = ClusterConfig::default();
        for name in CLUSTER_CONFIGS {
            let v = c.get(name).unwrap();
            if !v.is_empty() {
                assert!(c.set(name, &v).unwrap(), "{name}");
            }
            assert_eq!(c.get(name).unwrap(), v, "{name}");
        }
        c.set("process.roles", "controller").unwrap();
        assert!(!c.broker && c.controller);
        assert!(c.set("process.roles", "chef").is_err());
        assert!(!c.set("no.such", "1").unwrap());
    }
}
