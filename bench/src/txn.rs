//! The producer side of idempotence and transactions: a producer id from InitProducerId, and
//! for a transactional producer its coordinator (FindCoordinator, key type 1),
//! AddPartitionsToTxn and EndTxn.
//!
//! The driver speaks the first generation of Kafka's transaction protocol (KIP-98 with KIP-360
//! epochs): partitions are added explicitly with AddPartitionsToTxn in its client form (v0-v3;
//! v4+ is the broker-to-coordinator form), EndTxn up to v4 and transactional Produce up to v11.
//! EndTxn v5 and Produce v12 belong to KIP-890's second phase (the coordinator bumps the epoch
//! at every transaction end and partition leaders add partitions themselves), which a producer
//! must opt into as a whole.
//!
//! Request building and response reading are plain functions, tested below; [`Coordinator`]
//! adds the blocking connection and the retry rules: NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE and COORDINATOR_LOAD_IN_PROGRESS re-find the coordinator,
//! CONCURRENT_TRANSACTIONS (the previous transaction's markers are still being written) asks
//! again at the same one, each after a doubling back-off. Every retry is counted by name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gregor::client::{error_name, Client};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::stats::Counters;

/// FindCoordinator key type of a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;
/// Highest AddPartitionsToTxn version of the client form.
pub const ADD_PARTITIONS_VERSION_MAX: i16 = 3;
/// Highest EndTxn version before KIP-890's epoch bump at every transaction end.
pub const END_TXN_VERSION_MAX: i16 = 4;
/// Highest Produce version of a transactional producer that adds partitions itself.
pub const PRODUCE_TXN_VERSION_MAX: i16 = 11;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const CONCURRENT_TRANSACTIONS: i16 = 51;
/// Given to the partitions of an AddPartitionsToTxn that failed because another one did.
const OPERATION_NOT_ATTEMPTED: i16 = 55;

const CLIENT_ID: &str = "gregor-bench-txn";
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long one coordinator call may keep being retried.
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// A producer id and epoch, as batches carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// What to do after a coordinator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Find the coordinator again, then retry.
    Refind,
    /// Retry at the same coordinator.
    Retry,
    Fail,
}

pub fn classify(code: i16) -> Next {
    match code {
        0 => Next::Done,
        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS => Next::Refind,
        CONCURRENT_TRANSACTIONS => Next::Retry,
        _ => Next::Fail,
    }
}

/// Highest version in both `ours` and the broker's advertised range.
pub fn pick_version(api: ApiKey, broker: Option<(i16, i16)>, ours: (i16, i16)) -> Result<i16> {
    let Some((broker_min, broker_max)) = broker else {
        bail!("the broker does not offer {api:?}");
    };
    let best = ours.1.min(broker_max);
    if best < ours.0.max(broker_min) {
        bail!(
            "no common {api:?} version: driver {}..={}, broker {broker_min}..={broker_max}",
            ours.0,
            ours.1
        );
    }
    Ok(best)
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

pub fn find_coordinator_request(version: i16, transactional_id: &str) -> FindCoordinatorRequest {
    let key = StrBytes::from_string(transactional_id.to_string());
    let req = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_TRANSACTION);
    if version >= 4 {
        req.with_coordinator_keys(vec![key])
    } else {
        req.with_key(key)
    }
}

/// The coordinator's `host:port`, or the error code the broker answered.
pub fn coordinator_of(
    resp: &FindCoordinatorResponse,
    version: i16,
    transactional_id: &str,
) -> Result<Result<String, i16>> {
    let (code, host, port) = if version >= 4 {
        let Some(c) = resp
            .coordinators
            .iter()
            .find(|c| c.key.as_str() == transactional_id)
        else {
            bail!("FindCoordinator did not answer for {transactional_id}");
        };
        (c.error_code, &c.host, c.port)
    } else {
        (resp.error_code, &resp.host, resp.port)
    };
    if code != 0 {
        return Ok(Err(code));
    }
    Ok(Ok(format!("{host}:{port}")))
}

pub fn init_producer_id_request(
    transactional_id: Option<&str>,
    transaction_timeout_ms: i32,
) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(txn_id))
        .with_transaction_timeout_ms(transaction_timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// AddPartitionsToTxn in the client form (v0-v3).
pub fn add_partitions_request(
    transactional_id: &str,
    who: ProducerIdentity,
    topic: &str,
    partitions: &[i32],
) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(transactional_id))
        .with_v3_and_below_producer_id(ProducerId(who.producer_id))
        .with_v3_and_below_producer_epoch(who.producer_epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions.to_vec())])
}

/// The code that decides an AddPartitionsToTxn answer: 0 when every partition was added,
/// otherwise the most serious partition error (a failure before a re-find before a retry;
/// OPERATION_NOT_ATTEMPTED only says another partition failed).
pub fn add_partitions_outcome(
    resp: &AddPartitionsToTxnResponse,
    topic: &str,
    partitions: &[i32],
) -> Result<i16> {
    let mut worst = 0i16;
    let rank = |code: i16| match classify(code) {
        Next::Done => 0,
        _ if code == OPERATION_NOT_ATTEMPTED => 1,
        Next::Retry => 2,
        Next::Refind => 3,
        Next::Fail => 4,
    };
    for &p in partitions {
        let code = resp
            .results_by_topic_v3_and_below
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.results_by_partition.iter())
            .find(|r| r.partition_index == p)
            .map(|r| r.partition_error_code)
            .with_context(|| format!("AddPartitionsToTxn did not answer for {topic}-{p}"))?;
        if rank(code) > rank(worst) {
            worst = code;
        }
    }
    Ok(worst)
}

pub fn end_txn_request(
    transactional_id: &str,
    who: ProducerIdentity,
    commit: bool,
) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(txn_id(transactional_id))
        .with_producer_id(ProducerId(who.producer_id))
        .with_producer_epoch(who.producer_epoch)
        .with_committed(commit)
}

/// A producer id for an idempotent producer (no transactional id), from any broker.
pub fn init_idempotent(bootstrap: &str, transaction_timeout_ms: i32) -> Result<ProducerIdentity> {
    let mut client = Client::connect(bootstrap, CLIENT_ID)?;
    let resp = client.send(&init_producer_id_request(None, transaction_timeout_ms))?;
    if resp.error_code != 0 {
        bail!("InitProducerId: {}", error_name(resp.error_code));
    }
    Ok(ProducerIdentity {
        producer_id: resp.producer_id.0,
        producer_epoch: resp.producer_epoch,
    })
}

/// One transactional producer's link to its coordinator.
pub struct Coordinator {
    bootstrap: String,
    transactional_id: String,
    transaction_timeout_ms: i32,
    counters: Arc<Counters>,
    /// The connection to the current coordinator; `None` when it must be found (again).
    conn: Option<Client>,
    pub identity: ProducerIdentity,
}

impl Coordinator {
    /// Finds the coordinator of `transactional_id` and gets a producer id and epoch from it.
    pub fn init(
        bootstrap: &str,
        transactional_id: &str,
        transaction_timeout_ms: i32,
        counters: Arc<Counters>,
    ) -> Result<Coordinator> {
        let mut c = Coordinator {
            bootstrap: bootstrap.to_string(),
            transactional_id: transactional_id.to_string(),
            transaction_timeout_ms,
            counters,
            conn: None,
            identity: ProducerIdentity {
                producer_id: -1,
                producer_epoch: -1,
            },
        };
        c.reinit()?;
        Ok(c)
    }

    /// InitProducerId for the transactional id: a producer id and a new epoch, which fences
    /// the previous one (and starts its sequences again from 0), as a restarted producer does.
    pub fn reinit(&mut self) -> Result<()> {
        let id = self.transactional_id.clone();
        let req = init_producer_id_request(Some(&id), self.transaction_timeout_ms);
        self.identity = self.with_retries("InitProducerId", |conn| {
            let resp = conn.send(&req)?;
            Ok(match resp.error_code {
                0 => Ok(ProducerIdentity {
                    producer_id: resp.producer_id.0,
                    producer_epoch: resp.producer_epoch,
                }),
                code => Err(code),
            })
        })?;
        Ok(())
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Adds `partitions` of `topic` to the ongoing transaction.
    pub fn add_partitions(&mut self, topic: &str, partitions: &[i32]) -> Result<()> {
        let req = add_partitions_request(&self.transactional_id, self.identity, topic, partitions);
        self.with_retries("AddPartitionsToTxn", |conn| {
            let version = pick_version(
                ApiKey::AddPartitionsToTxn,
                conn.versions().broker_range(ApiKey::AddPartitionsToTxn),
                (0, ADD_PARTITIONS_VERSION_MAX),
            )?;
            let resp = conn.send_version(&req, version)?;
            Ok(match add_partitions_outcome(&resp, topic, partitions)? {
                0 => Ok(()),
                code => Err(code),
            })
        })
    }

    /// Commits (or aborts) the ongoing transaction.
    pub fn end(&mut self, commit: bool) -> Result<()> {
        let req = end_txn_request(&self.transactional_id, self.identity, commit);
        self.with_retries("EndTxn", |conn| {
            let version = pick_version(
                ApiKey::EndTxn,
                conn.versions().broker_range(ApiKey::EndTxn),
                (0, END_TXN_VERSION_MAX),
            )?;
            let resp = conn.send_version(&req, version)?;
            Ok(match resp.error_code {
                0 => Ok(()),
                code => Err(code),
            })
        })
    }

    /// Runs `attempt` at the coordinator until it succeeds, fails for good, or
    /// [`RETRY_TIMEOUT`] has passed. `attempt` returns the value or the Kafka error code.
    fn with_retries<T>(
        &mut self,
        what: &str,
        mut attempt: impl FnMut(&mut Client) -> Result<Result<T, i16>>,
    ) -> Result<T> {
        let deadline = Instant::now() + RETRY_TIMEOUT;
        let mut backoff = BACKOFF_MIN;
        loop {
            let code = match self.conn.as_mut() {
                Some(conn) => match attempt(conn)
                    .with_context(|| format!("{what} for {}", self.transactional_id))?
                {
                    Ok(v) => return Ok(v),
                    Err(code) => code,
                },
                None => match self.find()? {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        continue;
                    }
                    Err(code) => code,
                },
            };
            let name = error_name(code);
            match classify(code) {
                Next::Refind => self.conn = None,
                Next::Retry => {}
                Next::Done | Next::Fail => {
                    bail!("{what} for {}: {name} (code {code})", self.transactional_id)
                }
            }
            if Instant::now() + backoff > deadline {
                bail!(
                    "{what} for {}: still {name} after {RETRY_TIMEOUT:?}",
                    self.transactional_id
                );
            }
            self.counters.retry(&format!("{what}: {name}"));
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Asks the bootstrap broker for the coordinator and connects to it; `Err(code)` when the
    /// broker answered with an error.
    fn find(&self) -> Result<Result<Client, i16>> {
        let mut boot = Client::connect(&self.bootstrap, CLIENT_ID)
            .with_context(|| format!("connect to {}", self.bootstrap))?;
        let version = boot.version_for(ApiKey::FindCoordinator)?;
        if version < 1 {
            bail!("FindCoordinator v{version} has no key type; transactions need v1+");
        }
        let req = find_coordinator_request(version, &self.transactional_id);
        let resp = boot.send_version(&req, version)?;
        match coordinator_of(&resp, version, &self.transactional_id)? {
            Ok(addr) => {
                let conn = Client::connect(&addr, CLIENT_ID)
                    .with_context(|| format!("connect to coordinator {addr}"))?;
                Ok(Ok(conn))
            }
            Err(code) => Ok(Err(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    use kafka_protocol::messages::find_coordinator_response::Coordinator as Found;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::Decodable;

    const WHO: ProducerIdentity = ProducerIdentity {
        producer_id: 4242,
        producer_epoch: 7,
    };

    /// Encodes `req` as the driver sends it and decodes it as a broker would.
    fn round_trip<R: kafka_protocol::protocol::Request + Decodable>(req: &R, version: i16) -> R {
        let mut buf = BytesMut::new();
        crate::wire::encode_request(&mut buf, req, version, 1).unwrap();
        let api = gregor::client::frame::api_key_of::<R>().unwrap();
        let mut body = Bytes::copy_from_slice(&buf[4..]);
        let header = RequestHeader::decode(&mut body, api.request_header_version(version)).unwrap();
        assert_eq!(header.request_api_key, R::KEY);
        assert_eq!(header.request_api_version, version);
        let decoded = R::decode(&mut body, version).unwrap();
        assert!(body.is_empty(), "{api:?} v{version}: bytes left over");
        decoded
    }

    #[test]
    fn add_partitions_request_is_the_client_form_at_every_client_version() {
        let req = add_partitions_request("bench-0", WHO, "t", &[0, 2]);
        for v in 0..=ADD_PARTITIONS_VERSION_MAX {
            let got = round_trip(&req, v);
            assert_eq!(got.v3_and_below_transactional_id.0.as_str(), "bench-0");
            assert_eq!(got.v3_and_below_producer_id.0, 4242);
            assert_eq!(got.v3_and_below_producer_epoch, 7);
            assert_eq!(got.v3_and_below_topics.len(), 1);
            assert_eq!(got.v3_and_below_topics[0].name.0.as_str(), "t");
            assert_eq!(got.v3_and_below_topics[0].partitions, vec![0, 2]);
            assert!(got.transactions.is_empty());
        }
        // v4 is the broker form: the client fields do not fit it.
        let mut buf = BytesMut::new();
        assert!(crate::wire::encode_request(&mut buf, &req, 4, 1).is_err());
    }

    #[test]
    fn end_txn_request_carries_producer_and_outcome() {
        for v in 0..=END_TXN_VERSION_MAX {
            for commit in [true, false] {
                let got = round_trip(&end_txn_request("bench-1", WHO, commit), v);
                assert_eq!(got.transactional_id.0.as_str(), "bench-1");
                assert_eq!(got.producer_id.0, 4242);
                assert_eq!(got.producer_epoch, 7);
                assert_eq!(got.committed, commit);
            }
        }
    }

    #[test]
    fn init_and_find_coordinator_requests_name_the_transactional_id() {
        let got = round_trip(&init_producer_id_request(Some("bench-2"), 60_000), 4);
        assert_eq!(got.transactional_id.unwrap().0.as_str(), "bench-2");
        assert_eq!(got.transaction_timeout_ms, 60_000);
        assert_eq!((got.producer_id.0, got.producer_epoch), (-1, -1));
        assert!(round_trip(&init_producer_id_request(None, 1), 4)
            .transactional_id
            .is_none());
        for v in 1..=4 {
            let got = round_trip(&find_coordinator_request(v, "bench-2"), v);
            assert_eq!(got.key_type, KEY_TYPE_TRANSACTION);
            let keys: Vec<&str> = if v >= 4 {
                got.coordinator_keys.iter().map(|k| k.as_str()).collect()
            } else {
                vec![got.key.as_str()]
            };
            assert_eq!(keys, ["bench-2"]);
        }
    }

    #[test]
    fn coordinator_is_read_from_either_response_layout() {
        let batched = FindCoordinatorResponse::default().with_coordinators(vec![
            Found::default()
                .with_key(StrBytes::from_static_str("other"))
                .with_error_code(15),
            Found::default()
                .with_key(StrBytes::from_static_str("bench-3"))
                .with_host(StrBytes::from_static_str("10.0.0.2"))
                .with_port(9093),
        ]);
        let got = coordinator_of(&batched, 4, "bench-3").unwrap();
        assert_eq!(got, Ok("10.0.0.2:9093".to_string()));
        assert_eq!(coordinator_of(&batched, 4, "other").unwrap(), Err(15));
        assert!(coordinator_of(&batched, 4, "missing").is_err());
        let single = FindCoordinatorResponse::default()
            .with_host(StrBytes::from_static_str("h"))
            .with_port(1);
        assert_eq!(coordinator_of(&single, 3, "x").unwrap(), Ok("h:1".into()));
        let busy = FindCoordinatorResponse::default().with_error_code(14);
        assert_eq!(coordinator_of(&busy, 2, "x").unwrap(), Err(14));
    }

    fn add_response(codes: &[(i32, i16)]) -> AddPartitionsToTxnResponse {
        let results = codes
            .iter()
            .map(|(p, c)| {
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(*p)
                    .with_partition_error_code(*c)
            })
            .collect();
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(vec![
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_results_by_partition(results),
        ])
    }

    #[test]
    fn add_partitions_outcome_takes_the_most_serious_partition_error() {
        let cases: &[(&[(i32, i16)], i16)] = &[
            (&[(0, 0), (1, 0)], 0),
            (&[(0, 51), (1, 55)], 51),
            (&[(0, 55), (1, 16)], 16),
            (&[(0, 51), (1, 16)], 16),
            (&[(0, 48), (1, 16)], 48), // INVALID_TXN_STATE beats a re-find
            (&[(0, 55), (1, 55)], 55),
        ];
        for (codes, want) in cases {
            let got = add_partitions_outcome(&add_response(codes), "t", &[0, 1]).unwrap();
            assert_eq!(got, *want, "{codes:?}");
        }
        // A partition the answer leaves out is an error, not a success.
        assert!(add_partitions_outcome(&add_response(&[(0, 0)]), "t", &[0, 1]).is_err());
    }

    #[test]
    fn coordinator_errors_are_refound_or_retried_and_others_fail() {
        let cases = [
            (0, Next::Done),
            (14, Next::Refind),
            (15, Next::Refind),
            (16, Next::Refind),
            (51, Next::Retry),
            (47, Next::Fail), // INVALID_PRODUCER_EPOCH: fenced
            (48, Next::Fail),
            (53, Next::Fail), // TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            (55, Next::Fail),
        ];
        for (code, want) in cases {
            assert_eq!(classify(code), want, "code {code}");
        }
    }

    #[test]
    fn coordinator_retries_concurrent_transactions_and_refinds_a_moved_coordinator() {
        let fake = crate::fake::start(crate::fake::Script {
            flaky_coordinator: true,
            ..Default::default()
        });
        let counters = Arc::new(Counters::default());
        let mut c = Coordinator::init(&fake.addr, "bench-9", 60_000, counters.clone()).unwrap();
        let want = ProducerIdentity {
            producer_id: crate::fake::PRODUCER_ID,
            producer_epoch: crate::fake::PRODUCER_EPOCH,
        };
        assert_eq!(c.identity, want);
        c.add_partitions("t", &[0, 1]).unwrap();
        c.end(true).unwrap();
        let retries = counters.retries();
        assert_eq!(retries["AddPartitionsToTxn: CONCURRENT_TRANSACTIONS"], 1);
        assert_eq!(retries["EndTxn: NOT_COORDINATOR"], 1);
        assert_eq!(retries.len(), 2);
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen.ended, [(true, 0, 2)]);
        let versions = |k: ApiKey| -> Vec<i16> {
            let calls = seen.requests.iter().filter(|(a, _)| *a == k);
            calls.map(|(_, v)| *v).collect()
        };
        // The client form of AddPartitionsToTxn and EndTxn before KIP-890's epoch bumps.
        assert_eq!(versions(ApiKey::AddPartitionsToTxn), [3, 3]);
        assert_eq!(versions(ApiKey::EndTxn), [4, 4]);
        // Found once at start and once more after NOT_COORDINATOR.
        assert_eq!(versions(ApiKey::FindCoordinator).len(), 2);
    }

    #[test]
    fn versions_stay_in_the_client_form() {
        let add = (0, ADD_PARTITIONS_VERSION_MAX);
        let pick = |broker| pick_version(ApiKey::AddPartitionsToTxn, broker, add);
        assert_eq!(pick(Some((0, 5))).unwrap(), 3);
        assert_eq!(pick(Some((0, 2))).unwrap(), 2);
        assert!(pick(Some((4, 5))).is_err());
        assert!(pick(None).is_err());
    }
}
