//! The coordinator's side of share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe,
//! the members' session timers, and the stored state of the group's share-partitions.
//!
//! Membership is kept in memory: after the coordinator moves (or restarts), members get
//! UNKNOWN_MEMBER_ID and join again, as clients do for a fenced member. What share groups must
//! not lose, the share-partitions' acknowledgements, is written here by the partitions'
//! leaders (Kafka's share coordinator role, ReadShareGroupState / WriteShareGroupState) as
//! records of the group's `__consumer_offsets` partition, replicated like every group record
//! and replayed by the next coordinator.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use super::consumer::SnapshotView;
use super::{append, coordinator, offsets_partition, unavailable};
use crate::group::share::{Error, Heartbeat, Reply, Settings, ShareGroup};
use crate::group::store;
use crate::shard::Shard;
use crate::share::partition::Persisted;

/// Why a share group request got no answer from the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareError {
    Refused(Error),
    Coordinator(ResponseError),
}

/// The share group settings of `group` (its session timeout may be a group config).
pub fn settings(shard: &Shard, group: &str) -> Settings {
    Settings {
        session_timeout_ms: shard.group_settings(group).share_session_timeout_ms as i64,
        max_size: shard.config.groups.share_max_size.max(1) as usize,
    }
}

/// Kafka's error code for a refusal of the share group machine.
pub fn kafka_error(e: &Error) -> ResponseError {
    match e {
        Error::InvalidRequest(_) => ResponseError::InvalidRequest,
        Error::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        Error::UnknownMemberId => ResponseError::UnknownMemberId,
        Error::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
    }
}

/// Whether `group_id` names a group of another type (classic or consumer).
fn other_type(c: &super::Coordinator, group_id: &str) -> bool {
    c.groups.contains_key(group_id) || c.consumer_groups.contains_key(group_id)
}

/// ShareGroupHeartbeat: join, heartbeat or leave.
pub fn heartbeat(shard: &Shard, group_id: String, hb: Heartbeat) -> Result<Reply, ShareError> {
    if let Some(e) = unavailable(shard, &group_id) {
        return Err(ShareError::Coordinator(e));
    }
    let view = SnapshotView(shard.snapshot());
    let s = settings(shard, &group_id);
    let now = shard.now_ms();
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    if other_type(&c, &group_id) {
        // Kafka: "Group {} is not a share group."
        return Err(ShareError::Coordinator(ResponseError::GroupIdNotFound));
    }
    if !c.share_groups.contains_key(&group_id) && hb.member_epoch != 0 {
        return Err(ShareError::Refused(Error::UnknownMemberId));
    }
    let g = c
        .share_groups
        .entry(group_id.clone())
        .or_insert_with(|| ShareGroup::new(&group_id));
    let r = g.heartbeat(hb, &view, &s, now).map_err(ShareError::Refused);
    if let Ok(reply) = &r {
        if reply.member_epoch == -1 {
            tracing::info!(group = %group_id, member = %reply.member_id, "share group member left");
        }
    }
    r
}

/// ShareGroupDescribe of one group.
pub fn describe(shard: &Shard, group_id: &str) -> Result<ShareGroup, ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Err(e);
    }
    let c = coordinator(shard);
    let c = c.borrow();
    c.share_groups
        .get(group_id)
        .cloned()
        .ok_or(ResponseError::GroupIdNotFound)
}

/// Whether the share group has members (AlterShareGroupOffsets and DeleteShareGroupOffsets
/// need it empty): Err for a group of another type or a coordinator error.
pub fn has_members(shard: &Shard, group_id: &str) -> Result<bool, ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Err(e);
    }
    let c = coordinator(shard);
    let c = c.borrow();
    if other_type(&c, group_id) {
        return Err(ResponseError::GroupIdNotFound);
    }
    Ok(c.share_groups.get(group_id).is_some_and(|g| !g.is_empty()))
}

/// DeleteGroups of a share group: only an empty one goes, with its share-partitions' state.
/// Returns None when `group_id` is not a share group here.
pub async fn delete(shard: &Rc<Shard>, group_id: &str) -> Option<Result<(), ResponseError>> {
    let keys: Vec<(uuid::Uuid, i32)> = {
        let c = coordinator(shard);
        let mut c = c.borrow_mut();
        let has_state = c.share_states.contains_key(group_id);
        match c.share_groups.get(group_id) {
            Some(g) if !g.is_empty() => return Some(Err(ResponseError::NonEmptyGroup)),
            None if !has_state => return None,
            _ => {}
        }
        c.share_groups.remove(group_id);
        c.share_states
            .get(group_id)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    };
    for (topic_id, p) in keys {
        if let Err(e) =
            write_state(shard.clone(), group_id.to_string(), topic_id, p, -1, None).await
        {
            return Some(Err(e));
        }
    }
    Some(Ok(()))
}

/// The stored state of one share-partition (ReadShareGroupState).
pub fn read_state(
    shard: &Shard,
    group_id: &str,
    topic_id: uuid::Uuid,
    partition: i32,
) -> Result<Option<Persisted>, ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Err(e);
    }
    let c = coordinator(shard);
    let c = c.borrow();
    Ok(c.share_states
        .get(group_id)
        .and_then(|m| m.get(&(topic_id, partition)))
        .cloned())
}

/// A group's stored share-partition states, by (topic id, partition).
pub type States = std::collections::BTreeMap<(uuid::Uuid, i32), Persisted>;

/// Every stored share-partition state of the group.
pub fn states(shard: &Shard, group_id: &str) -> Result<States, ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Err(e);
    }
    let c = coordinator(shard);
    let c = c.borrow();
    Ok(c.share_states.get(group_id).cloned().unwrap_or_default())
}

/// Stores a share-partition's state (WriteShareGroupState), or deletes it (None), once the
/// record is written to the group's `__consumer_offsets` partition. A state older than the
/// stored one (a lower state epoch: the offsets were altered since) is refused with
/// FENCED_STATE_EPOCH; a write from a leader of an older leader epoch than one that wrote
/// before (a deposed leader that does not know it yet) with FENCED_LEADER_EPOCH. Admin writes
/// give leader epoch -1.
pub async fn write_state(
    shard: Rc<Shard>,
    group_id: String,
    topic_id: uuid::Uuid,
    partition: i32,
    leader_epoch: i32,
    state: Option<Persisted>,
) -> Result<(), ResponseError> {
    if let Some(e) = unavailable(&shard, &group_id) {
        return Err(e);
    }
    if leader_epoch >= 0 {
        let c = coordinator(&shard);
        let mut c = c.borrow_mut();
        let seen = c
            .share_leader_epochs
            .entry((group_id.clone(), topic_id, partition))
            .or_insert(leader_epoch);
        if leader_epoch < *seen {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        *seen = leader_epoch;
    }
    if let Some(new) = &state {
        let c = coordinator(&shard);
        let c = c.borrow();
        if let Some(Some(old)) = c
            .share_states
            .get(&group_id)
            .map(|m| m.get(&(topic_id, partition)))
        {
            if old.state_epoch > new.state_epoch {
                return Err(ResponseError::FencedStateEpoch);
            }
        }
    }
    let key = store::share_state_key(&group_id, topic_id, partition);
    let value = state
        .as_ref()
        .map(|p| bytes::Bytes::from(crate::share::store::encode(p)));
    let tp = offsets_partition(&shard.config, &group_id);
    if let Err(e) = append(&shard, &tp, vec![(key, value)]).await {
        tracing::warn!(group = %group_id, error = %e, "writing share-partition state failed");
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let c = coordinator(&shard);
    let mut c = c.borrow_mut();
    match state {
        Some(p) => {
            c.share_states
                .entry(group_id)
                .or_default()
                .insert((topic_id, partition), p);
        }
        None => {
            if let Some(m) = c.share_states.get_mut(&group_id) {
                m.remove(&(topic_id, partition));
                if m.is_empty() {
                    c.share_states.remove(&group_id);
                }
            }
        }
    }
    Ok(())
}

/// Ends the sessions that ran out.
pub(super) fn tick(shard: &Rc<Shard>, now: i64) {
    let view = SnapshotView(shard.snapshot());
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    for g in c.share_groups.values_mut() {
        if g.next_deadline().is_some_and(|d| d <= now) && g.tick(&view, now) {
            tracing::info!(group = %g.id, "share group member removed: session timeout");
        }
    }
}
