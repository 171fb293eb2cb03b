//! What each shard counts about itself, and how the counts leave it.
//!
//! Every executor thread keeps its own [`Local`] registry (plain `Cell`s, no atomics, no
//! locks): the request path adds to it where the event happens, on the thread it happens on. A
//! scrape asks each shard for a [`Sample`] (a copy of its counts, `Send`), adds the samples up
//! and renders them ([`exposition`]). So a shard pays for a scrape only the copying of its own
//! counts, and nothing on the request path waits for a scrape.
//!
//! This module knows nothing of the rest of the broker: it is fed numbers and names.

pub mod exposition;
pub mod histogram;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

pub use histogram::{Histogram, HistogramSample};

/// Request API keys counted (Kafka's keys are below 100).
pub const MAX_API_KEY: usize = 100;
/// Request versions counted per key (Kafka's are below 20).
pub const MAX_API_VERSION: usize = 20;

/// Where a request's time went, as Kafka splits it (RequestMetrics: RequestQueueTimeMs,
/// LocalTimeMs, RemoteTimeMs, ResponseQueueTimeMs, ResponseSendTimeMs, TotalTimeMs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Read, waiting for room in `queued.max.request.bytes`.
    Queue = 0,
    /// Handled here: validation, appends, reads, coordinator work.
    Local = 1,
    /// Waiting on others: followers for acks=all, new data for a long-polling fetch.
    Remote = 2,
    /// Answered, waiting behind earlier responses of the connection.
    ResponseQueue = 3,
    /// Written to the socket.
    ResponseSend = 4,
    /// From read to written.
    Total = 5,
}

pub const PHASES: [Phase; 6] = [
    Phase::Queue,
    Phase::Local,
    Phase::Remote,
    Phase::ResponseQueue,
    Phase::ResponseSend,
    Phase::Total,
];

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Queue => "queue",
            Phase::Local => "local",
            Phase::Remote => "remote",
            Phase::ResponseQueue => "response_queue",
            Phase::ResponseSend => "response_send",
            Phase::Total => "total",
        }
    }
}

/// Per-topic counts (Kafka's BrokerTopicMetrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounts {
    /// Bytes of batches appended as leader (BytesInPerSec).
    pub bytes_in: u64,
    /// Records appended as leader (MessagesInPerSec).
    pub messages_in: u64,
    /// Bytes of batches sent to consumers (BytesOutPerSec; followers are not counted).
    pub bytes_out: u64,
    /// Offsets sent to consumers: records, and the control records and compacted-away offsets
    /// among them.
    pub messages_out: u64,
}

impl TopicCounts {
    fn add(&mut self, o: &TopicCounts) {
        self.bytes_in += o.bytes_in;
        self.messages_in += o.messages_in;
        self.bytes_out += o.bytes_out;
        self.messages_out += o.messages_out;
    }
}

/// Broker-wide counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Connections the broker closed because of what the client sent: a request it cannot
    /// parse or does not serve, a frame over `socket.request.max.bytes`, a failed acks=0 produce.
    pub connections_closed_on_error: u64,
    /// Bytes a leader sent to followers (ReplicationBytesOutPerSec).
    pub replication_bytes_out: u64,
    /// Bytes a follower appended from its leader (ReplicationBytesInPerSec).
    pub replication_bytes_in: u64,
    /// Fetched bytes served from the in-memory tail cache.
    pub fetch_cache_bytes: u64,
    /// Fetched bytes served from segment files (page cache, sendfile, or direct reads).
    pub fetch_file_bytes: u64,
    /// Jobs sent to other shards over the mesh.
    pub cross_shard_messages: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    /// Direct writes of segment data, and fdatasyncs of segment files.
    pub disk_writes: u64,
    pub fsyncs: u64,
    /// Partition logs that failed a write and went offline.
    pub log_failures: u64,
    /// Times a partition log found its device full (it retries and resumes by itself).
    pub log_out_of_space: u64,
    /// Producers forgotten over producer.state.max.producers.per.partition.
    pub producers_evicted: u64,
    /// SASL authentications that succeeded and failed (Kafka: successful-authentication-total,
    /// failed-authentication-total); TLS handshakes that failed.
    pub authentications_ok: u64,
    pub authentications_failed: u64,
    pub tls_handshakes_failed: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.connections_opened += o.connections_opened;
        self.connections_closed += o.connections_closed;
        self.connections_closed_on_error += o.connections_closed_on_error;
        self.replication_bytes_out += o.replication_bytes_out;
        self.replication_bytes_in += o.replication_bytes_in;
        self.fetch_cache_bytes += o.fetch_cache_bytes;
        self.fetch_file_bytes += o.fetch_file_bytes;
        self.cross_shard_messages += o.cross_shard_messages;
        self.isr_shrinks += o.isr_shrinks;
        self.isr_expands += o.isr_expands;
        self.disk_writes += o.disk_writes;
        self.fsyncs += o.fsyncs;
        self.log_failures += o.log_failures;
        self.log_out_of_space += o.log_out_of_space;
        self.authentications_ok += o.authentications_ok;
        self.authentications_failed += o.authentications_failed;
        self.tls_handshakes_failed += o.tls_handshakes_failed;
        self.producers_evicted += o.producers_evicted;
    }
}

/// The registry of one executor thread. Lives on that thread only; reached through [`with`].
pub struct Local {
    requests: Box<[[Cell<u64>; MAX_API_VERSION]; MAX_API_KEY]>,
    latency: RefCell<Vec<Option<Rc<[Histogram; 6]>>>>,
    errors: RefCell<HashMap<(i16, i16), u64>>,
    topics: RefCell<HashMap<Rc<str>, TopicCounts>>,
    counters: Cell<Counters>,
    disk_write: Histogram,
    fsync: Histogram,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            requests: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| Cell::new(0))
            })),
            latency: RefCell::new(vec![None; MAX_API_KEY]),
            errors: RefCell::default(),
            topics: RefCell::default(),
            counters: Cell::default(),
            disk_write: Histogram::default(),
            fsync: Histogram::default(),
        }
    }
}

thread_local! {
    static LOCAL: Local = Local::default();
}

/// Runs `f` with this thread's registry.
pub fn with<R>(f: impl FnOnce(&Local) -> R) -> R {
    LOCAL.with(f)
}

/// Adds to this thread's broker-wide counters.
pub fn count(f: impl FnOnce(&mut Counters)) {
    with(|l| {
        let mut c = l.counters.get();
        f(&mut c);
        l.counters.set(c);
    })
}

/// Adds to this thread's counts of `topic`.
pub fn count_topic(topic: &str, f: impl FnOnce(&mut TopicCounts)) {
    with(|l| {
        let mut topics = l.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(t) => f(t),
            None => {
                let mut t = TopicCounts::default();
                f(&mut t);
                topics.insert(Rc::from(topic), t);
            }
        }
    })
}

/// Keeps this thread's counts of the topics `keep` says still exist (deleted ones go).
pub fn retain_topics(keep: impl Fn(&str) -> bool) {
    with(|l| l.topics.borrow_mut().retain(|t, _| keep(t)));
}

/// A request of `api` at `version` was answered, with its time by phase.
pub fn request_done(api: i16, version: i16, phases: &[(Phase, Duration)]) {
    let (Ok(a), Ok(v)) = (usize::try_from(api), usize::try_from(version)) else {
        return;
    };
    if a >= MAX_API_KEY || v >= MAX_API_VERSION {
        return;
    }
    with(|l| {
        let c = &l.requests[a][v];
        c.set(c.get() + 1);
        let hs = {
            let mut lat = l.latency.borrow_mut();
            lat[a]
                .get_or_insert_with(|| Rc::new(std::array::from_fn(|_| Histogram::default())))
                .clone()
        };
        for (phase, d) in phases {
            hs[*phase as usize].record(*d);
        }
    })
}

/// A response of `api` carried error `code` (one count per partition or resource that got it).
pub fn request_error(api: i16, code: i16) {
    if code == 0 {
        return;
    }
    with(|l| *l.errors.borrow_mut().entry((api, code)).or_default() += 1)
}

/// A direct write of segment data took `d`.
pub fn disk_write(d: Duration) {
    with(|l| l.disk_write.record(d));
    count(|c| c.disk_writes += 1);
}

/// An fdatasync of a segment file took `d`.
pub fn fsync(d: Duration) {
    with(|l| l.fsync.record(d));
    count(|c| c.fsyncs += 1);
}

/// The counts of one or more shards, as a scrape collects them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Requests by (api key, version).
    pub requests: BTreeMap<(i16, i16), u64>,
    /// Request time by api key, per [`Phase`].
    pub latency: BTreeMap<i16, [HistogramSample; 6]>,
    /// Error codes in responses by (api key, code).
    pub errors: BTreeMap<(i16, i16), u64>,
    pub topics: BTreeMap<String, TopicCounts>,
    pub counters: Counters,
    pub disk_write: HistogramSample,
    pub fsync: HistogramSample,
}

impl Sample {
    /// This thread's counts.
    pub fn take_local() -> Sample {
        with(|l| {
            let mut requests = BTreeMap::new();
            for (a, versions) in l.requests.iter().enumerate() {
                for (v, c) in versions.iter().enumerate() {
                    if c.get() > 0 {
                        requests.insert((a as i16, v as i16), c.get());
                    }
                }
            }
            let latency = l
                .latency
                .borrow()
                .iter()
                .enumerate()
                .filter_map(|(a, h)| h.as_ref().map(|h| (a as i16, h)))
                .map(|(a, h)| (a, std::array::from_fn(|i| h[i].sample())))
                .collect();
            Sample {
                requests,
                latency,
                errors: l.errors.borrow().iter().map(|(k, v)| (*k, *v)).collect(),
                topics: l
                    .topics
                    .borrow()
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                counters: l.counters.get(),
                disk_write: l.disk_write.sample(),
                fsync: l.fsync.sample(),
            }
        })
    }

    /// Adds another shard's counts to these.
    pub fn merge(&mut self, o: &Sample) {
        for (k, v) in &o.requests {
            *self.requests.entry(*k).or_default() += v;
        }
        for (k, hs) in &o.latency {
            let mine = self.latency.entry(*k).or_default();
            for (m, h) in mine.iter_mut().zip(hs.iter()) {
                m.merge(h);
            }
        }
        for (k, v) in &o.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, v) in &o.topics {
            self.topics.entry(k.clone()).or_default().add(v);
        }
        self.counters.add(&o.counters);
        self.disk_write.merge(&o.disk_write);
        self.fsync.merge(&o.fsync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_sees_only_its_own_counts_and_samples_merge() {
        let other = std::thread::spawn(|| {
            request_done(0, 9, &[(Phase::Total, Duration::from_micros(300))]);
            count_topic("t", |t| t.messages_in += 5);
            count(|c| c.connections_opened += 1);
            Sample::take_local()
        })
        .join()
        .unwrap();
        let mine = std::thread::spawn(|| {
            request_done(0, 9, &[(Phase::Total, Duration::from_micros(700))]);
            request_done(1, 12, &[(Phase::Local, Duration::from_micros(5))]);
            request_done(500, 1, &[]); // unknown key: ignored
            count_topic("t", |t| t.messages_in += 2);
            count_topic("u", |t| t.bytes_out += 10);
            request_error(0, 6);
            request_error(0, 0); // no error: not counted
            Sample::take_local()
        })
        .join()
        .unwrap();
        assert_eq!(other.requests.get(&(0, 9)), Some(&1));
        assert_eq!(other.topics.len(), 1);
        let mut all = other.clone();
        all.merge(&mine);
        assert_eq!(all.requests.get(&(0, 9)), Some(&2));
        assert_eq!(all.requests.get(&(1, 12)), Some(&1));
        assert_eq!(all.requests.len(), 2);
        assert_eq!(all.topics["t"].messages_in, 7);
        assert_eq!(all.topics["u"].bytes_out, 10);
        assert_eq!(all.errors, BTreeMap::from([((0, 6), 1)]));
        assert_eq!(all.counters.connections_opened, 1);
        let produce = all.latency[&0][Phase::Total as usize];
        assert_eq!(produce.count(), 2);
        assert_eq!(produce.sum_ns, 1_000_000);
        assert_eq!(all.latency[&0][Phase::Local as usize].count(), 0);
    }
}
