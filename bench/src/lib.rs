//! gregor-bench: a load driver for Kafka-compatible brokers.
//!
//! # How a run flows
//! `run` creates a fresh topic per acks setting through the project's blocking client, then
//! starts producer threads (`producer`: pacing, batching, pipelined Produce requests with a
//! reader thread per connection) and, for the consume and end-to-end workloads, consumer threads
//! (`consumer`: assign-style Fetch from explicit offsets). Counters are shared atomics; each
//! thread owns its latency histograms, merged when it ends. `report`, `svg` and `result` turn
//! the merged run into the table, .hgrm files, result.json and report.svg.
//!
//! # Modules
//! | module | owns |
//! |---|---|
//! | `args` | flags, validation, the run plan |
//! | `clock` | the monotonic clock record values carry |
//! | `pacer` | open-loop intended send times (no coordinated omission) |
//! | `batch` | RecordBatch v2 writing and header-only / send-time reading |
//! | `wire` | sockets, request encoding, the in-flight window |
//! | `topic` | create, describe, list offsets, delete |
//! | `txn` | producer ids, the transaction coordinator (AddPartitionsToTxn, EndTxn) |
//! | `producer` / `consumer` | the worker threads |
//! | `stats` | counters, histograms, percentiles |
//! | `interval` | per-interval percentiles and broker RSS of long runs |
//! | `cpu` | the driver's and the broker's CPU use, the broker's RSS |
//! | `result`, `report`, `svg` | JSON, table, .hgrm, the SVG report |
//!
//! # Latency definitions
//! - produce: acknowledgement time minus the record's intended send time (acks=0: the time its
//!   request was written to the socket, since nothing answers).
//! - end-to-end: the time a consumer sees the record minus its intended send time, read from
//!   the first 8 bytes of the value.
//! - commit (transactional producers, `--transaction-records`): the EndTxn(commit) round trip
//!   to the transaction coordinator, one sample per transaction, taken after every batch of the
//!   transaction was acknowledged.
//!
//! # Producer modes
//! Plain (no producer id), `--idempotent` (InitProducerId, sequences per partition) and
//! transactional (`--transaction-records 100,1000`: a transactional id per producer, each size a
//! run of its own; 0 in the list is idempotent without transactions). Consumers read with
//! `--isolation-level read_uncommitted` (default) or `read_committed`.
//!
//! # Workloads for steady-state questions
//! - Keyed records: `--keys N --key-size B` (N distinct keys of B bytes, partitioned with
//!   murmur2 like Kafka's default partitioner); `--producers 50` for many producers.
//! - `--topic-config segment.bytes=...,retention.bytes=...`: configs of the created topic, so
//!   retention deletes segments during the run; the result counts the records it removed.
//! - `--workload backlog --backlog-bytes 10GB`: fill unmeasured, then producers at `--rate`
//!   while consumers read from the start: produce and end-to-end latency (new records only),
//!   whether and when every partition was read past the backlog, the drain rate.
//! - `--report-interval 60s`: produce and end-to-end p50/p99/p99.9 per interval and the
//!   broker's RSS (`--broker-pid`), for soaks (`interval`).

pub mod args;
pub mod batch;
pub mod clock;
pub mod consumer;
pub mod cpu;
#[cfg(test)]
mod fake;
pub mod interval;
pub mod pacer;
pub mod producer;
pub mod report;
pub mod result;
pub mod run;
pub mod stats;
pub mod svg;
pub mod topic;
pub mod txn;
pub mod wire;
