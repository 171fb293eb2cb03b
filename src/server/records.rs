//! DeleteRecords: moves partitions' log start offsets up, as Kafka's `kafka-delete-records.sh`
//! and AdminClient.deleteRecords ask. Each partition's leader applies it on the shard that owns
//! the log; followers take the new log start from the leader's fetch responses.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{errors, reply, Outcome};
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::shard::Shard;
use crate::types::{ShardId, TopicPartition};

/// DeleteRecords' "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// A partition's place in the response and its answer: (low watermark, error code).
type Answer = ((usize, usize), (i64, i16));

pub fn delete_records(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: DeleteRecordsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let snap = shard.snapshot();
    let mut answers: BTreeMap<(usize, usize), (i64, i16)> = BTreeMap::new();
    let mut by_owner: BTreeMap<ShardId, Vec<super::PartitionAsk>> = BTreeMap::new();
    let access = super::access::Access::of(shard, &req);
    for (ti, t) in body.topics.iter().enumerate() {
        let meta = snap.topic(t.name.as_str());
        let allowed = access.topic(AclOperation::Delete, t.name.as_str());
        for (pi, p) in t.partitions.iter().enumerate() {
            let refused = match meta {
                _ if !allowed => Some(ResponseError::TopicAuthorizationFailed),
                Some(m) if crate::group::is_internal_topic(&m.name) => {
                    Some(ResponseError::InvalidTopicException)
                }
                Some(m) if !m.log_config.deletes() => Some(ResponseError::PolicyViolation),
                Some(m) if p.partition_index >= 0 && p.partition_index < m.partitions => None,
                _ => Some(ResponseError::UnknownTopicOrPartition),
            };
            if let Some(e) = refused {
                answers.insert((ti, pi), (-1, e.code()));
                continue;
            }
            let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
            by_owner
                .entry(shard.owner_of(&tp.topic, tp.partition))
                .or_default()
                .push(((ti, pi), tp, p.offset));
        }
    }
    let done = super::on_owners(shard, by_owner, delete_on_owner, |e| (-1, e.code()));
    Box::pin(async move {
        answers.extend(done.await);
        let topics = body
            .topics
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let partitions = t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(pi, p)| {
                        let (low, code) = answers
                            .get(&(ti, pi))
                            .copied()
                            .unwrap_or((-1, ResponseError::UnknownServerError.code()));
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(low)
                            .with_error_code(code)
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        reply(&req, &DeleteRecordsResponse::default().with_topics(topics))
    })
}

async fn delete_on_owner(shard: Rc<Shard>, items: Vec<super::PartitionAsk>) -> Vec<Answer> {
    let mut out = Vec::with_capacity(items.len());
    for (slot, tp, offset) in items {
        let (Some(log), Some(_)) = (
            shard.log(&tp),
            crate::replication::leader_epoch_of(&shard, &tp),
        ) else {
            out.push((slot, (-1, ResponseError::NotLeaderOrFollower.code())));
            continue;
        };
        let target = if offset == HIGH_WATERMARK {
            log.high_watermark()
        } else {
            offset
        };
        let answer = match log.delete_records_before(target).await {
            Ok(low) => {
                tracing::info!(partition = %tp, log_start = low, "records deleted");
                (low, 0)
            }
            Err(e) => (-1, errors::storage(&e).code()),
        };
        out.push((slot, answer));
    }
    out
}
