//! Topic set-up through the project's blocking client: create a fresh topic, wait until every
//! partition has a leader, list offsets, delete it afterwards. Works against brokers that do
//! not auto-create topics (tansu) as well as those that do.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gregor::client::ops::{NewTopic, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use gregor::client::Client;
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

/// How long a new topic may take to get leaders for every partition.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// One partition and the address of its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLeader {
    pub partition: i32,
    pub leader: String,
}

/// Where a topic's partitions live, as the driver's workers need it.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    pub name: String,
    /// Nil when the broker does not report ids (Fetch below v13 then uses the name).
    pub id: Uuid,
    pub partitions: Vec<PartitionLeader>,
}

impl TopicLayout {
    /// Distinct leader addresses, in first-seen order.
    pub fn leaders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.partitions {
            if !out.contains(&p.leader) {
                out.push(p.leader.clone());
            }
        }
        out
    }
}

/// API versions the data connections use, picked once on the admin connection.
#[derive(Debug, Clone, Copy)]
pub struct DataVersions {
    pub produce: i16,
    pub fetch: i16,
}

impl DataVersions {
    pub fn of(admin: &Client) -> Result<DataVersions> {
        Ok(DataVersions {
            produce: admin.version_for(ApiKey::Produce)?,
            fetch: admin.version_for(ApiKey::Fetch)?,
        })
    }
}

/// Creates `name` with these topic configs (an existing topic of that name is an error: runs
/// want fresh topics).
pub fn create(
    admin: &mut Client,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &[(String, String)],
) -> Result<TopicLayout> {
    let topic = NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor: rf,
        configs: configs.to_vec(),
    };
    if let Err(e) = admin.create_topic(&topic, ADMIN_TIMEOUT_MS) {
        if e.kafka_code() == Some(TOPIC_ALREADY_EXISTS) {
            bail!("topic {name} already exists; the driver wants a fresh topic per run");
        }
        return Err(e).with_context(|| format!("create topic {name}"));
    }
    wait_for_leaders(admin, name, partitions)
}

fn wait_for_leaders(admin: &mut Client, name: &str, partitions: i32) -> Result<TopicLayout> {
    let deadline = Instant::now() + LEADERS_TIMEOUT;
    loop {
        match layout(admin, name) {
            Ok(l) if l.partitions.len() == partitions as usize => return Ok(l),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(l) => bail!(
                "topic {name}: {} of {partitions} partitions have leaders",
                l.partitions.len()
            ),
            Err(e) => return Err(e),
        }
    }
}

/// The topic's partitions that have a known leader.
pub fn layout(admin: &mut Client, name: &str) -> Result<TopicLayout> {
    let resp = admin.metadata(Some(&[name]))?;
    let brokers: Vec<(i32, String)> = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let t = resp
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(name))
        .with_context(|| format!("no metadata for {name}"))?;
    if t.error_code != 0 {
        bail!(
            "metadata of {name}: {}",
            gregor::client::error_name(t.error_code)
        );
    }
    let mut parts: Vec<PartitionLeader> = t
        .partitions
        .iter()
        .filter_map(|p| {
            let leader = brokers.iter().find(|(id, _)| *id == p.leader_id.0)?;
            Some(PartitionLeader {
                partition: p.partition_index,
                leader: leader.1.clone(),
            })
        })
        .collect();
    parts.sort_by_key(|p| p.partition);
    Ok(TopicLayout {
        name: name.to_string(),
        id: t.topic_id,
        partitions: parts,
    })
}

/// Earliest or latest offset of every partition, in layout order.
pub fn offsets(admin: &mut Client, topic: &TopicLayout, latest: bool) -> Result<Vec<i64>> {
    let ts = if latest {
        LATEST_TIMESTAMP
    } else {
        EARLIEST_TIMESTAMP
    };
    // Each partition's leader answers for it: one connection per leader (the bootstrap one
    // when it leads).
    let mut found = Vec::new();
    for leader in topic.leaders() {
        let queries: Vec<(i32, i64)> = topic
            .partitions
            .iter()
            .filter(|p| p.leader == leader)
            .map(|p| (p.partition, ts))
            .collect();
        let mut other = None;
        let deadline = Instant::now() + LEADERS_TIMEOUT;
        let answer = loop {
            let client = if admin.addr() == leader {
                &mut *admin
            } else {
                if other.is_none() {
                    other = Some(
                        Client::connect(&leader, "gregor-bench")
                            .with_context(|| format!("connect to leader {leader}"))?,
                    );
                }
                other.as_mut().expect("connected above")
            };
            match client.list_offsets(&topic.name, &queries, 0) {
                Ok(a) => break a,
                // A new topic's leader may learn of it a moment after the bootstrap broker.
                Err(e)
                    if Instant::now() < deadline
                        && matches!(e.kafka_code(), Some(3) | Some(5) | Some(6)) =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        };
        found.extend(answer);
    }
    topic
        .partitions
        .iter()
        .map(|p| {
            found
                .iter()
                .find(|(q, _)| *q == p.partition)
                .map(|(_, o)| *o)
                .with_context(|| format!("no offset for {}-{}", topic.name, p.partition))
        })
        .collect()
}

/// Deletes the topic; a failure is reported to the caller, who only warns.
pub fn delete(admin: &mut Client, name: &str) -> Result<()> {
    admin
        .delete_topic(name, ADMIN_TIMEOUT_MS)
        .with_context(|| format!("delete topic {name}"))
}
