//! The controller's decisions, as pure code: a command is checked against the current image
//! and turned into the records that carry it out (or refused with a domain error). The quorum
//! driver proposes those records; every node then applies them with [`Snapshot::apply`].
//!
//! Placement, leader election, fencing and ISR changes follow Kafka's controller
//! (`ReplicationControlManager`): replicas spread round-robin over unfenced brokers; a fenced
//! leader hands over to the next live ISR member in replica order; the last ISR member stays in
//! the ISR (leaderless) so it can lead again when it returns; unclean election only where the
//! topic allows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::image::{
    ConfigResource, Endpoint, PartitionMeta, Record, Snapshot, TopicMeta, NO_LEADER,
};
use super::{validate_topic_name, MetadataError};
use crate::config::alter::{self, ConfigChange};
use crate::config::group::{self, GroupSettings};
use crate::config::{ConfigError, GroupConfig, LogConfig, TOPIC_CONFIGS};
use crate::security::acl::{AclBinding, AclBindingFilter};
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::types::NodeId;

/// Producer ids are handed to brokers a block at a time (Kafka's block size).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Partition counts above this are refused; each partition is a directory and open files.
pub const PARTITIONS_MAX: i32 = 100_000;

/// What a topic creation asks for, after broker defaults are filled in.
#[derive(Debug, Clone)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    InitCluster {
        cluster_id: String,
    },
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    CreatePartitions {
        name: String,
        total: i32,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    AllocateProducerIds {
        node: NodeId,
    },
    RegisterBroker {
        node: NodeId,
        host: String,
        port: u16,
        incarnation: Uuid,
        rack: Option<String>,
        /// Every client listener's advertised address.
        #[serde(default)]
        endpoints: Vec<Endpoint>,
    },
    FenceBroker {
        node: NodeId,
    },
    /// A registered broker has opened its logs and its listeners: clients and leaderships may
    /// come to it (Kafka's heartbeat with wantFence=false after the broker's start-up).
    UnfenceBroker {
        node: NodeId,
        incarnation: Uuid,
    },
    /// A partition leader asks for a new ISR (Kafka's AlterPartition).
    AlterPartition {
        topic: String,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// Leadership goes back to preferred replicas that are live and in sync.
    ElectPreferredLeaders,
    /// Changes the dynamic configs of a topic or broker (Kafka's IncrementalAlterConfigs). With
    /// `replace` (the legacy AlterConfigs), the changes start from no overrides at all: what
    /// they do not set returns to its default.
    AlterConfigs {
        resource: ConfigResource,
        changes: Vec<ConfigChange>,
        replace: bool,
        validate_only: bool,
    },
    /// Sets and removes SCRAM credentials (Kafka's AlterUserScramCredentials, checked by the
    /// broker that took the request); removing one that is not there does nothing.
    AlterScramCredentials {
        set: Vec<(String, ScramMechanism, ScramCredential)>,
        remove: Vec<(String, ScramMechanism)>,
    },
    /// Adds ACL bindings (checked by the broker that took the request); one that exists
    /// already is left as it is.
    CreateAcls {
        bindings: Vec<AclBinding>,
    },
    /// Removes the bindings each filter matches; answers them, filter by filter.
    DeleteAcls {
        filters: Vec<AclBindingFilter>,
    },
}

/// What a command answers once its records are committed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Done,
    Created {
        id: Uuid,
        partitions: i32,
        replication_factor: i16,
    },
    Deleted {
        id: Uuid,
    },
    ProducerIds {
        start: i64,
        end: i64,
    },
    Partition {
        isr: Vec<NodeId>,
        partition_epoch: i32,
    },
    /// The bindings DeleteAcls removed, one list per filter.
    AclsDeleted(Vec<Vec<AclBinding>>),
}

/// The settings the controller decides with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub defaults: LogConfig,
    pub default_replication_factor: i16,
    /// The broker's group settings, which group configs override.
    pub groups: GroupConfig,
}

/// Checks `cmd` against `image` and returns the records that carry it out, and the answer.
pub fn plan(
    image: &Snapshot,
    cmd: &Command,
    settings: &Settings,
) -> Result<(Vec<Record>, Reply), MetadataError> {
    match cmd {
        Command::InitCluster { cluster_id } => {
            if image.cluster_id.is_empty() {
                let r = Record::ClusterCreated {
                    cluster_id: cluster_id.clone(),
                };
                Ok((vec![r], Reply::Done))
            } else {
                Ok((Vec::new(), Reply::Done))
            }
        }
        Command::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
            validate_only,
        } => {
            let req = CreateTopic {
                name: name.clone(),
                partitions: *partitions,
                replication_factor: *replication_factor,
                configs: configs.clone(),
            };
            create_topic(image, &req, *validate_only, settings)
        }
        Command::CreatePartitions {
            name,
            total,
            validate_only,
        } => create_partitions(image, name, *total, *validate_only),
        Command::DeleteTopic { name } => {
            let t = image
                .topic(name)
                .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
            let r = Record::TopicDeleted { name: name.clone() };
            Ok((vec![r], Reply::Deleted { id: t.id }))
        }
        Command::AllocateProducerIds { node } => {
            let start = image.producer_ids_end;
            let end = start + PRODUCER_ID_BLOCK;
            let r = Record::ProducerIdsAllocated {
                node: *node,
                start,
                end,
            };
            Ok((vec![r], Reply::ProducerIds { start, end }))
        }
        Command::RegisterBroker {
            node,
            host,
            port,
            incarnation,
            rack,
            endpoints,
        } => Ok((
            register_broker(
                image,
                *node,
                (host, *port, endpoints),
                *incarnation,
                rack.clone(),
            ),
            Reply::Done,
        )),
        Command::FenceBroker { node } => Ok((fence_broker(image, *node), Reply::Done)),
        Command::UnfenceBroker { node, incarnation } => {
            Ok((unfence_broker(image, *node, *incarnation), Reply::Done))
        }
        Command::AlterPartition {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        } => alter_partition(
            image,
            topic,
            *partition,
            *leader,
            *leader_epoch,
            *partition_epoch,
            isr,
        ),
        Command::ElectPreferredLeaders => Ok((elect_preferred(image), Reply::Done)),
        Command::AlterConfigs {
            resource,
            changes,
            replace,
            validate_only,
        } => alter_configs(image, resource, changes, *replace, *validate_only, settings),
        Command::AlterScramCredentials { set, remove } => {
            let mut records: Vec<Record> = remove
                .iter()
                .filter(|(user, m)| {
                    image
                        .scram_credentials
                        .get(user)
                        .is_some_and(|c| c.contains_key(m))
                })
                .map(|(user, m)| Record::ScramCredentialRemoved {
                    user: user.clone(),
                    mechanism: *m,
                })
                .collect();
            records.extend(set.iter().map(|(user, m, c)| Record::ScramCredentialSet {
                user: user.clone(),
                mechanism: *m,
                credential: c.clone(),
            }));
            Ok((records, Reply::Done))
        }
        Command::CreateAcls { bindings } => {
            let mut added = std::collections::BTreeSet::new();
            let records = bindings
                .iter()
                .filter(|b| !image.acls.contains(b) && added.insert(*b))
                .map(|b| Record::AclCreated { binding: b.clone() })
                .collect();
            Ok((records, Reply::Done))
        }
        Command::DeleteAcls { filters } => {
            // A binding two filters match is removed once and reported for both, as Kafka does.
            let matched: Vec<Vec<AclBinding>> = filters
                .iter()
                .map(|f| image.acls.filter(f).cloned().collect())
                .collect();
            let doomed: std::collections::BTreeSet<&AclBinding> =
                matched.iter().flatten().collect();
            let records = doomed
                .into_iter()
                .map(|b| Record::AclRemoved { binding: b.clone() })
                .collect();
            Ok((records, Reply::AclsDeleted(matched)))
        }
    }
}

/// Checks a config change against the image and Kafka's rules; the record carries the names
/// whose override changes. See [`alter::apply_changes`] for the operations.
fn alter_configs(
    image: &Snapshot,
    resource: &ConfigResource,
    changes: &[ConfigChange],
    replace: bool,
    validate_only: bool,
    settings: &Settings,
) -> Result<(Vec<Record>, Reply), MetadataError> {
    let mut seen = std::collections::HashSet::new();
    if changes.iter().any(|c| !seen.insert(c.name.as_str())) {
        return Err(MetadataError::InvalidRequest(
            "Error due to duplicate config keys".to_string(),
        ));
    }
    let defaults = image.log_defaults(&settings.defaults);
    let (before, after) = match resource {
        ConfigResource::Topic(name) => {
            let t = image
                .topic(name)
                .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
            if let Some(c) = changes
                .iter()
                .find(|c| !TOPIC_CONFIGS.iter().any(|(n, _)| *n == c.name))
            {
                return Err(MetadataError::InvalidConfig(
                    ConfigError::Unknown(c.name.clone()).kafka_message(),
                ));
            }
            let nulls: Vec<&str> = changes
                .iter()
                .filter(|c| c.op != alter::AlterOp::Delete && c.value.is_none())
                .map(|c| c.name.as_str())
                .collect();
            if !nulls.is_empty() {
                return Err(MetadataError::InvalidRequest(format!(
                    "Null value not supported for topic configs: {}",
                    nulls.join(",")
                )));
            }
            let base = if replace {
                BTreeMap::new()
            } else {
                t.configs.clone()
            };
            let after = alter::apply_changes(&base, changes, alter::is_list_topic_config, |n| {
                t.log_config.get_topic(n)
            })
            .map_err(MetadataError::InvalidConfig)?;
            LogConfig::resolve(&defaults, &after)
                .map_err(|e| MetadataError::InvalidConfig(e.kafka_message()))?;
            (t.configs.clone(), after)
        }
        ConfigResource::Broker(node) => {
            let before = image
                .dynamic_broker_configs(*node)
                .cloned()
                .unwrap_or_default();
            let refuse = |why: String| {
                MetadataError::InvalidRequest(format!(
                    "Invalid config value for resource ConfigResource(type=BROKER, name='{}'): \
                     {why}",
                    ConfigResource::broker_key(*node)
                ))
            };
            let fixed: Vec<&str> = changes
                .iter()
                .map(|c| c.name.as_str())
                .filter(|n| alter::is_known_broker_config(n) && !alter::is_dynamic_broker_config(n))
                .collect();
            if !fixed.is_empty() {
                return Err(refuse(format!(
                    "Cannot update these configs dynamically: Set({})",
                    fixed.join(", ")
                )));
            }
            if let Some(c) = changes.iter().find(|c| {
                matches!(c.op, alter::AlterOp::Append | alter::AlterOp::Subtract)
                    && !alter::is_list_broker_config(&c.name)
            }) {
                let op = if c.op == alter::AlterOp::Append {
                    "append"
                } else {
                    "subtract"
                };
                return Err(MetadataError::InvalidRequest(format!(
                    "Config value {op} is not allowed for config key: {}",
                    c.name
                )));
            }
            let base = if replace {
                BTreeMap::new()
            } else {
                before.clone()
            };
            let after = alter::apply_changes(&base, changes, alter::is_list_broker_config, |n| {
                alter::topic_twin(n).and_then(|t| defaults.get_topic(t))
            })
            .map_err(MetadataError::InvalidRequest)?;
            let mut check = settings.defaults.clone();
            for (name, value) in &after {
                if let Some(topic) = alter::topic_twin(name) {
                    check.set_topic(topic, value).map_err(|e| {
                        let e = match e {
                            ConfigError::Invalid { value, why, .. } => ConfigError::Invalid {
                                name: name.clone(),
                                value,
                                why,
                            },
                            other => other,
                        };
                        refuse(e.kafka_message())
                    })?;
                }
            }
            (before, after)
        }
        ConfigResource::Group(group) => {
            let before = image.group_configs.get(group).cloned().unwrap_or_default();
            let base = if replace {
                BTreeMap::new()
            } else {
                before.clone()
            };
            // No group config is a list: appending or subtracting is refused here.
            let broker = GroupSettings::of_broker(&settings.groups);
            let after = alter::apply_changes(&base, changes, |_| false, |n| broker.get(n))
                .map_err(MetadataError::InvalidConfig)?;
            GroupSettings::resolve(&settings.groups, &after)
                .map_err(|e| MetadataError::InvalidConfig(group::kafka_message(&e)))?;
            (before, after)
        }
    };
    let mut diff: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (name, value) in &after {
        if before.get(name) != Some(value) {
            diff.insert(name.clone(), Some(value.clone()));
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) {
            diff.insert(name.clone(), None);
        }
    }
    if validate_only || diff.is_empty() {
        return Ok((Vec::new(), Reply::Done));
    }
    let r = Record::ConfigsChanged {
        resource: resource.clone(),
        changes: diff,
    };
    Ok((vec![r], Reply::Done))
}

fn create_topic(
    image: &Snapshot,
    req: &CreateTopic,
    validate_only: bool,
    settings: &Settings,
) -> Result<(Vec<Record>, Reply), MetadataError> {
    validate_topic_name(&req.name).map_err(MetadataError::InvalidTopic)?;
    if image.topics.contains_key(&req.name) {
        return Err(MetadataError::TopicExists(req.name.clone()));
    }
    if req.name.contains(['.', '_']) {
        let unified = super::unify_collision_chars(&req.name);
        if let Some(other) = image
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
    let rf = if req.replication_factor == -1 {
        settings.default_replication_factor
    } else {
        req.replication_factor
    };
    LogConfig::resolve(&image.log_defaults(&settings.defaults), &req.configs)
        .map_err(|e| MetadataError::InvalidConfig(e.kafka_message()))?;
    let assignments = place(image, &req.name, 0, req.partitions, rf)?;
    let id = Uuid::new_v4();
    let reply = Reply::Created {
        id,
        partitions: req.partitions,
        replication_factor: rf,
    };
    if validate_only {
        return Ok((Vec::new(), reply));
    }
    let r = Record::TopicCreated {
        name: req.name.clone(),
        id,
        configs: req.configs.clone(),
        assignments,
    };
    Ok((vec![r], reply))
}

/// Replicas for partitions `first..first + count`: round-robin over the unfenced brokers from
/// a start picked by the topic name, so topics do not all lead on the same broker.
fn place(
    image: &Snapshot,
    topic: &str,
    first: i32,
    count: i32,
    rf: i16,
) -> Result<Vec<Vec<NodeId>>, MetadataError> {
    let live: Vec<NodeId> = image.live_brokers().map(|b| b.node).collect();
    if rf < 1 || rf as usize > live.len() {
        return Err(MetadataError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of \
             {rf} cannot be reached because only {} broker(s) are registered.",
            live.len()
        )));
    }
    let n = live.len();
    let start = crc32c::crc32c(topic.as_bytes()) as usize % n;
    Ok((first..first + count)
        .map(|p| {
            (0..rf as usize)
                .map(|j| live[(start + p as usize + j) % n])
                .collect()
        })
        .collect())
}

fn create_partitions(
    image: &Snapshot,
    name: &str,
    total: i32,
    validate_only: bool,
) -> Result<(Vec<Record>, Reply), MetadataError> {
    let t = image
        .topic(name)
        .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
    if total <= t.partitions {
        return Err(MetadataError::InvalidPartitions(format!(
            "Topic currently has {} partitions, which is higher than the requested {total}.",
            t.partitions
        )));
    }
    if total > PARTITIONS_MAX {
        return Err(MetadataError::InvalidPartitions(format!(
            "at most {PARTITIONS_MAX} partitions, got {total}"
        )));
    }
    let rf = t.replication_factor() as i16;
    let assignments = place(image, name, t.partitions, total - t.partitions, rf)?;
    if validate_only {
        return Ok((Vec::new(), Reply::Done));
    }
    let r = Record::PartitionsAdded {
        name: name.to_string(),
        assignments,
    };
    Ok((vec![r], Reply::Done))
}

/// A leader for a partition whose leader is gone: the first live ISR member in replica order,
/// or (if the topic allows unclean election) any live replica.
fn elect(image: &Snapshot, p: &PartitionMeta, isr: &[NodeId], unclean: bool) -> NodeId {
    let in_sync = p
        .replicas
        .iter()
        .find(|r| isr.contains(r) && image.is_live(**r));
    match in_sync {
        Some(r) => *r,
        None if unclean => p
            .replicas
            .iter()
            .find(|r| image.is_live(**r))
            .copied()
            .unwrap_or(NO_LEADER),
        None => NO_LEADER,
    }
}

fn changed(
    topic: &TopicMeta,
    index: usize,
    p: &PartitionMeta,
    leader: NodeId,
    isr: Vec<NodeId>,
) -> Record {
    Record::PartitionChanged {
        topic: topic.name.clone(),
        partition: index as i32,
        leader,
        leader_epoch: p.leader_epoch + i32::from(leader != p.leader),
        isr,
        partition_epoch: p.partition_epoch + 1,
    }
}

/// The broker is gone (session expired, or it restarted): it leaves every ISR it can leave and
/// hands over its leaderships.
fn fence_broker(image: &Snapshot, node: NodeId) -> Vec<Record> {
    if !image.brokers.contains_key(&node) {
        return Vec::new();
    }
    let mut after = image.clone();
    if let Some(b) = after.brokers.get_mut(&node) {
        b.fenced = true;
    }
    let mut records = vec![Record::BrokerFenced { node }];
    for t in image.topics.values() {
        for (i, p) in t.assignments.iter().enumerate() {
            if !p.isr.contains(&node) && p.leader != node {
                continue;
            }
            let mut isr: Vec<NodeId> = p.isr.iter().copied().filter(|r| *r != node).collect();
            if isr.is_empty() {
                // The last in-sync replica stays, so it can lead again when it returns.
                isr = p.isr.clone();
            }
            let leader = if p.leader == node || p.leader == NO_LEADER {
                elect(&after, p, &isr, t.log_config.unclean_leader_election_enable)
            } else {
                p.leader
            };
            if leader != NO_LEADER && !isr.contains(&leader) {
                isr = vec![leader];
            }
            if leader != p.leader || isr != p.isr {
                records.push(changed(t, i, p, leader, isr));
            }
        }
    }
    records
}

/// A broker registered (it started): if it replaces a known incarnation, that one is fenced
/// first. The new incarnation starts fenced, as in Kafka: nothing is sent to it until it says
/// it serves ([`unfence_broker`]).
fn register_broker(
    image: &Snapshot,
    node: NodeId,
    (host, port, endpoints): (&str, u16, &[Endpoint]),
    incarnation: Uuid,
    rack: Option<String>,
) -> Vec<Record> {
    let known = image.brokers.get(&node);
    if known.is_some_and(|b| b.incarnation == incarnation) {
        // A retry of this registration: fenced or not, it stands.
        return Vec::new();
    }
    let mut records = Vec::new();
    let mut after = image.clone();
    if known.is_some_and(|b| !b.fenced) {
        records = fence_broker(image, node);
        for r in &records {
            after.apply(r.clone(), &LogConfig::default());
        }
    }
    let registered = Record::BrokerRegistered {
        node,
        host: host.to_string(),
        port,
        incarnation,
        rack,
        endpoints: endpoints.to_vec(),
    };
    records.push(registered);
    records.push(Record::BrokerFenced { node });
    records
}

/// The registered incarnation serves: it is unfenced, and leaderless partitions it is in sync
/// for get it as leader. Another incarnation's request changes nothing.
fn unfence_broker(image: &Snapshot, node: NodeId, incarnation: Uuid) -> Vec<Record> {
    match image.brokers.get(&node) {
        Some(b) if b.incarnation == incarnation && b.fenced => {}
        _ => return Vec::new(),
    }
    let unfenced = Record::BrokerUnfenced { node };
    let mut after = image.clone();
    after.apply(unfenced.clone(), &LogConfig::default());
    let mut records = vec![unfenced];
    for t in after.topics.values() {
        for (i, p) in t.assignments.iter().enumerate() {
            if p.leader == NO_LEADER && p.isr.contains(&node) {
                records.push(changed(t, i, p, node, p.isr.clone()));
            }
        }
    }
    records
}

#[allow(clippy::too_many_arguments)]
fn alter_partition(
    image: &Snapshot,
    topic: &str,
    partition: i32,
    leader: NodeId,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[NodeId],
) -> Result<(Vec<Record>, Reply), MetadataError> {
    let t = image
        .topic(topic)
        .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
    let p = t
        .partition(partition)
        .ok_or_else(|| MetadataError::UnknownTopic(format!("{topic}-{partition}")))?;
    if p.leader != leader || p.leader_epoch != leader_epoch {
        return Err(MetadataError::FencedLeaderEpoch(format!(
            "{topic}-{partition}: leader {leader} epoch {leader_epoch}, current leader {} epoch {}",
            p.leader, p.leader_epoch
        )));
    }
    if p.partition_epoch != partition_epoch {
        return Err(MetadataError::InvalidUpdateVersion(format!(
            "{topic}-{partition}: partition epoch {partition_epoch}, current {}",
            p.partition_epoch
        )));
    }
    let valid = isr.contains(&leader)
        && isr
            .iter()
            .all(|r| p.replicas.contains(r) && (image.is_live(*r) || p.isr.contains(r)));
    if !valid {
        return Err(MetadataError::IneligibleReplica(format!(
            "{topic}-{partition}: ISR {isr:?} is not a set of live replicas with the leader"
        )));
    }
    let r = changed(t, partition as usize, p, leader, isr.to_vec());
    let reply = Reply::Partition {
        isr: isr.to_vec(),
        partition_epoch: p.partition_epoch + 1,
    };
    Ok((vec![r], reply))
}

fn elect_preferred(image: &Snapshot) -> Vec<Record> {
    let mut records = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.assignments.iter().enumerate() {
            let preferred = p.preferred_leader();
            if p.leader != preferred && image.is_live(preferred) && p.isr.contains(&preferred) {
                records.push(changed(t, i, p, preferred, p.isr.clone()));
            }
        }
    }
    records
}

/// The topic a creation made, as the image will hold it (for validate-only answers).
pub fn preview(
    req: &CreateTopic,
    id: Uuid,
    settings: &Settings,
) -> Result<Arc<TopicMeta>, MetadataError> {
    let log_config = LogConfig::resolve(&settings.defaults, &req.configs)
        .map_err(|e| MetadataError::InvalidConfig(e.kafka_message()))?;
    Ok(Arc::new(TopicMeta {
        name: req.name.clone(),
        id,
        partitions: req.partitions,
        configs: req.configs.clone(),
        log_config,
        assignments: Vec::new(),
    }))
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
