//! Cluster metadata: brokers, topics, their partitions (replicas, leader, ISR, epochs) and
//! configs, as a replicated log of records applied to an image.
//!
//! - [`image`]: the records and the one `apply` every node runs; shards read the result as an
//!   immutable [`Snapshot`].
//! - [`controller`]: the active controller's decisions as pure code (command -> records).
//! - [`quorum`]: the raft-rs driver on the controller's executor; [`raft`]: its storage and
//!   transport.
//! - [`legacy`]: the single-node `metadata.log` of earlier versions, migrated once.

pub mod controller;
pub mod image;
pub mod legacy;
pub mod quorum;
pub mod raft;

pub use controller::{Command, CreateTopic, Reply, Settings, PARTITIONS_MAX, PRODUCER_ID_BLOCK};
pub use image::{
    BrokerMeta, ConfigResource, PartitionMeta, Record, Snapshot, TopicMeta, NO_LEADER,
};
pub use quorum::{Quorum, QuorumConfig};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MetadataError {
    /// Kafka's own message (INVALID_TOPIC_EXCEPTION).
    #[error("{0}")]
    InvalidTopic(String),
    #[error("Topic '{0}' already exists.")]
    TopicExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("unknown topic id {0}")]
    UnknownTopicId(uuid::Uuid),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// Kafka's own message (INVALID_CONFIG).
    #[error("{0}")]
    InvalidConfig(String),
    /// A request Kafka refuses as malformed for what it names (INVALID_REQUEST), with Kafka's
    /// message.
    #[error("{0}")]
    InvalidRequest(String),
    /// No active controller could take the command (NOT_CONTROLLER).
    #[error("{0}")]
    NotController(String),
    /// An AlterPartition from a leader that is not the current one (FENCED_LEADER_EPOCH).
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// An AlterPartition against a stale partition epoch (INVALID_UPDATE_VERSION).
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// An ISR naming a replica that cannot be in it (INELIGIBLE_REPLICA).
    #[error("{0}")]
    IneligibleReplica(String),
    #[error("metadata log: {0}")]
    Io(#[from] std::io::Error),
}

impl MetadataError {
    /// A stable name for the variant, for errors that cross the controller link.
    pub fn kind(&self) -> &'static str {
        match self {
            MetadataError::InvalidTopic(_) => "InvalidTopic",
            MetadataError::TopicExists(_) => "TopicExists",
            MetadataError::UnknownTopic(_) => "UnknownTopic",
            MetadataError::UnknownTopicId(_) => "UnknownTopicId",
            MetadataError::InvalidPartitions(_) => "InvalidPartitions",
            MetadataError::InvalidReplicationFactor(_) => "InvalidReplicationFactor",
            MetadataError::InvalidConfig(_) => "InvalidConfig",
            MetadataError::InvalidRequest(_) => "InvalidRequest",
            MetadataError::NotController(_) => "NotController",
            MetadataError::FencedLeaderEpoch(_) => "FencedLeaderEpoch",
            MetadataError::InvalidUpdateVersion(_) => "InvalidUpdateVersion",
            MetadataError::IneligibleReplica(_) => "IneligibleReplica",
            MetadataError::Io(_) => "Io",
        }
    }

    /// The error a peer reported, from its kind and message.
    pub fn from_kind(kind: &str, message: String) -> MetadataError {
        match kind {
            "InvalidTopic" => MetadataError::InvalidTopic(message),
            "TopicExists" => {
                let name = message
                    .strip_prefix("Topic '")
                    .and_then(|m| m.strip_suffix("' already exists."))
                    .unwrap_or(&message)
                    .to_string();
                MetadataError::TopicExists(name)
            }
            "UnknownTopic" => MetadataError::UnknownTopic(message),
            "InvalidPartitions" => MetadataError::InvalidPartitions(message),
            "InvalidReplicationFactor" => MetadataError::InvalidReplicationFactor(message),
            "InvalidConfig" => MetadataError::InvalidConfig(message),
            "InvalidRequest" => MetadataError::InvalidRequest(message),
            "FencedLeaderEpoch" => MetadataError::FencedLeaderEpoch(message),
            "InvalidUpdateVersion" => MetadataError::InvalidUpdateVersion(message),
            "IneligibleReplica" => MetadataError::IneligibleReplica(message),
            "Io" => MetadataError::Io(std::io::Error::other(message)),
            _ => MetadataError::NotController(message),
        }
    }
}

/// Kafka's rule for topic names: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "the empty string is not allowed".to_string()
    } else if name == "." || name == ".." {
        format!("'{name}' is not allowed")
    } else if name.len() > 249 {
        format!("the length of '{name}' is longer than the max allowed length 249")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        format!(
            "'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' \
             and '-'"
        )
    } else {
        return Ok(());
    };
    Err(format!("Topic name is invalid: {why}"))
}

/// Kafka refuses a topic whose name equals an existing one once '.' and '_' are treated
/// alike (they map to the same metric name).
pub fn unify_collision_chars(name: &str) -> String {
    name.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        let table: &[(&str, bool)] = &[
            ("orders", true),
            ("a.b_c-9", true),
            ("", false),
            (".", false),
            ("..", false),
            ("bad/name", false),
            ("sp ace", false),
            ("ünï", false),
        ];
        for (name, ok) in table {
            assert_eq!(validate_topic_name(name).is_ok(), *ok, "{name:?}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
