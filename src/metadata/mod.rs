//! Cluster metadata: topics, their partitions and configs, as a log of records applied to a
//! state machine.
//!
//! Shard 0 owns the [`Controller`]: it validates commands, appends the resulting records to the
//! metadata log and applies them. After each change it publishes an immutable [`Snapshot`]
//! (shared as `Arc`) to every shard, which reads it without locks. A Raft quorum can later sit
//! where the local log file is without changing what the shards see.

mod log;
mod state;

pub use log::MetadataLog;
pub use state::{
    Controller, CreateTopic, MetadataError, Record, Snapshot, TopicMeta, PARTITIONS_MAX,
};

/// Kafka's rule for topic names: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be \"{name}\""));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters, more than 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name contains illegal character {c:?}"));
    }
    Ok(())
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
