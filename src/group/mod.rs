//! Consumer groups: membership and rebalancing of the classic protocol ([`state`]) and of the
//! broker-driven one (KIP-848, [`consumer`]), the per-shard coordinator with
//! committed offsets ([`coordinator`]), and their records in `__consumer_offsets` ([`store`]).
//!
//! A group belongs to one partition of the internal topic `__consumer_offsets` (Kafka's
//! placement by the group id's Java hash), and so to the shard that owns that partition: all of
//! the group's work runs there, and other shards forward requests to it by message.

pub(crate) mod codec;
pub mod consumer;
pub mod coordinator;
pub mod share;
pub mod state;
pub mod store;

pub use coordinator::Coordinator;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Longest group id accepted; longer ones get INVALID_GROUP_ID.
pub const GROUP_ID_MAX_BYTES: usize = 249;

/// Kafka's internal topics: clients may read them but not produce to or delete them.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == "__transaction_state"
}

/// A group id clients may use: not empty, not absurdly long.
pub fn valid_group_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= GROUP_ID_MAX_BYTES
}
