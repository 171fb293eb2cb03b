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
