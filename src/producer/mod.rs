//! Producers on the partition side: per-partition producer state (idempotence and
//! transactions), the transaction markers that end transactions, and the snapshot files that
//! keep producer state across restarts.
//!
//! Producer state is owned by the partition log (`storage`), which updates it with every batch
//! it appends; the produce path asks it, from the batch header alone, whether a batch is new, a
//! retry or refused. Pure: no I/O, no clock, no Kafka error codes.

pub mod marker;
pub mod snapshot;
pub mod state;

pub use marker::Marker;
pub use state::{
    Check, CompletedTxn, PartitionProducers, ProducerError, ProducerView, SnapshotEntry,
};
