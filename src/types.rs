//! Small shared types: partition identity and shard placement.

use std::fmt;

/// Index of a shard (one glommio executor pinned to one core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

/// A broker (and controller) of the cluster: Kafka's `node.id`.
pub type NodeId = i32;

/// A topic partition, as used in cross-shard messages and maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The directory name Kafka uses for this partition's log.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The shard that owns a partition: a stable hash of topic and partition, so the owner is the
/// same across restarts with the same shard count and needs no table lookup.
pub fn owner_shard(topic: &str, partition: i32, num_shards: usize) -> ShardId {
    assert!(num_shards > 0, "no shards");
    let h = crc32c::crc32c_append(crc32c::crc32c(topic.as_bytes()), &partition.to_be_bytes());
    ShardId(h as usize % num_shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spreads() {
        let a = owner_shard("t", 0, 4);
        assert_eq!(a, owner_shard("t", 0, 4));
        let mut seen = [0usize; 4];
        for p in 0..400 {
            seen[owner_shard("orders", p, 4).0] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(owner_shard("t", 7, 1), ShardId(0));
    }

    #[test]
    fn dir_name_is_kafkas() {
        assert_eq!(TopicPartition::new("a.b_c", 12).dir_name(), "a.b_c-12");
    }
}
