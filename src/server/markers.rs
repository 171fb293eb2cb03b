//! WriteTxnMarkers: the transaction coordinator tells partition leaders to end a producer's
//! transaction. Each named partition's owner appends a marker (a control batch) and answers
//! once the marker is committed, as Kafka appends markers with acks=all; the partition's
//! producer state then ends the transaction, which moves the last stable offset and, for an
//! abort, adds an entry to the aborted-transaction index.
//!
//! Version 1 only: Kafka 4 removed version 0 (KIP-896), and so does the protocol crate.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{errors, reply, Outcome};
use crate::producer::Marker;
use crate::protocol::{decode_body, Request};
use crate::shard::Shard;
use crate::types::{ShardId, TopicPartition};

/// How long a marker may wait to be committed: Kafka's request.timeout.ms default, the
/// timeout its coordinator appends markers with.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(30_000);

/// (marker, topic, partition) in the request.
type Slot = (usize, usize, usize);

/// One partition's marker on its way to the owner.
struct MarkerItem {
    slot: Slot,
    tp: TopicPartition,
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    min_insync: i32,
}

pub fn handle(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: WriteTxnMarkersRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let snap = shard.snapshot();
    let mut codes: BTreeMap<Slot, i16> = BTreeMap::new();
    let mut by_owner: BTreeMap<ShardId, Vec<MarkerItem>> = BTreeMap::new();
    // Only brokers (CLUSTER_ACTION) write markers.
    let allowed = super::access::Access::of(shard, &req)
        .cluster(crate::security::acl::AclOperation::ClusterAction);
    for (mi, m) in body.markers.iter().enumerate() {
        let marker = Marker {
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        for (ti, t) in m.topics.iter().enumerate() {
            let meta = snap.topic(t.name.as_str());
            for (pi, &p) in t.partition_indexes.iter().enumerate() {
                let slot = (mi, ti, pi);
                match meta {
                    _ if !allowed => {
                        codes.insert(slot, ResponseError::ClusterAuthorizationFailed.code());
                    }
                    Some(meta) if p >= 0 && p < meta.partitions => {
                        let tp = TopicPartition::new(meta.name.clone(), p);
                        let owner = shard.owner_of(&tp.topic, tp.partition);
                        by_owner.entry(owner).or_default().push(MarkerItem {
                            slot,
                            tp,
                            producer_id: m.producer_id.0,
                            producer_epoch: m.producer_epoch,
                            marker,
                            min_insync: meta.log_config.min_insync_replicas,
                        });
                        codes.insert(slot, ResponseError::UnknownServerError.code());
                    }
                    _ => {
                        codes.insert(slot, ResponseError::UnknownTopicOrPartition.code());
                    }
                }
            }
        }
    }
    let calls: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, items)| {
            let slots: Vec<Slot> = items.iter().map(|i| i.slot).collect();
            let call = shard.invoke_on(owner, move |s| write_on_owner(s, items));
            async move {
                call.await.unwrap_or_else(|e| {
                    let code = errors::shard(&e).code();
                    slots.into_iter().map(|s| (s, code)).collect()
                })
            }
        })
        .collect();
    Box::pin(async move {
        for (slot, code) in futures::future::join_all(calls).await.into_iter().flatten() {
            codes.insert(slot, code);
        }
        reply(&req, &response(&body, &codes))
    })
}

fn response(body: &WriteTxnMarkersRequest, codes: &BTreeMap<Slot, i16>) -> WriteTxnMarkersResponse {
    let markers = body
        .markers
        .iter()
        .enumerate()
        .map(|(mi, m)| {
            let topics = m
                .topics
                .iter()
                .enumerate()
                .map(|(ti, t)| {
                    let partitions = t
                        .partition_indexes
                        .iter()
                        .enumerate()
                        .map(|(pi, &p)| {
                            let code = codes
                                .get(&(mi, ti, pi))
                                .copied()
                                .unwrap_or(ResponseError::UnknownServerError.code());
                            WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect();
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// On the owner: appends every marker now (in request order), then waits for each to commit.
async fn write_on_owner(shard: Rc<Shard>, items: Vec<MarkerItem>) -> Vec<(Slot, i16)> {
    let now = shard.now_ms();
    let appended: Vec<_> = items
        .into_iter()
        .map(|item| {
            let r = append_marker(&shard, &item, now);
            (item, r)
        })
        .collect();
    let mut out = Vec::with_capacity(appended.len());
    for (item, r) in appended {
        let code = match r {
            Err(e) => e.code(),
            Ok((log, end, epoch)) => {
                let wait = log.wait_committed(end, epoch);
                match crate::metadata::raft::transport::within(COMMIT_TIMEOUT, wait).await {
                    Some(Ok(())) => {
                        completed(&shard, &item);
                        0
                    }
                    Some(Err(e)) => errors::storage(&e).code(),
                    None => ResponseError::RequestTimedOut.code(),
                }
            }
        };
        out.push((item.slot, code));
    }
    out
}

/// Appends one marker on the partition's leader: the log, the end offset to wait for, and
/// the leader epoch it was written in.
fn append_marker(
    shard: &Shard,
    item: &MarkerItem,
    now: i64,
) -> Result<(Rc<crate::storage::PartitionLog>, i64, i32), ResponseError> {
    let (Some(log), Some(isr)) = (
        shard.log(&item.tp),
        crate::replication::isr_size_of(shard, &item.tp),
    ) else {
        return Err(ResponseError::NotLeaderOrFollower);
    };
    if isr < item.min_insync.max(1) as usize {
        return Err(ResponseError::NotEnoughReplicas);
    }
    let epoch = log.leader_epoch();
    let info = log
        .append_marker(item.producer_id, item.producer_epoch, item.marker, now)
        .map_err(|e| errors::storage(&e))?;
    Ok((log, info.last_offset + 1, epoch))
}

/// A committed marker on a `__consumer_offsets` partition settles the producer's
/// transactional offset commits there.
fn completed(shard: &Shard, item: &MarkerItem) {
    if item.tp.topic == crate::group::OFFSETS_TOPIC {
        crate::group::coordinator::transaction_completed(
            shard,
            &item.tp,
            item.producer_id,
            item.marker.commit,
        );
    }
}
