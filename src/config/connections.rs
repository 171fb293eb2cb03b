//! Limits on client connections: how many, from where, how long idle, and how long a client
//! may leave its responses unread. Kafka's names and defaults where Kafka has the setting
//! (SocketServerConfigs); `connections.max.unsent.*` are gregor's (see `server::limits`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{invalid, parse_min, ConfigError};

/// Names handled here, in the order DescribeConfigs lists them.
pub const CONNECTION_CONFIGS: &[&str] = &[
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "connections.max.idle.ms",
    "connections.max.unsent.bytes",
    "connections.max.unsent.ms",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// `max.connections`: client connections across the broker; at the limit a new connection
    /// waits, unserved, for one to close, as with Kafka's acceptor.
    pub max_connections: u32,
    /// `max.connections.per.ip`: a connection over it is closed at once.
    pub max_connections_per_ip: u32,
    /// `max.connections.per.ip.overrides`: `ip:count,...` (IP addresses only; Kafka also
    /// resolves host names).
    pub max_connections_per_ip_overrides: BTreeMap<IpAddr, u32>,
    /// `connections.max.idle.ms`: a connection with no request read and no response byte
    /// written for this long is closed; negative: never.
    pub connections_max_idle_ms: i64,
    /// `connections.max.unsent.bytes`: with more response bytes than this waiting for a client
    /// that reads none of them for `connections.max.unsent.ms`, the connection is closed.
    pub connections_max_unsent_bytes: u64,
    pub connections_max_unsent_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_connections: i32::MAX as u32,
            max_connections_per_ip: i32::MAX as u32,
            max_connections_per_ip_overrides: BTreeMap::new(),
            connections_max_idle_ms: 600_000,
            connections_max_unsent_bytes: 1 << 20,
            connections_max_unsent_ms: 30_000,
        }
    }
}

fn parse_count(name: &str, value: &str) -> Result<u32, ConfigError> {
    let v: i32 = parse_min(name, value, 0)?;
    Ok(v as u32)
}

/// `ip:count,...`; an empty value is no override.
fn parse_overrides(name: &str, value: &str) -> Result<BTreeMap<IpAddr, u32>, ConfigError> {
    let mut out = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| invalid(name, value, "expected ip:count entries"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host
            .parse()
            .map_err(|_| invalid(name, value, format!("`{host}` is not an IP address")))?;
        out.insert(ip, parse_count(name, count)?);
    }
    Ok(out)
}

impl ConnectionConfig {
    /// Applies one of [`CONNECTION_CONFIGS`]; false if `name` is not one.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        match name {
            "max.connections" => self.max_connections = parse_count(name, value)?,
            "max.connections.per.ip" => self.max_connections_per_ip = parse_count(name, value)?,
            "max.connections.per.ip.overrides" => {
                self.max_connections_per_ip_overrides = parse_overrides(name, value)?
            }
            "connections.max.idle.ms" => {
                self.connections_max_idle_ms = super::parse_num(name, value)?
            }
            "connections.max.unsent.bytes" => {
                self.connections_max_unsent_bytes = super::parse_num(name, value)?
            }
            "connections.max.unsent.ms" => {
                self.connections_max_unsent_ms = parse_min(name, value, 1)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "max.connections" => self.max_connections.to_string(),
            "max.connections.per.ip" => self.max_connections_per_ip.to_string(),
            "max.connections.per.ip.overrides" => self
                .max_connections_per_ip_overrides
                .iter()
                .map(|(ip, n)| format!("{ip}:{n}"))
                .collect::<Vec<_>>()
                .join(","),
            "connections.max.idle.ms" => self.connections_max_idle_ms.to_string(),
            "connections.max.unsent.bytes" => self.connections_max_unsent_bytes.to_string(),
            "connections.max.unsent.ms" => self.connections_max_unsent_ms.to_string(),
            _ => return None,
        })
    }

    /// Kafka's own cross-check (KafkaConfig): a per-IP limit of 0 refuses everyone unless some
    /// address has an override.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_connections_per_ip == 0 && self.max_connections_per_ip_overrides.is_empty() {
            return Err(invalid(
                "max.connections.per.ip",
                "0",
                "0 needs max.connections.per.ip.overrides, or no client could connect",
            ));
        }
        Ok(())
    }

    /// The per-IP limit of `ip`.
    pub fn max_for(&self, ip: IpAddr) -> u32 {
        self.max_connections_per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_connections_per_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_settings_parse_validate_and_show() {
        let mut c = ConnectionConfig::default();
        assert_eq!(c.get("max.connections").as_deref(), Some("2147483647"));
        assert_eq!(c.get("connections.max.idle.ms").as_deref(), Some("600000"));
        assert!(c.set("max.connections", "10").unwrap());
        assert!(c.set("max.connections", "-1").is_err());
        assert!(c.set("max.connections", "2147483648").is_err());
        assert!(c.set("connections.max.idle.ms", "-1").unwrap());
        assert!(c.set("connections.max.unsent.ms", "0").is_err());
        assert!(!c.set("log.retention.ms", "1").unwrap());
        assert!(c
            .set("max.connections.per.ip.overrides", "127.0.0.1:5, [::1]:0")
            .unwrap());
        assert_eq!(
            c.get("max.connections.per.ip.overrides").as_deref(),
            Some("127.0.0.1:5,::1:0")
        );
        let again = c.get("max.connections.per.ip.overrides").unwrap();
        assert!(c.set("max.connections.per.ip.overrides", &again).unwrap());
        assert_eq!(c.max_for("127.0.0.1".parse().unwrap()), 5);
        assert_eq!(c.max_for("::1".parse().unwrap()), 0);
        assert_eq!(c.max_for("10.0.0.1".parse().unwrap()), i32::MAX as u32);
        for bad in ["localhost:5", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:-2"] {
            assert!(
                c.set("max.connections.per.ip.overrides", bad).is_err(),
                "{bad}"
            );
        }
        c.set("max.connections.per.ip", "0").unwrap();
        assert!(c.check().is_ok());
        c.set("max.connections.per.ip.overrides", "").unwrap();
        assert!(c.check().is_err());
    }
}
