//! The "authorized operations" bit fields of Metadata, DescribeCluster and DescribeGroups: the
//! operations a resource type supports (Kafka's `AclEntry.supportedOperations`) that the
//! principal may do. Without an authorizer that is every supported one, as Kafka reports.

use super::access::Access;
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use AclOperation::*;

const TOPIC: &[AclOperation] = &[
    Read,
    Write,
    Create,
    Describe,
    Delete,
    Alter,
    DescribeConfigs,
    AlterConfigs,
];
const CLUSTER: &[AclOperation] = &[
    Create,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    Alter,
    Describe,
];
const GROUP: &[AclOperation] = &[Read, Describe, Delete, DescribeConfigs, AlterConfigs];

/// What the schema holds when the client did not ask (Kafka's Int.MinValue default).
pub const NOT_REQUESTED: i32 = i32::MIN;

fn field(
    requested: bool,
    access: &Access,
    resource_type: ResourceType,
    name: &str,
    supported: &[AclOperation],
) -> i32 {
    if requested {
        access.operations(resource_type, name, supported)
    } else {
        NOT_REQUESTED
    }
}

pub fn topic(requested: bool, access: &Access, name: &str) -> i32 {
    field(requested, access, ResourceType::Topic, name, TOPIC)
}

pub fn cluster(requested: bool, access: &Access) -> i32 {
    field(
        requested,
        access,
        ResourceType::Cluster,
        CLUSTER_NAME,
        CLUSTER,
    )
}

pub fn group(requested: bool, access: &Access, name: &str) -> i32 {
    field(requested, access, ResourceType::Group, name, GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_match_kafkas_codes() {
        let open = Access::open();
        // READ..ALTER_CONFIGS without CREATE_TOKENS: bits 3-8, 10, 11.
        assert_eq!(topic(true, &open, "t"), 0b1101_1111_1000);
        assert_eq!(cluster(true, &open), 0b1_1111_1010_0000);
        assert_eq!(group(true, &open, "g"), 0b1101_0100_1000);
        assert_eq!(topic(false, &open, "t"), i32::MIN);
    }
}
