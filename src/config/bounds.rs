//! Bounds on the tables a client can grow on the broker, past the connection limits
//! (`connections`): `group.max.size` (Kafka's name and default) and gregor's
//! `producer.state.max.producers.per.partition`, which Kafka does not have (Kafka bounds its
//! producer state by `producer.id.expiration.ms` alone).
//!
//! They ride in [`super::LogConfig`] (as `producer.id.expiration.ms` does) so that every
//! partition log and every shard has them without further plumbing.

use super::{parse_min, ConfigError};

/// Names handled here, in the order DescribeConfigs lists them.
pub const BOUND_CONFIGS: &[&str] = &[
    "producer.state.max.producers.per.partition",
    "group.max.size",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientBounds {
    /// `producer.state.max.producers.per.partition`: producers a partition remembers at most.
    /// Past it, the producers idle longest with no transaction open are forgotten (down to
    /// 9/10 of the bound in one pass); a forgotten producer's next batch is taken at any
    /// sequence, as after `producer.id.expiration.ms`.
    pub producers_per_partition: usize,
    /// `group.max.size`: members of one classic consumer group; one more joining member is
    /// refused with GROUP_MAX_SIZE_REACHED.
    pub group_max_size: i32,
}

impl Default for ClientBounds {
    fn default() -> Self {
        ClientBounds {
            producers_per_partition: 100_000,
            group_max_size: i32::MAX,
        }
    }
}

impl ClientBounds {
    /// Applies one of [`BOUND_CONFIGS`]; false if `name` is not one.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        match name {
            "producer.state.max.producers.per.partition" => {
                self.producers_per_partition = parse_min(name, value, 10)?
            }
            "group.max.size" => self.group_max_size = parse_min(name, value, 1)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "producer.state.max.producers.per.partition" => {
                self.producers_per_partition.to_string()
            }
            "group.max.size" => self.group_max_size.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_and_show() {
        let mut b = ClientBounds::default();
        for name in BOUND_CONFIGS {
            let value = b.get(name).unwrap();
            assert!(b.set(name, &value).unwrap(), "{name}");
            assert_eq!(b.get(name), Some(value), "{name}");
        }
        assert_eq!(b.group_max_size, i32::MAX);
        assert!(b.set("group.max.size", "3").unwrap());
        assert_eq!(b.group_max_size, 3);
        assert!(b.set("group.max.size", "0").is_err());
        assert!(b
            .set("producer.state.max.producers.per.partition", "500")
            .unwrap());
        assert_eq!(b.producers_per_partition, 500);
        assert!(b
            .set("producer.state.max.producers.per.partition", "1")
            .is_err());
        assert!(!b.set("max.connections", "1").unwrap());
    }
}
