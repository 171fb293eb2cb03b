//! Run-time config changes as Kafka's IncrementalAlterConfigs defines them (SET, DELETE,
//! APPEND, SUBTRACT on a resource's overrides), which of the broker settings may change at run
//! time, and what DescribeConfigs says about each config (its type and a short documentation).
//!
//! Pure functions: the metadata controller validates with them, the server edge describes
//! with them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BROKER_CONFIGS, TOPIC_CONFIGS};

/// One operation of an IncrementalAlterConfigs entry (Kafka's `AlterConfigOp.OpType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlterOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl AlterOp {
    /// The wire code (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT).
    pub fn from_code(code: i8) -> Option<AlterOp> {
        Some(match code {
            0 => AlterOp::Set,
            1 => AlterOp::Delete,
            2 => AlterOp::Append,
            3 => AlterOp::Subtract,
            _ => return None,
        })
    }

    fn kafka_name(self) -> &'static str {
        match self {
            AlterOp::Set => "SET",
            AlterOp::Delete => "DELETE",
            AlterOp::Append => "APPEND",
            AlterOp::Subtract => "SUBTRACT",
        }
    }
}

/// One requested change of one config of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub name: String,
    pub op: AlterOp,
    pub value: Option<String>,
}

impl ConfigChange {
    pub fn set(name: &str, value: &str) -> ConfigChange {
        ConfigChange {
            name: name.to_string(),
            op: AlterOp::Set,
            value: Some(value.to_string()),
        }
    }

    pub fn delete(name: &str) -> ConfigChange {
        ConfigChange {
            name: name.to_string(),
            op: AlterOp::Delete,
            value: None,
        }
    }
}

/// Topic configs whose type is LIST (comma-separated), the only ones APPEND and SUBTRACT work on.
pub fn is_list_topic_config(name: &str) -> bool {
    matches!(
        name,
        "cleanup.policy"
            | "leader.replication.throttled.replicas"
            | "follower.replication.throttled.replicas"
    )
}

/// Broker configs whose type is LIST.
pub fn is_list_broker_config(name: &str) -> bool {
    matches!(
        name,
        "log.cleanup.policy"
            | "listeners"
            | "advertised.listeners"
            | "log.dirs"
            | "process.roles"
            | "controller.quorum.voters"
            | "controller.listener.names"
            | "leader.replication.throttled.replicas"
            | "follower.replication.throttled.replicas"
    )
}

/// Applies `changes` in order to a resource's overrides and returns the new overrides.
///
/// APPEND and SUBTRACT start from the override, or when there is none from the value in effect
/// (`current_value`), as Kafka does; they are refused for configs that are not lists. A
/// SUBTRACT that leaves nothing sets the empty string. Values are not validated here.
pub fn apply_changes(
    overrides: &BTreeMap<String, String>,
    changes: &[ConfigChange],
    is_list: impl Fn(&str) -> bool,
    current_value: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = overrides.clone();
    for c in changes {
        let value = c.value.clone().unwrap_or_default();
        match c.op {
            AlterOp::Set => {
                out.insert(c.name.clone(), value);
            }
            AlterOp::Delete => {
                out.remove(&c.name);
            }
            AlterOp::Append | AlterOp::Subtract => {
                if !is_list(&c.name) {
                    return Err(format!(
                        "Can't {} to key {} because its type is not LIST.",
                        c.op.kafka_name(),
                        c.name
                    ));
                }
                let old = out
                    .get(&c.name)
                    .cloned()
                    .or_else(|| current_value(&c.name))
                    .unwrap_or_default();
                let mut parts: Vec<String> = old
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect();
                let given = value.split(',').map(str::trim).filter(|p| !p.is_empty());
                if c.op == AlterOp::Append {
                    for v in given {
                        if !parts.iter().any(|p| p == v) {
                            parts.push(v.to_string());
                        }
                    }
                } else {
                    let remove: Vec<&str> = given.collect();
                    parts.retain(|p| !remove.contains(&p.as_str()));
                }
                out.insert(c.name.clone(), parts.join(","));
            }
        }
    }
    Ok(out)
}

/// The topic config a broker setting is the default of (`log.retention.ms` ->
/// `retention.ms`): exactly the broker settings that may change at run time.
pub fn topic_twin(broker_name: &str) -> Option<&'static str> {
    TOPIC_CONFIGS
        .iter()
        .find(|(_, b)| *b == Some(broker_name))
        .map(|(t, _)| *t)
}

/// Whether a broker setting may be changed at run time (dynamic broker config).
pub fn is_dynamic_broker_config(name: &str) -> bool {
    topic_twin(name).is_some()
}

/// Whether gregor knows `name` as a broker setting (dynamic or not).
pub fn is_known_broker_config(name: &str) -> bool {
    BROKER_CONFIGS.contains(&name)
        || matches!(
            name,
            "broker.id" | "log.dir" | "log.retention.hours" | "log.roll.hours"
        )
}

/// DescribeConfigs' config types (v3+).
pub mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
    pub const PASSWORD: i8 = 9;
    pub const CLASS: i8 = 8;
}

/// The type and a short documentation of a topic config.
pub fn topic_config_info(name: &str) -> Option<(i8, &'static str)> {
    use config_type::*;
    Some(match name {
        "cleanup.policy" => (LIST, "How old log segments are cleaned: `delete` removes them once past retention, `compact` keeps the latest record of each key; both may be given."),
        "compression.gzip.level" => (INT, "The compression level to use if compression.type is set to gzip."),
        "compression.lz4.level" => (INT, "The compression level to use if compression.type is set to lz4."),
        "compression.type" => (STRING, "The final compression type of the topic's batches; `producer` keeps what the producer sent."),
        "compression.zstd.level" => (INT, "The compression level to use if compression.type is set to zstd."),
        "delete.retention.ms" => (LONG, "How long delete tombstones are kept in a compacted topic."),
        "file.delete.delay.ms" => (LONG, "The time to wait before deleting a file from the filesystem."),
        "flush.messages" => (LONG, "Force an fsync of the log after this many messages."),
        "flush.ms" => (LONG, "Force an fsync of the log when the oldest unsynced write is this old."),
        "follower.replication.throttled.replicas" => (LIST, "Replicas whose log replication is throttled on the follower side, as partition:broker pairs or `*`."),
        "index.interval.bytes" => (INT, "How many bytes of batches lie between two offset index entries."),
        "leader.replication.throttled.replicas" => (LIST, "Replicas whose log replication is throttled on the leader side, as partition:broker pairs or `*`."),
        "local.retention.bytes" => (LONG, "The size local log segments may grow to before deletion when tiered storage is on (-2: retention.bytes)."),
        "local.retention.ms" => (LONG, "How long local log segments are kept when tiered storage is on (-2: retention.ms)."),
        "max.compaction.lag.ms" => (LONG, "The longest a message stays ineligible for compaction."),
        "max.message.bytes" => (INT, "The largest record batch size the topic accepts."),
        "message.timestamp.after.max.ms" => (LONG, "How far in the future a CreateTime timestamp may be."),
        "message.timestamp.before.max.ms" => (LONG, "How far in the past a CreateTime timestamp may be."),
        "message.timestamp.type" => (STRING, "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime)."),
        "min.cleanable.dirty.ratio" => (DOUBLE, "The share of a log's bytes that must be uncompacted before the cleaner compacts it."),
        "min.compaction.lag.ms" => (LONG, "The shortest time a message stays uncompacted."),
        "min.insync.replicas" => (INT, "The in-sync replicas an acks=all write needs."),
        "preallocate" => (BOOLEAN, "Whether a new segment's file is preallocated."),
        "remote.log.copy.disable" => (BOOLEAN, "Whether copying segments to remote storage is stopped."),
        "remote.log.delete.on.disable" => (BOOLEAN, "Whether remote segments are deleted when tiered storage is turned off."),
        "remote.storage.enable" => (BOOLEAN, "Whether tiered storage is on for the topic."),
        "retention.bytes" => (LONG, "The size a partition may grow to before old segments are deleted (-1: no limit)."),
        "retention.ms" => (LONG, "How long a segment is kept before it is deleted (-1: forever)."),
        "segment.bytes" => (INT, "The size at which a new log segment is rolled."),
        "segment.index.bytes" => (INT, "The largest offset index of a segment."),
        "segment.jitter.ms" => (LONG, "The most random time subtracted from segment.ms to spread rolls."),
        "segment.ms" => (LONG, "The age at which a segment is rolled even if it is not full."),
        "unclean.leader.election.enable" => (BOOLEAN, "Whether a replica out of sync may become leader as a last resort, losing data."),
        _ => return None,
    })
}

/// The type and a short documentation of a broker setting.
pub fn broker_config_info(name: &str) -> Option<(i8, String)> {
    use config_type::*;
    if let Some(topic) = topic_twin(name) {
        let (t, doc) = topic_config_info(topic)?;
        return Some((t, format!("The default of the topic config {topic}. {doc}")));
    }
    let (t, doc) = match name {
        "node.id" => (INT, "The id of this node in the cluster."),
        "listeners" => (
            LIST,
            "The addresses the broker listens on, as NAME://host:port.",
        ),
        "advertised.listeners" => (LIST, "The addresses clients are told to use."),
        "log.dirs" => (
            LIST,
            "The directories partition logs are kept in; a new partition goes to the one with the fewest.",
        ),
        "num.shards" => (
            INT,
            "Cores (shards) the broker runs on; 0 means one per core.",
        ),
        "socket.request.max.bytes" => (INT, "The largest request the broker reads."),
        "queued.max.request.bytes" => (LONG, "Bytes of requests read and not yet answered, across the broker (-1: no bound)."),
        "auto.create.topics.enable" => (
            BOOLEAN,
            "Whether a topic is created when a client first names it.",
        ),
        "num.partitions" => (INT, "The partition count of topics created without one."),
        "default.replication.factor" => (
            SHORT_AS_INT,
            "The replication factor of topics created without one.",
        ),
        "log.retention.check.interval.ms" => (
            LONG,
            "How often logs are checked for segments past retention.",
        ),
        "fetch.cache.bytes" => (LONG, "Memory each shard keeps for fetches at the log tail."),
        "producer.id.expiration.ms" => (
            INT,
            "The time in ms that a topic partition leader will wait before expiring producer IDs.",
        ),
        "io.memory.bytes" => (LONG, "Memory each shard pins for io_uring buffers."),
        "producer.state.max.producers.per.partition" => (
            INT,
            "Producers a partition remembers at most; past it, those idle longest with no \
             transaction open are forgotten, as after producer.id.expiration.ms.",
        ),
        "max.connections" => (INT, "Client connections across the broker; at the limit new ones wait."),
        "max.connections.per.ip" => (INT, "Connections from one address; more are closed at once."),
        "max.connections.per.ip.overrides" => (
            STRING,
            "Per-address limits as ip:count,... overriding max.connections.per.ip.",
        ),
        "connections.max.idle.ms" => (
            LONG,
            "A connection with no traffic for this long is closed (-1: never).",
        ),
        "connections.max.unsent.bytes" => (
            LONG,
            "A client owed more response bytes than this that reads none of them for connections.max.unsent.ms is disconnected.",
        ),
        "connections.max.unsent.ms" => (
            LONG,
            "How long a client may leave more than connections.max.unsent.bytes unread.",
        ),
        "listener.security.protocol.map" => (STRING, "The security protocol of each listener, as LISTENER:PROTOCOL pairs."),
        "inter.broker.listener.name" => (STRING, "The listener other brokers reach this one on (PLAINTEXT)."),
        "ssl.keystore.type" => (STRING, "The format of the key store: PEM."),
        "ssl.keystore.location" => (STRING, "A PEM file holding the private key and its certificate chain."),
        "ssl.key.password" => (PASSWORD, "The password of an encrypted private key."),
        "ssl.truststore.type" => (STRING, "The format of the trust store: PEM."),
        "ssl.truststore.location" => (STRING, "A PEM file of the certificates client certificates are checked against."),
        "ssl.client.auth" => (STRING, "Whether clients present certificates: none, requested or required."),
        "ssl.principal.mapping.rules" => (STRING, "How a client certificate's subject becomes a user name: DEFAULT, or RULE:pattern/replacement/[L|U] rules."),
        "ssl.enabled.protocols" => (LIST, "The TLS versions offered."),
        "sasl.mechanism.inter.broker.protocol" => (STRING, "The SASL mechanism brokers log in to each other with: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."),
        "sasl.enabled.mechanisms" => (LIST, "The SASL mechanisms offered: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512."),
        "connection.failed.authentication.delay.ms" => (INT, "How long a failed authentication waits before its answer and the close."),
        "authorizer.class.name" => (CLASS, "The authorizer that enforces ACLs (org.apache.kafka.metadata.authorizer.StandardAuthorizer), or empty for none."),
        "super.users" => (STRING, "Principals allowed everything, separated by semicolons."),
        "allow.everyone.if.no.acl.found" => (BOOLEAN, "Whether a resource with no ACLs is open to everyone."),
        "connections.max.reauth.ms" => (LONG, "How long an authenticated session lasts before the client must authenticate again (0: forever)."),
        "log.segment.allocate.ahead.bytes" => (
            LONG,
            "How far ahead of the writer the active segment's file is allocated and sized (0: off).",
        ),
        "log.segment.allocate.ahead.zero" => (
            BOOLEAN,
            "Whether the window allocated ahead of the writer is also written with zeros.",
        ),
        "admin.listeners" => (
            STRING,
            "The admin HTTP address (/metrics, /v1/health, /v1/ready); empty turns it off.",
        ),
        "log.format" => (STRING, "How log lines are written: text or json."),
        "log.cleaner.enable" => (BOOLEAN, "Whether compacted topics are cleaned at all."),
        "log.cleaner.backoff.ms" => (LONG, "The cleaner's pause when no log needs cleaning."),
        "log.cleaner.dedupe.buffer.size" => (
            LONG,
            "Memory for the cleaners' key maps, split between the shards.",
        ),
        "log.cleaner.io.max.bytes.per.second" => (
            DOUBLE,
            "Bytes per second each shard's cleaner may read plus write.",
        ),
        "log.cleaner.threads" => (
            INT,
            "Accepted for compatibility: each shard cleans its own partitions.",
        ),
        "process.roles" => (LIST, "Whether this node is a broker, a controller or both."),
        "controller.quorum.voters" => (LIST, "The metadata quorum's voters, as id@host:port."),
        "controller.listener.names" => (LIST, "The listeners the controller uses."),
        "broker.session.timeout.ms" => (
            INT,
            "How long a broker may go without a heartbeat before it is fenced.",
        ),
        "broker.heartbeat.interval.ms" => (INT, "How often a broker heartbeats to the controller."),
        "replica.lag.time.max.ms" => (
            LONG,
            "How long a follower may lag before it leaves the ISR.",
        ),
        "replica.fetch.wait.max.ms" => (INT, "How long a follower fetch may wait for data."),
        "replica.fetch.max.bytes" => (INT, "Bytes a follower fetches per partition."),
        "replica.fetch.response.max.bytes" => (INT, "Bytes a follower fetches per request."),
        "replica.fetch.backoff.ms" => (INT, "How long a follower waits after a failed fetch."),
        "replica.high.watermark.checkpoint.interval.ms" => {
            (LONG, "How often high watermarks are written to disk.")
        }
        "offsets.topic.replication.factor" => {
            (SHORT_AS_INT, "The replication factor of the offsets topic.")
        }
        "auto.leader.rebalance.enable" => (
            BOOLEAN,
            "Whether leadership moves back to preferred replicas.",
        ),
        "leader.imbalance.check.interval.seconds" => {
            (LONG, "How often leadership balance is checked.")
        }
        "offsets.topic.num.partitions" => (INT, "The partition count of the offsets topic."),
        "offsets.topic.segment.bytes" => (INT, "The segment size of the offsets topic."),
        "offsets.retention.minutes" => (
            INT,
            "How long committed offsets of an empty group are kept.",
        ),
        "offsets.retention.check.interval.ms" => (LONG, "How often expired offsets are removed."),
        "offset.metadata.max.bytes" => (INT, "The longest metadata string of a committed offset."),
        "group.initial.rebalance.delay.ms" => (
            INT,
            "How long a new group waits for more members before its first rebalance.",
        ),
        "group.min.session.timeout.ms" => {
            (INT, "The shortest session timeout a member may ask for.")
        }
        "group.max.session.timeout.ms" => {
            (INT, "The longest session timeout a member may ask for.")
        }
        "group.consumer.session.timeout.ms" => (
            INT,
            "A member of a consumer-protocol group without a heartbeat for this long is removed.",
        ),
        "group.consumer.heartbeat.interval.ms" => (
            INT,
            "How often members of consumer-protocol groups heartbeat.",
        ),
        "group.consumer.assignors" => (
            LIST,
            "The server assignors of consumer-protocol groups; the first is the default.",
        ),
        "group.consumer.max.size" => (
            INT,
            "The maximum number of members of a consumer-protocol group.",
        ),
        "group.share.session.timeout.ms" => (
            INT,
            "A member of a share group without a heartbeat for this long is removed.",
        ),
        "group.share.heartbeat.interval.ms" => {
            (INT, "How often members of share groups heartbeat.")
        }
        "group.share.max.size" => (INT, "The maximum number of members of a share group."),
        "group.share.record.lock.duration.ms" => (
            INT,
            "How long a record delivered to a share group member stays acquired by it.",
        ),
        "group.share.delivery.count.limit" => (
            INT,
            "How often a record is delivered to a share group before it is archived.",
        ),
        "group.share.partition.max.record.locks" => (
            INT,
            "The most records in flight in one share-partition.",
        ),
        "group.share.max.share.sessions" => {
            (INT, "The most share sessions open on a broker.")
        }
        "group.max.size" => (
            INT,
            "The maximum number of consumers that a single consumer group can accommodate.",
        ),
        "transaction.partition.verification.enable" => (
            BOOLEAN,
            "Whether a partition leader checks with the transaction coordinator that a partition \
             was added to a transaction before taking its first batch.",
        ),
        "transaction.max.timeout.ms" => (
            INT,
            "The longest transaction timeout a producer may ask for.",
        ),
        "transactional.id.expiration.ms" => (
            INT,
            "How long an idle transactional id is kept before it is forgotten.",
        ),
        "transaction.state.log.num.partitions" => {
            (INT, "The partition count of the transaction topic.")
        }
        "transaction.state.log.replication.factor" => (
            SHORT_AS_INT,
            "The replication factor of the transaction topic.",
        ),
        "transaction.state.log.min.isr" => (INT, "min.insync.replicas of the transaction topic."),
        "transaction.state.log.segment.bytes" => {
            (INT, "The segment size of the transaction topic.")
        }
        "transaction.abort.timed.out.transaction.cleanup.interval.ms" => (
            INT,
            "How often transactions past their timeout are aborted.",
        ),
        "transaction.remove.expired.transaction.cleanup.interval.ms" => {
            (INT, "How often expired transactional ids are removed.")
        }
        _ => return None,
    };
    Some((t, doc.to_string()))
}

/// Kafka's SHORT type code, used for replication factors.
const SHORT_AS_INT: i8 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn op(name: &str, op: AlterOp, value: &str) -> ConfigChange {
        ConfigChange {
            name: name.to_string(),
            op,
            value: Some(value.to_string()),
        }
    }

    fn run(
        over: &[(&str, &str)],
        changes: &[ConfigChange],
    ) -> Result<BTreeMap<String, String>, String> {
        apply_changes(&map(over), changes, is_list_topic_config, |n| {
            (n == "cleanup.policy").then(|| "delete".to_string())
        })
    }

    #[test]
    fn set_and_delete_replace_and_remove_overrides() {
        let got = run(
            &[("retention.ms", "5"), ("segment.bytes", "100")],
            &[
                ConfigChange::set("retention.ms", "10"),
                ConfigChange::delete("segment.bytes"),
                ConfigChange::delete("not.there"),
                ConfigChange::set("max.message.bytes", "300"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            map(&[("retention.ms", "10"), ("max.message.bytes", "300")])
        );
    }

    #[test]
    fn append_starts_from_the_value_in_effect_and_skips_duplicates() {
        let got = run(&[], &[op("cleanup.policy", AlterOp::Append, "compact")]).unwrap();
        assert_eq!(got, map(&[("cleanup.policy", "delete,compact")]));
        let got = run(
            &[("cleanup.policy", "compact")],
            &[op("cleanup.policy", AlterOp::Append, "compact,delete")],
        )
        .unwrap();
        assert_eq!(got, map(&[("cleanup.policy", "compact,delete")]));
    }

    #[test]
    fn subtract_removes_values_and_may_leave_the_empty_string() {
        let got = run(
            &[("cleanup.policy", "compact,delete")],
            &[op("cleanup.policy", AlterOp::Subtract, "delete")],
        )
        .unwrap();
        assert_eq!(got, map(&[("cleanup.policy", "compact")]));
        let got = run(&[], &[op("cleanup.policy", AlterOp::Subtract, "delete")]).unwrap();
        assert_eq!(got, map(&[("cleanup.policy", "")]));
        let got = run(
            &[("leader.replication.throttled.replicas", "0:1,1:2")],
            &[op(
                "leader.replication.throttled.replicas",
                AlterOp::Subtract,
                "0:1",
            )],
        )
        .unwrap();
        assert_eq!(
            got,
            map(&[("leader.replication.throttled.replicas", "1:2")])
        );
    }

    #[test]
    fn append_and_subtract_refuse_configs_that_are_not_lists() {
        let e = run(&[], &[op("retention.ms", AlterOp::Append, "5")]).unwrap_err();
        assert_eq!(
            e,
            "Can't APPEND to key retention.ms because its type is not LIST."
        );
        let e = run(&[], &[op("segment.bytes", AlterOp::Subtract, "5")]).unwrap_err();
        assert_eq!(
            e,
            "Can't SUBTRACT to key segment.bytes because its type is not LIST."
        );
    }

    #[test]
    fn dynamic_broker_configs_are_the_log_defaults() {
        assert_eq!(topic_twin("log.retention.ms"), Some("retention.ms"));
        assert_eq!(topic_twin("message.max.bytes"), Some("max.message.bytes"));
        assert!(is_dynamic_broker_config("log.cleaner.delete.retention.ms"));
        assert!(!is_dynamic_broker_config("log.dirs"));
        assert!(!is_dynamic_broker_config("num.partitions"));
        assert!(is_known_broker_config("log.dirs"));
        assert!(!is_known_broker_config("no.such.thing"));
    }

    #[test]
    fn every_config_has_a_type_and_documentation() {
        for (topic, broker) in TOPIC_CONFIGS {
            assert!(topic_config_info(topic).is_some(), "{topic}");
            if let Some(b) = broker {
                assert!(broker_config_info(b).is_some(), "{b}");
            }
        }
        for b in BROKER_CONFIGS {
            assert!(broker_config_info(b).is_some(), "{b}");
        }
        for b in super::super::bounds::BOUND_CONFIGS {
            assert!(broker_config_info(b).is_some(), "{b}");
        }
    }
}
