//! Share groups (KIP-932), the group side: ShareGroupHeartbeat and ShareGroupDescribe, run by
//! the coordinator on the shard owning the group's `__consumer_offsets` partition, and the
//! admin APIs of share-group offsets (DescribeShareGroupOffsets, AlterShareGroupOffsets,
//! DeleteShareGroupOffsets), run by the share-partitions' owners.
//!
//! The share-partitions' state is stored by the group's coordinator, so the offset APIs are
//! answered there (elsewhere: NOT_COORDINATOR), as Kafka's are; so are the inter-broker
//! ReadShareGroupState / WriteShareGroupState / DeleteShareGroupState of partition leaders on
//! other brokers.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{reply, Outcome};
use crate::group::consumer::Assignment;
use crate::group::coordinator::offsets_partition;
use crate::group::coordinator::share::{self as coordinator, ShareError};
use crate::group::share::Heartbeat;
use crate::group::valid_group_id;
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::shard::Shard;
use crate::share::partition::Persisted;
use crate::types::TopicPartition;

fn owner_of(shard: &Shard, group: &str) -> crate::types::ShardId {
    let tp = offsets_partition(&shard.config, group);
    shard.owner_of(&tp.topic, tp.partition)
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn heartbeat_error(
    req: &Request,
    e: ResponseError,
    message: Option<String>,
) -> LocalBoxFuture<'static, Outcome> {
    let resp = ShareGroupHeartbeatResponse::default()
        .with_error_code(e.code())
        .with_error_message(message.map(StrBytes::from_string))
        .with_member_epoch(-1);
    super::ready(reply(req, &resp))
}

pub fn heartbeat(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: ShareGroupHeartbeatRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let group = body.group_id.to_string();
    let access = Access::of(shard, &req);
    if !access.group(AclOperation::Read, &group) {
        return heartbeat_error(&req, ResponseError::GroupAuthorizationFailed, None);
    }
    if !valid_group_id(&group) {
        let why = "GroupId can't be empty.".to_string();
        return heartbeat_error(&req, ResponseError::InvalidRequest, Some(why));
    }
    let names = body.subscribed_topic_names.as_ref();
    if names.is_some_and(|n| {
        n.iter()
            .any(|t| !access.topic(AclOperation::Describe, t.as_str()))
    }) {
        return heartbeat_error(&req, ResponseError::TopicAuthorizationFailed, None);
    }
    let hb = Heartbeat {
        member_id: body.member_id.to_string(),
        member_epoch: body.member_epoch,
        rack_id: body.rack_id.as_ref().map(|x| x.to_string()),
        subscribed_topic_names: names.map(|n| n.iter().map(|t| t.to_string()).collect()),
        client_id: req.client_id.clone().unwrap_or_default(),
        client_host: req.client_host.clone(),
    };
    let interval = shard.group_settings(&group).share_heartbeat_interval_ms;
    let owner = owner_of(shard, &group);
    let call = shard.invoke_on(owner, move |sh| async move {
        coordinator::heartbeat(&sh, group, hb)
    });
    Box::pin(async move {
        let result = call.await.unwrap_or(Err(ShareError::Coordinator(
            ResponseError::CoordinatorNotAvailable,
        )));
        let resp = match result {
            Ok(r) => {
                let assignment = r.assignment.map(|a| {
                    let tps = a
                        .into_iter()
                        .map(|(t, ps)| {
                            share_group_heartbeat_response::TopicPartitions::default()
                                .with_topic_id(t)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect();
                    share_group_heartbeat_response::Assignment::default().with_topic_partitions(tps)
                });
                ShareGroupHeartbeatResponse::default()
                    .with_member_id(Some(StrBytes::from_string(r.member_id)))
                    .with_member_epoch(r.member_epoch)
                    .with_heartbeat_interval_ms(interval)
                    .with_assignment(assignment)
            }
            Err(e) => {
                let (code, message) = match e {
                    ShareError::Refused(e) => {
                        let message = match &e {
                            crate::group::share::Error::InvalidRequest(m) => Some(m.clone()),
                            _ => None,
                        };
                        (coordinator::kafka_error(&e), message)
                    }
                    ShareError::Coordinator(ResponseError::GroupIdNotFound) => (
                        ResponseError::GroupIdNotFound,
                        Some(format!(
                            "Group {} is not a share group.",
                            body.group_id.as_str()
                        )),
                    ),
                    ShareError::Coordinator(e) => (e, None),
                };
                ShareGroupHeartbeatResponse::default()
                    .with_error_code(code.code())
                    .with_error_message(message.map(StrBytes::from_string))
                    .with_member_epoch(-1)
            }
        };
        reply(&req, &resp)
    })
}

pub fn describe(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: ShareGroupDescribeRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let access = Access::of(shard, &req);
    let snap = shard.snapshot();
    let calls: Vec<_> = body
        .group_ids
        .iter()
        .map(|g| {
            let group = g.to_string();
            let allowed = access.group(AclOperation::Describe, &group);
            let valid = valid_group_id(&group);
            let owner = owner_of(shard, &group);
            let call = (allowed && valid).then(|| {
                shard.invoke_on(owner, move |sh| async move {
                    coordinator::describe(&sh, &group)
                })
            });
            async move {
                match call {
                    None if !allowed => Err(ResponseError::GroupAuthorizationFailed),
                    None => Err(ResponseError::InvalidGroupId),
                    Some(c) => c
                        .await
                        .unwrap_or(Err(ResponseError::CoordinatorNotAvailable)),
                }
            }
        })
        .collect();
    let ops = body.include_authorized_operations;
    Box::pin(async move {
        let results = futures::future::join_all(calls).await;
        let assignment = |a: &Assignment| {
            let tps = a
                .iter()
                .map(|(t, ps)| {
                    let name = snap.topic_ids.get(t).cloned().unwrap_or_default();
                    share_group_describe_response::TopicPartitions::default()
                        .with_topic_id(*t)
                        .with_topic_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect();
            share_group_describe_response::Assignment::default().with_topic_partitions(tps)
        };
        let groups = body
            .group_ids
            .iter()
            .zip(results)
            .map(|(id, r)| {
                let d = share_group_describe_response::DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_authorized_operations(super::authorized_ops::group(
                        ops,
                        &access,
                        id.as_str(),
                    ));
                let g = match r {
                    Err(e) => {
                        let message = (e == ResponseError::GroupIdNotFound)
                            .then(|| format!("Group {} is not a share group.", id.as_str()));
                        return d
                            .with_error_code(e.code())
                            .with_error_message(message.map(StrBytes::from_string));
                    }
                    Ok(g) => g,
                };
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        share_group_describe_response::Member::default()
                            .with_member_id(s(&m.id))
                            .with_rack_id(m.rack_id.as_deref().map(s))
                            .with_member_epoch(m.epoch)
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host))
                            .with_subscribed_topic_names(
                                m.topics.iter().map(|t| TopicName(s(t))).collect(),
                            )
                            .with_assignment(assignment(&m.assignment))
                    })
                    .collect();
                d.with_group_state(s(g.state()))
                    .with_group_epoch(g.epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(s("simple"))
                    .with_members(members)
            })
            .collect();
        reply(
            &req,
            &ShareGroupDescribeResponse::default().with_groups(groups),
        )
    })
}

/// Runs `f` on the shard coordinating `group`.
async fn on_coordinator<R, Fut>(
    shard: &Rc<Shard>,
    group: &str,
    f: impl FnOnce(Rc<Shard>, String) -> Fut + Send + 'static,
) -> Result<R, ResponseError>
where
    R: Send + 'static,
    Fut: std::future::Future<Output = Result<R, ResponseError>> + 'static,
{
    let owner = owner_of(shard, group);
    let g = group.to_string();
    shard
        .invoke_on(owner, move |sh| f(sh, g))
        .await
        .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
}

/// Checks the group for an offsets request: Ok(has members), or the group-level error.
async fn group_check(shard: &Rc<Shard>, group: &str) -> Result<bool, ResponseError> {
    on_coordinator(shard, group, |sh, g| async move {
        coordinator::has_members(&sh, &g)
    })
    .await
}

/// The stored share-partition states of `group`, by (topic id, partition).
async fn states_of(shard: &Rc<Shard>, group: &str) -> Result<coordinator::States, ResponseError> {
    on_coordinator(
        shard,
        group,
        |sh, g| async move { coordinator::states(&sh, &g) },
    )
    .await
}

/// Stores (or, with None, deletes) a share-partition's state through the coordinator, then
/// has this node's leader of the partition forget what it cached (a leader elsewhere is
/// fenced by the state epoch at its next store).
async fn replace_state(
    shard: &Rc<Shard>,
    group: &str,
    tp: &TopicPartition,
    topic_id: uuid::Uuid,
    state: Option<Persisted>,
) -> Result<(), ResponseError> {
    let p = tp.partition;
    on_coordinator(shard, group, move |sh, g| async move {
        coordinator::write_state(sh, g, topic_id, p, -1, state).await
    })
    .await?;
    let (g, tp2) = (group.to_string(), tp.clone());
    let owner = shard.owner_of(&tp.topic, tp.partition);
    let _ = shard
        .invoke_on(owner, move |sh| async move {
            crate::share::forget(&sh, &g, &tp2)
        })
        .await;
    Ok(())
}

pub fn describe_offsets(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DescribeShareGroupOffsetsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    let access = Access::of(&shard, &req);
    Box::pin(async move {
        let snap = shard.snapshot();
        let mut groups = Vec::new();
        for g in &body.groups {
            let group = g.group_id.to_string();
            let out = describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup::default()
                .with_group_id(g.group_id.clone());
            if !access.group(AclOperation::Describe, &group) {
                groups.push(out.with_error_code(ResponseError::GroupAuthorizationFailed.code()));
                continue;
            }
            let states = match group_check(&shard, &group).await {
                Ok(_) => states_of(&shard, &group).await,
                Err(e) => Err(e),
            };
            let states = match states {
                Ok(s) => s,
                Err(e) => {
                    groups.push(out.with_error_code(e.code()));
                    continue;
                }
            };
            // The topics asked for, or every topic with share-partition state.
            let asked: Vec<(String, Vec<i32>)> = match &g.topics {
                Some(ts) => ts
                    .iter()
                    .map(|t| (t.topic_name.to_string(), t.partitions.clone()))
                    .collect(),
                None => {
                    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (id, p) in states.keys() {
                        if let Some(name) = snap.topic_ids.get(id) {
                            by_topic.entry(name.clone()).or_default().push(*p);
                        }
                    }
                    by_topic
                        .into_iter()
                        .filter(|(t, _)| access.topic(AclOperation::Describe, t))
                        .collect()
                }
            };
            let topics = asked
                .into_iter()
                .map(|(name, partitions)| {
                    let meta = snap.topic(&name);
                    let allowed = access.topic(AclOperation::Describe, &name);
                    let out_parts = partitions
                        .iter()
                        .map(|p| {
                            let base = describe_share_group_offsets_response::DescribeShareGroupOffsetsResponsePartition::default()
                                .with_partition_index(*p)
                                .with_start_offset(-1)
                                .with_leader_epoch(-1);
                            match meta {
                                _ if !allowed => base.with_error_code(
                                    ResponseError::TopicAuthorizationFailed.code(),
                                ),
                                Some(m) if *p >= 0 && *p < m.partitions => {
                                    match states.get(&(m.id, *p)) {
                                        Some(st) => base.with_start_offset(st.start),
                                        None => base,
                                    }
                                }
                                _ => base
                                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                            }
                        })
                        .collect();
                    describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(s(&name)))
                        .with_topic_id(meta.map(|m| m.id).unwrap_or_default())
                        .with_partitions(out_parts)
                })
                .collect();
            groups.push(out.with_topics(topics));
        }
        reply(
            &req,
            &DescribeShareGroupOffsetsResponse::default().with_groups(groups),
        )
    })
}

/// The group-level refusal of AlterShareGroupOffsets and DeleteShareGroupOffsets: members
/// must be gone (Kafka: NON_EMPTY_GROUP).
async fn empty_group_check(
    shard: &Rc<Shard>,
    access: &Access,
    group: &str,
) -> Option<(ResponseError, Option<String>)> {
    if !access.group(AclOperation::Read, group) {
        return Some((ResponseError::GroupAuthorizationFailed, None));
    }
    match group_check(shard, group).await {
        Err(e) => Some((e, None)),
        Ok(true) => Some((
            ResponseError::NonEmptyGroup,
            Some(format!("The group {group} has active members.")),
        )),
        Ok(false) => None,
    }
}

pub fn alter_offsets(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: AlterShareGroupOffsetsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    let access = Access::of(&shard, &req);
    Box::pin(async move {
        let group = body.group_id.to_string();
        let refused = match empty_group_check(&shard, &access, &group).await {
            Some(r) => Some(r),
            None => states_of(&shard, &group).await.err().map(|e| (e, None)),
        };
        if let Some((e, m)) = refused {
            let resp = AlterShareGroupOffsetsResponse::default()
                .with_error_code(e.code())
                .with_error_message(m.map(StrBytes::from_string));
            return reply(&req, &resp);
        }
        let states = states_of(&shard, &group).await.unwrap_or_default();
        let snap = shard.snapshot();
        let mut responses = Vec::new();
        for t in &body.topics {
            let name = t.topic_name.to_string();
            let meta = snap.topic(&name);
            let allowed = access.topic(AclOperation::Read, &name);
            let mut parts = Vec::new();
            for p in &t.partitions {
                let base = alter_share_group_offsets_response::AlterShareGroupOffsetsResponsePartition::default()
                    .with_partition_index(p.partition_index);
                let m = match meta {
                    _ if !allowed => {
                        parts.push(
                            base.with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                        );
                        continue;
                    }
                    Some(m) if p.partition_index >= 0 && p.partition_index < m.partitions => m,
                    _ => {
                        parts.push(
                            base.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        );
                        continue;
                    }
                };
                if p.start_offset < 0 {
                    parts.push(
                        base.with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(s("The start offset must not be negative."))),
                    );
                    continue;
                }
                // A new state epoch fences a leader still holding the old state.
                let epoch = states
                    .get(&(m.id, p.partition_index))
                    .map_or(0, |st| st.state_epoch + 1);
                let state = Persisted {
                    state_epoch: epoch,
                    start: p.start_offset,
                    runs: Vec::new(),
                };
                let tp = TopicPartition::new(name.clone(), p.partition_index);
                parts.push(
                    match replace_state(&shard, &group, &tp, m.id, Some(state)).await {
                        Ok(()) => base,
                        Err(e) => base.with_error_code(e.code()),
                    },
                );
            }
            responses.push(
                alter_share_group_offsets_response::AlterShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(t.topic_name.clone())
                    .with_topic_id(meta.map(|m| m.id).unwrap_or_default())
                    .with_partitions(parts),
            );
        }
        reply(
            &req,
            &AlterShareGroupOffsetsResponse::default().with_responses(responses),
        )
    })
}

pub fn delete_offsets(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DeleteShareGroupOffsetsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    let access = Access::of(&shard, &req);
    Box::pin(async move {
        let group = body.group_id.to_string();
        let states = match empty_group_check(&shard, &access, &group).await {
            Some(r) => Err(r),
            None => states_of(&shard, &group).await.map_err(|e| (e, None)),
        };
        let states = match states {
            Ok(s) => s,
            Err((e, m)) => {
                let resp = DeleteShareGroupOffsetsResponse::default()
                    .with_error_code(e.code())
                    .with_error_message(m.map(StrBytes::from_string));
                return reply(&req, &resp);
            }
        };
        let snap = shard.snapshot();
        let mut responses = Vec::new();
        for t in &body.topics {
            let name = t.topic_name.to_string();
            let meta = snap.topic(&name);
            let base =
                delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic::default(
                )
                .with_topic_name(t.topic_name.clone())
                .with_topic_id(meta.map(|m| m.id).unwrap_or_default());
            let Some(m) = meta.filter(|_| access.topic(AclOperation::Read, &name)) else {
                let e = if meta.is_none() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::TopicAuthorizationFailed
                };
                responses.push(base.with_error_code(e.code()));
                continue;
            };
            let mut failed = None;
            for (_, p) in states.keys().filter(|(id, _)| *id == m.id) {
                let tp = TopicPartition::new(name.clone(), *p);
                if let Err(e) = replace_state(&shard, &group, &tp, m.id, None).await {
                    failed = Some(e);
                }
            }
            responses.push(match failed {
                None => base,
                Some(e) => base.with_error_code(e.code()),
            });
        }
        reply(
            &req,
            &DeleteShareGroupOffsetsResponse::default().with_responses(responses),
        )
    })
}

/// ReadShareGroupState, WriteShareGroupState and DeleteShareGroupState: a share-partition
/// leader on another broker reads or stores state through this coordinator. Brokers only
/// (CLUSTER_ACTION).
pub fn read_state(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: ReadShareGroupStateRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    let allowed = Access::of(&shard, &req).cluster(AclOperation::ClusterAction);
    Box::pin(async move {
        let group = body.group_id.to_string();
        let mut results = Vec::new();
        for t in &body.topics {
            let mut parts = Vec::new();
            for p in &t.partitions {
                let base = read_share_group_state_response::PartitionResult::default()
                    .with_partition(p.partition)
                    .with_start_offset(-1);
                let (id, partition) = (t.topic_id, p.partition);
                let r = if allowed {
                    on_coordinator(&shard, &group, move |sh, g| async move {
                        coordinator::read_state(&sh, &g, id, partition)
                    })
                    .await
                } else {
                    Err(ResponseError::ClusterAuthorizationFailed)
                };
                parts.push(match r {
                    Ok(None) => base,
                    Ok(Some(st)) => base
                        .with_state_epoch(st.state_epoch)
                        .with_start_offset(st.start)
                        .with_state_batches(
                            st.runs
                                .iter()
                                .map(|&(f, l, state, count)| {
                                    read_share_group_state_response::StateBatch::default()
                                        .with_first_offset(f)
                                        .with_last_offset(l)
                                        .with_delivery_state(state as i8)
                                        .with_delivery_count(count)
                                })
                                .collect(),
                        ),
                    Err(e) => base.with_error_code(e.code()),
                });
            }
            results.push(
                read_share_group_state_response::ReadStateResult::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(parts),
            );
        }
        reply(
            &req,
            &ReadShareGroupStateResponse::default().with_results(results),
        )
    })
}

/// A stored form a peer sent: its runs must be in order, within the state, of Kafka's states.
fn state_of(p: &write_share_group_state_request::PartitionData) -> Option<Persisted> {
    let runs: Vec<(i64, i64, u8, i16)> = p
        .state_batches
        .iter()
        .map(|b| {
            (
                b.first_offset,
                b.last_offset,
                b.delivery_state as u8,
                b.delivery_count,
            )
        })
        .collect();
    let st = Persisted {
        state_epoch: p.state_epoch,
        start: p.start_offset,
        runs,
    };
    crate::share::store::decode(&crate::share::store::encode(&st)).ok()
}

pub fn write_state(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: WriteShareGroupStateRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    let allowed = Access::of(&shard, &req).cluster(AclOperation::ClusterAction);
    Box::pin(async move {
        let group = body.group_id.to_string();
        let mut results = Vec::new();
        for t in &body.topics {
            let mut parts = Vec::new();
            for p in &t.partitions {
                let (id, partition, epoch) = (t.topic_id, p.partition, p.leader_epoch);
                let r = match state_of(p) {
                    _ if !allowed => Err(ResponseError::ClusterAuthorizationFailed),
                    None => Err(ResponseError::InvalidRequest),
                    Some(st) => {
                        on_coordinator(&shard, &group, move |sh, g| async move {
                            coordinator::write_state(sh, g, id, partition, epoch, Some(st)).await
                        })
                        .await
                    }
                };
                parts.push(
                    write_share_group_state_response::PartitionResult::default()
                        .with_partition(p.partition)
                        .with_error_code(r.err().map_or(0, |e| e.code())),
                );
            }
            results.push(
                write_share_group_state_response::WriteStateResult::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(parts),
            );
        }
        reply(
            &req,
            &WriteShareGroupStateResponse::default().with_results(results),
        )
    })
}

pub fn delete_state(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DeleteShareGroupStateRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    let allowed = Access::of(&shard, &req).cluster(AclOperation::ClusterAction);
    Box::pin(async move {
        let group = body.group_id.to_string();
        let mut results = Vec::new();
        for t in &body.topics {
            let mut parts = Vec::new();
            for p in &t.partitions {
                let (id, partition) = (t.topic_id, p.partition);
                let r = if allowed {
                    on_coordinator(&shard, &group, move |sh, g| async move {
                        coordinator::write_state(sh, g, id, partition, -1, None).await
                    })
                    .await
                } else {
                    Err(ResponseError::ClusterAuthorizationFailed)
                };
                parts.push(
                    delete_share_group_state_response::PartitionResult::default()
                        .with_partition(p.partition)
                        .with_error_code(r.err().map_or(0, |e| e.code())),
                );
            }
            results.push(
                delete_share_group_state_response::DeleteStateResult::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(parts),
            );
        }
        reply(
            &req,
            &DeleteShareGroupStateResponse::default().with_results(results),
        )
    })
}
