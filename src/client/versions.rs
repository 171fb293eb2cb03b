//! API version negotiation: the client's own range per API, intersected with what the broker
//! advertised in ApiVersions. The highest common version wins.
//!
//! The caps are the versions this client's request builders were written and tested against;
//! newer versions may add fields the helpers do not fill.

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;

use super::error::ClientError;

/// Highest version used per API. APIs not listed use kafka-protocol's own maximum.
const CAPS: &[(ApiKey, i16)] = &[
    (ApiKey::ApiVersions, 3),
    (ApiKey::Metadata, 12),
    (ApiKey::Produce, 12),
    (ApiKey::Fetch, 16),
    (ApiKey::ListOffsets, 9),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 6),
    (ApiKey::CreatePartitions, 3),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::DeleteRecords, 2),
    // Group APIs: the classic protocol, as librdkafka 2.x and the Java client 3.x use it.
    (ApiKey::FindCoordinator, 4),
    (ApiKey::JoinGroup, 9),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    (ApiKey::OffsetCommit, 8),
    (ApiKey::OffsetFetch, 8),
    (ApiKey::DescribeGroups, 5),
    (ApiKey::ListGroups, 4),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::OffsetDelete, 0),
];

/// Lowest version used per API, where higher than kafka-protocol's own minimum.
const FLOORS: &[(ApiKey, i16)] = &[
    // Metadata v0 cannot ask for "all topics" with a null list.
    (ApiKey::Metadata, 1),
];

/// The client's usable version range for `api`.
pub fn client_range(api: ApiKey) -> (i16, i16) {
    let valid = api.valid_versions();
    let cap = CAPS
        .iter()
        .find(|(k, _)| *k == api)
        .map_or(valid.max, |(_, v)| *v);
    let floor = FLOORS
        .iter()
        .find(|(k, _)| *k == api)
        .map_or(valid.min, |(_, v)| *v);
    (floor.max(valid.min), cap.min(valid.max))
}

/// The broker's advertised ranges, keyed by API key.
#[derive(Debug, Clone, Default)]
pub struct BrokerVersions {
    ranges: HashMap<i16, (i16, i16)>,
}

impl BrokerVersions {
    pub fn new(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> BrokerVersions {
        BrokerVersions {
            ranges: ranges
                .into_iter()
                .map(|(key, min, max)| (key, (min, max)))
                .collect(),
        }
    }

    /// The broker's range for `api`, if it offers it.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// Highest version both sides support.
    pub fn pick(&self, api: ApiKey) -> Result<i16, ClientError> {
        let (broker_min, broker_max) = self
            .broker_range(api)
            .ok_or(ClientError::ApiNotOffered { api })?;
        let (client_min, client_max) = client_range(api);
        let best = client_max.min(broker_max);
        if best < client_min.max(broker_min) {
            return Err(ClientError::NoCommonVersion {
                api,
                client_min,
                client_max,
                broker_min,
                broker_max,
            });
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version() {
        let v = BrokerVersions::new([
            (ApiKey::Fetch as i16, 4, 18),
            (ApiKey::Produce as i16, 3, 9),
            (ApiKey::Metadata as i16, 0, 0),
        ]);
        assert_eq!(v.pick(ApiKey::Fetch).unwrap(), 16);
        assert_eq!(v.pick(ApiKey::Produce).unwrap(), 9);
        assert!(matches!(
            v.pick(ApiKey::Metadata),
            Err(ClientError::NoCommonVersion { .. })
        ));
        assert!(matches!(
            v.pick(ApiKey::ListOffsets),
            Err(ClientError::ApiNotOffered { .. })
        ));
    }
}
