//! Offsets committed inside transactions (TxnOffsetCommit): written in a transactional batch
//! of the producer, pending per producer until the transaction's marker reaches the group's
//! `__consumer_offsets` partition, then committed or dropped. Loading a partition replays them
//! the same way. Runs on the shard that owns the group, like the rest of the coordinator.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::store::{self, CommittedOffset, StoreRecord};
use super::{
    append_as, check_commit, coordinator, offsets_partition, unavailable, Commit, Coordinator,
};
use crate::shard::Shard;
use crate::types::TopicPartition;

/// The producer and group member a TxnOffsetCommit comes from.
#[derive(Debug, Clone)]
pub struct TxnCommitter {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// TxnOffsetCommit: checks the member as Kafka does, writes the offsets in a transactional
/// batch of the producer, and keeps them pending until the transaction's marker says whether
/// they count. Returns one error (or none) per commit.
pub async fn txn_commit(
    shard: Rc<Shard>,
    group_id: String,
    from: TxnCommitter,
    commits: Vec<Commit>,
) -> Vec<Option<ResponseError>> {
    let all = |e: ResponseError| vec![Some(e); commits.len()];
    if let Some(e) = unavailable(&shard, &group_id) {
        return all(e);
    }
    let now = shard.now_ms();
    // Producers that send offsets by group id alone (no member, no generation) are not
    // checked against the group's membership, as Kafka does not.
    let anonymous = from.generation < 0 && from.member_id.is_empty();
    {
        let groups = coordinator(&shard);
        let mut c = groups.borrow_mut();
        let checked = if anonymous {
            check_commit(&mut c, &group_id, -1, "", None, now).or(Ok(()))
        } else {
            check_commit(
                &mut c,
                &group_id,
                from.generation,
                &from.member_id,
                from.instance_id.as_deref(),
                now,
            )
        };
        if let Err(e) = checked {
            return all(e);
        }
    }
    let snap = shard.snapshot();
    let mut results = Vec::with_capacity(commits.len());
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    for c in commits {
        let known = snap
            .topic(&c.topic)
            .is_some_and(|t| c.partition >= 0 && c.partition < t.partitions);
        if !known {
            results.push(Some(ResponseError::UnknownTopicOrPartition));
        } else if c.metadata.len() > shard.config.groups.offset_metadata_max_bytes {
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
            accepted.push(((c.topic, c.partition), value));
            results.push(None);
        }
    }
    if records.is_empty() {
        return results;
    }
    let tp = offsets_partition(&shard.config, &group_id);
    let producer = Some((from.producer_id, from.producer_epoch));
    if let Err(e) = append_as(&shard, &tp, records, producer).await {
        tracing::error!(group = %group_id, error = %e, "writing transactional offsets failed");
        return results
            .into_iter()
            .map(|r| r.or(Some(ResponseError::CoordinatorNotAvailable)))
            .collect();
    }
    let groups = coordinator(&shard);
    let mut c = groups.borrow_mut();
    let pending = c
        .pending_txn
        .entry(from.producer_id)
        .or_default()
        .entry(group_id)
        .or_default();
    pending.extend(accepted);
    results
}

/// A transaction marker (commit when `commit`) for `producer_id` was written to the
/// `__consumer_offsets` partition `tp`, which this shard owns: the offsets that producer
/// committed inside the transaction (TxnOffsetCommit) become visible, or are dropped.
pub fn transaction_completed(shard: &Shard, tp: &TopicPartition, producer_id: i64, commit: bool) {
    let n = shard.config.groups.offsets_topic_num_partitions;
    let groups = coordinator(shard);
    let mut c = groups.borrow_mut();
    c.end_transaction(producer_id, commit, |g| {
        store::partition_for(g, n) == tp.partition
    });
}

impl Coordinator {
    /// Ends `producer_id`'s transaction for the groups `on_partition` accepts.
    pub(super) fn end_transaction(
        &mut self,
        producer_id: i64,
        commit: bool,
        on_partition: impl Fn(&str) -> bool,
    ) {
        let Some(by_group) = self.pending_txn.get_mut(&producer_id) else {
            return;
        };
        let ended: Vec<String> = by_group
            .keys()
            .filter(|g| on_partition(g))
            .cloned()
            .collect();
        let mut done = Vec::new();
        for g in ended {
            if let Some(offsets) = by_group.remove(&g) {
                done.push((g, offsets));
            }
        }
        if by_group.is_empty() {
            self.pending_txn.remove(&producer_id);
        }
        if !commit {
            return;
        }
        for (g, offsets) in done {
            self.offsets.entry(g).or_default().extend(offsets);
        }
    }

    /// Whether some transaction has an offset of `group` for (topic, partition) pending.
    pub(super) fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending_txn
            .values()
            .any(|g| g.get(group).is_some_and(|o| o.contains_key(&key)))
    }
}

/// A control record's key (version, type): whether it ends a transaction with a commit.
pub(super) fn control_is_commit(key: &Bytes) -> Option<bool> {
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// An offset record written inside a transaction: pending for its producer.
pub(super) fn replay_txn_offset(
    shard: &Shard,
    producer_id: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
) {
    let groups = coordinator(shard);
    let mut c = groups.borrow_mut();
    if let Ok(StoreRecord::Offset {
        group,
        topic,
        partition,
        value: Some(v),
    }) = store::decode(key, value)
    {
        c.pending_txn
            .entry(producer_id)
            .or_default()
            .entry(group)
            .or_default()
            .insert((topic, partition), v);
    }
}
