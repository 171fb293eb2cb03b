//! Share groups' records (KIP-932): the share-partitions a shard's partitions have, and the
//! share sessions of the clients connected to it.
//!
//! A share-partition ([`partition::SharePartition`]) lives on the shard owning its partition,
//! beside the log, and only while this node leads the partition: that shard is the only code
//! that acquires or acknowledges its records. Its state is stored by the group's coordinator
//! ([`persister`]) before a change is answered, and read from there when a leader first serves
//! it, so a new leader after a failover goes on where the old one stopped. The way to the
//! coordinator ([`Persister`]) is installed by the composition root. Share sessions
//! ([`session`]) live on the shard of the connection that opened them.

pub mod partition;
pub mod session;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use uuid::Uuid;

use crate::config::group::ShareAutoOffsetReset;
use crate::record::BatchHeader;
use crate::shard::Shard;
use crate::types::TopicPartition;
use partition::{Ack, AckError, Acquired, Persisted, SharePartition};

/// The share-partition settings of `group` (its record lock duration may be a group config).
pub fn settings(shard: &Shard, group: &str) -> partition::Settings {
    let g = &shard.config.groups;
    partition::Settings {
        lock_ms: shard.group_settings(group).share_record_lock_duration_ms as i64,
        delivery_limit: g.share_delivery_count_limit as i16,
        max_in_flight: g.share_partition_max_record_locks as i64,
    }
}

/// Why a share-partition could not serve (Kafka's codes at the edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// This node does not lead the partition (or the topic id is another incarnation's).
    NotLeader,
    /// The group's coordinator could not read or store the state.
    Unavailable(String),
    /// The stored state is newer than this leader's (its offsets were altered): it reloads.
    Fenced,
    /// An acknowledgement was refused.
    Ack(AckError),
}

struct Slot {
    topic_id: Uuid,
    /// The leader epoch it was loaded in: a later leadership of this node loads it again (the
    /// leaders between may have moved it on).
    leader_epoch: i32,
    sp: SharePartition,
    /// What the coordinator last stored.
    saved: Option<Persisted>,
    /// One store at a time, each of the newest state.
    storing: Rc<glommio::sync::Semaphore>,
}

type Key = (String, TopicPartition);

/// This shard's share-partitions and share sessions (its [`Shard::service`]).
#[derive(Default)]
pub struct Shares {
    slots: RefCell<HashMap<Key, Slot>>,
    pub sessions: RefCell<session::Sessions>,
    persister: RefCell<Option<Rc<dyn Persister>>>,
}

/// The share-partition state a persister call is about, and the leader epoch of the leader
/// reading or storing it (the coordinator fences older ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey {
    pub group: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
}

/// How a share-partition leader reads and stores state through the group's coordinator
/// (Kafka's persister). Deleting is storing None.
pub trait Persister {
    fn read(
        &self,
        shard: Rc<Shard>,
        key: StateKey,
    ) -> LocalBoxFuture<'static, Result<Option<Persisted>, Failure>>;

    fn write(
        &self,
        shard: Rc<Shard>,
        key: StateKey,
        state: Option<Persisted>,
    ) -> LocalBoxFuture<'static, Result<(), Failure>>;
}

/// Installs this shard's persister.
pub fn set_persister(shard: &Shard, p: Rc<dyn Persister>) {
    *shares(shard).persister.borrow_mut() = Some(p);
}

fn state_key(group: &str, tp: &TopicPartition, topic_id: Uuid, leader_epoch: i32) -> StateKey {
    StateKey {
        group: group.to_string(),
        topic_id,
        partition: tp.partition,
        leader_epoch,
    }
}

fn persister(shard: &Shard) -> Result<Rc<dyn Persister>, Failure> {
    shares(shard)
        .persister
        .borrow()
        .clone()
        .ok_or_else(|| Failure::Unavailable("no persister on this shard".into()))
}

fn shares(shard: &Shard) -> Rc<Shares> {
    shard.service::<Shares>()
}

/// The leader epoch this node leads `tp` in, for the topic incarnation `topic_id`.
fn leading(shard: &Shard, tp: &TopicPartition, topic_id: Uuid) -> Option<i32> {
    shard.log(tp)?;
    let epoch = crate::replication::leader_epoch_of(shard, tp)?;
    (shard.snapshot().topic(&tp.topic).map(|t| t.id) == Some(topic_id)).then_some(epoch)
}

/// Loads the share-partition of `group` from its coordinator, or, when it has no state,
/// starts it where the group's `share.auto.offset.reset` says (the log end by default).
async fn load(
    shard: &Rc<Shard>,
    group: &str,
    tp: &TopicPartition,
    topic_id: Uuid,
) -> Result<(), Failure> {
    let key = (group.to_string(), tp.clone());
    let Some(epoch) = leading(shard, tp, topic_id) else {
        shares(shard).slots.borrow_mut().remove(&key);
        return Err(Failure::NotLeader);
    };
    let current = |s: &Slot| s.topic_id == topic_id && s.leader_epoch == epoch;
    if shares(shard).slots.borrow().get(&key).is_some_and(current) {
        return Ok(());
    }
    let stored = persister(shard)?
        .read(shard.clone(), state_key(group, tp, topic_id, epoch))
        .await?;
    let Some(log) = shard
        .log(tp)
        .filter(|_| leading(shard, tp, topic_id) == Some(epoch))
    else {
        return Err(Failure::NotLeader);
    };
    let all = shares(shard);
    let mut slots = all.slots.borrow_mut();
    if slots.get(&key).is_some_and(current) {
        return Ok(());
    }
    let sp = match &stored {
        Some(p) => SharePartition::restore(p),
        None => match shard.group_settings(group).share_auto_offset_reset {
            ShareAutoOffsetReset::Latest => SharePartition::new(log.high_watermark()),
            ShareAutoOffsetReset::Earliest => SharePartition::new(log.log_start_offset()),
        },
    };
    slots.insert(
        key,
        Slot {
            topic_id,
            leader_epoch: epoch,
            sp,
            saved: stored,
            storing: Rc::new(glommio::sync::Semaphore::new(1)),
        },
    );
    Ok(())
}

/// Runs `f` on the loaded share-partition, after ending the locks that ran out.
fn with_slot<R>(
    shard: &Shard,
    group: &str,
    tp: &TopicPartition,
    f: impl FnOnce(&mut SharePartition, &partition::Settings, i64) -> R,
) -> Result<R, Failure> {
    let s = settings(shard, group);
    let now = shard.now_ms();
    let all = shares(shard);
    let mut slots = all.slots.borrow_mut();
    let slot = slots
        .get_mut(&(group.to_string(), tp.clone()))
        .ok_or(Failure::NotLeader)?;
    if let Some(log) = shard.log(tp) {
        slot.sp.follow_log_start(log.log_start_offset());
    }
    slot.sp.expire(now, &s);
    Ok(f(&mut slot.sp, &s, now))
}

/// Loads the share-partition, runs `f` on it, and stores what changed.
async fn change<R>(
    shard: &Rc<Shard>,
    group: &str,
    tp: &TopicPartition,
    topic_id: Uuid,
    f: impl FnOnce(&mut SharePartition, &partition::Settings, i64) -> R,
) -> Result<R, Failure> {
    load(shard, group, tp, topic_id).await?;
    let r = with_slot(shard, group, tp, f)?;
    store(shard, group, tp, topic_id).await?;
    Ok(r)
}

/// Has the coordinator store the share-partition's state if it differs from what it holds.
/// Stores run one at a time per share-partition, each of the newest state, so a slower older
/// store never lands after a newer one.
async fn store(
    shard: &Rc<Shard>,
    group: &str,
    tp: &TopicPartition,
    topic_id: Uuid,
) -> Result<(), Failure> {
    let key = (group.to_string(), tp.clone());
    let Some(storing) = shares(shard)
        .slots
        .borrow()
        .get(&key)
        .map(|s| s.storing.clone())
    else {
        return Err(Failure::NotLeader);
    };
    let _permit = storing
        .acquire_permit(1)
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let newest = {
        let all = shares(shard);
        let slots = all.slots.borrow();
        let Some(slot) = slots.get(&key) else {
            return Err(Failure::NotLeader);
        };
        let now = slot.sp.persisted();
        if slot.saved.as_ref() == Some(&now) {
            return Ok(());
        }
        now
    };
    let epoch = leading(shard, tp, topic_id).ok_or(Failure::NotLeader)?;
    let r = persister(shard)?
        .write(
            shard.clone(),
            state_key(group, tp, topic_id, epoch),
            Some(newest.clone()),
        )
        .await;
    let all = shares(shard);
    let mut slots = all.slots.borrow_mut();
    match r {
        Ok(()) => {
            if let Some(slot) = slots.get_mut(&key) {
                slot.saved = Some(newest);
            }
            Ok(())
        }
        Err(e @ (Failure::Fenced | Failure::NotLeader)) => {
            // The offsets were altered, or another leader stores now: drop what is held here.
            slots.remove(&key);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// One share-partition of a request, on its owner.
#[derive(Debug, Clone)]
pub struct Want {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub acks: Vec<Ack>,
}

/// What a fetch got from one share-partition: the batches holding its acquired records,
/// whole, as the log stores them.
#[derive(Debug, Default)]
pub struct Delivery {
    pub batches: Vec<Bytes>,
    pub acquired: Vec<Acquired>,
}

/// Applies a member's acknowledgements on their owner; one result per want.
pub async fn acknowledge(
    shard: &Rc<Shard>,
    group: &str,
    member: &str,
    wants: &[Want],
) -> Vec<Result<(), Failure>> {
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        if w.acks.is_empty() {
            out.push(Ok(()));
            continue;
        }
        let r = change(shard, group, &w.tp, w.topic_id, |sp, s, _| {
            sp.acknowledge(member, &w.acks, s)
        })
        .await;
        out.push(r.and_then(|r| r.map_err(Failure::Ack)));
    }
    out
}

/// Releases what `member` holds in these share-partitions (its session closed).
pub async fn release(shard: &Rc<Shard>, group: &str, member: &str, wants: &[Want]) {
    for w in wants {
        let r = change(shard, group, &w.tp, w.topic_id, |sp, s, _| {
            sp.release_member(member, s)
        })
        .await;
        if let Err(e) = r {
            tracing::debug!(group, member, tp = %w.tp, error = ?e, "releasing a closed session's records");
        }
    }
}

/// Acquires for `member` what each share-partition has for it, up to `max_bytes` of batches
/// read and `max_records` records per partition.
pub async fn acquire(
    shard: &Rc<Shard>,
    group: &str,
    member: &str,
    wants: &[Want],
    max_bytes: usize,
    max_records: usize,
) -> Vec<Result<Delivery, Failure>> {
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        out.push(acquire_one(shard, group, member, w, max_bytes, max_records).await);
    }
    out
}

async fn acquire_one(
    shard: &Rc<Shard>,
    group: &str,
    member: &str,
    w: &Want,
    max_bytes: usize,
    max_records: usize,
) -> Result<Delivery, Failure> {
    load(shard, group, &w.tp, w.topic_id).await?;
    let from = with_slot(shard, group, &w.tp, |sp, s, _| sp.next_to_read(s))?;
    let Some(log) = shard.log(&w.tp) else {
        return Err(Failure::NotLeader);
    };
    let Some(from) = from.filter(|o| *o < log.high_watermark()) else {
        return Ok(Delivery::default());
    };
    let read = log
        .read(from, max_bytes, true)
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let mut headers = Vec::with_capacity(read.batches.len());
    for b in &read.batches {
        let h = BatchHeader::parse(b).map_err(|e| Failure::Unavailable(format!("{e:?}")))?;
        headers.push((h.base_offset, h.last_offset(), h.is_control()));
    }
    // Acquisitions are not stored at once (as in Kafka): the next acknowledgement stores them
    // with everything else, and locks do not outlive a leader anyway.
    let acquired = with_slot(shard, group, &w.tp, |sp, s, now| {
        sp.acquire(member, &headers, max_records, now, s)
    })?;
    let batches = read
        .batches
        .into_iter()
        .zip(&headers)
        .filter(|(_, (base, last, _))| acquired.iter().any(|a| a.first <= *last && a.last >= *base))
        .map(|(b, _)| b)
        .collect();
    Ok(Delivery { batches, acquired })
}

/// Waits until one of the share-partitions may have records for a fetch: data past its end,
/// or a lock running out; at most `wait_ms`.
pub async fn wait(shard: &Shard, group: &str, wants: &[Want], wait_ms: i64) {
    let now = shard.now_ms();
    let s = settings(shard, group);
    let mut wait_ms = wait_ms.max(0);
    let mut waits: Vec<LocalBoxFuture<'static, ()>> = Vec::new();
    {
        let all = shares(shard);
        let slots = all.slots.borrow();
        for w in wants {
            let Some(slot) = slots.get(&(group.to_string(), w.tp.clone())) else {
                continue;
            };
            if let Some(d) = slot.sp.next_deadline() {
                wait_ms = wait_ms.min((d - now).max(0));
            }
            // New data matters only while the window has room for it.
            let room = slot.sp.end() - slot.sp.start() < s.max_in_flight;
            if let Some(log) = shard.log(&w.tp).filter(|_| room) {
                let end = slot.sp.end();
                waits.push(Box::pin(async move { log.wait_for_data(end).await }));
            }
        }
    }
    let timer = glommio::timer::sleep(Duration::from_millis(wait_ms as u64));
    if waits.is_empty() {
        timer.await;
        return;
    }
    futures::future::select(Box::pin(timer), futures::future::select_all(waits)).await;
}

/// Forgets what this shard cached of a share-partition (its stored state was altered or
/// deleted by an admin request).
pub fn forget(shard: &Shard, group: &str, tp: &TopicPartition) {
    shares(shard)
        .slots
        .borrow_mut()
        .remove(&(group.to_string(), tp.clone()));
}

/// Forgets what this shard cached of a group's share-partitions (the group was deleted).
pub fn forget_group(shard: &Shard, group: &str) {
    shares(shard)
        .slots
        .borrow_mut()
        .retain(|(g, _), _| g != group);
}
