//! gregor: a Kafka-compatible event-streaming broker, thread-per-core on io_uring.
//!
//! # Request flow
//! A connection is accepted by one shard (SO_REUSEPORT spreads them) and lives there until it
//! closes. `server::connection` frames requests, `protocol` decodes them with the kafka-protocol
//! crate, and a handler per API family turns them into domain commands. Commands for partitions
//! owned by other shards travel over the `shard` mesh to their owner, whose `storage` log is the
//! only code that touches those files; answers come back the same way and are merged. Responses
//! on one connection leave in request order.
//!
//! # Modules
//! | module | owns |
//! |---|---|
//! | `config` | every setting, Kafka's names, validation |
//! | `record` | RecordBatch v2 header view, CRC-32C, in-place rewrites |
//! | `protocol` | framing, request headers, the ApiVersions table |
//! | `server` | listener, connections, handlers, error-code mapping |
//! | `shard` | glommio executors, the cross-shard mesh, partition ownership |
//! | `metadata` | topics, partitions and configs as a log of records; snapshots per shard |
//! | `storage` | segments, indexes, recovery, retention |
//! | `metrics` | per-shard counters and histograms, summed and rendered (Prometheus text) only when scraped |
//! | `group` | consumer group coordinator, rebalancing, committed offsets, share group membership |
//! | `share` | share groups' share-partitions (acquired records, acknowledgements) and share sessions |
//! | `producer` | per-partition producer state (idempotence, transactions, LSO), markers, producer snapshots |
//! | `txn` | the transaction coordinator on `__transaction_state` |
//! | `cli` | the client tools (topics, produce, consume, groups, transactions, dump-log) |
//!
//! # Glossary
//! - LEO (log end offset): the offset the next appended record gets.
//! - HW (high watermark): offsets below it are written and may be read by consumers.
//! - LSO (last stable offset): below it no record belongs to an open transaction; what
//!   read_committed consumers read. At most the HW.
//! - Log start offset: the first offset still kept after retention.
//! - Shard: one glommio executor pinned to one core; it owns a fixed set of partitions.

pub mod cli;
pub mod client;
pub mod clock;
pub mod compression;
pub mod config;
#[doc(hidden)]
pub mod fuzz;
pub mod group;
pub mod metadata;
pub mod metrics;
pub mod node;
pub mod producer;
pub mod protocol;
pub mod record;
pub mod replication;
pub mod security;
pub mod server;
pub mod shard;
pub mod share;
pub mod storage;
pub mod txn;
pub mod types;
