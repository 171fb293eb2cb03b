//! The coordinator's marker channel: WriteTxnMarkers (v1) to the leader of each partition of a
//! prepared transaction, grouped by broker, over a broker-to-broker [`Link`] (this node's own
//! partitions go through its own listener too, so every marker takes one path). Partitions
//! whose leader moved or is unknown are tried again with a growing backoff until every one has
//! its marker; a partition whose topic was deleted needs none.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use crate::replication::link::Link;
use crate::shard::Shard;
use crate::txn::coordinator::{coordinator_epoch, MarkerJob, MarkerSender};
use crate::types::{NodeId, TopicPartition};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A leader answers markers once they are written to its ISR; past this it is asked again
/// on a new connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The sender the composition root installs on each shard.
pub fn sender() -> MarkerSender {
    Rc::new(|shard, job| -> LocalBoxFuture<'static, bool> { Box::pin(send(shard, job)) })
}

/// What a leader said about one partition's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerAnswer {
    Written,
    /// The leader moved, is catching up, or could not write now: send again.
    Retry,
    /// This coordinator was fenced by a newer one: stop, the newer one finishes.
    Fenced,
}

/// Kafka's TransactionMarkerRequestCompletionHandler, per partition error code.
pub fn classify(code: i16) -> MarkerAnswer {
    if code == 0 {
        return MarkerAnswer::Written;
    }
    match ResponseError::try_from_code(code) {
        Some(ResponseError::InvalidProducerEpoch)
        | Some(ResponseError::TransactionCoordinatorFenced) => MarkerAnswer::Fenced,
        // A partition that cannot take markers at all (an old message format) has none to get.
        Some(ResponseError::UnsupportedForMessageFormat) => MarkerAnswer::Written,
        _ => MarkerAnswer::Retry,
    }
}

async fn send(shard: Rc<Shard>, job: MarkerJob) -> bool {
    let mut left = job.partitions.clone();
    let mut backoff = BACKOFF_MIN;
    let mut tries = 0u32;
    loop {
        if coordinator_epoch(&shard, job.txn_partition) != Some(job.coordinator_epoch) {
            return false;
        }
        let snap = shard.snapshot();
        let mut by_broker: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
        let mut again = Vec::new();
        for tp in left {
            match snap.partition(&tp.topic, tp.partition) {
                None => tracing::info!(partition = %tp, "no marker for a deleted partition"),
                Some(p) if p.leader < 0 => again.push(tp),
                Some(p) => by_broker.entry(p.leader).or_default().push(tp),
            }
        }
        let mut sends = Vec::new();
        for (broker, tps) in by_broker {
            let Some(b) = snap.brokers.get(&broker).filter(|b| !b.fenced) else {
                again.extend(tps);
                continue;
            };
            let addr = format!("{}:{}", b.host, b.port);
            let (shard, job) = (shard.clone(), job.clone());
            // Brokers are written to at once; each answer is handled when all are in.
            sends.push(async move {
                let r = send_pooled(&shard, &addr, &job, &tps).await;
                (broker, addr, tps, r)
            });
        }
        for (broker, addr, tps, r) in futures::future::join_all(sends).await {
            match r {
                Ok(answers) => {
                    for (tp, answer) in answers {
                        match answer {
                            MarkerAnswer::Written => {}
                            MarkerAnswer::Retry => again.push(tp),
                            MarkerAnswer::Fenced => return false,
                        }
                    }
                }
                Err(e) => {
                    if tries.is_multiple_of(20) {
                        tracing::warn!(broker, %addr, error = %e, "sending transaction markers failed; retrying");
                    }
                    again.extend(tps);
                }
            }
        }
        if again.is_empty() {
            return true;
        }
        left = again;
        tries += 1;
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Idle coordinator connections of one shard (markers, verifications), by broker address: a
/// connection is taken for one round trip and put back after it succeeds (a failed one is
/// dropped). Bounded per address; a connection beyond the bound is closed instead of kept.
/// The addresses are those of brokers in the cluster's metadata, never a client's.
struct Pool<T> {
    idle: std::cell::RefCell<std::collections::HashMap<String, Vec<T>>>,
}

type LinkPool = Pool<Link>;

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            idle: Default::default(),
        }
    }
}

impl<T> Pool<T> {
    fn take(&self, addr: &str) -> Option<T> {
        self.idle.borrow_mut().get_mut(addr).and_then(Vec::pop)
    }

    /// Keeps `item` for `addr` unless IDLE_LINKS_PER_BROKER_MAX are kept already (then it is
    /// dropped: a connection closes).
    fn put(&self, addr: &str, item: T) {
        let mut idle = self.idle.borrow_mut();
        let kept = idle.entry(addr.to_string()).or_default();
        if kept.len() < IDLE_LINKS_PER_BROKER_MAX {
            kept.push(item);
        }
    }
}

const IDLE_LINKS_PER_BROKER_MAX: usize = 4;

/// An idle connection of this shard to `addr`, or a new one.
pub(super) async fn take_link(shard: &Shard, addr: &str) -> std::io::Result<Link> {
    let idle = shard.service::<LinkPool>().take(addr);
    match idle {
        Some(l) => Ok(l),
        None => Link::to_broker(shard, addr, "gregor-txn", CONNECT_TIMEOUT).await,
    }
}

/// Gives back a connection whose last round trip succeeded.
pub(super) fn put_link(shard: &Shard, addr: &str, link: Link) {
    shard.service::<LinkPool>().put(addr, link);
}

async fn send_pooled(
    shard: &Shard,
    addr: &str,
    job: &MarkerJob,
    tps: &[TopicPartition],
) -> std::io::Result<Vec<(TopicPartition, MarkerAnswer)>> {
    let mut link = take_link(shard, addr).await?;
    let answers = send_on(&mut link, job, tps).await?;
    put_link(shard, addr, link);
    Ok(answers)
}

/// One WriteTxnMarkers round trip on a new connection: the answer for each partition sent.
#[cfg(test)]
async fn send_to(
    addr: &str,
    job: &MarkerJob,
    tps: &[TopicPartition],
) -> std::io::Result<Vec<(TopicPartition, MarkerAnswer)>> {
    let plaintext = crate::client::ClientSecurity::plaintext();
    let mut link = Link::connect(addr, "gregor-txn-markers", CONNECT_TIMEOUT, &plaintext).await?;
    send_on(&mut link, job, tps).await
}

/// One WriteTxnMarkers round trip on `link`: the answer for each partition sent.
async fn send_on(
    link: &mut Link,
    job: &MarkerJob,
    tps: &[TopicPartition],
) -> std::io::Result<Vec<(TopicPartition, MarkerAnswer)>> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        topics.entry(&tp.topic).or_default().push(tp.partition);
    }
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(job.producer_id))
        .with_producer_epoch(job.producer_epoch)
        .with_transaction_result(job.commit)
        .with_coordinator_epoch(job.coordinator_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        );
    let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let resp = crate::metadata::raft::transport::within(REQUEST_TIMEOUT, link.request(&req, 1))
        .await
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let mut out = Vec::new();
    for m in resp
        .markers
        .iter()
        .filter(|m| m.producer_id.0 == job.producer_id)
    {
        for t in &m.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                if tps.contains(&tp) {
                    out.push((tp, classify(p.error_code)));
                }
            }
        }
    }
    // A partition the answer left out is sent again.
    for tp in tps {
        if !out.iter().any(|(t, _)| t == tp) {
            out.push((tp.clone(), MarkerAnswer::Retry));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    use kafka_protocol::messages::{RequestHeader, ResponseHeader, WriteTxnMarkersResponse};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
    use std::io::{Read, Write};

    /// A leader that takes one WriteTxnMarkers v1, hands it to the test, and answers partition
    /// a-0 with NONE, a-1 with NOT_LEADER_OR_FOLLOWER, and leaves b-0 out.
    fn fake_leader() -> (String, std::thread::JoinHandle<WriteTxnMarkersRequest>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut size = [0u8; 4];
            s.read_exact(&mut size).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
            s.read_exact(&mut body).unwrap();
            let mut body = bytes::Bytes::from(body);
            let hv = WriteTxnMarkersRequest::header_version(1);
            let header = RequestHeader::decode(&mut body, hv).unwrap();
            assert_eq!(header.request_api_key, 27);
            assert_eq!(header.request_api_version, 1);
            let req = WriteTxnMarkersRequest::decode(&mut body, 1).unwrap();
            assert!(!body.has_remaining());
            let part = |p: i32, code: i16| {
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(p)
                    .with_error_code(code)
            };
            let resp = WriteTxnMarkersResponse::default().with_markers(vec![
                WritableTxnMarkerResult::default()
                    .with_producer_id(ProducerId(77))
                    .with_topics(vec![WritableTxnMarkerTopicResult::default()
                        .with_name(TopicName(StrBytes::from_static_str("a")))
                        .with_partitions(vec![
                            part(0, 0),
                            part(1, ResponseError::NotLeaderOrFollower.code()),
                        ])]),
            ]);
            let mut out = BytesMut::new();
            out.put_u32(0);
            ResponseHeader::default()
                .with_correlation_id(header.correlation_id)
                .encode(&mut out, WriteTxnMarkersResponse::header_version(1))
                .unwrap();
            resp.encode(&mut out, 1).unwrap();
            let len = (out.len() - 4) as u32;
            out[..4].copy_from_slice(&len.to_be_bytes());
            s.write_all(&out).unwrap();
            req
        });
        (addr, h)
    }

    #[test]
    fn the_idle_pool_keeps_a_bounded_number_per_broker() {
        let pool: Pool<u32> = Pool::default();
        for i in 0..10 {
            pool.put("a:1", i);
        }
        pool.put("b:2", 99);
        let mut from_a = Vec::new();
        while let Some(i) = pool.take("a:1") {
            from_a.push(i);
        }
        assert_eq!(from_a.len(), IDLE_LINKS_PER_BROKER_MAX);
        assert_eq!(pool.take("b:2"), Some(99));
        assert_eq!(pool.take("c:3"), None);
    }

    #[test]
    fn markers_go_out_as_write_txn_markers_v1_and_answers_are_read_per_partition() {
        let (addr, leader) = fake_leader();
        let job = MarkerJob {
            txn_partition: 3,
            coordinator_epoch: 9,
            producer_id: 77,
            producer_epoch: 4,
            commit: true,
            partitions: vec![],
        };
        let tps = vec![
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 1),
            TopicPartition::new("b", 0),
        ];
        let sent = tps.clone();
        let answers = glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async move { send_to(&addr, &job, &sent).await.unwrap() });
        assert_eq!(
            answers,
            vec![
                (tps[0].clone(), MarkerAnswer::Written),
                (tps[1].clone(), MarkerAnswer::Retry),
                (tps[2].clone(), MarkerAnswer::Retry),
            ]
        );
        let req = leader.join().unwrap();
        assert_eq!(req.markers.len(), 1);
        let m = &req.markers[0];
        assert_eq!((m.producer_id.0, m.producer_epoch), (77, 4));
        assert!(m.transaction_result, "a commit marker");
        assert_eq!(m.coordinator_epoch, 9);
        let topics: Vec<(&str, Vec<i32>)> = m
            .topics
            .iter()
            .map(|t| (t.name.0.as_str(), t.partition_indexes.clone()))
            .collect();
        assert_eq!(topics, vec![("a", vec![0, 1]), ("b", vec![0])]);
    }

    #[test]
    fn marker_errors_are_handled_as_kafka_does() {
        assert_eq!(classify(0), MarkerAnswer::Written);
        for e in [
            ResponseError::NotLeaderOrFollower,
            ResponseError::UnknownTopicOrPartition,
            ResponseError::NotEnoughReplicas,
            ResponseError::NotEnoughReplicasAfterAppend,
            ResponseError::RequestTimedOut,
            ResponseError::KafkaStorageError,
        ] {
            assert_eq!(classify(e.code()), MarkerAnswer::Retry, "{e:?}");
        }
        for e in [
            ResponseError::InvalidProducerEpoch,
            ResponseError::TransactionCoordinatorFenced,
        ] {
            assert_eq!(classify(e.code()), MarkerAnswer::Fenced, "{e:?}");
        }
    }
}
