//! `gregor cluster status`: the brokers (fenced or not) and the metadata quorum (its leader,
//! epoch, high watermark, and each voter's log end and lag), as
//! `kafka-metadata-quorum.sh describe --status --replication` and `kafka-broker-api-versions`
//! show them.

use std::io::Write;

use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest};

use super::BrokerArgs;
use crate::client::error_name;

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ClusterCommand {
    /// Brokers (fenced or not), the quorum leader, and every voter's log end and lag.
    Status {
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Status { broker } => status(&broker),
    }
}

fn status(broker: &super::BrokerArgs) -> anyhow::Result<()> {
    let mut client = broker.connect(super::CLIENT_ID)?;
    let cluster =
        client.send(&DescribeClusterRequest::default().with_include_fenced_brokers(true))?;
    if cluster.error_code != 0 {
        anyhow::bail!("DescribeCluster: {}", error_name(cluster.error_code));
    }
    let quorum = client.send(&DescribeQuorumRequest::default())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ClusterId:       {}", cluster.cluster_id)?;
    writeln!(out, "ControllerId:    {}", cluster.controller_id.0)?;
    let part = quorum.topics.first().and_then(|t| t.partitions.first());
    if let Some(p) = part {
        let voters: Vec<String> = p
            .current_voters
            .iter()
            .map(|v| v.replica_id.0.to_string())
            .collect();
        writeln!(out, "LeaderId:        {}", p.leader_id.0)?;
        writeln!(out, "LeaderEpoch:     {}", p.leader_epoch)?;
        writeln!(out, "HighWatermark:   {}", p.high_watermark)?;
        writeln!(out, "CurrentVoters:   [{}]", voters.join(","))?;
    }
    writeln!(out)?;
    writeln!(out, "{:<8}{:<24}{:<10}", "NodeId", "Endpoint", "Status")?;
    let mut brokers = cluster.brokers.clone();
    brokers.sort_by_key(|b| b.broker_id.0);
    for b in &brokers {
        let state = if b.is_fenced { "fenced" } else { "unfenced" };
        let endpoint = format!("{}:{}", b.host, b.port);
        writeln!(out, "{:<8}{endpoint:<24}{state:<10}", b.broker_id.0)?;
    }
    if let Some(p) = part {
        writeln!(out)?;
        writeln!(
            out,
            "{:<8}{:<14}{:<8}{:<10}",
            "NodeId", "LogEndOffset", "Lag", "Status"
        )?;
        for v in &p.current_voters {
            let role = if v.replica_id == p.leader_id {
                "Leader"
            } else {
                "Follower"
            };
            let (end, lag) = if v.log_end_offset < 0 {
                ("unknown".to_string(), "-".to_string())
            } else {
                let lag = (p.high_watermark - v.log_end_offset).max(0);
                (v.log_end_offset.to_string(), lag.to_string())
            };
            writeln!(out, "{:<8}{end:<14}{lag:<8}{role:<10}", v.replica_id.0)?;
        }
    }
    Ok(())
}
