//! The raft-rs plumbing of the metadata quorum: the on-disk [`storage`] of the raft log, hard
//! state and snapshots (Kafka's `__cluster_metadata-0`), and the [`transport`] between nodes.

mod disk;
pub mod storage;
pub mod transport;
