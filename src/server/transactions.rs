//! Transaction coordinator APIs (InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, DescribeTransactions, ListTransactions) and the partition
//! leader's side of KIP-890: asking the coordinator whether a partition is in a transaction.
//!
//! Each request runs on the shard that owns the transactional id's `__transaction_state`
//! partition; the coordinator there answers with domain errors, chosen into Kafka codes here
//! (with PRODUCER_FENCED told as INVALID_PRODUCER_EPOCH to versions that predate it).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::access::Access;
use super::{errors, reply, Outcome};
use crate::protocol::{decode_body, Request};
use crate::security::acl::{AclOperation, ResourceType};
use crate::shard::{Shard, ShardError};
use crate::txn::coordinator::{self as txn, ListFilter};
use crate::txn::state::{TxnError, TxnMetadata, TxnState};
use crate::types::{ShardId, TopicPartition};

macro_rules! body_or_close {
    ($req:expr, $t:ty) => {
        match decode_body::<$t>(&$req) {
            Ok(b) => b,
            Err(e) => return super::ready(Outcome::Close(e.to_string())),
        }
    };
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// The shard that coordinates `id` on this node (if this node leads its partition).
pub(super) fn owner_of(shard: &Shard, id: &str) -> ShardId {
    let tp = txn::txn_partition(shard, id);
    shard.owner_of(&tp.topic, tp.partition)
}

/// The Kafka code of a coordinator error; PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH for
/// clients that predate it (`fenced_is_new` false).
pub(super) fn code(e: TxnError, fenced_is_new: bool) -> i16 {
    match errors::txn(e) {
        ResponseError::ProducerFenced if !fenced_is_new => ResponseError::InvalidProducerEpoch,
        other => other,
    }
    .code()
}

fn flatten<T>(r: Result<Result<T, TxnError>, ShardError>) -> Result<T, TxnError> {
    r.unwrap_or(Err(TxnError::NotCoordinator))
}

/// InitProducerId with a transactional id (see `init_producer`).
pub(super) fn init_producer_id(
    shard: &Rc<Shard>,
    req: &Request,
    body: InitProducerIdRequest,
    id: String,
) -> LocalBoxFuture<'static, Outcome> {
    let req = req.clone();
    let answer = |code: i16, pid: i64, epoch: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    };
    if id.is_empty() {
        return super::ready(reply(
            &req,
            &answer(ResponseError::InvalidRequest.code(), -1, -1),
        ));
    }
    let expected = (req.api_version >= 3 && body.producer_id.0 >= 0)
        .then_some((body.producer_id.0, body.producer_epoch));
    let timeout = body.transaction_timeout_ms;
    let call = shard.invoke_on(owner_of(shard, &id), move |s| {
        txn::init_producer_id(s, id, timeout, expected)
    });
    Box::pin(async move {
        let resp = match flatten(call.await) {
            Ok((pid, epoch)) => answer(0, pid, epoch),
            Err(e) => answer(code(e, req.api_version >= 4), -1, -1),
        };
        reply(&req, &resp)
    })
}

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<TopicPartition> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.to_string(), *p))
        })
        .collect()
}

/// Per-partition results grouped by topic, as AddPartitionsToTxn answers.
fn topic_results(rows: Vec<(TopicPartition, i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for (tp, code) in rows {
        by_topic.entry(tp.topic).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(tp.partition)
                .with_partition_error_code(code),
        );
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(s(&t)))
                .with_results_by_partition(ps)
        })
        .collect()
}

/// One transaction of an AddPartitionsToTxn request: add (or, verify_only, check) its
/// partitions; a code per partition.
fn add_one(
    shard: &Rc<Shard>,
    access: &Access,
    t: AddPartitionsToTxnTransaction,
    fenced_is_new: bool,
) -> LocalBoxFuture<'static, Vec<(TopicPartition, i16)>> {
    let parts = partitions_of(&t.topics);
    let id = t.transactional_id.0.to_string();
    let (pid, epoch) = (t.producer_id.0, t.producer_epoch);
    // Kafka's checks: WRITE on the transactional id, else every partition is refused; WRITE
    // on each topic, else its partitions are refused and the others not attempted.
    if !access.transactional_id(AclOperation::Write, &id) {
        let c = ResponseError::TransactionalIdAuthorizationFailed.code();
        return Box::pin(std::future::ready(
            parts.into_iter().map(|tp| (tp, c)).collect(),
        ));
    }
    let unwritable: Vec<&str> = t
        .topics
        .iter()
        .map(|topic| topic.name.as_str())
        .filter(|name| !access.topic(AclOperation::Write, name))
        .collect();
    if !unwritable.is_empty() {
        let rows = parts
            .into_iter()
            .map(|tp| {
                let e = if unwritable.contains(&tp.topic.as_str()) {
                    ResponseError::TopicAuthorizationFailed
                } else {
                    ResponseError::OperationNotAttempted
                };
                (tp, e.code())
            })
            .collect();
        return Box::pin(std::future::ready(rows));
    }
    let snap = shard.snapshot();
    let unknown: Vec<TopicPartition> = parts
        .iter()
        .filter(|tp| snap.partition(&tp.topic, tp.partition).is_none())
        .cloned()
        .collect();
    if id.is_empty() || !unknown.is_empty() {
        // Kafka: the unknown partitions get UNKNOWN_TOPIC_OR_PARTITION, the others
        // OPERATION_NOT_ATTEMPTED.
        let rows = parts
            .into_iter()
            .map(|tp| {
                let e = if id.is_empty() {
                    ResponseError::InvalidRequest
                } else if unknown.contains(&tp) {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                };
                (tp, e.code())
            })
            .collect();
        return Box::pin(std::future::ready(rows));
    }
    let owner = owner_of(shard, &id);
    let sent = parts.clone();
    let call = if t.verify_only {
        shard.invoke_on(owner, move |s| async move {
            txn::verify(&s, &id, pid, epoch, &sent)
        })
    } else {
        shard.invoke_on(owner, move |s| async move {
            txn::add_partitions(s, id, pid, epoch, sent)
                .await
                .map(|()| Vec::new())
        })
    };
    Box::pin(async move {
        match flatten(call.await) {
            Ok(per) => parts
                .into_iter()
                .enumerate()
                .map(|(i, tp)| {
                    let c = per
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or(0, |e| code(e, fenced_is_new));
                    (tp, c)
                })
                .collect(),
            Err(e) => {
                let c = code(e, fenced_is_new);
                parts.into_iter().map(|tp| (tp, c)).collect()
            }
        }
    })
}

pub fn add_partitions_to_txn(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, AddPartitionsToTxnRequest);
    let fenced_is_new = req.api_version >= 2;
    let access = Access::of(shard, &req);
    if req.api_version <= 3 {
        let t = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(body.v3_and_below_transactional_id.clone())
            .with_producer_id(body.v3_and_below_producer_id)
            .with_producer_epoch(body.v3_and_below_producer_epoch)
            .with_topics(body.v3_and_below_topics.clone());
        let call = add_one(shard, &access, t, fenced_is_new);
        return Box::pin(async move {
            let resp = AddPartitionsToTxnResponse::default()
                .with_results_by_topic_v3_and_below(topic_results(call.await));
            reply(&req, &resp)
        });
    }
    // v4+ comes from partition leaders verifying a transaction (KIP-890): brokers only.
    if !access.cluster(AclOperation::ClusterAction) {
        let resp = AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        return super::ready(reply(&req, &resp));
    }
    let calls: Vec<_> = body
        .transactions
        .into_iter()
        .map(|t| {
            let id = t.transactional_id.clone();
            let call = add_one(shard, &access, t, true);
            async move { (id, call.await) }
        })
        .collect();
    Box::pin(async move {
        let results = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|(id, rows)| {
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(id)
                    .with_topic_results(topic_results(rows))
            })
            .collect();
        let resp = AddPartitionsToTxnResponse::default().with_results_by_transaction(results);
        reply(&req, &resp)
    })
}

pub fn add_offsets_to_txn(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, AddOffsetsToTxnRequest);
    let id = body.transactional_id.0.to_string();
    let group = body.group_id.0.to_string();
    let fenced_is_new = req.api_version >= 2;
    let access = Access::of(shard, &req);
    let refused = if !access.transactional_id(AclOperation::Write, &id) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !access.group(AclOperation::Read, &group) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(e) = refused {
        return super::ready(reply(
            &req,
            &AddOffsetsToTxnResponse::default().with_error_code(e.code()),
        ));
    }
    let tp = crate::group::coordinator::offsets_partition(&shard.config, &group);
    let (pid, epoch) = (body.producer_id.0, body.producer_epoch);
    let call = shard.invoke_on(owner_of(shard, &id), move |s| {
        txn::add_partitions(s, id, pid, epoch, vec![tp])
    });
    Box::pin(async move {
        let c = match flatten(call.await) {
            Ok(()) => 0,
            Err(e) => code(e, fenced_is_new),
        };
        reply(&req, &AddOffsetsToTxnResponse::default().with_error_code(c))
    })
}

pub fn end_txn(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, EndTxnRequest);
    let id = body.transactional_id.0.to_string();
    let fenced_is_new = req.api_version >= 2;
    // EndTxn v5 is transactions v2 (KIP-890): the epoch moves at the end of each transaction.
    let client_version = if req.api_version >= 5 { 2 } else { 0 };
    let (pid, epoch, commit) = (body.producer_id.0, body.producer_epoch, body.committed);
    let refused = if !Access::of(shard, &req).transactional_id(AclOperation::Write, &id) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if id.is_empty() {
        Some(ResponseError::InvalidRequest)
    } else {
        None
    };
    if let Some(e) = refused {
        let resp = EndTxnResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        return super::ready(reply(&req, &resp));
    }
    let call = shard.invoke_on(owner_of(shard, &id), move |s| {
        txn::end_txn(s, id, pid, epoch, commit, client_version)
    });
    Box::pin(async move {
        let resp = match flatten(call.await) {
            Ok((p, e)) => EndTxnResponse::default()
                .with_producer_id(ProducerId(p))
                .with_producer_epoch(e),
            Err(e) => EndTxnResponse::default()
                .with_error_code(code(e, fenced_is_new))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        };
        reply(&req, &resp)
    })
}

fn failed_state(id: StrBytes, code: i16) -> describe_transactions_response::TransactionState {
    describe_transactions_response::TransactionState::default()
        .with_transactional_id(TransactionalId(id))
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_transaction_start_time_ms(-1)
}

fn describe_state(
    id: StrBytes,
    r: Result<TxnMetadata, TxnError>,
) -> describe_transactions_response::TransactionState {
    use describe_transactions_response::{TopicData, TransactionState as Described};
    match r {
        Err(e) => failed_state(id, code(e, true)),
        Ok(m) => {
            let base = Described::default().with_transactional_id(TransactionalId(id));
            let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for tp in &m.partitions {
                topics
                    .entry(tp.topic.clone())
                    .or_default()
                    .push(tp.partition);
            }
            base.with_transaction_state(s(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(TopicName(s(&t)))
                                .with_partitions(ps)
                        })
                        .collect(),
                )
        }
    }
}

pub fn describe_transactions(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, DescribeTransactionsRequest);
    let access = Access::of(shard, &req);
    let calls: Vec<_> = body
        .transactional_ids
        .into_iter()
        .map(|raw| {
            let id = raw.0.to_string();
            let allowed = access.transactional_id(AclOperation::Describe, &id);
            let call = (allowed && !id.is_empty()).then(|| {
                let id = id.clone();
                shard.invoke_on(owner_of(shard, &id), move |s| async move {
                    txn::describe(&s, &id)
                })
            });
            async move {
                let r = match call {
                    None if !allowed => {
                        let e = ResponseError::TransactionalIdAuthorizationFailed;
                        return failed_state(raw.0, e.code());
                    }
                    None => Err(TxnError::InvalidRequest),
                    Some(c) => flatten(c.await),
                };
                describe_state(raw.0, r)
            }
        })
        .collect();
    Box::pin(async move {
        let states = futures::future::join_all(calls).await;
        reply(
            &req,
            &DescribeTransactionsResponse::default().with_transaction_states(states),
        )
    })
}

pub fn list_transactions(shard: &Rc<Shard>, req: Request) -> LocalBoxFuture<'static, Outcome> {
    let body = body_or_close!(req, ListTransactionsRequest);
    let mut filter = ListFilter {
        min_duration_ms: if req.api_version >= 1 {
            body.duration_filter
        } else {
            -1
        },
        producer_ids: body.producer_id_filters.iter().map(|p| p.0).collect(),
        states: Vec::new(),
    };
    let mut unknown = Vec::new();
    for name in &body.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(st) => filter.states.push(st),
            None => unknown.push(name.clone()),
        }
    }
    let pattern = body
        .transactional_id_pattern
        .as_ref()
        .map(|p| p.to_string())
        .filter(|p| !p.is_empty() && req.api_version >= 2);
    // States a filter names but none of which exist match nothing (Kafka's answer).
    let match_none = !body.state_filters.is_empty() && filter.states.is_empty();
    list_on(shard, filter, unknown, pattern, match_none, req)
}

fn list_on(
    shard: &Rc<Shard>,
    filter: ListFilter,
    unknown: Vec<StrBytes>,
    pattern: Option<String>,
    match_none: bool,
    req: Request,
) -> LocalBoxFuture<'static, Outcome> {
    // Only the transactions the principal may DESCRIBE are listed.
    let access = Access::of(shard, &req);
    let shard = shard.clone();
    Box::pin(async move {
        let results = shard
            .invoke_on_all(move |s| {
                let f = filter.clone();
                async move { (txn::loading(&s), txn::list(&s, &f)) }
            })
            .await;
        let mut error = 0;
        let mut states = Vec::new();
        for r in results {
            let Ok((loading, found)) = r else { continue };
            if loading {
                error = ResponseError::CoordinatorLoadInProgress.code();
            }
            for m in found {
                if match_none
                    || !pattern
                        .as_deref()
                        .is_none_or(|p| matches_regex(p, &m.transactional_id))
                    || !access.shows(
                        AclOperation::Describe,
                        ResourceType::TransactionalId,
                        &m.transactional_id,
                    )
                {
                    continue;
                }
                states.push(
                    list_transactions_response::TransactionState::default()
                        .with_transactional_id(TransactionalId(s(&m.transactional_id)))
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_transaction_state(s(m.state.name())),
                );
            }
        }
        let resp = ListTransactionsResponse::default()
            .with_error_code(error)
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states);
        reply(&req, &resp)
    })
}

/// ListTransactions v2's pattern: a Java regular expression over the whole id. Only literal
/// text with `.*` and `.` wildcards is understood here; anything else matches literally.
fn matches_regex(pattern: &str, id: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p {
            [] => s.is_empty(),
            ['.', '*', rest @ ..] => (0..=s.len()).any(|i| go(rest, &s[i..])),
            ['.', rest @ ..] => !s.is_empty() && go(rest, &s[1..]),
            [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = id.chars().collect();
    go(&p, &s)
}

/// How long a partition leader waits for the coordinator's answer to a verification.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the coordinator of `transactional_id` whether `tp` was added to the producer's
/// ongoing transaction (AddPartitionsToTxn v4+ with verify_only), as a partition leader does
/// before it takes the first transactional batch of a transaction, and the group coordinator
/// before it writes a TxnOffsetCommit.
pub(super) fn verify_partition(
    shard: &Rc<Shard>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    tp: TopicPartition,
) -> LocalBoxFuture<'static, Result<(), ResponseError>> {
    let ask = ask_coordinator(shard, transactional_id, producer_id, producer_epoch, tp);
    Box::pin(async move { ask.await.map_err(for_produce) })
}

/// A verification error as a producer understands it in a Produce response (Kafka's
/// AddPartitionsToTxnManager and ReplicaManager translations): a fenced producer hears
/// INVALID_PRODUCER_EPOCH, an abortable transaction INVALID_TXN_STATE, and a coordinator that
/// cannot answer now NOT_ENOUGH_REPLICAS, which every client retries without a metadata refresh.
fn for_produce(e: ResponseError) -> ResponseError {
    match e {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable => ResponseError::InvalidTxnState,
        ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => ResponseError::NotEnoughReplicas,
        other => other,
    }
}

fn ask_coordinator(
    shard: &Rc<Shard>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    tp: TopicPartition,
) -> LocalBoxFuture<'static, Result<(), ResponseError>> {
    let txn_tp = txn::txn_partition(shard, &transactional_id);
    let snap = shard.snapshot();
    let leader = snap
        .partition(&txn_tp.topic, txn_tp.partition)
        .map(|p| p.leader);
    if leader == Some(shard.config.node_id) {
        let parts = vec![tp];
        let call = shard.invoke_on(owner_of(shard, &transactional_id), move |s| async move {
            txn::verify(&s, &transactional_id, producer_id, producer_epoch, &parts)
        });
        return Box::pin(async move {
            match flatten(call.await) {
                Ok(per) => match per.first().copied().flatten() {
                    None => Ok(()),
                    Some(e) => Err(errors::txn(e)),
                },
                Err(e) => Err(errors::txn(e)),
            }
        });
    }
    let addr = leader
        .and_then(|l| snap.brokers.get(&l))
        .filter(|b| !b.fenced)
        .map(|b| format!("{}:{}", b.host, b.port));
    let shard = shard.clone();
    Box::pin(async move {
        let Some(addr) = addr else {
            return Err(ResponseError::NotCoordinator);
        };
        let t = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(s(&transactional_id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(&tp.topic)))
                .with_partitions(vec![tp.partition])]);
        let req = AddPartitionsToTxnRequest::default().with_transactions(vec![t]);
        let ask = async {
            let mut link = super::txn_markers::take_link(&shard, &addr).await?;
            let resp = link.request(&req, 4).await?;
            super::txn_markers::put_link(&shard, &addr, link);
            Ok::<_, std::io::Error>(resp)
        };
        let resp = match crate::metadata::raft::transport::within(VERIFY_TIMEOUT, ask).await {
            Some(Ok(r)) => r,
            _ => return Err(ResponseError::NotCoordinator),
        };
        if resp.error_code != 0 {
            return Err(ResponseError::try_from_code(resp.error_code)
                .unwrap_or(ResponseError::UnknownServerError));
        }
        let code = resp
            .results_by_transaction
            .iter()
            .flat_map(|r| r.topic_results.iter())
            .flat_map(|t| t.results_by_partition.iter())
            .map(|p| p.partition_error_code)
            .next()
            .unwrap_or(ResponseError::UnknownServerError.code());
        match code {
            0 => Ok(()),
            c => Err(ResponseError::try_from_code(c).unwrap_or(ResponseError::UnknownServerError)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_is_told_as_invalid_epoch_to_old_versions() {
        assert_eq!(
            code(TxnError::Fenced, false),
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            code(TxnError::Fenced, true),
            ResponseError::ProducerFenced.code()
        );
        assert_eq!(
            code(TxnError::InvalidMapping, false),
            ResponseError::InvalidProducerIdMapping.code()
        );
    }

    #[test]
    fn id_patterns() {
        assert!(matches_regex("app-.*", "app-1"));
        assert!(!matches_regex("app-.*", "other"));
        assert!(matches_regex("a.c", "abc"));
        assert!(!matches_regex("a.c", "abcd"));
    }
}
