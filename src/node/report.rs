//! What a scrape of `/metrics` collects and how it is written.
//!
//! The metadata core asks every data shard for a [`ShardReport`] over the mesh (each shard
//! copies its counters and looks at its own logs, replicas and groups: work of the order of
//! its partition count, once per scrape), adds its own counts and the quorum's position, and
//! renders one Prometheus page. Names follow Prometheus conventions; each family's help text
//! says which Kafka metric it corresponds to (README, "Metrics", has the table).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::group::coordinator::GroupReport;
use crate::metadata::quorum::LogPosition;
use crate::metrics::exposition::{Kind, Page};
use crate::metrics::{Sample, PHASES};
use crate::shard::Shard;
use crate::types::TopicPartition;

/// One partition replica on this node.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub tp: TopicPartition,
    pub size_bytes: u64,
    pub segments: usize,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// What one data shard tells a scrape.
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub shard: usize,
    pub sample: Sample,
    pub partitions: Vec<PartitionReport>,
    /// Partitions led here: ISR size and replica count.
    pub led: Vec<(TopicPartition, usize, usize)>,
    pub groups: Vec<GroupReport>,
    pub cache_held_bytes: usize,
    pub cache_budget_bytes: usize,
    pub request_bytes_held: u64,
    /// Jobs queued for other shards and not yet taken by the mesh.
    pub outbox_jobs: usize,
    pub serving: bool,
    /// How long the shard spent building this report: what a scrape costs it.
    pub took: std::time::Duration,
}

impl ShardReport {
    /// Runs on the shard itself.
    pub fn of(shard: &Shard) -> ShardReport {
        let started = std::time::Instant::now();
        let partitions = shard
            .all_logs()
            .into_iter()
            .map(|(tp, log)| PartitionReport {
                tp,
                size_bytes: log.size_bytes(),
                segments: log.segment_count(),
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
                high_watermark: log.high_watermark(),
            })
            .collect();
        let (cache_held_bytes, cache_budget_bytes) = shard.fetch_cache_bytes();
        let mut report = ShardReport {
            shard: shard.id.0,
            sample: Sample::take_local(),
            partitions,
            led: crate::replication::led_partitions(shard),
            groups: crate::group::coordinator::report(shard),
            cache_held_bytes,
            cache_budget_bytes,
            request_bytes_held: shard.request_bytes_held(),
            outbox_jobs: shard.outbox_jobs(),
            serving: shard.is_serving(),
            took: std::time::Duration::ZERO,
        };
        report.took = started.elapsed();
        report
    }
}

/// What the metadata core adds: its own counts, the quorum, the image.
pub struct CoreReport {
    pub sample: Sample,
    pub position: Option<LogPosition>,
    pub leader: Option<i32>,
    pub node_id: i32,
    pub topics: usize,
    pub partitions: usize,
    /// Partitions without a leader (reported by the active controller only, as Kafka does).
    pub offline_partitions: usize,
    pub live_brokers: usize,
    pub brokers: usize,
}

impl CoreReport {
    pub fn of(core: &Rc<Shard>) -> CoreReport {
        let quorum = core.quorum();
        let snap = quorum
            .as_ref()
            .map_or_else(|| core.snapshot(), |q| q.image());
        let position = quorum.as_ref().and_then(|q| q.position());
        let active = position.is_some_and(|p| p.leader);
        let partitions = snap.topics.values().map(|t| t.assignments.len()).sum();
        let offline = snap
            .topics
            .values()
            .flat_map(|t| t.assignments.iter())
            .filter(|p| p.leader < 0)
            .count();
        CoreReport {
            sample: Sample::take_local(),
            position,
            leader: quorum.as_ref().and_then(|q| q.leader()),
            node_id: core.config.node_id,
            topics: snap.topics.len(),
            partitions,
            offline_partitions: if active { offline } else { 0 },
            live_brokers: snap.live_brokers().count(),
            brokers: snap.brokers.len(),
        }
    }
}

/// A family written from one number of each item: its name, help text and how to get it.
type Column<T, V> = (&'static str, &'static str, fn(&T) -> V);

impl CoreReport {
    /// A metadata core that knows nothing yet (no quorum, an empty image).
    #[cfg(test)]
    fn of_nothing() -> CoreReport {
        CoreReport {
            sample: Sample::default(),
            position: Some(LogPosition {
                term: 0,
                committed: 0,
                applied: 0,
                last_index: 0,
                leader: false,
            }),
            leader: None,
            node_id: 1,
            topics: 0,
            partitions: 0,
            offline_partitions: 0,
            live_brokers: 0,
            brokers: 0,
        }
    }
}

/// Kafka's name of an API key (`Produce`, `Fetch`, ...).
fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}"))
}

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`).
pub fn error_name(code: i16) -> String {
    let Some(e) = ResponseError::try_from_code(code) else {
        return "NONE".to_string();
    };
    if let ResponseError::Unknown(c) = e {
        return format!("UNKNOWN_{c}");
    }
    let camel = format!("{e:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// The whole `/metrics` page.
pub fn render(shards: &[ShardReport], core: &CoreReport, process: &ProcessStats) -> String {
    let mut total = core.sample.clone();
    for s in shards {
        total.merge(&s.sample);
    }
    let mut page = Page::new();
    requests(&mut page, &total);
    topics(&mut page, &total);
    broker(&mut page, &total, shards);
    partitions(&mut page, shards);
    groups(&mut page, shards);
    quorum(&mut page, core);
    process_stats(&mut page, process);
    page.finish()
}

fn requests(page: &mut Page, t: &Sample) {
    page.family(
        "gregor_requests_total",
        Kind::Counter,
        "Requests answered, by API and version (Kafka: kafka.network RequestMetrics RequestsPerSec).",
    );
    for ((api, version), n) in &t.requests {
        let (api, version) = (api_name(*api), version.to_string());
        page.sample(
            "gregor_requests_total",
            &[("api", &api), ("version", &version)],
            *n as f64,
        );
    }
    page.family(
        "gregor_request_duration_seconds",
        Kind::Histogram,
        "Request time by API and phase: queue (waiting for queued.max.request.bytes), local, \
         remote (acks=all replication, fetch long poll), response_queue, response_send, total \
         (Kafka: RequestQueueTimeMs, LocalTimeMs, RemoteTimeMs, ResponseQueueTimeMs, \
         ResponseSendTimeMs, TotalTimeMs).",
    );
    for (api, hs) in &t.latency {
        let api = api_name(*api);
        for phase in PHASES {
            page.histogram(
                "gregor_request_duration_seconds",
                &[("api", &api), ("phase", phase.name())],
                &hs[phase as usize],
            );
        }
    }
    page.family(
        "gregor_request_errors_total",
        Kind::Counter,
        "Error codes in responses, one per partition or resource that got one, by API and Kafka \
         error name (Kafka: RequestMetrics ErrorsPerSec).",
    );
    for ((api, code), n) in &t.errors {
        let (api, error) = (api_name(*api), error_name(*code));
        page.sample(
            "gregor_request_errors_total",
            &[("api", &api), ("error", &error)],
            *n as f64,
        );
    }
}

fn topics(page: &mut Page, t: &Sample) {
    let families: [Column<crate::metrics::TopicCounts, u64>; 4] = [
        (
            "gregor_topic_bytes_in_total",
            "Bytes of record batches appended as leader, by topic (Kafka: BrokerTopicMetrics BytesInPerSec).",
            |c| c.bytes_in,
        ),
        (
            "gregor_topic_messages_in_total",
            "Records appended as leader, by topic (Kafka: BrokerTopicMetrics MessagesInPerSec).",
            |c| c.messages_in,
        ),
        (
            "gregor_topic_bytes_out_total",
            "Bytes of record batches sent to consumers, by topic; followers not counted (Kafka: \
             BrokerTopicMetrics BytesOutPerSec).",
            |c| c.bytes_out,
        ),
        (
            "gregor_topic_messages_out_total",
            "Offsets sent to consumers, by topic: records, and control records and compacted-away \
             offsets among them (Kafka has no per-record out rate).",
            |c| c.messages_out,
        ),
    ];
    for (name, help, get) in families {
        page.family(name, Kind::Counter, help);
        for (topic, c) in &t.topics {
            page.sample(name, &[("topic", topic)], get(c) as f64);
        }
    }
}

fn broker(page: &mut Page, t: &Sample, shards: &[ShardReport]) {
    let c = &t.counters;
    let open = c.connections_opened.saturating_sub(c.connections_closed);
    page.single(
        "gregor_connections",
        Kind::Gauge,
        "Client connections open (Kafka: socket-server-metrics connection-count).",
        open as f64,
    );
    let counters: [(&str, &str, u64); 17] = [
        (
            "gregor_authentications_total",
            "SASL authentications that succeeded (Kafka: successful-authentication-total).",
            c.authentications_ok,
        ),
        (
            "gregor_authentication_failures_total",
            "SASL authentications that failed; each connection is closed (Kafka: \
             failed-authentication-total).",
            c.authentications_failed,
        ),
        (
            "gregor_tls_handshake_failures_total",
            "TLS handshakes on SSL and SASL_SSL listeners that failed (a plaintext client, an \
             untrusted or expired certificate).",
            c.tls_handshakes_failed,
        ),
        (
            "gregor_connections_opened_total",
            "Client connections accepted (Kafka: connection-creation-total).",
            c.connections_opened,
        ),
        (
            "gregor_connections_closed_total",
            "Client connections closed (Kafka: connection-close-total).",
            c.connections_closed,
        ),
        (
            "gregor_connections_closed_on_error_total",
            "Connections the broker closed because of what the client sent: an unparseable or \
             unserved request, a frame over socket.request.max.bytes, a failed acks=0 produce.",
            c.connections_closed_on_error,
        ),
        (
            "gregor_replication_bytes_in_total",
            "Bytes a follower appended from its leaders (Kafka: ReplicationBytesInPerSec).",
            c.replication_bytes_in,
        ),
        (
            "gregor_replication_bytes_out_total",
            "Bytes a leader sent to its followers (Kafka: ReplicationBytesOutPerSec).",
            c.replication_bytes_out,
        ),
        (
            "gregor_fetch_cache_hit_bytes_total",
            "Fetched bytes served from the in-memory tail cache (fetch.cache.bytes).",
            c.fetch_cache_bytes,
        ),
        (
            "gregor_fetch_cache_miss_bytes_total",
            "Fetched bytes served from segment files (page cache and sendfile, or direct reads).",
            c.fetch_file_bytes,
        ),
        (
            "gregor_cross_shard_messages_total",
            "Jobs sent from one shard (core) to another over the mesh.",
            c.cross_shard_messages,
        ),
        (
            "gregor_isr_shrinks_total",
            "ISR shrinks committed for partitions led here, by this leader or by the controller (Kafka: ReplicaManager IsrShrinksPerSec).",
            c.isr_shrinks,
        ),
        (
            "gregor_isr_expands_total",
            "ISR expansions committed for partitions led here (Kafka: ReplicaManager IsrExpandsPerSec).",
            c.isr_expands,
        ),
        (
            "gregor_log_flushes_total",
            "fdatasyncs of segment files (Kafka: LogFlushStats LogFlushRateAndTimeMs, the count).",
            c.fsyncs,
        ),
        (
            "gregor_log_failures_total",
            "Partition logs that failed a write (an I/O error other than a full device) and went offline until a restart (Kafka: OfflineLogDirectoryCount, per partition).",
            c.log_failures,
        ),
        (
            "gregor_log_out_of_space_total",
            "Times a partition log found its device full (ENOSPC or EDQUOT): produce gets KAFKA_STORAGE_ERROR until a retried write succeeds.",
            c.log_out_of_space,
        ),
        (
            "gregor_producers_evicted_total",
            "Idle producers forgotten because a partition held more than producer.state.max.producers.per.partition (their next batch is taken at any sequence, as after producer.id.expiration.ms).",
            c.producers_evicted,
        ),
    ];
    for (name, help, v) in counters {
        page.single(name, Kind::Counter, help, v as f64);
    }
    page.family(
        "gregor_log_flush_duration_seconds",
        Kind::Histogram,
        "fdatasync time of segment files (Kafka: LogFlushStats LogFlushRateAndTimeMs).",
    );
    page.histogram("gregor_log_flush_duration_seconds", &[], &t.fsync);
    page.family(
        "gregor_disk_write_duration_seconds",
        Kind::Histogram,
        "Time of each direct (O_DIRECT, io_uring) write of segment data: one per group commit.",
    );
    page.histogram("gregor_disk_write_duration_seconds", &[], &t.disk_write);

    let per_shard: [Column<ShardReport, f64>; 8] = [
        (
            "gregor_shard_partitions",
            "Partition replicas each shard owns.",
            |s| s.partitions.len() as f64,
        ),
        (
            "gregor_shard_connections",
            "Client connections open on each shard.",
            |s| {
                let c = &s.sample.counters;
                c.connections_opened.saturating_sub(c.connections_closed) as f64
            },
        ),
        (
            "gregor_shard_fetch_cache_bytes",
            "Bytes each shard's fetch cache holds (memory in use for recent batches).",
            |s| s.cache_held_bytes as f64,
        ),
        (
            "gregor_shard_fetch_cache_budget_bytes",
            "Each shard's fetch cache budget (fetch.cache.bytes).",
            |s| s.cache_budget_bytes as f64,
        ),
        (
            "gregor_shard_request_bytes",
            "Bytes of requests read and not yet answered on each shard (memory in use for \
             requests, bounded by its share of queued.max.request.bytes).",
            |s| s.request_bytes_held as f64,
        ),
        (
            "gregor_shard_outbox_jobs",
            "Jobs each shard has queued for other shards and not yet handed to them; at 8192 \
             its connections read no new requests until it is down to half.",
            |s| s.outbox_jobs as f64,
        ),
        (
            "gregor_shard_serving",
            "1 once a shard has opened its logs and accepts clients.",
            |s| f64::from(u8::from(s.serving)),
        ),
        (
            "gregor_shard_scrape_seconds",
            "Time each shard spent on this scrape (copying its counts, reading its logs, \
             replicas and groups); the rest of a scrape runs on the metadata core.",
            |s| s.took.as_secs_f64(),
        ),
    ];
    for (name, help, get) in per_shard {
        page.family(name, Kind::Gauge, help);
        for s in shards {
            page.sample(name, &[("shard", &s.shard.to_string())], get(s));
        }
    }
}

fn partitions(page: &mut Page, shards: &[ShardReport]) {
    let mut parts: Vec<&PartitionReport> = shards.iter().flat_map(|s| &s.partitions).collect();
    parts.sort_by(|a, b| a.tp.cmp(&b.tp));
    let per_partition: [Column<PartitionReport, f64>; 5] = [
        (
            "gregor_log_size_bytes",
            "Bytes of a partition replica's segments (Kafka: kafka.log Log Size).",
            |p| p.size_bytes as f64,
        ),
        (
            "gregor_log_segments",
            "Segments of a partition replica (Kafka: kafka.log Log NumLogSegments).",
            |p| p.segments as f64,
        ),
        (
            "gregor_log_start_offset",
            "First offset kept (Kafka: kafka.log Log LogStartOffset).",
            |p| p.log_start_offset as f64,
        ),
        (
            "gregor_log_end_offset",
            "Offset the next record gets (Kafka: kafka.log Log LogEndOffset).",
            |p| p.log_end_offset as f64,
        ),
        (
            "gregor_log_high_watermark",
            "Offsets below it are committed and readable by consumers.",
            |p| p.high_watermark as f64,
        ),
    ];
    for (name, help, get) in per_partition {
        page.family(name, Kind::Gauge, help);
        for p in &parts {
            let partition = p.tp.partition.to_string();
            page.sample(
                name,
                &[("topic", &p.tp.topic), ("partition", &partition)],
                get(p),
            );
        }
    }
    let mut led: Vec<&(TopicPartition, usize, usize)> =
        shards.iter().flat_map(|s| &s.led).collect();
    led.sort_by(|a, b| a.0.cmp(&b.0));
    page.single(
        "gregor_leader_partitions",
        Kind::Gauge,
        "Partitions this broker leads (Kafka: ReplicaManager LeaderCount).",
        led.len() as f64,
    );
    page.single(
        "gregor_under_replicated_partitions",
        Kind::Gauge,
        "Partitions led here whose ISR is smaller than their replica set (Kafka: ReplicaManager \
         UnderReplicatedPartitions).",
        led.iter().filter(|(_, isr, all)| isr < all).count() as f64,
    );
    page.family(
        "gregor_partition_in_sync_replicas",
        Kind::Gauge,
        "ISR size of each partition led here (Kafka: Partition InSyncReplicasCount).",
    );
    for (tp, isr, _) in &led {
        let partition = tp.partition.to_string();
        page.sample(
            "gregor_partition_in_sync_replicas",
            &[("topic", &tp.topic), ("partition", &partition)],
            *isr as f64,
        );
    }
}

fn groups(page: &mut Page, shards: &[ShardReport]) {
    let mut groups: Vec<&GroupReport> = shards.iter().flat_map(|s| &s.groups).collect();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    // The newest end this node knows of each partition (lag is measured to the high watermark,
    // as kafka-lag-exporter and Burrow do with the latest offset).
    let ends: HashMap<(&str, i32), i64> = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| ((p.tp.topic.as_str(), p.tp.partition), p.high_watermark))
        .collect();
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &groups {
        *states.entry(g.state).or_default() += 1;
    }
    page.family(
        "gregor_consumer_groups",
        Kind::Gauge,
        "Consumer groups coordinated here, by state (Kafka: GroupMetadataManager NumGroups...).",
    );
    for (state, n) in &states {
        page.sample("gregor_consumer_groups", &[("state", state)], *n as f64);
    }
    let per_group: [Column<GroupReport, f64>; 2] = [
        (
            "gregor_consumer_group_members",
            "Members of each consumer group coordinated here.",
            |g| g.members as f64,
        ),
        (
            "gregor_consumer_group_generation",
            "Generation of each consumer group: the rebalances it has completed (use its rate for \
             the rebalance rate).",
            |g| f64::from(g.generation),
        ),
    ];
    for (name, help, get) in per_group {
        page.family(name, Kind::Gauge, help);
        for g in &groups {
            page.sample(name, &[("group", &g.id)], get(g));
        }
    }
    page.family(
        "gregor_consumer_group_committed_offset",
        Kind::Gauge,
        "Committed offset of each group and partition (kafka-lag-exporter: \
         kafka_consumergroup_group_offset).",
    );
    for g in &groups {
        for (topic, partition, offset) in &g.offsets {
            let p = partition.to_string();
            page.sample(
                "gregor_consumer_group_committed_offset",
                &[("group", &g.id), ("topic", topic), ("partition", &p)],
                *offset as f64,
            );
        }
    }
    page.family(
        "gregor_consumer_group_lag",
        Kind::Gauge,
        "High watermark minus committed offset, for partitions with a replica on this broker \
         (kafka-lag-exporter: kafka_consumergroup_group_lag; Burrow's lag).",
    );
    for g in &groups {
        for (topic, partition, offset) in &g.offsets {
            let Some(end) = ends.get(&(topic.as_str(), *partition)) else {
                continue;
            };
            let p = partition.to_string();
            page.sample(
                "gregor_consumer_group_lag",
                &[("group", &g.id), ("topic", topic), ("partition", &p)],
                (end - offset).max(0) as f64,
            );
        }
    }
}

fn quorum(page: &mut Page, c: &CoreReport) {
    page.single(
        "gregor_raft_current_leader",
        Kind::Gauge,
        "Node id of the active controller, -1 when unknown (Kafka: raft-metrics current-leader).",
        f64::from(c.leader.unwrap_or(-1)),
    );
    page.single(
        "gregor_raft_node_id",
        Kind::Gauge,
        "This node's id (node.id).",
        f64::from(c.node_id),
    );
    if let Some(p) = c.position {
        let gauges: [(&str, &str, f64); 5] = [
            (
                "gregor_raft_current_epoch",
                "Raft term of the metadata quorum (Kafka: raft-metrics current-epoch).",
                p.term as f64,
            ),
            (
                "gregor_raft_high_watermark",
                "Commit index of the metadata log (Kafka: raft-metrics high-watermark).",
                p.committed as f64,
            ),
            (
                "gregor_raft_log_end_offset",
                "Last index of this voter's metadata log (Kafka: raft-metrics log-end-offset).",
                p.last_index as f64,
            ),
            (
                "gregor_raft_applied_offset",
                "Last metadata log index applied to this node's image.",
                p.applied as f64,
            ),
            (
                "gregor_raft_commit_lag",
                "Committed metadata entries not yet applied here.",
                p.committed.saturating_sub(p.applied) as f64,
            ),
        ];
        for (name, help, v) in gauges {
            page.single(name, Kind::Gauge, help, v);
        }
    }
    page.single(
        "gregor_active_controller",
        Kind::Gauge,
        "1 on the active controller (Kafka: KafkaController ActiveControllerCount).",
        f64::from(u8::from(c.position.is_some_and(|p| p.leader))),
    );
    page.single(
        "gregor_offline_partitions",
        Kind::Gauge,
        "Partitions without a leader; reported by the active controller only (Kafka: \
         KafkaController OfflinePartitionsCount).",
        c.offline_partitions as f64,
    );
    let image: [(&str, &str, usize); 4] = [
        (
            "gregor_global_topics",
            "Topics in the cluster (Kafka: KafkaController GlobalTopicCount).",
            c.topics,
        ),
        (
            "gregor_global_partitions",
            "Partitions in the cluster (Kafka: KafkaController GlobalPartitionCount).",
            c.partitions,
        ),
        (
            "gregor_brokers",
            "Brokers registered in the cluster.",
            c.brokers,
        ),
        (
            "gregor_live_brokers",
            "Brokers registered and not fenced (Kafka: KafkaController ActiveBrokerCount).",
            c.live_brokers,
        ),
    ];
    for (name, help, v) in image {
        page.single(name, Kind::Gauge, help, v as f64);
    }
}

/// The process as /proc reports it (the standard Prometheus process metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
}

impl ProcessStats {
    /// Reads /proc/self; fields it cannot read stay zero.
    pub fn read() -> ProcessStats {
        let mut p = ProcessStats::default();
        // SAFETY: sysconf only reads system constants.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
                libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
            )
        };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which is in parentheses and may hold spaces.
            if let Some((_, rest)) = stat.rsplit_once(')') {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                // utime, stime are fields 14 and 15 of stat; here indices 11 and 12.
                p.cpu_seconds = (num(11) + num(12)) / tick;
                p.threads = num(17) as u64;
                p.virtual_bytes = num(20) as u64;
                p.resident_bytes = num(21) as u64 * page;
                let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("btime "))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                });
                p.start_time_seconds = boot.unwrap_or(0.0) + num(19) / tick;
            }
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = lim.rlim_cur;
        }
        p
    }
}

fn process_stats(page: &mut Page, p: &ProcessStats) {
    let rows: [(&str, Kind, &str, f64); 7] = [
        (
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            p.resident_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            p.virtual_bytes as f64,
        ),
        (
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            p.open_fds as f64,
        ),
        (
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            p.max_fds as f64,
        ),
        (
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
        (
            "process_threads",
            Kind::Gauge,
            "Number of OS threads in the process.",
            p.threads as f64,
        ),
    ];
    for (name, kind, help, v) in rows {
        page.single(name, kind, help, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_9999");
    }

    /// Every metric the Grafana dashboard in configs/ queries is one the page declares.
    #[test]
    fn the_dashboard_queries_metrics_that_exist() {
        let page = render(&[], &CoreReport::of_nothing(), &ProcessStats::default());
        let declared: std::collections::HashSet<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let dashboard = include_str!("../../configs/grafana-dashboard.json");
        let json: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard is JSON");
        let mut queried = 0;
        for panel in json["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let mut rest = expr;
                while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
                    rest = &rest[at..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    let word = &rest[..end];
                    if word.starts_with("gregor_") || word.starts_with("process_") {
                        let family = word.strip_suffix("_bucket").unwrap_or(word);
                        assert!(
                            declared.contains(family),
                            "{} queries {word}",
                            panel["title"]
                        );
                        queried += 1;
                    }
                    rest = &rest[end..];
                }
            }
        }
        assert!(queried > 20, "{queried} metric references");
    }

    #[test]
    fn process_stats_come_from_proc() {
        let p = ProcessStats::read();
        assert!(p.resident_bytes > 0);
        assert!(p.open_fds > 0);
        assert!(p.threads >= 1);
        assert!(p.start_time_seconds > 1.0e9, "{p:?}");
    }

    #[test]
    fn lag_is_measured_to_the_high_watermark_of_a_local_replica() {
        let tp = TopicPartition::new("t", 0);
        let shard = ShardReport {
            shard: 0,
            sample: Sample::default(),
            partitions: vec![PartitionReport {
                tp: tp.clone(),
                size_bytes: 100,
                segments: 1,
                log_start_offset: 0,
                log_end_offset: 12,
                high_watermark: 10,
            }],
            led: vec![(tp, 1, 3)],
            groups: vec![GroupReport {
                id: "g".into(),
                state: "Stable",
                generation: 4,
                members: 2,
                offsets: vec![("t".into(), 0, 7), ("elsewhere".into(), 0, 5)],
            }],
            cache_held_bytes: 0,
            cache_budget_bytes: 1,
            request_bytes_held: 0,
            outbox_jobs: 0,
            serving: true,
            took: std::time::Duration::from_micros(20),
        };
        let core = CoreReport {
            sample: Sample::default(),
            position: None,
            leader: Some(1),
            node_id: 1,
            topics: 1,
            partitions: 1,
            offline_partitions: 0,
            live_brokers: 1,
            brokers: 1,
        };
        let text = render(&[shard], &core, &ProcessStats::default());
        assert!(
            text.contains("gregor_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 3\n")
        );
        assert!(!text.contains("gregor_consumer_group_lag{group=\"g\",topic=\"elsewhere\""));
        assert!(text.contains("gregor_under_replicated_partitions 1\n"));
        assert!(text.contains("gregor_consumer_group_generation{group=\"g\"} 4\n"));
        assert!(text.contains("gregor_consumer_groups{state=\"Stable\"} 1\n"));
        assert!(text.contains("gregor_shard_serving{shard=\"0\"} 1\n"));
    }
}
