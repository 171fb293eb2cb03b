//! Transaction coordinator settings (Kafka's `transaction.*` and `transactional.id.*` names).

use super::{parse_min, ConfigError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an idle transactional id is forgotten after this.
    pub id_expiration_ms: i64,
    /// `transaction.state.log.num.partitions`.
    pub log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped by the brokers there are).
    pub log_replication_factor: i16,
    /// `transaction.state.log.min.isr` (capped like the replication factor).
    pub log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_interval_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval_ms: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            log_num_partitions: 50,
            log_replication_factor: 3,
            log_min_isr: 2,
            log_segment_bytes: 100 << 20,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
        }
    }
}

/// Names this module owns, in the order DescribeConfigs lists them.
pub const TXN_CONFIGS: &[&str] = &[
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.segment.bytes",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
];

impl TxnConfig {
    /// Applies a transaction setting; false if `name` is not one.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        match name {
            "transaction.max.timeout.ms" => self.max_timeout_ms = parse_min(name, value, 1)?,
            "transactional.id.expiration.ms" => self.id_expiration_ms = parse_min(name, value, 1)?,
            "transaction.state.log.num.partitions" => {
                self.log_num_partitions = parse_min(name, value, 1)?
            }
            "transaction.state.log.replication.factor" => {
                self.log_replication_factor = parse_min(name, value, 1)?
            }
            "transaction.state.log.min.isr" => self.log_min_isr = parse_min(name, value, 1)?,
            "transaction.state.log.segment.bytes" => {
                self.log_segment_bytes = parse_min(name, value, 14)?
            }
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.abort_timed_out_interval_ms = parse_min(name, value, 1)?
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.remove_expired_interval_ms = parse_min(name, value, 1)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "transaction.max.timeout.ms" => self.max_timeout_ms.to_string(),
            "transactional.id.expiration.ms" => self.id_expiration_ms.to_string(),
            "transaction.state.log.num.partitions" => self.log_num_partitions.to_string(),
            "transaction.state.log.replication.factor" => self.log_replication_factor.to_string(),
            "transaction.state.log.min.isr" => self.log_min_isr.to_string(),
            "transaction.state.log.segment.bytes" => self.log_segment_bytes.to_string(),
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.abort_timed_out_interval_ms.to_string()
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.remove_expired_interval_ms.to_string()
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_settings_parse_and_show() {
        let mut c = TxnConfig::default();
        assert_eq!(
            c.get("transaction.max.timeout.ms").as_deref(),
            Some("900000")
        );
        assert!(c.set("transaction.max.timeout.ms", "1000").unwrap());
        assert_eq!(c.max_timeout_ms, 1000);
        assert!(c.set("transaction.state.log.num.partitions", "0").is_err());
        assert!(!c.set("log.retention.ms", "1").unwrap());
        for name in TXN_CONFIGS {
            assert!(c.get(name).is_some(), "{name}");
        }
    }
}
