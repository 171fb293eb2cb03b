//! `gregor delete-records`: moves partitions' log start offsets up, like
//! kafka-delete-records.sh (same JSON file, same output), or for one partition from flags.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{anyhow, bail, Context};

use super::cluster::Cluster;
use super::BrokerArgs;

#[derive(clap::Args, Debug)]
pub struct DeleteRecordsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// kafka-delete-records.sh's JSON: `{"partitions":[{"topic":"t","partition":0,"offset":10}],
    /// "version":1}`; offset -1 means the high watermark.
    #[arg(long, conflicts_with_all = ["topic", "partition", "offset"])]
    offset_json_file: Option<std::path::PathBuf>,
    /// One partition instead of a file: its topic ...
    #[arg(long, requires = "offset")]
    topic: Option<String>,
    /// ... partition (default 0) ...
    #[arg(long, default_value_t = 0)]
    partition: i32,
    /// ... and the offset records are deleted before (-1: the high watermark).
    #[arg(long, allow_hyphen_values = true)]
    offset: Option<i64>,
    /// How long the broker may take.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: i32,
}

#[derive(serde::Deserialize)]
struct OffsetFile {
    partitions: Vec<PartitionOffset>,
}

#[derive(serde::Deserialize)]
struct PartitionOffset {
    topic: String,
    partition: i32,
    offset: i64,
}

/// (topic, partition, offset) triples from the arguments.
fn wanted(args: &DeleteRecordsArgs) -> anyhow::Result<Vec<(String, i32, i64)>> {
    if let Some(path) = &args.offset_json_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: OffsetFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not kafka-delete-records JSON", path.display()))?;
        if file.partitions.is_empty() {
            bail!("{} names no partitions", path.display());
        }
        return Ok(file
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition, p.offset))
            .collect());
    }
    match (&args.topic, args.offset) {
        (Some(t), Some(o)) => Ok(vec![(t.clone(), args.partition, o)]),
        _ => bail!("give --offset-json-file FILE, or --topic T [--partition P] --offset O"),
    }
}

pub fn run(args: DeleteRecordsArgs) -> anyhow::Result<()> {
    let wanted = wanted(&args)?;
    let mut cluster = Cluster::connect(&args.broker)?;
    // Grouped by topic and leader: one request per leader and topic.
    let mut by_leader: BTreeMap<(String, i32), Vec<(i32, i64)>> = BTreeMap::new();
    for (topic, partition, offset) in wanted {
        let layout = cluster.topic(&topic, false)?;
        let leader = layout.leader_of(partition)?;
        by_leader
            .entry((topic, leader))
            .or_default()
            .push((partition, offset));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "Executing records delete operation")?;
    let mut lines = Vec::new();
    let mut failed = 0;
    for ((topic, leader), offsets) in by_leader {
        let results = cluster
            .leader(leader)?
            .delete_records(&topic, &offsets, args.timeout_ms)?;
        for (p, r) in results {
            match r {
                Ok(low) => lines.push(format!("partition: {topic}-{p}\tlow_watermark: {low}")),
                Err(e) => {
                    failed += 1;
                    lines.push(format!("partition: {topic}-{p}\terror: {e}"));
                }
            }
        }
    }
    writeln!(out, "Records delete operation completed:")?;
    for l in lines {
        writeln!(out, "{l}")?;
    }
    if failed > 0 {
        return Err(anyhow!("{failed} partition(s) failed"));
    }
    Ok(())
}
