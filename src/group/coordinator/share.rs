//! The coordinator's side of share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe
//! and the members' session timers. Membership is kept in memory: after the coordinator moves
//! (or restarts), members get UNKNOWN_MEMBER_ID and join again, as clients do for a fenced
//! member. What share groups must not lose, the share-partitions' acknowledgements, is stored
//! by the partitions' owners ([`crate::share`]).

use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use super::consumer::SnapshotView;
use super::{coordinator, unavailable};
use crate::config::Config;
use crate::group::share::{Error, Heartbeat, Reply, Settings, ShareGroup};
use crate::shard::Shard;

/// Why a share group request got no answer from the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareError {
    Refused(Error),
    Coordinator(ResponseError),
}

pub fn settings(config: &Config) -> Settings {
    Settings {
        session_timeout_ms: config.groups.share_session_timeout_ms as i64,
        max_size: config.groups.share_max_size.max(1) as usize,
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
    let s = settings(&shard.config);
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

/// DeleteGroups of a share group: only an empty one goes. Returns None when `group_id` is not
/// a share group here.
pub fn delete(shard: &Shard, group_id: &str) -> Option<Result<(), ResponseError>> {
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    let g = c.share_groups.get(group_id)?;
    if !g.is_empty() {
        return Some(Err(ResponseError::NonEmptyGroup));
    }
    c.share_groups.remove(group_id);
    Some(Ok(()))
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
