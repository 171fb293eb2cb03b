//! The log cleaner's broker settings (Kafka's `log.cleaner.*` names). The topic-level knobs
//! (`min.cleanable.dirty.ratio`, `delete.retention.ms`, ...) are topic configs whose broker
//! defaults are the `log.cleaner.*` synonyms in `topic.rs`.

use super::{parse_bool, parse_min, parse_num, ConfigError};

#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`: compacted topics are cleaned at all.
    pub enable: bool,
    /// `log.cleaner.backoff.ms`: the pause when no log needs cleaning.
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory for the key maps, shared by the shards.
    pub dedupe_buffer_size: usize,
    /// `log.cleaner.io.max.bytes.per.second`: read plus write rate, per shard.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.threads`: accepted for compatibility; each shard cleans its own
    /// partitions, so there is one cleaner per shard.
    pub threads: u32,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            backoff_ms: 15_000,
            dedupe_buffer_size: 128 << 20,
            io_max_bytes_per_second: f64::MAX,
            threads: 1,
        }
    }
}

impl CleanerConfig {
    /// Applies a `log.cleaner.*` setting; false if `name` is not one.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        match name {
            "log.cleaner.enable" => self.enable = parse_bool(name, value)?,
            "log.cleaner.backoff.ms" => self.backoff_ms = parse_min(name, value, 0)?,
            "log.cleaner.dedupe.buffer.size" => {
                self.dedupe_buffer_size = parse_min(name, value, 1 << 10)?
            }
            "log.cleaner.io.max.bytes.per.second" => {
                let v: f64 = parse_num(name, value)?;
                if v.is_nan() || v <= 0.0 {
                    return Err(super::invalid(name, value, "must be positive"));
                }
                self.io_max_bytes_per_second = v;
            }
            "log.cleaner.threads" => self.threads = parse_min(name, value, 0)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "log.cleaner.enable" => self.enable.to_string(),
            "log.cleaner.backoff.ms" => self.backoff_ms.to_string(),
            "log.cleaner.dedupe.buffer.size" => self.dedupe_buffer_size.to_string(),
            "log.cleaner.io.max.bytes.per.second" => {
                if self.io_max_bytes_per_second >= f64::MAX {
                    "1.7976931348623157E308".to_string()
                } else {
                    self.io_max_bytes_per_second.to_string()
                }
            }
            "log.cleaner.threads" => self.threads.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaner_settings_parse_and_show() {
        let mut c = CleanerConfig::default();
        assert!(c.set("log.cleaner.backoff.ms", "100").unwrap());
        assert!(c
            .set("log.cleaner.io.max.bytes.per.second", "1048576")
            .unwrap());
        assert!(!c.set("log.retention.ms", "1").unwrap());
        assert!(c.set("log.cleaner.io.max.bytes.per.second", "0").is_err());
        assert!(c.set("log.cleaner.enable", "maybe").is_err());
        assert_eq!(c.get("log.cleaner.backoff.ms").as_deref(), Some("100"));
        assert_eq!(c.io_max_bytes_per_second, 1048576.0);
    }
}
