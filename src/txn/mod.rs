//! Idempotent producers: producer ids, and per-partition producer state that turns a retried
//! batch into the answer it first got instead of a second copy.
//!
//! Producer state lives on the shard that owns the partition and is checked in the produce
//! path before the append, from the batch header alone (producer id, epoch, base sequence,
//! record count). Transactions are not built: transactional batches are refused.

pub mod producer_state;

pub use producer_state::{Check, PartitionProducers};
