//! The metadata state machine and its controller.
//!
//! `Controller` lives on shard 0 only. Every command is validated against the current state,
//! turned into records, made durable in the [`MetadataLog`], then applied; `apply` is the only
//! code that changes the state, so replaying the log rebuilds it exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use super::log::MetadataLog;
use super::validate_topic_name;
use crate::config::LogConfig;

/// One change to the metadata. The log holds these in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Record {
    ClusterCreated {
        cluster_id: String,
    },
    TopicCreated {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    PartitionsAdded {
        name: String,
        partitions: i32,
    },
    TopicDeleted {
        name: String,
    },
    /// Producer ids in [start, end) are handed out from now on.
    ProducerIdsAllocated {
        start: i64,
        end: i64,
    },
}

/// Producer ids are made durable a block at a time; ids of a block unused at a restart are
/// skipped, never reused (as Kafka's controller does).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Overrides given at creation, by Kafka's topic config names.
    pub configs: BTreeMap<String, String>,
    /// Broker defaults with the overrides applied.
    pub log_config: LogConfig,
}

/// An immutable view of the metadata, published to every shard after each change.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Grows with every applied record; a shard ignores snapshots older than the one it has.
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    pub topic_ids: HashMap<Uuid, String>,
}

impl Snapshot {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMeta>> {
        self.topic_ids.get(id).and_then(|n| self.topics.get(n))
    }
}

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
    UnknownTopicId(Uuid),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// Kafka's own message (INVALID_CONFIG).
    #[error("{0}")]
    InvalidConfig(String),
    #[error("metadata log: {0}")]
    Io(#[from] std::io::Error),
}

/// What a topic creation asks for, after broker defaults are filled in.
#[derive(Debug, Clone)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// Partition counts above this are refused; each partition is a directory and open files.
pub const PARTITIONS_MAX: i32 = 100_000;

pub struct Controller {
    log: MetadataLog,
    defaults: LogConfig,
    live_brokers: i16,
    snapshot: Snapshot,
    /// Next producer id to hand out, and the end of the allocated block.
    producer_ids: (i64, i64),
}

impl Controller {
    /// Replays the log; a new log gets a fresh cluster id as its first record.
    pub fn open(
        log: MetadataLog,
        records: Vec<Record>,
        defaults: LogConfig,
    ) -> Result<Controller, MetadataError> {
        let mut c = Controller {
            log,
            defaults,
            live_brokers: 1,
            snapshot: Snapshot::default(),
            producer_ids: (0, 0),
        };
        for r in records {
            c.apply(r);
        }
        // Whatever the last block had left may have been handed out before the restart.
        c.producer_ids.0 = c.producer_ids.1;
        if c.snapshot.cluster_id.is_empty() {
            let id = Uuid::new_v4().simple().to_string();
            c.commit(vec![Record::ClusterCreated { cluster_id: id }])?;
        }
        Ok(c)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::new(self.snapshot.clone())
    }

    fn commit(&mut self, records: Vec<Record>) -> Result<(), MetadataError> {
        self.log.append(&records)?;
        for r in records {
            self.apply(r);
        }
        Ok(())
    }

    /// Applies one record. Records were validated before they were logged, so a record that
    /// does not fit the state means the log is corrupt: that is a bug, not an input error.
    fn apply(&mut self, record: Record) {
        let s = &mut self.snapshot;
        s.version += 1;
        match record {
            Record::ClusterCreated { cluster_id } => s.cluster_id = cluster_id,
            Record::TopicCreated {
                name,
                id,
                partitions,
                configs,
            } => {
                let log_config = LogConfig::resolve(&self.defaults, &configs)
                    .unwrap_or_else(|e| panic!("logged topic {name} has bad config: {e}"));
                s.topic_ids.insert(id, name.clone());
                let meta = TopicMeta {
                    name: name.clone(),
                    id,
                    partitions,
                    configs,
                    log_config,
                };
                s.topics.insert(name, Arc::new(meta));
            }
            Record::PartitionsAdded { name, partitions } => {
                let t = s
                    .topics
                    .get_mut(&name)
                    .unwrap_or_else(|| panic!("partitions added to unknown topic {name}"));
                assert!(partitions > t.partitions, "partition count must grow");
                Arc::make_mut(t).partitions = partitions;
            }
            Record::TopicDeleted { name } => {
                if let Some(t) = s.topics.remove(&name) {
                    s.topic_ids.remove(&t.id);
                }
            }
            Record::ProducerIdsAllocated { start, end } => {
                assert!(
                    start >= self.producer_ids.1 && end > start,
                    "producer id block [{start}, {end}) after {:?}",
                    self.producer_ids
                );
                self.producer_ids = (start, end);
            }
        }
    }

    fn check_create(&self, req: &CreateTopic) -> Result<(), MetadataError> {
        validate_topic_name(&req.name).map_err(MetadataError::InvalidTopic)?;
        if self.snapshot.topics.contains_key(&req.name) {
            return Err(MetadataError::TopicExists(req.name.clone()));
        }
        if req.name.contains(['.', '_']) {
            let unified = super::unify_collision_chars(&req.name);
            if let Some(other) = self
                .snapshot
                .topics
                .keys()
                .find(|t| super::unify_collision_chars(t) == unified)
            {
                return Err(MetadataError::InvalidTopic(format!(
                    "Topic '{}' collides with existing topic: {other}",
                    req.name
                )));
            }
        }
        if req.partitions < 1 || req.partitions > PARTITIONS_MAX {
            return Err(MetadataError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_MAX}, got {}",
                req.partitions
            )));
        }
        if req.replication_factor < 1 || req.replication_factor > self.live_brokers {
            return Err(MetadataError::InvalidReplicationFactor(format!(
                "replication factor {} with {} available broker(s)",
                req.replication_factor, self.live_brokers
            )));
        }
        LogConfig::resolve(&self.defaults, &req.configs)
            .map_err(|e| MetadataError::InvalidConfig(e.kafka_message()))?;
        Ok(())
    }

    /// Creates a topic (or only checks that it could be, with `validate_only`).
    pub fn create_topic(
        &mut self,
        req: CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>, MetadataError> {
        self.check_create(&req)?;
        let id = Uuid::new_v4();
        if validate_only {
            return Ok(Arc::new(TopicMeta {
                name: req.name.clone(),
                id,
                partitions: req.partitions,
                log_config: LogConfig::resolve(&self.defaults, &req.configs)
                    .map_err(|e| MetadataError::InvalidConfig(e.to_string()))?,
                configs: req.configs,
            }));
        }
        let name = req.name.clone();
        self.commit(vec![Record::TopicCreated {
            name: req.name,
            id,
            partitions: req.partitions,
            configs: req.configs,
        }])?;
        Ok(self.snapshot.topics[&name].clone())
    }

    /// Grows a topic to `total` partitions.
    pub fn create_partitions(
        &mut self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        let current = self
            .snapshot
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?
            .partitions;
        if total <= current {
            return Err(MetadataError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count must be larger, got {total}"
            )));
        }
        if total > PARTITIONS_MAX {
            return Err(MetadataError::InvalidPartitions(format!(
                "at most {PARTITIONS_MAX} partitions, got {total}"
            )));
        }
        if !validate_only {
            self.commit(vec![Record::PartitionsAdded {
                name: name.to_string(),
                partitions: total,
            }])?;
        }
        Ok(())
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<Uuid, MetadataError> {
        let id = self
            .snapshot
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?
            .id;
        self.commit(vec![Record::TopicDeleted {
            name: name.to_string(),
        }])?;
        Ok(id)
    }

    /// A producer id never handed out before, on this cluster, across restarts.
    pub fn next_producer_id(&mut self) -> Result<i64, MetadataError> {
        let (next, end) = self.producer_ids;
        if next >= end {
            self.commit(vec![Record::ProducerIdsAllocated {
                start: end,
                end: end + PRODUCER_ID_BLOCK,
            }])?;
        }
        let id = self.producer_ids.0;
        self.producer_ids.0 += 1;
        Ok(id)
    }

    pub fn topic_name(&self, id: &Uuid) -> Result<String, MetadataError> {
        self.snapshot
            .topic_ids
            .get(id)
            .cloned()
            .ok_or(MetadataError::UnknownTopicId(*id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn controller(dir: &std::path::Path) -> Controller {
        let (log, recs) = MetadataLog::open(dir).unwrap();
        Controller::open(log, recs, Config::default().log).unwrap()
    }

    fn req(name: &str, partitions: i32) -> CreateTopic {
        CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn commands_validate_and_survive_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        let cluster = c.snapshot().cluster_id.clone();
        assert!(!cluster.is_empty());
        let mut r = req("t", 2);
        r.configs.insert("retention.ms".into(), "100".into());
        let t = c.create_topic(r, false).unwrap();
        assert_eq!(t.log_config.retention_ms, 100);
        c.create_partitions("t", 4, false).unwrap();
        c.create_topic(req("gone", 1), false).unwrap();
        c.delete_topic("gone").unwrap();
        drop(c);
        let c = controller(dir.path());
        let s = c.snapshot();
        assert_eq!(s.cluster_id, cluster);
        assert_eq!(s.topics["t"].partitions, 4);
        assert_eq!(s.topics["t"].log_config.retention_ms, 100);
        assert!(s.topic("gone").is_none());
        assert_eq!(s.topic_by_id(&t.id).unwrap().name, "t");
    }

    #[test]
    fn producer_ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        let a: Vec<i64> = (0..3).map(|_| c.next_producer_id().unwrap()).collect();
        assert_eq!(a, vec![0, 1, 2]);
        drop(c);
        let mut c = controller(dir.path());
        let b = c.next_producer_id().unwrap();
        assert_eq!(b, PRODUCER_ID_BLOCK, "the rest of the old block is skipped");
        for _ in 0..PRODUCER_ID_BLOCK {
            c.next_producer_id().unwrap();
        }
        assert_eq!(c.next_producer_id().unwrap(), 2 * PRODUCER_ID_BLOCK + 1);
    }

    #[test]
    fn invalid_commands_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        c.create_topic(req("t", 1), false).unwrap();
        let v = c.snapshot().version;
        let mut bad_cfg = req("u", 1);
        bad_cfg.configs.insert("retention.ms".into(), "soon".into());
        let mut unknown_cfg = req("u", 1);
        unknown_cfg.configs.insert("no.such".into(), "1".into());
        let mut rf = req("u", 1);
        rf.replication_factor = 3;
        type Check = fn(&MetadataError) -> bool;
        let cases: Vec<(CreateTopic, Check)> = vec![
            (req("t", 1), |e| matches!(e, MetadataError::TopicExists(_))),
            (req("bad/name", 1), |e| {
                matches!(e, MetadataError::InvalidTopic(_))
            }),
            (req("u", 0), |e| {
                matches!(e, MetadataError::InvalidPartitions(_))
            }),
            (req("u", -5), |e| {
                matches!(e, MetadataError::InvalidPartitions(_))
            }),
            (bad_cfg, |e| matches!(e, MetadataError::InvalidConfig(_))),
            (unknown_cfg, |e| {
                matches!(e, MetadataError::InvalidConfig(_))
            }),
            (rf, |e| {
                matches!(e, MetadataError::InvalidReplicationFactor(_))
            }),
        ];
        for (r, check) in cases {
            let name = r.name.clone();
            let e = c.create_topic(r, false).unwrap_err();
            assert!(check(&e), "{name}: {e}");
        }
        assert!(matches!(
            c.create_partitions("t", 1, false),
            Err(MetadataError::InvalidPartitions(_))
        ));
        assert!(matches!(
            c.create_partitions("nope", 3, false),
            Err(MetadataError::UnknownTopic(_))
        ));
        assert!(c.create_topic(req("v", 2), true).is_ok());
        assert!(c.snapshot().topic("v").is_none());
        assert_eq!(c.snapshot().version, v);
    }
}
