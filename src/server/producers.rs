//! DescribeProducers: the producers a partition leader knows (id, epoch, last sequence, last
//! timestamp, coordinator epoch, start of the open transaction), read on the owner shard.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{reply, Outcome};
use crate::producer::ProducerView;
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::shard::Shard;
use crate::types::{ShardId, TopicPartition};

type Answer = Result<Vec<ProducerView>, ResponseError>;

pub fn handle(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DescribeProducersRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let snap = shard.snapshot();
    let mut found: BTreeMap<(usize, usize), Answer> = BTreeMap::new();
    let mut by_owner: BTreeMap<ShardId, Vec<super::PartitionAsk>> = BTreeMap::new();
    let access = super::access::Access::of(shard, &req);
    for (ti, t) in body.topics.iter().enumerate() {
        let meta = snap.topic(t.name.as_str());
        let allowed = access.topic(AclOperation::Read, t.name.as_str());
        for (pi, &p) in t.partition_indexes.iter().enumerate() {
            match meta {
                _ if !allowed => {
                    found.insert((ti, pi), Err(ResponseError::TopicAuthorizationFailed));
                }
                Some(m) if p >= 0 && p < m.partitions => {
                    let tp = TopicPartition::new(m.name.clone(), p);
                    let owner = shard.owner_of(&tp.topic, tp.partition);
                    by_owner.entry(owner).or_default().push(((ti, pi), tp, 0));
                }
                _ => {
                    found.insert((ti, pi), Err(ResponseError::UnknownTopicOrPartition));
                }
            }
        }
    }
    let answers = super::on_owners(shard, by_owner, describe_on_owner, Err);
    Box::pin(async move {
        found.extend(answers.await);
        let topics = body
            .topics
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .enumerate()
                    .map(|(pi, &p)| partition(p, found.remove(&(ti, pi))))
                    .collect();
                TopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        reply(
            &req,
            &DescribeProducersResponse::default().with_topics(topics),
        )
    })
}

fn partition(index: i32, answer: Option<Answer>) -> PartitionResponse {
    let r = PartitionResponse::default().with_partition_index(index);
    match answer.unwrap_or(Err(ResponseError::UnknownServerError)) {
        Err(e) => r.with_error_code(e.code()),
        Ok(views) => r.with_active_producers(
            views
                .into_iter()
                .map(|v| {
                    ProducerState::default()
                        .with_producer_id(ProducerId(v.producer_id))
                        .with_producer_epoch(v.epoch as i32)
                        .with_last_sequence(v.last_sequence)
                        .with_last_timestamp(v.last_timestamp)
                        .with_coordinator_epoch(v.coordinator_epoch)
                        .with_current_txn_start_offset(v.txn_start_offset)
                })
                .collect(),
        ),
    }
}

/// On the owner: only the leader answers (NOT_LEADER_OR_FOLLOWER otherwise, as Kafka).
async fn describe_on_owner(
    shard: Rc<Shard>,
    items: Vec<super::PartitionAsk>,
) -> Vec<((usize, usize), Answer)> {
    items
        .into_iter()
        .map(|(slot, tp, _)| {
            let leader = crate::replication::leader_epoch_of(&shard, &tp).is_some();
            let answer = match shard.log(&tp) {
                Some(log) if leader => Ok(log.producers()),
                _ => Err(ResponseError::NotLeaderOrFollower),
            };
            (slot, answer)
        })
        .collect()
}
