//! The cross-shard mesh: jobs (closures) sent from one shard to another.
//!
//! Each shard keeps one outbox per peer. Pushing is synchronous, so the order in which a shard
//! queues jobs is the order the peer runs them; a pump task per peer moves jobs from the outbox
//! into the bounded glommio mesh channel, waiting when the peer is behind.
//!
//! Pushing never fails or waits (a reply must always get through, or two shards waiting on each
//! other could stall for good), so the outboxes are bounded where their work comes from: while
//! a shard's outboxes hold [`OUTBOX_HIGH_JOBS`] or more jobs, its connections read no new
//! requests ([`Outboxes::room`]) until the backlog is down to half of that. What is queued
//! beyond the mark is what requests already read can still produce (a job per shard at most
//! for each), their replies, and background work.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};

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

/// Jobs a shard's outboxes may hold before its connections stop reading requests.
pub const OUTBOX_HIGH_JOBS: usize = 8192;

pub struct Outboxes {
    /// Indexed by shard id; `None` for this shard itself.
    queues: Vec<Option<LocalSender<Job>>>,
    backlog: Rc<Backlog>,
}

/// Jobs queued in a shard's outboxes and not yet taken by the mesh. Once they reach the mark
/// the backlog drains: readers wait until it is down to half the mark.
#[derive(Debug)]
pub struct Backlog {
    queued: Cell<usize>,
    high: usize,
    draining: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Backlog {
    pub fn new(high: usize) -> Backlog {
        Backlog {
            queued: Cell::new(0),
            high,
            draining: Cell::new(false),
            waiters: RefCell::default(),
        }
    }

    pub fn queued(&self) -> usize {
        self.queued.get()
    }

    fn added(&self) {
        let queued = self.queued.get() + 1;
        self.queued.set(queued);
        if queued >= self.high {
            self.draining.set(true);
        }
    }

    /// A job left for the mesh: at half the mark, everyone waiting goes on.
    fn taken(&self) {
        let left = self.queued.get().saturating_sub(1);
        self.queued.set(left);
        if self.draining.get() && left <= self.high / 2 {
            self.draining.set(false);
            let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    /// Resolves at once unless the backlog is draining; else once it is down to half the mark.
    pub async fn room(&self) {
        futures::future::poll_fn(|cx| {
            if !self.draining.get() {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Outboxes {
    /// Starts one pump task per peer, moving queued jobs into the mesh in order.
    pub fn start(senders: Senders<Job>) -> Outboxes {
        let senders = Rc::new(senders);
        let me = senders.peer_id();
        let backlog = Rc::new(Backlog::new(OUTBOX_HIGH_JOBS));
        let queues = (0..senders.nr_consumers())
            .map(|peer| {
                if peer == me {
                    return None;
                }
                let (tx, rx) = local_channel::new_unbounded::<Job>();
                let senders = senders.clone();
                let backlog = backlog.clone();
                glommio::spawn_local(async move {
                    while let Some(job) = rx.recv().await {
                        if senders.send_to(peer, job).await.is_err() {
                            tracing::warn!(peer, "mesh channel closed; dropping job");
                        }
                        backlog.taken();
                    }
                })
                .detach();
                Some(tx)
            })
            .collect();
        Outboxes { queues, backlog }
    }

    /// Jobs queued for other shards and not yet in the mesh.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    pub fn push(&self, target: ShardId, job: Job) {
        let queue = self
            .queues
            .get(target.0)
            .and_then(|q| q.as_ref())
            .unwrap_or_else(|| panic!("no outbox for shard {}", target.0));
        if queue.try_send(job).is_ok() {
            self.backlog.added();
        } else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::future::Future;

    #[test]
    fn a_full_backlog_holds_readers_until_it_is_down_to_half() {
        let b = Backlog::new(4);
        assert!(b.room().now_or_never().is_some(), "empty: room");
        (0..3).for_each(|_| b.added());
        assert!(b.room().now_or_never().is_some(), "below the mark: room");
        b.added();
        let mut waiting = Box::pin(b.room());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "at the mark: wait"
        );
        b.taken();
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "one below the mark is not yet half"
        );
        assert!(b.room().now_or_never().is_none(), "a new reader waits too");
        b.taken();
        assert_eq!(b.queued(), 2);
        assert!(waiting.as_mut().poll(&mut cx).is_ready(), "half: go on");
        assert!(b.waiters.borrow().is_empty());
    }
}
