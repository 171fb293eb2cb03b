//! The client-facing edge: listeners, connections and one handler module per API family.
//!
//! Handlers translate kafka-protocol wire structs into domain calls on the shards and back;
//! nothing below this module sees a wire struct. Error codes are chosen in [`errors`] only.

mod access;
mod acls;
mod admin;
mod authorized_ops;
mod cluster;
mod configs;
mod connection;
mod consumer_groups;
mod epochs;
mod errors;
mod fetch;
mod fetch_frame;
mod framing;
mod groups;
mod init_producer;
mod limits;
mod markers;
mod offsets;
mod produce;
mod producers;
mod records;
mod share_fetch;
mod share_groups;
mod share_persister;
mod transactions;
mod txn_markers;
mod users;
mod verifying;

pub use share_persister::persister as share_persister;
pub use txn_markers::sender as txn_marker_sender;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::protocol::Request;
use crate::shard::Shard;
use crate::types::{ShardId, TopicPartition};

/// What a handler produced for one request.
pub enum Outcome {
    /// A framed response to write.
    Reply(bytes::Bytes),
    /// A framed response in pieces, written in place (a Fetch response around its records).
    Chunks(Vec<crate::storage::Chunk>),
    /// Nothing to write (produce with acks=0).
    NoReply,
    /// Close the connection after the responses before this one (Kafka's answer to requests it
    /// cannot parse, and to failed acks=0 produces).
    Close(String),
}

/// Starts handling `req`. The synchronous part of the handler (validation, and for produce the
/// appends themselves) runs before this returns, so requests on one connection take effect in
/// the order they arrived even though their responses are awaited concurrently.
///
/// Handlers that wait on others (produce for acks=all, a long-polling fetch) add the time they
/// waited to `remote` (Kafka's RemoteTimeMs).
pub fn dispatch(
    shard: &Rc<Shard>,
    req: Request,
    remote: &Remote,
) -> LocalBoxFuture<'static, Outcome> {
    match req.api_key {
        ApiKey::ApiVersions => cluster::api_versions(&req),
        ApiKey::Metadata => cluster::metadata(shard, req),
        ApiKey::DescribeCluster => cluster::describe_cluster(shard, &req),
        ApiKey::DescribeQuorum => cluster::describe_quorum(shard, req),
        ApiKey::Produce => produce::handle(shard, req, remote.clone()),
        ApiKey::Fetch => fetch::handle(shard, req, remote.clone()),
        ApiKey::ListOffsets => offsets::handle(shard, req),
        ApiKey::CreateTopics => admin::create_topics(shard, req),
        ApiKey::DeleteTopics => admin::delete_topics(shard, req),
        ApiKey::CreatePartitions => admin::create_partitions(shard, req),
        ApiKey::DescribeConfigs => configs::describe_configs(shard, &req),
        ApiKey::AlterConfigs => configs::alter_configs(shard, req),
        ApiKey::IncrementalAlterConfigs => configs::incremental_alter_configs(shard, req),
        ApiKey::FindCoordinator => groups::find_coordinator(shard, &req),
        ApiKey::JoinGroup => waits_for_group(groups::join_group(shard, req), remote),
        ApiKey::SyncGroup => waits_for_group(groups::sync_group(shard, req), remote),
        ApiKey::Heartbeat => groups::heartbeat(shard, req),
        ApiKey::LeaveGroup => groups::leave_group(shard, req),
        ApiKey::OffsetCommit => groups::offset_commit(shard, req),
        ApiKey::OffsetFetch => groups::offset_fetch(shard, req),
        ApiKey::DescribeGroups => groups::describe_groups(shard, req),
        ApiKey::ListGroups => groups::list_groups(shard, req),
        ApiKey::DeleteGroups => groups::delete_groups(shard, req),
        ApiKey::OffsetDelete => groups::offset_delete(shard, req),
        ApiKey::ConsumerGroupHeartbeat => consumer_groups::heartbeat(shard, req),
        ApiKey::ConsumerGroupDescribe => consumer_groups::describe(shard, req),
        ApiKey::ShareGroupHeartbeat => share_groups::heartbeat(shard, req),
        ApiKey::ShareGroupDescribe => share_groups::describe(shard, req),
        ApiKey::ShareFetch => share_fetch::fetch(shard, req, remote.clone()),
        ApiKey::ShareAcknowledge => share_fetch::acknowledge(shard, req),
        ApiKey::DescribeShareGroupOffsets => share_groups::describe_offsets(shard, req),
        ApiKey::AlterShareGroupOffsets => share_groups::alter_offsets(shard, req),
        ApiKey::DeleteShareGroupOffsets => share_groups::delete_offsets(shard, req),
        ApiKey::ReadShareGroupState => share_groups::read_state(shard, req),
        ApiKey::WriteShareGroupState => share_groups::write_state(shard, req),
        ApiKey::DeleteShareGroupState => share_groups::delete_state(shard, req),
        ApiKey::InitProducerId => init_producer::handle(shard, req),
        ApiKey::OffsetForLeaderEpoch => epochs::handle(shard, req),
        ApiKey::DeleteRecords => records::delete_records(shard, req),
        ApiKey::WriteTxnMarkers => markers::handle(shard, req),
        ApiKey::DescribeProducers => producers::handle(shard, req),
        ApiKey::AddPartitionsToTxn => transactions::add_partitions_to_txn(shard, req),
        ApiKey::AddOffsetsToTxn => transactions::add_offsets_to_txn(shard, req),
        ApiKey::EndTxn => transactions::end_txn(shard, req),
        ApiKey::TxnOffsetCommit => groups::txn_offset_commit(shard, req),
        ApiKey::DescribeTransactions => transactions::describe_transactions(shard, req),
        ApiKey::ListTransactions => transactions::list_transactions(shard, req),
        ApiKey::DescribeUserScramCredentials => users::describe(shard, req),
        ApiKey::AlterUserScramCredentials => users::alter(shard, req),
        ApiKey::DescribeAcls => acls::describe(shard, &req),
        ApiKey::CreateAcls => acls::create(shard, req),
        ApiKey::DeleteAcls => acls::delete(shard, req),
        other => ready(Outcome::Close(format!("{other:?} is not handled"))),
    }
}

/// JoinGroup and SyncGroup are parked until the rest of the group arrives (the rebalance);
/// as in Kafka, that wait is remote time. Their own work is a small part of it, so the whole
/// wait for the coordinator's answer is counted.
fn waits_for_group(
    handling: LocalBoxFuture<'static, Outcome>,
    remote: &Remote,
) -> LocalBoxFuture<'static, Outcome> {
    let remote = remote.clone();
    Box::pin(async move {
        let since = std::time::Instant::now();
        let outcome = handling.await;
        remote.set(since.elapsed());
        outcome
    })
}

/// Time a request spent waiting on others; see [`dispatch`].
pub type Remote = Rc<std::cell::Cell<Duration>>;

/// A partition a request names: its place in the response (topic index, partition index), the
/// partition, and the one number the request gives for it (a timestamp, an offset).
type PartitionAsk = ((usize, usize), TopicPartition, i64);

/// Sends each owner shard its partitions and runs `work` there; the answers of every slot. A
/// shard that cannot be reached answers `unreachable(error)` for each of its slots.
fn on_owners<A, W, Fut>(
    shard: &Rc<Shard>,
    by_owner: BTreeMap<ShardId, Vec<PartitionAsk>>,
    work: W,
    unreachable: fn(ResponseError) -> A,
) -> impl Future<Output = Vec<((usize, usize), A)>>
where
    A: Clone + Send + 'static,
    W: Fn(Rc<Shard>, Vec<PartitionAsk>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Vec<((usize, usize), A)>> + 'static,
{
    let calls: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, items)| {
            let slots: Vec<(usize, usize)> = items.iter().map(|(s, _, _)| *s).collect();
            let work = work.clone();
            let call = shard.invoke_on(owner, move |s| work(s, items));
            async move {
                call.await.unwrap_or_else(|e| {
                    let a = unreachable(errors::shard(&e));
                    slots.into_iter().map(|s| (s, a.clone())).collect()
                })
            }
        })
        .collect();
    async move {
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

fn ready(o: Outcome) -> LocalBoxFuture<'static, Outcome> {
    Box::pin(std::future::ready(o))
}

/// Encodes a response, or closes the connection if it cannot be encoded (a bug, logged).
fn reply<T: kafka_protocol::protocol::Encodable>(req: &Request, body: &T) -> Outcome {
    match crate::protocol::respond(req, body) {
        Ok(frame) => Outcome::Reply(frame),
        Err(e) => {
            tracing::error!(api = ?req.api_key, version = req.api_version, error = %e, "cannot encode response");
            Outcome::Close(format!("cannot encode {:?} response: {e}", req.api_key))
        }
    }
}

/// Binds this shard's listeners (SO_REUSEPORT: every shard binds the same addresses and the
/// kernel spreads connections) as soon as the shard exists, as Kafka binds its acceptors before
/// it enables request processing: a client that connects while the broker is still starting
/// (registered, opening its logs) waits in the backlog instead of being refused.
pub fn bind_listener(shard: &Rc<Shard>) {
    if shard.serving.get() {
        return;
    }
    let listeners = bind(shard);
    *shard.listener.borrow_mut() = listeners;
}

fn bind(shard: &Shard) -> Vec<glommio::net::TcpListener> {
    shard
        .config
        .client_listeners()
        .iter()
        .map(|l| match glommio::net::TcpListener::bind(l.addr) {
            Ok(bound) => bound,
            Err(e) => {
                eprintln!("gregor: cannot listen on {} ({}): {e}", l.addr, l.name);
                std::process::exit(1);
            }
        })
        .collect()
}

/// Counts a new connection, or closes it (by dropping it) if its address is over its limit.
/// At `max.connections` it waits for a slot, and this listener accepts no one meanwhile, as
/// Kafka's acceptor does.
async fn admit(
    quotas: &std::sync::Arc<limits::ConnectionQuotas>,
    stream: &glommio::net::TcpStream,
) -> Option<limits::Admission> {
    let peer = stream.peer_addr().ok()?;
    loop {
        match quotas.admit(peer.ip()) {
            Ok(a) => return Some(a),
            Err(limits::Refusal::Broker { .. }) => quotas.wait_for_slot().await,
            Err(why) => {
                tracing::info!(%peer, %why, "refusing connection");
                return None;
            }
        }
    }
}

/// Starts accepting on every client listener, with each listener's security: a listener whose
/// TLS material cannot be loaded stops the broker, naming the setting.
pub fn start_listener(shard: &Rc<Shard>) {
    shard.serving.set(true);
    let mut bound = std::mem::take(&mut *shard.listener.borrow_mut());
    if bound.is_empty() {
        bound = bind(shard);
    }
    let quotas = limits::broker_quotas(&shard.config.connections);
    let mut accepts = Vec::new();
    for (spec, listener) in shard.config.client_listeners().into_iter().zip(bound) {
        let edge = match connection::Listener::new(&shard.config, spec) {
            Ok(edge) => Rc::new(edge),
            Err(e) => {
                eprintln!("gregor: {e}");
                std::process::exit(1);
            }
        };
        let (accept_shard, quotas) = (shard.clone(), quotas.clone());
        accepts.push(glommio::spawn_local(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        let Some(admission) = admit(&quotas, &stream).await else {
                            continue;
                        };
                        let s = accept_shard.clone();
                        let edge = edge.clone();
                        glommio::spawn_local(connection::serve(s, stream, admission, edge))
                            .detach();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    // Timers yield to request handling (see Shard::spawn_background).
    let retention = shard.spawn_background(retention_loop(shard.clone()));
    let flush = shard.spawn_background(flush_loop(shard.clone()));
    let groups = shard.spawn_background(crate::group::coordinator::run_timers(shard.clone()));
    let txns = shard.spawn_background(crate::txn::coordinator::run_timers(shard.clone()));
    let replicas = shard.spawn_background(crate::replication::roles::run_ticks(shard.clone()));
    shard.background.borrow_mut().extend(
        accepts
            .into_iter()
            .chain([retention, flush, groups, txns, replicas]),
    );
    if shard.config.cleaner.enable {
        // The cleaner yields to request handling: a low share of the CPU when both want it.
        let queue = glommio::executor().create_task_queue(
            glommio::Shares::Static(CLEANER_SHARES),
            glommio::Latency::NotImportant,
            "cleaner",
        );
        match glommio::spawn_local_into(cleaner_loop(shard.clone()), queue) {
            Ok(task) => shard.background.borrow_mut().push(task),
            Err(e) => tracing::error!(error = %e, "cannot start the log cleaner"),
        }
    }
}

/// Stops accepting and stops background work; open connections end with the executor.
pub fn stop_listener(shard: &Rc<Shard>) {
    shard.listener.borrow_mut().clear();
    shard.background.borrow_mut().clear();
}

async fn retention_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config.retention_check_interval_ms);
    loop {
        glommio::timer::sleep(every).await;
        for (tp, log) in shard.all_logs() {
            // producer.id.expiration.ms is checked on the retention timer (Kafka checks it
            // every producer.id.expiration.check.interval.ms, 10 minutes by default).
            let expired = log.expire_producers(shard.now_ms());
            if expired > 0 {
                tracing::debug!(partition = %tp, producers = expired, "expired idle producers");
            }
            match log.apply_retention(shard.now_ms()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(partition = %tp, segments = n, "retention deleted segments")
                }
                Err(e) => tracing::error!(partition = %tp, error = %e, "retention failed"),
            }
        }
    }
}

/// The cleaner's CPU share against the default queue's 1000 (request handling).
const CLEANER_SHARES: usize = 100;

/// Compacts this shard's compacted logs, the dirtiest first, one pass at a time; sleeps
/// `log.cleaner.backoff.ms` when none needs it.
async fn cleaner_loop(shard: Rc<Shard>) {
    let config = &shard.config.cleaner;
    let settings = crate::storage::CleanerSettings {
        map_bytes: config.dedupe_buffer_size / shard.num_shards.max(1),
        io_max_bytes_per_second: config.io_max_bytes_per_second,
    };
    let backoff = Duration::from_millis(config.backoff_ms.max(10));
    loop {
        let now = shard.now_ms();
        let dirtiest = shard
            .all_logs()
            .into_iter()
            .filter_map(|(tp, log)| log.cleanable(now).map(|plan| (tp, log, plan)))
            .max_by(|a, b| {
                (a.2.overdue, a.2.dirty_ratio)
                    .partial_cmp(&(b.2.overdue, b.2.dirty_ratio))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        let Some((tp, log, plan)) = dirtiest else {
            glommio::timer::sleep(backoff).await;
            continue;
        };
        let started = std::time::Instant::now();
        match log.clean(&plan, &settings, now).await {
            Ok(stats) if stats.first_dirty_after <= plan.first_dirty => {
                // The log changed under the pass; try again later.
                glommio::timer::sleep(backoff).await;
            }
            Ok(stats) => tracing::info!(
                partition = %tp,
                dirty_ratio = plan.dirty_ratio,
                read = stats.bytes_read,
                written = stats.bytes_written,
                removed = stats.records_removed,
                segments = stats.segments_before,
                first_dirty = stats.first_dirty_after,
                ms = started.elapsed().as_millis() as u64,
                "cleaned log"
            ),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cleaning failed");
                glommio::timer::sleep(backoff).await;
            }
        }
    }
}

/// How often idle logs are checked against flush.ms.
const FLUSH_TICK: Duration = Duration::from_millis(50);

/// Syncs logs whose flush.ms has passed while no write came to trigger it.
async fn flush_loop(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(FLUSH_TICK).await;
        for (tp, log) in shard.all_logs() {
            if let Err(e) = log.sync_if_due(shard.now_ms()).await {
                tracing::error!(partition = %tp, error = %e, "flush failed");
            }
        }
    }
}
