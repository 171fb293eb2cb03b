//! Consumer groups of the broker-driven protocol (KIP-848): ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe. Translated here and run by the coordinator on the shard owning the
//! group's `__consumer_offsets` partition, like the classic group APIs.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{errors, reply, Outcome};
use crate::group::consumer::{Assignment, Heartbeat};
use crate::group::coordinator::consumer::{self as coordinator, HeartbeatError};
use crate::group::coordinator::offsets_partition;
use crate::group::valid_group_id;
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::shard::Shard;

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
    let resp = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(e.code())
        .with_error_message(message.map(StrBytes::from_string))
        .with_member_epoch(-1);
    super::ready(reply(req, &resp))
}

pub fn heartbeat(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: ConsumerGroupHeartbeatRequest = match decode_body(&req) {
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
    // Kafka 4 refuses a subscription to topics the principal may not describe.
    let names = body.subscribed_topic_names.as_ref();
    if names.is_some_and(|n| {
        n.iter()
            .any(|t| !access.topic(AclOperation::Describe, t.as_str()))
    }) {
        return heartbeat_error(&req, ResponseError::TopicAuthorizationFailed, None);
    }
    let mut member_id = body.member_id.to_string();
    if member_id.is_empty() && body.member_epoch == 0 {
        if req.api_version >= 1 {
            // From v1 the client names itself (KIP-1082).
            let why = "MemberId can't be empty.".to_string();
            return heartbeat_error(&req, ResponseError::InvalidRequest, Some(why));
        }
        member_id = uuid::Uuid::new_v4().simple().to_string();
    }
    let owned = body.topic_partitions.as_ref().map(|tps| {
        let mut a = Assignment::new();
        for tp in tps {
            let set = a.entry(tp.topic_id).or_default();
            set.extend(tp.partitions.iter().copied());
        }
        a.retain(|_, ps| !ps.is_empty());
        a
    });
    let hb = Heartbeat {
        member_id,
        member_epoch: body.member_epoch,
        instance_id: body.instance_id.as_ref().map(|x| x.to_string()),
        rack_id: body.rack_id.as_ref().map(|x| x.to_string()),
        rebalance_timeout_ms: body.rebalance_timeout_ms,
        subscribed_topic_names: names.map(|n| n.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: body.subscribed_topic_regex.as_ref().map(|x| x.to_string()),
        server_assignor: body.server_assignor.as_ref().map(|x| x.to_string()),
        owned,
        client_id: req.client_id.clone().unwrap_or_default(),
        client_host: req.client_host.clone(),
    };
    let interval = shard.group_settings(&group).consumer_heartbeat_interval_ms;
    let owner = owner_of(shard, &group);
    let call = shard.invoke_on(owner, move |sh| coordinator::heartbeat(sh, group, hb));
    Box::pin(async move {
        let result = call.await.unwrap_or(Err(HeartbeatError::Coordinator(
            ResponseError::CoordinatorNotAvailable,
        )));
        let resp = match result {
            Ok(r) => {
                let assignment = r.assignment.map(|a| {
                    let tps = a
                        .into_iter()
                        .map(|(t, ps)| {
                            consumer_group_heartbeat_response::TopicPartitions::default()
                                .with_topic_id(t)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect();
                    consumer_group_heartbeat_response::Assignment::default()
                        .with_topic_partitions(tps)
                });
                ConsumerGroupHeartbeatResponse::default()
                    .with_member_id(Some(StrBytes::from_string(r.member_id)))
                    .with_member_epoch(r.member_epoch)
                    .with_heartbeat_interval_ms(interval)
                    .with_assignment(assignment)
            }
            Err(e) => {
                let (code, message) = match e {
                    HeartbeatError::Refused(e) => errors::consumer_group(&e),
                    HeartbeatError::Coordinator(e) => (e, None),
                };
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(code.code())
                    .with_error_message(message.map(StrBytes::from_string))
                    .with_member_epoch(-1)
            }
        };
        reply(&req, &resp)
    })
}

pub fn describe(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: ConsumerGroupDescribeRequest = match decode_body(&req) {
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
                    consumer_group_describe_response::TopicPartitions::default()
                        .with_topic_id(*t)
                        .with_topic_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect();
            consumer_group_describe_response::Assignment::default().with_topic_partitions(tps)
        };
        let groups = body
            .group_ids
            .iter()
            .zip(results)
            .map(|(id, r)| {
                let g = consumer_group_describe_response::DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_authorized_operations(super::authorized_ops::group(
                        ops,
                        &access,
                        id.as_str(),
                    ));
                let d = match r {
                    Err(e) => {
                        let message = (e == ResponseError::GroupIdNotFound)
                            .then(|| format!("Group {} is not a consumer group.", id.as_str()));
                        return g
                            .with_error_code(e.code())
                            .with_error_message(message.map(StrBytes::from_string));
                    }
                    Ok(d) => d,
                };
                let empty = Assignment::new();
                let members = d
                    .group
                    .members
                    .values()
                    .map(|m| {
                        let target = d.group.target.get(&m.id).unwrap_or(&empty);
                        consumer_group_describe_response::Member::default()
                            .with_member_id(s(&m.id))
                            .with_instance_id(m.meta.instance_id.as_deref().map(s))
                            .with_rack_id(m.meta.rack_id.as_deref().map(s))
                            .with_member_epoch(m.current.epoch)
                            .with_client_id(s(&m.meta.client_id))
                            .with_client_host(s(&m.meta.client_host))
                            .with_subscribed_topic_names(
                                m.meta
                                    .subscribed_topic_names
                                    .iter()
                                    .map(|t| TopicName(s(t)))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(
                                m.meta.subscribed_topic_regex.as_deref().map(s),
                            )
                            .with_assignment(assignment(&m.current.assigned))
                            .with_target_assignment(assignment(target))
                            // 1: a member of the consumer protocol (0 would be classic).
                            .with_member_type(1)
                    })
                    .collect();
                g.with_group_state(s(d.state))
                    .with_group_epoch(d.group.epoch)
                    .with_assignment_epoch(d.group.assignment_epoch)
                    .with_assignor_name(s(&d.assignor))
                    .with_members(members)
            })
            .collect();
        reply(
            &req,
            &ConsumerGroupDescribeResponse::default().with_groups(groups),
        )
    })
}
