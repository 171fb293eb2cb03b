//! Share groups (KIP-932), the group side: ShareGroupHeartbeat and ShareGroupDescribe, run by
//! the coordinator on the shard owning the group's `__consumer_offsets` partition, and the
//! admin APIs of share-group offsets (DescribeShareGroupOffsets, AlterShareGroupOffsets,
//! DeleteShareGroupOffsets), run by the share-partitions' owners.
//!
//! The share-partitions' start offsets live with the partitions ([`crate::share`]), so the
//! offset APIs answer for the partitions this broker leads; others get NOT_LEADER_OR_FOLLOWER.

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
use crate::share::Failure;
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
    let interval = shard.config.groups.share_heartbeat_interval_ms;
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

/// Kafka's code for a share-partition failure of an admin request.
fn failure_code(f: &Failure) -> (ResponseError, Option<String>) {
    match f {
        Failure::NotLeader => (ResponseError::NotLeaderOrFollower, None),
        Failure::Storage(m) => (ResponseError::KafkaStorageError, Some(m.clone())),
        Failure::Ack(_) => (ResponseError::InvalidRequest, None),
    }
}

/// Runs `f` on the owner of each partition, in parallel; results in the order given.
async fn on_owners<R: Send + 'static>(
    shard: &Rc<Shard>,
    parts: Vec<(TopicPartition, uuid::Uuid)>,
    f: fn(&Shard, &str, &TopicPartition, uuid::Uuid) -> R,
    group: &str,
    unavailable: impl Fn() -> R,
) -> Vec<R> {
    let calls: Vec<_> = parts
        .into_iter()
        .map(|(tp, id)| {
            let owner = shard.owner_of(&tp.topic, tp.partition);
            let g = group.to_string();
            shard.invoke_on(owner, move |sh| async move { f(&sh, &g, &tp, id) })
        })
        .collect();
    futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|_| unavailable()))
        .collect()
}

/// Checks the group for an offsets request: Ok(has members), or the group-level error.
async fn group_check(shard: &Rc<Shard>, group: &str) -> Result<bool, ResponseError> {
    let owner = owner_of(shard, group);
    let g = group.to_string();
    shard
        .invoke_on(
            owner,
            move |sh| async move { coordinator::has_members(&sh, &g) },
        )
        .await
        .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
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
            if let Err(e) = group_check(&shard, &group).await {
                groups.push(out.with_error_code(e.code()));
                continue;
            }
            // The topics asked for, or every topic with share-partition state here.
            let asked: Vec<(String, Vec<i32>)> = match &g.topics {
                Some(ts) => ts
                    .iter()
                    .map(|t| (t.topic_name.to_string(), t.partitions.clone()))
                    .collect(),
                None => {
                    let gg = group.clone();
                    let found = shard
                        .invoke_on_all(move |sh| {
                            let gg = gg.clone();
                            async move { crate::share::partitions_of(&sh, &gg) }
                        })
                        .await;
                    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for tp in found.into_iter().flatten().flatten() {
                        by_topic.entry(tp.topic).or_default().push(tp.partition);
                    }
                    by_topic
                        .into_iter()
                        .filter(|(t, _)| access.topic(AclOperation::Describe, t))
                        .map(|(t, mut ps)| {
                            ps.sort_unstable();
                            (t, ps)
                        })
                        .collect()
                }
            };
            let mut topics = Vec::new();
            for (name, partitions) in asked {
                let meta = snap.topic(&name);
                let allowed = access.topic(AclOperation::Describe, &name);
                let parts: Vec<(TopicPartition, uuid::Uuid)> = match meta {
                    Some(m) if allowed => partitions
                        .iter()
                        .filter(|p| **p >= 0 && **p < m.partitions)
                        .map(|p| (TopicPartition::new(name.clone(), *p), m.id))
                        .collect(),
                    _ => Vec::new(),
                };
                let answers = on_owners(
                    &shard,
                    parts.clone(),
                    |sh, g, tp, id| {
                        crate::share::describe(sh, g, &[(tp.clone(), id)])
                            .pop()
                            .unwrap_or(Err(Failure::NotLeader))
                    },
                    &group,
                    || Err(Failure::NotLeader),
                )
                .await;
                let mut answers = parts.iter().map(|(tp, _)| tp.partition).zip(answers);
                let out_parts = partitions
                    .iter()
                    .map(|p| {
                        let base = describe_share_group_offsets_response::DescribeShareGroupOffsetsResponsePartition::default()
                            .with_partition_index(*p)
                            .with_start_offset(-1)
                            .with_leader_epoch(-1);
                        let err = match meta {
                            _ if !allowed => Some(ResponseError::TopicAuthorizationFailed),
                            None => Some(ResponseError::UnknownTopicOrPartition),
                            Some(m) if *p < 0 || *p >= m.partitions => {
                                Some(ResponseError::UnknownTopicOrPartition)
                            }
                            Some(_) => None,
                        };
                        if let Some(e) = err {
                            return base.with_error_code(e.code());
                        }
                        match answers.next().map(|(_, a)| a) {
                            Some(Ok(Some((start, _)))) => base.with_start_offset(start),
                            Some(Ok(None)) => base,
                            Some(Err(f)) => {
                                let (e, m) = failure_code(&f);
                                base.with_error_code(e.code())
                                    .with_error_message(m.map(StrBytes::from_string))
                            }
                            None => base.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                        }
                    })
                    .collect();
                topics.push(
                    describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(s(&name)))
                        .with_topic_id(meta.map(|m| m.id).unwrap_or_default())
                        .with_partitions(out_parts),
                );
            }
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
    if !access.group(AclOperation::Delete, group) && !access.group(AclOperation::Read, group) {
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
        if let Some((e, m)) = empty_group_check(&shard, &access, &group).await {
            let resp = AlterShareGroupOffsetsResponse::default()
                .with_error_code(e.code())
                .with_error_message(m.map(StrBytes::from_string));
            return reply(&req, &resp);
        }
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
                let tp = TopicPartition::new(name.clone(), p.partition_index);
                let owner = shard.owner_of(&tp.topic, tp.partition);
                let (g, id, offset) = (group.clone(), m.id, p.start_offset);
                let r = shard
                    .invoke_on(owner, move |sh| async move {
                        let start = match sh.log(&tp) {
                            // -1 is the log end (latest); below the log start is the log start.
                            Some(log) if offset < 0 => log.high_watermark(),
                            Some(log) => offset.max(log.log_start_offset()),
                            None => offset,
                        };
                        crate::share::alter(&sh, &g, &tp, id, start)
                    })
                    .await
                    .unwrap_or(Err(Failure::NotLeader));
                parts.push(match r {
                    Ok(()) => base,
                    Err(f) => {
                        let (e, m) = failure_code(&f);
                        base.with_error_code(e.code())
                            .with_error_message(m.map(StrBytes::from_string))
                    }
                });
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
        if let Some((e, m)) = empty_group_check(&shard, &access, &group).await {
            let resp = DeleteShareGroupOffsetsResponse::default()
                .with_error_code(e.code())
                .with_error_message(m.map(StrBytes::from_string));
            return reply(&req, &resp);
        }
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
            let parts = (0..m.partitions)
                .map(|p| (TopicPartition::new(name.clone(), p), m.id))
                .collect();
            let results = on_owners(
                &shard,
                parts,
                |sh, g, tp, _| crate::share::delete(sh, g, tp),
                &group,
                || Err(Failure::NotLeader),
            )
            .await;
            let failed = results.into_iter().find_map(|r| r.err());
            responses.push(match failed {
                None => base,
                Some(f) => {
                    let (e, m) = failure_code(&f);
                    base.with_error_code(e.code())
                        .with_error_message(m.map(StrBytes::from_string))
                }
            });
        }
        reply(
            &req,
            &DeleteShareGroupOffsetsResponse::default().with_responses(responses),
        )
    })
}
