//! OffsetForLeaderEpoch: where a leader epoch ended in a partition's log, as its leader's epoch
//! cache says. Consumers ask it to check their position after a leader change (KIP-320);
//! replicas use the diverging epoch of Fetch instead.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{errors, reply, Outcome};
use crate::protocol::{decode_body, Request};
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use crate::shard::Shard;
use crate::types::{ShardId, TopicPartition};

/// (slot, partition, current leader epoch, requested epoch).
type Ask = ((usize, usize), TopicPartition, i32, i32);

pub fn handle(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: OffsetForLeaderEpochRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let snap = shard.snapshot();
    let mut answers: BTreeMap<(usize, usize), EpochEndOffset> = BTreeMap::new();
    let mut by_owner: BTreeMap<ShardId, Vec<Ask>> = BTreeMap::new();
    // Followers hold CLUSTER_ACTION; consumers checking for truncation need DESCRIBE on the
    // topic (KIP-320), as in Kafka.
    let access = super::access::Access::of(shard, &req);
    let cluster_action = access.shows(
        AclOperation::ClusterAction,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    for (ti, t) in body.topics.iter().enumerate() {
        let meta = snap.topic(t.topic.as_str());
        let allowed = cluster_action || access.topic(AclOperation::Describe, t.topic.as_str());
        for (pi, p) in t.partitions.iter().enumerate() {
            match meta {
                _ if !allowed => {
                    answers.insert(
                        (ti, pi),
                        failed(p.partition, ResponseError::TopicAuthorizationFailed),
                    );
                }
                Some(m) if p.partition >= 0 && p.partition < m.partitions => {
                    let tp = TopicPartition::new(m.name.clone(), p.partition);
                    let owner = shard.owner_of(&tp.topic, tp.partition);
                    let ask = ((ti, pi), tp, p.current_leader_epoch, p.leader_epoch);
                    by_owner.entry(owner).or_default().push(ask);
                }
                _ => {
                    answers.insert(
                        (ti, pi),
                        failed(p.partition, ResponseError::UnknownTopicOrPartition),
                    );
                }
            }
        }
    }
    let calls: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, asks)| {
            let slots: Vec<((usize, usize), i32)> = asks
                .iter()
                .map(|(s, tp, _, _)| (*s, tp.partition))
                .collect();
            let call = shard.invoke_on(owner, move |s| async move { answer_on_owner(&s, asks) });
            async move {
                call.await.unwrap_or_else(|e| {
                    slots
                        .into_iter()
                        .map(|(s, p)| (s, failed(p, errors::shard(&e))))
                        .collect()
                })
            }
        })
        .collect();
    Box::pin(async move {
        for results in futures::future::join_all(calls).await {
            answers.extend(results);
        }
        let topics = body
            .topics
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let partitions = (0..t.partitions.len())
                    .map(|pi| answers.remove(&(ti, pi)).unwrap_or_default())
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(partitions)
            })
            .collect();
        reply(
            &req,
            &OffsetForLeaderEpochResponse::default().with_topics(topics),
        )
    })
}

fn failed(partition: i32, e: ResponseError) -> EpochEndOffset {
    EpochEndOffset::default()
        .with_partition(partition)
        .with_error_code(e.code())
        .with_leader_epoch(-1)
        .with_end_offset(-1)
}

fn answer_on_owner(shard: &Rc<Shard>, asks: Vec<Ask>) -> Vec<((usize, usize), EpochEndOffset)> {
    asks.into_iter()
        .map(|(slot, tp, current, requested)| {
            let answer = match (
                shard.log(&tp),
                crate::replication::leader_epoch_of(shard, &tp),
            ) {
                (Some(log), Some(epoch)) => {
                    if current >= 0 && current < epoch {
                        failed(tp.partition, ResponseError::FencedLeaderEpoch)
                    } else if current > epoch {
                        failed(tp.partition, ResponseError::UnknownLeaderEpoch)
                    } else {
                        let (e, end) = log.end_offset_for_epoch(requested);
                        EpochEndOffset::default()
                            .with_partition(tp.partition)
                            .with_leader_epoch(e)
                            .with_end_offset(end)
                    }
                }
                _ => failed(tp.partition, ResponseError::NotLeaderOrFollower),
            };
            (slot, answer)
        })
        .collect()
}
