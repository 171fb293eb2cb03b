//! The transaction coordinator: each transactional id lives on the `__transaction_state`
//! partition its id hashes to ([`coordinator`]), as a pure machine ([`state`]) whose
//! transitions are written in Kafka's TransactionLog records ([`log`]). The partition side of
//! transactions (producer state, markers, snapshots) is in `producer`.

pub mod coordinator;
pub mod log;
pub mod state;
