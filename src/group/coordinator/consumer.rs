//! The coordinator's side of consumer groups (KIP-848): ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, the groups' timers, and their records in `__consumer_offsets`.
//!
//! Like the classic groups, the state changes synchronously under the coordinator's borrow,
//! and the records of that change are appended before the borrow's effects are answered: a
//! heartbeat's answer (a new epoch, an assignment) is sent only once its records are
//! committed, so a coordinator elected after a crash replays what every member was told.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::{append, coordinator, offsets_partition, unavailable, Coordinator, KeyValue};
use crate::group::consumer::{
    by_name, records, ClassicJoin, ClassicSeed, ConsumerGroup, Error, Heartbeat, Record, Reply,
    Settings, TopicInfo, TopicView,
};
use crate::group::state::{Group, JoinRequest, JoinResult, Limits, SyncResult};
use crate::group::{is_internal_topic, store};
use crate::metadata::Snapshot;
use crate::shard::Shard;

/// Why a heartbeat got no answer from the group: the machine refused it, or the coordinator
/// cannot serve the group here (Kafka's coordinator errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatError {
    Refused(Error),
    Coordinator(ResponseError),
}

/// Kafka's error code for a refusal of the consumer group machine.
pub fn kafka_error(e: &Error) -> ResponseError {
    use ResponseError as R;
    match e {
        Error::InvalidRequest(_) => R::InvalidRequest,
        Error::UnsupportedAssignor(_) => R::UnsupportedAssignor,
        Error::InvalidRegularExpression(_) => R::InvalidRegularExpression,
        Error::FencedMemberEpoch => R::FencedMemberEpoch,
        Error::UnknownMemberId => R::UnknownMemberId,
        Error::UnreleasedInstanceId => R::UnreleasedInstanceId,
        Error::FencedInstanceId => R::FencedInstanceId,
        Error::GroupMaxSizeReached => R::GroupMaxSizeReached,
        Error::MemberIdRequired(_) => R::MemberIdRequired,
        Error::InconsistentGroupProtocol => R::InconsistentGroupProtocol,
        Error::IllegalGeneration => R::IllegalGeneration,
        Error::RebalanceInProgress => R::RebalanceInProgress,
    }
}

/// The cluster's topics as the consumer group machine sees them.
pub struct SnapshotView(pub Arc<Snapshot>);

impl TopicView for SnapshotView {
    fn version(&self) -> u64 {
        self.0.version
    }

    fn topic(&self, name: &str) -> Option<TopicInfo> {
        let t = self.0.topic(name)?;
        let rack = |node: &i32| self.0.brokers.get(node).and_then(|b| b.rack.clone());
        let any_rack = self.0.brokers.values().any(|b| b.rack.is_some());
        let racks = if any_rack {
            t.assignments
                .iter()
                .map(|p| p.replicas.iter().filter_map(rack).collect())
                .collect()
        } else {
            Vec::new()
        };
        Some(TopicInfo {
            id: t.id,
            partitions: t.partitions,
            racks,
        })
    }

    fn name_of(&self, id: &uuid::Uuid) -> Option<String> {
        self.0.topic_ids.get(id).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.0
            .topics
            .keys()
            .filter(|n| !is_internal_topic(n))
            .cloned()
            .collect()
    }
}

/// The consumer group settings of `group` (its session timeout and heartbeat interval may be
/// group configs).
pub fn settings(shard: &Shard, group: &str) -> Settings {
    let g = &shard.config.groups;
    let own = shard.group_settings(group);
    Settings {
        session_timeout_ms: own.consumer_session_timeout_ms,
        heartbeat_interval_ms: own.consumer_heartbeat_interval_ms,
        assignors: g.consumer_assignors.clone(),
        max_size: g.consumer_max_size.max(1) as usize,
    }
}

/// The key/values of a consumer group's records.
pub(super) fn encode(group: &str, records: &[Record]) -> Vec<KeyValue> {
    records.iter().map(|r| records::encode(group, r)).collect()
}

/// ConsumerGroupHeartbeat: join, heartbeat or leave; answered once its records are written.
pub async fn heartbeat(
    shard: Rc<Shard>,
    group_id: String,
    hb: Heartbeat,
) -> Result<Reply, HeartbeatError> {
    if let Some(e) = unavailable(&shard, &group_id) {
        return Err(HeartbeatError::Coordinator(e));
    }
    let now = shard.now_ms();
    let view = SnapshotView(shard.snapshot());
    let s = settings(&shard, &group_id);
    let (result, kvs) = {
        let c = coordinator(&shard);
        let mut c = c.borrow_mut();
        let mut kvs = Vec::new();
        if c.share_groups.contains_key(&group_id) {
            // Kafka: "Group {} is not a consumer group."
            return Err(HeartbeatError::Coordinator(ResponseError::GroupIdNotFound));
        }
        if c.groups.get(&group_id).is_some_and(|g| !g.is_empty()) {
            // A classic group with members: the first consumer-protocol member upgrades it
            // online when it can be; otherwise its id is not a consumer group's.
            if hb.member_epoch != 0 {
                return Err(HeartbeatError::Refused(Error::UnknownMemberId));
            }
            match upgrade(&mut c, &group_id, &view, &s, now) {
                Some(records) => kvs = records,
                None => return Err(HeartbeatError::Coordinator(ResponseError::GroupIdNotFound)),
            }
        }
        if !c.consumer_groups.contains_key(&group_id) && hb.member_epoch != 0 {
            return Err(HeartbeatError::Refused(Error::UnknownMemberId));
        }
        let g = c
            .consumer_groups
            .entry(group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(&group_id, now));
        match g.heartbeat(hb, &view, &s, now) {
            Ok((reply, records)) => {
                // An empty classic group of that id (committed offsets only) becomes this
                // consumer group, keeping its offsets.
                if c.groups.remove(&group_id).is_some() {
                    kvs.push((store::group_key(&group_id), None));
                }
                kvs.extend(encode(&group_id, &records));
                // The last consumer-protocol member left classic members behind.
                let lim = super::limits(&shard.config);
                kvs.extend(maybe_downgrade(&mut c, &group_id, &view, &lim, now));
                (Ok(reply), kvs)
            }
            Err(e) => {
                if g.is_empty() && g.epoch == 0 {
                    c.consumer_groups.remove(&group_id);
                }
                // An upgrade done before the refusal is written all the same.
                (Err(HeartbeatError::Refused(e)), kvs)
            }
        }
    };
    if !write(&shard, &group_id, kvs).await {
        return Err(HeartbeatError::Coordinator(
            ResponseError::CoordinatorNotAvailable,
        ));
    }
    result
}

/// A consumer group as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone)]
pub struct DescribedConsumerGroup {
    pub group: ConsumerGroup,
    pub state: &'static str,
    pub assignor: String,
}

/// ConsumerGroupDescribe of one group: GROUP_ID_NOT_FOUND when it is not a consumer group.
pub fn describe(shard: &Shard, group_id: &str) -> Result<DescribedConsumerGroup, ResponseError> {
    if let Some(e) = unavailable(shard, group_id) {
        return Err(e);
    }
    let c = coordinator(shard);
    let c = c.borrow();
    let g = c
        .consumer_groups
        .get(group_id)
        .ok_or(ResponseError::GroupIdNotFound)?;
    Ok(DescribedConsumerGroup {
        group: g.clone(),
        state: crate::group::consumer::state_name(g),
        assignor: g.assignor_name(&settings(shard, group_id)),
    })
}

/// Ends the sessions that ran out (and members that did not revoke in time); writes what
/// changed.
pub(super) async fn tick(shard: &Rc<Shard>, now: i64) {
    let view = SnapshotView(shard.snapshot());
    let lim = super::limits(&shard.config);
    let writes: Vec<(String, Vec<KeyValue>)> = {
        let c = coordinator(shard);
        let mut c = c.borrow_mut();
        let mut writes: Vec<(String, Vec<KeyValue>)> = c
            .consumer_groups
            .values_mut()
            .filter_map(|g| {
                let (gone, records) = g.tick(&view, now);
                for m in &gone {
                    tracing::info!(group = %g.id, member = %m, "consumer group member removed: session or rebalance timeout");
                }
                (!records.is_empty()).then(|| (g.id.clone(), encode(&g.id, &records)))
            })
            .collect();
        for (id, kvs) in writes.iter_mut() {
            kvs.extend(maybe_downgrade(&mut c, id, &view, &lim, now));
        }
        writes
    };
    for (id, kvs) in writes {
        let tp = offsets_partition(&shard.config, &id);
        if let Err(e) = append(shard, &tp, kvs).await {
            tracing::error!(group = %id, error = %e, "writing consumer group records failed");
        }
    }
}

/// Applies a consumer group record read back from the log.
pub(super) fn replay(shard: &Shard, group: String, record: Record) {
    let now = shard.now_ms();
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    if record == Record::GroupEpoch(None) {
        c.consumer_groups.remove(&group);
        return;
    }
    // A classic placeholder (offsets replayed first) gives way to the consumer group.
    if c.groups.get(&group).is_some_and(|g| g.is_empty()) {
        c.groups.remove(&group);
    }
    c.consumer_groups
        .entry(group.clone())
        .or_insert_with(|| ConsumerGroup::new(&group, now))
        .replay(record);
}

/// After loading partition `p`: every member of its consumer groups gets a full session.
pub(super) fn start_timers(shard: &Shard, p: i32) {
    let now = shard.now_ms();
    let n = shard.config.groups.offsets_topic_num_partitions;
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    for g in c.consumer_groups.values_mut() {
        if store::partition_for(&g.id, n) == p {
            g.start_timers(&settings(shard, &g.id), now);
        }
    }
}

// ----- classic members in consumer groups (online upgrade and downgrade) -----

/// Appends records of `group`, logging a failure; returns whether they were written.
async fn write(shard: &Shard, group: &str, kvs: Vec<KeyValue>) -> bool {
    if kvs.is_empty() {
        return true;
    }
    let tp = offsets_partition(&shard.config, group);
    match append(shard, &tp, kvs).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(%group, error = %e, "writing consumer group records failed");
            false
        }
    }
}

/// Turns a consumer group whose members all speak the classic protocol back into a classic
/// group, which starts a rebalance (Kafka's online downgrade). Returns the records to write.
pub(super) fn maybe_downgrade(
    c: &mut Coordinator,
    group: &str,
    view: &SnapshotView,
    lim: &Limits,
    now: i64,
) -> Vec<KeyValue> {
    let Some(g) = c.consumer_groups.get(group) else {
        return Vec::new();
    };
    if !g.all_classic() {
        return Vec::new();
    }
    let Some((generation, protocol, members)) = g.classic_view(view) else {
        return Vec::new();
    };
    let mut kvs = encode(group, &g.all_tombstones());
    let leader = members.first().map(|m| m.id.clone());
    let members = members
        .into_iter()
        .map(|m| {
            Group::persisted_member(
                m.id,
                m.instance_id,
                m.client_id,
                m.client_host,
                m.session_timeout_ms,
                m.rebalance_timeout_ms.max(m.session_timeout_ms),
                m.protocols,
                m.assignment,
            )
        })
        .collect();
    let mut classic = Group::restore(
        group,
        generation,
        Some("consumer".to_string()),
        Some(protocol),
        leader,
        members,
        now,
    );
    classic.begin_rebalance(lim, now);
    kvs.push((store::group_key(group), Some(store::group_value(&classic))));
    c.consumer_groups.remove(group);
    c.groups.insert(group.to_string(), classic);
    tracing::info!(%group, "consumer group turned back into a classic group: only classic members remain");
    kvs
}

/// A classic group whose members all use the consumer embedded protocol becomes a consumer
/// group (Kafka's online upgrade): its members keep their partitions; parked joins and syncs
/// are told to rejoin. Returns the records to write, or None when it cannot be upgraded.
pub(super) fn upgrade(
    c: &mut Coordinator,
    group: &str,
    view: &SnapshotView,
    s: &Settings,
    now: i64,
) -> Option<Vec<KeyValue>> {
    let classic = c.groups.get(group)?;
    let protocol = classic.protocol.clone().unwrap_or_default();
    let usable = classic.protocol_type.as_deref() == Some("consumer")
        && classic.members.len() < s.max_size
        && classic
            .members
            .values()
            .all(|m| crate::group::codec::decode_subscription(&m.metadata(&protocol)).is_some());
    if !usable {
        return None;
    }
    let seeds = classic
        .members
        .values()
        .map(|m| ClassicSeed {
            id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocols: m.protocols.clone(),
            assignment: m.assignment.clone(),
        })
        .collect();
    let generation = classic.generation;
    let (g, records) =
        ConsumerGroup::from_classic(group, generation, &protocol, seeds, view, s, now);
    c.groups.remove(group);
    c.fail_parked(group, ResponseError::RebalanceInProgress);
    c.consumer_groups.insert(group.to_string(), g);
    let mut kvs = vec![(store::group_key(group), None)];
    kvs.extend(encode(group, &records));
    tracing::info!(%group, "classic group upgraded to a consumer group");
    Some(kvs)
}

/// JoinGroup of a classic member into a consumer group.
pub async fn classic_join(shard: Rc<Shard>, group_id: String, req: JoinRequest) -> JoinResult {
    let now = shard.now_ms();
    let view = SnapshotView(shard.snapshot());
    let s = settings(&shard, &group_id);
    let join = ClassicJoin {
        member_id: req.member_id.clone(),
        new_member_id: format!(
            "{}-{}",
            if req.client_id.is_empty() {
                "consumer"
            } else {
                &req.client_id
            },
            uuid::Uuid::new_v4()
        ),
        instance_id: req.instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        protocol_type: req.protocol_type.clone(),
        protocols: req.protocols.clone(),
        require_known_member_id: req.require_known_member_id,
    };
    let result = {
        let c = coordinator(&shard);
        let mut c = c.borrow_mut();
        let Some(g) = c.consumer_groups.get_mut(&group_id) else {
            return JoinResult::error(ResponseError::UnknownMemberId, &req.member_id);
        };
        g.classic_join(join, &view, &s, now)
            .map(|(r, records)| (r, encode(&group_id, &records)))
    };
    match result {
        Err(Error::MemberIdRequired(id)) => JoinResult::error(ResponseError::MemberIdRequired, &id),
        Err(e) => JoinResult::error(kafka_error(&e), &req.member_id),
        Ok((joined, kvs)) => {
            if !write(&shard, &group_id, kvs).await {
                return JoinResult::error(ResponseError::CoordinatorNotAvailable, &req.member_id);
            }
            JoinResult {
                error: None,
                generation: joined.generation,
                protocol_type: Some("consumer".to_string()),
                protocol: Some(joined.protocol),
                // Nobody leads: the group assigns, and every member only syncs.
                leader: String::new(),
                member_id: joined.member_id,
                members: Vec::new(),
            }
        }
    }
}

/// SyncGroup of a classic member of a consumer group: its current assignment.
pub fn classic_sync(
    shard: &Shard,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> SyncResult {
    let now = shard.now_ms();
    let view = SnapshotView(shard.snapshot());
    let s = settings(shard, group_id);
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    let Some(g) = c.consumer_groups.get_mut(group_id) else {
        return SyncResult::error(ResponseError::UnknownMemberId);
    };
    match g.classic_sync(member_id, instance_id, generation, &s, now) {
        Err(e) => SyncResult::error(kafka_error(&e)),
        Ok((assigned, version, protocol)) => SyncResult {
            error: None,
            protocol_type: Some("consumer".to_string()),
            protocol: Some(protocol),
            assignment: crate::group::codec::encode_assignment(version, &by_name(&assigned, &view)),
        },
    }
}

/// Heartbeat of a classic member of a consumer group.
pub fn classic_heartbeat(
    shard: &Shard,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Option<ResponseError> {
    let now = shard.now_ms();
    let s = settings(shard, group_id);
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    let g = c.consumer_groups.get_mut(group_id)?;
    g.classic_heartbeat(member_id, instance_id, generation, &s, now)
        .err()
        .map(|e| kafka_error(&e))
}

/// LeaveGroup of classic members of a consumer group; the group turns classic again when
/// only classic members remain.
pub async fn classic_leave(
    shard: Rc<Shard>,
    group_id: String,
    members: Vec<(String, Option<String>)>,
) -> Vec<Option<ResponseError>> {
    let now = shard.now_ms();
    let view = SnapshotView(shard.snapshot());
    let lim = super::limits(&shard.config);
    let (results, kvs) = {
        let c = coordinator(&shard);
        let mut c = c.borrow_mut();
        let mut kvs = Vec::new();
        let mut results = Vec::new();
        for (m, i) in &members {
            let r = match c.consumer_groups.get_mut(&group_id) {
                None => Err(Error::UnknownMemberId),
                Some(g) => g.classic_leave(m, i.as_deref(), &view, now),
            };
            match r {
                Ok(records) => {
                    kvs.extend(encode(&group_id, &records));
                    results.push(None);
                }
                Err(e) => results.push(Some(kafka_error(&e))),
            }
        }
        kvs.extend(maybe_downgrade(&mut c, &group_id, &view, &lim, now));
        (results, kvs)
    };
    if !write(&shard, &group_id, kvs).await {
        return vec![Some(ResponseError::CoordinatorNotAvailable); members.len()];
    }
    results
}
