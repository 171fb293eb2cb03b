//! The group coordinator of one shard: the groups whose `__consumer_offsets` partition this
//! shard owns, their committed offsets, and the requests parked until a rebalance step ends.
//!
//! Every function here runs on the owning shard (handlers reach it with `invoke_on`). State
//! changes happen synchronously under a short `RefCell` borrow; writes to `__consumer_offsets`
//! happen after the borrow is released, and an offset commit is answered only once its record
//! is written, so a committed offset survives a crash.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::Compression;

use super::state::{
    Effect, Group, GroupState, JoinReply, JoinRequest, JoinResult, Limits, SyncReply, SyncResult,
};
use super::store::{self, CommittedOffset, StoreRecord};
use super::OFFSETS_TOPIC;
use crate::client::batch::{
    decode_batch, encode_batch, encode_transactional_batch, ProducerRecord,
};
use crate::config::Config;
use crate::shard::Shard;
use crate::storage::StorageError;
use crate::types::TopicPartition;

pub mod consumer;
pub mod share;
mod txn_offsets;

use txn_offsets::{control_is_commit, replay_txn_offset};
pub use txn_offsets::{transaction_completed, txn_commit, TxnCommitter};

/// Per-shard coordinator state. Lives on its shard; mutated only there.
#[derive(Default)]
pub struct Coordinator {
    groups: HashMap<String, Group>,
    /// Groups of the consumer protocol (KIP-848). A group id is in `groups` or here, not both.
    consumer_groups: HashMap<String, super::consumer::ConsumerGroup>,
    /// Share groups (KIP-932), in memory only (see [`share`]). A group id names one type.
    share_groups: HashMap<String, super::share::ShareGroup>,
    /// The stored state of each share group's share-partitions, by (topic id, partition):
    /// this coordinator keeps it for the partitions' leaders (see [`share`]).
    share_states: HashMap<String, share::States>,
    /// The newest leader epoch that stored each share-partition's state (in memory: after a
    /// coordinator move, the first leader to store sets it again).
    share_leader_epochs: HashMap<(String, uuid::Uuid, i32), i32>,
    offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    joins: HashMap<(String, String), oneshot::Sender<JoinResult>>,
    syncs: HashMap<(String, String), oneshot::Sender<SyncResult>>,
    /// `__consumer_offsets` partitions this node leads whose groups are loaded here.
    loaded: std::collections::HashSet<i32>,
    /// Offsets committed inside transactions that have not ended (TxnOffsetCommit): producer
    /// id -> group -> offsets. They become committed offsets when the commit marker is
    /// written, and go when the abort marker is.
    pending_txn: HashMap<i64, HashMap<String, GroupOffsets>>,
}

/// A group's offsets by (topic, partition).
type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// The coordinator state of `shard` (its [`Shard::service`]).
fn coordinator(shard: &Shard) -> Rc<RefCell<Coordinator>> {
    shard.service::<RefCell<Coordinator>>()
}

/// A record of `__consumer_offsets`: key, and value or None for a tombstone.
type KeyValue = (Bytes, Option<Bytes>);

/// One partition's commit, as OffsetCommit carries it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct Described {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// member id, instance id, client id, host, metadata, assignment
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

fn limits(config: &Config) -> Limits {
    Limits {
        initial_rebalance_delay_ms: config.groups.initial_rebalance_delay_ms,
        min_session_timeout_ms: config.groups.min_session_timeout_ms,
        max_session_timeout_ms: config.groups.max_session_timeout_ms,
        max_size: config.log.bounds.group_max_size,
    }
}

/// The `__consumer_offsets` partition that holds a group.
pub fn offsets_partition(config: &Config, group: &str) -> TopicPartition {
    let p = store::partition_for(group, config.groups.offsets_topic_num_partitions);
    TopicPartition::new(OFFSETS_TOPIC, p)
}

impl Coordinator {
    /// Hands answers to the requests they were parked for; returns whether to persist.
    fn apply(&mut self, group: &str, effects: Vec<Effect>) -> bool {
        let mut persist = false;
        for e in effects {
            match e {
                Effect::Join { member_id, result } => {
                    if let Some(tx) = self.joins.remove(&(group.to_string(), member_id)) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync { member_id, result } => {
                    if let Some(tx) = self.syncs.remove(&(group.to_string(), member_id)) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Persist => persist = true,
            }
        }
        persist
    }

    /// Drops the offsets of empty groups older than `retention_ms` (counted from the later of
    /// the commit and the moment the group became empty), then empty groups left with no
    /// offsets and no member id handed out (as Kafka's `cleanupGroupMetadata`, at each check:
    /// a group a client named in a JoinGroup and never used does not stay for the whole
    /// retention); returns the tombstones to write, per group.
    fn expire(&mut self, now: i64, retention_ms: i64) -> Vec<(String, Vec<KeyValue>)> {
        let mut empty: Vec<(String, i64, bool)> = self
            .groups
            .values()
            .filter(|g| g.state == GroupState::Empty)
            .map(|g| (g.id.clone(), g.state_since_ms, g.pending_members() == 0))
            .collect();
        empty.extend(
            self.consumer_groups
                .values()
                .filter(|g| g.is_empty())
                .map(|g| (g.id.clone(), g.empty_since_ms, true)),
        );
        let mut by_group = Vec::new();
        for (id, since, no_pending) in empty {
            let mut records = Vec::new();
            if let Some(o) = self.offsets.get_mut(&id) {
                o.retain(|(t, p), v| {
                    let expired = now - v.commit_ms.max(since) >= retention_ms;
                    if expired {
                        records.push((store::offset_key(&id, t, *p), None));
                    }
                    !expired
                });
            }
            if self.offsets.get(&id).is_none_or(|o| o.is_empty()) && no_pending {
                self.offsets.remove(&id);
                if let Some(g) = self.consumer_groups.remove(&id) {
                    records.extend(consumer::encode(&id, &g.tombstones()));
                } else {
                    self.groups.remove(&id);
                    records.push((store::group_key(&id), None));
                }
            }
            if !records.is_empty() {
                by_group.push((id, records));
            }
        }
        by_group
    }

    /// Answers every JoinGroup and SyncGroup parked on `group` with `error`.
    fn fail_parked(&mut self, group: &str, error: ResponseError) {
        let joins: Vec<_> = self
            .joins
            .keys()
            .filter(|(g, _)| g == group)
            .cloned()
            .collect();
        for k in joins {
            if let Some(tx) = self.joins.remove(&k) {
                let _ = tx.send(JoinResult::error(error, &k.1));
            }
        }
        let syncs: Vec<_> = self
            .syncs
            .keys()
            .filter(|(g, _)| g == group)
            .cloned()
            .collect();
        for k in syncs {
            if let Some(tx) = self.syncs.remove(&k) {
                let _ = tx.send(SyncResult::error(error));
            }
        }
    }

    fn group_value(&self, group: &str) -> Option<Bytes> {
        self.groups
            .get(group)
            .filter(|g| g.state != GroupState::Dead)
            .map(store::group_value)
    }
}

/// Why this shard cannot coordinate `group` now: another broker leads its partition
/// (NOT_COORDINATOR, the client looks again), or its groups are still loading.
fn unavailable(shard: &Shard, group: &str) -> Option<ResponseError> {
    let tp = offsets_partition(&shard.config, group);
    if crate::replication::leader_epoch_of(shard, &tp).is_none() {
        return Some(ResponseError::NotCoordinator);
    }
    if !coordinator(shard).borrow().loaded.contains(&tp.partition) {
        return Some(ResponseError::CoordinatorLoadInProgress);
    }
    None
}

/// Appends records (key, value; None is a tombstone) to a `__consumer_offsets` partition and
/// waits until they are written.
async fn append(
    shard: &Shard,
    tp: &TopicPartition,
    records: Vec<KeyValue>,
) -> Result<(), StorageError> {
    append_as(shard, tp, records, None).await
}

/// [`append`], in a transactional batch of `producer` (id, epoch) when given.
async fn append_as(
    shard: &Shard,
    tp: &TopicPartition,
    records: Vec<KeyValue>,
    producer: Option<(i64, i16)>,
) -> Result<(), StorageError> {
    let Some(log) = shard.log(tp) else {
        return Err(StorageError::Closed(tp.dir_name().into()));
    };
    let records: Vec<ProducerRecord> = records
        .into_iter()
        .map(|(k, v)| ProducerRecord {
            key: Some(k),
            value: v,
            headers: Vec::new(),
        })
        .collect();
    let batch = match producer {
        None => encode_batch(&records, shard.now_ms(), Compression::None),
        Some((id, epoch)) => encode_transactional_batch(&records, shard.now_ms(), id, epoch),
    }
    .map_err(|e| StorageError::Corrupt {
        path: tp.dir_name().into(),
        position: 0,
        why: e.to_string(),
    })?;
    let info = log.append(batch.clone(), shard.now_ms())?;
    let epoch = log.leader_epoch();
    // Committed (replicated to the ISR), as Kafka writes group records with acks=all; a
    // coordinator that loses the partition meanwhile does not say it was.
    log.wait_committed(info.last_offset + 1, epoch).await
}

async fn persist_group(shard: &Shard, group: &str) {
    let value = coordinator(shard).borrow().group_value(group);
    let tp = offsets_partition(&shard.config, group);
    if let Err(e) = append(shard, &tp, vec![(store::group_key(group), value)]).await {
        tracing::error!(%group, error = %e, "persisting group metadata failed");
    }
}

/// JoinGroup: answered at once, or parked until the rebalance's join phase completes.
pub async fn join(shard: Rc<Shard>, group_id: String, req: JoinRequest) -> JoinResult {
    if let Some(e) = unavailable(&shard, &group_id) {
        return JoinResult::error(e, &req.member_id);
    }
    if coordinator(&shard)
        .borrow()
        .share_groups
        .contains_key(&group_id)
    {
        return JoinResult::error(ResponseError::InconsistentGroupProtocol, &req.member_id);
    }
    let in_consumer_group = coordinator(&shard)
        .borrow()
        .consumer_groups
        .get(&group_id)
        .is_some_and(|g| !g.is_empty());
    if in_consumer_group {
        return consumer::classic_join(shard, group_id, req).await;
    }
    let now = shard.now_ms();
    let lim = limits(&shard.config);
    let (reply, rx, persist, converted) = {
        let groups = coordinator(&shard);
        let mut c = groups.borrow_mut();
        // An empty consumer group becomes a classic group (its offsets stay).
        let mut converted = Vec::new();
        if let Some(cg) = c.consumer_groups.get(&group_id) {
            converted = consumer::encode(&group_id, &cg.tombstones());
            c.consumer_groups.remove(&group_id);
        }
        let g = c
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, now));
        if g.state == GroupState::Dead {
            *g = Group::new(&group_id, now);
        }
        let (reply, effects) = g.join(req, &lim, now);
        let rx = match &reply {
            JoinReply::Parked(member) => {
                let (tx, rx) = oneshot::channel();
                c.joins.insert((group_id.clone(), member.clone()), tx);
                Some(rx)
            }
            JoinReply::Now(_) => None,
        };
        let persist = c.apply(&group_id, effects);
        (reply, rx, persist, converted)
    };
    if !converted.is_empty() {
        let tp = offsets_partition(&shard.config, &group_id);
        if let Err(e) = append(&shard, &tp, converted).await {
            tracing::error!(group = %group_id, error = %e, "writing consumer group tombstones failed");
        }
    }
    if persist {
        persist_group(&shard, &group_id).await;
    }
    match (reply, rx) {
        (JoinReply::Now(r), _) => r,
        (JoinReply::Parked(member), Some(rx)) => rx
            .await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::RebalanceInProgress, &member)),
        (JoinReply::Parked(member), None) => {
            JoinResult::error(ResponseError::UnknownServerError, &member)
        }
    }
}

/// SyncGroup: the leader's assignment ends the rebalance; the others wait for it.
pub async fn sync(
    shard: Rc<Shard>,
    group_id: String,
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncResult {
    if let Some(e) = unavailable(&shard, &group_id) {
        return SyncResult::error(e);
    }
    if coordinator(&shard)
        .borrow()
        .consumer_groups
        .contains_key(&group_id)
    {
        return consumer::classic_sync(
            &shard,
            &group_id,
            &member_id,
            instance_id.as_deref(),
            generation,
        );
    }
    let now = shard.now_ms();
    let (reply, rx, persist) = {
        let groups = coordinator(&shard);
        let mut c = groups.borrow_mut();
        let Some(g) = c.groups.get_mut(&group_id) else {
            return SyncResult::error(ResponseError::UnknownMemberId);
        };
        let (reply, effects) = g.sync(
            &member_id,
            instance_id.as_deref(),
            generation,
            assignments,
            now,
        );
        let rx = (reply == SyncReply::Parked).then(|| {
            let (tx, rx) = oneshot::channel();
            c.syncs.insert((group_id.clone(), member_id.clone()), tx);
            rx
        });
        let persist = c.apply(&group_id, effects);
        (reply, rx, persist)
    };
    if persist {
        persist_group(&shard, &group_id).await;
    }
    match (reply, rx) {
        (SyncReply::Now(r), _) => r,
        (SyncReply::Parked, Some(rx)) => rx
            .await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress)),
        (SyncReply::Parked, None) => SyncResult::error(ResponseError::UnknownServerError),
    }
}

pub fn heartbeat(
    shard: &Shard,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Option<ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Some(e);
    }
    if coordinator(shard)
        .borrow()
        .consumer_groups
        .contains_key(group_id)
    {
        return consumer::classic_heartbeat(shard, group_id, member_id, instance_id, generation);
    }
    let now = shard.now_ms();
    let groups = coordinator(shard);
    let mut c = groups.borrow_mut();
    match c.groups.get_mut(group_id) {
        None => Some(ResponseError::UnknownMemberId),
        Some(g) => g.heartbeat(member_id, instance_id, generation, now).err(),
    }
}

/// LeaveGroup for each (member id, instance id); one error (or none) per member.
pub async fn leave(
    shard: Rc<Shard>,
    group_id: String,
    members: Vec<(String, Option<String>)>,
) -> Vec<Option<ResponseError>> {
    if let Some(e) = unavailable(&shard, &group_id) {
        return vec![Some(e); members.len()];
    }
    if coordinator(&shard)
        .borrow()
        .consumer_groups
        .contains_key(&group_id)
    {
        return consumer::classic_leave(shard, group_id, members).await;
    }
    let now = shard.now_ms();
    let lim = limits(&shard.config);
    let (results, persist) = {
        let groups = coordinator(&shard);
        let mut c = groups.borrow_mut();
        let mut all = Vec::new();
        let results: Vec<Option<ResponseError>> = match c.groups.get_mut(&group_id) {
            None => vec![Some(ResponseError::UnknownMemberId); members.len()],
            Some(g) => members
                .iter()
                .map(|(m, i)| {
                    let (r, effects) = g.leave(m, i.as_deref(), &lim, now);
                    all.extend(effects);
                    r.err()
                })
                .collect(),
        };
        let persist = c.apply(&group_id, all);
        (results, persist)
    };
    if persist {
        persist_group(&shard, &group_id).await;
    }
    results
}

/// OffsetCommit: checks the member and generation as Kafka does, writes the offsets, and
/// answers once they are durable. Returns one error (or none) per commit.
pub async fn commit(
    shard: Rc<Shard>,
    group_id: String,
    generation: i32,
    member_id: String,
    instance_id: Option<String>,
    commits: Vec<Commit>,
) -> Vec<Option<ResponseError>> {
    let all = |e: ResponseError| vec![Some(e); commits.len()];
    if let Some(e) = unavailable(&shard, &group_id) {
        return all(e);
    }
    let now = shard.now_ms();
    {
        let groups = coordinator(&shard);
        let mut c = groups.borrow_mut();
        if let Err(e) = check_commit(
            &mut c,
            &group_id,
            generation,
            &member_id,
            instance_id.as_deref(),
            now,
        ) {
            return all(e);
        }
    }
    let snap = shard.snapshot();
    let max_meta = shard.config.groups.offset_metadata_max_bytes;
    let mut results = Vec::with_capacity(commits.len());
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    for c in commits {
        let known = snap
            .topic(&c.topic)
            .is_some_and(|t| c.partition >= 0 && c.partition < t.partitions);
        if !known {
            results.push(Some(ResponseError::UnknownTopicOrPartition));
        } else if c.metadata.len() > max_meta {
            results.push(Some(ResponseError::OffsetMetadataTooLarge));
        } else {
            let value = CommittedOffset {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata.clone(),
                commit_ms: now,
            };
            records.push((
                store::offset_key(&group_id, &c.topic, c.partition),
                Some(store::offset_value(&value)),
            ));
            accepted.push((results.len(), (c.topic, c.partition), value));
            results.push(None);
        }
    }
    if records.is_empty() {
        return results;
    }
    let tp = offsets_partition(&shard.config, &group_id);
    if let Err(e) = append(&shard, &tp, records).await {
        tracing::error!(group = %group_id, error = %e, "writing offsets failed");
        for (i, _, _) in &accepted {
            results[*i] = Some(ResponseError::CoordinatorNotAvailable);
        }
        return results;
    }
    let groups = coordinator(&shard);
    let mut c = groups.borrow_mut();
    let offsets = c.offsets.entry(group_id).or_default();
    for (_, key, value) in accepted {
        offsets.insert(key, value);
    }
    results
}

fn check_commit(
    c: &mut Coordinator,
    group_id: &str,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    now: i64,
) -> Result<(), ResponseError> {
    if c.share_groups.contains_key(group_id) {
        return Err(ResponseError::GroupIdNotFound);
    }
    if let Some(g) = c.consumer_groups.get(group_id) {
        // Kafka's rule for consumer groups: a commit from outside the group (generation -1)
        // only while it is empty; a member's only at its current epoch.
        if generation < 0 && g.is_empty() {
            return Ok(());
        }
        return g
            .check_member_epoch(member_id, generation)
            .map_err(epoch_error);
    }
    let Some(g) = c.groups.get(group_id) else {
        if generation < 0 {
            // A commit outside group management (simple consumer, offset reset tools).
            c.groups
                .insert(group_id.to_string(), Group::new(group_id, now));
            return Ok(());
        }
        return Err(ResponseError::IllegalGeneration);
    };
    if generation < 0 && g.state == GroupState::Empty {
        return Ok(());
    }
    if let Some(iid) = instance_id {
        if g.members
            .values()
            .any(|m| m.instance_id.as_deref() == Some(iid) && m.id != member_id)
        {
            return Err(ResponseError::FencedInstanceId);
        }
    }
    if !g.members.contains_key(member_id) {
        return Err(ResponseError::UnknownMemberId);
    }
    if generation != g.generation {
        return Err(ResponseError::IllegalGeneration);
    }
    // Only a current member learns that it must finish the rebalance first (Kafka's order).
    if g.state == GroupState::CompletingRebalance {
        return Err(ResponseError::RebalanceInProgress);
    }
    Ok(())
}

fn epoch_error(e: super::consumer::EpochCheck) -> ResponseError {
    match e {
        super::consumer::EpochCheck::UnknownMember => ResponseError::UnknownMemberId,
        super::consumer::EpochCheck::Stale => ResponseError::StaleMemberEpoch,
        super::consumer::EpochCheck::IllegalGeneration => ResponseError::IllegalGeneration,
    }
}

/// Committed offsets of a group: of the partitions asked for (-1 where none), or all of them.
/// With `require_stable`, a partition with an offset pending in a transaction answers
/// UNSTABLE_OFFSET_COMMIT instead (Kafka's answer to read_committed consumers).
///
/// `member` (OffsetFetch v9: member id and epoch) is checked against a consumer group as
/// Kafka does: an unknown member or another epoch is refused; without a member id, anyone
/// may read.
pub fn fetch_offsets(
    shard: &Shard,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
    member: Option<(String, i32)>,
) -> Result<Vec<FetchedOffset>, ResponseError> {
    if let Some((member_id, epoch)) = member {
        let groups = coordinator(shard);
        let c = groups.borrow();
        if let Some(g) = c.consumer_groups.get(group_id) {
            g.check_member_epoch(&member_id, epoch)
                .map_err(epoch_error)?;
        }
    }
    let rows = fetch_committed(shard, group_id, wanted)?;
    let groups = coordinator(shard);
    let c = groups.borrow();
    Ok(rows
        .into_iter()
        .map(|(t, p, v)| {
            let unstable = require_stable && c.has_pending(group_id, &t, p);
            let v = if unstable {
                Err(ResponseError::UnstableOffsetCommit)
            } else {
                Ok(v)
            };
            (t, p, v)
        })
        .collect())
}

/// A partition's committed offset as OffsetFetch reports it (or its error).
pub type FetchedOffset = (String, i32, Result<Option<CommittedOffset>, ResponseError>);

fn fetch_committed(
    shard: &Shard,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Err(e);
    }
    let groups = coordinator(shard);
    let c = groups.borrow();
    let offsets = c.offsets.get(group_id);
    Ok(match wanted {
        Some(topics) => topics
            .into_iter()
            .flat_map(|(t, parts)| {
                parts.into_iter().map(move |p| {
                    let v = offsets.and_then(|o| o.get(&(t.clone(), p))).cloned();
                    (t.clone(), p, v)
                })
            })
            .collect(),
        None => offsets
            .map(|o| {
                o.iter()
                    .map(|((t, p), v)| (t.clone(), *p, Some(v.clone())))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

pub fn describe(shard: &Shard, group_id: &str) -> Result<Described, ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Err(e);
    }
    let groups = coordinator(shard);
    let c = groups.borrow();
    if c.consumer_groups.contains_key(group_id) || c.share_groups.contains_key(group_id) {
        // DescribeGroups describes classic groups; ConsumerGroupDescribe and
        // ShareGroupDescribe describe these.
        return Err(ResponseError::GroupIdNotFound);
    }
    let Some(g) = c.groups.get(group_id) else {
        return Ok(Described {
            state: GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        });
    };
    let protocol = g.protocol.clone().unwrap_or_default();
    let stable = g.state == GroupState::Stable;
    Ok(Described {
        state: g.state.name(),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: if stable {
            protocol.clone()
        } else {
            String::new()
        },
        members: g
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                )
            })
            .collect(),
    })
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic", "consumer" or "share" (ListGroups v5).
    pub group_type: &'static str,
}

/// Every group on this shard.
pub fn list(shard: &Shard) -> Vec<Listed> {
    let groups = coordinator(shard);
    let c = groups.borrow();
    let classic = c
        .groups
        .values()
        .filter(|g| g.state != GroupState::Dead)
        .map(|g| Listed {
            id: g.id.clone(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            state: g.state.name(),
            group_type: "classic",
        });
    let consumer = c.consumer_groups.values().map(|g| Listed {
        id: g.id.clone(),
        protocol_type: "consumer".to_string(),
        state: super::consumer::state_name(g),
        group_type: "consumer",
    });
    let share = c.share_groups.values().map(|g| Listed {
        id: g.id.clone(),
        protocol_type: "share".to_string(),
        state: g.state(),
        group_type: "share",
    });
    classic.chain(consumer).chain(share).collect()
}

/// A group as the metrics report it.
#[derive(Debug, Clone)]
pub struct GroupReport {
    pub id: String,
    /// Kafka's state name; "Empty" for a group that only has committed offsets.
    pub state: &'static str,
    /// The generation: how many rebalances the group has completed.
    pub generation: i32,
    pub members: usize,
    /// Committed offsets: topic, partition, offset.
    pub offsets: Vec<(String, i32, i64)>,
}

/// Every group this shard coordinates, with its committed offsets.
pub fn report(shard: &Shard) -> Vec<GroupReport> {
    let groups = coordinator(shard);
    let c = groups.borrow();
    let mut out: BTreeMap<&str, GroupReport> = BTreeMap::new();
    for g in c.groups.values().filter(|g| g.state != GroupState::Dead) {
        out.insert(
            &g.id,
            GroupReport {
                id: g.id.clone(),
                state: g.state.name(),
                generation: g.generation,
                members: g.members.len(),
                offsets: Vec::new(),
            },
        );
    }
    for g in c.consumer_groups.values() {
        out.insert(
            &g.id,
            GroupReport {
                id: g.id.clone(),
                state: super::consumer::state_name(g),
                generation: g.epoch,
                members: g.members.len(),
                offsets: Vec::new(),
            },
        );
    }
    for (id, offsets) in &c.offsets {
        let r = out.entry(id).or_insert_with(|| GroupReport {
            id: id.clone(),
            state: GroupState::Empty.name(),
            generation: 0,
            members: 0,
            offsets: Vec::new(),
        });
        r.offsets = offsets
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, o.offset))
            .collect();
    }
    out.into_values().collect()
}

/// DeleteGroups for one group: only an empty group goes, with its offsets.
pub async fn delete_group(shard: Rc<Shard>, group_id: String) -> Option<ResponseError> {
    if let Some(e) = unavailable(&shard, &group_id) {
        return Some(e);
    }
    if let Some(r) = share::delete(&shard, &group_id).await {
        return r.err();
    }
    let mut group_records = vec![(store::group_key(&group_id), None)];
    let keys = {
        let groups = coordinator(&shard);
        let mut c = groups.borrow_mut();
        if let Some(g) = c.consumer_groups.get(&group_id) {
            if !g.is_empty() {
                return Some(ResponseError::NonEmptyGroup);
            }
            group_records = consumer::encode(&group_id, &g.tombstones());
            c.consumer_groups.remove(&group_id);
            c.groups.remove(&group_id);
            let offsets = c.offsets.remove(&group_id).unwrap_or_default();
            offsets.into_keys().collect::<Vec<_>>()
        } else {
            match c.groups.get_mut(&group_id) {
                None => return Some(ResponseError::GroupIdNotFound),
                Some(g) if !g.is_empty() => return Some(ResponseError::NonEmptyGroup),
                Some(g) => g.mark_dead(shard.now_ms()),
            }
            c.groups.remove(&group_id);
            let offsets = c.offsets.remove(&group_id).unwrap_or_default();
            offsets.into_keys().collect::<Vec<_>>()
        }
    };
    let mut records: Vec<KeyValue> = keys
        .iter()
        .map(|(t, p)| (store::offset_key(&group_id, t, *p), None))
        .collect();
    records.extend(group_records);
    let tp = offsets_partition(&shard.config, &group_id);
    match append(&shard, &tp, records).await {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(group = %group_id, error = %e, "writing group tombstones failed");
            Some(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// OffsetDelete: removes committed offsets of topics the group does not subscribe to.
pub async fn delete_offsets(
    shard: Rc<Shard>,
    group_id: String,
    topics: Vec<(String, Vec<i32>)>,
) -> Result<Vec<(String, i32, Option<ResponseError>)>, ResponseError> {
    if let Some(e) = unavailable(&shard, &group_id) {
        return Err(e);
    }
    let mut out = Vec::new();
    let mut records = Vec::new();
    {
        let groups = coordinator(&shard);
        let mut c = groups.borrow_mut();
        let subscribed: Vec<bool> = if let Some(g) = c.consumer_groups.get(&group_id) {
            let active = !g.is_empty();
            topics
                .iter()
                .map(|(t, _)| active && g.subscribes_to(t))
                .collect()
        } else {
            let Some(g) = c.groups.get(&group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            let active = !g.is_empty();
            topics
                .iter()
                .map(|(t, _)| active && g.subscribes_to(t))
                .collect()
        };
        let offsets = c.offsets.entry(group_id.clone()).or_default();
        for ((topic, parts), subscribed) in topics.into_iter().zip(subscribed) {
            for p in parts {
                if subscribed {
                    out.push((
                        topic.clone(),
                        p,
                        Some(ResponseError::GroupSubscribedToTopic),
                    ));
                    continue;
                }
                if offsets.remove(&(topic.clone(), p)).is_some() {
                    records.push((store::offset_key(&group_id, &topic, p), None));
                }
                out.push((topic.clone(), p, None));
            }
        }
    }
    if !records.is_empty() {
        let tp = offsets_partition(&shard.config, &group_id);
        if let Err(e) = append(&shard, &tp, records).await {
            tracing::error!(group = %group_id, error = %e, "writing offset tombstones failed");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
    }
    Ok(out)
}

/// This node now leads `__consumer_offsets` partition `p`: replays it into the groups and
/// offsets it holds (Kafka's coordinator load on becoming leader). Offsets written inside a
/// transaction stay pending until the transaction's marker, if the log has one yet.
pub async fn load_partition(shard: Rc<Shard>, p: i32) {
    let tp = TopicPartition::new(OFFSETS_TOPIC, p);
    let Some(log) = shard.log(&tp) else {
        return;
    };
    let mut loaded_records = 0usize;
    // Everything in the new leader's log counts, not only what is below its high watermark
    // (which lags the old leader's until followers report in): a leader never cuts its log,
    // so what it holds commits as the followers catch up. Kafka's loader reads to the end too.
    let replayed = log
        .replay_to_end(|h, batch| match decode_batch(batch) {
            Ok(records) if h.is_control() => {
                for r in records {
                    if let Some(commit) = r.key.as_ref().and_then(control_is_commit) {
                        let n = shard.config.groups.offsets_topic_num_partitions;
                        coordinator(&shard).borrow_mut().end_transaction(
                            h.producer_id,
                            commit,
                            |g| store::partition_for(g, n) == p,
                        );
                    }
                }
            }
            Ok(records) if h.is_transactional() => {
                for r in records {
                    loaded_records += 1;
                    replay_txn_offset(&shard, h.producer_id, r.key, r.value);
                }
            }
            Ok(records) => {
                for r in records {
                    loaded_records += 1;
                    replay(&shard, r.key, r.value);
                }
            }
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "skipping undecodable batch")
            }
        })
        .await;
    if let Err(e) = replayed {
        tracing::error!(partition = %tp, error = %e, "loading groups stopped");
    }
    // Still the leader after the awaits? Then its groups are served from now on.
    if crate::replication::leader_epoch_of(&shard, &tp).is_some() {
        consumer::start_timers(&shard, p);
        coordinator(&shard).borrow_mut().loaded.insert(p);
    }
    if loaded_records > 0 {
        tracing::info!(partition = %tp, records = loaded_records, "loaded consumer groups");
    }
}

/// This node no longer leads partition `p`: its groups go (their coordinator moved), and
/// requests parked on them are told to find it again.
pub fn unload_partition(shard: &Shard, p: i32) {
    let groups = coordinator(shard);
    let mut c = groups.borrow_mut();
    if !c.loaded.remove(&p) {
        return;
    }
    let on_p =
        |g: &String| store::partition_for(g, shard.config.groups.offsets_topic_num_partitions) == p;
    c.groups.retain(|g, _| !on_p(g));
    c.consumer_groups.retain(|g, _| !on_p(g));
    c.share_groups.retain(|g, _| !on_p(g));
    c.share_states.retain(|g, _| !on_p(g));
    c.share_leader_epochs.retain(|(g, _, _), _| !on_p(g));
    c.offsets.retain(|g, _| !on_p(g));
    for by_group in c.pending_txn.values_mut() {
        by_group.retain(|g, _| !on_p(g));
    }
    c.pending_txn.retain(|_, by_group| !by_group.is_empty());
    let parked: std::collections::BTreeSet<String> = c
        .joins
        .keys()
        .chain(c.syncs.keys())
        .map(|(g, _)| g.clone())
        .filter(|g| on_p(g))
        .collect();
    for g in parked {
        c.fail_parked(&g, ResponseError::NotCoordinator);
    }
    tracing::info!(partition = p, "unloaded consumer groups");
}

fn replay(shard: &Shard, key: Option<Bytes>, value: Option<Bytes>) {
    let now = shard.now_ms();
    let decoded = store::decode(key, value);
    if let Ok(StoreRecord::Consumer { group, record }) = decoded {
        consumer::replay(shard, group, record);
        return;
    }
    let groups = coordinator(shard);
    let mut c = groups.borrow_mut();
    match decoded {
        Ok(StoreRecord::Consumer { .. }) => {}
        Ok(StoreRecord::Offset {
            group,
            topic,
            partition,
            value: Some(v),
        }) => {
            if !c.consumer_groups.contains_key(&group) {
                c.groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now));
            }
            c.offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), v);
        }
        Ok(StoreRecord::Offset {
            group,
            topic,
            partition,
            value: None,
        }) => {
            if let Some(o) = c.offsets.get_mut(&group) {
                o.remove(&(topic, partition));
            }
        }
        Ok(StoreRecord::Group {
            group,
            value: Some(v),
        }) => {
            let g = Group::restore(
                &group,
                v.generation,
                (!v.protocol_type.is_empty()).then_some(v.protocol_type),
                v.protocol,
                v.leader,
                v.members,
                now,
            );
            c.groups.insert(group, g);
        }
        Ok(StoreRecord::Group { group, value: None }) => {
            // A classic group converted to a consumer group keeps its offsets.
            if c.groups.remove(&group).is_some() && !c.consumer_groups.contains_key(&group) {
                c.offsets.remove(&group);
            }
        }
        Ok(StoreRecord::ShareState {
            group,
            topic_id,
            partition,
            value,
        }) => {
            let states = c.share_states.entry(group.clone()).or_default();
            match value {
                Some(v) => {
                    states.insert((topic_id, partition), v);
                }
                None => {
                    states.remove(&(topic_id, partition));
                }
            }
            if states.is_empty() {
                c.share_states.remove(&group);
            }
        }
        Err(e) => tracing::warn!(error = %e, "skipping record"),
    }
}

/// How often group timers (session expiry, join deadlines) are checked.
const TICK: Duration = Duration::from_millis(100);

/// Drives the groups' timers and the expiry of offsets of empty groups.
pub async fn run_timers(shard: Rc<Shard>) {
    let mut last_expiry = shard.now_ms();
    loop {
        glommio::timer::sleep(TICK).await;
        if coordinator(&shard).borrow().loaded.is_empty() {
            continue;
        }
        let now = shard.now_ms();
        let lim = limits(&shard.config);
        let to_persist: Vec<String> = {
            let groups = coordinator(&shard);
            let mut c = groups.borrow_mut();
            let ids: Vec<String> = c.groups.keys().cloned().collect();
            ids.into_iter()
                .filter(|id| {
                    let effects = c
                        .groups
                        .get_mut(id)
                        .map(|g| g.tick(&lim, now))
                        .unwrap_or_default();
                    c.apply(id, effects)
                })
                .collect()
        };
        for id in to_persist {
            persist_group(&shard, &id).await;
        }
        consumer::tick(&shard, now).await;
        share::tick(&shard, now);
        if now - last_expiry >= shard.config.groups.offsets_retention_check_interval_ms as i64 {
            last_expiry = now;
            expire_offsets(&shard, now).await;
        }
    }
}

/// Deletes the offsets of empty groups older than offsets.retention.minutes, then the groups
/// left with nothing.
async fn expire_offsets(shard: &Rc<Shard>, now: i64) {
    let retention = shard.config.groups.offsets_retention_ms;
    let by_group = coordinator(shard).borrow_mut().expire(now, retention);
    for (id, records) in by_group {
        let tp = offsets_partition(&shard.config, &id);
        match append(shard, &tp, records).await {
            Ok(()) => tracing::info!(group = %id, "expired offsets"),
            Err(e) => tracing::error!(group = %id, error = %e, "expiring offsets failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(commit_ms: i64) -> CommittedOffset {
        CommittedOffset {
            offset: 1,
            leader_epoch: 0,
            metadata: String::new(),
            commit_ms,
        }
    }

    #[test]
    fn offsets_of_empty_groups_expire_after_retention() {
        let mut c = Coordinator::default();
        // "idle": empty since t=0, offsets committed at 0 and at 50.
        c.groups.insert("idle".into(), Group::new("idle", 0));
        let idle = c.offsets.entry("idle".into()).or_default();
        idle.insert(("t".into(), 0), committed(0));
        idle.insert(("t".into(), 1), committed(50));
        // "late": became empty at t=80; its old commit counts from then.
        c.groups.insert("late".into(), Group::new("late", 80));
        c.offsets
            .entry("late".into())
            .or_default()
            .insert(("t".into(), 0), committed(0));

        assert!(c.expire(99, 100).is_empty(), "nothing is old enough yet");
        let out = c.expire(100, 100);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "idle");
        assert_eq!(out[0].1.len(), 1, "only the older offset goes");
        assert!(
            c.groups.contains_key("idle"),
            "the group keeps its newer offset"
        );

        let out = c.expire(180, 100);
        let mut gone: Vec<&str> = out.iter().map(|(g, _)| g.as_str()).collect();
        gone.sort_unstable();
        assert_eq!(gone, vec!["idle", "late"]);
        assert!(!c.groups.contains_key("idle") && !c.groups.contains_key("late"));
        for (_, records) in &out {
            assert!(records.iter().all(|(_, v)| v.is_none()), "tombstones only");
            assert!(records
                .iter()
                .any(|(k, _)| *k == store::group_key("idle") || *k == store::group_key("late")));
        }
    }

    #[test]
    fn empty_groups_without_offsets_go_at_the_next_check() {
        let mut c = Coordinator::default();
        for i in 0..50 {
            let id = format!("named-once-{i}");
            c.groups.insert(id.clone(), Group::new(&id, 0));
        }
        let out = c.expire(1, 1_000_000);
        assert_eq!(out.len(), 50);
        assert!(c.groups.is_empty());
        for (id, records) in &out {
            assert_eq!(records, &vec![(store::group_key(id), None)]);
        }
    }

    #[test]
    fn groups_with_members_keep_their_offsets() {
        let mut c = Coordinator::default();
        let mut g = Group::new("busy", 0);
        g.state = GroupState::Stable;
        c.groups.insert("busy".into(), g);
        c.offsets
            .entry("busy".into())
            .or_default()
            .insert(("t".into(), 0), committed(0));
        assert!(c.expire(1_000_000, 100).is_empty());
        assert_eq!(c.offsets["busy"].len(), 1);
    }
}
