//! Share groups' records (KIP-932): the share-partitions a shard's partitions have, and the
//! share sessions of the clients connected to it.
//!
//! A share-partition ([`partition::SharePartition`]) lives on the shard owning its partition,
//! beside the log, and only while this node leads the partition: that shard is the only code
//! that acquires, acknowledges or stores it. Its state is stored in the partition's directory
//! ([`store`]) before a change is answered. Share sessions ([`session`]) live on the shard of
//! the connection that opened them.

pub mod partition;
pub mod session;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use uuid::Uuid;

use crate::config::Config;
use crate::record::BatchHeader;
use crate::shard::Shard;
use crate::types::TopicPartition;
use partition::{Ack, AckError, Acquired, SharePartition};

/// The share-partition settings of `config`.
pub fn settings(config: &Config) -> partition::Settings {
    let g = &config.groups;
    partition::Settings {
        lock_ms: g.share_record_lock_duration_ms as i64,
        delivery_limit: g.share_delivery_count_limit as i16,
        max_in_flight: g.share_partition_max_record_locks as i64,
    }
}

/// Why a share-partition could not serve (Kafka's codes at the edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// This node does not lead the partition (or the topic id is another incarnation's).
    NotLeader,
    /// The stored state could not be read or written.
    Storage(String),
    /// An acknowledgement was refused.
    Ack(AckError),
}

struct Slot {
    topic_id: Uuid,
    sp: SharePartition,
    file: PathBuf,
    /// The bytes last stored.
    saved: Vec<u8>,
}

/// This shard's share-partitions and share sessions (its [`Shard::service`]).
#[derive(Default)]
pub struct Shares {
    slots: RefCell<HashMap<(String, TopicPartition), Slot>>,
    pub sessions: RefCell<session::Sessions>,
}

fn shares(shard: &Shard) -> Rc<Shares> {
    shard.service::<Shares>()
}

/// A share-partition of `group` this shard leads, loaded (or started at the log end, Kafka's
/// `share.auto.offset.reset=latest`) into `slots`.
fn ensure_slot(
    shard: &Shard,
    slots: &mut HashMap<(String, TopicPartition), Slot>,
    group: &str,
    tp: &TopicPartition,
    topic_id: Uuid,
) -> Result<(), Failure> {
    let key = (group.to_string(), tp.clone());
    let current = shard.snapshot().topic(&tp.topic).map(|t| t.id);
    let (Some(log), Some(_)) = (
        shard.log(tp),
        crate::replication::leader_epoch_of(shard, tp),
    ) else {
        slots.remove(&key);
        return Err(Failure::NotLeader);
    };
    if current != Some(topic_id) {
        slots.remove(&key);
        return Err(Failure::NotLeader);
    }
    if slots.get(&key).is_some_and(|s| s.topic_id == topic_id) {
        return Ok(());
    }
    let file = store::path(log.dir(), group);
    let loaded = store::load(&file).map_err(Failure::Storage)?;
    let (sp, saved) = match loaded {
        Some(p) => (SharePartition::restore(&p), store::encode(&p)),
        None => (SharePartition::new(log.high_watermark()), Vec::new()),
    };
    slots.insert(
        key,
        Slot {
            topic_id,
            sp,
            file,
            saved,
        },
    );
    Ok(())
}

/// Stores the slot's state if it changed since last stored.
fn persist(slot: &mut Slot) -> Result<(), Failure> {
    let bytes = store::encode(&slot.sp.persisted());
    if bytes == slot.saved {
        return Ok(());
    }
    store::save(&slot.file, &bytes)
        .map_err(|e| Failure::Storage(format!("{}: {e}", slot.file.display())))?;
    slot.saved = bytes;
    Ok(())
}

/// Runs `f` on the share-partition, then stores it if it changed.
fn with_slot<R>(
    shard: &Shard,
    group: &str,
    tp: &TopicPartition,
    topic_id: Uuid,
    f: impl FnOnce(&mut SharePartition, &partition::Settings, i64) -> R,
) -> Result<R, Failure> {
    let s = settings(&shard.config);
    let now = shard.now_ms();
    let all = shares(shard);
    let mut slots = all.slots.borrow_mut();
    ensure_slot(shard, &mut slots, group, tp, topic_id)?;
    let slot = slots
        .get_mut(&(group.to_string(), tp.clone()))
        .expect("ensured");
    if let Some(log) = shard.log(tp) {
        slot.sp.follow_log_start(log.log_start_offset());
    }
    slot.sp.expire(now, &s);
    let r = f(&mut slot.sp, &s, now);
    persist(slot)?;
    Ok(r)
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
pub fn acknowledge(
    shard: &Shard,
    group: &str,
    member: &str,
    wants: &[Want],
) -> Vec<Result<(), Failure>> {
    wants
        .iter()
        .map(|w| {
            if w.acks.is_empty() {
                return Ok(());
            }
            with_slot(shard, group, &w.tp, w.topic_id, |sp, s, _| {
                sp.acknowledge(member, &w.acks, s)
            })?
            .map_err(Failure::Ack)
        })
        .collect()
}

/// Releases what `member` holds in these share-partitions (its session closed).
pub fn release(shard: &Shard, group: &str, member: &str, wants: &[Want]) {
    for w in wants {
        if let Err(e) = with_slot(shard, group, &w.tp, w.topic_id, |sp, s, _| {
            sp.release_member(member, s)
        }) {
            tracing::debug!(group, member, tp = %w.tp, error = ?e, "releasing a closed session's records");
        }
    }
}

/// Acquires for `member` what each share-partition has for it, up to `max_bytes` of batches
/// read and `max_records` records per partition.
pub async fn acquire(
    shard: &Shard,
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
    shard: &Shard,
    group: &str,
    member: &str,
    w: &Want,
    max_bytes: usize,
    max_records: usize,
) -> Result<Delivery, Failure> {
    let from = with_slot(shard, group, &w.tp, w.topic_id, |sp, s, _| {
        sp.next_to_read(s)
    })?;
    let Some(log) = shard.log(&w.tp) else {
        return Err(Failure::NotLeader);
    };
    let Some(from) = from.filter(|o| *o < log.high_watermark()) else {
        return Ok(Delivery::default());
    };
    let read = log
        .read(from, max_bytes, true)
        .await
        .map_err(|e| Failure::Storage(e.to_string()))?;
    let mut headers = Vec::with_capacity(read.batches.len());
    for b in &read.batches {
        let h = BatchHeader::parse(b).map_err(|e| Failure::Storage(format!("{e:?}")))?;
        headers.push((h.base_offset, h.last_offset(), h.is_control()));
    }
    let acquired = with_slot(shard, group, &w.tp, w.topic_id, |sp, s, now| {
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
            if let Some(log) = shard.log(&w.tp) {
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

/// The start offset and state epoch of each share-partition of `group` this shard leads
/// (None: the group has no state there).
pub fn describe(
    shard: &Shard,
    group: &str,
    tps: &[(TopicPartition, Uuid)],
) -> Vec<Result<Option<(i64, i32)>, Failure>> {
    tps.iter()
        .map(|(tp, id)| {
            let has_state = shares(shard)
                .slots
                .borrow()
                .contains_key(&(group.to_string(), tp.clone()))
                || shard
                    .log(tp)
                    .is_some_and(|log| store::path(log.dir(), group).exists());
            if !has_state {
                return match crate::replication::leader_epoch_of(shard, tp) {
                    Some(_) => Ok(None),
                    None => Err(Failure::NotLeader),
                };
            }
            with_slot(shard, group, tp, *id, |sp, _, _| {
                Some((sp.start(), sp.state_epoch))
            })
        })
        .collect()
}

/// The partitions of this shard with stored state of `group`.
pub fn partitions_of(shard: &Shard, group: &str) -> Vec<TopicPartition> {
    let mut out: Vec<TopicPartition> = shard
        .all_logs()
        .into_iter()
        .filter(|(tp, log)| {
            crate::replication::leader_epoch_of(shard, tp).is_some()
                && store::path(log.dir(), group).exists()
        })
        .map(|(tp, _)| tp)
        .collect();
    out.sort();
    out
}

/// Starts the share-partition over at `offset` (AlterShareGroupOffsets).
pub fn alter(
    shard: &Shard,
    group: &str,
    tp: &TopicPartition,
    topic_id: Uuid,
    offset: i64,
) -> Result<(), Failure> {
    with_slot(shard, group, tp, topic_id, |sp, _, _| sp.reset(offset))
}

/// Forgets the share-partition's state (DeleteShareGroupOffsets, DeleteGroups).
pub fn delete(shard: &Shard, group: &str, tp: &TopicPartition) -> Result<(), Failure> {
    if crate::replication::leader_epoch_of(shard, tp).is_none() {
        return Err(Failure::NotLeader);
    }
    shares(shard)
        .slots
        .borrow_mut()
        .remove(&(group.to_string(), tp.clone()));
    if let Some(log) = shard.log(tp) {
        store::remove(&store::path(log.dir(), group))
            .map_err(|e| Failure::Storage(e.to_string()))?;
    }
    Ok(())
}

/// Forgets every share-partition state of `group` this shard leads (DeleteGroups).
pub fn delete_group(shard: &Shard, group: &str) {
    for tp in partitions_of(shard, group) {
        if let Err(e) = delete(shard, group, &tp) {
            tracing::warn!(group, %tp, error = ?e, "deleting share-partition state");
        }
    }
    shares(shard)
        .slots
        .borrow_mut()
        .retain(|(g, _), _| g != group);
}
