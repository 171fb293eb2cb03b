//! Consumer group calls on [`Client`]: FindCoordinator, ListGroups, DescribeGroups,
//! DeleteGroups, OffsetFetch and OffsetCommit, as the group tools need them.
//!
//! Each call copes with both request layouts Kafka has used (single group before
//! FindCoordinator v4 / OffsetFetch v8, batched after), so it works with whatever version was
//! negotiated. Error codes become [`ClientError::Kafka`] naming the group and partition.

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as DescribedConsumerGroup;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{check_code, ClientError};
use super::Client;

/// FindCoordinator key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

/// Where a group's coordinator lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAddr {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl CoordinatorAddr {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty below ListGroups v4, which does not report states.
    pub state: String,
}

/// One committed offset: (topic, partition, offset; -1 when none is committed).
pub type CommittedRow = (String, i32, i64);

impl Client {
    /// The coordinator of consumer group `group`.
    pub fn find_coordinator(&mut self, group: &str) -> Result<CoordinatorAddr, ClientError> {
        let version = self.version_for(ApiKey::FindCoordinator)?;
        let key = StrBytes::from_string(group.to_string());
        let req = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_GROUP);
        let context = || format!("find coordinator of group {group}");
        if version >= 4 {
            let resp = self.send_version(&req.with_coordinator_keys(vec![key]), version)?;
            let c = resp
                .coordinators
                .into_iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| ClientError::Unexpected(format!("no coordinator for {group}")))?;
            check_code(c.error_code, c.error_message.as_deref(), context)?;
            return Ok(CoordinatorAddr {
                node_id: c.node_id.0,
                host: c.host.to_string(),
                port: c.port,
            });
        }
        let resp = self.send_version(&req.with_key(key), version)?;
        check_code(resp.error_code, resp.error_message.as_deref(), context)?;
        Ok(CoordinatorAddr {
            node_id: resp.node_id.0,
            host: resp.host.to_string(),
            port: resp.port,
        })
    }

    /// Every group this broker coordinates.
    pub fn list_groups(&mut self) -> Result<Vec<ListedGroup>, ClientError> {
        let resp = self.send(&ListGroupsRequest::default())?;
        check_code(resp.error_code, None, || "list groups".to_string())?;
        Ok(resp
            .groups
            .into_iter()
            .map(|g| ListedGroup {
                group_id: g.group_id.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            })
            .collect())
    }

    /// DescribeGroups for one group; a group that does not exist comes back as state `Dead`.
    pub fn describe_group(&mut self, group: &str) -> Result<DescribedGroup, ClientError> {
        let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let resp = self.send(&req)?;
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.as_str() == group)
            .ok_or_else(|| ClientError::Unexpected(format!("no description of group {group}")))?;
        check_code(g.error_code, g.error_message.as_deref(), || {
            format!("describe group {group}")
        })?;
        Ok(g)
    }

    /// ConsumerGroupDescribe for one group of the consumer protocol (KIP-848): None when the
    /// group is not one (GROUP_ID_NOT_FOUND, a classic group or none at all).
    pub fn describe_consumer_group(
        &mut self,
        group: &str,
    ) -> Result<Option<DescribedConsumerGroup>, ClientError> {
        const GROUP_ID_NOT_FOUND: i16 = 69;
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
        let resp = self.send(&req)?;
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.as_str() == group)
            .ok_or_else(|| ClientError::Unexpected(format!("no description of group {group}")))?;
        if g.error_code == GROUP_ID_NOT_FOUND {
            return Ok(None);
        }
        check_code(g.error_code, g.error_message.as_deref(), || {
            format!("describe consumer group {group}")
        })?;
        Ok(Some(g))
    }

    /// DeleteGroups for one group (only an empty group can be deleted).
    pub fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let resp = self.send(&req)?;
        let r = resp
            .results
            .into_iter()
            .find(|r| r.group_id.as_str() == group)
            .ok_or_else(|| ClientError::Unexpected(format!("no delete result for {group}")))?;
        check_code(r.error_code, None, || format!("delete group {group}"))
    }

    /// All committed offsets of `group`, sorted by topic and partition.
    pub fn committed_offsets(&mut self, group: &str) -> Result<Vec<CommittedRow>, ClientError> {
        let version = self.version_for(ApiKey::OffsetFetch)?;
        let context = || format!("fetch offsets of group {group}");
        // The two response shapes (batched groups from v8, one group before) flattened to
        // (topic, partition, error, offset).
        let flat: Vec<(String, i32, i16, i64)> = if version >= 8 {
            let req =
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(group_id(group))
                    .with_topics(None)]);
            let resp = self.send_version(&req, version)?;
            let g = resp
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| ClientError::Unexpected(format!("no offsets for {group}")))?;
            check_code(g.error_code, None, context)?;
            g.topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name.to_string();
                    t.partitions.into_iter().map(move |p| {
                        (
                            name.clone(),
                            p.partition_index,
                            p.error_code,
                            p.committed_offset,
                        )
                    })
                })
                .collect()
        } else {
            let req = OffsetFetchRequest::default()
                .with_group_id(group_id(group))
                .with_topics(None);
            let resp = self.send_version(&req, version)?;
            check_code(resp.error_code, None, context)?;
            resp.topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name.to_string();
                    t.partitions.into_iter().map(move |p| {
                        (
                            name.clone(),
                            p.partition_index,
                            p.error_code,
                            p.committed_offset,
                        )
                    })
                })
                .collect()
        };
        let mut rows = Vec::with_capacity(flat.len());
        for (topic, partition, error, offset) in flat {
            check_code(error, None, || {
                format!("offset of {group} on {topic}-{partition}")
            })?;
            rows.push((topic, partition, offset));
        }
        rows.sort();
        Ok(rows)
    }

    /// Commits `offsets` for `group` as a member (or, with generation -1 and an empty member
    /// id, from outside group management, which the broker allows only for an empty group).
    pub fn commit_offsets(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[CommittedRow],
    ) -> Result<(), ClientError> {
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (t, p, o) in offsets {
            let part = OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::default()));
            match topics.iter_mut().find(|x| x.name.as_str() == t) {
                Some(x) => x.partitions.push(part),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.clone())))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let resp = self.send(&req)?;
        for t in &resp.topics {
            for p in &t.partitions {
                check_code(p.error_code, None, || {
                    format!(
                        "commit {group} on {}-{}",
                        t.name.as_str(),
                        p.partition_index
                    )
                })?;
            }
        }
        let answered: usize = resp.topics.iter().map(|t| t.partitions.len()).sum();
        if answered != offsets.len() {
            return Err(ClientError::Unexpected(format!(
                "OffsetCommit answered {answered} of {} partitions",
                offsets.len()
            )));
        }
        Ok(())
    }
}
