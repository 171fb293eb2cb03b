//! One producer: a thread that paces records, fills one open batch per partition, and sends
//! closed batches in pipelined Produce requests, one connection per partition leader.
//!
//! Each connection has a reader thread that matches responses to requests in order (Kafka
//! answers a connection's requests in the order sent), counts acknowledged records and errors,
//! and records produce latency from each record's intended send time. At most
//! `max_in_flight` requests are unanswered per connection ([`Slots`]); while the window is
//! full, closed batches wait (up to `buffer_memory` bytes), as in Kafka's producer.
//!
//! With acks=0 the broker sends no response: a record counts as acknowledged, and its latency
//! is taken, when its request has been written to the socket.
//!
//! Idempotent producers stamp each batch with their producer id, epoch and a per-partition
//! sequence, assigned when the batch closes (batches of a partition leave in that order).
//! Transactional producers add each partition to the transaction before its first batch is
//! sent (one AddPartitionsToTxn for every new partition of the batches about to leave, as
//! Kafka's producer does) and, after `transaction_records` records, close and send every batch,
//! wait for every answer, and end the transaction: EndTxn commit, or abort when one of its
//! batches failed (failed batches are never retried; after an abort the producer takes a new
//! epoch from InitProducerId and starts its sequences again). Commit latency is the EndTxn
//! round trip, one sample per transaction.

use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use gregor::client::partitioner::partition_for_key;
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::batch::{next_sequence, BatchBuilder, ClosedBatch, ProducerStamp, SEND_TIME_BYTES};
use crate::clock::{self, now_ns};
use crate::interval::{IntervalHist, IntervalSink, Measure};
use crate::pacer::Pacer;
use crate::stats::{self, Counters};
use crate::topic::TopicLayout;
use crate::txn::{Coordinator, ProducerIdentity};
use crate::wire::{self, Slots};

/// Longest a producer sleeps before looking at its clock again.
const IDLE_WAIT: Duration = Duration::from_millis(1);
/// Longest sleep of a producer with nothing waiting for a slot: then only its own deadlines
/// (next record, linger, end of run) can give it work, so it sleeps until the first of them.
const IDLE_SLEEP_MAX: Duration = Duration::from_millis(100);
/// How long the end of a run waits for the last acknowledgements.
const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything one producer thread needs.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub index: usize,
    pub topic: Arc<TopicLayout>,
    pub acks: i16,
    pub codec: Compression,
    pub record_size: usize,
    pub key_cardinality: u64,
    pub key_size: usize,
    pub batch_size: usize,
    pub linger_ns: u64,
    pub max_in_flight: usize,
    pub max_request_size: usize,
    pub buffer_memory: usize,
    /// This producer's share of the rate.
    pub rate: Option<f64>,
    pub start_ns: u64,
    pub warmup_end_ns: u64,
    pub stop_at_ns: Option<u64>,
    /// This producer's share of `--records`.
    pub records: Option<u64>,
    pub produce_version: i16,
    pub request_timeout_ms: i32,
    /// Records per transaction (transactional producers only).
    pub transaction_records: Option<u64>,
    /// Per-interval produce latency (`--report-interval`).
    pub intervals: Option<Arc<IntervalSink>>,
}

/// Who the producer is to the broker, set up before the run starts.
pub enum Identity {
    /// No producer id: batches carry -1.
    None,
    Idempotent(ProducerIdentity),
    /// A producer id from this transactional id's coordinator.
    Transactional(Coordinator),
}

/// The latency histograms of one producer.
pub struct ProducerHists {
    pub produce: Histogram<u64>,
    /// EndTxn commit round trips (transactional producers only).
    pub commit: Histogram<u64>,
}

impl ProducerHists {
    pub fn new() -> ProducerHists {
        ProducerHists {
            produce: stats::new_histogram(),
            commit: stats::new_histogram(),
        }
    }

    pub fn merge(&mut self, other: &ProducerHists) -> Result<()> {
        stats::merge(&mut self.produce, &other.produce)?;
        stats::merge(&mut self.commit, &other.commit)
    }
}

impl Default for ProducerHists {
    fn default() -> Self {
        Self::new()
    }
}

/// What one producer's readers tell it (the run's counters are shared by all producers).
#[derive(Debug, Default)]
struct Tally {
    acked_records: AtomicU64,
    failed_batches: AtomicU64,
}

/// A sent request as its reader sees it.
struct InFlight {
    correlation_id: i32,
    batches: Vec<BatchMeta>,
}

#[derive(Debug, Clone, Copy)]
struct BatchMeta {
    partition: i32,
    count: u32,
    payload_bytes: u64,
    first_intended_ns: u64,
    last_intended_ns: u64,
}

impl From<&ClosedBatch> for BatchMeta {
    fn from(b: &ClosedBatch) -> BatchMeta {
        BatchMeta {
            partition: b.partition,
            count: b.count,
            payload_bytes: b.payload_bytes,
            first_intended_ns: b.first_intended_ns,
            last_intended_ns: b.last_intended_ns,
        }
    }
}

/// Where an acknowledged batch's latency goes: the run's histogram and, with
/// `--report-interval`, the histogram of the current interval.
struct Recorders {
    hist: Histogram<u64>,
    interval: Option<IntervalHist>,
}

impl Recorders {
    fn new(sink: Option<&Arc<IntervalSink>>) -> Recorders {
        Recorders {
            hist: stats::new_histogram(),
            interval: sink.map(|s| s.recorder(Measure::Produce)),
        }
    }
}

/// Counts an acknowledged batch and records its latency.
fn ack(counters: &Counters, rec: &mut Recorders, b: &BatchMeta, warmup_end: u64, now: u64) {
    Counters::add(&counters.acked_records, u64::from(b.count));
    Counters::add(&counters.acked_bytes, b.payload_bytes);
    Counters::touch(&counters.last_ack_ns, now);
    if b.first_intended_ns >= warmup_end {
        Counters::add(&counters.measured_acked_records, u64::from(b.count));
        Counters::add(&counters.measured_acked_bytes, b.payload_bytes);
        let (first, last) = (b.first_intended_ns, b.last_intended_ns);
        stats::record_batch(&mut rec.hist, first, last, b.count, now);
        if let Some(i) = &mut rec.interval {
            i.record_batch(first, last, b.count, now);
        }
    }
}

/// One connection to a partition leader: the writer half stays with the producer thread.
struct Conn {
    stream: TcpStream,
    slots: Arc<Slots>,
    tx: Option<Sender<InFlight>>,
    reader: Option<JoinHandle<Result<Histogram<u64>>>>,
    buf: BytesMut,
    next_correlation_id: i32,
    /// Closed batches waiting for a slot.
    ready: VecDeque<ClosedBatch>,
    transactional_id: Option<TransactionalId>,
}

impl Conn {
    fn open(
        addr: &str,
        spec: &ProducerSpec,
        counters: &Arc<Counters>,
        tally: &Arc<Tally>,
        transactional_id: Option<&str>,
    ) -> Result<Conn> {
        let stream = wire::connect(addr)?;
        let slots = Arc::new(Slots::new(spec.max_in_flight));
        let (tx, reader) = if spec.acks == 0 {
            (None, None)
        } else {
            let (tx, rx) = channel();
            let ctx = ReaderCtx {
                stream: stream.try_clone().context("clone socket")?,
                rx,
                slots: slots.clone(),
                counters: counters.clone(),
                tally: tally.clone(),
                version: spec.produce_version,
                warmup_end_ns: spec.warmup_end_ns,
                topic: spec.topic.name.clone(),
                intervals: spec.intervals.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("ack-reader-{}", spec.index))
                .spawn(move || ctx.run())
                .context("spawn ack reader")?;
            (Some(tx), Some(handle))
        };
        Ok(Conn {
            stream,
            slots,
            tx,
            reader,
            buf: BytesMut::with_capacity(spec.max_request_size + 4096),
            next_correlation_id: 0,
            ready: VecDeque::new(),
            transactional_id: transactional_id
                .map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        })
    }

    /// Takes ready batches, at most one per partition (Kafka allows one batch per partition
    /// per request), up to `max_bytes`.
    fn take_request(&mut self, max_bytes: usize) -> Vec<ClosedBatch> {
        let mut taken: Vec<ClosedBatch> = Vec::new();
        let mut kept = VecDeque::new();
        let mut bytes = 0usize;
        while let Some(b) = self.ready.pop_front() {
            let fits = taken.is_empty() || bytes + b.bytes.len() <= max_bytes;
            if fits && !taken.iter().any(|t| t.partition == b.partition) {
                bytes += b.bytes.len();
                taken.push(b);
            } else {
                kept.push_back(b);
            }
        }
        self.ready = kept;
        taken
    }

    /// Encodes and writes one Produce request; hands its batches to the reader.
    fn send(&mut self, spec: &ProducerSpec, batches: &[ClosedBatch]) -> Result<Vec<BatchMeta>> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let partition_data = batches
            .iter()
            .map(|b| {
                PartitionProduceData::default()
                    .with_index(b.partition)
                    .with_records(Some(b.bytes.clone()))
            })
            .collect();
        let req = ProduceRequest::default()
            .with_transactional_id(self.transactional_id.clone())
            .with_acks(spec.acks)
            .with_timeout_ms(spec.request_timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(spec.topic.name.clone())))
                .with_topic_id(spec.topic.id)
                .with_partition_data(partition_data)]);
        wire::encode_request(&mut self.buf, &req, spec.produce_version, correlation_id)?;
        let metas: Vec<BatchMeta> = batches.iter().map(BatchMeta::from).collect();
        if let Some(tx) = &self.tx {
            tx.send(InFlight {
                correlation_id,
                batches: metas.clone(),
            })
            .map_err(|_| anyhow!("ack reader stopped"))?;
        }
        self.stream
            .write_all(&self.buf)
            .context("write produce request")?;
        if self.tx.is_none() {
            self.slots.release(); // acks=0: nothing will answer
        }
        Ok(metas)
    }

    /// Waits for the last responses and stops the reader; returns its histogram.
    fn close(mut self) -> Result<Option<Histogram<u64>>> {
        let idle = self.slots.wait_idle(FINAL_ACK_TIMEOUT);
        self.tx = None; // the reader exits when the channel closes
        let _ignored = self.stream.shutdown(Shutdown::Both);
        let hist = match self.reader.take() {
            Some(h) => Some(h.join().map_err(|_| anyhow!("ack reader panicked"))??),
            None => None,
        };
        idle?;
        Ok(hist)
    }
}

/// The reader thread of one connection.
struct ReaderCtx {
    stream: TcpStream,
    rx: Receiver<InFlight>,
    slots: Arc<Slots>,
    counters: Arc<Counters>,
    tally: Arc<Tally>,
    version: i16,
    warmup_end_ns: u64,
    topic: String,
    intervals: Option<Arc<IntervalSink>>,
}

impl ReaderCtx {
    fn run(self) -> Result<Histogram<u64>> {
        let mut rec = Recorders::new(self.intervals.as_ref());
        let mut reader = BufReader::with_capacity(64 << 10, self.stream.try_clone()?);
        while let Ok(inflight) = self.rx.recv() {
            if let Err(e) = self.answer(&mut reader, &inflight, &mut rec) {
                self.counters.error("CONNECTION_FAILED");
                self.slots.fail(format!("{e:#}"));
                return Err(e);
            }
            self.slots.release();
        }
        Ok(rec.hist)
    }

    fn answer(
        &self,
        reader: &mut BufReader<TcpStream>,
        inflight: &InFlight,
        rec: &mut Recorders,
    ) -> Result<()> {
        let frame = wire::read_frame(reader)?;
        let now = now_ns();
        let resp =
            wire::decode_response::<ProduceRequest>(self.version, frame, inflight.correlation_id)?;
        let parts: Vec<_> = resp
            .responses
            .iter()
            .filter(|t| t.name.as_str() == self.topic || t.name.is_empty())
            .flat_map(|t| t.partition_responses.iter())
            .collect();
        for b in &inflight.batches {
            let code = parts
                .iter()
                .find(|p| p.index == b.partition)
                .map_or(-1, |p| p.error_code);
            if code == 0 {
                ack(&self.counters, rec, b, self.warmup_end_ns, now);
                Counters::add(&self.tally.acked_records, u64::from(b.count));
            } else {
                Counters::add(&self.tally.failed_batches, 1);
                let name = if code == -1 && !parts.iter().any(|p| p.index == b.partition) {
                    "MISSING_PARTITION_RESPONSE".to_string()
                } else {
                    gregor::client::error_name(code)
                };
                self.counters.error(&name);
                Counters::add(&self.counters.error_records, u64::from(b.count));
            }
        }
        Ok(())
    }
}

/// Picks partitions: by key (murmur2, like Kafka) or sticky (stay until the batch closes).
struct Chooser {
    keyed: bool,
    key_cardinality: u64,
    partitions: usize,
    sticky: usize,
    next_key: u64,
    /// The key of the last keyed pick (`key_size` bytes).
    key_buf: Vec<u8>,
}

impl Chooser {
    fn new(key_cardinality: u64, key_size: usize, partitions: usize, index: usize) -> Chooser {
        Chooser {
            keyed: key_cardinality > 0,
            key_cardinality: key_cardinality.max(1),
            partitions,
            sticky: index % partitions,
            next_key: index as u64 * 1_000_003,
            key_buf: vec![b'0'; key_size],
        }
    }

    /// Returns the partition index (into the layout) of the next record; a keyed record's key
    /// is then [`Chooser::key`].
    fn next(&mut self) -> usize {
        if !self.keyed {
            return self.sticky;
        }
        // A bijective mix spreads consecutive records over the whole key space.
        let k = splitmix64(self.next_key) % self.key_cardinality;
        self.next_key += 1;
        write_key(&mut self.key_buf, k);
        partition_for_key(&self.key_buf, self.partitions as i32) as usize
    }

    /// The key of the record [`Chooser::next`] placed, if records are keyed.
    fn key(&self) -> Option<&[u8]> {
        self.keyed.then_some(&self.key_buf[..])
    }

    fn batch_closed(&mut self, idx: usize) {
        if !self.keyed && idx == self.sticky {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
    }
}

/// The SplitMix64 finalizer: a bijection on u64 whose outputs look random.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes `k` in decimal, zero-padded to the buffer's width (higher digits are dropped; the
/// plan checks the width holds every key).
fn write_key(buf: &mut [u8], mut k: u64) {
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (k % 10) as u8;
        k /= 10;
    }
}

/// Value filler: upper-case letters from a fixed xorshift sequence (as Kafka's perf tool uses
/// random letters), so compression ratios are realistic and every run is the same.
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

/// The producer thread's state.
struct Producer {
    spec: ProducerSpec,
    counters: Arc<Counters>,
    conns: Vec<Conn>,
    /// Layout partition index -> connection index.
    conn_of: Vec<usize>,
    builders: Vec<BatchBuilder>,
    chooser: Chooser,
    pacer: Pacer,
    filler: Vec<u8>,
    ready_bytes: usize,
    /// Latency of acks=0 sends (other acks are measured by the readers).
    send_rec: Recorders,
    /// Producer id and epoch of an idempotent or transactional producer.
    identity: Option<ProducerIdentity>,
    /// Next base sequence per layout partition (idempotent and transactional producers).
    sequences: Vec<i32>,
    tally: Arc<Tally>,
    txn: Option<Txn>,
    commit_hist: Histogram<u64>,
}

/// The open transaction of a transactional producer.
struct Txn {
    coordinator: Coordinator,
    records_max: u64,
    /// Records appended to the open transaction.
    records: u64,
    /// Partitions already added to it.
    added: Vec<i32>,
    /// The producer's tally when the transaction began.
    failed_at_start: u64,
    acked_at_start: u64,
}

/// Runs one producer to completion; returns its merged latency histograms.
pub fn run(
    spec: ProducerSpec,
    counters: Arc<Counters>,
    identity: Identity,
) -> Result<ProducerHists> {
    let mut p = Producer::new(spec, counters, identity)?;
    let loop_result = p.produce_loop();
    let flush_result = loop_result.and_then(|()| p.finish());
    let mut hist = std::mem::replace(&mut p.send_rec.hist, stats::new_histogram());
    p.send_rec.interval = None; // adds its last interval to the sink
    let mut close_err = None;
    for c in p.conns.drain(..) {
        match c.close() {
            Ok(Some(h)) => stats::merge(&mut hist, &h)?,
            Ok(None) => {}
            Err(e) => close_err = Some(e),
        }
    }
    flush_result?;
    if let Some(e) = close_err {
        return Err(e);
    }
    Ok(ProducerHists {
        produce: hist,
        commit: p.commit_hist,
    })
}

impl Producer {
    fn new(spec: ProducerSpec, counters: Arc<Counters>, identity: Identity) -> Result<Producer> {
        let (id, txn) = match identity {
            Identity::None => (None, None),
            Identity::Idempotent(id) => (Some(id), None),
            Identity::Transactional(coordinator) => {
                let Some(records_max) = spec.transaction_records.filter(|n| *n > 0) else {
                    bail!("a transactional producer needs transaction_records");
                };
                let txn = Txn {
                    records_max,
                    records: 0,
                    added: Vec::new(),
                    failed_at_start: 0,
                    acked_at_start: 0,
                    coordinator,
                };
                (Some(txn.coordinator.identity), Some(txn))
            }
        };
        let txn_id = txn.as_ref().map(|t| t.coordinator.transactional_id());
        let tally = Arc::new(Tally::default());
        let leaders = spec.topic.leaders();
        let conns = leaders
            .iter()
            .map(|a| Conn::open(a, &spec, &counters, &tally, txn_id))
            .collect::<Result<Vec<_>>>()?;
        let conn_of = spec
            .topic
            .partitions
            .iter()
            .map(|p| leaders.iter().position(|l| *l == p.leader).unwrap_or(0))
            .collect();
        let n = spec.topic.partitions.len();
        let builders = (0..n).map(|_| BatchBuilder::new(spec.batch_size)).collect();
        let chooser = Chooser::new(spec.key_cardinality, spec.key_size, n, spec.index);
        let send_rec = Recorders::new(spec.intervals.as_ref());
        Ok(Producer {
            pacer: Pacer::new(spec.start_ns, spec.rate),
            filler: filler(spec.record_size - SEND_TIME_BYTES, spec.index as u64 + 7),
            spec,
            counters,
            conns,
            conn_of,
            builders,
            chooser,
            ready_bytes: 0,
            send_rec,
            identity: id,
            sequences: vec![0; n],
            tally,
            txn,
            commit_hist: stats::new_histogram(),
        })
    }

    fn records_left(&self) -> u64 {
        self.spec
            .records
            .map_or(u64::MAX, |n| n.saturating_sub(self.pacer.issued()))
    }

    fn stopped(&self, now: u64) -> bool {
        self.records_left() == 0 || self.spec.stop_at_ns.is_some_and(|t| now >= t)
    }

    fn produce_loop(&mut self) -> Result<()> {
        // Every producer starts at the same instant, after its connections are up.
        clock::sleep_until(self.spec.start_ns);
        loop {
            let now = now_ns();
            if self.stopped(now) {
                return Ok(());
            }
            let appended = self.append_due(now)?;
            self.close_lingering(now)?;
            let sent = self.send_ready()?;
            if appended == 0 && !sent {
                self.idle(now);
            }
        }
    }

    /// Appends the records due now (a batch's worth at most, so sending keeps up).
    fn append_due(&mut self, now: u64) -> Result<u64> {
        if self.ready_bytes >= self.spec.buffer_memory {
            return Ok(0);
        }
        let per_batch = (self.spec.batch_size / (self.spec.record_size + 16)).max(1) as u64;
        let mut cap = per_batch.min(self.records_left());
        if let Some(t) = &self.txn {
            cap = cap.min(t.records_max - t.records);
        }
        let due = self.pacer.due(now, cap);
        for _ in 0..due {
            let intended = self.pacer.take(now);
            let idx = self.chooser.next();
            let key_len = self.chooser.key().map(<[u8]>::len);
            let len = self.builders[idx].record_len(key_len, self.spec.record_size);
            if !self.builders[idx].is_empty()
                && self.builders[idx].records_len() + len > self.spec.batch_size
            {
                self.close(idx)?;
            }
            self.builders[idx].append(self.chooser.key(), &self.filler, intended, now);
            Counters::add(&self.counters.sent_records, 1);
        }
        let full = match &mut self.txn {
            Some(t) => {
                t.records += due;
                t.records >= t.records_max
            }
            None => false,
        };
        if full {
            self.end_txn()?;
        }
        Ok(due)
    }

    /// The producer fields of the next batch of layout partition `idx`.
    fn stamp(&self, idx: usize) -> ProducerStamp {
        match self.identity {
            None => ProducerStamp::NONE,
            Some(id) => ProducerStamp {
                producer_id: id.producer_id,
                producer_epoch: id.producer_epoch,
                base_sequence: self.sequences[idx],
                transactional: self.txn.is_some(),
            },
        }
    }

    fn close(&mut self, idx: usize) -> Result<()> {
        let partition = self.spec.topic.partitions[idx].partition;
        let stamp = self.stamp(idx);
        let closed = self.builders[idx].finish(partition, self.spec.codec, stamp)?;
        if self.identity.is_some() {
            self.sequences[idx] = next_sequence(self.sequences[idx], closed.count);
        }
        self.ready_bytes += closed.bytes.len();
        self.conns[self.conn_of[idx]].ready.push_back(closed);
        self.chooser.batch_closed(idx);
        Ok(())
    }

    /// Closes batches whose linger has passed, unless a closed batch of the same partition is
    /// still waiting for a slot: then the open one keeps filling (it could not leave sooner
    /// anyway, as a request carries one batch per partition), as Kafka's accumulator does.
    fn close_lingering(&mut self, now: u64) -> Result<()> {
        for idx in 0..self.builders.len() {
            let b = &self.builders[idx];
            if b.is_empty() || now.saturating_sub(b.opened_ns()) < self.spec.linger_ns {
                continue;
            }
            let partition = self.spec.topic.partitions[idx].partition;
            let conn = &self.conns[self.conn_of[idx]];
            if !conn.ready.iter().any(|r| r.partition == partition) {
                self.close(idx)?;
            }
        }
        Ok(())
    }

    /// Sends ready batches on every connection with a free slot.
    fn send_ready(&mut self) -> Result<bool> {
        self.add_ready_partitions()?;
        let mut sent = false;
        for c in 0..self.conns.len() {
            while !self.conns[c].ready.is_empty() && self.conns[c].slots.try_acquire()? {
                let batches = self.conns[c].take_request(self.spec.max_request_size);
                let metas = self.conns[c].send(&self.spec, &batches)?;
                self.ready_bytes -= batches.iter().map(|b| b.bytes.len()).sum::<usize>();
                if self.spec.acks == 0 {
                    let now = now_ns();
                    for m in &metas {
                        ack(
                            &self.counters,
                            &mut self.send_rec,
                            m,
                            self.spec.warmup_end_ns,
                            now,
                        );
                    }
                }
                sent = true;
            }
        }
        Ok(sent)
    }

    /// Nothing to do now: wait for the next due record, a linger deadline, the end of the run or
    /// a free slot. Deadlines already passed are waiting for a slot (a record held back by a
    /// full buffer, a lingered batch behind a closed one of its partition): they do not shorten
    /// the wait, or the thread would spin while the broker is slow. Waiting for a slot looks
    /// again every IDLE_WAIT (another connection's slot does not wake this wait); with nothing
    /// waiting for a slot the thread sleeps to its first deadline, so many producers at a low
    /// rate do not wake a thousand times a second each.
    fn idle(&self, now: u64) {
        let waiting = self.conns.iter().find(|c| !c.ready.is_empty());
        let linger = self.spec.linger_ns;
        let deadlines: Vec<u64> = self
            .builders
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| b.opened_ns() + linger)
            .chain(self.pacer.next_due_ns())
            .chain(self.spec.stop_at_ns)
            .collect();
        // A deadline already passed is work held back (by a full buffer or slot, or a batch
        // behind another of its partition): look again soon, not at the next future deadline.
        let overdue = deadlines.iter().any(|t| *t <= now);
        let cap = if waiting.is_some() || overdue {
            IDLE_WAIT
        } else {
            IDLE_SLEEP_MAX
        };
        let mut wake = now + cap.as_nanos() as u64;
        for t in deadlines.into_iter().filter(|t| *t > now) {
            wake = wake.min(t);
        }
        let timeout = Duration::from_nanos(wake.saturating_sub(now).max(1));
        // Held-back work waits for an answer to free buffer space: the next one, exactly.
        let held = match overdue {
            true => self.conns.iter().find(|c| c.slots.busy()),
            false => None,
        };
        if let Some(c) = waiting {
            c.slots.wait(timeout);
        } else if let Some(c) = held {
            c.slots.wait_release(timeout);
        } else {
            clock::sleep_until(wake);
        }
    }

    /// Adds the partitions of every ready batch that are not yet in the open transaction.
    fn add_ready_partitions(&mut self) -> Result<()> {
        let Some(txn) = self.txn.as_mut() else {
            return Ok(());
        };
        let mut new: Vec<i32> = Vec::new();
        for b in self.conns.iter().flat_map(|c| c.ready.iter()) {
            if !txn.added.contains(&b.partition) && !new.contains(&b.partition) {
                new.push(b.partition);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        new.sort_unstable();
        txn.coordinator
            .add_partitions(&self.spec.topic.name, &new)?;
        txn.added.extend(new);
        Ok(())
    }

    /// Ends the open transaction: every batch closed, sent and answered, then EndTxn. It
    /// commits unless one of the transaction's batches failed; then it aborts.
    fn end_txn(&mut self) -> Result<()> {
        self.flush()?;
        for c in &self.conns {
            c.slots.wait_idle(FINAL_ACK_TIMEOUT)?;
        }
        let failed = Counters::get(&self.tally.failed_batches);
        let acked = Counters::get(&self.tally.acked_records);
        let Some(txn) = self.txn.as_mut() else {
            return Ok(());
        };
        let commit = failed == txn.failed_at_start;
        let start = now_ns();
        txn.coordinator.end(commit)?;
        let end = now_ns();
        if commit {
            Counters::add(&self.counters.committed_txns, 1);
            Counters::touch(&self.counters.last_commit_ns, end);
            if start >= self.spec.warmup_end_ns {
                Counters::add(&self.counters.measured_committed_txns, 1);
                self.commit_hist
                    .saturating_record(end.saturating_sub(start).max(1));
            }
        } else {
            Counters::add(&self.counters.aborted_txns, 1);
            Counters::add(&self.counters.aborted_records, acked - txn.acked_at_start);
            // The failed batch left its partition's sequence behind ours, so every later batch
            // there would fail too: start again with a new epoch, sequences from 0.
            txn.coordinator.reinit()?;
            self.identity = Some(txn.coordinator.identity);
            self.sequences.fill(0);
        }
        txn.records = 0;
        txn.added.clear();
        txn.failed_at_start = failed;
        txn.acked_at_start = acked;
        Ok(())
    }

    /// At the end of the run: ends an open transaction, or sends everything left.
    fn finish(&mut self) -> Result<()> {
        match &self.txn {
            Some(t) if t.records > 0 => self.end_txn(),
            _ => self.flush(),
        }
    }

    /// Closes every open batch and sends everything left.
    fn flush(&mut self) -> Result<()> {
        for idx in 0..self.builders.len() {
            if !self.builders[idx].is_empty() {
                self.close(idx)?;
            }
        }
        while self.conns.iter().any(|c| !c.ready.is_empty()) {
            if !self.send_ready()? {
                if let Some(c) = self.conns.iter().find(|c| !c.ready.is_empty()) {
                    c.slots.wait(IDLE_WAIT);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Fake, Script};
    use crate::topic::PartitionLeader;
    use kafka_protocol::messages::ApiKey;

    fn txn_spec(topic: Arc<TopicLayout>, records: u64, per_txn: u64) -> ProducerSpec {
        let now = now_ns();
        ProducerSpec {
            index: 0,
            topic,
            acks: -1,
            codec: Compression::None,
            record_size: 100,
            key_cardinality: 50,
            key_size: 16,
            batch_size: 1000,
            linger_ns: 1_000_000,
            max_in_flight: 5,
            max_request_size: 1 << 20,
            buffer_memory: 32 << 20,
            rate: None,
            start_ns: now,
            warmup_end_ns: now,
            stop_at_ns: None,
            records: Some(records),
            produce_version: 11,
            request_timeout_ms: 30_000,
            transaction_records: Some(per_txn),
            intervals: None,
        }
    }

    /// Runs a transactional producer of `records` in transactions of 100 against a fake broker.
    fn run_against(script: Script, records: u64) -> (Fake, Arc<Counters>, ProducerHists) {
        let fake = crate::fake::start(script);
        let partitions = (0..3)
            .map(|p| PartitionLeader {
                partition: p,
                leader: fake.addr.clone(),
            })
            .collect();
        let layout = Arc::new(TopicLayout {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            partitions,
        });
        let counters = Arc::new(Counters::default());
        let c = Coordinator::init(&fake.addr, "bench-p", 60_000, counters.clone()).unwrap();
        let spec = txn_spec(layout, records, 100);
        let hists = run(spec, counters.clone(), Identity::Transactional(c)).unwrap();
        (fake, counters, hists)
    }

    #[test]
    fn a_failed_batch_aborts_its_transaction_and_the_next_one_starts_a_new_epoch() {
        let script = Script {
            fail_first_batch_of: Some(1),
            ..Script::default()
        };
        let (fake, counters, _) = run_against(script, 1000);
        let seen = fake.seen.lock().unwrap();
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        let outcomes: Vec<bool> = seen.ended.iter().map(|e| e.0).collect();
        let mut want = vec![false];
        want.extend([true; 9]);
        assert_eq!(outcomes, want);
        assert_eq!(seen.count(ApiKey::InitProducerId), 2);
        assert_eq!(Counters::get(&counters.aborted_txns), 1);
        assert_eq!(Counters::get(&counters.committed_txns), 9);
        // Only the first transaction's later partition-1 batches fail with it.
        let errors = counters.errors();
        assert_eq!(errors["NOT_LEADER_OR_FOLLOWER"], 1);
        let failed = Counters::get(&counters.error_records);
        let aborted = Counters::get(&counters.aborted_records);
        assert_eq!(aborted + failed, 100, "{errors:?}");
        assert_eq!(Counters::get(&counters.acked_records), 1000 - failed);
    }

    #[test]
    fn transactions_add_partitions_before_their_batches_and_commit_every_n_records() {
        let (fake, counters, hists) = run_against(Script::default(), 1050);
        let seen = fake.seen.lock().unwrap();
        // Every batch: transactional, our producer id, partition added first, sequences in order.
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        let mut want = vec![(true, 100, 3); 10];
        want.push((true, 50, 3)); // the rest at the end of the run
        assert_eq!(seen.ended, want);
        // Partitions are added once per transaction, in as few requests as batches allow.
        let adds = seen.count(ApiKey::AddPartitionsToTxn);
        assert!((11..=33).contains(&adds), "{adds} AddPartitionsToTxn");
        assert_eq!(Counters::get(&counters.committed_txns), 11);
        assert_eq!(Counters::get(&counters.acked_records), 1050);
        assert_eq!(hists.commit.len(), 11);
        assert_eq!(hists.produce.len(), 1050);
        assert!(counters.errors().is_empty() && counters.retries().is_empty());
    }

    #[test]
    fn keys_are_fixed_width_and_spread_over_partitions() {
        let mut c = Chooser::new(1000, 16, 12, 0);
        let mut seen = [0u32; 12];
        for _ in 0..12_000 {
            let p = c.next();
            let key = c.key().unwrap();
            assert_eq!(key.len(), 16);
            assert!(key.iter().all(u8::is_ascii_digit));
            assert_eq!(p as i32, partition_for_key(key, 12));
            seen[p] += 1;
        }
        assert!(seen.iter().all(|n| *n > 500), "{seen:?}");
    }

    #[test]
    fn keyed_records_land_where_kafkas_default_partitioner_puts_them() {
        // Kafka's UtilsTest: murmur2("21") = -973932308, toPositive = 1173551340.
        let mut key = [0u8; 2];
        write_key(&mut key, 21);
        assert_eq!(&key, b"21");
        for partitions in [1, 3, 7, 12, 50] {
            assert_eq!(
                partition_for_key(&key, partitions),
                1_173_551_340 % partitions
            );
        }
        // A two-byte key space 0..=99: the chooser picks key 21 at some point, and then the
        // partition of "21".
        let mut c = Chooser::new(100, 2, 12, 0);
        let mut found = false;
        for _ in 0..1000 {
            let p = c.next();
            if c.key() == Some(&b"21"[..]) {
                assert_eq!(p as i32, 1_173_551_340 % 12);
                found = true;
            }
        }
        assert!(found);
        let mut wide = [0u8; 5];
        write_key(&mut wide, 42);
        assert_eq!(&wide, b"00042");
    }

    #[test]
    fn every_key_of_the_space_is_used() {
        let mut c = Chooser::new(10, 1, 4, 3);
        let mut keys = std::collections::BTreeSet::new();
        for _ in 0..100 {
            c.next();
            keys.insert(c.key().unwrap().to_vec());
        }
        assert_eq!(keys.len(), 10);
    }

    #[test]
    fn sticky_partition_moves_only_when_its_batch_closes() {
        let mut c = Chooser::new(0, 16, 3, 2);
        assert_eq!(c.next(), 2);
        assert!(c.key().is_none());
        c.batch_closed(1);
        assert_eq!(c.next(), 2);
        c.batch_closed(2);
        assert_eq!(c.next(), 0);
    }

    #[test]
    fn filler_is_letters_and_repeatable() {
        let a = filler(100, 3);
        assert!(a.iter().all(u8::is_ascii_uppercase));
        assert_eq!(a, filler(100, 3));
        assert_ne!(a, filler(100, 4));
    }
}
