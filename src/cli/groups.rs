//! `gregor groups ...`: consumer group administration over FindCoordinator, ListGroups,
//! DescribeGroups, DeleteGroups, OffsetFetch, OffsetCommit and ListOffsets. Output and rules
//! follow kafka-consumer-groups.sh: describe shows committed offset, log end offset and lag per
//! partition with the member that owns it; reset-offsets only touches an inactive group and
//! only writes with --execute.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::consumer_group_describe_response;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Decodable;

use super::cluster::Cluster;
use super::BrokerArgs;
use crate::client::groups::{CommittedRow, CoordinatorAddr};
use crate::client::ops::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use crate::client::Client;

/// Highest ConsumerProtocol{Assignment,Subscription} version kafka-protocol decodes; newer ones
/// only append fields, so they are read as this one (Kafka's own rule).
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;
/// What the tables print for an unknown value.
const NONE: &str = "-";

#[derive(clap::Args, Debug)]
pub struct GroupsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(subcommand)]
    cmd: GroupsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum GroupsCommand {
    /// List consumer group ids, one per line (with --state, a GROUP STATE table).
    List {
        /// Also show each group's state.
        #[arg(long)]
        state: bool,
    },
    /// Show a group's state, members, and per partition the committed offset, log end
    /// offset, lag and owning member.
    Describe {
        #[arg(long)]
        group: String,
    },
    /// Delete an empty group and its committed offsets.
    Delete {
        #[arg(long)]
        group: String,
    },
    /// Plan (and with --execute, commit) new offsets for an inactive group.
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("scenario").required(true).args(
    ["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"]
)))]
#[command(group(clap::ArgGroup::new("target").required(true).args(["topics", "all_topics"])))]
struct ResetArgs {
    #[arg(long)]
    group: String,
    /// Topic, optionally with partitions: `t` or `t:0,2` (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:P,P]", value_parser = parse_topic_spec)]
    topics: Vec<TopicSpec>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// Reset to the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// Reset to this offset (clamped to the partition's earliest..=latest).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// Reset to the first offset at or after this time: `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm]`
    /// (UTC when no zone is given).
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime_ms)]
    to_datetime: Option<i64>,
    /// Move the committed offset by N (negative moves back), clamped to the log.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Only print the plan (the default).
    #[arg(long)]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long, conflicts_with = "dry_run")]
    execute: bool,
}

/// A `--topic` argument: a topic and, optionally, some of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicSpec {
    topic: String,
    partitions: Option<Vec<i32>>,
}

/// Where reset-offsets moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Earliest,
    Latest,
    Offset(i64),
    Datetime(i64),
    Shift(i64),
}

impl ResetArgs {
    fn scenario(&self) -> Scenario {
        match (self.to_offset, self.to_datetime, self.shift_by) {
            (Some(o), _, _) => Scenario::Offset(o),
            (_, Some(t), _) => Scenario::Datetime(t),
            (_, _, Some(n)) => Scenario::Shift(n),
            _ if self.to_latest => Scenario::Latest,
            _ => Scenario::Earliest,
        }
    }
}

pub fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.broker)?;
    match args.cmd {
        GroupsCommand::List { state } => list(&mut cluster, state),
        GroupsCommand::Describe { group } => describe(&mut cluster, &group),
        GroupsCommand::Delete { group } => {
            let (mut coord, _) = coordinator(&mut cluster, &group)?;
            coord
                .delete_group(&group)
                .with_context(|| format!("Deletion of consumer group '{group}' failed"))?;
            println!("Deletion of requested consumer groups ('{group}') was successful.");
            Ok(())
        }
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&mut cluster, &reset),
    }
}

/// A connection to `group`'s coordinator.
fn coordinator(cluster: &mut Cluster, group: &str) -> anyhow::Result<(Client, CoordinatorAddr)> {
    let addr = cluster.bootstrap()?.find_coordinator(group)?;
    let client = cluster
        .connect_to(&addr.addr())
        .with_context(|| format!("connecting to the coordinator of {group}"))?;
    Ok((client, addr))
}

/// Groups of every broker in the cluster (each broker lists the groups it coordinates).
fn list(cluster: &mut Cluster, with_state: bool) -> anyhow::Result<()> {
    let brokers = cluster.bootstrap()?.metadata(Some(&[]))?.brokers;
    let mut groups = BTreeMap::new();
    for b in &brokers {
        let addr = format!("{}:{}", b.host.as_str(), b.port);
        let bootstrap = cluster.bootstrap()?;
        let listed = if addr == bootstrap.addr() || brokers.len() == 1 {
            bootstrap.list_groups()?
        } else {
            cluster.connect_to(&addr)?.list_groups()?
        };
        for g in listed {
            groups.insert(g.group_id, g.state);
        }
    }
    let mut out = std::io::stdout().lock();
    if with_state {
        let rows: Vec<Vec<String>> = groups.into_iter().map(|(g, s)| vec![g, s]).collect();
        write!(out, "{}", format_table(&["GROUP", "STATE"], &rows))?;
    } else {
        for g in groups.keys() {
            writeln!(out, "{g}")?;
        }
    }
    Ok(())
}

/// A member as describe shows it, with its assignment decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberView {
    member_id: String,
    client_id: String,
    host: String,
    /// (topic, partition) it owns.
    assigned: Vec<(String, i32)>,
}

fn member_views(g: &DescribedGroup) -> Vec<MemberView> {
    g.members
        .iter()
        .map(|m| MemberView {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assigned: decode_assignment(&m.member_assignment),
        })
        .collect()
}

/// Reads the embedded version, then the body at that version (capped at what we know).
fn decode_versioned<T: Decodable>(bytes: &Bytes) -> Option<T> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16().clamp(0, CONSUMER_PROTOCOL_VERSION_MAX);
    T::decode(&mut b, version).ok()
}

/// (topic, partition) pairs of a consumer-protocol assignment; empty if it is not one.
fn decode_assignment(bytes: &Bytes) -> Vec<(String, i32)> {
    let Some(a) = decode_versioned::<ConsumerProtocolAssignment>(bytes) else {
        return Vec::new();
    };
    let mut out: Vec<(String, i32)> = a
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect();
    out.sort();
    out
}

/// Topics of a consumer-protocol subscription; empty if it is not one.
fn decode_subscription(bytes: &Bytes) -> Vec<String> {
    decode_versioned::<ConsumerProtocolSubscription>(bytes)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

fn describe(cluster: &mut Cluster, group: &str) -> anyhow::Result<()> {
    let (mut coord, addr) = coordinator(cluster, group)?;
    // A group of the consumer protocol (KIP-848) is described by ConsumerGroupDescribe; a
    // broker without that API, or a classic group, falls through to DescribeGroups.
    if let Ok(Some(g)) = coord.describe_consumer_group(group) {
        return describe_consumer_group(cluster, &mut coord, &addr, group, &g);
    }
    let g = coord.describe_group(group)?;
    let committed = coord.committed_offsets(group)?;
    let state = g.group_state.to_string();
    if state == "Dead" && committed.is_empty() {
        bail!("Consumer group '{group}' does not exist.");
    }
    let members = member_views(&g);
    let mut topics: BTreeSet<String> = committed.iter().map(|(t, _, _)| t.clone()).collect();
    topics.extend(
        members
            .iter()
            .flat_map(|m| m.assigned.iter().map(|(t, _)| t.clone())),
    );
    let log_end = log_ends(cluster, &topics);
    let subscribed: BTreeSet<String> = g
        .members
        .iter()
        .flat_map(|m| decode_subscription(&m.member_metadata))
        .collect();
    let mut out = std::io::stdout().lock();
    let summary = vec![
        group.to_string(),
        format!("{} ({})", addr.addr(), addr.node_id),
        or_none(g.protocol_data.as_str()),
        state.clone(),
        members.len().to_string(),
    ];
    let headers = [
        "GROUP",
        "COORDINATOR (ID)",
        "ASSIGNMENT-STRATEGY",
        "STATE",
        "#MEMBERS",
    ];
    writeln!(out, "{}", format_table(&headers, &[summary]))?;
    if !subscribed.is_empty() {
        let topics: Vec<String> = subscribed.into_iter().collect();
        writeln!(out, "Subscribed topics: {}\n", topics.join(","))?;
    }
    if members.is_empty() {
        writeln!(out, "Consumer group '{group}' has no active members.\n")?;
    }
    let rows = describe_rows(group, &members, &committed, &log_end);
    write!(out, "{}", format_table(&DESCRIBE_HEADERS, &rows))?;
    Ok(())
}

/// Log end offsets of `topics`, by (topic, partition); a topic without them is warned about.
fn log_ends(cluster: &mut Cluster, topics: &BTreeSet<String>) -> BTreeMap<(String, i32), i64> {
    let mut log_end = BTreeMap::new();
    for t in topics {
        let ends = match offsets_of(cluster, t, None, LATEST_TIMESTAMP) {
            Ok(ends) => ends,
            Err(e) => {
                eprintln!("warning: no log end offsets for topic {t}: {e:#}");
                continue;
            }
        };
        log_end.extend(ends.into_iter().map(|(p, o)| ((t.clone(), p), o)));
    }
    log_end
}

/// "topic:p,p;topic:p" for an assignment as ConsumerGroupDescribe gives it ("-" when empty).
fn assignment_text(a: &consumer_group_describe_response::Assignment) -> String {
    let mut parts: Vec<(String, Vec<i32>)> = a
        .topic_partitions
        .iter()
        .map(|t| {
            let mut ps = t.partitions.clone();
            ps.sort_unstable();
            (t.topic_name.to_string(), ps)
        })
        .collect();
    parts.sort();
    if parts.is_empty() {
        return NONE.to_string();
    }
    parts
        .iter()
        .map(|(t, ps)| {
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            format!("{t}:{}", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// describe of a consumer-protocol group: the summary with its epochs, the offsets table as
/// for classic groups (owners by current assignment), and each member's epoch with its
/// current and target assignment (kafka-consumer-groups.sh --members --verbose in Kafka 4).
fn describe_consumer_group(
    cluster: &mut Cluster,
    coord: &mut Client,
    addr: &CoordinatorAddr,
    group: &str,
    g: &consumer_group_describe_response::DescribedGroup,
) -> anyhow::Result<()> {
    let committed = coord.committed_offsets(group)?;
    let members: Vec<MemberView> = g
        .members
        .iter()
        .map(|m| {
            let mut assigned: Vec<(String, i32)> = m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic_name.to_string(), *p)))
                .collect();
            assigned.sort();
            MemberView {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assigned,
            }
        })
        .collect();
    let mut topics: BTreeSet<String> = committed.iter().map(|(t, _, _)| t.clone()).collect();
    topics.extend(
        members
            .iter()
            .flat_map(|m| m.assigned.iter().map(|(t, _)| t.clone())),
    );
    let log_end = log_ends(cluster, &topics);
    let mut out = std::io::stdout().lock();
    let summary = vec![
        group.to_string(),
        format!("{} ({})", addr.addr(), addr.node_id),
        or_none(g.assignor_name.as_str()),
        g.group_state.to_string(),
        g.group_epoch.to_string(),
        g.assignment_epoch.to_string(),
        members.len().to_string(),
    ];
    let headers = [
        "GROUP",
        "COORDINATOR (ID)",
        "ASSIGNMENT-STRATEGY",
        "STATE",
        "GROUP-EPOCH",
        "TARGET-ASSIGNMENT-EPOCH",
        "#MEMBERS",
    ];
    writeln!(out, "{}", format_table(&headers, &[summary]))?;
    if members.is_empty() {
        writeln!(out, "Consumer group '{group}' has no active members.\n")?;
    }
    let rows = describe_rows(group, &members, &committed, &log_end);
    writeln!(out, "{}", format_table(&DESCRIBE_HEADERS, &rows))?;
    if !g.members.is_empty() {
        let rows: Vec<Vec<String>> = g
            .members
            .iter()
            .map(|m| {
                let count: usize = m
                    .assignment
                    .topic_partitions
                    .iter()
                    .map(|t| t.partitions.len())
                    .sum();
                vec![
                    group.to_string(),
                    m.member_id.to_string(),
                    m.client_host.to_string(),
                    m.client_id.to_string(),
                    count.to_string(),
                    m.member_epoch.to_string(),
                    assignment_text(&m.assignment),
                    g.assignment_epoch.to_string(),
                    assignment_text(&m.target_assignment),
                ]
            })
            .collect();
        write!(out, "{}", format_table(&MEMBER_HEADERS, &rows))?;
    }
    Ok(())
}

const MEMBER_HEADERS: [&str; 9] = [
    "GROUP",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
    "#PARTITIONS",
    "CURRENT-EPOCH",
    "CURRENT-ASSIGNMENT",
    "TARGET-EPOCH",
    "TARGET-ASSIGNMENT",
];

const DESCRIBE_HEADERS: [&str; 9] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];

fn or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_string()
    } else {
        s.to_string()
    }
}

/// One row per partition that is assigned or has a committed offset (sorted by topic and
/// partition), then one per member that owns nothing.
fn describe_rows(
    group: &str,
    members: &[MemberView],
    committed: &[CommittedRow],
    log_end: &BTreeMap<(String, i32), i64>,
) -> Vec<Vec<String>> {
    let mut partitions: BTreeMap<(String, i32), Option<&MemberView>> = BTreeMap::new();
    for (t, p, _) in committed {
        partitions.insert((t.clone(), *p), None);
    }
    for m in members {
        for tp in &m.assigned {
            partitions.insert(tp.clone(), Some(m));
        }
    }
    let mut rows = Vec::new();
    for ((t, p), owner) in partitions {
        let current = committed
            .iter()
            .find(|(ct, cp, o)| *ct == t && *cp == p && *o >= 0)
            .map(|(_, _, o)| *o);
        let end = log_end.get(&(t.clone(), p)).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => NONE.to_string(),
        };
        let show = |v: Option<i64>| v.map_or(NONE.to_string(), |v| v.to_string());
        let (id, host, client) = owner.map_or((NONE.into(), NONE.into(), NONE.into()), |m| {
            (m.member_id.clone(), m.host.clone(), m.client_id.clone())
        });
        rows.push(vec![
            group.to_string(),
            t,
            p.to_string(),
            show(current),
            show(end),
            lag,
            id,
            host,
            client,
        ]);
    }
    for m in members.iter().filter(|m| m.assigned.is_empty()) {
        let mut row = vec![group.to_string()];
        row.extend(std::iter::repeat_n(NONE.to_string(), 5));
        row.extend([m.member_id.clone(), m.host.clone(), m.client_id.clone()]);
        rows.push(row);
    }
    rows
}

/// Left-aligned columns, each as wide as its widest cell, one space apart; the last column is
/// not padded (kafka-consumer-groups.sh's layout).
fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$} "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// ListOffsets at `timestamp` for the given (or all) partitions of `topic`, asked of each
/// partition's leader. Returns (partition, offset), sorted by partition.
fn offsets_of(
    cluster: &mut Cluster,
    topic: &str,
    partitions: Option<&[i32]>,
    timestamp: i64,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let layout = cluster.topic(topic, false)?;
    let wanted: Vec<i32> = match partitions {
        Some(ps) => ps.to_vec(),
        None => layout.partitions.iter().map(|(p, _)| *p).collect(),
    };
    let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
    for p in wanted {
        by_leader
            .entry(layout.leader_of(p)?)
            .or_default()
            .push((p, timestamp));
    }
    let mut out = Vec::new();
    for (leader, queries) in by_leader {
        out.extend(cluster.leader(leader)?.list_offsets(topic, &queries, 0)?);
    }
    out.sort_unstable();
    Ok(out)
}

fn reset_offsets(cluster: &mut Cluster, args: &ResetArgs) -> anyhow::Result<()> {
    let group = &args.group;
    let (mut coord, _) = coordinator(cluster, group)?;
    let state = coord.describe_group(group)?.group_state.to_string();
    if state != "Empty" && state != "Dead" {
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {state}."
        );
    }
    let committed = coord.committed_offsets(group)?;
    let targets: Vec<TopicSpec> = if args.all_topics {
        let topics: BTreeSet<&String> = committed.iter().map(|(t, _, _)| t).collect();
        topics
            .into_iter()
            .map(|t| TopicSpec {
                topic: t.clone(),
                partitions: None,
            })
            .collect()
    } else {
        args.topics.clone()
    };
    let scenario = args.scenario();
    let mut plan: Vec<CommittedRow> = Vec::new();
    for spec in &targets {
        plan.extend(plan_topic(cluster, spec, scenario, &committed)?);
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(t, p, o)| vec![group.clone(), t.clone(), p.to_string(), o.to_string()])
        .collect();
    let mut out = std::io::stdout().lock();
    if !args.execute && !args.dry_run {
        eprintln!(
            "WARN: No action will be performed as the --execute option is missing. In a future \
             major release, the default behavior of this command will be to prompt the user \
             before executing the reset rather than doing a dry run. You should add the \
             --dry-run option explicitly if you are scripting this command and want to keep the \
             current default behavior without prompting."
        );
    }
    write!(
        out,
        "{}",
        format_table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows)
    )?;
    if args.execute && !plan.is_empty() {
        coord
            .commit_offsets(group, -1, "", &plan)
            .with_context(|| format!("committing new offsets of {group}"))?;
    }
    Ok(())
}

/// New offsets for one `--topic` argument.
fn plan_topic(
    cluster: &mut Cluster,
    spec: &TopicSpec,
    scenario: Scenario,
    committed: &[CommittedRow],
) -> anyhow::Result<Vec<CommittedRow>> {
    let t = spec.topic.as_str();
    let layout = cluster.topic(t, false)?;
    let partitions: Vec<i32> = match &spec.partitions {
        Some(ps) => {
            for p in ps {
                layout.leader_of(*p)?;
            }
            ps.clone()
        }
        None => layout.partitions.iter().map(|(p, _)| *p).collect(),
    };
    let earliest = offsets_of(cluster, t, Some(&partitions), EARLIEST_TIMESTAMP)?;
    let latest = offsets_of(cluster, t, Some(&partitions), LATEST_TIMESTAMP)?;
    let by_time = match scenario {
        Scenario::Datetime(ms) => Some(offsets_of(cluster, t, Some(&partitions), ms)?),
        _ => None,
    };
    let find = |rows: &[(i32, i64)], p: i32| rows.iter().find(|(q, _)| *q == p).map(|(_, o)| *o);
    let mut out = Vec::new();
    for p in partitions {
        let bounds = (
            find(&earliest, p).ok_or_else(|| anyhow!("no earliest offset for {t}-{p}"))?,
            find(&latest, p).ok_or_else(|| anyhow!("no latest offset for {t}-{p}"))?,
        );
        let current = committed
            .iter()
            .find(|(ct, cp, o)| ct == t && *cp == p && *o >= 0)
            .map(|(_, _, o)| *o);
        let at_time = by_time.as_deref().and_then(|rows| find(rows, p));
        let o = new_offset(scenario, current, bounds, at_time)
            .with_context(|| format!("partition {t}-{p}"))?;
        out.push((t.to_string(), p, o));
    }
    Ok(out)
}

/// The offset a partition is reset to, given its committed offset, its (earliest, latest)
/// offsets and, for a datetime, the offset ListOffsets found for it (-1: after the last
/// record). Explicit offsets and shifts are clamped into the log, as Kafka's tool does.
fn new_offset(
    scenario: Scenario,
    current: Option<i64>,
    (earliest, latest): (i64, i64),
    at_time: Option<i64>,
) -> anyhow::Result<i64> {
    let clamp = |o: i64| o.clamp(earliest, latest.max(earliest));
    Ok(match scenario {
        Scenario::Earliest => earliest,
        Scenario::Latest => latest,
        Scenario::Offset(o) => clamp(o),
        Scenario::Datetime(_) => match at_time {
            Some(o) if o >= 0 => o,
            _ => latest,
        },
        Scenario::Shift(n) => {
            let c = current.ok_or_else(|| {
                anyhow!("cannot shift: the group has no committed offset for this partition")
            })?;
            clamp(c.saturating_add(n))
        }
    })
}

fn parse_topic_spec(s: &str) -> Result<TopicSpec, String> {
    let (topic, parts) = match s.split_once(':') {
        None => (s, None),
        Some((t, ps)) => {
            let parsed: Result<Vec<i32>, _> = ps.split(',').map(|p| p.trim().parse()).collect();
            let parsed = parsed.map_err(|_| format!("bad partition list in {s:?}"))?;
            if parsed.iter().any(|p| *p < 0) {
                return Err(format!("negative partition in {s:?}"));
            }
            (t, Some(parsed))
        }
    };
    if topic.is_empty() {
        return Err(format!("empty topic in {s:?}"));
    }
    Ok(TopicSpec {
        topic: topic.to_string(),
        partitions: parts,
    })
}

/// `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm|±hhmm]` to ms since the epoch; UTC without a zone.
fn parse_datetime_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("bad datetime {s:?}: expected YYYY-MM-DDTHH:mm:SS[.sss][Z|+hh:mm]");
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let num = |x: &str, len: usize| -> Result<i64, String> {
        if x.len() != len || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        x.parse().map_err(|_| bad())
    };
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d[..] else {
        return Err(bad());
    };
    let (y, mo, da) = (num(y, 4)?, num(mo, 2)?, num(da, 2)?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, se] = t[..] else {
        return Err(bad());
    };
    let (h, mi, se) = (num(h, 2)?, num(mi, 2)?, num(se, 2)?);
    let ms = if frac.is_empty() { 0 } else { num(frac, 3)? };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    let offset_min = match zone {
        "" | "Z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits = z[1..].replace(':', "");
            let hh = num(digits.get(..2).ok_or_else(bad)?, 2)?;
            let mm = num(digits.get(2..).ok_or_else(bad)?, 2)?;
            sign * (hh * 60 + mm)
        }
    };
    let days = days_from_civil(y, mo, da);
    let secs = days * 86_400 + h * 3_600 + mi * 60 + se - offset_min * 60;
    Ok(secs * 1_000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use clap::Parser;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: GroupsArgs,
    }

    fn parse(args: &[&str]) -> Result<GroupsArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("groups").chain(args.iter().copied())).map(|c| c.args)
    }

    fn reset(args: &[&str]) -> Result<ResetArgs, clap::Error> {
        let mut all = vec!["reset-offsets"];
        all.extend_from_slice(args);
        match parse(&all)?.cmd {
            GroupsCommand::ResetOffsets(r) => Ok(r),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_commands() {
        let g = parse(&["list", "--bootstrap-server", "h:1"]).unwrap();
        assert_eq!(g.broker.bootstrap_server, "h:1");
        assert!(matches!(g.cmd, GroupsCommand::List { state: false }));
        let g = parse(&["describe", "--group", "g"]).unwrap();
        assert_eq!(g.broker.bootstrap_server, super::super::BOOTSTRAP_DEFAULT);
        assert!(matches!(g.cmd, GroupsCommand::Describe { group } if group == "g"));
        assert!(matches!(
            parse(&["delete", "--group", "g"]).unwrap().cmd,
            GroupsCommand::Delete { .. }
        ));
        assert!(parse(&["describe"]).is_err());
    }

    #[test]
    fn reset_offsets_arguments() {
        let cases: &[(&[&str], Scenario)] = &[
            (&["--to-earliest"], Scenario::Earliest),
            (&["--to-latest"], Scenario::Latest),
            (&["--to-offset", "7"], Scenario::Offset(7)),
            (&["--shift-by", "-3"], Scenario::Shift(-3)),
            (&["--shift-by", "4"], Scenario::Shift(4)),
            (
                &["--to-datetime", "2024-01-01T00:00:00.000"],
                Scenario::Datetime(1_704_067_200_000),
            ),
        ];
        for (extra, want) in cases {
            let mut args = vec!["--group", "g", "--topic", "t:0,2"];
            args.extend_from_slice(extra);
            let r = reset(&args).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
            assert_eq!(r.scenario(), *want, "{extra:?}");
            assert_eq!(r.topics[0].partitions, Some(vec![0, 2]));
            assert!(!r.execute);
        }
        let r = reset(&["--group", "g", "--all-topics", "--to-latest", "--execute"]).unwrap();
        assert!(r.execute && r.all_topics && r.topics.is_empty());
        let bad: &[&[&str]] = &[
            &["--group", "g", "--topic", "t"],
            &["--group", "g", "--to-earliest"],
            &[
                "--group",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--to-latest",
            ],
            &[
                "--group",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--dry-run",
                "--execute",
            ],
            &["--group", "g", "--topic", "t:x", "--to-earliest"],
            &["--group", "g", "--topic", "t", "--to-datetime", "yesterday"],
            &[
                "--group",
                "g",
                "--topic",
                "t",
                "--all-topics",
                "--to-earliest",
            ],
        ];
        for args in bad {
            assert!(reset(args).is_err(), "{args:?} should not parse");
        }
    }

    #[test]
    fn datetimes_parse_with_and_without_zones() {
        let cases = [
            ("1970-01-01T00:00:00", 0),
            ("1970-01-01T00:00:01.5", -1),
            ("1970-01-01T00:00:01.500", 1_500),
            ("2024-01-01T00:00:00.000", 1_704_067_200_000),
            ("2024-01-01T00:00:00.000Z", 1_704_067_200_000),
            ("2024-01-01T02:00:00.000+02:00", 1_704_067_200_000),
            ("2023-12-31T22:00:00-0200", 1_704_067_200_000),
            ("2024-02-29T12:34:56.789", 1_709_210_096_789),
            ("2024-13-01T00:00:00", -1),
            ("2024-01-01 00:00:00", -1),
        ];
        for (s, want) in cases {
            let got = parse_datetime_ms(s);
            if want < 0 {
                assert!(got.is_err(), "{s} should not parse: {got:?}");
            } else {
                assert_eq!(got, Ok(want), "{s}");
            }
        }
    }

    #[test]
    fn new_offsets_follow_kafka_tool_rules() {
        let b = (10, 100);
        let cases = [
            (Scenario::Earliest, None, None, Some(10)),
            (Scenario::Latest, Some(50), None, Some(100)),
            (Scenario::Offset(5), None, None, Some(10)),
            (Scenario::Offset(500), None, None, Some(100)),
            (Scenario::Offset(42), None, None, Some(42)),
            (Scenario::Shift(-5), Some(50), None, Some(45)),
            (Scenario::Shift(-90), Some(50), None, Some(10)),
            (Scenario::Shift(90), Some(50), None, Some(100)),
            (Scenario::Shift(1), None, None, None),
            (Scenario::Datetime(0), None, Some(33), Some(33)),
            (Scenario::Datetime(0), None, Some(-1), Some(100)),
        ];
        for (s, current, at_time, want) in cases {
            let got = new_offset(s, current, b, at_time).ok();
            assert_eq!(got, want, "{s:?} current {current:?} at {at_time:?}");
        }
    }

    fn assignment(parts: &[(&str, &[i32])], version: i16) -> Bytes {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
            parts
                .iter()
                .map(|(t, ps)| {
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        );
        let mut b = BytesMut::new();
        b.extend_from_slice(&version.to_be_bytes());
        a.encode(&mut b, version).unwrap();
        b.freeze()
    }

    #[test]
    fn assignments_and_subscriptions_decode() {
        let a = assignment(&[("b", &[1]), ("a", &[2, 0])], 1);
        let want = vec![("a".to_string(), 0), ("a".into(), 2), ("b".into(), 1)];
        assert_eq!(decode_assignment(&a), want);
        assert_eq!(decode_assignment(&assignment(&[("a", &[0])], 3)).len(), 1);
        assert!(decode_assignment(&Bytes::new()).is_empty());
        assert!(decode_assignment(&Bytes::from_static(b"\x00\x01\xff")).is_empty());
        let s = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t1")]);
        let mut b = BytesMut::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        s.encode(&mut b, 0).unwrap();
        assert_eq!(decode_subscription(&b.freeze()), vec!["t1".to_string()]);
    }

    #[test]
    fn describe_rows_show_owner_offsets_and_lag() {
        let members = vec![
            MemberView {
                member_id: "m1".into(),
                client_id: "c1".into(),
                host: "/127.0.0.1".into(),
                assigned: vec![("t".into(), 0), ("t".into(), 1)],
            },
            MemberView {
                member_id: "m2".into(),
                client_id: "c2".into(),
                host: "/127.0.0.1".into(),
                assigned: vec![],
            },
        ];
        let committed = vec![("t".to_string(), 0, 7), ("t".into(), 2, 3)];
        let log_end: BTreeMap<(String, i32), i64> = [
            (("t".into(), 0), 10),
            (("t".into(), 1), 5),
            (("t".into(), 2), 3),
        ]
        .into();
        let rows = describe_rows("g", &members, &committed, &log_end);
        let text = format_table(&DESCRIBE_HEADERS, &rows);
        let want = "\
GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST       CLIENT-ID
g     t     0         7              10             3   m1          /127.0.0.1 c1
g     t     1         -              5              -   m1          /127.0.0.1 c1
g     t     2         3              3              0   -           -          -
g     -     -         -              -              -   m2          /127.0.0.1 c2
";
        assert_eq!(text, want);
    }

    #[test]
    fn topic_specs_parse() {
        assert_eq!(
            parse_topic_spec("t").unwrap(),
            TopicSpec {
                topic: "t".into(),
                partitions: None
            }
        );
        assert_eq!(
            parse_topic_spec("t:1, 3").unwrap().partitions,
            Some(vec![1, 3])
        );
        for bad in [":1", "t:", "t:-1", "t:a"] {
            assert!(parse_topic_spec(bad).is_err(), "{bad}");
        }
    }
}
