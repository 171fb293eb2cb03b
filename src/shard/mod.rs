//! Shards: one glommio executor per core, each owning a fixed set of partitions.
//!
//! A [`Shard`] lives on its executor thread only (`Rc`, never `Send`). It holds the partition
//! logs it owns, its read-only copy of the metadata snapshot, and the outboxes through which it
//! asks other shards to do work. Cross-shard work is a closure sent to the owner over the glommio
//! channel mesh ([`Shard::invoke_on`]); the owner runs it against its own state and answers
//! through a oneshot channel. No lock guards a log: only its owner touches it.

pub mod mesh;

pub use mesh::ShardError;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::metadata::{Command, MetadataError, Quorum, Reply, Snapshot};
use crate::storage::PartitionLog;
use crate::types::{owner_shard, ShardId, TopicPartition};

/// A partition log with the id of the topic incarnation it belongs to, so a topic deleted and
/// created again under the same name never reuses the old log.
struct OwnedLog {
    topic_id: Uuid,
    log: Rc<PartitionLog>,
}

/// Runs on a data shard after it installed a newer metadata snapshot.
pub type SnapshotHook = Rc<dyn Fn(Rc<Shard>, Arc<Snapshot>) -> LocalBoxFuture<'static, ()>>;

/// One shard's state. Lives on its executor thread; mutated only by that thread's tasks.
pub struct Shard {
    pub id: ShardId,
    pub num_shards: usize,
    pub config: Arc<Config>,
    snapshot: RefCell<Arc<Snapshot>>,
    logs: RefCell<HashMap<TopicPartition, OwnedLog>>,
    /// The recent batches of every log of this shard, within `fetch.cache.bytes`.
    fetch_cache: Rc<crate::storage::CacheSpace>,
    /// This shard's share of `queued.max.request.bytes`: bytes of requests read and not yet
    /// answered. Connections acquire a request's size before handling it.
    pub(crate) request_bytes: Rc<glommio::sync::Semaphore>,
    mesh: mesh::Outboxes,
    /// The metadata quorum; on the metadata core (the executor after the data shards) only.
    quorum: RefCell<Option<Rc<Quorum>>>,
    /// This node's block of producer ids [next, end), handed out by the metadata core.
    producer_ids: Cell<(i64, i64)>,
    /// Serializes snapshot application, which opens and deletes logs across awaits.
    reconcile: glommio::sync::Semaphore,
    shutting_down: Cell<bool>,
    /// Per-shard state of the subsystems built on shards (replica roles, the group
    /// coordinator): see [`Shard::service`].
    services: RefCell<Vec<Rc<dyn Any>>>,
    /// What the composition root runs after each new snapshot is installed (replica roles).
    on_snapshot: RefCell<Option<SnapshotHook>>,
    /// Long-running tasks of this shard (listener, retention); dropping them cancels them.
    pub(crate) background: RefCell<Vec<glommio::Task<()>>>,
    /// Each client listener, bound ahead of serving (see `server::bind_listener`).
    pub(crate) listener: RefCell<Vec<glommio::net::TcpListener>>,
    /// Set once the shard accepts clients.
    pub(crate) serving: std::cell::Cell<bool>,
    clock: SystemClock,
    /// The low-share task queue of [`Shard::spawn_background`], made on first use.
    background_queue: Cell<Option<glommio::TaskQueueHandle>>,
}

/// A shard's share of `queued.max.request.bytes`.
fn request_share(config: &Config, num_shards: usize) -> u64 {
    (config.queued_max_request_bytes / num_shards.max(1) as u64).max(1)
}

/// The background queue's CPU share against the default queue's 1000 (request handling).
const BACKGROUND_SHARES: usize = 250;

impl Shard {
    /// Bytes of requests this shard holds at most (`queued.max.request.bytes` / shards).
    pub fn request_share(&self) -> u64 {
        request_share(&self.config, self.num_shards)
    }

    /// Bytes of requests read and not yet answered on this shard.
    pub fn request_bytes_held(&self) -> u64 {
        self.request_share()
            .saturating_sub(self.request_bytes.available())
    }

    /// Jobs this shard has queued for other shards and not yet handed to the mesh.
    pub fn outbox_jobs(&self) -> usize {
        self.mesh.backlog().queued()
    }

    /// Resolves at once, unless this shard's outboxes hold a backlog (see [`mesh`]): then once
    /// it is down to half. Connections wait here before reading a request.
    pub async fn outbox_room(&self) {
        self.mesh.backlog().room().await
    }

    /// Bytes the fetch cache of this shard holds, and its budget.
    pub fn fetch_cache_bytes(&self) -> (usize, usize) {
        (
            self.fetch_cache.held_bytes(),
            self.fetch_cache.budget_bytes(),
        )
    }

    /// Whether this shard accepts clients (its logs are open and its listener started).
    pub fn is_serving(&self) -> bool {
        self.serving.get()
    }

    pub fn new(id: ShardId, num_shards: usize, config: Arc<Config>, mesh: mesh::Outboxes) -> Shard {
        Shard {
            fetch_cache: crate::storage::CacheSpace::new(config.fetch_cache_bytes),
            request_bytes: Rc::new(glommio::sync::Semaphore::new(request_share(
                &config, num_shards,
            ))),
            id,
            num_shards,
            config,
            snapshot: RefCell::new(Arc::default()),
            logs: RefCell::new(Default::default()),
            mesh,
            quorum: RefCell::new(None),
            producer_ids: Cell::new((0, 0)),
            reconcile: glommio::sync::Semaphore::new(1),
            shutting_down: Cell::new(false),
            services: RefCell::new(Vec::new()),
            on_snapshot: RefCell::new(None),
            background: RefCell::new(Vec::new()),
            listener: RefCell::new(Vec::new()),
            serving: std::cell::Cell::new(false),
            clock: Default::default(),
            background_queue: Cell::new(None),
        }
    }

    /// Spawns background work (timers, replication fetchers) into this shard's low-share task
    /// queue, so request handling, in the default queue, gets most of the CPU when both want
    /// it. Tasks spawned from there inherit the queue, except partition log writers, which
    /// always run in the default queue.
    pub fn spawn_background<T: 'static>(
        &self,
        future: impl Future<Output = T> + 'static,
    ) -> glommio::Task<T> {
        let queue = match self.background_queue.get() {
            Some(q) => q,
            None => {
                let q = glommio::executor().create_task_queue(
                    glommio::Shares::Static(BACKGROUND_SHARES),
                    glommio::Latency::NotImportant,
                    "background",
                );
                self.background_queue.set(Some(q));
                q
            }
        };
        glommio::spawn_local_into(future, queue)
            .unwrap_or_else(|e| panic!("background task queue of shard {:?}: {e}", self.id))
    }

    /// The executor that runs the metadata quorum (mesh peer after the data shards).
    pub fn metadata_core(&self) -> ShardId {
        ShardId(self.num_shards)
    }

    pub fn set_quorum(&self, quorum: Rc<Quorum>) {
        *self.quorum.borrow_mut() = Some(quorum);
    }

    /// The quorum, on the metadata core only.
    pub fn quorum(&self) -> Option<Rc<Quorum>> {
        self.quorum.borrow().clone()
    }

    /// Runs a metadata command on the active controller; returns once this node has applied
    /// it and every data shard here sees the result.
    pub fn execute(
        self: &Rc<Self>,
        cmd: Command,
    ) -> LocalBoxFuture<'static, Result<Reply, MetadataError>> {
        let call = self.invoke_on(self.metadata_core(), move |s| async move {
            let Some(q) = s.quorum() else {
                return Err(MetadataError::NotController("no metadata core".into()));
            };
            let r = q.execute(cmd).await;
            if r.is_ok() {
                s.publish_snapshot(q.image()).await;
            }
            r
        });
        Box::pin(async move {
            call.await
                .unwrap_or_else(|e| Err(MetadataError::NotController(e.to_string())))
        })
    }

    /// A producer id never handed out before in this cluster (from this node's block, a new
    /// block from the controller when it runs out). Runs on the metadata core.
    pub async fn next_producer_id(self: &Rc<Self>) -> Result<i64, MetadataError> {
        let (next, end) = self.producer_ids.get();
        if next < end {
            self.producer_ids.set((next + 1, end));
            return Ok(next);
        }
        let q = self
            .quorum()
            .ok_or_else(|| MetadataError::NotController("no metadata core".into()))?;
        match q
            .execute(Command::AllocateProducerIds {
                node: self.config.node_id,
            })
            .await?
        {
            Reply::ProducerIds { start, end } => {
                self.producer_ids.set((start + 1, end));
                Ok(start)
            }
            other => Err(MetadataError::NotController(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The metadata as this shard last saw it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The settings of `group`: the broker's group settings with the group's configs applied.
    pub fn group_settings(&self, group: &str) -> crate::config::group::GroupSettings {
        let snap = self.snapshot.borrow();
        crate::config::group::GroupSettings::of(&self.config.groups, snap.group_configs.get(group))
    }

    pub fn owner_of(&self, topic: &str, partition: i32) -> ShardId {
        owner_shard(topic, partition, self.num_shards)
    }

    /// The state subsystem `T` keeps on this shard, created on first use. Shards know nothing
    /// of the subsystems built on them (replication, groups); each keeps its per-shard state
    /// here, reached only from this shard's thread.
    pub fn service<T: Default + 'static>(&self) -> Rc<T> {
        if let Some(found) = self.services.borrow().iter().find(|s| s.is::<T>()) {
            if let Ok(t) = found.clone().downcast::<T>() {
                return t;
            }
        }
        let made = Rc::new(T::default());
        self.services.borrow_mut().push(made.clone());
        made
    }

    /// Sets what runs after each newer snapshot is installed on this data shard.
    pub fn set_snapshot_hook(&self, hook: SnapshotHook) {
        *self.on_snapshot.borrow_mut() = Some(hook);
    }

    /// The log of a partition this shard owns, if it is open.
    pub fn log(&self, tp: &TopicPartition) -> Option<Rc<PartitionLog>> {
        debug_assert_eq!(self.owner_of(&tp.topic, tp.partition), self.id);
        self.logs.borrow().get(tp).map(|o| o.log.clone())
    }

    /// Every log this shard owns (for retention and shutdown).
    pub fn all_logs(&self) -> Vec<(TopicPartition, Rc<PartitionLog>)> {
        self.logs
            .borrow()
            .iter()
            .map(|(tp, o)| (tp.clone(), o.log.clone()))
            .collect()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Runs `f` on shard `target` and returns its result.
    ///
    /// The work is queued before this returns (not when the future is first polled), and jobs
    /// for one shard run there in the order they were queued; `f`'s synchronous part runs in
    /// that order too. The produce path relies on this to append in request order.
    pub fn invoke_on<R, F, Fut>(
        self: &Rc<Self>,
        target: ShardId,
        f: F,
    ) -> LocalBoxFuture<'static, Result<R, ShardError>>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.id {
            let fut = f(self.clone());
            return Box::pin(async move { Ok(fut.await) });
        }
        // The answer travels back as a job too, and is handed to `rx` on this shard: a oneshot
        // completed from another thread would wake this task through glommio's foreign-waker
        // path, which double-frees under load (seen as aborts in the e2e benchmark).
        crate::metrics::count(|c| c.cross_shard_messages += 1);
        let (tx, rx) = futures::channel::oneshot::channel();
        let origin = self.id;
        let job: mesh::Job = Box::new(move |shard: Rc<Shard>| {
            let fut = f(shard.clone());
            Box::pin(async move {
                let result = fut.await;
                let reply: mesh::Job = Box::new(move |_| {
                    let _ = tx.send(result);
                    Box::pin(std::future::ready(()))
                });
                shard.mesh.push(origin, reply);
            })
        });
        self.mesh.push(target, job);
        Box::pin(async move { rx.await.map_err(|_| ShardError::PeerGone(target)) })
    }

    /// Runs `f` on every shard and collects the results in shard order.
    pub async fn invoke_on_all<R, F, Fut>(self: &Rc<Self>, f: F) -> Vec<Result<R, ShardError>>
    where
        R: Send + 'static,
        F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let calls: Vec<_> = (0..self.num_shards)
            .map(|i| self.invoke_on(ShardId(i), f.clone()))
            .collect();
        futures::future::join_all(calls).await
    }

    /// Installs a newer snapshot: deletes the logs of partitions that are gone, opens the logs
    /// of new partitions this shard owns, then makes the snapshot visible to handlers.
    pub async fn apply_snapshot(self: &Rc<Self>, snap: Arc<Snapshot>) {
        if self.reconcile.acquire(1).await.is_err() {
            return;
        }
        let newer = {
            let cur = self.snapshot.borrow();
            snap.version > cur.version
                || (snap.version == cur.version && snap.controller != cur.controller)
        };
        if newer {
            self.drop_removed_logs(&snap).await;
            self.open_new_logs(&snap).await;
            crate::metrics::retain_topics(|t| snap.topic(t).is_some());
            *self.snapshot.borrow_mut() = snap.clone();
            let hook = self.on_snapshot.borrow().clone();
            if let (true, Some(hook)) = (self.id.0 < self.num_shards, hook) {
                hook(self.clone(), snap).await;
            }
        }
        self.reconcile.signal(1);
    }

    /// Makes `snap` visible on every data shard (each opens or deletes the logs it owns first)
    /// and returns once all have it, so a client that created a topic can use it on any
    /// connection.
    pub async fn publish_snapshot(self: &Rc<Self>, snap: Arc<Snapshot>) {
        let results = self
            .invoke_on_all(move |s| {
                let snap = snap.clone();
                async move { s.apply_snapshot(snap).await }
            })
            .await;
        for r in results {
            if let Err(e) = r {
                tracing::error!(error = %e, "publishing metadata failed");
            }
        }
    }

    async fn drop_removed_logs(&self, snap: &Snapshot) {
        let gone: Vec<(TopicPartition, OwnedLog)> = {
            let mut logs = self.logs.borrow_mut();
            let keys: Vec<TopicPartition> = logs
                .iter()
                .filter(|(tp, o)| {
                    snap.topic(&tp.topic).is_none_or(|t| {
                        t.id != o.topic_id
                            || t.partition(tp.partition)
                                .is_none_or(|p| !p.replicas.contains(&self.config.node_id))
                    })
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| logs.remove(&k).map(|o| (k, o)))
                .collect()
        };
        for (tp, owned) in gone {
            if let Err(e) = owned.log.delete().await {
                tracing::error!(partition = %tp, error = %e, "deleting partition log failed");
            } else {
                tracing::info!(partition = %tp, "deleted partition log");
            }
        }
    }

    async fn open_new_logs(&self, snap: &Snapshot) {
        for t in snap.topics.values() {
            for (p, meta) in t.assignments.iter().enumerate() {
                let p = p as i32;
                let tp = TopicPartition::new(t.name.clone(), p);
                if self.owner_of(&t.name, p) != self.id
                    || !meta.replicas.contains(&self.config.node_id)
                {
                    continue;
                }
                let known = self.logs.borrow().get(&tp).map(|o| o.topic_id);
                match known {
                    Some(id) if id == t.id => {
                        if let Some(o) = self.logs.borrow().get(&tp) {
                            o.log.update_config(t.log_config.clone());
                        }
                        continue;
                    }
                    _ => {}
                }
                let dir =
                    crate::storage::data_dir::partition_dir(&self.config.log_dirs, &tp.dir_name());
                let opened = PartitionLog::open_in(
                    dir,
                    t.log_config.clone(),
                    self.fetch_cache.clone(),
                    self.now_ms(),
                )
                .await;
                match opened {
                    Ok(log) => {
                        self.logs.borrow_mut().insert(
                            tp,
                            OwnedLog {
                                topic_id: t.id,
                                log,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "cannot open partition log")
                    }
                }
            }
        }
    }

    /// Closes every log this shard owns, writing what is pending.
    pub async fn close_logs(&self) {
        self.shutting_down.set(true);
        let logs: Vec<(TopicPartition, OwnedLog)> = self.logs.borrow_mut().drain().collect();
        for (tp, owned) in logs {
            if let Err(e) = owned.log.close().await {
                tracing::error!(partition = %tp, error = %e, "closing partition log failed");
            }
        }
    }
}
