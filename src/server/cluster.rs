//! ApiVersions, Metadata and DescribeCluster: what the cluster looks like to a client.
//!
//! Metadata creates unknown topics when auto.create.topics.enable is on and the client allows
//! it, as Kafka does (producers learn about a topic through Metadata before producing to it).

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{authorized_ops, reply, Outcome};
use crate::metadata::{validate_topic_name, CreateTopic, Snapshot};
use crate::protocol::{self, decode_body, Request};
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use crate::shard::Shard;

pub fn api_versions(req: &Request) -> LocalBoxFuture<'static, Outcome> {
    // The request body (client software name/version) carries nothing we act on.
    super::ready(reply(req, &protocol::api_versions_response()))
}

/// The brokers clients may connect to: registered and not fenced. Before this node's own
/// registration reaches it (the first moments of a start), itself.
fn live_brokers(
    shard: &Shard,
    snap: &Snapshot,
    listener: &str,
) -> Vec<(i32, StrBytes, i32, Option<StrBytes>)> {
    let mut out: Vec<_> = snap
        .live_brokers()
        .map(|b| {
            let rack = b.rack.clone().map(StrBytes::from_string);
            let (host, port) = b.address_for(listener);
            (
                b.node,
                StrBytes::from_string(host.to_string()),
                port as i32,
                rack,
            )
        })
        .collect();
    if out.is_empty() {
        let own = shard.config.client_listeners();
        let (host, port) = own
            .iter()
            .find(|l| l.name == listener)
            .map_or(&shard.config.advertised_listener, |l| &l.advertised);
        out.push((
            shard.config.node_id,
            StrBytes::from_string(host.clone()),
            *port as i32,
            None,
        ));
    }
    out
}

/// The "controller" clients are told to send admin requests to. As in Kafka's KRaft mode
/// this is a broker, not the metadata leader (which may be a controller-only node clients
/// cannot reach): every broker forwards controller requests to the active controller. Kafka
/// names a random unfenced broker; gregor names the broker answering, which the client has
/// just reached, so a client never waits on a controller that died before it was fenced.
fn controller_id(shard: &Shard) -> i32 {
    shard.config.node_id
}

pub fn metadata(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: MetadataRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    Box::pin(async move {
        // v0 asks for every topic with an empty list; v1+ with a null one.
        let names: Option<Vec<String>> = match &body.topics {
            None => None,
            Some(t) if t.is_empty() && req.api_version == 0 => None,
            Some(t) => Some(
                t.iter()
                    .map(|x| match &x.name {
                        Some(n) => n.to_string(),
                        None => shard
                            .snapshot()
                            .topic_by_id(&x.topic_id)
                            .map(|m| m.name.clone())
                            .unwrap_or_default(),
                    })
                    .collect(),
            ),
        };
        // Kafka's checks: a topic is listed only if the principal may DESCRIBE it (named
        // ones it may not are answered TOPIC_AUTHORIZATION_FAILED); a missing one is created
        // only with CREATE on the cluster or the topic.
        let access = Access::of(&shard, &req);
        let allow_create = (req.api_version < 4 || body.allow_auto_topic_creation)
            && shard.config.auto_create_topics_enable;
        let mut refused: std::collections::HashSet<String> = Default::default();
        if let Some(names) = &names {
            let snap = shard.snapshot();
            let create_any = allow_create
                && access.shows(AclOperation::Create, ResourceType::Cluster, CLUSTER_NAME);
            let mut creatable = Vec::new();
            for n in names {
                if !access.topic(AclOperation::Describe, n) {
                    refused.insert(n.clone());
                } else if allow_create && snap.topic(n).is_none() {
                    if create_any || access.topic(AclOperation::Create, n) {
                        creatable.push(n.clone());
                    } else {
                        refused.insert(n.clone());
                    }
                }
            }
            if !creatable.is_empty() {
                auto_create(&shard, &creatable).await;
            }
        }
        let snap = shard.snapshot();
        let topic_ops = req.api_version >= 8 && body.include_topic_authorized_operations;
        let cluster_ops = authorized_ops::cluster(
            (8..=10).contains(&req.api_version) && body.include_cluster_authorized_operations,
            &access,
        );
        let describe = |n: &str| {
            if refused.contains(n) {
                return MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code());
            }
            topic_metadata(&snap, n, authorized_ops::topic(topic_ops, &access, n))
        };
        let topics = match names {
            None => snap
                .topics
                .keys()
                .filter(|n| access.shows(AclOperation::Describe, ResourceType::Topic, n))
                .map(|n| describe(n))
                .collect(),
            Some(names) => names.iter().map(|n| describe(n)).collect(),
        };
        let resp = MetadataResponse::default()
            .with_brokers(
                live_brokers(&shard, &snap, &req.listener)
                    .into_iter()
                    .map(|(id, host, port, rack)| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(id))
                            .with_host(host)
                            .with_port(port)
                            .with_rack(rack)
                    })
                    .collect(),
            )
            .with_cluster_id(Some(StrBytes::from_string(snap.cluster_id.clone())))
            .with_controller_id(BrokerId(controller_id(&shard)))
            .with_cluster_authorized_operations(cluster_ops)
            .with_topics(topics);
        reply(&req, &resp)
    })
}

/// Creates the requested topics that do not exist yet and have valid names.
async fn auto_create(shard: &Rc<Shard>, names: &[String]) {
    let snap = shard.snapshot();
    let missing: Vec<CreateTopic> = names
        .iter()
        .filter(|n| snap.topic(n).is_none() && validate_topic_name(n).is_ok())
        .map(|n| CreateTopic {
            name: n.clone(),
            partitions: shard.config.num_partitions,
            replication_factor: shard.config.default_replication_factor,
            configs: Default::default(),
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    for r in super::admin::create_on_controller(shard, missing, false).await {
        if let Err((code, msg)) = r {
            // Another client may have created it first; anything else is worth a line.
            if code != ResponseError::TopicAlreadyExists.code() {
                tracing::warn!(code, %msg, "auto-creating topic failed");
            }
        }
    }
}

fn topic_metadata(
    snap: &Snapshot,
    name: &str,
    authorized_operations: i32,
) -> MetadataResponseTopic {
    let base = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))));
    let Some(t) = snap.topic(name) else {
        let code = if validate_topic_name(name).is_err() {
            ResponseError::InvalidTopicException
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        return base.with_error_code(code.code());
    };
    let partitions = t
        .assignments
        .iter()
        .enumerate()
        .map(|(p, m)| {
            let ids = |v: &[i32]| v.iter().map(|n| BrokerId(*n)).collect::<Vec<_>>();
            let offline: Vec<i32> = m
                .replicas
                .iter()
                .copied()
                .filter(|r| !snap.is_live(*r))
                .collect();
            let error = if m.leader == crate::metadata::NO_LEADER {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p as i32)
                .with_leader_id(BrokerId(m.leader))
                .with_leader_epoch(m.leader_epoch)
                .with_replica_nodes(ids(&m.replicas))
                .with_isr_nodes(ids(&m.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    base.with_topic_id(t.id)
        .with_topic_authorized_operations(authorized_operations)
        .with_is_internal(crate::group::is_internal_topic(&t.name))
        .with_partitions(partitions)
}

pub fn describe_cluster(shard: &Rc<Shard>, req: &Request) -> LocalBoxFuture<'static, Outcome> {
    let body = match decode_body::<kafka_protocol::messages::DescribeClusterRequest>(req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    // Kafka answers everyone; without DESCRIBE on the cluster the operations field is 0.
    let access = Access::of(shard, req);
    let snap = shard.snapshot();
    let brokers: Vec<DescribeClusterBroker> = if req.api_version >= 2 && body.include_fenced_brokers
    {
        snap.brokers
            .values()
            .map(|b| {
                let (host, port) = b.address_for(&req.listener);
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port as i32)
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced)
            })
            .collect()
    } else {
        live_brokers(shard, &snap, &req.listener)
            .into_iter()
            .map(|(id, host, port, rack)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack)
            })
            .collect()
    };
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(snap.cluster_id.clone()))
        .with_controller_id(BrokerId(controller_id(shard)))
        .with_cluster_authorized_operations(authorized_ops::cluster(
            body.include_cluster_authorized_operations,
            &access,
        ))
        .with_brokers(brokers);
    super::ready(reply(req, &resp))
}

/// DescribeQuorum: the metadata quorum as the active controller sees it (Kafka answers for the
/// `__cluster_metadata` partition: leader, epoch, high watermark, voters and their log ends).
pub fn describe_quorum(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    use kafka_protocol::messages::describe_quorum_response::{
        PartitionData, ReplicaState, TopicData,
    };
    use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
    if let Err(e) = decode_body::<DescribeQuorumRequest>(&req) {
        return super::ready(Outcome::Close(e.to_string()));
    }
    if !Access::of(shard, &req).cluster(AclOperation::Describe) {
        let e = ResponseError::ClusterAuthorizationFailed;
        return super::ready(reply(
            &req,
            &DescribeQuorumResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        ));
    }
    let core = shard.metadata_core();
    let call = shard.invoke_on(core, |s| async move {
        match s.quorum() {
            Some(q) => q.status().await,
            None => Default::default(),
        }
    });
    Box::pin(async move {
        let status = call.await.unwrap_or_default();
        let voters = status
            .voters
            .iter()
            .map(|(id, end)| {
                ReplicaState::default()
                    .with_replica_id(BrokerId(*id))
                    .with_log_end_offset(*end)
                    .with_last_fetch_timestamp(-1)
                    .with_last_caught_up_timestamp(-1)
            })
            .collect();
        let partition = PartitionData::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(status.leader.unwrap_or(-1)))
            .with_leader_epoch(status.term as i32)
            .with_high_watermark(status.commit as i64)
            .with_current_voters(voters);
        let topic = TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![partition]);
        reply(
            &req,
            &DescribeQuorumResponse::default().with_topics(vec![topic]),
        )
    })
}
