//! Runs the plan: for each acks setting a fresh topic, the workload's threads, a progress line,
//! then the merged histograms and counters become a [`RunResult`]. Output files are written
//! after every run, so an interrupted matrix keeps what it measured.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use gregor::client::Client;
use hdrhistogram::Histogram;

use crate::args::{acks_name, Args, IsolationLevel, Mode, Plan, Stop, Workload};
use crate::clock::{now_ns, wall_ms};
use crate::consumer::{self, ConsumerSpec, Control};
use crate::cpu::{self, CpuUse};
use crate::interval::{self, IntervalSink};
use crate::producer::{self, Identity, ProducerHists, ProducerSpec};
use crate::result::IntervalRow;
use crate::result::{
    percentile_curve, BacklogStats, Machine, ResultFile, RunConfig, RunResult, Sample, Throughput,
    TxnStats,
};
use crate::stats::{self, Counters, LatencySummary};
use crate::topic::{self, DataVersions, TopicLayout};
use crate::txn::{self, Coordinator, PRODUCE_TXN_VERSION_MAX};
use crate::{report, svg};

/// Produce requests wait this long for replication before the broker answers with an error.
const REQUEST_TIMEOUT_MS: i32 = 30_000;
/// Producers start this long after being spawned, so connecting is not measured.
const START_DELAY_NS: u64 = 50_000_000;
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Entry point of the binary.
pub fn main_with(args: Args) -> Result<()> {
    if !args.report_from.is_empty() {
        return combine(&args);
    }
    let plan = args.plan()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let mut admin = Client::connect(&args.brokers, "gregor-bench-admin")
        .with_context(|| format!("connect to {}", args.brokers))?;
    let versions = DataVersions::of(&admin)?;
    let run_id = format!("{:x}", wall_ms() / 1000);
    let mut file = ResultFile {
        label: args.label.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: Machine::here(),
        runs: Vec::new(),
    };
    println!("{}", report::table_header());
    for &acks in &plan.acks {
        for &mode in &plan.modes {
            let run = (acks, mode);
            let (result, hists) = run_one(&args, &plan, run, &mut admin, versions, &run_id)?;
            for row in report::table_rows(&result) {
                println!("{row}");
            }
            for line in report::notes(&result) {
                println!("{line}");
            }
            let stem = format!(
                "{}-{}-acks{}{}",
                args.label,
                result.config.workload,
                result.acks,
                mode.suffix()
            );
            report::write_hgrm(&args.out, &format!("{stem}-produce"), &hists.produce)?;
            report::write_hgrm(&args.out, &format!("{stem}-e2e"), &hists.e2e)?;
            report::write_hgrm(&args.out, &format!("{stem}-commit"), &hists.commit)?;
            file.runs.push(result);
            write_outputs(&args, &file)?;
        }
    }
    eprintln!("results in {}", args.out.display());
    Ok(())
}

fn write_outputs(args: &Args, file: &ResultFile) -> Result<()> {
    file.write(&args.out.join("result.json"))?;
    let title = args.title.clone().unwrap_or_else(|| args.label.clone());
    let path = args.out.join("report.svg");
    std::fs::write(&path, svg::render(&title, &file.runs))
        .with_context(|| format!("write {}", path.display()))
}

/// `--report-from`: one chart and one table over runs from several result files.
fn combine(args: &Args) -> Result<()> {
    let mut runs = Vec::new();
    for p in &args.report_from {
        runs.extend(ResultFile::read(p)?.runs);
    }
    println!("{}", report::table_header());
    for r in &runs {
        for row in report::table_rows(r) {
            println!("{row}");
        }
        for line in report::notes(r) {
            println!("{line}");
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| "comparison".to_string());
    let path = args.out.join("report.svg");
    std::fs::write(&path, svg::render(&title, &runs))
        .with_context(|| format!("write {}", path.display()))?;
    eprintln!("report in {}", path.display());
    Ok(())
}

/// The merged histograms of a run.
struct Hists {
    produce: Histogram<u64>,
    e2e: Histogram<u64>,
    commit: Histogram<u64>,
}

/// What one phase of threads measured.
struct Phase {
    produce: Histogram<u64>,
    e2e: Histogram<u64>,
    commit: Histogram<u64>,
    timeline: Vec<Sample>,
    start_ns: u64,
    warmup_end_ns: u64,
    end_ns: u64,
    cpu: CpuUse,
    broker_cpu: Option<CpuUse>,
    /// Set when the produce figures come from another phase (the fill of a consume run).
    produce_throughput: Option<Throughput>,
    commit_throughput: Option<Throughput>,
    /// Per-interval rows (`--report-interval`).
    intervals: Vec<IntervalRow>,
    /// Backlog runs: the fill.
    backlog_fill: Option<Throughput>,
}

/// One cell of the plan: an acks setting and a producer mode.
type Cell = (i16, Mode);

fn run_one(
    args: &Args,
    plan: &Plan,
    run: Cell,
    admin: &mut Client,
    versions: DataVersions,
    run_id: &str,
) -> Result<(RunResult, Hists)> {
    let (acks, mode) = run;
    let name = format!(
        "{}-{run_id}-acks{}{}",
        args.topic,
        acks_name(acks),
        mode.suffix()
    );
    let layout = Arc::new(topic::create(
        admin,
        &name,
        args.partitions,
        args.replication_factor,
        &plan.topic_configs,
    )?);
    // Every leader knows the new topic before the first produce: an acks=0 produce to a leader
    // that does not closes the connection (as Kafka does), which the driver cannot retry.
    let starts = topic::offsets(admin, &layout, false)?;
    let first_offsets: i64 = starts.iter().sum();
    let counters = Arc::new(Counters::default());
    let mut tag = format!("{} acks={}", args.label, acks_name(acks));
    if mode != Mode::Plain {
        tag = format!("{tag} {}", mode.name());
    }
    let intervals = args.report_interval.is_some();
    let outcome = match args.workload {
        Workload::Produce => run_phase(
            args, plan, run, &layout, versions, &counters, None, &tag, intervals,
        ),
        Workload::EndToEnd => {
            let consume = ConsumePlan {
                starts,
                ends: None,
                backlog_records: 0,
                backlog_ends: None,
            };
            run_phase(
                args,
                plan,
                run,
                &layout,
                versions,
                &counters,
                Some(consume),
                &tag,
                intervals,
            )
        }
        Workload::Consume => {
            consume_workload(args, plan, run, admin, &layout, versions, &counters, &tag)
        }
        Workload::Backlog => {
            backlog_workload(args, plan, run, admin, &layout, versions, &counters, &tag)
        }
    };
    // What retention removed from the partitions' start while the run went on.
    let records_deleted = match &outcome {
        Ok(_) => match topic::offsets(admin, &layout, false) {
            Ok(now) => (now.iter().sum::<i64>() - first_offsets).max(0) as u64,
            Err(e) => {
                eprintln!("warning: earliest offsets after the run: {e:#}");
                0
            }
        },
        Err(_) => 0,
    };
    if !args.keep_topics {
        if let Err(e) = topic::delete(admin, &name) {
            eprintln!("warning: {e:#}");
        }
    }
    let phase = outcome?;
    let (mut result, hists) = assemble(args, plan, run, &layout, &counters, phase);
    result.records_deleted = records_deleted;
    Ok((result, hists))
}

/// Copies the errors and retries of a fill phase into the run's counters, marked as the fill's.
fn carry_fill_errors(counters: &Counters, fill: &Counters) {
    for (name, n) in fill.errors() {
        counters.error_n(&format!("fill: {name}"), n);
    }
    for (name, n) in fill.retries() {
        counters.retry_n(&format!("fill: {name}"), n);
    }
}

/// Payload bytes of one record: value plus key.
fn record_payload(args: &Args) -> u64 {
    let key = if args.key_cardinality > 0 {
        args.key_size
    } else {
        0
    };
    (args.record_size + key) as u64
}

/// Backlog workload: fill `--backlog-bytes` as fast as the broker takes it (not measured), then
/// producers at the plan's rate while consumers read from the start of the topic.
#[allow(clippy::too_many_arguments)]
fn backlog_workload(
    args: &Args,
    plan: &Plan,
    run: Cell,
    admin: &mut Client,
    layout: &Arc<TopicLayout>,
    versions: DataVersions,
    counters: &Arc<Counters>,
    tag: &str,
) -> Result<Phase> {
    let fill_plan = Plan {
        rate: None,
        stop: Stop::Records(args.backlog_bytes.div_ceil(record_payload(args))),
        ..plan.clone()
    };
    let fill = Arc::new(Counters::default());
    let fill_tag = format!("{tag} backlog fill");
    let filled = run_phase(
        args, &fill_plan, run, layout, versions, &fill, None, &fill_tag, false,
    )?;
    carry_fill_errors(counters, &fill);
    let fill_throughput = Throughput::new(
        Counters::get(&fill.acked_records),
        Counters::get(&fill.acked_bytes),
        Counters::get(&fill.last_ack_ns).saturating_sub(filled.start_ns) as f64 / 1e9,
    );
    let consume = ConsumePlan {
        starts: topic::offsets(admin, layout, false)?,
        ends: None,
        backlog_records: Counters::get(&fill.acked_records),
        backlog_ends: Some(topic::offsets(admin, layout, true)?),
    };
    let intervals = args.report_interval.is_some();
    let mut phase = run_phase(
        args,
        plan,
        run,
        layout,
        versions,
        counters,
        Some(consume),
        tag,
        intervals,
    )?;
    phase.backlog_fill = Some(fill_throughput);
    Ok(phase)
}

/// Consume workload: fill the topic (not measured), then read it from the start.
#[allow(clippy::too_many_arguments)]
fn consume_workload(
    args: &Args,
    plan: &Plan,
    run: Cell,
    admin: &mut Client,
    layout: &Arc<TopicLayout>,
    versions: DataVersions,
    counters: &Arc<Counters>,
    tag: &str,
) -> Result<Phase> {
    let fill = Arc::new(Counters::default());
    let filled = run_phase(
        args,
        plan,
        run,
        layout,
        versions,
        &fill,
        None,
        &format!("{tag} fill"),
        false,
    )?;
    carry_fill_errors(counters, &fill);
    Counters::add(&counters.error_records, Counters::get(&fill.error_records));
    Counters::add(&counters.acked_records, Counters::get(&fill.acked_records));
    for c in [
        (&counters.committed_txns, &fill.committed_txns),
        (&counters.aborted_txns, &fill.aborted_txns),
        (&counters.aborted_records, &fill.aborted_records),
    ] {
        Counters::add(c.0, Counters::get(c.1));
    }
    let starts = topic::offsets(admin, layout, false)?;
    let ends = topic::offsets(admin, layout, true)?;
    let consume = ConsumePlan {
        starts,
        ends: Some(ends),
        backlog_records: 0,
        backlog_ends: None,
    };
    let mut phase = run_consumers_only(args, layout, versions, counters, consume, tag)?;
    // The produce row of a consume run shows the fill, with its latencies.
    phase.produce_throughput = Some(produce_throughput(&fill, &filled));
    phase.commit_throughput = Some(commit_throughput(&fill, &filled));
    phase.produce = filled.produce;
    phase.commit = filled.commit;
    Ok(phase)
}

/// Commits of transactions that ended after the warm-up, per second from the warm-up to the
/// last commit (`records` counts transactions; `bytes` is 0).
fn commit_throughput(counters: &Counters, phase: &Phase) -> Throughput {
    let last = Counters::get(&counters.last_commit_ns);
    Throughput::new(
        Counters::get(&counters.measured_committed_txns),
        0,
        last.saturating_sub(phase.warmup_end_ns) as f64 / 1e9,
    )
}

/// Acknowledged records after the warm-up, over the time from the warm-up to the last ack.
fn produce_throughput(counters: &Counters, phase: &Phase) -> Throughput {
    let last = Counters::get(&counters.last_ack_ns);
    Throughput::new(
        Counters::get(&counters.measured_acked_records),
        Counters::get(&counters.measured_acked_bytes),
        last.saturating_sub(phase.warmup_end_ns) as f64 / 1e9,
    )
}

/// Where consumers start and (consume-only) stop, per layout partition.
struct ConsumePlan {
    starts: Vec<i64>,
    ends: Option<Vec<i64>>,
    /// Backlog runs: records in the topic before the phase, and its end offsets.
    backlog_records: u64,
    backlog_ends: Option<Vec<i64>>,
}

fn consumer_specs(
    args: &Args,
    layout: &Arc<TopicLayout>,
    versions: DataVersions,
    plan: &ConsumePlan,
    warmup_end_ns: u64,
    intervals: Option<&Arc<IntervalSink>>,
) -> Vec<ConsumerSpec> {
    let n = args.consumers.max(1);
    (0..n)
        .map(|c| {
            let assigned: Vec<usize> = (0..layout.partitions.len())
                .filter(|p| p % n == c)
                .collect();
            let backlog_ends = plan
                .backlog_ends
                .as_ref()
                .map(|e| assigned.iter().map(|p| e[*p]).collect());
            ConsumerSpec {
                index: c,
                topic: layout.clone(),
                start_offsets: assigned.iter().map(|p| plan.starts[*p]).collect(),
                end_offsets: plan
                    .ends
                    .as_ref()
                    .map(|e| assigned.iter().map(|p| e[*p]).collect()),
                assigned,
                end_to_end: plan.ends.is_none(),
                record_size: args.record_size,
                warmup_end_ns,
                fetch_version: versions.fetch,
                isolation_level: args.isolation_level.code(),
                max_wait_ms: args.fetch_max_wait_ms,
                partition_max_bytes: args.fetch_partition_max_bytes,
                stall_timeout: args.drain_timeout,
                intervals: intervals.cloned(),
                backlog_ends,
            }
        })
        .filter(|s| !s.assigned.is_empty())
        .collect()
}

fn spawn_consumers(
    specs: Vec<ConsumerSpec>,
    counters: &Arc<Counters>,
    control: &Arc<Control>,
) -> Result<Vec<JoinHandle<Result<Histogram<u64>>>>> {
    specs
        .into_iter()
        .map(|spec| {
            let (counters, control) = (counters.clone(), control.clone());
            std::thread::Builder::new()
                .name(format!("consumer-{}", spec.index))
                .spawn(move || consumer::run(spec, counters, control))
                .context("spawn consumer")
        })
        .collect()
}

fn run_consumers_only(
    args: &Args,
    layout: &Arc<TopicLayout>,
    versions: DataVersions,
    counters: &Arc<Counters>,
    plan: ConsumePlan,
    tag: &str,
) -> Result<Phase> {
    let control = Arc::new(Control::default());
    let meter = Meter::start(args, counters, tag, None)?;
    let start_ns = now_ns();
    let handles = spawn_consumers(
        consumer_specs(args, layout, versions, &plan, 0, None),
        counters,
        &control,
    )?;
    let e2e = join_all(handles, stats::new_histogram(), stats::merge)?;
    let (timeline, cpu, broker_cpu, _) = meter.stop()?;
    Ok(Phase {
        produce: stats::new_histogram(),
        e2e,
        commit: stats::new_histogram(),
        timeline,
        start_ns,
        warmup_end_ns: start_ns,
        end_ns: now_ns(),
        cpu,
        broker_cpu,
        produce_throughput: None,
        commit_throughput: None,
        intervals: Vec::new(),
        backlog_fill: None,
    })
}

/// Producers (and, for end-to-end, consumers) from start to finish.
#[allow(clippy::too_many_arguments)]
fn run_phase(
    args: &Args,
    plan: &Plan,
    run: Cell,
    layout: &Arc<TopicLayout>,
    versions: DataVersions,
    counters: &Arc<Counters>,
    consume: Option<ConsumePlan>,
    tag: &str,
    intervals: bool,
) -> Result<Phase> {
    // Producer ids and coordinators are set up before the clock starts, like connections.
    let identities = producer_identities(args, run.1, layout, counters)?;
    let start_ns = now_ns() + START_DELAY_NS;
    let warmup_end_ns = start_ns + args.warmup.as_nanos() as u64;
    let sink = match args.report_interval {
        Some(every) if intervals => {
            let end_ns = match plan.stop {
                Stop::After(d) => Some(warmup_end_ns + d.as_nanos() as u64),
                Stop::Records(_) => None,
            };
            Some(IntervalSink::new(
                warmup_end_ns,
                every.as_nanos() as u64,
                end_ns,
            ))
        }
        _ => None,
    };
    let control = Arc::new(Control::default());
    let meter = Meter::start(args, counters, tag, sink.clone())?;
    let backlog_records = consume.as_ref().map_or(0, |c| c.backlog_records);
    if let Some(ConsumePlan {
        starts,
        backlog_ends: Some(ends),
        ..
    }) = &consume
    {
        let left = ends.iter().zip(starts).filter(|(e, s)| e > s).count() as u64;
        counters
            .backlog_partitions_left
            .store(left, Ordering::Release);
        if left == 0 {
            Counters::mark_once(&counters.backlog_drained_ns, now_ns());
        }
    }
    let consumers = match &consume {
        Some(c) => spawn_consumers(
            consumer_specs(args, layout, versions, c, warmup_end_ns, sink.as_ref()),
            counters,
            &control,
        )?,
        None => Vec::new(),
    };
    let producers = spawn_producers(
        args,
        plan,
        run,
        layout,
        versions,
        counters,
        (start_ns, warmup_end_ns),
        identities,
        sink.as_ref(),
    )?;
    let produced = join_all(producers, ProducerHists::new(), ProducerHists::merge);
    control.expected.store(
        expected_records(args, counters) + backlog_records,
        Ordering::Release,
    );
    control.drain_deadline_ns.store(
        now_ns() + args.drain_timeout.as_nanos() as u64,
        Ordering::Release,
    );
    control.producers_done.store(true, Ordering::Release);
    if produced.is_err() {
        control.abort.store(true, Ordering::Release);
    }
    let e2e = join_all(consumers, stats::new_histogram(), stats::merge);
    let (timeline, cpu, broker_cpu, wall_start_ns) = meter.stop()?;
    let produced = produced?;
    let end_ns = match plan.stop {
        Stop::After(d) => warmup_end_ns + d.as_nanos() as u64,
        Stop::Records(_) => Counters::get(&counters.last_ack_ns),
    };
    let intervals = sink.map_or_else(Vec::new, |s| s.rows(end_ns, &timeline, wall_start_ns));
    Ok(Phase {
        produce: produced.produce,
        e2e: e2e?,
        commit: produced.commit,
        timeline,
        start_ns,
        warmup_end_ns,
        end_ns: now_ns(),
        cpu,
        broker_cpu,
        produce_throughput: None,
        commit_throughput: None,
        intervals,
        backlog_fill: None,
    })
}

/// Records the consumers should see: every acknowledged one, except under read_committed
/// those of aborted transactions.
fn expected_records(args: &Args, counters: &Counters) -> u64 {
    let acked = Counters::get(&counters.acked_records);
    match args.isolation_level {
        IsolationLevel::ReadCommitted => {
            acked.saturating_sub(Counters::get(&counters.aborted_records))
        }
        IsolationLevel::ReadUncommitted => acked,
    }
}

/// Each producer's identity: nothing, a producer id, or (transactions) a coordinator that
/// gave one to the transactional id `<prefix>-<topic>-<producer>`.
fn producer_identities(
    args: &Args,
    mode: Mode,
    layout: &TopicLayout,
    counters: &Arc<Counters>,
) -> Result<Vec<Identity>> {
    let timeout_ms = args.transaction_timeout_ms;
    (0..args.producers)
        .map(|i| {
            Ok(match mode {
                Mode::Plain => Identity::None,
                Mode::Idempotent => {
                    Identity::Idempotent(txn::init_idempotent(&args.brokers, timeout_ms)?)
                }
                Mode::Transactional(_) => {
                    let id = format!("{}-{}-{i}", args.transactional_id_prefix, layout.name);
                    let c = Coordinator::init(&args.brokers, &id, timeout_ms, counters.clone())?;
                    Identity::Transactional(c)
                }
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn spawn_producers(
    args: &Args,
    plan: &Plan,
    run: Cell,
    layout: &Arc<TopicLayout>,
    versions: DataVersions,
    counters: &Arc<Counters>,
    (start_ns, warmup_end_ns): (u64, u64),
    identities: Vec<Identity>,
    intervals: Option<&Arc<IntervalSink>>,
) -> Result<Vec<JoinHandle<Result<ProducerHists>>>> {
    let (acks, mode) = run;
    let transaction_records = match mode {
        Mode::Transactional(n) => Some(n),
        _ => None,
    };
    let produce_version = match mode {
        Mode::Transactional(_) => versions.produce.min(PRODUCE_TXN_VERSION_MAX),
        _ => versions.produce,
    };
    let n = args.producers as u64;
    let (stop_at_ns, total) = match plan.stop {
        Stop::After(d) => (Some(warmup_end_ns + d.as_nanos() as u64), None),
        Stop::Records(r) => (None, Some(r)),
    };
    identities
        .into_iter()
        .enumerate()
        .map(|(i, identity)| {
            let spec = ProducerSpec {
                index: i,
                topic: layout.clone(),
                acks,
                codec: args.compression.compression(),
                record_size: args.record_size,
                key_cardinality: args.key_cardinality,
                key_size: args.key_size,
                batch_size: args.batch_size,
                linger_ns: args.linger_ms * 1_000_000,
                max_in_flight: args.max_in_flight,
                max_request_size: args.max_request_size,
                buffer_memory: args.buffer_memory,
                rate: plan.rate.map(|r| r / n as f64),
                start_ns,
                warmup_end_ns,
                stop_at_ns,
                records: total.map(|t| t / n + u64::from((i as u64) < t % n)),
                produce_version,
                request_timeout_ms: REQUEST_TIMEOUT_MS,
                transaction_records,
                intervals: intervals.cloned(),
            };
            let counters = counters.clone();
            std::thread::Builder::new()
                .name(format!("producer-{i}"))
                .spawn(move || producer::run(spec, counters, identity))
                .context("spawn producer")
        })
        .collect()
}

/// Joins worker threads and merges their histograms into `merged`; the first failure wins.
fn join_all<T>(
    handles: Vec<JoinHandle<Result<T>>>,
    mut merged: T,
    merge: impl Fn(&mut T, &T) -> Result<()>,
) -> Result<T> {
    let mut first_err = None;
    for h in handles {
        match h.join().map_err(|_| anyhow!("worker thread panicked")) {
            Ok(Ok(hist)) => merge(&mut merged, &hist)?,
            Ok(Err(e)) | Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(merged),
    }
}

fn assemble(
    args: &Args,
    plan: &Plan,
    (acks, mode): Cell,
    layout: &TopicLayout,
    counters: &Counters,
    phase: Phase,
) -> (RunResult, Hists) {
    let secs = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e9;
    let produce = phase
        .produce_throughput
        .clone()
        .unwrap_or_else(|| produce_throughput(counters, &phase));
    let consumed = Counters::get(&counters.consumed_records);
    let consume = (args.workload != Workload::Produce).then(|| {
        Throughput::new(
            consumed,
            Counters::get(&counters.consumed_bytes),
            secs(phase.start_ns, Counters::get(&counters.last_consume_ns)),
        )
    });
    let backlog_records = phase.backlog_fill.as_ref().map_or(0, |f| f.records);
    let expected = match args.workload {
        Workload::Produce => consumed,
        _ => expected_records(args, counters) + backlog_records,
    };
    let unread = expected.saturating_sub(consumed);
    let backlog = phase.backlog_fill.clone().map(|fill| {
        let drained_ns = Counters::get(&counters.backlog_drained_ns);
        let drain_seconds = (drained_ns > 0).then(|| secs(phase.start_ns, drained_ns));
        let payload = record_payload(args) as f64;
        let (drain_mb_per_s, read_mb_per_s) = match drain_seconds {
            Some(s) if s > 0.0 => {
                let read = Counters::get(&counters.backlog_drained_consumed) as f64 * payload;
                (fill.bytes as f64 / s / 1e6, read / s / 1e6)
            }
            _ => {
                let read = Counters::get(&counters.consumed_records) as f64 * payload;
                let r = read / secs(phase.start_ns, phase.end_ns).max(1e-9) / 1e6;
                (r, r)
            }
        };
        BacklogStats {
            fill,
            drained: drained_ns > 0,
            drain_seconds,
            drain_mb_per_s,
            read_mb_per_s,
            unread_records: unread,
        }
    });
    // A backlog run may end before the consumers got through it: what they did not read is
    // reported with the backlog, not as lost records.
    let missing_records = if backlog.is_some() { 0 } else { unread };
    let end_to_end = matches!(args.workload, Workload::EndToEnd | Workload::Backlog);
    let transactional = matches!(mode, Mode::Transactional(_));
    let transactions = transactional.then(|| TxnStats {
        committed: Counters::get(&counters.committed_txns),
        aborted: Counters::get(&counters.aborted_txns),
        aborted_records: Counters::get(&counters.aborted_records),
        commits: phase
            .commit_throughput
            .clone()
            .unwrap_or_else(|| commit_throughput(counters, &phase)),
    });
    let result = RunResult {
        label: args.label.clone(),
        acks: acks_name(acks).to_string(),
        config: run_config(args, plan, layout, mode),
        produce,
        consume,
        produce_latency: LatencySummary::of(&phase.produce),
        e2e_latency: end_to_end.then(|| LatencySummary::of(&phase.e2e)),
        produce_curve: percentile_curve(&phase.produce),
        e2e_curve: percentile_curve(&phase.e2e),
        commit_latency: transactional.then(|| LatencySummary::of(&phase.commit)),
        commit_curve: percentile_curve(&phase.commit),
        transactions,
        retries: counters.retries(),
        aborted_records_skipped: Counters::get(&counters.aborted_records_skipped),
        errors: counters.errors(),
        error_records: Counters::get(&counters.error_records),
        missing_records,
        driver_cpu: phase.cpu,
        broker_cpu: phase.broker_cpu,
        timeline: phase.timeline,
        intervals: phase.intervals,
        backlog,
        records_deleted: 0,
    };
    (
        result,
        Hists {
            produce: phase.produce,
            e2e: phase.e2e,
            commit: phase.commit,
        },
    )
}

fn run_config(args: &Args, plan: &Plan, layout: &TopicLayout, mode: Mode) -> RunConfig {
    let workload = match args.workload {
        Workload::Produce => "produce",
        Workload::Consume => "consume",
        Workload::EndToEnd => "e2e",
        Workload::Backlog => "backlog",
    };
    RunConfig {
        workload: workload.to_string(),
        topic: layout.name.clone(),
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        record_size: args.record_size,
        key_cardinality: args.key_cardinality,
        key_size: if args.key_cardinality > 0 {
            args.key_size
        } else {
            0
        },
        topic_configs: plan.topic_configs.clone(),
        backlog_bytes: (args.workload == Workload::Backlog).then_some(args.backlog_bytes),
        compression: format!("{:?}", args.compression).to_lowercase(),
        batch_size: args.batch_size,
        linger_ms: args.linger_ms,
        producers: args.producers,
        consumers: args.consumers,
        max_in_flight: args.max_in_flight,
        rate: plan.rate,
        mode: mode.name(),
        transaction_records: match mode {
            Mode::Transactional(n) => Some(n),
            _ => None,
        },
        isolation_level: args.isolation_level.name().to_string(),
    }
}

/// The progress line, the throughput timeline and the CPU meters of one phase.
struct Meter {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
    cpu_start_s: f64,
    broker: Option<(Vec<u32>, f64)>,
    wall_start_ns: u64,
}

impl Meter {
    fn start(
        args: &Args,
        counters: &Arc<Counters>,
        tag: &str,
        intervals: Option<Arc<IntervalSink>>,
    ) -> Result<Meter> {
        let pids = &args.broker_pid;
        let broker = match pids.is_empty() {
            false => Some((pids.clone(), cpu::processes_cpu_s(pids)?)),
            true => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = ProgressCtx {
            counters: counters.clone(),
            stop: stop.clone(),
            print_every: args.progress_secs,
            tag: tag.to_string(),
            broker_pids: args.broker_pid.clone(),
            intervals,
        };
        let handle = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || ctx.run())
            .context("spawn progress")?;
        Ok(Meter {
            stop,
            handle,
            cpu_start_s: cpu::self_cpu_s(),
            broker,
            wall_start_ns: now_ns(),
        })
    }

    /// Timeline, driver CPU, broker CPU, and the clock reading of the timeline's t = 0.
    fn stop(self) -> Result<(Vec<Sample>, CpuUse, Option<CpuUse>, u64)> {
        let wall = (now_ns() - self.wall_start_ns) as f64 / 1e9;
        let cpu = CpuUse::between(self.cpu_start_s, cpu::self_cpu_s(), wall);
        let broker = match &self.broker {
            Some((pids, start)) => Some(CpuUse::between(*start, cpu::processes_cpu_s(pids)?, wall)),
            None => None,
        };
        self.stop.store(true, Ordering::Release);
        let timeline = self
            .handle
            .join()
            .map_err(|_| anyhow!("progress thread panicked"))?;
        Ok((timeline, cpu, broker, self.wall_start_ns))
    }
}

struct ProgressCtx {
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    print_every: u64,
    tag: String,
    broker_pids: Vec<u32>,
    /// Prints each interval's line shortly after it ends.
    intervals: Option<Arc<IntervalSink>>,
}

/// How long after an interval ends its line is printed: every active thread has moved on to
/// the next interval by then, so the sink holds the whole interval.
const INTERVAL_GRACE_NS: u64 = 1_000_000_000;

impl ProgressCtx {
    fn run(self) -> Vec<Sample> {
        let tty = std::io::stderr().is_terminal();
        // Meter::start reads its clock just after spawning this thread; the few microseconds
        // between are below the sample's resolution.
        let start = now_ns();
        let mut next_interval = 0usize;
        let mut last = (start, 0u64, 0u64, 0u64, 0u64, cpu::self_cpu_s());
        let broker_cpu_s = || match self.broker_pids.is_empty() {
            false => cpu::processes_cpu_s(&self.broker_pids).ok(),
            true => None,
        };
        let mut broker_last = broker_cpu_s();
        let mut timeline = Vec::new();
        let mut tick = 0u64;
        while !self.stop.load(Ordering::Acquire) {
            sleep_unless_stopped(&self.stop, SAMPLE_INTERVAL);
            let c = &self.counters;
            let now = now_ns();
            let (ar, ab) = (
                Counters::get(&c.acked_records),
                Counters::get(&c.acked_bytes),
            );
            let (cr, cb) = (
                Counters::get(&c.consumed_records),
                Counters::get(&c.consumed_bytes),
            );
            let dt = (now - last.0) as f64 / 1e9;
            if dt <= 0.0 {
                continue;
            }
            let broker_rss_mb = match self.broker_pids.is_empty() {
                false => cpu::processes_rss_bytes(&self.broker_pids)
                    .ok()
                    .map(|b| b as f64 / 1e6),
                true => None,
            };
            let s = Sample {
                t_s: (now - start) as f64 / 1e9,
                produced_records_per_s: (ar - last.1) as f64 / dt,
                produced_mb_per_s: (ab - last.2) as f64 / dt / 1e6,
                consumed_records_per_s: (cr - last.3) as f64 / dt,
                consumed_mb_per_s: (cb - last.4) as f64 / dt / 1e6,
                broker_rss_mb,
            };
            let cpu_now = cpu::self_cpu_s();
            let driver = (cpu_now - last.5) / dt;
            let broker_now = broker_cpu_s();
            let broker = broker_now.zip(broker_last).map(|(n, l)| (n - l) / dt);
            broker_last = broker_now;
            tick += 1;
            if self.print_every > 0 && tick.is_multiple_of(self.print_every) {
                self.print(&s, driver, broker, tty);
            }
            timeline.push(s);
            last = (now, ar, ab, cr, cb, cpu_now);
            if let Some(sink) = &self.intervals {
                let end = |i: usize| sink.start_ns + (i as u64 + 1) * sink.interval_ns;
                while sink.within(next_interval) && now >= end(next_interval) + INTERVAL_GRACE_NS {
                    let row = sink.row(next_interval, end(next_interval), &timeline, start);
                    let line = interval::line(&self.tag, next_interval, &row);
                    if tty {
                        eprintln!("\r\x1b[2K{line}");
                    } else {
                        eprintln!("{line}");
                    }
                    next_interval += 1;
                }
            }
        }
        if tty && self.print_every > 0 {
            eprintln!();
        }
        timeline
    }

    fn print(&self, s: &Sample, driver: f64, broker: Option<f64>, tty: bool) {
        let c = &self.counters;
        let broker = broker.map_or(String::new(), |b| format!(" broker CPU {:.0}%", b * 100.0));
        let line = format!(
            "[{}] {:5.0}s produced {:>9.0} rec/s {:>8.1} MB/s | consumed {:>9.0} rec/s {:>8.1} MB/s | errors {} | driver CPU {:.0}%{broker}",
            self.tag,
            s.t_s,
            s.produced_records_per_s,
            s.produced_mb_per_s,
            s.consumed_records_per_s,
            s.consumed_mb_per_s,
            c.error_total(),
            driver * 100.0,
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::Acquire) {
        std::thread::sleep(step);
        slept += step;
    }
}
