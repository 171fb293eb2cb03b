//! Replicated partitions: the leader's replica state as a pure machine ([`leader`]), the role
//! each replica of this node plays ([`roles`]: leader or follower, switched when the metadata
//! says so), and the follower fetcher that copies a leader's log ([`fetcher`], over [`link`]).
//!
//! Glossary: LEO, a replica's log end offset; HW, the high watermark, the smallest LEO in the
//! ISR, below which records are committed and visible to consumers; ISR, the in-sync replicas;
//! leader epoch, a number the controller raises at every leader change, carried in every batch.

pub mod fetcher;
pub mod leader;
pub mod link;
pub mod roles;

pub use leader::{Effect, LeaderState};

use crate::types::NodeId;

/// What this node's replica of a partition does. Lives on the shard that owns the partition.
#[derive(Debug, Clone)]
pub enum Role {
    Leader(LeaderState),
    /// Copies `leader`'s log (no leader: waits for one).
    Follower {
        leader: NodeId,
        leader_epoch: i32,
    },
}

impl Role {
    pub fn leader_epoch(&self) -> i32 {
        match self {
            Role::Leader(l) => l.leader_epoch,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        }
    }
}
