//! `gregor-client-bench`: throughput and end-to-end latency as librdkafka (the client most
//! applications use) sees them, over any security protocol librdkafka speaks. `gregor-bench`
//! drives the broker with its own pipelined wire client, which speaks PLAINTEXT only; this one
//! exists to compare listeners (PLAINTEXT against SSL or SASL_SSL) in the same run, client
//! costs included.
//!
//! Three phases on fresh topics: produce `--records` records of `--size` bytes as fast as the
//! producer goes (acks=1); consume them all from the beginning; then produce at `--rate-mbps`
//! for `--e2e-secs` while a consumer reads, each record carrying its send time, for the
//! end-to-end latency distribution (linger.ms=0 there, 5 for throughput; fetch.wait.max.ms=5).
//! One line per phase on stdout.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// host:port of the listener to measure.
    #[arg(long)]
    bootstrap: String,
    /// A label for the output lines (e.g. plaintext, ssl).
    #[arg(long)]
    label: String,
    /// librdkafka settings for the way in: `-X security.protocol=ssl -X ssl.ca.location=...`.
    #[arg(short = 'X', value_parser = key_value)]
    settings: Vec<(String, String)>,
    #[arg(long, default_value_t = 500_000)]
    records: usize,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// The end-to-end phase's produce rate.
    #[arg(long, default_value_t = 50.0)]
    rate_mbps: f64,
    #[arg(long, default_value_t = 10)]
    e2e_secs: u64,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s}"))
}

fn config(args: &Args) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap);
    for (k, v) in &args.settings {
        c.set(k, v);
    }
    c
}

/// An acks=1 producer; `linger_ms` 5 (librdkafka's default) for throughput, 0 for latency.
fn producer(args: &Args, linger_ms: u32) -> Result<BaseProducer> {
    let mut c = config(args);
    c.set("acks", "1")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    c.create().context("create producer")
}

fn consumer(args: &Args, topic: &str) -> Result<BaseConsumer> {
    let mut c = config(args);
    c.set("group.id", "gregor-client-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760");
    let consumer: BaseConsumer = c.create().context("create consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

fn create_topic(args: &Args, name: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(args).create()?;
    let topic = NewTopic::new(name, args.partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let rt = futures_executor(admin.create_topics([&topic], &opts))?;
    for r in rt {
        if let Err((t, e)) = r {
            bail!("creating {t}: {e}");
        }
    }
    Ok(())
}

/// Runs a future to completion on this thread (rdkafka's admin API is async).
fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Sends one record, polling the producer while its queue is full.
fn send(p: &BaseProducer, topic: &str, payload: &[u8]) {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload);
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                record = r;
                p.poll(Duration::from_millis(1));
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mb = |bytes: usize, secs: f64| bytes as f64 / secs / 1e6;

    // Produce as fast as the producer goes.
    let topic = format!("client-bench-{}-{}", args.label, &run[..8]);
    create_topic(&args, &topic)?;
    let p = producer(&args, 5)?;
    let payload = vec![b'x'; args.size];
    let started = Instant::now();
    for _ in 0..args.records {
        send(&p, &topic, &payload);
    }
    p.flush(Duration::from_secs(120))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<12} produce  {:>10.0} rec/s {:>8.1} MB/s",
        args.label,
        args.records as f64 / secs,
        mb(args.records * args.size, secs)
    );

    // Consume them all.
    let c = consumer(&args, &topic)?;
    let started = Instant::now();
    let mut got = 0;
    while got < args.records {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("consumed {got} of {} in 300 s", args.records);
        }
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            m?;
            got += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<12} consume  {:>10.0} rec/s {:>8.1} MB/s",
        args.label,
        got as f64 / secs,
        mb(got * args.size, secs)
    );
    drop(c);

    // End to end at a fixed rate: each record carries its send time (µs since `epoch`).
    let topic = format!("client-bench-e2e-{}-{}", args.label, &run[..8]);
    create_topic(&args, &topic)?;
    let epoch = Instant::now();
    let reader_args = args.clone();
    let reader_topic = topic.clone();
    let deadline = Duration::from_secs(args.e2e_secs);
    let reader = std::thread::spawn(move || -> Result<Histogram<u64>> {
        let c = consumer(&reader_args, &reader_topic)?;
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut idle_since = None::<Instant>;
        loop {
            match c.poll(Duration::from_millis(50)) {
                Some(m) => {
                    let m = m?;
                    let sent = m
                        .payload()
                        .and_then(|p| p.get(..8))
                        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                        .unwrap_or(0);
                    let now = epoch.elapsed().as_micros() as u64;
                    h.saturating_record(now.saturating_sub(sent).max(1));
                    idle_since = None;
                }
                None if epoch.elapsed() > deadline + Duration::from_secs(2) => {
                    let idle = idle_since.get_or_insert_with(Instant::now);
                    if idle.elapsed() > Duration::from_secs(2) {
                        return Ok(h);
                    }
                }
                None => {}
            }
        }
    });
    // Let the consumer's assignment settle before the clock starts mattering.
    std::thread::sleep(Duration::from_secs(2));
    let p = producer(&args, 0)?;
    let per_record = Duration::from_secs_f64(args.size as f64 / (args.rate_mbps * 1e6));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut payload = vec![b'x'; args.size.max(8)];
    while start.elapsed() < deadline {
        let due = start + per_record.mul_f64(sent as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let stamp = epoch.elapsed().as_micros() as u64;
        payload[..8].copy_from_slice(&stamp.to_be_bytes());
        send(&p, &topic, &payload);
        p.poll(Duration::ZERO);
        sent += 1;
    }
    p.flush(Duration::from_secs(60))?;
    let h = reader.join().expect("reader thread")?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{:<12} e2e      {:>10} rec at {:.0} MB/s: p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms (received {})",
        args.label,
        sent,
        args.rate_mbps,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0,
        h.len()
    );
    Ok(())
}
