//! Produce: validate each partition's batch once, send it to the owning shard, which appends
//! it in place; answer when the writes are done (acks=1/all) or not at all (acks=0).
//!
//! Records are never decoded here: the batch header and CRC-32C are checked and the owner
//! rewrites the base offset in the bytes it stores.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{errors, reply, verifying, Outcome, Remote};
use crate::config::{LogConfig, TimestampType};
use crate::metrics;
use crate::producer::Check;
use crate::protocol::{decode_body, legacy_produce, Request};
use crate::record;
use crate::security::acl::AclOperation;
use crate::shard::Shard;
use crate::storage::AppendInfo;
use crate::types::{ShardId, TopicPartition};

/// One partition's batch on its way to the owner. `slot` is its place in the response.
struct AppendItem {
    slot: (usize, usize),
    tp: TopicPartition,
    batch: Bytes,
    /// The topic's min.insync.replicas, checked by the leader for acks=all.
    min_insync: i32,
    /// The request's transactional id, for the coordinator check a transaction's first batch
    /// on a partition needs.
    transactional_id: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct PartResult {
    error: i16,
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

impl PartResult {
    fn err(e: ResponseError) -> Self {
        PartResult {
            error: e.code(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// Checks a partition's records as Kafka's produce path does, before anything is written, and
/// returns the batch to store: recompressed when the topic's `compression.type` names another
/// codec than the producer's.
fn check_records(
    records: Option<&Bytes>,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Bytes, ResponseError> {
    let records = match records {
        Some(r) if !r.is_empty() => r,
        _ => return Err(ResponseError::InvalidRecord),
    };
    let header = record::BatchHeader::parse(records).map_err(|e| errors::batch(&e))?;
    if header.magic != 2 {
        return Err(ResponseError::InvalidRecord);
    }
    if header.is_control() {
        // Kafka's LogValidator: clients may not write control records (markers come from the
        // transaction coordinator through WriteTxnMarkers).
        return Err(ResponseError::InvalidRecord);
    }
    if header.total_bytes() < records.len() {
        // Produce v3+ carries exactly one batch per partition.
        return Err(ResponseError::InvalidRecord);
    }
    if records.len() > config.max_message_bytes as usize {
        return Err(ResponseError::MessageTooLarge);
    }
    record::validate_produced(records).map_err(|e| errors::batch(&e))?;
    if config.compacted() {
        // Kafka's LogValidator: a compacted topic cannot keep a record without a key.
        match crate::storage::all_keyed(records, &header) {
            Ok(true) => {}
            Ok(false) => return Err(ResponseError::InvalidRecord),
            Err(crate::storage::RecordError::Codec(e)) => return Err(errors::codec(&e)),
            Err(_) => return Err(ResponseError::CorruptMessage),
        }
    }
    let fixed = fill_max_timestamp(records, &header, config)?;
    let (records, header) = match &fixed {
        Some(b) => (
            b,
            record::BatchHeader::parse(b).map_err(|e| errors::batch(&e))?,
        ),
        None => (records, header),
    };
    check_timestamps(&header, config, now_ms)?;
    match crate::compression::for_topic(records, config) {
        Ok(None) => Ok(records.clone()),
        Ok(Some(b)) if b.len() > config.max_message_bytes as usize => {
            Err(ResponseError::MessageTooLarge)
        }
        Ok(Some(b)) => Ok(b),
        Err(e) => Err(errors::codec(&e)),
    }
}

/// Some producers (sarama 1.22) leave a CreateTime batch's max timestamp at -1 while its
/// records carry real ones; Kafka's validator recomputes it, and time lookups and retention
/// depend on it. Only such batches are decoded, once, here.
fn fill_max_timestamp(
    records: &Bytes,
    header: &record::BatchHeader,
    config: &LogConfig,
) -> Result<Option<Bytes>, ResponseError> {
    const NO_TIMESTAMP: i64 = -1;
    if header.max_timestamp != NO_TIMESTAMP
        || config.timestamp_type != TimestampType::CreateTime
        || header.is_log_append_time()
    {
        return Ok(None);
    }
    let decoded = crate::client::batch::decode_batch(records.clone())
        .map_err(|_| ResponseError::CorruptMessage)?;
    let max = decoded
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(NO_TIMESTAMP);
    if max == NO_TIMESTAMP {
        return Ok(None);
    }
    let mut fixed = BytesMut::from(&records[..]);
    record::set_max_timestamp(&mut fixed, max);
    Ok(Some(fixed.freeze()))
}

/// message.timestamp.before/after.max.ms for CreateTime topics (INVALID_TIMESTAMP), checked
/// on the batch's first and largest timestamps; records are not decoded for it.
fn check_timestamps(
    header: &record::BatchHeader,
    config: &LogConfig,
    now_ms: i64,
) -> Result<(), ResponseError> {
    if config.timestamp_type != TimestampType::CreateTime {
        return Ok(());
    }
    const NO_TIMESTAMP: i64 = -1;
    let too_old =
        |ts: i64| ts != NO_TIMESTAMP && now_ms.saturating_sub(ts) > config.timestamp_before_max_ms;
    let too_new =
        |ts: i64| ts != NO_TIMESTAMP && ts.saturating_sub(now_ms) > config.timestamp_after_max_ms;
    if too_old(header.base_timestamp) || too_new(header.max_timestamp) {
        return Err(ResponseError::InvalidTimestamp);
    }
    Ok(())
}

/// Kafka's produce handler: transactional records need the request's transactional id
/// (TRANSACTIONAL_ID_AUTHORIZATION_FAILED without one).
fn check_transactional_id(batch: Bytes, has_id: bool) -> Result<Bytes, ResponseError> {
    let transactional = record::BatchHeader::parse(&batch).is_ok_and(|h| h.is_transactional());
    if transactional && !has_id {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    }
    Ok(batch)
}

pub fn handle(shard: &Rc<Shard>, req: Request, remote: Remote) -> LocalBoxFuture<'static, Outcome> {
    if req.api_version < 3 {
        let refused = legacy_produce::refuse(req.correlation_id, req.api_version, req.body);
        return super::ready(refused.map_or(
            Outcome::Close("malformed produce v0-v2".to_string()),
            Outcome::Reply,
        ));
    }
    let body: ProduceRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let acks = body.acks;
    let transactional_id = body.transactional_id.as_ref().map(|t| t.to_string());
    let timeout_ms = body.timeout_ms.max(0) as u64;
    let mut results: Vec<Vec<(i32, PartResult)>> = Vec::with_capacity(body.topic_data.len());
    let mut by_owner: BTreeMap<ShardId, Vec<AppendItem>> = BTreeMap::new();
    let snap = shard.snapshot();
    let now = shard.now_ms();
    // Kafka's checks: a request carrying transactional batches needs WRITE on its
    // transactional id (and one to check), then each topic WRITE.
    let access = super::access::Access::of(shard, &req);
    let transactional_id_denied = access.enabled()
        && has_transactional_batches(&body)
        && !transactional_id
            .as_deref()
            .is_some_and(|t| access.transactional_id(AclOperation::Write, t));
    for (ti, topic) in body.topic_data.iter().enumerate() {
        let meta = snap.topic(topic.name.as_str());
        let topic_denied =
            !transactional_id_denied && !access.topic(AclOperation::Write, topic.name.as_str());
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for (pi, p) in topic.partition_data.iter().enumerate() {
            let checked = if transactional_id_denied {
                Err(ResponseError::TransactionalIdAuthorizationFailed)
            } else if topic_denied {
                Err(ResponseError::TopicAuthorizationFailed)
            } else if !matches!(acks, -1..=1) {
                Err(ResponseError::InvalidRequiredAcks)
            } else {
                match meta {
                    Some(m) if crate::group::is_internal_topic(&m.name) => {
                        Err(ResponseError::InvalidTopicException)
                    }
                    Some(m) if p.index >= 0 && p.index < m.partitions => {
                        check_records(p.records.as_ref(), &m.log_config, now)
                            .and_then(|b| check_transactional_id(b, transactional_id.is_some()))
                            .map(|b| (b, m.log_config.min_insync_replicas))
                    }
                    _ => Err(ResponseError::UnknownTopicOrPartition),
                }
            };
            match checked {
                Ok((batch, min_insync)) => {
                    let tp = TopicPartition::new(topic.name.as_str(), p.index);
                    let owner = shard.owner_of(&tp.topic, tp.partition);
                    by_owner.entry(owner).or_default().push(AppendItem {
                        slot: (ti, pi),
                        tp,
                        batch,
                        min_insync,
                        transactional_id: transactional_id.clone(),
                    });
                    parts.push((p.index, PartResult::err(ResponseError::UnknownServerError)));
                }
                Err(e) => parts.push((p.index, PartResult::err(e))),
            }
        }
        results.push(parts);
    }
    // Queue every append now, in request order; only the waiting happens later.
    let calls: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, items)| {
            shard.invoke_on(owner, move |s| append_on_owner(s, items, acks, timeout_ms))
        })
        .collect();
    Box::pin(async move {
        for (done, call) in futures::future::join_all(calls)
            .await
            .into_iter()
            .enumerate()
        {
            match call {
                Ok((outs, waited)) => {
                    remote.set(remote.get().max(waited));
                    for (slot, r) in outs {
                        results[slot.0][slot.1].1 = r;
                    }
                }
                Err(e) => tracing::warn!(call = done, error = %e, "produce to shard failed"),
            }
        }
        finish(&req, &body, results, acks)
    })
}

/// Whether the request carries transactional batches (Kafka looks at each partition's first
/// batch header; records are not decoded).
fn has_transactional_batches(body: &ProduceRequest) -> bool {
    body.topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_ref())
        .any(|r| record::BatchHeader::parse(r).is_ok_and(|h| h.is_transactional()))
}

/// Runs on the owner: appends every batch now (synchronously, so in arrival order), then
/// waits as the producer asked: not at all (acks=0), for the local write (acks=1), or for the
/// ISR to hold it (acks=all, up to the request's timeout: REQUEST_TIMED_OUT after).
///
/// A transactional batch that would start its producer's transaction on a partition is
/// appended only once the coordinator confirms the partition is in the transaction (Kafka's
/// KIP-890 verification); later batches of the same producer on that partition queue behind
/// it ([`verifying`]), the others do not wait for it.
fn append_on_owner(
    shard: Rc<Shard>,
    items: Vec<AppendItem>,
    acks: i16,
    timeout_ms: u64,
) -> impl std::future::Future<Output = OwnerAnswer> {
    let now = shard.now_ms();
    let mut queued = Vec::new();
    let mut appended: Vec<Appended> = Vec::with_capacity(items.len());
    for item in items {
        let pid = producer_id(&item);
        if needs_verification(&shard, &item).is_some()
            || verifying::is_waiting(&shard, &item.tp, pid)
        {
            let place = verifying::enqueue(&shard, &item.tp, pid);
            queued.push((item, place));
        } else {
            appended.push(append_now(&shard, &item, now, acks));
        }
    }
    async move {
        let verified = queued.into_iter().map(|(item, mut place)| {
            let shard = shard.clone();
            async move {
                place.turn().await;
                // The batch before may have started the transaction, or failed to.
                if let Some((pid, epoch)) = needs_verification(&shard, &item) {
                    let tid = item.transactional_id.clone().unwrap_or_default();
                    let ask = super::transactions::verify_partition(
                        &shard,
                        tid,
                        pid,
                        epoch,
                        item.tp.clone(),
                    );
                    if let Err(e) = ask.await {
                        return (item.slot, None, -1, PartResult::err(e));
                    }
                }
                // Appended before the place is let go: the next batch sees it.
                append_now(&shard, &item, shard.now_ms(), acks)
            }
        });
        appended.extend(futures::future::join_all(verified).await);
        let mut out = Vec::with_capacity(appended.len());
        let mut remote = Duration::ZERO;
        for (slot, pending, epoch, r) in appended {
            let r = match pending {
                Some((log, end)) => {
                    let (r, waited) = wait_for_acks(&log, end, epoch, r, acks, timeout_ms).await;
                    remote = remote.max(waited);
                    r
                }
                None => r,
            };
            out.push((slot, r));
        }
        (out, remote)
    }
}

/// An owner's answers by slot, and the longest it waited for the ISR (remote time).
type OwnerAnswer = (Vec<((usize, usize), PartResult)>, Duration);

/// A batch handled on its owner: its slot, the log and end offset to wait for, the leader
/// epoch it was written in, and the answer so far.
type Appended = ((usize, usize), Pending, i32, PartResult);

fn append_now(shard: &Shard, item: &AppendItem, now: i64, acks: i16) -> Appended {
    let (pending, r) = append_one(shard, item, now, acks);
    // The epoch the write was made in: it commits only while this replica leads it.
    let epoch = pending.as_ref().map_or(-1, |(log, _)| log.leader_epoch());
    (item.slot, pending, epoch, r)
}

/// The batch's producer id (-1 for none, or a batch whose header does not parse).
fn producer_id(item: &AppendItem) -> i64 {
    record::BatchHeader::parse(&item.batch).map_or(-1, |h| h.producer_id)
}

/// The producer id and epoch to verify with the coordinator when this batch would start a
/// transaction on its partition (and the request names a transactional id to ask about).
fn needs_verification(shard: &Shard, item: &AppendItem) -> Option<(i64, i16)> {
    if !shard.config.txn.partition_verification {
        return None;
    }
    item.transactional_id.as_ref()?;
    let header = record::BatchHeader::parse(&item.batch).ok()?;
    if !header.is_transactional() {
        return None;
    }
    let log = shard.log(&item.tp)?;
    log.starts_transaction(&header)
        .then_some((header.producer_id, header.producer_epoch))
}

async fn wait_for_acks(
    log: &crate::storage::PartitionLog,
    end: i64,
    epoch: i32,
    r: PartResult,
    acks: i16,
    timeout_ms: u64,
) -> (PartResult, Duration) {
    match acks {
        0 => (r, Duration::ZERO),
        1 => match log.wait_written(end).await {
            Ok(()) => (r, Duration::ZERO),
            Err(e) => (PartResult::err(errors::storage(&e)), Duration::ZERO),
        },
        _ => {
            // Written here first (local time), then held by the ISR (remote time).
            let wait = async {
                log.wait_written(end).await?;
                let written = Instant::now();
                log.wait_committed(end, epoch).await.map(|()| written)
            };
            let limit = Duration::from_millis(timeout_ms);
            match crate::metadata::raft::transport::within(limit, wait).await {
                Some(Ok(written)) => (r, written.elapsed()),
                Some(Err(e)) => (PartResult::err(errors::storage(&e)), Duration::ZERO),
                None => (PartResult::err(ResponseError::RequestTimedOut), limit),
            }
        }
    }
}

/// Appends one partition's batch on its owner, unless the producer check says it is a retry
/// (answered with its first offsets), out of order or fenced. Returns the log and end offset
/// to wait for, and the answer.
fn append_one(shard: &Shard, item: &AppendItem, now: i64, acks: i16) -> (Pending, PartResult) {
    let (Some(log), Some(isr)) = (
        shard.log(&item.tp),
        crate::replication::isr_size_of(shard, &item.tp),
    ) else {
        return (None, PartResult::err(ResponseError::NotLeaderOrFollower));
    };
    if acks == -1 && isr < item.min_insync.max(1) as usize {
        return (None, PartResult::err(ResponseError::NotEnoughReplicas));
    }
    // The batch was validated on the way in; its header parses.
    let Ok(header) = record::BatchHeader::parse(&item.batch) else {
        return (None, PartResult::err(ResponseError::CorruptMessage));
    };
    match log.producer_check(&header) {
        Check::Reject(e) => {
            // Rare, and the clue to any idempotence trouble: what was refused, and where the
            // log stood.
            tracing::info!(
                partition = %item.tp,
                producer_id = header.producer_id,
                producer_epoch = header.producer_epoch,
                base_sequence = header.base_sequence,
                records = header.record_count,
                log_end = log.log_end_offset(),
                leader_epoch = log.latest_epoch().unwrap_or(-1),
                error = %e,
                "produce refused by the producer state"
            );
            (None, PartResult::err(errors::producer(&e)))
        }
        Check::Duplicate {
            base_offset,
            last_offset,
        } => {
            let r = PartResult {
                error: 0,
                base_offset,
                log_append_time_ms: -1,
                log_start_offset: log.log_start_offset(),
            };
            (Some((log, last_offset + 1)), r)
        }
        Check::Append => match log.append(item.batch.clone(), now) {
            Ok(info) => {
                metrics::count_topic(&item.tp.topic, |t| {
                    t.bytes_in += item.batch.len() as u64;
                    t.messages_in += header.record_count.max(0) as u64;
                });
                let r = ok_result(info, log.log_start_offset());
                (Some((log, info.last_offset + 1)), r)
            }
            Err(e) => (None, PartResult::err(errors::storage(&e))),
        },
    }
}

/// A log and the end offset an acknowledgement waits for.
type Pending = Option<(Rc<crate::storage::PartitionLog>, i64)>;

fn ok_result(info: AppendInfo, log_start_offset: i64) -> PartResult {
    PartResult {
        error: 0,
        base_offset: info.base_offset,
        log_append_time_ms: info.log_append_time_ms,
        log_start_offset,
    }
}

fn finish(
    req: &Request,
    body: &ProduceRequest,
    results: Vec<Vec<(i32, PartResult)>>,
    acks: i16,
) -> Outcome {
    for (_, r) in results.iter().flatten() {
        metrics::request_error(req.api_key as i16, r.error);
    }
    if acks == 0 {
        // The producer reads no answer; closing is how Kafka tells it something failed.
        let failed = results.iter().flatten().any(|(_, r)| r.error != 0);
        return if failed {
            Outcome::Close("acks=0 produce failed".to_string())
        } else {
            Outcome::NoReply
        };
    }
    let responses = body
        .topic_data
        .iter()
        .zip(results)
        .map(|(topic, parts)| {
            let partition_responses = parts
                .into_iter()
                .map(|(index, r)| {
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(r.error)
                        .with_base_offset(r.base_offset)
                        .with_log_append_time_ms(r.log_append_time_ms)
                        .with_log_start_offset(r.log_start_offset)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partition_responses)
        })
        .collect();
    reply(req, &ProduceResponse::default().with_responses(responses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::make_batch;

    #[test]
    fn produce_checks_map_to_kafka_codes() {
        let good = Bytes::from(make_batch(0, 3, 1));
        let mut two = make_batch(0, 1, 1);
        two.extend_from_slice(&make_batch(0, 1, 1));
        let mut crc = make_batch(0, 2, 1);
        let last = crc.len() - 1;
        crc[last] ^= 1;
        let mut magic = make_batch(0, 2, 1);
        magic[16] = 1;
        type Case = (&'static str, Option<Bytes>, u32, Result<(), ResponseError>);
        let now = 1;
        let table: Vec<Case> = vec![
            ("good", Some(good.clone()), 1 << 20, Ok(())),
            (
                "an hour and more ahead",
                Some(Bytes::from(make_batch(0, 2, now + 3_600_001))),
                1 << 20,
                Err(ResponseError::InvalidTimestamp),
            ),
            (
                "a control batch (only markers from the coordinator are)",
                Some(Bytes::from(crate::producer::marker::build(
                    1,
                    0,
                    crate::producer::Marker {
                        commit: true,
                        coordinator_epoch: 0,
                    },
                    now,
                ))),
                1 << 20,
                Err(ResponseError::InvalidRecord),
            ),
            (
                "null records",
                None,
                1 << 20,
                Err(ResponseError::InvalidRecord),
            ),
            (
                "empty",
                Some(Bytes::new()),
                1 << 20,
                Err(ResponseError::InvalidRecord),
            ),
            (
                "two batches",
                Some(two.into()),
                1 << 20,
                Err(ResponseError::InvalidRecord),
            ),
            (
                "bad crc",
                Some(crc.into()),
                1 << 20,
                Err(ResponseError::CorruptMessage),
            ),
            (
                "magic 1",
                Some(magic.into()),
                1 << 20,
                Err(ResponseError::InvalidRecord),
            ),
            (
                "too large",
                Some(good.clone()),
                10,
                Err(ResponseError::MessageTooLarge),
            ),
            (
                "short",
                Some(good.slice(..30)),
                1 << 20,
                Err(ResponseError::CorruptMessage),
            ),
            (
                "truncated",
                Some(good.slice(..good.len() - 1)),
                1 << 20,
                Err(ResponseError::CorruptMessage),
            ),
        ];
        for (name, records, max, want) in table {
            let config = LogConfig {
                max_message_bytes: max,
                ..LogConfig::default()
            };
            let got = check_records(records.as_ref(), &config, now).map(|_| ());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key() {
        use crate::client::batch::{encode_batch, ProducerRecord};
        let now = 1_700_000_000_000;
        let batch = |key: Option<&'static [u8]>| {
            let records = vec![
                ProducerRecord {
                    key: Some(Bytes::from_static(b"k")),
                    value: Some(Bytes::from_static(b"v")),
                    ..Default::default()
                },
                ProducerRecord {
                    key: key.map(Bytes::from_static),
                    value: Some(Bytes::from_static(b"v")),
                    ..Default::default()
                },
            ];
            encode_batch(&records, now, kafka_protocol::records::Compression::Lz4).unwrap()
        };
        let compacted = LogConfig {
            cleanup_policy: "compact,delete".to_string(),
            ..Default::default()
        };
        assert_eq!(
            check_records(Some(&batch(None)), &compacted, now),
            Err(ResponseError::InvalidRecord)
        );
        assert!(check_records(Some(&batch(Some(b"x"))), &compacted, now).is_ok());
        assert!(check_records(Some(&batch(None)), &LogConfig::default(), now).is_ok());
    }

    #[test]
    fn a_batch_without_its_max_timestamp_gets_one_from_its_records() {
        use crate::client::batch::{encode_batch, ProducerRecord};
        let records: Vec<ProducerRecord> = (0..3)
            .map(|_| ProducerRecord {
                value: Some(Bytes::from_static(b"v")),
                ..Default::default()
            })
            .collect();
        let batch = encode_batch(
            &records,
            1_700_000_000_000,
            kafka_protocol::records::Compression::Gzip,
        )
        .unwrap();
        let mut broken = BytesMut::from(&batch[..]);
        record::set_max_timestamp(&mut broken, -1);
        let stored = check_records(
            Some(&broken.freeze()),
            &LogConfig::default(),
            1_700_000_000_000,
        )
        .unwrap();
        let h = record::validate(&stored).unwrap();
        assert_eq!(h.max_timestamp, 1_700_000_000_000);
    }
}
