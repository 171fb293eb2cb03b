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

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::shard::Shard;
use crate::types::{NodeId, TopicPartition};

/// The replication state of one shard (kept as its [`Shard::service`]).
#[derive(Default)]
pub struct Replicas {
    /// The role of each replica this shard owns.
    roles: RefCell<HashMap<TopicPartition, Role>>,
    /// Leaders this shard runs a follower fetcher for.
    fetchers: RefCell<HashSet<NodeId>>,
}

/// This node leads `tp` (its role here is leader), in this leader epoch.
pub fn leader_epoch_of(shard: &Shard, tp: &TopicPartition) -> Option<i32> {
    match shard.service::<Replicas>().roles.borrow().get(tp) {
        Some(Role::Leader(l)) => Some(l.leader_epoch),
        _ => None,
    }
}

/// The epoch this node leads a partition in, and the offset that epoch starts at.
pub fn leadership_of(shard: &Shard, tp: &TopicPartition) -> Option<(i32, i64)> {
    match shard.service::<Replicas>().roles.borrow().get(tp) {
        Some(Role::Leader(l)) => Some((l.leader_epoch, l.epoch_start())),
        _ => None,
    }
}

/// The ISR size of a partition this node leads (for min.insync.replicas).
pub fn isr_size_of(shard: &Shard, tp: &TopicPartition) -> Option<usize> {
    match shard.service::<Replicas>().roles.borrow().get(tp) {
        Some(Role::Leader(l)) => Some(l.isr_size()),
        _ => None,
    }
}

/// The partitions this shard leads: ISR size and replica count of each (for the
/// under-replicated count).
pub fn led_partitions(shard: &Shard) -> Vec<(TopicPartition, usize, usize)> {
    shard
        .service::<Replicas>()
        .roles
        .borrow()
        .iter()
        .filter_map(|(tp, r)| match r {
            Role::Leader(l) => Some((tp.clone(), l.isr_size(), l.replicas().len())),
            Role::Follower { .. } => None,
        })
        .collect()
}

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
