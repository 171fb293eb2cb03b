//! Kafka's group configs (`kafka-configs --entity-type groups`): one group's overrides of the
//! broker's group settings, kept in the metadata log and resolved where the group is served.

use std::collections::BTreeMap;

use super::{invalid, parse_between, parse_min, ConfigError, GroupConfig};

/// The group configs Kafka 4 has (those gregor serves), in DescribeConfigs' order.
pub const GROUP_CONFIGS: &[&str] = &[
    "consumer.session.timeout.ms",
    "consumer.heartbeat.interval.ms",
    "share.session.timeout.ms",
    "share.heartbeat.interval.ms",
    "share.record.lock.duration.ms",
    "share.auto.offset.reset",
];

/// Where a share group with no state for a partition starts (`share.auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShareAutoOffsetReset {
    /// At the log end: only records produced from now on.
    #[default]
    Latest,
    /// At the log start.
    Earliest,
}

/// One group's settings: the broker's, with the group's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    pub consumer_session_timeout_ms: i32,
    pub consumer_heartbeat_interval_ms: i32,
    pub share_session_timeout_ms: i32,
    pub share_heartbeat_interval_ms: i32,
    pub share_record_lock_duration_ms: i32,
    pub share_auto_offset_reset: ShareAutoOffsetReset,
}

impl GroupSettings {
    /// The broker's settings for a group without overrides.
    pub fn of_broker(g: &GroupConfig) -> GroupSettings {
        GroupSettings {
            consumer_session_timeout_ms: g.consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms: g.consumer_heartbeat_interval_ms,
            share_session_timeout_ms: g.share_session_timeout_ms,
            share_heartbeat_interval_ms: g.share_heartbeat_interval_ms,
            share_record_lock_duration_ms: g.share_record_lock_duration_ms,
            share_auto_offset_reset: ShareAutoOffsetReset::Latest,
        }
    }

    /// The broker's settings with `overrides` applied, checked as Kafka checks a group config
    /// change: known names, valid values, and each session timeout above its heartbeat
    /// interval.
    pub fn resolve(
        g: &GroupConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<GroupSettings, ConfigError> {
        let mut s = GroupSettings::of_broker(g);
        for (name, value) in overrides {
            let name = name.as_str();
            match name {
                "consumer.session.timeout.ms" => {
                    s.consumer_session_timeout_ms = parse_min(name, value, 1)?
                }
                "consumer.heartbeat.interval.ms" => {
                    s.consumer_heartbeat_interval_ms = parse_min(name, value, 1)?
                }
                "share.session.timeout.ms" => {
                    s.share_session_timeout_ms = parse_min(name, value, 1)?
                }
                "share.heartbeat.interval.ms" => {
                    s.share_heartbeat_interval_ms = parse_min(name, value, 1)?
                }
                // The bounds of the broker setting `group.share.record.lock.duration.ms`.
                "share.record.lock.duration.ms" => {
                    s.share_record_lock_duration_ms = parse_between(name, value, 1000, 3_600_000)?
                }
                "share.auto.offset.reset" => {
                    s.share_auto_offset_reset = match value.to_ascii_lowercase().as_str() {
                        "latest" => ShareAutoOffsetReset::Latest,
                        "earliest" => ShareAutoOffsetReset::Earliest,
                        _ => return Err(invalid(name, value, "must be latest or earliest")),
                    }
                }
                _ => return Err(ConfigError::Unknown(name.to_string())),
            }
        }
        let above = |session: i32, heartbeat: i32, what: &str| {
            if session <= heartbeat {
                Err(ConfigError::Conflict(format!(
                    "{what}.session.timeout.ms must be greater than {what}.heartbeat.interval.ms"
                )))
            } else {
                Ok(())
            }
        };
        above(
            s.consumer_session_timeout_ms,
            s.consumer_heartbeat_interval_ms,
            "consumer",
        )?;
        above(
            s.share_session_timeout_ms,
            s.share_heartbeat_interval_ms,
            "share",
        )?;
        Ok(s)
    }

    /// The settings of a group whose overrides were checked when they were set; the broker's
    /// if they no longer resolve (a broker setting changed under them).
    pub fn of(g: &GroupConfig, overrides: Option<&BTreeMap<String, String>>) -> GroupSettings {
        overrides
            .and_then(|o| GroupSettings::resolve(g, o).ok())
            .unwrap_or_else(|| GroupSettings::of_broker(g))
    }

    /// A setting's value by its group config name, as DescribeConfigs shows it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "consumer.session.timeout.ms" => self.consumer_session_timeout_ms.to_string(),
            "consumer.heartbeat.interval.ms" => self.consumer_heartbeat_interval_ms.to_string(),
            "share.session.timeout.ms" => self.share_session_timeout_ms.to_string(),
            "share.heartbeat.interval.ms" => self.share_heartbeat_interval_ms.to_string(),
            "share.record.lock.duration.ms" => self.share_record_lock_duration_ms.to_string(),
            "share.auto.offset.reset" => match self.share_auto_offset_reset {
                ShareAutoOffsetReset::Latest => "latest".to_string(),
                ShareAutoOffsetReset::Earliest => "earliest".to_string(),
            },
            _ => return None,
        })
    }
}

/// The type (DescribeConfigs' config type) and a short documentation of a group config, and
/// the broker setting it overrides, if there is one.
pub fn info(name: &str) -> Option<(i8, &'static str, Option<&'static str>)> {
    use super::alter::config_type::{INT, STRING};
    Some(match name {
        "consumer.session.timeout.ms" => (INT, "How long a consumer-protocol member may go without a heartbeat before it is removed.", Some("group.consumer.session.timeout.ms")),
        "consumer.heartbeat.interval.ms" => (INT, "How often consumer-protocol members heartbeat.", Some("group.consumer.heartbeat.interval.ms")),
        "share.session.timeout.ms" => (INT, "How long a share group member may go without a heartbeat before it is removed.", Some("group.share.session.timeout.ms")),
        "share.heartbeat.interval.ms" => (INT, "How often share group members heartbeat.", Some("group.share.heartbeat.interval.ms")),
        "share.record.lock.duration.ms" => (INT, "How long a record delivered to a share group member stays acquired by it.", Some("group.share.record.lock.duration.ms")),
        "share.auto.offset.reset" => (STRING, "Where a share group starts on a partition it has no state for: `latest` (the log end) or `earliest` (the log start).", None),
        _ => return None,
    })
}

/// Kafka's text for a refused group config change.
pub fn kafka_message(e: &ConfigError) -> String {
    match e {
        ConfigError::Unknown(name) => format!("Unknown group config name: {name}"),
        other => other.kafka_message(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<GroupSettings, ConfigError> {
        let o = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        GroupSettings::resolve(&GroupConfig::default(), &o)
    }

    #[test]
    fn overrides_apply_over_the_broker_settings() {
        let s = with(&[
            ("share.auto.offset.reset", "EARLIEST"),
            ("share.record.lock.duration.ms", "2000"),
            ("consumer.session.timeout.ms", "50000"),
        ])
        .unwrap();
        assert_eq!(s.share_auto_offset_reset, ShareAutoOffsetReset::Earliest);
        assert_eq!(s.share_record_lock_duration_ms, 2000);
        assert_eq!(s.consumer_session_timeout_ms, 50_000);
        assert_eq!(s.share_session_timeout_ms, 45_000);
        assert_eq!(s.get("share.auto.offset.reset").unwrap(), "earliest");
        for name in GROUP_CONFIGS {
            assert!(s.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn bad_names_and_values_are_refused_with_kafkas_text() {
        let e = with(&[("share.auto.offset.rest", "earliest")]).unwrap_err();
        assert_eq!(
            kafka_message(&e),
            "Unknown group config name: share.auto.offset.rest"
        );
        assert!(with(&[("share.auto.offset.reset", "sideways")]).is_err());
        assert!(with(&[("share.record.lock.duration.ms", "999")]).is_err());
        assert!(with(&[("share.record.lock.duration.ms", "x")]).is_err());
        assert!(with(&[("consumer.heartbeat.interval.ms", "0")]).is_err());
        let e = with(&[("share.heartbeat.interval.ms", "45000")]).unwrap_err();
        assert_eq!(
            kafka_message(&e),
            "share.session.timeout.ms must be greater than share.heartbeat.interval.ms"
        );
        assert_eq!(
            GroupSettings::of(&GroupConfig::default(), None),
            GroupSettings::of_broker(&GroupConfig::default())
        );
    }
}
