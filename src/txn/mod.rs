//! Producer ids, idempotent-producer state, and the transaction coordinator.
//!
//! Producer state lives on the shard that owns the partition and is checked in the produce
//! path before the append, from the batch header alone (producer id, epoch, base sequence,
//! record count). The transaction coordinator ([`coordinator`]) keeps each transactional id on
//! the `__transaction_state` partition its id hashes to, as a pure machine ([`state`]) whose
//! transitions are written in Kafka's TransactionLog records ([`log`]).

pub mod coordinator;
pub mod log;
pub mod producer_state;
pub mod state;

pub use producer_state::{Check, PartitionProducers};
