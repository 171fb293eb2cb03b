//! The follower fetcher: one task per (shard, leader broker), copying the leader's log into
//! this node's replicas with Kafka's Fetch (v12: replica id, current leader epoch, last fetched
//! epoch), many partitions per request.
//!
//! Kafka's protocol as followers speak it: a fetch's offset tells the leader how far this
//! replica holds the log, written (the next fetch goes out only after the previous response's
//! batches are written here: a replica counts a batch once its own write completed); a
//! response's diverging epoch makes this replica cut a tail the leader never had; the leader's
//! high watermark comes back in every response.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::link::Link;
use super::{Replicas, Role};
use crate::record::{self, Scan};
use crate::shard::Shard;
use crate::storage::PartitionLog;
use crate::types::{NodeId, TopicPartition};

const FETCH_VERSION: i16 = 12;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A fetcher with nothing to follow for this long ends (a new one starts when needed).
const IDLE_ROUNDS_MAX: u32 = 100;
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Starts the fetcher for `leader` on this shard unless it runs.
pub fn ensure(shard: &Rc<Shard>, leader: NodeId) {
    if !shard
        .service::<Replicas>()
        .fetchers
        .borrow_mut()
        .insert(leader)
    {
        return;
    }
    shard.spawn_background(run(shard.clone(), leader)).detach();
}

/// The partitions this shard follows `leader` for, with their logs and known epochs.
fn followed(shard: &Shard, leader: NodeId) -> Vec<(TopicPartition, Rc<PartitionLog>, i32)> {
    let replicas = shard.service::<Replicas>();
    let roles = replicas.roles.borrow();
    roles
        .iter()
        .filter_map(|(tp, role)| match role {
            Role::Follower {
                leader: l,
                leader_epoch,
            } if *l == leader => shard.log(tp).map(|log| (tp.clone(), log, *leader_epoch)),
            _ => None,
        })
        .collect()
}

fn still_following(shard: &Shard, tp: &TopicPartition, leader: NodeId, epoch: i32) -> bool {
    matches!(
        shard.service::<Replicas>().roles.borrow().get(tp),
        Some(Role::Follower { leader: l, leader_epoch: e }) if *l == leader && *e == epoch
    )
}

async fn run(shard: Rc<Shard>, leader: NodeId) {
    let backoff = Duration::from_millis(shard.config.cluster.replica_fetch_backoff_ms.max(50));
    let mut link: Option<Link> = None;
    let mut idle = 0u32;
    loop {
        if shard.is_shutting_down() {
            break;
        }
        let parts = followed(&shard, leader);
        if parts.is_empty() {
            idle += 1;
            if idle > IDLE_ROUNDS_MAX {
                break;
            }
            glommio::timer::sleep(IDLE_WAIT).await;
            continue;
        }
        idle = 0;
        if link.is_none() {
            link = connect(&shard, leader).await;
            if link.is_none() {
                glommio::timer::sleep(backoff).await;
                continue;
            }
        }
        let Some(l) = link.as_mut() else {
            continue;
        };
        let req = fetch_request(&shard, &parts);
        let wait = Duration::from_millis(shard.config.cluster.replica_fetch_wait_max_ms as u64);
        let answer = crate::metadata::raft::transport::within(
            wait + Duration::from_secs(10),
            l.request(&req, FETCH_VERSION),
        )
        .await;
        match answer {
            Some(Ok(resp)) => {
                if !handle_response(&shard, leader, &parts, resp).await {
                    glommio::timer::sleep(backoff).await;
                }
            }
            _ => {
                link = None;
                glommio::timer::sleep(backoff).await;
            }
        }
    }
    shard
        .service::<Replicas>()
        .fetchers
        .borrow_mut()
        .remove(&leader);
}

async fn connect(shard: &Shard, leader: NodeId) -> Option<Link> {
    let snap = shard.snapshot();
    let b = snap.brokers.get(&leader)?;
    let addr = format!("{}:{}", b.host, b.port);
    let client_id = format!("gregor-replica-{}", shard.config.node_id);
    match Link::to_broker(shard, &addr, &client_id, CONNECT_TIMEOUT).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::debug!(leader, %addr, error = %e, "cannot reach the leader");
            None
        }
    }
}

fn fetch_request(shard: &Shard, parts: &[(TopicPartition, Rc<PartitionLog>, i32)]) -> FetchRequest {
    let c = &shard.config.cluster;
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (tp, log, epoch) in parts {
        by_topic.entry(&tp.topic).or_default().push(
            FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(log.log_end_offset())
                .with_last_fetched_epoch(log.latest_epoch().unwrap_or(-1))
                .with_log_start_offset(log.log_start_offset())
                .with_partition_max_bytes(c.replica_fetch_max_bytes),
        );
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(shard.config.node_id))
        .with_max_wait_ms(c.replica_fetch_wait_max_ms)
        .with_min_bytes(1)
        .with_max_bytes(c.replica_fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// Applies one response; false when the leader said to back off (not leader, fenced epoch).
async fn handle_response(
    shard: &Rc<Shard>,
    leader: NodeId,
    parts: &[(TopicPartition, Rc<PartitionLog>, i32)],
    resp: kafka_protocol::messages::FetchResponse,
) -> bool {
    if resp.error_code != 0 {
        return false;
    }
    let mut healthy = true;
    let mut appended = Vec::new();
    for t in resp.responses {
        for p in t.partitions {
            let tp = TopicPartition::new(t.topic.as_str(), p.partition_index);
            let Some((_, log, epoch)) = parts.iter().find(|(x, _, _)| *x == tp) else {
                continue;
            };
            if !still_following(shard, &tp, leader, *epoch) {
                continue;
            }
            match apply_partition(shard, &tp, log, p).await {
                Ok(Some(hw)) => appended.push((log.clone(), hw)),
                Ok(None) => {}
                Err(()) => healthy = false,
            }
        }
    }
    // Our next fetch offsets must be durable here: wait for the writes before asking again.
    let waits = appended
        .iter()
        .map(|(log, _)| log.wait_written(log.log_end_offset()));
    let _ = futures::future::join_all(waits).await;
    for (log, hw) in appended {
        log.set_high_watermark(hw);
    }
    healthy
}

/// One partition's data: truncate, append, or note an error. Returns the leader's high
/// watermark to take once the appends are written.
async fn apply_partition(
    shard: &Rc<Shard>,
    tp: &TopicPartition,
    log: &Rc<PartitionLog>,
    p: PartitionData,
) -> Result<Option<i64>, ()> {
    match ResponseError::try_from_code(p.error_code) {
        None => {}
        Some(ResponseError::OffsetOutOfRange) => {
            // Below the leader's log start (retention moved it): start again there.
            if log.log_end_offset() < p.log_start_offset {
                let _ = log.reset_to(p.log_start_offset, shard.now_ms()).await;
                tracing::warn!(partition = %tp, start = p.log_start_offset, "behind the leader's log start");
            }
            return Err(());
        }
        Some(e) => {
            tracing::debug!(partition = %tp, error = ?e, "fetch from the leader refused");
            return Err(());
        }
    }
    if p.diverging_epoch.epoch >= 0 {
        // Kafka's rule: cut to where the leader's epoch ends, or where ours does if that is
        // earlier (our log may not know the leader's epoch at all).
        let (epoch, leader_end) = (p.diverging_epoch.epoch, p.diverging_epoch.end_offset);
        let (ours, our_end) = log.end_offset_for_epoch(epoch);
        let cut = if ours >= 0 {
            leader_end.min(our_end)
        } else {
            leader_end
        };
        tracing::info!(partition = %tp, epoch = p.diverging_epoch.epoch, offset = cut, "truncating to the leader's log");
        if let Err(e) = log.truncate_to(cut, shard.now_ms()).await {
            tracing::error!(partition = %tp, error = %e, "truncation failed");
            return Err(());
        }
        // Producer state follows the log: the log rebuilt it as it reopened.
        return Ok(None);
    }
    let records = p.records.unwrap_or_default();
    if !append_batches(shard, tp, log, records) {
        return Err(());
    }
    // DeleteRecords on the leader moved its log start: follow it.
    if let Err(e) = log.follow_log_start(p.log_start_offset).await {
        tracing::warn!(partition = %tp, error = %e, "cannot take the leader's log start");
    }
    Ok(Some(p.high_watermark))
}

/// Appends the whole batches of `records` that start at or after this log's end.
fn append_batches(shard: &Shard, tp: &TopicPartition, log: &PartitionLog, records: Bytes) -> bool {
    let mut at = 0;
    while at < records.len() {
        let h = match record::scan(&records[at..]) {
            Scan::Batch(h) => h,
            Scan::End | Scan::Incomplete { .. } => break,
            Scan::Corrupt(e) => {
                tracing::warn!(partition = %tp, error = %e, "corrupt batch from the leader");
                return false;
            }
        };
        let n = h.total_bytes();
        let batch = records.slice(at..at + n);
        at += n;
        if h.last_offset() < log.log_end_offset() {
            continue;
        }
        // Producer state, markers included, is kept by the log as it appends.
        if let Err(e) = log.append_replicated(batch, shard.now_ms()) {
            if e.is_no_space() {
                // The log said so once; the fetcher retries every backoff until space returns.
                tracing::debug!(partition = %tp, error = %e, "cannot append the leader's batch");
            } else {
                tracing::warn!(partition = %tp, error = %e, "cannot append the leader's batch");
            }
            return false;
        }
        crate::metrics::count(|c| c.replication_bytes_in += n as u64);
    }
    true
}
