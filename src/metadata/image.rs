//! The metadata image: what the replicated metadata log says the cluster is (brokers, topics,
//! partitions with their replicas, leader, epochs and ISR, configs, producer-id blocks), and the
//! one `apply` every node runs on every committed record.
//!
//! `apply` is total and deterministic: records were validated by the controller before they were
//! proposed, and one that does not fit the image (a bug, or a log from a future version) is
//! skipped with a warning rather than applied halfway, so every node ends in the same image.
//! Shards read an immutable copy ([`Snapshot`], shared as `Arc`) published after each change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::LogConfig;
use crate::security::acl::{AclBinding, Acls};
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::types::NodeId;

/// No leader: every replica in the ISR is fenced (Kafka's -1).
pub const NO_LEADER: NodeId = -1;

/// What a config change is about (Kafka's ConfigResource of type TOPIC, BROKER or GROUP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// One broker's dynamic settings, or (`None`) the cluster-wide default of every broker.
    Broker(Option<NodeId>),
    /// One group's configs (Kafka's GROUP resource): overrides of the broker's group settings.
    Group(String),
}

impl ConfigResource {
    /// The key of a broker resource in [`Snapshot::broker_configs`]: the node id, or the empty
    /// string for the cluster-wide default (Kafka's empty resource name).
    pub fn broker_key(node: Option<NodeId>) -> String {
        node.map_or(String::new(), |n| n.to_string())
    }
}

/// One change to the metadata. The raft log holds these in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Record {
    ClusterCreated {
        cluster_id: String,
    },
    /// A broker (re)started: `incarnation` is new at every start, so a registration that
    /// differs from the known one means the broker restarted.
    BrokerRegistered {
        node: NodeId,
        host: String,
        port: u16,
        incarnation: Uuid,
        #[serde(default)]
        rack: Option<String>,
        /// Every client listener's advertised address, by listener name.
        #[serde(default)]
        endpoints: Vec<Endpoint>,
    },
    BrokerFenced {
        node: NodeId,
    },
    BrokerUnfenced {
        node: NodeId,
    },
    TopicCreated {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
        /// Replicas of each partition, in preference order; the first is the preferred leader.
        assignments: Vec<Vec<NodeId>>,
    },
    PartitionsAdded {
        name: String,
        assignments: Vec<Vec<NodeId>>,
    },
    /// A partition's leader and/or ISR changed. The partition epoch rises with every change,
    /// the leader epoch with every leader change.
    PartitionChanged {
        topic: String,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        isr: Vec<NodeId>,
        partition_epoch: i32,
    },
    TopicDeleted {
        name: String,
    },
    /// Producer ids in [start, end) belong to `node` from now on.
    ProducerIdsAllocated {
        #[serde(default)]
        node: NodeId,
        start: i64,
        end: i64,
    },
    /// Dynamic configs of a topic or broker changed: each name gets the value, or loses its
    /// override (`None`). One record per resource, so its values are checked together.
    ConfigsChanged {
        resource: ConfigResource,
        changes: BTreeMap<String, Option<String>>,
    },
    /// A user's SCRAM credential for one mechanism (Kafka's UserScramCredentialRecord): the
    /// salt and derived keys, never the password.
    ScramCredentialSet {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    ScramCredentialRemoved {
        user: String,
        mechanism: ScramMechanism,
    },
    /// An ACL binding (Kafka's AccessControlEntryRecord).
    AclCreated {
        binding: AclBinding,
    },
    AclRemoved {
        binding: AclBinding,
    },
}

/// A listener's advertised address, as a broker registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

impl PartitionMeta {
    pub fn new(replicas: Vec<NodeId>) -> PartitionMeta {
        PartitionMeta {
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    pub fn preferred_leader(&self) -> NodeId {
        self.replicas.first().copied().unwrap_or(NO_LEADER)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Overrides given at creation, by Kafka's topic config names.
    pub configs: BTreeMap<String, String>,
    /// Broker defaults with the overrides applied (not serialized: derived on load).
    #[serde(skip, default)]
    pub log_config: LogConfig,
    pub assignments: Vec<PartitionMeta>,
}

impl TopicMeta {
    pub fn partition(&self, p: i32) -> Option<&PartitionMeta> {
        usize::try_from(p)
            .ok()
            .and_then(|i| self.assignments.get(i))
    }

    pub fn replication_factor(&self) -> usize {
        self.assignments.first().map_or(0, |a| a.replicas.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub node: NodeId,
    pub host: String,
    pub port: u16,
    pub incarnation: Uuid,
    pub fenced: bool,
    #[serde(default)]
    pub rack: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

impl BrokerMeta {
    /// Where clients of `listener` reach this broker: that listener's endpoint, else the
    /// inter-broker address (a broker registered before it knew its endpoints).
    pub fn address_for(&self, listener: &str) -> (&str, u16) {
        self.endpoints
            .iter()
            .find(|e| e.listener.eq_ignore_ascii_case(listener))
            .map_or((self.host.as_str(), self.port), |e| {
                (e.host.as_str(), e.port)
            })
    }
}

/// An immutable view of the metadata, published to every shard after each change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Grows with every applied record; a shard ignores snapshots older than the one it has.
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    #[serde(skip, default)]
    pub topic_ids: HashMap<Uuid, String>,
    pub brokers: BTreeMap<NodeId, BrokerMeta>,
    /// The newest producer-id block of each node: [start, end).
    pub producer_ids: BTreeMap<NodeId, (i64, i64)>,
    /// The end of the newest block of any node: the next block starts here.
    pub producer_ids_end: i64,
    /// The active controller (raft leader) as this node last knew it; not part of the log.
    #[serde(skip, default)]
    pub controller: Option<NodeId>,
    /// Dynamic broker configs by broker name (Kafka's names, `log.retention.ms`), keyed by node
    /// id, or by the empty string for the cluster-wide default.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Group configs by group (Kafka's names, `share.auto.offset.reset`): only the overrides.
    #[serde(default)]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// SCRAM credentials by user, then mechanism.
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// The ACLs the authorizer enforces.
    #[serde(default)]
    pub acls: Acls,
    /// The node this image is resolved for: its per-broker dynamic configs feed the defaults
    /// of its topics' `log_config`. Not part of the log.
    #[serde(skip, default)]
    pub node: Option<NodeId>,
}

impl Snapshot {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMeta>> {
        self.topic_ids.get(id).and_then(|n| self.topics.get(n))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMeta> {
        self.topics.get(topic)?.partition(partition)
    }

    /// Brokers clients may use: registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerMeta> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn is_live(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.fenced)
    }

    /// Serialized form for raft snapshots (derived fields are rebuilt by [`Snapshot::restore`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .unwrap_or_else(|e| panic!("metadata image does not serialize: {e}"))
    }

    /// An image read back from a raft snapshot for `node`, with derived fields rebuilt.
    pub fn restore(
        bytes: &[u8],
        defaults: &LogConfig,
        node: Option<NodeId>,
    ) -> Result<Snapshot, String> {
        let mut s: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        s.node = node;
        s.topic_ids = s.topics.values().map(|t| (t.id, t.name.clone())).collect();
        let defaults = s.log_defaults(defaults);
        for t in s.topics.values_mut() {
            let config = LogConfig::resolve(&defaults, &t.configs)
                .map_err(|e| format!("topic {}: {e}", t.name))?;
            Arc::make_mut(t).log_config = config;
        }
        Ok(s)
    }

    /// The dynamic configs set for a broker resource (`None`: the cluster-wide default).
    pub fn dynamic_broker_configs(
        &self,
        node: Option<NodeId>,
    ) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(&ConfigResource::broker_key(node))
    }

    /// The topic defaults of this image's node: the static broker settings, then the
    /// cluster-wide dynamic defaults, then this node's own dynamic values (Kafka's order).
    pub fn log_defaults(&self, statics: &LogConfig) -> LogConfig {
        let mut d = statics.clone();
        for level in [None, self.node] {
            let Some(configs) = self.dynamic_broker_configs(level) else {
                continue;
            };
            for (name, value) in configs {
                if let Some(topic) = crate::config::alter::topic_twin(name) {
                    // Values were validated by the controller; a misfit keeps the default.
                    let _ = d.set_topic(topic, value);
                }
            }
        }
        d
    }

    /// Resolves every topic again after the defaults changed. A topic whose overrides no
    /// longer fit the new defaults keeps its old settings (logged).
    fn resolve_all(&mut self, statics: &LogConfig) {
        let defaults = self.log_defaults(statics);
        for t in self.topics.values_mut() {
            match LogConfig::resolve(&defaults, &t.configs) {
                Ok(c) => {
                    if c != t.log_config {
                        Arc::make_mut(t).log_config = c;
                    }
                }
                Err(e) => tracing::warn!(topic = %t.name, error = %e, "topic keeps its settings"),
            }
        }
    }

    /// Applies one committed record. See the module comment for why a misfit is skipped.
    pub fn apply(&mut self, record: Record, defaults: &LogConfig) {
        self.version += 1;
        if let Err(why) = self.try_apply(record.clone(), defaults) {
            tracing::warn!(?record, %why, "skipping a metadata record that does not fit");
        }
    }

    fn try_apply(&mut self, record: Record, defaults: &LogConfig) -> Result<(), String> {
        match record {
            Record::ClusterCreated { cluster_id } => self.cluster_id = cluster_id,
            Record::BrokerRegistered {
                node,
                host,
                port,
                incarnation,
                rack,
                endpoints,
            } => {
                let meta = BrokerMeta {
                    node,
                    host,
                    port,
                    incarnation,
                    fenced: false,
                    rack,
                    endpoints,
                };
                self.brokers.insert(node, meta);
            }
            Record::ScramCredentialSet {
                user,
                mechanism,
                credential,
            } => {
                self.scram_credentials
                    .entry(user)
                    .or_default()
                    .insert(mechanism, credential);
            }
            Record::ScramCredentialRemoved { user, mechanism } => {
                if let Some(creds) = self.scram_credentials.get_mut(&user) {
                    creds.remove(&mechanism);
                    if creds.is_empty() {
                        self.scram_credentials.remove(&user);
                    }
                }
            }
            Record::AclCreated { binding } => {
                self.acls.add(binding);
            }
            Record::AclRemoved { binding } => {
                self.acls.remove(&binding);
            }
            Record::BrokerFenced { node } => self.broker_mut(node)?.fenced = true,
            Record::BrokerUnfenced { node } => self.broker_mut(node)?.fenced = false,
            Record::TopicCreated {
                name,
                id,
                configs,
                assignments,
            } => {
                if self.topics.contains_key(&name) {
                    return Err(format!("topic {name} exists"));
                }
                let log_config = LogConfig::resolve(&self.log_defaults(defaults), &configs)
                    .map_err(|e| e.to_string())?;
                self.topic_ids.insert(id, name.clone());
                let meta = TopicMeta {
                    name: name.clone(),
                    id,
                    partitions: assignments.len() as i32,
                    configs,
                    log_config,
                    assignments: assignments.into_iter().map(PartitionMeta::new).collect(),
                };
                self.topics.insert(name, Arc::new(meta));
            }
            Record::PartitionsAdded { name, assignments } => {
                let t = self.topics.get_mut(&name).ok_or("unknown topic")?;
                let t = Arc::make_mut(t);
                t.assignments
                    .extend(assignments.into_iter().map(PartitionMeta::new));
                t.partitions = t.assignments.len() as i32;
            }
            Record::PartitionChanged {
                topic,
                partition,
                leader,
                leader_epoch,
                isr,
                partition_epoch,
            } => {
                let t = self.topics.get_mut(&topic).ok_or("unknown topic")?;
                let p = usize::try_from(partition).map_err(|_| "bad partition")?;
                let meta = Arc::make_mut(t)
                    .assignments
                    .get_mut(p)
                    .ok_or("unknown partition")?;
                if partition_epoch <= meta.partition_epoch {
                    return Err(format!(
                        "partition epoch {partition_epoch} after {}",
                        meta.partition_epoch
                    ));
                }
                meta.leader = leader;
                meta.leader_epoch = leader_epoch;
                meta.isr = isr;
                meta.partition_epoch = partition_epoch;
            }
            Record::TopicDeleted { name } => {
                let t = self.topics.remove(&name).ok_or("unknown topic")?;
                self.topic_ids.remove(&t.id);
            }
            Record::ProducerIdsAllocated { node, start, end } => {
                if start < self.producer_ids_end || end <= start {
                    return Err(format!(
                        "producer id block [{start}, {end}) after {}",
                        self.producer_ids_end
                    ));
                }
                self.producer_ids.insert(node, (start, end));
                self.producer_ids_end = end;
            }
            Record::ConfigsChanged { resource, changes } => match resource {
                ConfigResource::Topic(name) => {
                    let defaults = self.log_defaults(defaults);
                    let t = self.topics.get_mut(&name).ok_or("unknown topic")?;
                    let mut configs = t.configs.clone();
                    merge(&mut configs, changes);
                    let log_config =
                        LogConfig::resolve(&defaults, &configs).map_err(|e| e.to_string())?;
                    let t = Arc::make_mut(t);
                    t.configs = configs;
                    t.log_config = log_config;
                }
                ConfigResource::Broker(node) => {
                    let key = ConfigResource::broker_key(node);
                    let configs = self.broker_configs.entry(key.clone()).or_default();
                    merge(configs, changes);
                    if configs.is_empty() {
                        self.broker_configs.remove(&key);
                    }
                    if node.is_none() || node == self.node {
                        self.resolve_all(defaults);
                    }
                }
                ConfigResource::Group(group) => {
                    let configs = self.group_configs.entry(group.clone()).or_default();
                    merge(configs, changes);
                    if configs.is_empty() {
                        self.group_configs.remove(&group);
                    }
                }
            },
        }
        Ok(())
    }

    fn broker_mut(&mut self, node: NodeId) -> Result<&mut BrokerMeta, String> {
        self.brokers
            .get_mut(&node)
            .ok_or_else(|| format!("unknown broker {node}"))
    }
}

/// Sets or removes (`None`) each changed name.
fn merge(configs: &mut BTreeMap<String, String>, changes: BTreeMap<String, Option<String>>) {
    for (name, value) in changes {
        match value {
            Some(v) => configs.insert(name, v),
            None => configs.remove(&name),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str, assignments: Vec<Vec<NodeId>>) -> Record {
        Record::TopicCreated {
            name: name.to_string(),
            id: Uuid::new_v4(),
            configs: BTreeMap::new(),
            assignments,
        }
    }

    #[test]
    fn records_build_the_image_and_it_survives_serialization() {
        let d = LogConfig::default();
        let mut s = Snapshot::default();
        s.apply(
            Record::ClusterCreated {
                cluster_id: "c".into(),
            },
            &d,
        );
        for node in 1..=3 {
            s.apply(
                Record::BrokerRegistered {
                    node,
                    host: "127.0.0.1".into(),
                    port: 9000 + node as u16,
                    incarnation: Uuid::new_v4(),
                    rack: None,
                    endpoints: Vec::new(),
                },
                &d,
            );
        }
        s.apply(created("t", vec![vec![1, 2, 3], vec![2, 3, 1]]), &d);
        s.apply(
            Record::PartitionChanged {
                topic: "t".into(),
                partition: 1,
                leader: 3,
                leader_epoch: 1,
                isr: vec![3, 1],
                partition_epoch: 1,
            },
            &d,
        );
        s.apply(Record::BrokerFenced { node: 2 }, &d);
        s.apply(
            Record::PartitionsAdded {
                name: "t".into(),
                assignments: vec![vec![3, 1, 2]],
            },
            &d,
        );
        assert_eq!(s.topics["t"].partitions, 3);
        let p1 = s.partition("t", 1).unwrap();
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (3, 1, vec![3, 1])
        );
        assert_eq!(s.live_brokers().count(), 2);
        let back = Snapshot::restore(&s.to_bytes(), &d, None).unwrap();
        assert_eq!(back.topics, s.topics);
        assert_eq!(back.brokers, s.brokers);
        assert_eq!(back.topic_by_id(&s.topics["t"].id).unwrap().name, "t");
        assert_eq!(back.version, s.version);
    }

    #[test]
    fn misfits_are_skipped_whole() {
        let d = LogConfig::default();
        let mut s = Snapshot::default();
        s.apply(created("t", vec![vec![1]]), &d);
        let before = s.topics.clone();
        s.apply(created("t", vec![vec![1], vec![1]]), &d);
        s.apply(
            Record::PartitionChanged {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                leader_epoch: 1,
                isr: vec![1],
                partition_epoch: 0,
            },
            &d,
        );
        s.apply(Record::BrokerFenced { node: 9 }, &d);
        assert_eq!(s.topics, before);
        s.apply(
            Record::ProducerIdsAllocated {
                node: 1,
                start: 0,
                end: 1000,
            },
            &d,
        );
        s.apply(
            Record::ProducerIdsAllocated {
                node: 2,
                start: 500,
                end: 1500,
            },
            &d,
        );
        assert_eq!(s.producer_ids_end, 1000);
    }
}
