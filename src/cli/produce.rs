//! `gregor produce`: stdin lines become records, grouped into one RecordBatch v2 per partition
//! and sent with Produce to each partition's leader.
//!
//! Partitioning follows Kafka's producer: an explicit `--partition` wins; a keyed record goes
//! to `toPositive(murmur2(key)) % partitions`; unkeyed records fill the current sticky
//! partition, which moves round-robin each time its batch is sent. A batch is sent when it
//! reaches `--batch-size` records or `BATCH_BYTES_MAX`, when stdin has nothing buffered (so
//! interactive input is not held back), and at end of input.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::cluster::{Cluster, TopicLayout};
use super::BrokerArgs;
use crate::client::batch::{encode_batch, ProducerRecord};
use crate::client::partitioner::partition_for_key;

/// Flush a partition's batch once its uncompressed payload passes this many bytes, well
/// under Kafka's default 1 MiB request limit.
const BATCH_BYTES_MAX: usize = 512 * 1024;
/// Big reads from stdin let one pipe read fill a whole batch.
const STDIN_BUFFER_BYTES: usize = 1 << 20;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[value(name = "all")]
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

pub use crate::client::batch::Codec;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Send every record to this partition instead of partitioning by key.
    #[arg(long)]
    partition: Option<i32>,
    /// Text before the first occurrence is the key, the rest the value. Lines without it have
    /// no key.
    #[arg(long)]
    key_separator: Option<String>,
    /// Acknowledgement the broker gives before answering (0: none, no answer at all).
    #[arg(long, value_enum, default_value = "1")]
    acks: Acks,
    /// Codec for each batch.
    #[arg(long, value_enum, default_value = "none")]
    compression: Codec,
    /// Records per batch (per partition) before it is sent.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Header `key=value` added to every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
}

/// Records waiting to be sent, per partition, and where unkeyed records go next.
struct Accumulator {
    partitions: Vec<i32>,
    pending: BTreeMap<i32, Vec<ProducerRecord>>,
    pending_bytes: BTreeMap<i32, usize>,
    sticky: usize,
    batch_size: usize,
    /// Send a partition's batch once its records' bytes reach this.
    bytes_max: usize,
}

impl Accumulator {
    fn new(partitions: Vec<i32>, batch_size: usize) -> Accumulator {
        Accumulator {
            partitions,
            pending: BTreeMap::new(),
            pending_bytes: BTreeMap::new(),
            sticky: 0,
            batch_size,
            bytes_max: BATCH_BYTES_MAX,
        }
    }

    /// Adds a record; returns the partition if its batch is now full.
    fn add(&mut self, record: ProducerRecord, fixed: Option<i32>) -> Option<i32> {
        let partition = match (fixed, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => {
                let index = partition_for_key(key, self.partitions.len() as i32);
                self.partitions[index as usize]
            }
            (None, None) => self.partitions[self.sticky],
        };
        let size =
            record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len);
        let batch = self.pending.entry(partition).or_default();
        batch.push(record);
        let bytes = self.pending_bytes.entry(partition).or_default();
        *bytes += size;
        (batch.len() >= self.batch_size || *bytes >= self.bytes_max).then_some(partition)
    }

    /// Takes the batch of one partition; moves the sticky partition on if it was that one.
    fn take(&mut self, partition: i32) -> Vec<ProducerRecord> {
        if self.partitions.get(self.sticky) == Some(&partition) {
            self.sticky = (self.sticky + 1) % self.partitions.len();
        }
        self.pending_bytes.remove(&partition);
        self.pending.remove(&partition).unwrap_or_default()
    }

    fn take_all(&mut self) -> Vec<(i32, Vec<ProducerRecord>)> {
        let parts: Vec<i32> = self.pending.keys().copied().collect();
        parts.into_iter().map(|p| (p, self.take(p))).collect()
    }
}

/// Splits one input line into a record.
fn parse_line(
    line: &[u8],
    separator: Option<&[u8]>,
    headers: &[(String, Option<Bytes>)],
) -> ProducerRecord {
    let (key, value) = match separator.and_then(|sep| find(line, sep).map(|at| (at, sep.len()))) {
        Some((at, len)) => (Some(&line[..at]), &line[at + len..]),
        None => (None, line),
    };
    ProducerRecord {
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: headers.to_vec(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Removes the line terminator (`\n` or `\r\n`).
fn trim_newline(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
    }
    line
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Counters for the summary line.
#[derive(Default)]
struct Stats {
    records: u64,
    batches: u64,
    bytes: u64,
    per_partition: BTreeMap<i32, u64>,
}

struct Sender<'a> {
    cluster: &'a mut Cluster,
    layout: TopicLayout,
    /// The topic's max.message.bytes: a larger batch would only be refused.
    max_batch_bytes: usize,
    acks: i16,
    compression: Compression,
    stats: Stats,
}

impl Sender<'_> {
    /// Encodes and sends batches, one Produce per leader.
    fn send(&mut self, batches: Vec<(i32, Vec<ProducerRecord>)>) -> anyhow::Result<()> {
        let mut by_leader: BTreeMap<i32, Vec<(i32, Bytes)>> = BTreeMap::new();
        for (partition, records) in batches.into_iter().filter(|(_, r)| !r.is_empty()) {
            let encoded = encode_batch(&records, now_ms(), self.compression)?;
            if encoded.len() > self.max_batch_bytes {
                return Err(too_large(
                    &self.layout.name,
                    &records,
                    encoded.len(),
                    self.max_batch_bytes,
                ));
            }
            self.stats.records += records.len() as u64;
            self.stats.batches += 1;
            self.stats.bytes += encoded.len() as u64;
            *self.stats.per_partition.entry(partition).or_default() += records.len() as u64;
            let leader = self.layout.leader_of(partition)?;
            by_leader
                .entry(leader)
                .or_default()
                .push((partition, encoded));
        }
        for (leader, batches) in by_leader {
            let client = self.cluster.leader(leader)?;
            client.produce(
                &self.layout.name,
                self.layout.topic_id,
                &batches,
                self.acks,
                PRODUCE_TIMEOUT_MS,
            )?;
        }
        Ok(())
    }
}

/// Why a batch cannot be sent: one record alone too big, or (rarely, with a small limit) a
/// batch of several that the accumulator could not keep under it.
fn too_large(topic: &str, records: &[ProducerRecord], bytes: usize, max: usize) -> anyhow::Error {
    if records.len() == 1 {
        anyhow::anyhow!(
            "a record of {bytes} bytes (as a batch) is larger than {topic}'s max.message.bytes \
             ({max}); nothing of it was sent"
        )
    } else {
        anyhow::anyhow!(
            "a batch of {} records ({bytes} bytes) is larger than {topic}'s max.message.bytes \
             ({max}); lower --batch-size",
            records.len()
        )
    }
}

/// The largest batch the broker accepts for `topic` (its max.message.bytes).
fn max_message_bytes(cluster: &mut Cluster, topic: &str) -> anyhow::Result<usize> {
    let entries = cluster.bootstrap()?.describe_topic_configs(topic)?;
    let value = entries
        .iter()
        .find(|e| e.name == "max.message.bytes")
        .and_then(|e| e.value.as_deref()?.parse::<usize>().ok());
    Ok(value.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES))
}

/// Kafka's default max.message.bytes, for a broker that does not report it.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cluster = Cluster::connect(&args.broker)?;
    let layout = cluster.topic(&args.topic, true)?;
    if let Some(p) = args.partition {
        layout.leader_of(p)?;
    }
    let headers: Vec<(String, Option<Bytes>)> = super::parse_key_values(&args.headers)?
        .into_iter()
        .map(|(k, v)| (k, Some(Bytes::from(v))))
        .collect();
    let max_batch_bytes = max_message_bytes(&mut cluster, &args.topic)?;
    let partitions = layout.partitions.iter().map(|(p, _)| *p).collect();
    let mut acc = Accumulator::new(partitions, args.batch_size as usize);
    // Send batches before they near the broker's limit (headroom for batch framing).
    acc.bytes_max = BATCH_BYTES_MAX.min(max_batch_bytes / 2).max(1);
    let mut sender = Sender {
        cluster: &mut cluster,
        layout,
        max_batch_bytes,
        acks: args.acks.wire(),
        compression: args.compression.compression(),
        stats: Stats::default(),
    };
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut input = BufReader::with_capacity(STDIN_BUFFER_BYTES, std::io::stdin().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?;
        if n == 0 {
            break;
        }
        let record = parse_line(trim_newline(&line), separator, &headers);
        if let Some(full) = acc.add(record, args.partition) {
            sender.send(vec![(full, acc.take(full))])?;
        }
        if input.buffer().is_empty() {
            // The next read may block (interactive input): send what we have first.
            sender.send(acc.take_all())?;
        }
    }
    sender.send(acc.take_all())?;
    summarize(&args.topic, &sender.stats, args.acks, started);
    Ok(())
}

fn summarize(topic: &str, stats: &Stats, acks: Acks, started: Instant) {
    let per: Vec<String> = stats
        .per_partition
        .iter()
        .map(|(p, n)| format!("{p}:{n}"))
        .collect();
    let unacked = if acks == Acks::None {
        " (acks=0: not confirmed)"
    } else {
        ""
    };
    eprintln!(
        "Produced {} records in {} batches ({} bytes) to {topic} [partition:records {}] in {} ms{unacked}",
        stats.records,
        stats.batches,
        stats.bytes,
        per.join(" "),
        started.elapsed().as_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::batch::read_fetched;

    #[test]
    fn lines_split_at_first_separator() {
        let h = vec![("a".to_string(), Some(Bytes::from("b")))];
        let r = parse_line(b"k1::v::x", Some(b"::"), &h);
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v::x"[..]));
        assert_eq!(r.headers, h);
        let r = parse_line(b"no-sep", Some(b":"), &[]);
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"no-sep"[..]));
        let r = parse_line(b":v", Some(b":"), &[]);
        assert_eq!(r.key.as_deref(), Some(&b""[..]));
        assert_eq!(trim_newline(b"x\r\n"), b"x");
        assert_eq!(trim_newline(b"x\n"), b"x");
        assert_eq!(trim_newline(b"x"), b"x");
    }

    #[test]
    fn keyed_records_follow_murmur2_and_unkeyed_stick_per_batch() {
        let mut acc = Accumulator::new(vec![0, 1, 2], 2);
        let keyed = |k: &str| ProducerRecord {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: None,
            headers: vec![],
        };
        // murmur2("21") -> toPositive 1173551340 % 3 == 0
        assert_eq!(acc.add(keyed("21"), None), None);
        assert_eq!(acc.pending.get(&0).map(Vec::len), Some(1));
        let unkeyed = ProducerRecord::default();
        assert_eq!(acc.add(unkeyed.clone(), None), Some(0));
        assert_eq!(acc.take(0).len(), 2);
        // Partition 0's batch went out, so unkeyed records now go to 1, then 2.
        assert_eq!(acc.add(unkeyed.clone(), None), None);
        assert_eq!(acc.add(unkeyed.clone(), None), Some(1));
        acc.take(1);
        assert_eq!(acc.add(unkeyed.clone(), Some(0)), None);
        assert_eq!(acc.add(unkeyed, None), None);
        let all = acc.take_all();
        assert_eq!(
            all.iter().map(|(p, r)| (*p, r.len())).collect::<Vec<_>>(),
            vec![(0, 1), (2, 1)]
        );
    }

    /// The produce path's batches decode through the consume path, for every codec.
    #[test]
    fn produce_batches_round_trip_through_consume_path() {
        let h = vec![("src".to_string(), Some(Bytes::from("cli")))];
        let lines: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("key{i}\tvalue {i}").into_bytes())
            .collect();
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let records: Vec<ProducerRecord> = lines
                .iter()
                .map(|l| parse_line(l, Some(b"\t"), &h))
                .collect();
            let bytes = encode_batch(&records, 42, codec.compression()).unwrap();
            let fetched = read_fetched(&bytes, 0, &[], false).unwrap();
            assert_eq!(fetched.records.len(), 300, "{codec:?}");
            for (i, r) in fetched.records.iter().enumerate() {
                assert_eq!(r.key.as_deref(), Some(format!("key{i}").as_bytes()));
                assert_eq!(r.value.as_deref(), Some(format!("value {i}").as_bytes()));
                assert_eq!(r.headers.len(), 1);
            }
        }
    }
}
