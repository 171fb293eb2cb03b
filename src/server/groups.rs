//! Consumer group APIs: FindCoordinator (for transactional ids too), JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, TxnOffsetCommit, OffsetFetch, DescribeGroups,
//! ListGroups, DeleteGroups, OffsetDelete.
//!
//! Each request is translated here and run by the coordinator on the shard that owns the
//! group's `__consumer_offsets` partition; answers come back by message.

use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{reply, Outcome};
use crate::group::coordinator::{self, offsets_partition, Commit};
use crate::group::state::JoinRequest;
use crate::group::valid_group_id;
use crate::protocol::{decode_body, Request};
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use crate::shard::Shard;
use crate::types::ShardId;

fn coordinator_of(shard: &Shard, group: &str) -> ShardId {
    let tp = offsets_partition(&shard.config, group);
    shard.owner_of(&tp.topic, tp.partition)
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn code(e: Option<ResponseError>) -> i16 {
    e.map_or(0, |e| e.code())
}

/// Why a request on `group` is refused before it reaches the coordinator: no `operation` on
/// the group (Kafka checks that first), or an invalid group id.
fn refusal(access: &Access, group: &str, operation: AclOperation) -> Option<ResponseError> {
    if !access.group(operation, group) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else if !valid_group_id(group) {
        Some(ResponseError::InvalidGroupId)
    } else {
        None
    }
}

/// For each topic of a commit, whether it goes ahead: the request was not refused as a whole
/// and the principal may READ the topic. The partitions of the others are answered with the
/// refusal or TOPIC_AUTHORIZATION_FAILED and not committed (the rest are).
fn readable<'a>(
    access: &Access,
    refused: Option<ResponseError>,
    topics: impl Iterator<Item = &'a str>,
) -> Vec<bool> {
    topics
        .map(|t| refused.is_none() && access.topic(AclOperation::Read, t))
        .collect()
}

macro_rules! body_or_close {
    ($req:expr, $t:ty) => {
        match decode_body::<$t>(&$req) {
            Ok(b) => b,
            Err(e) => return super::ready(Outcome::Close(e.to_string())),
        }
    };
}

pub fn find_coordinator(shard: &Rc<Shard>, req: &Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, FindCoordinatorRequest);
    let snap = shard.snapshot();
    let access = Access::of(shard, req);
    // The coordinator of a group is the leader of its __consumer_offsets partition, the one
    // of a transactional id the leader of its __transaction_state partition.
    let locate =
        |tp: crate::types::TopicPartition| -> Result<(BrokerId, String, u16), ResponseError> {
            let leader = snap
                .partition(&tp.topic, tp.partition)
                .map(|p| p.leader)
                .ok_or(ResponseError::CoordinatorNotAvailable)?;
            let b = snap
                .brokers
                .get(&leader)
                .filter(|b| !b.fenced)
                .ok_or(ResponseError::CoordinatorNotAvailable)?;
            let (host, port) = b.address_for(&req.listener);
            Ok((BrokerId(leader), host.to_string(), port))
        };
    let answer = |key: &StrBytes| -> Result<(BrokerId, String, u16), (i16, Option<String>)> {
        match body.key_type {
            0 if !access.group(AclOperation::Describe, key.as_str()) => {
                Err((ResponseError::GroupAuthorizationFailed.code(), None))
            }
            1 if !access.transactional_id(AclOperation::Describe, key.as_str()) => Err((
                ResponseError::TransactionalIdAuthorizationFailed.code(),
                None,
            )),
            0 if !valid_group_id(key.as_str()) => Err((
                ResponseError::InvalidGroupId.code(),
                Some("invalid group id".into()),
            )),
            0 => {
                locate(offsets_partition(&shard.config, key.as_str())).map_err(|e| (e.code(), None))
            }
            1 if key.is_empty() => Err((
                ResponseError::InvalidRequest.code(),
                Some("empty transactional id".into()),
            )),
            1 => locate(crate::txn::coordinator::txn_partition(shard, key.as_str()))
                .map_err(|e| (e.code(), None)),
            other => Err((
                ResponseError::InvalidRequest.code(),
                Some(format!("unknown coordinator key type {other}")),
            )),
        }
    };
    let resp = if req.api_version >= 4 {
        let coordinators = body
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = find_coordinator_response::Coordinator::default().with_key(k.clone());
                match answer(k) {
                    Ok((node, host, port)) => c
                        .with_node_id(node)
                        .with_host(s(&host))
                        .with_port(port as i32),
                    Err((err, msg)) => c
                        .with_error_code(err)
                        .with_error_message(msg.map(StrBytes::from_string))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                }
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        match answer(&body.key) {
            Ok((node, host, port)) => FindCoordinatorResponse::default()
                .with_node_id(node)
                .with_host(s(&host))
                .with_port(port as i32),
            Err((err, msg)) => {
                let r = FindCoordinatorResponse::default().with_error_code(err);
                let r = if req.api_version >= 1 {
                    r.with_error_message(msg.map(StrBytes::from_string))
                } else {
                    r
                };
                r.with_node_id(BrokerId(-1)).with_port(-1)
            }
        }
    };
    super::ready(reply(req, &resp))
}

pub fn join_group(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, JoinGroupRequest);
    let group = body.group_id.to_string();
    if let Some(e) = refusal(&Access::of(shard, &req), &group, AclOperation::Read) {
        let resp = JoinGroupResponse::default()
            .with_error_code(e.code())
            .with_generation_id(-1)
            .with_member_id(body.member_id.clone());
        return super::ready(reply(&req, &resp));
    }
    let join = JoinRequest {
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.as_ref().map(|x| x.to_string()),
        client_id: req.client_id.clone().unwrap_or_default(),
        client_host: req.client_host.clone(),
        session_timeout_ms: body.session_timeout_ms,
        rebalance_timeout_ms: if req.api_version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: req.api_version >= 4,
    };
    let owner = coordinator_of(shard, &group);
    let call = shard.invoke_on(owner, move |s| coordinator::join(s, group, join));
    Box::pin(async move {
        let Ok(r) = call.await else {
            return Outcome::Close("coordinator shard stopped".into());
        };
        let members = r
            .members
            .into_iter()
            .map(|(id, iid, meta)| {
                join_group_response::JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(id))
                    .with_group_instance_id(if req.api_version >= 5 {
                        iid.map(StrBytes::from_string)
                    } else {
                        None
                    })
                    .with_metadata(meta)
            })
            .collect();
        let mut resp = JoinGroupResponse::default()
            .with_error_code(code(r.error))
            .with_generation_id(r.generation)
            .with_protocol_name(r.protocol.map(StrBytes::from_string))
            .with_leader(StrBytes::from_string(r.leader))
            .with_member_id(StrBytes::from_string(r.member_id))
            .with_members(members);
        if req.api_version >= 7 {
            resp = resp.with_protocol_type(r.protocol_type.map(StrBytes::from_string));
        }
        if req.api_version < 7 && resp.protocol_name.is_none() {
            resp = resp.with_protocol_name(Some(StrBytes::default()));
        }
        reply(&req, &resp)
    })
}

pub fn sync_group(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, SyncGroupRequest);
    let group = body.group_id.to_string();
    if let Some(e) = refusal(&Access::of(shard, &req), &group, AclOperation::Read) {
        let resp = SyncGroupResponse::default().with_error_code(e.code());
        return super::ready(reply(&req, &resp));
    }
    let member = body.member_id.to_string();
    let instance = body.group_instance_id.as_ref().map(|x| x.to_string());
    let generation = body.generation_id;
    let assignments: Vec<(String, Bytes)> = body
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let owner = coordinator_of(shard, &group);
    let call = shard.invoke_on(owner, move |s| {
        coordinator::sync(s, group, member, instance, generation, assignments)
    });
    Box::pin(async move {
        let Ok(r) = call.await else {
            return Outcome::Close("coordinator shard stopped".into());
        };
        let mut resp = SyncGroupResponse::default()
            .with_error_code(code(r.error))
            .with_assignment(r.assignment);
        if req.api_version >= 5 {
            resp = resp
                .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
                .with_protocol_name(r.protocol.map(StrBytes::from_string));
        }
        reply(&req, &resp)
    })
}

pub fn heartbeat(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, HeartbeatRequest);
    let group = body.group_id.to_string();
    if let Some(e) = refusal(&Access::of(shard, &req), &group, AclOperation::Read) {
        let resp = HeartbeatResponse::default().with_error_code(e.code());
        return super::ready(reply(&req, &resp));
    }
    let owner = coordinator_of(shard, &group);
    let call = shard.invoke_on(owner, move |s| async move {
        coordinator::heartbeat(
            &s,
            &group,
            body.member_id.as_str(),
            body.group_instance_id.as_deref(),
            body.generation_id,
        )
    });
    Box::pin(async move {
        let err = call
            .await
            .unwrap_or(Some(ResponseError::CoordinatorNotAvailable));
        reply(
            &req,
            &HeartbeatResponse::default().with_error_code(code(err)),
        )
    })
}

pub fn leave_group(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, LeaveGroupRequest);
    let group = body.group_id.to_string();
    if let Some(e) = refusal(&Access::of(shard, &req), &group, AclOperation::Read) {
        let resp = LeaveGroupResponse::default().with_error_code(e.code());
        return super::ready(reply(&req, &resp));
    }
    let members: Vec<(String, Option<String>)> = if req.api_version >= 3 {
        body.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|x| x.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let asked = members.clone();
    let owner = coordinator_of(shard, &group);
    let call = shard.invoke_on(owner, move |s| coordinator::leave(s, group, members));
    Box::pin(async move {
        let results = call
            .await
            .unwrap_or_else(|_| vec![Some(ResponseError::CoordinatorNotAvailable); asked.len()]);
        let resp = if req.api_version >= 3 {
            let members = asked
                .into_iter()
                .zip(results)
                .map(|((m, i), e)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(StrBytes::from_string(m))
                        .with_group_instance_id(i.map(StrBytes::from_string))
                        .with_error_code(code(e))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        } else {
            LeaveGroupResponse::default()
                .with_error_code(code(results.into_iter().next().flatten()))
        };
        reply(&req, &resp)
    })
}

pub fn offset_commit(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, OffsetCommitRequest);
    let group = body.group_id.to_string();
    let access = Access::of(shard, &req);
    let refused = refusal(&access, &group, AclOperation::Read);
    let allowed = readable(
        &access,
        refused,
        body.topics.iter().map(|t| t.name.as_str()),
    );
    let commits: Vec<Commit> = body
        .topics
        .iter()
        .zip(&allowed)
        .filter(|(_, ok)| **ok)
        .flat_map(|(t, _)| {
            t.partitions.iter().map(move |p| Commit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let n = commits.len();
    let call = if refused.is_none() && n > 0 {
        let owner = coordinator_of(shard, &group);
        let generation = body.generation_id_or_member_epoch;
        let member = body.member_id.to_string();
        let instance = body.group_instance_id.as_ref().map(|x| x.to_string());
        Some(shard.invoke_on(owner, move |s| {
            coordinator::commit(s, group, generation, member, instance, commits)
        }))
    } else {
        None
    };
    Box::pin(async move {
        let errors = match call {
            None => vec![refused; n],
            Some(c) => c
                .await
                .unwrap_or_else(|_| vec![Some(ResponseError::CoordinatorNotAvailable); n]),
        };
        let mut errors = errors.into_iter();
        let topics = body
            .topics
            .iter()
            .zip(&allowed)
            .map(|(t, ok)| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let e = match (refused, ok) {
                            (Some(e), _) => Some(e),
                            (None, false) => Some(ResponseError::TopicAuthorizationFailed),
                            (None, true) => errors.next().flatten(),
                        };
                        offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code(e))
                    })
                    .collect();
                offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        reply(&req, &OffsetCommitResponse::default().with_topics(topics))
    })
}

/// TxnOffsetCommit: offsets committed inside a transaction, on the group's coordinator.
pub fn txn_offset_commit(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, TxnOffsetCommitRequest);
    let group = body.group_id.to_string();
    // Kafka's checks: WRITE on the transactional id, READ on the group, READ on each topic.
    let access = Access::of(shard, &req);
    let refused = if !access.transactional_id(AclOperation::Write, body.transactional_id.as_str()) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        refusal(&access, &group, AclOperation::Read)
    };
    let allowed = readable(
        &access,
        refused,
        body.topics.iter().map(|t| t.name.as_str()),
    );
    let commits: Vec<Commit> = body
        .topics
        .iter()
        .zip(&allowed)
        .filter(|(_, ok)| **ok)
        .flat_map(|(t, _)| {
            t.partitions.iter().map(move |p| Commit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if req.api_version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let n = commits.len();
    // KIP-890: the offsets partition must be in the transaction (AddOffsetsToTxn) before
    // anything is written to it, or the offsets would wait for a marker that never comes.
    let txn_id = body.transactional_id.0.to_string();
    let go = refused.is_none() && n > 0;
    let verify = go.then(|| {
        let tp = offsets_partition(&shard.config, &group);
        super::transactions::verify_partition(
            shard,
            txn_id,
            body.producer_id.0,
            body.producer_epoch,
            tp,
        )
    });
    let abortable_is_known = req.api_version >= 5;
    let shard = shard.clone();
    // Queued on the coordinator only once verified (invoke_on queues at once).
    let call = go.then(|| {
        let from = coordinator::TxnCommitter {
            producer_id: body.producer_id.0,
            producer_epoch: body.producer_epoch,
            generation: if req.api_version >= 3 {
                body.generation_id
            } else {
                -1
            },
            member_id: if req.api_version >= 3 {
                body.member_id.to_string()
            } else {
                String::new()
            },
            instance_id: body.group_instance_id.as_ref().map(|x| x.to_string()),
        };
        let owner = coordinator_of(&shard, &group);
        move || {
            shard.invoke_on(owner, move |s| {
                coordinator::txn_commit(s, group, from, commits)
            })
        }
    });
    Box::pin(async move {
        let verified = match verify {
            Some(v) => v.await,
            None => Ok(()),
        };
        let errors = match (call, verified) {
            (None, _) => vec![refused; n],
            (Some(_), Err(ResponseError::TransactionAbortable)) if !abortable_is_known => {
                vec![Some(ResponseError::InvalidTxnState); n]
            }
            (Some(_), Err(e)) => vec![Some(e); n],
            (Some(c), Ok(())) => c()
                .await
                .unwrap_or_else(|_| vec![Some(ResponseError::CoordinatorNotAvailable); n]),
        };
        let mut errors = errors.into_iter();
        let topics = body
            .topics
            .iter()
            .zip(&allowed)
            .map(|(t, ok)| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let e = match (refused, ok) {
                            (Some(e), _) => Some(e),
                            (None, false) => Some(ResponseError::TopicAuthorizationFailed),
                            (None, true) => errors.next().flatten(),
                        };
                        txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code(e))
                    })
                    .collect();
                txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        reply(
            &req,
            &TxnOffsetCommitResponse::default().with_topics(topics),
        )
    })
}

type Wanted = Option<Vec<(String, Vec<i32>)>>;
type Fetched = Result<Vec<coordinator::FetchedOffset>, ResponseError>;

/// One group's committed offsets (Kafka's checks: DESCRIBE on the group; of the topics, only
/// those the principal may DESCRIBE: named ones it may not are TOPIC_AUTHORIZATION_FAILED,
/// and a request for every topic leaves them out).
fn fetch_group(
    shard: &Rc<Shard>,
    req: &Request,
    group: String,
    wanted: Wanted,
    require_stable: bool,
    member: Option<(String, i32)>,
) -> LocalBoxFuture<'static, Fetched> {
    let access = Access::of(shard, req);
    if let Some(e) = refusal(&access, &group, AclOperation::Describe) {
        return Box::pin(std::future::ready(Err(e)));
    }
    let all_topics = wanted.is_none();
    let owner = coordinator_of(shard, &group);
    let call = shard.invoke_on(owner, move |s| async move {
        coordinator::fetch_offsets(&s, &group, wanted, require_stable, member)
    });
    Box::pin(async move {
        let rows = call
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, p, v)| {
                if access.shows(AclOperation::Describe, ResourceType::Topic, &t) {
                    Some((t, p, v))
                } else if all_topics {
                    None
                } else {
                    Some((t, p, Err(ResponseError::TopicAuthorizationFailed)))
                }
            })
            .collect())
    })
}

/// (topic, [(partition, offset, epoch, metadata, error code)]) in first-seen topic order.
type ByTopic = Vec<(String, Vec<(i32, i64, i32, Option<String>, i16)>)>;

fn by_topic(rows: Vec<coordinator::FetchedOffset>) -> ByTopic {
    let mut out: ByTopic = Vec::new();
    for (t, p, v) in rows {
        let entry = match v {
            Ok(Some(v)) => (p, v.offset, v.leader_epoch, Some(v.metadata), 0),
            Ok(None) => (p, -1, -1, Some(String::new()), 0),
            Err(e) => (p, -1, -1, Some(String::new()), e.code()),
        };
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, parts)) => parts.push(entry),
            None => out.push((t, vec![entry])),
        }
    }
    out
}

pub fn offset_fetch(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, OffsetFetchRequest);
    let groups: Vec<(String, Wanted)> = if req.api_version >= 8 {
        body.groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                (g.group_id.to_string(), wanted)
            })
            .collect()
    } else {
        let wanted = body.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        vec![(body.group_id.to_string(), wanted)]
    };
    // v9: a member of a consumer group names itself and its epoch.
    let members: Vec<Option<(String, i32)>> = if req.api_version >= 9 {
        body.groups
            .iter()
            .map(|g| {
                g.member_id
                    .as_ref()
                    .map(|m| (m.to_string(), g.member_epoch))
            })
            .collect()
    } else {
        vec![None; groups.len()]
    };
    let calls: Vec<_> = groups
        .iter()
        .zip(members)
        .map(|((g, w), m)| fetch_group(shard, &req, g.clone(), w.clone(), body.require_stable, m))
        .collect();
    Box::pin(async move {
        let results = futures::future::join_all(calls).await;
        let resp = if req.api_version >= 8 {
            let groups = groups
                .into_iter()
                .zip(results)
                .map(|((g, _), r)| fetch_group_response(g, r))
                .collect();
            OffsetFetchResponse::default().with_groups(groups)
        } else {
            let r = results
                .into_iter()
                .next()
                .unwrap_or(Err(ResponseError::UnknownServerError));
            let (err, rows) = match r {
                Ok(rows) => (0, rows),
                Err(e) => (e.code(), Vec::new()),
            };
            let topics = by_topic(rows)
                .into_iter()
                .map(|(t, parts)| {
                    let partitions = parts
                        .into_iter()
                        .map(|(p, o, e, m, err)| {
                            offset_fetch_response::OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(err)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(if req.api_version >= 5 {
                                    e
                                } else {
                                    -1
                                })
                                .with_metadata(m.map(StrBytes::from_string))
                        })
                        .collect();
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t)))
                        .with_partitions(partitions)
                })
                .collect();
            let resp = OffsetFetchResponse::default().with_topics(topics);
            if req.api_version >= 2 {
                resp.with_error_code(err)
            } else {
                resp
            }
        };
        reply(&req, &resp)
    })
}

fn fetch_group_response(
    group: String,
    r: Fetched,
) -> offset_fetch_response::OffsetFetchResponseGroup {
    let g = offset_fetch_response::OffsetFetchResponseGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group)));
    match r {
        Err(e) => g.with_error_code(e.code()),
        Ok(rows) => g.with_topics(
            by_topic(rows)
                .into_iter()
                .map(|(t, parts)| {
                    offset_fetch_response::OffsetFetchResponseTopics::default()
                        .with_name(TopicName(StrBytes::from_string(t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, o, e, m, err)| {
                                    offset_fetch_response::OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_error_code(err)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(e)
                                        .with_metadata(m.map(StrBytes::from_string))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

pub fn describe_groups(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, DescribeGroupsRequest);
    let access = Access::of(shard, &req);
    let calls: Vec<_> = body
        .groups
        .iter()
        .map(|g| {
            let group = g.to_string();
            let allowed = access.group(AclOperation::Describe, &group);
            let owner = coordinator_of(shard, &group);
            let call = allowed.then(|| {
                shard.invoke_on(
                    owner,
                    move |s| async move { coordinator::describe(&s, &group) },
                )
            });
            async move {
                match call {
                    None => Err(ResponseError::GroupAuthorizationFailed),
                    Some(c) => c
                        .await
                        .unwrap_or(Err(ResponseError::CoordinatorNotAvailable)),
                }
            }
        })
        .collect();
    let ops_requested = req.api_version >= 3 && body.include_authorized_operations;
    Box::pin(async move {
        let results = futures::future::join_all(calls).await;
        let groups = body
            .groups
            .iter()
            .zip(results)
            .map(|(id, r)| {
                let g =
                    describe_groups_response::DescribedGroup::default().with_group_id(id.clone());
                match r {
                    Err(e) => g.with_error_code(e.code()),
                    Ok(d) => g
                        .with_authorized_operations(super::authorized_ops::group(
                            ops_requested,
                            &access,
                            id.as_str(),
                        ))
                        .with_group_state(s(d.state))
                        .with_protocol_type(StrBytes::from_string(d.protocol_type))
                        .with_protocol_data(StrBytes::from_string(d.protocol))
                        .with_members(
                            d.members
                                .into_iter()
                                .map(|(m, i, c, h, meta, asg)| {
                                    describe_groups_response::DescribedGroupMember::default()
                                        .with_member_id(StrBytes::from_string(m))
                                        .with_group_instance_id(if req.api_version >= 4 {
                                            i.map(StrBytes::from_string)
                                        } else {
                                            None
                                        })
                                        .with_client_id(StrBytes::from_string(c))
                                        .with_client_host(StrBytes::from_string(h))
                                        .with_member_metadata(meta)
                                        .with_member_assignment(asg)
                                })
                                .collect(),
                        ),
                }
            })
            .collect();
        reply(&req, &DescribeGroupsResponse::default().with_groups(groups))
    })
}

pub fn list_groups(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, ListGroupsRequest);
    // DESCRIBE on the cluster lists every group; otherwise only those the principal may
    // DESCRIBE, as Kafka does.
    let access = Access::of(shard, &req);
    let every_group = access.shows(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME);
    let shard = shard.clone();
    Box::pin(async move {
        let states: Vec<String> = body
            .states_filter
            .iter()
            .map(|x| x.to_lowercase())
            .collect();
        // Kafka filters (case-insensitively) by type as well as by state.
        let type_wanted = |t: &str| {
            body.types_filter.is_empty()
                || body.types_filter.iter().any(|x| x.eq_ignore_ascii_case(t))
        };
        let all = shard
            .invoke_on_all(|s| async move { coordinator::list(&s) })
            .await;
        let groups = all
            .into_iter()
            .flatten()
            .flatten()
            .filter(|g| type_wanted(g.group_type))
            .filter(|g| {
                every_group || access.shows(AclOperation::Describe, ResourceType::Group, &g.id)
            })
            .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
            .map(|l| {
                let g = list_groups_response::ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(l.id)))
                    .with_protocol_type(StrBytes::from_string(l.protocol_type));
                let g = if req.api_version >= 4 {
                    g.with_group_state(s(l.state))
                } else {
                    g
                };
                if req.api_version >= 5 {
                    g.with_group_type(s(l.group_type))
                } else {
                    g
                }
            })
            .collect();
        reply(&req, &ListGroupsResponse::default().with_groups(groups))
    })
}

pub fn delete_groups(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, DeleteGroupsRequest);
    let access = Access::of(shard, &req);
    let calls: Vec<_> = body
        .groups_names
        .iter()
        .map(|g| {
            let group = g.to_string();
            let owner = coordinator_of(shard, &group);
            let refused = refusal(&access, &group, AclOperation::Delete);
            let call = refused.is_none().then(|| {
                let g = group.clone();
                shard.invoke_on(owner, move |s| coordinator::delete_group(s, g))
            });
            let shard = shard.clone();
            async move {
                let e = match call {
                    None => return refused,
                    Some(c) => c
                        .await
                        .unwrap_or(Some(ResponseError::CoordinatorNotAvailable)),
                };
                if e.is_none() {
                    // Share-partition leaders here drop what they cached of a deleted share
                    // group's state.
                    shard
                        .invoke_on_all(move |s| {
                            let g = group.clone();
                            async move { crate::share::forget_group(&s, &g) }
                        })
                        .await;
                }
                e
            }
        })
        .collect();
    Box::pin(async move {
        let results = futures::future::join_all(calls).await;
        let out = body
            .groups_names
            .iter()
            .zip(results)
            .map(|(g, e)| {
                delete_groups_response::DeletableGroupResult::default()
                    .with_group_id(g.clone())
                    .with_error_code(code(e))
            })
            .collect();
        reply(&req, &DeleteGroupsResponse::default().with_results(out))
    })
}

pub fn offset_delete(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, OffsetDeleteRequest);
    let group = body.group_id.to_string();
    // Kafka's checks: DELETE on the group, then READ on each topic.
    let access = Access::of(shard, &req);
    let refused = refusal(&access, &group, AclOperation::Delete);
    let allowed = readable(
        &access,
        refused,
        body.topics.iter().map(|t| t.name.as_str()),
    );
    let mut unreadable = Vec::new();
    let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
    for (t, ok) in body.topics.iter().zip(&allowed) {
        let partitions = t.partitions.iter().map(|p| p.partition_index);
        if *ok {
            topics.push((t.name.to_string(), partitions.collect()));
        } else {
            let e = Some(ResponseError::TopicAuthorizationFailed);
            unreadable.extend(partitions.map(|p| (t.name.to_string(), p, e)));
        }
    }
    let owner = coordinator_of(shard, &group);
    let call = refused.is_none().then(|| {
        shard.invoke_on(owner, move |s| {
            coordinator::delete_offsets(s, group, topics)
        })
    });
    Box::pin(async move {
        let result = match (call, refused) {
            (Some(c), _) => c
                .await
                .unwrap_or(Err(ResponseError::CoordinatorNotAvailable)),
            (None, e) => Err(e.unwrap_or(ResponseError::UnknownServerError)),
        };
        let resp = match result {
            Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
            Ok(mut rows) => {
                rows.extend(unreadable);
                let mut topics: Vec<offset_delete_response::OffsetDeleteResponseTopic> = Vec::new();
                for (t, p, e) in rows {
                    let part = offset_delete_response::OffsetDeleteResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(code(e));
                    match topics.iter_mut().find(|x| x.name.as_str() == t) {
                        Some(x) => x.partitions.push(part),
                        None => topics.push(
                            offset_delete_response::OffsetDeleteResponseTopic::default()
                                .with_name(TopicName(StrBytes::from_string(t)))
                                .with_partitions(vec![part]),
                        ),
                    }
                }
                OffsetDeleteResponse::default().with_topics(topics)
            }
        };
        reply(&req, &resp)
    })
}
