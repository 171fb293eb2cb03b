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

use super::{append, coordinator, offsets_partition, unavailable, KeyValue};
use crate::config::Config;
use crate::group::consumer::{
    records, ConsumerGroup, Error, Heartbeat, Record, Reply, Settings, TopicInfo, TopicView,
};
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

    fn names(&self) -> Vec<String> {
        self.0
            .topics
            .keys()
            .filter(|n| !is_internal_topic(n))
            .cloned()
            .collect()
    }
}

pub fn settings(config: &Config) -> Settings {
    let g = &config.groups;
    Settings {
        session_timeout_ms: g.consumer_session_timeout_ms,
        heartbeat_interval_ms: g.consumer_heartbeat_interval_ms,
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
    let s = settings(&shard.config);
    let (reply, kvs) = {
        let c = coordinator(&shard);
        let mut c = c.borrow_mut();
        let mut kvs = Vec::new();
        if let Some(classic) = c.groups.get(&group_id) {
            if !classic.is_empty() {
                // A classic group with members: its id is not a consumer group's.
                return Err(HeartbeatError::Coordinator(ResponseError::GroupIdNotFound));
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
                (reply, kvs)
            }
            Err(e) => {
                if g.is_empty() && g.epoch == 0 {
                    c.consumer_groups.remove(&group_id);
                }
                return Err(HeartbeatError::Refused(e));
            }
        }
    };
    if !kvs.is_empty() {
        let tp = offsets_partition(&shard.config, &group_id);
        if let Err(e) = append(&shard, &tp, kvs).await {
            tracing::error!(group = %group_id, error = %e, "writing consumer group records failed");
            return Err(HeartbeatError::Coordinator(
                ResponseError::CoordinatorNotAvailable,
            ));
        }
    }
    Ok(reply)
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
        assignor: g.assignor_name(&settings(&shard.config)),
    })
}

/// Ends the sessions that ran out (and members that did not revoke in time); writes what
/// changed.
pub(super) async fn tick(shard: &Rc<Shard>, now: i64) {
    let view = SnapshotView(shard.snapshot());
    let writes: Vec<(String, Vec<KeyValue>)> = {
        let c = coordinator(shard);
        let mut c = c.borrow_mut();
        c.consumer_groups
            .values_mut()
            .filter_map(|g| {
                let (gone, records) = g.tick(&view, now);
                for m in &gone {
                    tracing::info!(group = %g.id, member = %m, "consumer group member removed: session or rebalance timeout");
                }
                (!records.is_empty()).then(|| (g.id.clone(), encode(&g.id, &records)))
            })
            .collect()
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
    let s = settings(&shard.config);
    let n = shard.config.groups.offsets_topic_num_partitions;
    let c = coordinator(shard);
    let mut c = c.borrow_mut();
    for g in c.consumer_groups.values_mut() {
        if store::partition_for(&g.id, n) == p {
            g.start_timers(&s, now);
        }
    }
}
