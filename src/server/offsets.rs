//! ListOffsets: earliest, latest, the first offset at or after a timestamp, and (v7+) the
//! record with the largest timestamp, (v8+) the earliest local offset and (v9+) the latest
//! tiered offset. Without tiered storage the earliest local offset is the log start, and there
//! is no tiered offset (-1), as on a Kafka broker with remote storage off.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{errors, reply, Outcome};
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::shard::Shard;
use crate::types::{ShardId, TopicPartition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

#[derive(Debug, Clone, Copy)]
struct Found {
    error: i16,
    timestamp: i64,
    offset: i64,
    leader_epoch: i32,
}

impl Found {
    fn err(e: ResponseError) -> Self {
        Found {
            error: e.code(),
            timestamp: -1,
            offset: -1,
            leader_epoch: -1,
        }
    }

    fn at(offset: i64, timestamp: i64) -> Self {
        Found {
            error: 0,
            timestamp,
            offset,
            leader_epoch: -1,
        }
    }
}

pub fn handle(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: ListOffsetsRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let snap = shard.snapshot();
    let mut found: BTreeMap<(usize, usize), Found> = BTreeMap::new();
    let mut by_owner: BTreeMap<ShardId, Vec<super::PartitionAsk>> = BTreeMap::new();
    let access = super::access::Access::of(shard, &req);
    for (ti, t) in body.topics.iter().enumerate() {
        let meta = snap.topic(t.name.as_str());
        let allowed = access.topic(AclOperation::Describe, t.name.as_str());
        for (pi, p) in t.partitions.iter().enumerate() {
            match meta {
                _ if !allowed => {
                    found.insert(
                        (ti, pi),
                        Found::err(ResponseError::TopicAuthorizationFailed),
                    );
                }
                Some(m) if p.partition_index >= 0 && p.partition_index < m.partitions => {
                    let tp = TopicPartition::new(m.name.clone(), p.partition_index);
                    let owner = shard.owner_of(&tp.topic, tp.partition);
                    by_owner
                        .entry(owner)
                        .or_default()
                        .push(((ti, pi), tp, p.timestamp));
                }
                _ => {
                    found.insert((ti, pi), Found::err(ResponseError::UnknownTopicOrPartition));
                }
            }
        }
    }
    // read_committed consumers ask for the last stable offset as LATEST.
    let committed = body.isolation_level == 1;
    let answers = super::on_owners(
        shard,
        by_owner,
        move |s, items| lookup_on_owner(s, items, committed),
        Found::err,
    );
    Box::pin(async move {
        found.extend(answers.await);
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
                        let f = found
                            .get(&(ti, pi))
                            .copied()
                            .unwrap_or(Found::err(ResponseError::UnknownServerError));
                        let mut r = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(f.error)
                            .with_timestamp(f.timestamp)
                            .with_offset(f.offset);
                        if req.api_version >= 4 && f.error == 0 {
                            r = r.with_leader_epoch(f.leader_epoch);
                        }
                        r
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        reply(&req, &ListOffsetsResponse::default().with_topics(topics))
    })
}

async fn lookup_on_owner(
    shard: Rc<Shard>,
    items: Vec<super::PartitionAsk>,
    committed: bool,
) -> Vec<((usize, usize), Found)> {
    let mut out = Vec::with_capacity(items.len());
    for (slot, tp, timestamp) in items {
        let (Some(log), Some((epoch, epoch_start))) = (
            shard.log(&tp),
            crate::replication::leadership_of(&shard, &tp),
        ) else {
            out.push((slot, Found::err(ResponseError::NotLeaderOrFollower)));
            continue;
        };
        // KIP-207: a new leader's high watermark may still be behind what the old leader had
        // committed (it moves once the followers fetch); offsets answered from it could go
        // backwards, so clients are told to retry until it reaches the epoch's start.
        if log.high_watermark() < epoch_start {
            out.push((slot, Found::err(ResponseError::OffsetNotAvailable)));
            continue;
        }
        let timestamp = match timestamp {
            // The record with the largest timestamp: the first at or after that timestamp.
            MAX_TIMESTAMP => log.max_timestamp().unwrap_or(MAX_TIMESTAMP),
            ts => ts,
        };
        let mut found = match timestamp {
            LATEST if committed => Found::at(log.last_stable_offset(), -1),
            LATEST => Found::at(log.high_watermark(), -1),
            EARLIEST | EARLIEST_LOCAL => Found::at(log.log_start_offset(), -1),
            LATEST_TIERED | MAX_TIMESTAMP => Found::at(-1, -1),
            ts if ts < 0 => Found::err(ResponseError::InvalidRequest),
            ts => match log.offset_for_timestamp(ts).await {
                Ok(Some((base_offset, _))) => match first_record_at(&log, base_offset, ts).await {
                    Ok(Some((offset, timestamp))) => Found::at(offset, timestamp),
                    Ok(None) => Found::at(-1, -1),
                    Err(e) => Found::err(e),
                },
                Ok(None) => Found::at(-1, -1),
                Err(e) => Found::err(errors::storage(&e)),
            },
        };
        if found.error == 0 && found.offset >= 0 {
            found.leader_epoch = epoch;
        }
        out.push((slot, found));
    }
    out
}

/// The first record at or after `timestamp_ms` in the batch at `base_offset` (the batch the
/// time index found: the first whose max timestamp reaches it). Kafka answers with the record,
/// not the batch, so this one batch is decoded; ListOffsets is not on the produce/fetch path.
async fn first_record_at(
    log: &crate::storage::PartitionLog,
    base_offset: i64,
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, ResponseError> {
    let read = log
        .read(base_offset, 1, true)
        .await
        .map_err(|e| errors::storage(&e))?;
    let Some(batch) = read.batches.into_iter().next() else {
        return Ok(None);
    };
    let header = crate::record::BatchHeader::parse(&batch).map_err(|e| errors::batch(&e))?;
    if header.is_log_append_time() {
        return Ok(Some((header.base_offset, header.max_timestamp)));
    }
    let records = crate::client::batch::decode_batch(batch).map_err(|e| {
        tracing::error!(offset = base_offset, error = %e, "stored batch does not decode");
        ResponseError::KafkaStorageError
    })?;
    Ok(records
        .into_iter()
        .find(|r| r.timestamp >= timestamp_ms)
        .map(|r| (r.offset, r.timestamp)))
}
