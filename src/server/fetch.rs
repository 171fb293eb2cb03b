//! Fetch: read whole batches from each partition's owner, in parallel, and long-poll when there
//! is less than fetch.min.bytes until data arrives or fetch.max.wait.ms passes.
//!
//! Partitions are read concurrently, each up to its partition_max_bytes; the response is then
//! cut to max_bytes in request order, always keeping the first batch of the first partition that
//! has data so a consumer can make progress past a batch larger than its limits (as Kafka does).
//! No fetch sessions are created (session id 0), so clients send full fetch requests.

use super::access::Access;
use crate::security::acl::AclOperation;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use super::{errors, reply, Outcome, Remote};
use crate::metrics;
use crate::protocol::{decode_body, Request};
use crate::shard::Shard;
use crate::storage::{Chunk, ReadUpTo};
use crate::types::{ShardId, TopicPartition};

/// What one partition of the request asks for, resolved against the metadata.
#[derive(Clone)]
struct Want {
    slot: (usize, usize),
    tp: TopicPartition,
    offset: i64,
    max_bytes: usize,
    /// The fetching follower's node id; None for a consumer.
    replica: Option<i32>,
    /// The leader epoch the fetcher believes in (-1: it does not say).
    current_leader_epoch: i32,
    /// The epoch of the last batch the follower holds (-1: none, or a consumer).
    last_fetched_epoch: i32,
    /// A read_committed consumer (isolation_level 1): reads below the last stable offset.
    committed: bool,
}

/// One partition's answer from its owner.
#[derive(Default)]
struct Got {
    error: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// Whole batches as held: cache buffers or segment-file ranges.
    batches: Vec<Chunk>,
    /// The offset after each of `batches`.
    ends: Vec<i64>,
    /// For read_committed: the aborted transactions overlapping `batches`.
    aborted: Vec<crate::storage::AbortedTxn>,
    /// For a follower whose log diverged: the epoch and where it ends on the leader.
    diverging: Option<(i32, i64)>,
}

impl Got {
    fn err(e: ResponseError) -> Self {
        Got {
            error: e.code(),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            batches: Vec::new(),
            ends: Vec::new(),
            aborted: Vec::new(),
            diverging: None,
        }
    }
    fn bytes(&self) -> usize {
        self.batches.iter().map(Chunk::len).sum()
    }
}

/// Per topic of the request: its name and id as the response must echo them, and per
/// partition either a read to do or an error already known.
type Plan = Vec<(
    TopicName,
    uuid::Uuid,
    Vec<(i32, Result<Want, ResponseError>)>,
)>;

/// Kafka's checks: a follower needs CLUSTER_ACTION, a consumer READ on each topic; a topic
/// refused answers TOPIC_AUTHORIZATION_FAILED for its partitions (an unknown topic id stays
/// UNKNOWN_TOPIC_ID: there is no name to check).
fn plan(shard: &Shard, body: &FetchRequest, version: i16, access: &Access) -> Plan {
    let snap = shard.snapshot();
    let replica_id = if version >= 15 {
        body.replica_state.replica_id.0
    } else {
        body.replica_id.0
    };
    let replica = (replica_id >= 0).then_some(replica_id);
    let follower_allowed = replica.is_some() && access.cluster(AclOperation::ClusterAction);
    body.topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let (meta, missing) = if version >= 13 {
                (snap.topic_by_id(&t.topic_id), ResponseError::UnknownTopicId)
            } else {
                (
                    snap.topic(t.topic.as_str()),
                    ResponseError::UnknownTopicOrPartition,
                )
            };
            let name = meta.map_or(t.topic.clone(), |m| TopicName(m.name.clone().into()));
            let allowed = match replica {
                Some(_) => follower_allowed,
                None => {
                    (version >= 13 && meta.is_none())
                        || access.topic(AclOperation::Read, name.as_str())
                }
            };
            let parts = t
                .partitions
                .iter()
                .enumerate()
                .map(|(pi, p)| {
                    let want = match meta {
                        _ if !allowed => Err(ResponseError::TopicAuthorizationFailed),
                        None => Err(missing),
                        Some(m) if p.partition < 0 || p.partition >= m.partitions => {
                            Err(ResponseError::UnknownTopicOrPartition)
                        }
                        Some(m) => Ok(Want {
                            slot: (ti, pi),
                            tp: TopicPartition::new(m.name.clone(), p.partition),
                            offset: p.fetch_offset,
                            max_bytes: p.partition_max_bytes.max(0) as usize,
                            replica,
                            current_leader_epoch: p.current_leader_epoch,
                            last_fetched_epoch: if version >= 12 {
                                p.last_fetched_epoch
                            } else {
                                -1
                            },
                            committed: replica.is_none() && body.isolation_level == 1,
                        }),
                    };
                    (p.partition, want)
                })
                .collect();
            (name, t.topic_id, parts)
        })
        .collect()
}

fn wants_by_owner(shard: &Shard, plan: &Plan) -> BTreeMap<ShardId, Vec<Want>> {
    let mut by_owner: BTreeMap<ShardId, Vec<Want>> = BTreeMap::new();
    for (_, _, parts) in plan {
        for w in parts.iter().filter_map(|(_, w)| w.as_ref().ok()) {
            let owner = shard.owner_of(&w.tp.topic, w.tp.partition);
            by_owner.entry(owner).or_default().push(w.clone());
        }
    }
    by_owner
}

pub fn handle(shard: &Rc<Shard>, req: Request, remote: Remote) -> LocalBoxFuture<'static, Outcome> {
    let body: FetchRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let shard = shard.clone();
    Box::pin(async move {
        if body.session_id != 0 || body.session_epoch > 0 {
            let resp = FetchResponse::default()
                .with_error_code(ResponseError::FetchSessionIdNotFound.code());
            return reply(&req, &resp);
        }
        let access = Access::of(&shard, &req);
        let plan = plan(&shard, &body, req.api_version, &access);
        let by_owner = wants_by_owner(&shard, &plan);
        let deadline = shard.now_ms() + body.max_wait_ms.max(0) as i64;
        let min_bytes = body.min_bytes.max(0) as usize;
        let (got, waited) = if by_owner.len() == 1 {
            poll_one_owner(&shard, by_owner, min_bytes, deadline).await
        } else {
            poll_owners(&shard, &by_owner, min_bytes, deadline).await
        };
        remote.set(waited);
        let (resp, records) = build_response(
            plan,
            got,
            body.max_bytes.max(0) as usize,
            body.isolation_level,
        );
        match super::fetch_frame::encode(req.correlation_id, req.api_version, &resp, records) {
            Ok(chunks) => Outcome::Chunks(chunks),
            Err(e) => {
                tracing::error!(version = req.api_version, error = %e, "cannot encode fetch response");
                Outcome::Close(format!("cannot encode fetch response: {e}"))
            }
        }
    })
}

fn enough(got: &BTreeMap<(usize, usize), Got>, min_bytes: usize) -> bool {
    let total: usize = got.values().map(Got::bytes).sum();
    total >= min_bytes || got.values().any(|g| g.error != 0 || g.diverging.is_some())
}

/// What the owners answered, and how long the long poll waited for data.
type Polled = (BTreeMap<(usize, usize), Got>, Duration);

/// Long poll across several owners: read everywhere, wait for data anywhere, read again.
async fn poll_owners(
    shard: &Rc<Shard>,
    by_owner: &BTreeMap<ShardId, Vec<Want>>,
    min_bytes: usize,
    deadline: i64,
) -> Polled {
    let mut got = read_all(shard, by_owner).await;
    let mut waited = Duration::ZERO;
    loop {
        let remaining = deadline - shard.now_ms();
        if enough(&got, min_bytes) || remaining <= 0 || by_owner.is_empty() {
            return (got, waited);
        }
        let since = Instant::now();
        wait_any(shard, by_owner, remaining).await;
        waited += since.elapsed();
        got = read_all(shard, by_owner).await;
    }
}

/// Long poll when one shard owns every partition asked for (the common case): the whole
/// read-wait-read loop runs there, one message each way instead of three.
async fn poll_one_owner(
    shard: &Rc<Shard>,
    by_owner: BTreeMap<ShardId, Vec<Want>>,
    min_bytes: usize,
    deadline: i64,
) -> Polled {
    let Some((owner, wants)) = by_owner.into_iter().next() else {
        return (BTreeMap::new(), Duration::ZERO);
    };
    let slots: Vec<(usize, usize)> = wants.iter().map(|w| w.slot).collect();
    let call = shard.invoke_on(owner, move |s| async move {
        let mut got: BTreeMap<_, _> = read_on_owner(s.clone(), wants.clone())
            .await
            .into_iter()
            .collect();
        let mut waited = Duration::ZERO;
        loop {
            let remaining = deadline - s.now_ms();
            if enough(&got, min_bytes) || remaining <= 0 {
                return (got, waited);
            }
            let offsets = wants.iter().map(Waiting::of).collect();
            let since = Instant::now();
            wait_on_owner(s.clone(), offsets, remaining).await;
            waited += since.elapsed();
            got = read_on_owner(s.clone(), wants.clone())
                .await
                .into_iter()
                .collect();
        }
    });
    call.await.unwrap_or_else(|e| {
        let got = slots
            .into_iter()
            .map(|slot| (slot, Got::err(errors::shard(&e))))
            .collect();
        (got, Duration::ZERO)
    })
}

async fn read_all(
    shard: &Rc<Shard>,
    by_owner: &BTreeMap<ShardId, Vec<Want>>,
) -> BTreeMap<(usize, usize), Got> {
    let calls: Vec<_> = by_owner
        .iter()
        .map(|(owner, wants)| {
            let wants = wants.clone();
            shard.invoke_on(*owner, move |s| read_on_owner(s, wants))
        })
        .collect();
    let mut out = BTreeMap::new();
    for (call, wants) in futures::future::join_all(calls)
        .await
        .into_iter()
        .zip(by_owner.values())
    {
        match call {
            Ok(results) => out.extend(results),
            Err(e) => {
                for w in wants {
                    out.insert(w.slot, Got::err(errors::shard(&e)));
                }
            }
        }
    }
    out
}

async fn read_on_owner(shard: Rc<Shard>, wants: Vec<Want>) -> Vec<((usize, usize), Got)> {
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        let got = read_one(&shard, &w).await;
        out.push((w.slot, got));
    }
    out
}

/// One partition on its owner: only the leader serves (KIP-320 epoch checks when the fetcher
/// names one); a follower's fetch also reports its position and is checked for divergence.
async fn read_one(shard: &Rc<Shard>, w: &Want) -> Got {
    let (Some(log), Some(epoch)) = (
        shard.log(&w.tp),
        crate::replication::leader_epoch_of(shard, &w.tp),
    ) else {
        return Got::err(ResponseError::NotLeaderOrFollower);
    };
    if w.current_leader_epoch >= 0 && w.current_leader_epoch < epoch {
        return Got::err(ResponseError::FencedLeaderEpoch);
    }
    if w.current_leader_epoch > epoch {
        return Got::err(ResponseError::UnknownLeaderEpoch);
    }
    let mut got = Got {
        error: 0,
        high_watermark: log.high_watermark(),
        last_stable_offset: log.last_stable_offset(),
        log_start_offset: log.log_start_offset(),
        batches: Vec::new(),
        ends: Vec::new(),
        aborted: Vec::new(),
        diverging: None,
    };
    let up_to = match w.replica {
        Some(node) => {
            if w.last_fetched_epoch >= 0 {
                let (e, end) = log.end_offset_for_epoch(w.last_fetched_epoch);
                if e < w.last_fetched_epoch || end < w.offset {
                    got.diverging = Some((e, end));
                    return got;
                }
            }
            crate::replication::roles::on_follower_fetch(shard, &w.tp, node, w.offset);
            got.high_watermark = log.high_watermark();
            got.last_stable_offset = log.last_stable_offset();
            ReadUpTo::Replica
        }
        None if w.committed => ReadUpTo::Stable,
        None => ReadUpTo::HighWatermark,
    };
    match log.read_for_fetch(w.offset, w.max_bytes, up_to).await {
        Ok((r, aborted)) => {
            metrics::count(|c| {
                if r.from_cache {
                    c.fetch_cache_bytes += r.bytes as u64
                } else {
                    c.fetch_file_bytes += r.bytes as u64
                }
            });
            got.ends = r.next_offsets(w.offset);
            got.batches = r.into_chunks();
            got.aborted = aborted;
        }
        Err(e) => got.error = errors::storage(&e).code(),
    }
    got
}

/// What a long poll waits for on one partition: data past `offset` that its reader may read.
struct Waiting {
    tp: TopicPartition,
    offset: i64,
    reader: Reader,
}

#[derive(Clone, Copy)]
enum Reader {
    /// Up to what a replica may copy.
    Follower,
    /// Up to the high watermark.
    Uncommitted,
    /// Up to the last stable offset.
    Committed,
}

impl Waiting {
    fn of(w: &Want) -> Waiting {
        let reader = match (w.replica, w.committed) {
            (Some(_), _) => Reader::Follower,
            (None, true) => Reader::Committed,
            (None, false) => Reader::Uncommitted,
        };
        Waiting {
            tp: w.tp.clone(),
            offset: w.offset,
            reader,
        }
    }
}

/// Returns when any of the partitions has data past its fetch offset, or after `wait_ms`.
async fn wait_any(shard: &Rc<Shard>, by_owner: &BTreeMap<ShardId, Vec<Want>>, wait_ms: i64) {
    let calls: Vec<_> = by_owner
        .iter()
        .map(|(owner, wants)| {
            let wants: Vec<Waiting> = wants.iter().map(Waiting::of).collect();
            shard.invoke_on(*owner, move |s| wait_on_owner(s, wants, wait_ms))
        })
        .collect();
    let _ = futures::future::select_all(calls).await;
}

/// Waits for data past each offset: committed data for consumers (stable data for
/// read_committed ones), replica-readable data for followers.
async fn wait_on_owner(shard: Rc<Shard>, wants: Vec<Waiting>, wait_ms: i64) {
    let waits: Vec<LocalBoxFuture<'static, ()>> = wants
        .into_iter()
        .filter_map(|w| shard.log(&w.tp).map(|log| (log, w.offset, w.reader)))
        .map(|(log, offset, reader)| -> LocalBoxFuture<'static, ()> {
            Box::pin(async move {
                match reader {
                    Reader::Follower => log.wait_for_replica_data(offset).await,
                    Reader::Uncommitted => log.wait_for_data(offset).await,
                    Reader::Committed => log.wait_for_stable_data(offset).await,
                }
            })
        })
        .collect();
    let timer = glommio::timer::sleep(Duration::from_millis(wait_ms.max(0) as u64));
    if waits.is_empty() {
        timer.await;
        return;
    }
    futures::future::select(Box::pin(timer), futures::future::select_all(waits)).await;
}

/// Each partition's records, by topic and partition in response order.
type Records = Vec<Vec<Vec<Chunk>>>;

/// Cuts the data to `max_bytes` in request order; the response carries no records (they go
/// beside it, in place).
fn build_response(
    plan: Plan,
    mut got: BTreeMap<(usize, usize), Got>,
    max_bytes: usize,
    isolation_level: i8,
) -> (FetchResponse, Records) {
    let mut used = 0usize;
    let mut records: Records = Vec::with_capacity(plan.len());
    let responses = plan
        .into_iter()
        .enumerate()
        .map(|(ti, (name, topic_id, parts))| {
            let mut topic_records = Vec::with_capacity(parts.len());
            let partitions = parts
                .into_iter()
                .enumerate()
                .map(|(pi, (index, want))| {
                    let mut g = match &want {
                        Err(e) => Got::err(*e),
                        Ok(_) => got.remove(&(ti, pi)).unwrap_or_default(),
                    };
                    let ends = std::mem::take(&mut g.ends);
                    let (p, kept) = partition_data(index, g, &mut used, max_bytes, isolation_level);
                    count_served(&want, p.error_code, &kept, &ends);
                    topic_records.push(kept);
                    p
                })
                .collect();
            records.push(topic_records);
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(topic_id)
                .with_partitions(partitions)
        })
        .collect();
    (FetchResponse::default().with_responses(responses), records)
}

/// Adds what one partition's answer carries to this shard's metrics: bytes and offsets to a
/// consumer (or bytes to a follower), and its error code.
fn count_served(want: &Result<Want, ResponseError>, error: i16, kept: &[Chunk], ends: &[i64]) {
    metrics::request_error(ApiKey::Fetch as i16, error);
    let (Ok(w), Some(end)) = (want, kept.len().checked_sub(1).and_then(|i| ends.get(i))) else {
        return;
    };
    let bytes: u64 = kept.iter().map(|c| c.len() as u64).sum();
    if w.replica.is_some() {
        metrics::count(|c| c.replication_bytes_out += bytes);
    } else {
        metrics::count_topic(&w.tp.topic, |t| {
            t.bytes_out += bytes;
            t.messages_out += (end - w.offset).max(0) as u64;
        });
    }
}

/// The aborted transactions a read_committed consumer filters by (producer id, first offset).
fn aborted_transactions(aborted: &[crate::storage::AbortedTxn]) -> Vec<AbortedTransaction> {
    aborted
        .iter()
        .map(|t| {
            AbortedTransaction::default()
                .with_producer_id(kafka_protocol::messages::ProducerId(t.producer_id))
                .with_first_offset(t.first_offset)
        })
        .collect()
}

fn partition_data(
    index: i32,
    mut g: Got,
    used: &mut usize,
    max_bytes: usize,
    isolation_level: i8,
) -> (PartitionData, Vec<Chunk>) {
    let mut keep = Vec::new();
    let batches = std::mem::take(&mut g.batches);
    for b in batches {
        let first_data = *used == 0 && keep.is_empty();
        if !first_data && *used + b.len() > max_bytes {
            break;
        }
        *used += b.len();
        keep.push(b);
    }
    let diverging = match g.diverging {
        Some((epoch, end_offset)) => EpochEndOffset::default()
            .with_epoch(epoch)
            .with_end_offset(end_offset),
        None => EpochEndOffset::default(),
    };
    let p = PartitionData::default()
        .with_diverging_epoch(diverging)
        .with_partition_index(index)
        .with_error_code(g.error)
        .with_high_watermark(g.high_watermark)
        .with_last_stable_offset(g.last_stable_offset)
        .with_log_start_offset(g.log_start_offset)
        .with_aborted_transactions((isolation_level == 1).then(|| aborted_transactions(&g.aborted)))
        .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1));
    (p, keep)
}
