//! ShareFetch and ShareAcknowledge (KIP-932): share sessions on this shard, then the
//! share-partitions on their owners, which apply acknowledgements first and then acquire
//! records for the member. A fetch that acquires nothing long-polls (up to max_wait_ms) for
//! new data or for a record lock to run out, then tries again.
//!
//! Records go back as the log holds them: whole batches, copied into the response, with the
//! acquired offset ranges beside them (a batch may also hold offsets acquired by others; the
//! client delivers only its ranges).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{reply, Outcome, Remote};
use crate::protocol::{decode_body, Request};
use crate::security::acl::AclOperation;
use crate::shard::Shard;
use crate::share::partition::{Ack, AckError, Acquired};
use crate::share::session::{FetchContext, SessionError, SharePartitionId};
use crate::share::{Delivery, Failure, Shares, Want};
use crate::types::{ShardId, TopicPartition};

/// Kafka's code for a share-partition failure.
pub(super) fn failure(f: &Failure) -> (ResponseError, Option<String>) {
    match f {
        Failure::NotLeader => (ResponseError::NotLeaderOrFollower, None),
        Failure::Unavailable(m) => (ResponseError::CoordinatorNotAvailable, Some(m.clone())),
        Failure::Fenced => (ResponseError::FencedStateEpoch, None),
        Failure::Ack(AckError::InvalidRecordState(m)) => {
            (ResponseError::InvalidRecordState, Some(m.clone()))
        }
        Failure::Ack(AckError::InvalidRequest(m)) => {
            (ResponseError::InvalidRequest, Some(m.clone()))
        }
    }
}

fn session_error(e: SessionError) -> ResponseError {
    match e {
        SessionError::NotFound => ResponseError::ShareSessionNotFound,
        SessionError::InvalidEpoch => ResponseError::InvalidShareSessionEpoch,
        SessionError::InvalidRequest => ResponseError::InvalidRequest,
        SessionError::LimitReached => ResponseError::ShareSessionLimitReached,
    }
}

/// One share-partition of a request, resolved against the metadata.
struct Part {
    id: SharePartitionId,
    /// The partition, or why it cannot be served.
    resolved: Result<TopicPartition, ResponseError>,
    acks: Vec<Ack>,
}

fn resolve(
    shard: &Shard,
    access: Option<&Access>,
    ids: &[SharePartitionId],
    mut acks: BTreeMap<SharePartitionId, Vec<Ack>>,
) -> Vec<Part> {
    let snap = shard.snapshot();
    ids.iter()
        .map(|&(topic_id, p)| {
            let resolved = match snap.topic_by_id(&topic_id) {
                None => Err(ResponseError::UnknownTopicId),
                Some(m) if access.is_some_and(|a| !a.topic(AclOperation::Read, &m.name)) => {
                    Err(ResponseError::TopicAuthorizationFailed)
                }
                Some(m) if p < 0 || p >= m.partitions => {
                    Err(ResponseError::UnknownTopicOrPartition)
                }
                Some(m) => Ok(TopicPartition::new(m.name.clone(), p)),
            };
            Part {
                id: (topic_id, p),
                resolved,
                acks: acks.remove(&(topic_id, p)).unwrap_or_default(),
            }
        })
        .collect()
}

/// The resolved parts by owner shard, each with its index in `parts`.
fn by_owner(shard: &Shard, parts: &[Part]) -> BTreeMap<ShardId, Vec<(usize, Want)>> {
    let mut out: BTreeMap<ShardId, Vec<(usize, Want)>> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        if let Ok(tp) = &p.resolved {
            out.entry(shard.owner_of(&tp.topic, tp.partition))
                .or_default()
                .push((
                    i,
                    Want {
                        tp: tp.clone(),
                        topic_id: p.id.0,
                        acks: p.acks.clone(),
                    },
                ));
        }
    }
    out
}

/// What one share-partition answered.
#[derive(Default)]
struct Answer {
    error: Option<(ResponseError, Option<String>)>,
    ack_error: Option<(ResponseError, Option<String>)>,
    delivery: Delivery,
}

fn acks_of(batches: &[share_fetch_request::AcknowledgementBatch]) -> Vec<Ack> {
    batches
        .iter()
        .map(|b| Ack {
            first: b.first_offset,
            last: b.last_offset,
            types: b.acknowledge_types.clone(),
        })
        .collect()
}

/// The group and member a share request names, or the top-level error.
fn names(group: &Option<GroupId>, member: &Option<StrBytes>) -> Result<(String, String), String> {
    let group = group.as_ref().map(|g| g.to_string()).unwrap_or_default();
    let member = member.as_ref().map(|m| m.to_string()).unwrap_or_default();
    if group.is_empty() {
        return Err("The group id is empty.".into());
    }
    if member.is_empty() {
        return Err("The member id is empty.".into());
    }
    Ok((group, member))
}

fn fetch_error(
    req: &Request,
    e: ResponseError,
    message: Option<String>,
) -> LocalBoxFuture<'static, Outcome> {
    let resp = ShareFetchResponse::default()
        .with_error_code(e.code())
        .with_error_message(message.map(StrBytes::from_string));
    super::ready(reply(req, &resp))
}

pub fn fetch(shard: &Rc<Shard>, req: Request, remote: Remote) -> LocalBoxFuture<'static, Outcome> {
    let body: ShareFetchRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let (group, member) = match names(&body.group_id, &body.member_id) {
        Ok(x) => x,
        Err(why) => return fetch_error(&req, ResponseError::InvalidRequest, Some(why)),
    };
    let access = Access::of(shard, &req);
    if !access.group(AclOperation::Read, &group) {
        return fetch_error(&req, ResponseError::GroupAuthorizationFailed, None);
    }
    let mut adding = Vec::new();
    let mut acks: BTreeMap<SharePartitionId, Vec<Ack>> = BTreeMap::new();
    for t in &body.topics {
        for p in &t.partitions {
            adding.push((t.topic_id, p.partition_index));
            if !p.acknowledgement_batches.is_empty() {
                acks.entry((t.topic_id, p.partition_index))
                    .or_default()
                    .extend(acks_of(&p.acknowledgement_batches));
            }
        }
    }
    let forgetting: Vec<SharePartitionId> = body
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    // Sessions live on the shard of their connection: each shard holds its share.
    let limit =
        (shard.config.groups.share_max_share_sessions.max(1) as usize / shard.num_shards).max(1);
    let context = shard.service::<Shares>().sessions.borrow_mut().fetch(
        (&group, &member),
        body.share_session_epoch,
        &adding,
        &forgetting,
        !acks.is_empty(),
        limit,
    );
    let context = match context {
        Ok(c) => c,
        Err(e) => return fetch_error(&req, session_error(e), None),
    };
    let (fetching, session_parts) = match context {
        FetchContext::Fetch(ps) => (true, ps),
        FetchContext::Closed(ps) => (false, ps),
    };
    // Fetch: every partition of the session. Closed: the partitions acknowledged.
    let mut ids: Vec<SharePartitionId> = if fetching {
        session_parts.clone()
    } else {
        Vec::new()
    };
    for id in acks.keys() {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    let parts = resolve(shard, Some(&access), &ids, acks);
    let shard = shard.clone();
    let lock_ms = shard.group_settings(&group).share_record_lock_duration_ms;
    Box::pin(async move {
        let owners = by_owner(&shard, &parts);
        let max_bytes = body.max_bytes.max(0) as usize;
        let max_records = if body.max_records > 0 {
            body.max_records as usize
        } else {
            usize::MAX
        };
        let first = Pass {
            acknowledge: true,
            acquire: fetching.then_some((max_bytes, max_records)),
        };
        let mut answers = pass(&shard, &owners, &group, &member, first).await;
        let deadline = shard.now_ms() + body.max_wait_ms.max(0) as i64;
        let mut waited = Duration::ZERO;
        let none = |answers: &BTreeMap<usize, Answer>| {
            !answers.values().any(|a| !a.delivery.acquired.is_empty())
        };
        if fetching && none(&answers) && owners.len() == 1 {
            // One owner (the common case): the whole wait-and-acquire loop runs there, so
            // the fetch that waited first takes what arrives, wherever its connection is.
            let (again, w) = poll_one_owner(
                &shard,
                &owners,
                &group,
                &member,
                deadline,
                max_bytes,
                max_records,
            )
            .await;
            waited = w;
            for (i, a) in again {
                let slot = answers.entry(i).or_default();
                slot.error = a.error;
                slot.delivery = a.delivery;
            }
        }
        while fetching && none(&answers) {
            let remaining = deadline - shard.now_ms();
            if remaining <= 0 || owners.is_empty() {
                break;
            }
            let since = Instant::now();
            wait_any(&shard, &owners, &group, remaining).await;
            waited += since.elapsed();
            let again = Pass {
                acknowledge: false,
                acquire: Some((max_bytes, max_records)),
            };
            let again = pass(&shard, &owners, &group, &member, again).await;
            for (i, a) in again {
                let slot = answers.entry(i).or_default();
                slot.error = a.error;
                slot.delivery = a.delivery;
            }
        }
        remote.set(waited);
        if !fetching {
            release_all(&shard, &group, &member, &session_parts).await;
        }
        let resp = build_fetch_response(&parts, answers, lock_ms, &shard);
        reply(&req, &resp)
    })
}

/// What one pass over the owners does: acknowledge (the first pass), acquire (when fetching,
/// up to max bytes and max records per partition), or both.
#[derive(Clone, Copy)]
struct Pass {
    acknowledge: bool,
    acquire: Option<(usize, usize)>,
}

/// Fills an answer with what acquiring got.
fn delivered(a: &mut Answer, got: Result<Delivery, Failure>) {
    match got {
        Ok(d) => a.delivery = d,
        Err(f) => a.error = Some(failure(&f)),
    }
}

/// Runs a pass on every owner, in parallel; answers by index in the request's parts.
async fn pass(
    shard: &Rc<Shard>,
    owners: &BTreeMap<ShardId, Vec<(usize, Want)>>,
    group: &str,
    member: &str,
    what: Pass,
) -> BTreeMap<usize, Answer> {
    let calls: Vec<_> = owners
        .iter()
        .map(|(owner, wants)| {
            let (idx, wants): (Vec<usize>, Vec<Want>) = wants.iter().cloned().unzip();
            let (group, member) = (group.to_string(), member.to_string());
            let call = shard.invoke_on(*owner, move |s| async move {
                let acked = match what.acknowledge {
                    true => crate::share::acknowledge(&s, &group, &member, &wants).await,
                    false => Vec::new(),
                };
                let got = match what.acquire {
                    Some((bytes, records)) => {
                        crate::share::acquire(&s, &group, &member, &wants, bytes, records).await
                    }
                    None => Vec::new(),
                };
                (acked, got)
            });
            async move { (idx, call.await) }
        })
        .collect();
    let mut out = BTreeMap::new();
    for (idx, r) in futures::future::join_all(calls).await {
        let (acked, got) = r.unwrap_or_else(|_| {
            let acked = match what.acknowledge {
                true => idx.iter().map(|_| Err(Failure::NotLeader)).collect(),
                false => Vec::new(),
            };
            let got = match what.acquire {
                Some(_) => idx.iter().map(|_| Err(Failure::NotLeader)).collect(),
                None => Vec::new(),
            };
            (acked, got)
        });
        let (mut acked, mut got) = (acked.into_iter(), got.into_iter());
        for i in idx {
            let mut a = Answer::default();
            if let Some(Err(f)) = acked.next() {
                a.ack_error = Some(failure(&f));
            }
            if let Some(g) = got.next() {
                delivered(&mut a, g);
            }
            out.insert(i, a);
        }
    }
    out
}

/// Waits on the one owner for records to arrive (or a lock to run out) and acquires them
/// there, until the deadline.
async fn poll_one_owner(
    shard: &Rc<Shard>,
    owners: &BTreeMap<ShardId, Vec<(usize, Want)>>,
    group: &str,
    member: &str,
    deadline: i64,
    max_bytes: usize,
    max_records: usize,
) -> (BTreeMap<usize, Answer>, Duration) {
    let Some((owner, wants)) = owners.iter().next() else {
        return (BTreeMap::new(), Duration::ZERO);
    };
    let (idx, wants): (Vec<usize>, Vec<Want>) = wants.iter().cloned().unzip();
    let (group, member) = (group.to_string(), member.to_string());
    let call = shard.invoke_on(*owner, move |s| async move {
        let mut waited = Duration::ZERO;
        loop {
            let remaining = deadline - s.now_ms();
            if remaining <= 0 {
                return (Vec::new(), waited);
            }
            let since = Instant::now();
            crate::share::wait(&s, &group, &wants, remaining).await;
            waited += since.elapsed();
            let got =
                crate::share::acquire(&s, &group, &member, &wants, max_bytes, max_records).await;
            let any = got
                .iter()
                .any(|g| g.as_ref().is_ok_and(|d| !d.acquired.is_empty()) || g.is_err());
            if any {
                return (got, waited);
            }
        }
    });
    let (got, waited) = call.await.unwrap_or_default();
    let answers = idx
        .into_iter()
        .zip(got)
        .map(|(i, g)| {
            let mut a = Answer::default();
            delivered(&mut a, g);
            (i, a)
        })
        .collect();
    (answers, waited)
}

/// Returns when any owner may have records for the member, or after `wait_ms`.
async fn wait_any(
    shard: &Rc<Shard>,
    owners: &BTreeMap<ShardId, Vec<(usize, Want)>>,
    group: &str,
    wait_ms: i64,
) {
    let calls: Vec<_> = owners
        .iter()
        .map(|(owner, wants)| {
            let wants: Vec<Want> = wants.iter().map(|(_, w)| w.clone()).collect();
            let group = group.to_string();
            shard.invoke_on(*owner, move |s| async move {
                crate::share::wait(&s, &group, &wants, wait_ms).await
            })
        })
        .collect();
    let _ = futures::future::select_all(calls).await;
}

/// Releases what the member holds in its closed session's partitions.
async fn release_all(shard: &Rc<Shard>, group: &str, member: &str, ids: &[SharePartitionId]) {
    let parts = resolve(shard, None, ids, BTreeMap::new());
    let owners = by_owner(shard, &parts);
    let calls: Vec<_> = owners
        .into_iter()
        .map(|(owner, wants)| {
            let wants: Vec<Want> = wants.into_iter().map(|(_, w)| w).collect();
            let (group, member) = (group.to_string(), member.to_string());
            shard.invoke_on(owner, move |s| async move {
                crate::share::release(&s, &group, &member, &wants).await
            })
        })
        .collect();
    futures::future::join_all(calls).await;
}

fn leader_of(shard: &Shard, tp: &Result<TopicPartition, ResponseError>) -> (i32, i32) {
    let Ok(tp) = tp else {
        return (-1, -1);
    };
    shard
        .snapshot()
        .topic(&tp.topic)
        .and_then(|m| m.partition(tp.partition))
        .map_or((-1, -1), |p| (p.leader, p.leader_epoch))
}

fn acquired_records(a: &[Acquired]) -> Vec<share_fetch_response::AcquiredRecords> {
    a.iter()
        .map(|r| {
            share_fetch_response::AcquiredRecords::default()
                .with_first_offset(r.first)
                .with_last_offset(r.last)
                .with_delivery_count(r.deliveries)
        })
        .collect()
}

fn build_fetch_response(
    parts: &[Part],
    mut answers: BTreeMap<usize, Answer>,
    lock_ms: i32,
    shard: &Shard,
) -> ShareFetchResponse {
    let mut topics: Vec<share_fetch_response::ShareFetchableTopicResponse> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let a = answers.remove(&i).unwrap_or_default();
        let (error, message) = match (&p.resolved, a.error) {
            (Err(e), _) => (e.code(), None),
            (Ok(_), Some((e, m))) => (e.code(), m),
            (Ok(_), None) => (0, None),
        };
        let (ack_error, ack_message) = match (&p.resolved, a.ack_error) {
            (Err(e), _) if !p.acks.is_empty() => (e.code(), None),
            (_, Some((e, m))) => (e.code(), m),
            _ => (0, None),
        };
        let mut records = BytesMut::with_capacity(a.delivery.batches.iter().map(Bytes::len).sum());
        for b in &a.delivery.batches {
            records.extend_from_slice(b);
        }
        let (leader_id, leader_epoch) = leader_of(shard, &p.resolved);
        let data = share_fetch_response::PartitionData::default()
            .with_partition_index(p.id.1)
            .with_error_code(error)
            .with_error_message(message.map(StrBytes::from_string))
            .with_acknowledge_error_code(ack_error)
            .with_acknowledge_error_message(ack_message.map(StrBytes::from_string))
            .with_current_leader(
                share_fetch_response::LeaderIdAndEpoch::default()
                    .with_leader_id(leader_id)
                    .with_leader_epoch(leader_epoch),
            )
            .with_records(Some(records.freeze()))
            .with_acquired_records(acquired_records(&a.delivery.acquired));
        match topics.iter_mut().find(|t| t.topic_id == p.id.0) {
            Some(t) => t.partitions.push(data),
            None => topics.push(
                share_fetch_response::ShareFetchableTopicResponse::default()
                    .with_topic_id(p.id.0)
                    .with_partitions(vec![data]),
            ),
        }
    }
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(lock_ms)
        .with_responses(topics)
}

fn ack_error(
    req: &Request,
    e: ResponseError,
    message: Option<String>,
) -> LocalBoxFuture<'static, Outcome> {
    let resp = ShareAcknowledgeResponse::default()
        .with_error_code(e.code())
        .with_error_message(message.map(StrBytes::from_string));
    super::ready(reply(req, &resp))
}

pub fn acknowledge(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body: ShareAcknowledgeRequest = match decode_body(&req) {
        Ok(b) => b,
        Err(e) => return super::ready(Outcome::Close(e.to_string())),
    };
    let (group, member) = match names(&body.group_id, &body.member_id) {
        Ok(x) => x,
        Err(why) => return ack_error(&req, ResponseError::InvalidRequest, Some(why)),
    };
    let access = Access::of(shard, &req);
    if !access.group(AclOperation::Read, &group) {
        return ack_error(&req, ResponseError::GroupAuthorizationFailed, None);
    }
    let closing = match shard.service::<Shares>().sessions.borrow_mut().acknowledge(
        &group,
        &member,
        body.share_session_epoch,
    ) {
        Ok(c) => c,
        Err(e) => return ack_error(&req, session_error(e), None),
    };
    let mut ids = Vec::new();
    let mut acks: BTreeMap<SharePartitionId, Vec<Ack>> = BTreeMap::new();
    for t in &body.topics {
        for p in &t.partitions {
            let id = (t.topic_id, p.partition_index);
            if !ids.contains(&id) {
                ids.push(id);
            }
            acks.entry(id)
                .or_default()
                .extend(p.acknowledgement_batches.iter().map(|b| Ack {
                    first: b.first_offset,
                    last: b.last_offset,
                    types: b.acknowledge_types.clone(),
                }));
        }
    }
    let parts = resolve(shard, Some(&access), &ids, acks);
    let shard = shard.clone();
    Box::pin(async move {
        let owners = by_owner(&shard, &parts);
        let acks = Pass {
            acknowledge: true,
            acquire: None,
        };
        let answers = pass(&shard, &owners, &group, &member, acks).await;
        if let Some(session_parts) = closing {
            release_all(&shard, &group, &member, &session_parts).await;
        }
        let mut topics: Vec<share_acknowledge_response::ShareAcknowledgeTopicResponse> = Vec::new();
        let mut answers = answers;
        for (i, p) in parts.iter().enumerate() {
            let a = answers.remove(&i).unwrap_or_default();
            let (error, message) = match (&p.resolved, a.ack_error) {
                (Err(e), _) => (e.code(), None),
                (Ok(_), Some((e, m))) => (e.code(), m),
                (Ok(_), None) => (0, None),
            };
            let (leader_id, leader_epoch) = leader_of(&shard, &p.resolved);
            let data = share_acknowledge_response::PartitionData::default()
                .with_partition_index(p.id.1)
                .with_error_code(error)
                .with_error_message(message.map(StrBytes::from_string))
                .with_current_leader(
                    share_acknowledge_response::LeaderIdAndEpoch::default()
                        .with_leader_id(leader_id)
                        .with_leader_epoch(leader_epoch),
                );
            match topics.iter_mut().find(|t| t.topic_id == p.id.0) {
                Some(t) => t.partitions.push(data),
                None => topics.push(
                    share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                        .with_topic_id(p.id.0)
                        .with_partitions(vec![data]),
                ),
            }
        }
        reply(
            &req,
            &ShareAcknowledgeResponse::default().with_responses(topics),
        )
    })
}
