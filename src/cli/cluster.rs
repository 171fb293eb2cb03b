//! Connections of one CLI run: the bootstrap connection plus one per partition leader, found
//! from Metadata. Leaders are reached at the host:port the broker advertises.

use std::collections::HashMap;

use anyhow::{anyhow, Context};
use uuid::Uuid;

use super::BrokerArgs;
use crate::client::{error_name, Client, ClientSecurity};

/// A topic's layout as the tools need it.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    pub name: String,
    pub topic_id: Uuid,
    /// (partition, leader node id), sorted by partition.
    pub partitions: Vec<(i32, i32)>,
}

impl TopicLayout {
    pub fn leader_of(&self, partition: i32) -> anyhow::Result<i32> {
        self.partitions
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, leader)| *leader)
            .ok_or_else(|| {
                anyhow!(
                    "{}: partition {partition} does not exist ({} partitions)",
                    self.name,
                    self.partitions.len()
                )
            })
    }
}

pub struct Cluster {
    bootstrap_addr: String,
    /// TLS and SASL for every connection (from --command-config).
    security: ClientSecurity,
    /// Connections by address; the bootstrap connection is one of them.
    clients: HashMap<String, Client>,
    /// Advertised address of each broker, from the last Metadata.
    brokers: HashMap<i32, String>,
}

impl Cluster {
    pub fn connect(broker: &BrokerArgs) -> anyhow::Result<Cluster> {
        let bootstrap = broker.bootstrap_server.as_str();
        let security = broker.security()?;
        let client = Client::connect_with(bootstrap, super::CLIENT_ID, &security)?;
        let mut clients = HashMap::new();
        clients.insert(bootstrap.to_string(), client);
        Ok(Cluster {
            bootstrap_addr: bootstrap.to_string(),
            security,
            clients,
            brokers: HashMap::new(),
        })
    }

    pub fn bootstrap(&mut self) -> anyhow::Result<&mut Client> {
        let addr = self.bootstrap_addr.clone();
        self.client_at(&addr)
    }

    /// Every broker in the bootstrap broker's metadata, refreshing their addresses.
    pub fn broker_ids(&mut self) -> anyhow::Result<Vec<i32>> {
        let resp = self.bootstrap()?.metadata(Some(&[]))?;
        let mut ids = Vec::new();
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
            ids.push(b.node_id.0);
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The connection to `addr`, opened on first use.
    pub fn client_at(&mut self, addr: &str) -> anyhow::Result<&mut Client> {
        if !self.clients.contains_key(addr) {
            let client = self.connect_to(addr)?;
            self.clients.insert(addr.to_string(), client);
        }
        self.clients
            .get_mut(addr)
            .ok_or_else(|| anyhow!("connection to {addr} vanished"))
    }

    /// A new connection to `addr`, secured as the bootstrap one.
    pub fn connect_to(&self, addr: &str) -> anyhow::Result<Client> {
        Ok(Client::connect_with(
            addr,
            super::CLIENT_ID,
            &self.security,
        )?)
    }

    /// Looks up a topic's partitions and leaders, refreshing the broker addresses. With
    /// `auto_create` the broker may create a missing topic, as it does for producers.
    pub fn topic(&mut self, topic: &str, auto_create: bool) -> anyhow::Result<TopicLayout> {
        let resp = self
            .bootstrap()?
            .metadata_creating(Some(&[topic]), auto_create)?;
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(topic))
            .ok_or_else(|| anyhow!("no metadata returned for topic {topic}"))?;
        crate::client::error::check_code(t.error_code, None, || format!("topic {topic}"))?;
        let mut partitions: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            return Err(anyhow!("topic {topic} has no partitions"));
        }
        Ok(TopicLayout {
            name: topic.to_string(),
            topic_id: t.topic_id,
            partitions,
        })
    }

    /// The connection to broker `node`, opened on first use.
    pub fn leader(&mut self, node: i32) -> anyhow::Result<&mut Client> {
        if node < 0 {
            return Err(anyhow!("partition has no leader: {}", error_name(5)));
        }
        let addr = self
            .brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| anyhow!("leader {node} is not among the brokers in metadata"))?;
        self.client_at(&addr)
            .with_context(|| format!("connecting to leader {node} at {addr}"))
    }
}
