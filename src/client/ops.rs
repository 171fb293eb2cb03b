//! Convenience calls on [`Client`]: build the request, send it at the negotiated version, and
//! turn every error code in the answer (top level, per topic, per partition) into a
//! [`ClientError::Kafka`] naming what failed. Fetch leaves partition errors to the caller,
//! which may want to react to OFFSET_OUT_OF_RANGE itself.
//!
//! Topic ids and names are both filled in where a request carries either, so the same code
//! works below and above the version where Kafka switched to ids (Produce 13, Fetch 13).

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, FetchRequest, IncrementalAlterConfigsRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::batch::AbortedTxn;
use super::error::{check_code, ClientError};
use super::Client;

/// ListOffsets timestamp asking for the log start offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp asking for the log end offset (or LSO under read_committed).
pub const LATEST_TIMESTAMP: i64 = -1;
/// DescribeConfigs resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs resource type of a broker (empty name: the cluster-wide default).
pub const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs resource type of a group (its group configs).
pub const RESOURCE_GROUP: i8 = 32;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1 lets the broker use its default.
    pub partitions: i32,
    /// -1 lets the broker use its default.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// One config entry of a described resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's ConfigSource: 1 topic override, 4 static broker, 5 default, ...
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    /// (name, value, source) of each level that sets it, most important first (when asked).
    pub synonyms: Vec<(String, Option<String>, i8)>,
}

/// One change of an IncrementalAlterConfigs: `value` None deletes the override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterEntry {
    pub name: String,
    pub value: Option<String>,
}

/// Kafka's name of a ConfigSource value.
pub fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Kafka's ConfigSource value for a topic-level override.
pub const CONFIG_SOURCE_TOPIC: i8 = 1;

/// The broker's answer for one partition of a fetch.
#[derive(Debug, Clone)]
pub struct PartitionFetch {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub aborted: Vec<AbortedTxn>,
    pub records: Bytes,
}

/// What to fetch from one topic.
#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub topic: String,
    /// Needed from Fetch v13 on; nil below.
    pub topic_id: Uuid,
    /// (partition, fetch offset)
    pub partitions: Vec<(i32, i64)>,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// 0 read_uncommitted, 1 read_committed.
    pub isolation_level: i8,
}

impl Client {
    /// Metadata for `topics`, or for every topic when `None`. Never auto-creates topics.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<MetadataResponse, ClientError> {
        self.metadata_creating(topics, false)
    }

    /// Metadata that lets the broker create missing topics (auto.create.topics.enable), as a
    /// producer's metadata request does.
    pub fn metadata_creating(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse, ClientError> {
        let topics = topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        });
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(allow_auto_create);
        let resp = self.send(&req)?;
        check_code(resp.error_code, None, || "metadata".to_string())?;
        Ok(resp)
    }

    /// Metadata of one topic; an error if the broker reports one for it.
    pub fn topic_metadata(&mut self, topic: &str) -> Result<MetadataResponseTopic, ClientError> {
        let resp = self.metadata(Some(&[topic]))?;
        let found = resp
            .topics
            .into_iter()
            .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(topic))
            .ok_or_else(|| ClientError::Unexpected(format!("no metadata for topic {topic}")))?;
        check_code(found.error_code, None, || format!("topic {topic}"))?;
        Ok(found)
    }

    pub fn create_topic(&mut self, topic: &NewTopic, timeout_ms: i32) -> Result<(), ClientError> {
        let configs = topic
            .configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(configs)])
            .with_timeout_ms(timeout_ms);
        let resp = self.send(&req)?;
        let result = resp
            .topics
            .iter()
            .find(|t| t.name.as_str() == topic.name)
            .ok_or_else(|| missing("CreateTopics", &topic.name, None))?;
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("create topic {}", topic.name)
        })
    }

    pub fn delete_topic(&mut self, topic: &str, timeout_ms: i32) -> Result<(), ClientError> {
        // v1-5 carry names in `topic_names`, v6+ in `topics`; the encoder writes the right one.
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(topic)])
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(topic)))
            ])
            .with_timeout_ms(timeout_ms);
        let resp = self.send(&req)?;
        // One topic was asked for, so a lone result answers it even if the broker left its
        // name out (some brokers null the name of a failed entry).
        let lone = (resp.responses.len() == 1).then(|| &resp.responses[0]);
        let result = resp
            .responses
            .iter()
            .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(topic))
            .or(lone)
            .ok_or_else(|| missing("DeleteTopics", topic, None))?;
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("delete topic {topic}")
        })
    }

    /// Grows `topic` to `count` partitions in total.
    pub fn create_partitions(
        &mut self,
        topic: &str,
        count: i32,
        timeout_ms: i32,
    ) -> Result<(), ClientError> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(None)])
            .with_timeout_ms(timeout_ms);
        let resp = self.send(&req)?;
        let result = resp
            .results
            .iter()
            .find(|t| t.name.as_str() == topic)
            .ok_or_else(|| missing("CreatePartitions", topic, None))?;
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("create partitions for {topic}")
        })
    }

    /// Every config entry of `topic` (defaults included; filter on `source` for overrides).
    pub fn describe_topic_configs(&mut self, topic: &str) -> Result<Vec<ConfigEntry>, ClientError> {
        self.describe_configs(RESOURCE_TOPIC, topic, false)
    }

    /// Every config entry of a resource (a topic, or a broker by id; the empty name is the
    /// cluster-wide broker default), with synonyms when asked.
    pub fn describe_configs(
        &mut self,
        resource_type: i8,
        name: &str,
        synonyms: bool,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let req = DescribeConfigsRequest::default()
            .with_include_synonyms(synonyms)
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None)]);
        let resp = self.send(&req)?;
        let result = resp
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == name)
            .ok_or_else(|| missing("DescribeConfigs", name, None))?;
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("describe configs of {name}")
        })?;
        Ok(result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: c.config_source,
                read_only: c.read_only,
                sensitive: c.is_sensitive,
                synonyms: c
                    .synonyms
                    .into_iter()
                    .map(|s| (s.name.to_string(), s.value.map(|v| v.to_string()), s.source))
                    .collect(),
            })
            .collect())
    }

    /// Sets (or, for a `None` value, deletes) configs of one resource with
    /// IncrementalAlterConfigs.
    pub fn alter_configs(
        &mut self,
        resource_type: i8,
        name: &str,
        changes: &[AlterEntry],
    ) -> Result<(), ClientError> {
        let configs = changes
            .iter()
            .map(|c| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(c.name.clone()))
                    .with_config_operation(if c.value.is_some() { 0 } else { 1 })
                    .with_value(c.value.clone().map(StrBytes::from_string))
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(configs),
        ]);
        let resp = self.send(&req)?;
        let result = resp
            .responses
            .into_iter()
            .find(|r| r.resource_name.as_str() == name)
            .ok_or_else(|| missing("IncrementalAlterConfigs", name, None))?;
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("alter configs of {name}")
        })
    }

    /// Produces one batch per listed partition of `topic`. Returns each partition's base
    /// offset (in request order), or `None` for acks=0, which the broker does not answer.
    pub fn produce(
        &mut self,
        topic: &str,
        topic_id: Uuid,
        batches: &[(i32, Bytes)],
        acks: i16,
        timeout_ms: i32,
    ) -> Result<Option<Vec<(i32, i64)>>, ClientError> {
        let partition_data = batches
            .iter()
            .map(|(p, b)| {
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(b.clone()))
            })
            .collect();
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_topic_id(topic_id)
                .with_partition_data(partition_data)]);
        if acks == 0 {
            self.send_no_response(&req)?;
            return Ok(None);
        }
        let resp = self.send(&req)?;
        let answered = resp
            .responses
            .iter()
            .filter(|t| t.name.as_str() == topic || (!topic_id.is_nil() && t.topic_id == topic_id))
            .flat_map(|t| t.partition_responses.iter())
            .collect::<Vec<_>>();
        let mut offsets = Vec::with_capacity(batches.len());
        for (p, _) in batches {
            let pr = answered
                .iter()
                .find(|r| r.index == *p)
                .ok_or_else(|| missing("Produce", topic, Some(*p)))?;
            check_code(pr.error_code, pr.error_message.as_deref(), || {
                format!("produce to {topic}-{p}")
            })?;
            offsets.push((*p, pr.base_offset));
        }
        Ok(Some(offsets))
    }

    /// One fetch round. Top-level errors fail the call; partition errors are returned as codes.
    pub fn fetch(&mut self, spec: &FetchSpec) -> Result<Vec<PartitionFetch>, ClientError> {
        let partitions = spec
            .partitions
            .iter()
            .map(|(p, offset)| {
                FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(*offset)
                    .with_partition_max_bytes(spec.partition_max_bytes)
            })
            .collect();
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(spec.max_wait_ms)
            .with_min_bytes(spec.min_bytes)
            .with_max_bytes(spec.max_bytes)
            .with_isolation_level(spec.isolation_level)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&spec.topic))
                .with_topic_id(spec.topic_id)
                .with_partitions(partitions)]);
        let resp = self.send(&req)?;
        check_code(resp.error_code, None, || format!("fetch {}", spec.topic))?;
        let mut out = Vec::new();
        for t in resp.responses.into_iter().filter(|t| {
            t.topic.as_str() == spec.topic
                || (!spec.topic_id.is_nil() && t.topic_id == spec.topic_id)
        }) {
            out.extend(t.partitions.into_iter().map(|p| {
                PartitionFetch {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    last_stable_offset: p.last_stable_offset,
                    log_start_offset: p.log_start_offset,
                    aborted: p
                        .aborted_transactions
                        .unwrap_or_default()
                        .iter()
                        .map(|a| AbortedTxn {
                            producer_id: a.producer_id.0,
                            first_offset: a.first_offset,
                        })
                        .collect(),
                    records: p.records.unwrap_or_default(),
                }
            }));
        }
        Ok(out)
    }

    /// DeleteRecords on this broker (the partitions' leader): moves each `(partition, offset)`
    /// log start up to the offset (-1: the high watermark); the new low watermark or the error
    /// of each partition, in the order asked.
    pub fn delete_records(
        &mut self,
        topic: &str,
        offsets: &[(i32, i64)],
        timeout_ms: i32,
    ) -> Result<Vec<PartitionOutcome>, ClientError> {
        let partitions = offsets
            .iter()
            .map(|(p, o)| {
                DeleteRecordsPartition::default()
                    .with_partition_index(*p)
                    .with_offset(*o)
            })
            .collect();
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions)]);
        let resp = self.send(&req)?;
        let answered: Vec<_> = resp
            .topics
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .collect();
        let mut out = Vec::with_capacity(offsets.len());
        for (p, _) in offsets {
            let r = answered
                .iter()
                .find(|r| r.partition_index == *p)
                .ok_or_else(|| missing("DeleteRecords", topic, Some(*p)))?;
            let result = check_code(r.error_code, None, || {
                format!("delete records of {topic}-{p}")
            })
            .map(|()| r.low_watermark);
            out.push((*p, result));
        }
        Ok(out)
    }

    /// Resolves `(partition, timestamp)` pairs to `(partition, offset)`. Use
    /// [`EARLIEST_TIMESTAMP`] / [`LATEST_TIMESTAMP`] or a time in ms. A timestamp after the
    /// last record yields offset -1, as in Kafka.
    pub fn list_offsets(
        &mut self,
        topic: &str,
        queries: &[(i32, i64)],
        isolation_level: i8,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        let partitions = queries
            .iter()
            .map(|(p, ts)| {
                ListOffsetsPartition::default()
                    .with_partition_index(*p)
                    .with_timestamp(*ts)
            })
            .collect();
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation_level)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions)]);
        let resp = self.send(&req)?;
        let answered: Vec<_> = resp
            .topics
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .collect();
        let mut out = Vec::with_capacity(queries.len());
        for (p, _) in queries {
            let pr = answered
                .iter()
                .find(|r| r.partition_index == *p)
                .ok_or_else(|| missing("ListOffsets", topic, Some(*p)))?;
            check_code(pr.error_code, None, || {
                format!("list offsets of {topic}-{p}")
            })?;
            out.push((*p, pr.offset));
        }
        Ok(out)
    }
}

/// A partition and what became of it: a new low watermark or the broker's error.
pub type PartitionOutcome = (i32, Result<i64, ClientError>);

fn missing(api: &str, topic: &str, partition: Option<i32>) -> ClientError {
    let what = match partition {
        Some(p) => format!("{topic}-{p}"),
        None => topic.to_string(),
    };
    ClientError::Unexpected(format!("{api} response has no entry for {what}"))
}
