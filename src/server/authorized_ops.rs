//! The "authorized operations" bit fields of Metadata, DescribeCluster and DescribeGroups.
//!
//! There is no authorizer yet, so every principal may do everything a resource type supports;
//! Kafka without an authorizer reports exactly that set (`AclEntry.supportedOperations`). When
//! ACLs exist, these become the principal's real set.

/// Kafka's AclOperation codes.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

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

fn bits(ops: &[AclOperation]) -> i32 {
    ops.iter().fold(0, |acc, op| acc | (1 << *op as u8))
}

pub fn topic(requested: bool) -> i32 {
    if requested {
        bits(TOPIC)
    } else {
        NOT_REQUESTED
    }
}

pub fn cluster(requested: bool) -> i32 {
    if requested {
        bits(CLUSTER)
    } else {
        NOT_REQUESTED
    }
}

pub fn group(requested: bool) -> i32 {
    if requested {
        bits(GROUP)
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_match_kafkas_codes() {
        // READ..ALTER_CONFIGS without CREATE_TOKENS: bits 3-8, 10, 11.
        assert_eq!(topic(true), 0b1101_1111_1000);
        assert_eq!(cluster(true), 0b1_1111_1010_0000);
        assert_eq!(group(true), 0b1101_0100_1000);
        assert_eq!(topic(false), i32::MIN);
    }
}
