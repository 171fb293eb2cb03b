//! One consumer: a thread that reads its assigned partitions with explicit offsets (assign-style,
//! no consumer group), one long-poll Fetch at a time per leader connection.
//!
//! Counting needs only batch headers; end-to-end latency additionally reads each record's send
//! time from its value ([`crate::batch::for_each_send_time`]). Control batches (transaction
//! markers) are never counted; with `--isolation-level read_committed` the Fetch asks for
//! committed data only and the records of aborted transactions the response lists are dropped,
//! as Kafka's consumer does, and counted apart. A partition error is counted and
//! shown, never hidden: the partition is retried after a short back-off, and a consumer that
//! makes no progress for the stall timeout fails the run.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::batch::{for_each_send_time, walk_batches, TxnFilter};
use crate::clock::now_ns;
use crate::interval::{IntervalHist, IntervalSink, Measure};
use crate::stats::{self, Counters};
use crate::topic::TopicLayout;
use crate::wire;

/// Pause after a fetch that returned partition errors, so a broken partition is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Upper bound of one fetch response.
const FETCH_MAX_BYTES: i32 = 64 << 20;
/// Fetch isolation_level of read_committed.
pub const READ_COMMITTED: i8 = 1;

/// Everything one consumer thread needs.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub index: usize,
    pub topic: Arc<TopicLayout>,
    /// Layout indexes of the partitions this consumer reads.
    pub assigned: Vec<usize>,
    /// Start offset of each assigned partition.
    pub start_offsets: Vec<i64>,
    /// Consume-only: stop at these offsets (one per assigned partition).
    pub end_offsets: Option<Vec<i64>>,
    /// Read record send times for end-to-end latency.
    pub end_to_end: bool,
    pub record_size: usize,
    pub warmup_end_ns: u64,
    pub fetch_version: i16,
    /// Fetch isolation_level: 0 read_uncommitted, 1 read_committed.
    pub isolation_level: i8,
    pub max_wait_ms: i32,
    pub partition_max_bytes: i32,
    /// Fail when nothing arrives for this long while records are still expected.
    pub stall_timeout: Duration,
    /// Per-interval end-to-end latency (`--report-interval`).
    pub intervals: Option<Arc<IntervalSink>>,
    /// Backlog runs: the end offset of the backlog in each assigned partition; the backlog is
    /// drained when every consumer has read past every one.
    pub backlog_ends: Option<Vec<i64>>,
}

/// How the run tells end-to-end consumers that producing is over.
#[derive(Debug, Default)]
pub struct Control {
    pub producers_done: AtomicBool,
    /// Records the consumers should see in total (valid once `producers_done`).
    pub expected: AtomicU64,
    /// Consumers stop here even if records are missing (they are then reported as lost).
    pub drain_deadline_ns: AtomicU64,
    pub abort: AtomicBool,
}

struct FetchConn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    buf: BytesMut,
    /// Where responses are read; its memory is reused from one response to the next.
    rx: BytesMut,
    correlation_id: i32,
    /// Indexes into the consumer's assigned list.
    parts: Vec<usize>,
}

struct Consumer {
    spec: ConsumerSpec,
    counters: Arc<Counters>,
    control: Arc<Control>,
    conns: Vec<FetchConn>,
    offsets: Vec<i64>,
    hist: Histogram<u64>,
    interval: Option<IntervalHist>,
    /// Backlog runs: assigned partitions not yet read past the backlog's end.
    backlog_left: Vec<bool>,
    last_progress_ns: u64,
}

/// Runs one consumer until its work is done; returns its end-to-end latency histogram.
pub fn run(
    spec: ConsumerSpec,
    counters: Arc<Counters>,
    control: Arc<Control>,
) -> Result<Histogram<u64>> {
    let mut c = Consumer::new(spec, counters, control)?;
    c.consume_loop()?;
    Ok(c.hist)
}

impl Consumer {
    fn new(spec: ConsumerSpec, counters: Arc<Counters>, control: Arc<Control>) -> Result<Consumer> {
        let leaders = spec.topic.leaders();
        let mut conns = Vec::new();
        for addr in &leaders {
            let parts: Vec<usize> = (0..spec.assigned.len())
                .filter(|i| spec.topic.partitions[spec.assigned[*i]].leader == *addr)
                .collect();
            if parts.is_empty() {
                continue;
            }
            let stream = wire::connect(addr)?;
            let reader = BufReader::with_capacity(256 << 10, stream.try_clone()?);
            conns.push(FetchConn {
                stream,
                reader,
                buf: BytesMut::with_capacity(4096),
                rx: BytesMut::new(),
                correlation_id: 0,
                parts,
            });
        }
        let interval = spec
            .intervals
            .as_ref()
            .map(|s| s.recorder(Measure::EndToEnd));
        let backlog_left = match &spec.backlog_ends {
            Some(ends) => ends
                .iter()
                .zip(&spec.start_offsets)
                .map(|(e, s)| e > s)
                .collect(),
            None => Vec::new(),
        };
        Ok(Consumer {
            offsets: spec.start_offsets.clone(),
            spec,
            counters,
            control,
            conns,
            hist: stats::new_histogram(),
            interval,
            backlog_left,
            last_progress_ns: now_ns(),
        })
    }

    fn done(&self, now: u64) -> Result<bool> {
        if self.control.abort.load(Ordering::Relaxed) {
            return Ok(true);
        }
        if let Some(end) = &self.spec.end_offsets {
            return Ok(self.offsets.iter().zip(end).all(|(o, e)| o >= e));
        }
        if self.control.producers_done.load(Ordering::Acquire) {
            let expected = self.control.expected.load(Ordering::Acquire);
            let consumed = Counters::get(&self.counters.consumed_records);
            let deadline = self.control.drain_deadline_ns.load(Ordering::Acquire);
            return Ok(consumed >= expected || now >= deadline);
        }
        Ok(false)
    }

    fn consume_loop(&mut self) -> Result<()> {
        loop {
            let now = now_ns();
            if self.done(now)? {
                return Ok(());
            }
            // Progress of any consumer counts: a partition may legitimately get nothing for a while.
            let progress = self
                .last_progress_ns
                .max(Counters::get(&self.counters.last_consume_ns));
            if now.saturating_sub(progress) > self.spec.stall_timeout.as_nanos() as u64 {
                bail!(
                    "consumer {} saw nothing for {:?} at offsets {:?}",
                    self.spec.index,
                    self.spec.stall_timeout,
                    self.offsets
                );
            }
            let mut errors = false;
            for c in 0..self.conns.len() {
                errors |= self.fetch_once(c)?;
            }
            if errors {
                std::thread::sleep(ERROR_BACKOFF);
            }
        }
    }

    /// One Fetch round trip on connection `c`; returns whether any partition had an error.
    fn fetch_once(&mut self, c: usize) -> Result<bool> {
        let wanted: Vec<usize> = self.conns[c]
            .parts
            .iter()
            .copied()
            .filter(|i| {
                self.spec
                    .end_offsets
                    .as_ref()
                    .is_none_or(|e| self.offsets[*i] < e[*i])
            })
            .collect();
        if wanted.is_empty() {
            return Ok(false);
        }
        let req = self.request(&wanted);
        let version = self.spec.fetch_version;
        let conn = &mut self.conns[c];
        let correlation_id = conn.correlation_id;
        conn.correlation_id = conn.correlation_id.wrapping_add(1);
        wire::encode_request(&mut conn.buf, &req, version, correlation_id)?;
        conn.stream.write_all(&conn.buf).context("write fetch")?;
        let frame = wire::read_frame_reusing(&mut conn.reader, &mut conn.rx)?;
        let resp = wire::decode_response::<FetchRequest>(version, frame, correlation_id)?;
        if resp.error_code != 0 {
            self.counters
                .error(&gregor::client::error_name(resp.error_code));
            return Ok(true);
        }
        let mut errors = false;
        for t in resp.responses {
            for p in t.partitions {
                errors |= self.absorb(&wanted, p)?;
            }
        }
        Ok(errors)
    }

    fn request(&self, wanted: &[usize]) -> FetchRequest {
        let partitions = wanted
            .iter()
            .map(|i| {
                FetchPartition::default()
                    .with_partition(self.spec.topic.partitions[self.spec.assigned[*i]].partition)
                    .with_fetch_offset(self.offsets[*i])
                    .with_partition_max_bytes(self.spec.partition_max_bytes)
            })
            .collect();
        FetchRequest::default()
            .with_isolation_level(self.spec.isolation_level)
            .with_max_wait_ms(self.spec.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(
                    self.spec.topic.name.clone(),
                )))
                .with_topic_id(self.spec.topic.id)
                .with_partitions(partitions)])
    }

    /// Backlog runs: notes when assigned partition `i` is read past the backlog's end, and when
    /// the last partition of all consumers is.
    fn passed_backlog(&mut self, i: usize, consumed: u64, now: u64) {
        let Some(ends) = &self.spec.backlog_ends else {
            return;
        };
        if !self.backlog_left[i] || self.offsets[i] < ends[i] {
            return;
        }
        self.backlog_left[i] = false;
        let left = &self.counters.backlog_partitions_left;
        if left.fetch_sub(1, Ordering::AcqRel) == 1 {
            Counters::mark_once(&self.counters.backlog_drained_ns, now);
            Counters::add(&self.counters.backlog_drained_consumed, consumed);
        }
    }

    /// Counts one partition's records and advances its offset; returns whether it was an error.
    fn absorb(&mut self, wanted: &[usize], p: PartitionData) -> Result<bool> {
        let Some(&i) = wanted.iter().find(|i| {
            self.spec.topic.partitions[self.spec.assigned[**i]].partition == p.partition_index
        }) else {
            self.counters.error("UNEXPECTED_PARTITION_IN_FETCH");
            return Ok(true);
        };
        if p.error_code != 0 {
            self.counters
                .error(&gregor::client::error_name(p.error_code));
            return Ok(true);
        }
        let mut txn = match (self.spec.isolation_level, &p.aborted_transactions) {
            (READ_COMMITTED, Some(aborted)) => {
                TxnFilter::read_committed(aborted.iter().map(|a| (a.producer_id.0, a.first_offset)))
            }
            (READ_COMMITTED, None) => TxnFilter::read_committed([]),
            _ => TxnFilter::read_uncommitted(),
        };
        let Some(data) = p.records else {
            return Ok(false);
        };
        let offset = self.offsets[i];
        let now = now_ns();
        let (e2e, warmup_end) = (self.spec.end_to_end, self.spec.warmup_end_ns);
        let hist = &mut self.hist;
        let interval = &mut self.interval;
        let walked = walk_batches(&data, offset, &mut txn, |h, b| {
            if !e2e {
                return Ok(());
            }
            for_each_send_time(h, b, offset, |sent| {
                if sent >= warmup_end {
                    let latency = now.saturating_sub(sent).max(1);
                    hist.saturating_record(latency);
                    if let Some(i) = interval.as_mut() {
                        i.record(now, latency);
                    }
                }
            })
        })?;
        if let Some(next) = walked.next_offset {
            self.offsets[i] = next.max(offset);
            if next > offset {
                // Markers and aborted data move the offset too: that is progress.
                self.last_progress_ns = now;
            }
        }
        let consumed_before = Counters::get(&self.counters.consumed_records);
        Counters::add(
            &self.counters.aborted_records_skipped,
            walked.aborted_records,
        );
        if walked.records > 0 {
            Counters::add(&self.counters.consumed_records, walked.records);
            Counters::add(
                &self.counters.consumed_bytes,
                walked.records * self.spec.record_size as u64,
            );
            Counters::touch(&self.counters.last_consume_ns, now);
            self.last_progress_ns = now;
        }
        self.passed_backlog(i, consumed_before + walked.records, now);
        Ok(false)
    }
}
