//! `gregor transactions`: list, describe, describe-producers, abort and find-hanging, as
//! `kafka-transactions.sh` offers them, with its column layout.

use std::io::Write;

use anyhow::Context;

use super::cluster::Cluster;
use super::BrokerArgs;
use crate::client::transactions::AbortSpec;

#[derive(clap::Args, Debug)]
pub struct TransactionsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TxnCommand {
    /// Every transactional id the brokers coordinate, with its producer id and state.
    List,
    /// One transactional id as its coordinator knows it.
    Describe {
        #[arg(long)]
        transactional_id: String,
    },
    /// The producers with state in a partition (from its leader).
    DescribeProducers {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
    },
    /// Writes an abort marker for a producer's open transaction in one partition (to end a
    /// hanging transaction whose coordinator no longer knows it).
    Abort {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        producer_id: i64,
        #[arg(long)]
        producer_epoch: i16,
        #[arg(long)]
        coordinator_epoch: i32,
    },
    /// Open transactions in a topic's partitions older than the longest transaction timeout
    /// whose coordinator does not have them open: they hold back read_committed consumers.
    FindHanging {
        #[arg(long)]
        topic: String,
        /// Minutes a transaction may run (transaction.max.timeout.ms), 15 by default.
        #[arg(long, default_value_t = 15)]
        max_transaction_timeout: i64,
    },
}

pub fn run(args: TransactionsArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.broker)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        TxnCommand::List => list(&mut cluster, &mut out),
        TxnCommand::Describe { transactional_id } => {
            describe(&mut cluster, &transactional_id, &mut out)
        }
        TxnCommand::DescribeProducers { topic, partition } => {
            describe_producers(&mut cluster, &topic, partition, &mut out)
        }
        TxnCommand::Abort {
            topic,
            partition,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let spec = AbortSpec {
                topic,
                partition,
                producer_id,
                producer_epoch,
                coordinator_epoch,
            };
            let leader = cluster
                .topic(&spec.topic, false)?
                .leader_of(spec.partition)?;
            cluster.leader(leader)?.write_abort_marker(&spec)?;
            Ok(())
        }
        TxnCommand::FindHanging {
            topic,
            max_transaction_timeout,
        } => find_hanging(&mut cluster, &topic, max_transaction_timeout, &mut out),
    }
}

fn list(cluster: &mut Cluster, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<32}{:<14}{:<14}TransactionState",
        "TransactionalId", "Coordinator", "ProducerId"
    )?;
    for node in cluster.broker_ids()? {
        let listed = cluster.leader(node)?.list_transactions(&[], &[], -1)?;
        for t in listed {
            writeln!(
                out,
                "{:<32}{:<14}{:<14}{}",
                t.transactional_id, node, t.producer_id, t.state
            )?;
        }
    }
    Ok(())
}

fn describe(cluster: &mut Cluster, id: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let coordinator = cluster.bootstrap()?.find_txn_coordinator(id)?;
    let t = cluster
        .client_at(&coordinator.addr())
        .with_context(|| format!("connecting to coordinator {}", coordinator.node_id))?
        .describe_transaction(id)?;
    let now = now_ms();
    let duration = if t.transaction_start_time_ms >= 0 {
        (now - t.transaction_start_time_ms).to_string()
    } else {
        "None".to_string()
    };
    let start = if t.transaction_start_time_ms >= 0 {
        t.transaction_start_time_ms.to_string()
    } else {
        "None".to_string()
    };
    let partitions: Vec<String> = t
        .topics
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| format!("{}-{p}", tp.topic.0))
        })
        .collect();
    writeln!(
        out,
        "CoordinatorId\tTransactionalId\tProducerId\tProducerEpoch\tTransactionState\t\
         TransactionTimeoutMs\tCurrentTransactionStartTimeMs\tTransactionDurationMs\tTopicPartitions"
    )?;
    writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        coordinator.node_id,
        id,
        t.producer_id.0,
        t.producer_epoch,
        t.transaction_state,
        t.transaction_timeout_ms,
        start,
        duration,
        partitions.join(",")
    )?;
    Ok(())
}

fn describe_producers(
    cluster: &mut Cluster,
    topic: &str,
    partition: i32,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let leader = cluster.topic(topic, false)?.leader_of(partition)?;
    let producers = cluster
        .leader(leader)?
        .describe_producers(topic, partition)?;
    writeln!(
        out,
        "ProducerId\tProducerEpoch\tLatestCoordinatorEpoch\tLastSequence\tLastTimestamp\t\
         CurrentTransactionStartOffset"
    )?;
    for p in producers {
        let start = if p.current_txn_start_offset >= 0 {
            p.current_txn_start_offset.to_string()
        } else {
            "None".to_string()
        };
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            p.producer_id.0,
            p.producer_epoch,
            p.coordinator_epoch,
            p.last_sequence,
            p.last_timestamp,
            start
        )?;
    }
    Ok(())
}

fn find_hanging(
    cluster: &mut Cluster,
    topic: &str,
    max_timeout_min: i64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let layout = cluster.topic(topic, false)?;
    let now = now_ms();
    let limit_ms = max_timeout_min * 60_000;
    writeln!(
        out,
        "Topic\tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\t\
         LastTimestamp\tDuration(min)"
    )?;
    for (partition, leader) in layout.partitions.clone() {
        let producers = cluster
            .leader(leader)?
            .describe_producers(topic, partition)?;
        for p in producers {
            let open_ms = now - p.last_timestamp;
            if p.current_txn_start_offset < 0 || open_ms <= limit_ms {
                continue;
            }
            if coordinator_has_it_open(cluster, p.producer_id.0)? {
                continue;
            }
            writeln!(
                out,
                "{topic}\t{partition}\t{}\t{}\t{}\t{}\t{}\t{}",
                p.producer_id.0,
                p.producer_epoch,
                p.coordinator_epoch,
                p.current_txn_start_offset,
                p.last_timestamp,
                open_ms / 60_000
            )?;
        }
    }
    Ok(())
}

/// Whether some coordinator has a transaction of `producer_id` open (then it is not hanging:
/// the coordinator will end it).
fn coordinator_has_it_open(cluster: &mut Cluster, producer_id: i64) -> anyhow::Result<bool> {
    let open = ["Ongoing", "PrepareCommit", "PrepareAbort"].map(String::from);
    for node in cluster.broker_ids()? {
        if !cluster
            .leader(node)?
            .list_transactions(&open, &[producer_id], -1)?
            .is_empty()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
