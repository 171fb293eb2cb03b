//! `gregor topics ...`: topic administration over CreateTopics, Metadata, DescribeConfigs,
//! DeleteTopics and CreatePartitions. Output follows kafka-topics.sh.

use std::io::Write;

use anyhow::Context;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;

use super::cluster::Cluster;
use super::BrokerArgs;
use crate::client::ops::{NewTopic, CONFIG_SOURCE_TOPIC};
use crate::client::{error_name, Client, ClientError};

/// How long the broker may take to create or delete a topic.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

#[derive(clap::Args, Debug)]
pub struct TopicsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(subcommand)]
    cmd: TopicsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// Partition count; the broker's default when omitted.
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor; the broker's default when omitted.
        #[arg(long)]
        replication_factor: Option<i16>,
        /// Topic config override `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topic names, one per line.
    List,
    /// Show partitions (leader, replicas, ISR) and config overrides of one or all topics.
    Describe {
        /// Only this topic (default: all topics).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        #[arg(long)]
        topic: String,
    },
    /// Grow a topic to a total of N partitions.
    AlterPartitions {
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// New total partition count (must exceed the current one).
        #[arg(long)]
        partitions: i32,
    },
}

pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.broker)?;
    let client = cluster.bootstrap()?;
    match args.cmd {
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let new = NewTopic {
                name: topic.clone(),
                partitions: partitions.unwrap_or(-1),
                replication_factor: replication_factor.unwrap_or(-1),
                configs: super::parse_key_values(&configs)?,
            };
            client.create_topic(&new, ADMIN_TIMEOUT_MS)?;
            println!("Created topic {topic}.");
        }
        TopicsCommand::List => list(client)?,
        TopicsCommand::Describe { topic } => describe(client, topic.as_deref())?,
        TopicsCommand::Delete { topic } => {
            client.delete_topic(&topic, ADMIN_TIMEOUT_MS)?;
            println!("Deleted topic {topic}.");
        }
        TopicsCommand::AlterPartitions { topic, partitions } => {
            client.create_partitions(&topic, partitions, ADMIN_TIMEOUT_MS)?;
            println!("Topic {topic} now has {partitions} partitions.");
        }
    }
    Ok(())
}

fn list(client: &mut Client) -> anyhow::Result<()> {
    let resp = client.metadata(None)?;
    let mut names: Vec<String> = resp
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    let mut out = std::io::stdout().lock();
    for n in names {
        writeln!(out, "{n}")?;
    }
    Ok(())
}

fn describe(client: &mut Client, topic: Option<&str>) -> anyhow::Result<()> {
    let topics = match topic {
        Some(t) => vec![client.topic_metadata(t)?],
        None => {
            let mut all = client.metadata(None)?.topics;
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all
        }
    };
    let mut out = std::io::stdout().lock();
    for t in &topics {
        let name = t.name.as_deref().map(|n| n.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            writeln!(out, "Topic: {name}\tError: {}", error_name(t.error_code))?;
            continue;
        }
        let overrides = config_overrides(client, &name)?;
        write!(out, "{}", format_topic(t, &overrides))?;
    }
    Ok(())
}

/// `k=v` pairs set on the topic itself; an empty list if the broker lacks DescribeConfigs.
fn config_overrides(client: &mut Client, topic: &str) -> anyhow::Result<Vec<String>> {
    match client.describe_topic_configs(topic) {
        Ok(entries) => Ok(entries
            .into_iter()
            .filter(|e| e.source == CONFIG_SOURCE_TOPIC)
            .map(|e| {
                let value = if e.sensitive {
                    "<sensitive>".to_string()
                } else {
                    e.value.unwrap_or_else(|| "null".to_string())
                };
                format!("{}={value}", e.name)
            })
            .collect()),
        Err(ClientError::ApiNotOffered { .. }) => {
            eprintln!("warning: broker does not offer DescribeConfigs; configs not shown");
            Ok(Vec::new())
        }
        Err(e) => Err(e).with_context(|| format!("describing configs of {topic}")),
    }
}

fn join_ids(ids: &[kafka_protocol::messages::BrokerId]) -> String {
    ids.iter()
        .map(|b| b.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// kafka-topics.sh --describe layout: one topic line, then one line per partition.
fn format_topic(t: &MetadataResponseTopic, overrides: &[String]) -> String {
    let name = t.name.as_deref().map(|n| n.as_str()).unwrap_or("");
    let mut partitions: Vec<_> = t.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    let rf = partitions.first().map_or(0, |p| p.replica_nodes.len());
    let mut s = format!(
        "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}\n",
        t.topic_id,
        partitions.len(),
        overrides.join(",")
    );
    for p in partitions {
        s.push_str(&format!(
            "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
            p.partition_index,
            p.leader_id.0,
            join_ids(&p.replica_nodes),
            join_ids(&p.isr_nodes)
        ));
        if !p.offline_replicas.is_empty() {
            s.push_str(&format!("\tOffline: {}", join_ids(&p.offline_replicas)));
        }
        if p.error_code != 0 {
            s.push_str(&format!("\tError: {}", error_name(p.error_code)));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn describe_output_matches_kafka_topics_layout() {
        let p = |i: i32| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(1))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)])
        };
        let t = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(vec![p(1), p(0).with_error_code(5)]);
        let s = format_topic(&t, &["cleanup.policy=compact".to_string()]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "Topic: t\tTopicId: 00000000-0000-0000-0000-000000000000\tPartitionCount: 2\t\
             ReplicationFactor: 2\tConfigs: cleanup.policy=compact"
        );
        assert_eq!(
            lines[1],
            "\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1\tError: LEADER_NOT_AVAILABLE"
        );
        assert_eq!(
            lines[2],
            "\tTopic: t\tPartition: 1\tLeader: 1\tReplicas: 1,2\tIsr: 1"
        );
    }
}
