//! The cross-shard mesh: jobs (closures) sent from one shard to another.
//!
//! Each shard keeps one outbox per peer. Pushing is synchronous, so the order in which a shard
//! queues jobs is the order the peer runs them; a pump task per peer moves jobs from the outbox
//! into the bounded glommio mesh channel, waiting when the peer is behind. The outbox itself is
//! unbounded: what fills it is bounded by the connections' in-flight request limits.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use thiserror::Error;

use super::Shard;
use crate::types::ShardId;

/// Work for another shard: runs there with that shard's state.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalBoxFuture<'static, ()> + Send>;

/// Capacity of each shard-to-shard channel in the glommio mesh.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ShardError {
    #[error("shard {} stopped before answering", .0 .0)]
    PeerGone(ShardId),
}

pub struct Outboxes {
    /// Indexed by shard id; `None` for this shard itself.
    queues: Vec<Option<LocalSender<Job>>>,
}

impl Outboxes {
    /// Starts one pump task per peer, moving queued jobs into the mesh in order.
    pub fn start(senders: Senders<Job>) -> Outboxes {
        let senders = Rc::new(senders);
        let me = senders.peer_id();
        let queues = (0..senders.nr_consumers())
            .map(|peer| {
                if peer == me {
                    return None;
                }
                let (tx, rx) = local_channel::new_unbounded::<Job>();
                let senders = senders.clone();
                glommio::spawn_local(async move {
                    while let Some(job) = rx.recv().await {
                        if senders.send_to(peer, job).await.is_err() {
                            tracing::warn!(peer, "mesh channel closed; dropping job");
                        }
                    }
                })
                .detach();
                Some(tx)
            })
            .collect();
        Outboxes { queues }
    }

    pub fn push(&self, target: ShardId, job: Job) {
        let queue = self
            .queues
            .get(target.0)
            .and_then(|q| q.as_ref())
            .unwrap_or_else(|| panic!("no outbox for shard {}", target.0));
        if queue.try_send(job).is_err() {
            // The pump only stops when the executor does; the job's reply sender is dropped
            // with it and the caller sees PeerGone.
            tracing::warn!(shard = target.0, "outbox closed; job dropped");
        }
    }
}

/// Runs every job that arrives from any peer, each as its own task, in arrival order.
pub fn start_receivers(mut receivers: Receivers<Job>, shard: Rc<Shard>) {
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(job) = rx.recv().await {
                glommio::spawn_local(job(shard.clone())).detach();
            }
        })
        .detach();
    }
}
