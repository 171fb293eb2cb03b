//! The transaction coordinator of one shard: the transactional ids whose `__transaction_state`
//! partition this node leads and this shard owns, their metadata, and the writes that move it.
//!
//! Every function here runs on the owning shard (handlers reach it with `invoke_on`). A
//! transition is computed by the pure machine in [`super::state`], marked pending, written to
//! the partition and waited for until committed to the ISR, and only then installed: a crash
//! or a leadership change in between leaves the old state, and the answer the client got says
//! so. The coordinator epoch is the partition's leader epoch when this node loaded it; work
//! begun under an older epoch (markers, completions) stops when it no longer matches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kafka_protocol::records::Compression;

use super::log;
use super::state::{EndStep, InitStep, ProducerIdEpoch, TxnError, TxnMetadata, TxnState};
use crate::client::batch::{decode_batch, encode_batch, ProducerRecord};
use crate::shard::Shard;
use crate::storage::StorageError;
use crate::types::TopicPartition;

/// The internal topic holding transaction metadata.
pub const TXN_TOPIC: &str = "__transaction_state";

/// What the marker sender is asked to do: write the end of one transaction into each of its
/// partitions (WriteTxnMarkers to their leaders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    /// The `__transaction_state` partition of the transaction, and the coordinator epoch the
    /// markers carry.
    pub txn_partition: i32,
    pub coordinator_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<TopicPartition>,
}

/// Sends a transaction's markers until every partition has it; false if it gave up because
/// this node stopped coordinating the transaction (the next coordinator resumes it).
pub type MarkerSender = Rc<dyn Fn(Rc<Shard>, MarkerJob) -> LocalBoxFuture<'static, bool>>;

/// Per-shard coordinator state. Lives on its shard; mutated only there.
#[derive(Default)]
pub struct TxnCoordinator {
    txns: HashMap<String, TxnMetadata>,
    /// `__transaction_state` partitions loaded here -> their coordinator epoch.
    loaded: HashMap<i32, i32>,
    sender: Option<MarkerSender>,
}

fn service(shard: &Shard) -> Rc<RefCell<TxnCoordinator>> {
    shard.service::<RefCell<TxnCoordinator>>()
}

/// Installs how this shard sends markers (the composition root does, at start-up).
pub fn set_marker_sender(shard: &Shard, sender: MarkerSender) {
    service(shard).borrow_mut().sender = Some(sender);
}

/// The `__transaction_state` partition of a transactional id (Kafka's Java-hash placement).
pub fn txn_partition(shard: &Shard, transactional_id: &str) -> TopicPartition {
    let n = shard.config.txn.log_num_partitions;
    TopicPartition::new(
        TXN_TOPIC,
        crate::group::store::partition_for(transactional_id, n),
    )
}

/// The coordinator epoch under which this shard serves `p`, if it does.
pub fn coordinator_epoch(shard: &Shard, p: i32) -> Option<i32> {
    service(shard).borrow().loaded.get(&p).copied()
}

/// The coordinator epoch for `id`, or why this shard cannot serve it now.
fn serving(shard: &Shard, id: &str) -> Result<i32, TxnError> {
    let tp = txn_partition(shard, id);
    if crate::replication::leader_epoch_of(shard, &tp).is_none() {
        return Err(TxnError::NotCoordinator);
    }
    coordinator_epoch(shard, tp.partition).ok_or(TxnError::LoadInProgress)
}

/// Appends one record to a `__transaction_state` partition and waits until the ISR has it.
async fn append(
    shard: &Shard,
    tp: &TopicPartition,
    key: Bytes,
    value: Option<Bytes>,
) -> Result<(), StorageError> {
    let Some(log) = shard.log(tp) else {
        return Err(StorageError::Closed(tp.dir_name().into()));
    };
    let record = ProducerRecord {
        key: Some(key),
        value,
        headers: Vec::new(),
    };
    let batch = encode_batch(&[record], shard.now_ms(), Compression::None).map_err(|e| {
        StorageError::Corrupt {
            path: tp.dir_name().into(),
            position: 0,
            why: e.to_string(),
        }
    })?;
    let info = log.append(batch.clone(), shard.now_ms())?;
    let epoch = log.leader_epoch();
    log.wait_committed(info.last_offset + 1, epoch).await
}

/// Writes `next` (None: the id's tombstone) for `id` and installs it once committed, if the
/// coordinator epoch is still `epoch`. The id's current metadata is pending meanwhile.
async fn write(
    shard: &Shard,
    id: &str,
    next: Option<TxnMetadata>,
    epoch: i32,
) -> Result<(), TxnError> {
    let tp = txn_partition(shard, id);
    {
        let svc = service(shard);
        let mut c = svc.borrow_mut();
        let cur = c.txns.get_mut(id).ok_or(TxnError::NotCoordinator)?;
        if cur.pending.is_some() {
            return Err(TxnError::Concurrent);
        }
        cur.pending = Some(next.as_ref().map_or(TxnState::Dead, |n| n.state));
    }
    let value = next.as_ref().map(log::value);
    let written = append(shard, &tp, log::key(id), value).await;
    let svc = service(shard);
    let mut c = svc.borrow_mut();
    let still = c.loaded.get(&tp.partition) == Some(&epoch);
    match (written, still) {
        (Ok(()), true) => {
            match next {
                Some(n) => c.txns.insert(id.to_string(), n),
                None => c.txns.remove(id),
            };
            Ok(())
        }
        (Ok(()), false) => Err(TxnError::NotCoordinator),
        (Err(e), _) => {
            if let Some(cur) = c.txns.get_mut(id) {
                cur.pending = None;
            }
            tracing::warn!(transactional_id = %id, error = %e, "writing transaction state failed");
            Err(match e {
                StorageError::LeadershipLost { .. } | StorageError::Closed(_) => {
                    TxnError::NotCoordinator
                }
                _ => TxnError::NotAvailable,
            })
        }
    }
}

/// A producer id never handed out before, from the metadata core.
async fn new_producer_id(shard: &Rc<Shard>) -> Result<i64, TxnError> {
    let call = shard.invoke_on(shard.metadata_core(), |s| async move {
        s.next_producer_id().await.map_err(|e| e.to_string())
    });
    match call.await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "allocating a producer id failed");
            Err(TxnError::NotAvailable)
        }
        Err(_) => Err(TxnError::NotAvailable),
    }
}

/// InitProducerId with a transactional id: the producer id and epoch the producer uses from
/// now on. An open transaction of an older instance is aborted first (CONCURRENT_TRANSACTIONS
/// until that is done, and the producer retries).
pub async fn init_producer_id(
    shard: Rc<Shard>,
    id: String,
    timeout_ms: i32,
    expected: Option<ProducerIdEpoch>,
) -> Result<ProducerIdEpoch, TxnError> {
    if timeout_ms <= 0 || timeout_ms > shard.config.txn.max_timeout_ms {
        return Err(TxnError::InvalidTimeout);
    }
    serving(&shard, &id)?;
    let needs = {
        let c = service(&shard);
        let c = c.borrow();
        TxnMetadata::init_needs_producer_id(c.txns.get(&id), expected)
    };
    let fresh = if needs {
        Some(new_producer_id(&shard).await?)
    } else {
        None
    };
    let epoch = serving(&shard, &id)?;
    let now = shard.now_ms();
    let step = {
        let svc = service(&shard);
        let mut c = svc.borrow_mut();
        let rotation = if c.txns.contains_key(&id) {
            fresh
        } else {
            // New here (or forgotten meanwhile): the fresh id is its producer id.
            let pid = fresh.ok_or(TxnError::Concurrent)?;
            let m = TxnMetadata::new(&id, pid, timeout_ms, now);
            c.txns.insert(id.clone(), m);
            None
        };
        let cur = c.txns.get(&id).ok_or(TxnError::Concurrent)?;
        cur.init(timeout_ms, expected, rotation, now)?
    };
    match step {
        InitStep::Write(next) => {
            let answer = (next.producer_id, next.producer_epoch);
            write(&shard, &id, Some(next), epoch).await?;
            Ok(answer)
        }
        InitStep::FenceAndAbort(next) => {
            write(&shard, &id, Some(next.clone()), epoch).await?;
            tracing::info!(transactional_id = %id, "fenced the previous producer; aborting its transaction");
            start_markers(&shard, &id, next, epoch);
            Err(TxnError::Concurrent)
        }
    }
}

/// AddPartitionsToTxn (and AddOffsetsToTxn with the group's offsets partition).
pub async fn add_partitions(
    shard: Rc<Shard>,
    id: String,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TopicPartition>,
) -> Result<(), TxnError> {
    let epoch = serving(&shard, &id)?;
    let next = {
        let svc = service(&shard);
        let c = svc.borrow();
        let cur = c.txns.get(&id).ok_or(TxnError::InvalidMapping)?;
        cur.add_partitions(producer_id, producer_epoch, &partitions, shard.now_ms())?
    };
    match next {
        None => Ok(()),
        Some(n) => write(&shard, &id, Some(n), epoch).await,
    }
}

/// AddPartitionsToTxn verify_only: per partition, whether it is in the open transaction.
pub fn verify(
    shard: &Shard,
    id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[TopicPartition],
) -> Result<Vec<Option<TxnError>>, TxnError> {
    serving(shard, id)?;
    let svc = service(shard);
    let c = svc.borrow();
    let cur = c.txns.get(id).ok_or(TxnError::InvalidMapping)?;
    cur.verify(producer_id, producer_epoch, partitions)
}

/// EndTxn: answered once PrepareCommit/PrepareAbort is committed; the markers and the
/// completion follow in the background. Returns the producer id and epoch to use next.
pub async fn end_txn(
    shard: Rc<Shard>,
    id: String,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    client_version: i16,
) -> Result<ProducerIdEpoch, TxnError> {
    serving(&shard, &id)?;
    let needs = {
        let svc = service(&shard);
        let c = svc.borrow();
        let cur = c.txns.get(&id).ok_or(TxnError::InvalidMapping)?;
        cur.end_needs_producer_id(client_version)
    };
    let fresh = if needs {
        Some(new_producer_id(&shard).await?)
    } else {
        None
    };
    let epoch = serving(&shard, &id)?;
    let step = {
        let svc = service(&shard);
        let c = svc.borrow();
        let cur = c.txns.get(&id).ok_or(TxnError::InvalidMapping)?;
        cur.end(
            producer_id,
            producer_epoch,
            commit,
            client_version,
            fresh,
            shard.now_ms(),
        )?
    };
    match step {
        EndStep::Done(answer) => Ok(answer),
        EndStep::Write(next) => {
            let answer = next.answer_after_end();
            write(&shard, &id, Some(next.clone()), epoch).await?;
            start_markers(&shard, &id, next, epoch);
            Ok(answer)
        }
    }
}

/// Sends the markers of a prepared transaction in the background, then completes it.
fn start_markers(shard: &Rc<Shard>, id: &str, prepared: TxnMetadata, epoch: i32) {
    let Some(sender) = service(shard).borrow().sender.clone() else {
        tracing::error!(transactional_id = %id, "no marker sender on this shard");
        return;
    };
    let job = MarkerJob {
        txn_partition: txn_partition(shard, id).partition,
        coordinator_epoch: epoch,
        producer_id: prepared.producer_id,
        producer_epoch: prepared.producer_epoch,
        commit: prepared.state == TxnState::PrepareCommit,
        partitions: prepared.partitions.iter().cloned().collect(),
    };
    let shard = shard.clone();
    let id = id.to_string();
    glommio::spawn_local(async move {
        if sender(shard.clone(), job).await {
            complete(&shard, &id, &prepared, epoch).await;
        }
    })
    .detach();
}

/// How long a completion that could not be written waits before it is tried again.
const COMPLETE_RETRY: Duration = Duration::from_millis(200);

/// Writes CompleteCommit/CompleteAbort for a transaction whose markers are all written.
async fn complete(shard: &Rc<Shard>, id: &str, prepared: &TxnMetadata, epoch: i32) {
    loop {
        let next = {
            let svc = service(shard);
            let c = svc.borrow();
            if c.loaded.get(&txn_partition(shard, id).partition) != Some(&epoch) {
                return;
            }
            match c.txns.get(id) {
                Some(cur)
                    if cur.state == prepared.state
                        && cur.producer_id == prepared.producer_id
                        && cur.producer_epoch == prepared.producer_epoch =>
                {
                    (cur.pending.is_none()).then(|| cur.complete(shard.now_ms()))
                }
                _ => return,
            }
        };
        if let Some(next) = next {
            match write(shard, id, Some(next), epoch).await {
                Ok(()) => return,
                Err(TxnError::NotCoordinator) => return,
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "completing failed; retrying")
                }
            }
        }
        glommio::timer::sleep(COMPLETE_RETRY).await;
    }
}

/// One transactional id as DescribeTransactions and ListTransactions report it.
pub fn describe(shard: &Shard, id: &str) -> Result<TxnMetadata, TxnError> {
    serving(shard, id)?;
    let svc = service(shard);
    let c = svc.borrow();
    c.txns
        .get(id)
        .filter(|m| m.producer_epoch >= 0 || m.state != TxnState::Empty)
        .cloned()
        .ok_or(TxnError::NotFound)
}

/// Filters of ListTransactions; empty lists match everything, a negative duration too. The
/// duration counts from the start of the id's last transaction, as Kafka's does.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<i64>,
    pub min_duration_ms: i64,
}

/// The transactional ids this shard coordinates that pass `filter`.
pub fn list(shard: &Shard, filter: &ListFilter) -> Vec<TxnMetadata> {
    let now = shard.now_ms();
    let svc = service(shard);
    let c = svc.borrow();
    c.txns
        .values()
        .filter(|m| m.producer_epoch >= 0 || m.state != TxnState::Empty)
        .filter(|m| filter.states.is_empty() || filter.states.contains(&m.state))
        .filter(|m| filter.producer_ids.is_empty() || filter.producer_ids.contains(&m.producer_id))
        .filter(|m| filter.min_duration_ms < 0 || now - m.start_ms > filter.min_duration_ms)
        .cloned()
        .collect()
}

/// Whether some `__transaction_state` partition this shard owns and leads is still loading.
pub fn loading(shard: &Shard) -> bool {
    let c = service(shard);
    let c = c.borrow();
    shard.all_logs().iter().any(|(tp, _)| {
        tp.topic == TXN_TOPIC
            && crate::replication::leader_epoch_of(shard, tp).is_some()
            && !c.loaded.contains_key(&tp.partition)
    })
}

/// This node now leads `__transaction_state` partition `p`: replays it into the metadata of
/// its ids, then resumes the markers of transactions caught between prepare and complete.
pub async fn load_partition(shard: Rc<Shard>, p: i32) {
    let tp = TopicPartition::new(TXN_TOPIC, p);
    let Some(log) = shard.log(&tp) else {
        return;
    };
    let Some(epoch) = crate::replication::leader_epoch_of(&shard, &tp) else {
        return;
    };
    let mut found: HashMap<String, Option<TxnMetadata>> = HashMap::new();
    let replayed = log
        .replay_to_end(|_, batch| replay_batch(batch, &mut found))
        .await;
    if let Err(e) = replayed {
        tracing::error!(partition = %tp, error = %e, "loading transactions stopped");
    }
    if crate::replication::leader_epoch_of(&shard, &tp) != Some(epoch) {
        return;
    }
    let resume: Vec<(String, TxnMetadata)> = {
        let svc = service(&shard);
        let mut c = svc.borrow_mut();
        for (id, m) in found.into_iter() {
            if let Some(m) = m {
                c.txns.insert(id, m);
            }
        }
        c.loaded.insert(p, epoch);
        c.txns
            .iter()
            .filter(|(id, m)| {
                matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
                    && txn_partition(&shard, id).partition == p
            })
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect()
    };
    tracing::info!(partition = %tp, epoch, resumed = resume.len(), "loaded transactions");
    for (id, m) in resume {
        start_markers(&shard, &id, m, epoch);
    }
}

fn replay_batch(batch: Bytes, found: &mut HashMap<String, Option<TxnMetadata>>) {
    let records = match decode_batch(batch) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "skipping undecodable __transaction_state batch");
            return;
        }
    };
    for r in records {
        let Some(key) = r.key else { continue };
        let id = match log::decode_key(key) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "skipping record");
                continue;
            }
        };
        match r.value.map(|v| log::decode_value(&id, v)).transpose() {
            Ok(m) => {
                found.insert(id, m);
            }
            Err(e) => tracing::warn!(transactional_id = %id, error = %e, "skipping record"),
        }
    }
}

/// This node no longer leads partition `p`: its ids go (their coordinator moved); marker
/// senders and completions of the old epoch stop on their own.
pub fn unload_partition(shard: &Shard, p: i32) {
    let svc = service(shard);
    let mut c = svc.borrow_mut();
    if c.loaded.remove(&p).is_none() {
        return;
    }
    let n = shard.config.txn.log_num_partitions;
    c.txns
        .retain(|id, _| crate::group::store::partition_for(id, n) != p);
    tracing::info!(partition = p, "unloaded transactions");
}

/// Aborts transactions past their timeout (bumping the epoch, which fences the producer, as
/// Kafka's abortTimedOutTransactions does) and forgets ids idle past
/// `transactional.id.expiration.ms`.
pub async fn run_timers(shard: Rc<Shard>) {
    let abort_every = shard.config.txn.abort_timed_out_interval_ms;
    let expire_every = shard.config.txn.remove_expired_interval_ms as i64;
    let mut last_expiry = shard.now_ms();
    loop {
        glommio::timer::sleep(Duration::from_millis(abort_every)).await;
        if service(&shard).borrow().loaded.is_empty() {
            continue;
        }
        abort_timed_out(&shard).await;
        let now = shard.now_ms();
        if now - last_expiry >= expire_every {
            last_expiry = now;
            expire_ids(&shard).await;
        }
    }
}

async fn abort_timed_out(shard: &Rc<Shard>) {
    let now = shard.now_ms();
    let due: Vec<(String, TxnMetadata)> = {
        let svc = service(shard);
        let c = svc.borrow();
        c.txns
            .iter()
            .filter(|(_, m)| m.timed_out(now))
            .map(|(id, m)| (id.clone(), m.fence_and_abort(now)))
            .collect()
    };
    for (id, next) in due {
        let Ok(epoch) = serving(shard, &id) else {
            continue;
        };
        match write(shard, &id, Some(next.clone()), epoch).await {
            Ok(()) => {
                tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                start_markers(shard, &id, next, epoch);
            }
            Err(e) => tracing::debug!(transactional_id = %id, error = %e, "timeout abort skipped"),
        }
    }
}

async fn expire_ids(shard: &Rc<Shard>) {
    let now = shard.now_ms();
    let expiration = shard.config.txn.id_expiration_ms;
    let due: Vec<String> = {
        let svc = service(shard);
        let c = svc.borrow();
        c.txns
            .iter()
            .filter(|(_, m)| m.expired(now, expiration))
            .map(|(id, _)| id.clone())
            .collect()
    };
    for id in due {
        let Ok(epoch) = serving(shard, &id) else {
            continue;
        };
        match write(shard, &id, None, epoch).await {
            Ok(()) => tracing::info!(transactional_id = %id, "expired an idle transactional id"),
            Err(e) => tracing::debug!(transactional_id = %id, error = %e, "expiry skipped"),
        }
    }
}
