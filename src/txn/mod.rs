//! Producers and transactions: per-partition producer state (idempotence and transactions),
//! the transaction markers that end transactions, the snapshot files that keep producer state
//! across restarts, and the transaction coordinator.
//!
//! Producer state is owned by the partition log (`storage`), which updates it with every batch
//! it appends; the produce path asks it, from the batch header alone, whether a batch is new,
//! a retry or refused. The transaction coordinator ([`coordinator`]) keeps each transactional
//! id on the `__transaction_state` partition its id hashes to, as a pure machine ([`state`])
//! whose transitions are written in Kafka's TransactionLog records ([`log`]).

pub mod coordinator;
pub mod log;
pub mod marker;
pub mod producer_state;
pub mod snapshot;
pub mod state;

pub use marker::Marker;
pub use producer_state::{
    Check, CompletedTxn, PartitionProducers, ProducerError, ProducerView, SnapshotEntry,
};
