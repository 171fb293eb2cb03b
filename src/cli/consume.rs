//! `gregor consume`: resolves a start offset per partition with ListOffsets, then long-polls
//! Fetch on each partition's leader and prints records, one per line.
//!
//! The position of a partition only moves past whole batches the broker returned, so a fetch
//! cut inside a batch is simply asked again from the same offset. No consumer group is used;
//! nothing is committed.

use std::collections::BTreeMap;
use std::io::{BufWriter, ErrorKind, Write};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use kafka_protocol::records::{Record, TimestampType};

use super::cluster::{Cluster, TopicLayout};
use super::BrokerArgs;
use crate::client::batch::read_fetched;
use crate::client::error::check_code;
use crate::client::ops::{FetchSpec, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

/// Longest a single fetch waits on the broker for data.
const FETCH_WAIT_MS_MAX: i32 = 500;
const FETCH_BYTES_MAX: i32 = 50 << 20;
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    #[value(name = "read_uncommitted")]
    ReadUncommitted,
    #[value(name = "read_committed")]
    ReadCommitted,
}

impl Isolation {
    fn wire(self) -> i8 {
        match self {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        }
    }
}

/// Options of `gregor consume`; the output format is described on the subcommand.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Read only this partition (default: all partitions).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the earliest offset (default: the latest, i.e. only new records).
    #[arg(long, group = "start")]
    from_beginning: bool,
    /// Start at this offset in every partition read.
    #[arg(long, group = "start")]
    offset: Option<i64>,
    /// Start at the first record with a timestamp >= MS (epoch milliseconds).
    #[arg(long, group = "start", value_name = "MS")]
    timestamp: Option<i64>,
    /// Exit after printing this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print `Offset:<o>`.
    #[arg(long)]
    print_offset: bool,
    /// Print `Partition:<p>`.
    #[arg(long)]
    print_partition: bool,
    /// Print `CreateTime:<ms>` or `LogAppendTime:<ms>`.
    #[arg(long)]
    print_timestamp: bool,
    /// Print headers as `k:v,k2:v2` (or `NO_HEADERS`).
    #[arg(long)]
    print_headers: bool,
    /// read_committed hides aborted transactions and stops at the last stable offset.
    #[arg(long, value_enum, default_value = "read_uncommitted")]
    isolation_level: Isolation,
    /// Exit when no record arrived for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

/// Which optional fields to print.
#[derive(Debug, Clone, Copy, Default)]
struct PrintOpts {
    key: bool,
    offset: bool,
    partition: bool,
    timestamp: bool,
    headers: bool,
}

fn bytes_or_null(out: &mut Vec<u8>, b: Option<&[u8]>) {
    out.extend_from_slice(b.unwrap_or(b"null"));
}

/// One output line, newline included.
fn format_record(r: &Record, partition: i32, opts: PrintOpts) -> Vec<u8> {
    let mut out = Vec::new();
    if opts.timestamp {
        let kind = match r.timestamp_type {
            TimestampType::Creation => "CreateTime",
            TimestampType::LogAppend => "LogAppendTime",
        };
        out.extend_from_slice(format!("{kind}:{}\t", r.timestamp).as_bytes());
    }
    if opts.partition {
        out.extend_from_slice(format!("Partition:{partition}\t").as_bytes());
    }
    if opts.offset {
        out.extend_from_slice(format!("Offset:{}\t", r.offset).as_bytes());
    }
    if opts.headers {
        if r.headers.is_empty() {
            out.extend_from_slice(b"NO_HEADERS");
        }
        for (i, (k, v)) in r.headers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k.as_bytes());
            out.push(b':');
            bytes_or_null(&mut out, v.as_deref());
        }
        out.push(b'\t');
    }
    if opts.key {
        bytes_or_null(&mut out, r.key.as_deref());
        out.push(b'\t');
    }
    bytes_or_null(&mut out, r.value.as_deref());
    out.push(b'\n');
    out
}

/// Where reading starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

fn start_of(args: &ConsumeArgs) -> Start {
    match (args.from_beginning, args.offset, args.timestamp) {
        (true, _, _) => Start::Earliest,
        (_, Some(o), _) => Start::Offset(o),
        (_, _, Some(ts)) => Start::Timestamp(ts),
        _ => Start::Latest,
    }
}

/// Groups partitions by their leader so each broker gets one request.
fn by_leader(layout: &TopicLayout, partitions: &[i32]) -> anyhow::Result<BTreeMap<i32, Vec<i32>>> {
    let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        groups.entry(layout.leader_of(*p)?).or_default().push(*p);
    }
    Ok(groups)
}

fn list_offsets(
    cluster: &mut Cluster,
    layout: &TopicLayout,
    partitions: &[i32],
    timestamp: i64,
    isolation: i8,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader(layout, partitions)? {
        let queries: Vec<(i32, i64)> = parts.iter().map(|p| (*p, timestamp)).collect();
        let client = cluster.leader(leader)?;
        out.extend(client.list_offsets(&layout.name, &queries, isolation)?);
    }
    Ok(out)
}

fn resolve_start(
    cluster: &mut Cluster,
    layout: &TopicLayout,
    partitions: &[i32],
    start: Start,
    isolation: i8,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    match start {
        Start::Offset(o) => {
            let starts = list_offsets(cluster, layout, partitions, EARLIEST_TIMESTAMP, isolation)?;
            let ends = list_offsets(cluster, layout, partitions, LATEST_TIMESTAMP, isolation)?;
            for p in partitions {
                let (first, end) = (starts[p], ends[p]);
                if o < first || o > end {
                    return Err(anyhow!(
                        "offset {o} is outside {}-{p}: valid offsets are {first} to {end} \
                         ({end} waits for the next record)",
                        layout.name
                    ));
                }
            }
            Ok(partitions.iter().map(|p| (*p, o)).collect())
        }
        Start::Earliest => list_offsets(cluster, layout, partitions, EARLIEST_TIMESTAMP, isolation),
        Start::Latest => list_offsets(cluster, layout, partitions, LATEST_TIMESTAMP, isolation),
        Start::Timestamp(ts) => {
            let mut found = list_offsets(cluster, layout, partitions, ts, isolation)?;
            // -1: no record at or after ts, so start at the end.
            let past_end: Vec<i32> = found
                .iter()
                .filter(|(_, o)| **o < 0)
                .map(|(p, _)| *p)
                .collect();
            if !past_end.is_empty() {
                found.extend(list_offsets(
                    cluster,
                    layout,
                    &past_end,
                    LATEST_TIMESTAMP,
                    isolation,
                )?);
            }
            Ok(found)
        }
    }
}

/// The polling state of one run.
struct Consumer {
    cluster: Cluster,
    layout: TopicLayout,
    positions: BTreeMap<i32, i64>,
    isolation: i8,
    max_wait_ms: i32,
}

impl Consumer {
    /// One fetch round over all partitions; returns the (partition, record) pairs in order.
    fn poll(&mut self) -> anyhow::Result<Vec<(i32, Record)>> {
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        let mut out = Vec::new();
        for (leader, parts) in by_leader(&self.layout, &partitions)? {
            let spec = FetchSpec {
                topic: self.layout.name.clone(),
                topic_id: self.layout.topic_id,
                partitions: parts.iter().map(|p| (*p, self.positions[p])).collect(),
                max_wait_ms: self.max_wait_ms,
                min_bytes: 1,
                max_bytes: FETCH_BYTES_MAX,
                partition_max_bytes: PARTITION_FETCH_BYTES_MAX,
                isolation_level: self.isolation,
            };
            let answers = self.cluster.leader(leader)?.fetch(&spec)?;
            for a in answers {
                let Some(position) = self.positions.get_mut(&a.partition) else {
                    return Err(anyhow!(
                        "fetch answered unrequested partition {}",
                        a.partition
                    ));
                };
                check_code(a.error_code, None, || {
                    format!("fetch {}-{} at offset {position}", spec.topic, a.partition)
                })?;
                let fetched = read_fetched(&a.records, *position, &a.aborted, self.isolation == 1)?;
                if let Some(next) = fetched.next_offset {
                    *position = next.max(*position);
                }
                out.extend(fetched.records.into_iter().map(|r| (a.partition, r)));
            }
        }
        Ok(out)
    }
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.broker)?;
    let layout = cluster.topic(&args.topic, false)?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            layout.leader_of(p)?;
            vec![p]
        }
        None => layout.partitions.iter().map(|(p, _)| *p).collect(),
    };
    let isolation = args.isolation_level.wire();
    let positions = resolve_start(
        &mut cluster,
        &layout,
        &partitions,
        start_of(&args),
        isolation,
    )?;
    let max_wait_ms = args.timeout_ms.map_or(FETCH_WAIT_MS_MAX, |t| {
        (t.min(FETCH_WAIT_MS_MAX as u64)) as i32
    });
    let mut consumer = Consumer {
        cluster,
        layout,
        positions,
        isolation,
        max_wait_ms,
    };
    let opts = PrintOpts {
        key: args.print_key,
        offset: args.print_offset,
        partition: args.print_partition,
        timestamp: args.print_timestamp,
        headers: args.print_headers,
    };
    let printed = consume_loop(&mut consumer, opts, args.max_messages, args.timeout_ms)?;
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}

/// Polls and prints until `max_messages` are printed or `timeout_ms` passes without data.
fn consume_loop(
    consumer: &mut Consumer,
    opts: PrintOpts,
    max_messages: Option<u64>,
    timeout_ms: Option<u64>,
) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut last_data = Instant::now();
    loop {
        if max_messages.is_some_and(|max| printed >= max) {
            break;
        }
        if timeout_ms.is_some_and(|t| last_data.elapsed() >= Duration::from_millis(t)) {
            break;
        }
        let records = consumer.poll()?;
        if !records.is_empty() {
            last_data = Instant::now();
        }
        for (partition, r) in records {
            if max_messages.is_some_and(|max| printed >= max) {
                break;
            }
            printed += 1;
            if !write_or_pipe_closed(&mut out, &format_record(&r, partition, opts))? {
                return Ok(printed);
            }
        }
        if !write_or_pipe_closed(&mut out, &[])? {
            return Ok(printed);
        }
    }
    Ok(printed)
}

/// Writes and flushes; `Ok(false)` when the reader went away (`| head`), which ends the run
/// normally.
fn write_or_pipe_closed(out: &mut impl Write, bytes: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::protocol::StrBytes;

    fn record() -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 5,
            sequence: -1,
            timestamp: 1000,
            key: Some(Bytes::from("k")),
            value: Some(Bytes::from("v")),
            headers: Default::default(),
        }
    }

    #[test]
    fn value_only_by_default() {
        assert_eq!(format_record(&record(), 0, PrintOpts::default()), b"v\n");
    }

    #[test]
    fn all_fields_in_console_consumer_order() {
        let all = PrintOpts {
            key: true,
            offset: true,
            partition: true,
            timestamp: true,
            headers: true,
        };
        let mut r = record();
        assert_eq!(
            String::from_utf8(format_record(&r, 2, all)).unwrap(),
            "CreateTime:1000\tPartition:2\tOffset:5\tNO_HEADERS\tk\tv\n"
        );
        r.key = None;
        r.value = None;
        r.timestamp_type = TimestampType::LogAppend;
        r.headers
            .insert(StrBytes::from_static_str("a"), Some(Bytes::from("1")));
        r.headers.insert(StrBytes::from_static_str("b"), None);
        assert_eq!(
            String::from_utf8(format_record(&r, 0, all)).unwrap(),
            "LogAppendTime:1000\tPartition:0\tOffset:5\ta:1,b:null\tnull\tnull\n"
        );
    }
}
