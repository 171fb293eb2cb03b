//! What each executor does from start to stop.
//!
//! The metadata core starts the quorum, waits for an active controller, makes sure the cluster
//! exists and this broker is registered, then publishes the image to the data shards (which
//! open and recover the logs they own) and opens the listeners. From then on it heartbeats to
//! the active controller and, there, brings preferred leaders back.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder};
use uuid::Uuid;

use super::STOP_POLL;
use crate::config::Config;
use crate::metadata::raft::transport::LinkTls;
use crate::metadata::{Command, MetadataError, Quorum, QuorumConfig, Settings, Snapshot};
use crate::shard::mesh::{self, Job, Outboxes};
use crate::shard::Shard;
use crate::types::ShardId;

/// Start-up failures leave the broker half-built; stop the process with the reason rather
/// than serve a partial set of partitions.
pub fn fatal_start(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("cannot start: {what}: {e}");
    eprintln!("gregor: cannot start: {what}: {e}");
    std::process::exit(1);
}

async fn join_mesh(
    config: Arc<Config>,
    mesh: MeshBuilder<Job, Full>,
    num_shards: usize,
) -> Rc<Shard> {
    let (senders, receivers) = match mesh.join().await {
        Ok(x) => x,
        Err(e) => fatal_start("joining the shard mesh", e),
    };
    let id = ShardId(senders.peer_id());
    let shard = Rc::new(Shard::new(id, num_shards, config, Outboxes::start(senders)));
    mesh::start_receivers(receivers, shard.clone());
    shard
}

async fn wait_for_stop(stop: &AtomicBool) {
    // Polled rather than signalled: a waker woken from the signal thread would go through
    // glommio's foreign-wake path (see Shard::invoke_on).
    while !stop.load(Ordering::Acquire) {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// A data shard: serves what the metadata core hands it until the stop signal.
pub async fn shard_main(
    config: Arc<Config>,
    mesh: MeshBuilder<Job, Full>,
    num_shards: usize,
    stop: Arc<AtomicBool>,
) {
    let shard = join_mesh(config, mesh, num_shards).await;
    assert!(
        shard.id.0 < num_shards,
        "a data shard joined the mesh as peer {}",
        shard.id.0
    );
    shard.set_snapshot_hook(Rc::new(|s, snap| Box::pin(switch_roles(s, snap))));
    crate::txn::coordinator::set_marker_sender(&shard, crate::server::txn_marker_sender());
    crate::share::set_persister(&shard, crate::server::share_persister());
    if shard.config.cluster.broker {
        crate::server::bind_listener(&shard);
    }
    wait_for_stop(&stop).await;
    crate::server::stop_listener(&shard);
    shard.close_logs().await;
}

/// Gives each replica on `shard` the role `snap` says, and moves the group coordinator of a
/// `__consumer_offsets` partition, and the transaction coordinator of a `__transaction_state`
/// partition, with its leadership (a new leader loads the groups or transactions).
async fn switch_roles(shard: Rc<Shard>, snap: Arc<Snapshot>) {
    use crate::group::{coordinator, OFFSETS_TOPIC};
    use crate::replication::roles::{self, RoleChange};
    use crate::txn::coordinator::{self as txn, TXN_TOPIC};
    for change in roles::reconcile(&shard, &snap).await {
        match change {
            RoleChange::Leading(tp) if tp.topic == OFFSETS_TOPIC => {
                coordinator::load_partition(shard.clone(), tp.partition).await
            }
            RoleChange::StoppedLeading(tp) if tp.topic == OFFSETS_TOPIC => {
                coordinator::unload_partition(&shard, tp.partition)
            }
            RoleChange::Leading(tp) if tp.topic == TXN_TOPIC => {
                txn::load_partition(shard.clone(), tp.partition).await
            }
            RoleChange::StoppedLeading(tp) if tp.topic == TXN_TOPIC => {
                txn::unload_partition(&shard, tp.partition)
            }
            _ => {}
        }
    }
}

/// The metadata core: the quorum, registration, heartbeats, publication to the shards.
pub async fn controller_main(
    config: Arc<Config>,
    mesh: MeshBuilder<Job, Full>,
    num_shards: usize,
    stop: Arc<AtomicBool>,
) {
    let shard = join_mesh(config.clone(), mesh, num_shards).await;
    assert_eq!(
        shard.id.0, num_shards,
        "the metadata core must be the last mesh peer"
    );
    // Health answers while the broker starts; ready says when it is done.
    let admin = super::admin::bind(&shard)
        .unwrap_or_else(|e| fatal_start("binding the admin listener", e))
        .map(|l| glommio::spawn_local(super::admin::serve(shard.clone(), l)));
    let quorum = start_quorum(&shard);
    shard.set_quorum(quorum.clone());
    let incarnation = Uuid::new_v4();
    // Heartbeats run from registration on, start-up included (as Kafka's broker lifecycle
    // does): a start-up longer than the session must not get the broker fenced the moment it
    // is unfenced, which moved its new leaderships away again at once.
    let started = Rc::new(Cell::new(false));
    let heartbeats = glommio::spawn_local(heartbeat_loop(
        shard.clone(),
        quorum.clone(),
        incarnation,
        started.clone(),
    ));
    boot(&shard, &quorum, incarnation).await;
    started.set(true);
    let rebalance = glommio::spawn_local(preferred_leader_loop(shard.clone(), quorum.clone()));
    wait_for_stop(&stop).await;
    drop(admin);
    drop(heartbeats);
    drop(rebalance);
}

fn start_quorum(shard: &Rc<Shard>) -> Rc<Quorum> {
    let config = &shard.config;
    let node = config.node_id;
    let mut voters = config.cluster.voters.clone();
    if voters.is_empty() {
        // A quorum of one: no controller listener, no links.
        let any = config.controller_listener.unwrap_or(config.listener);
        voters.insert(node, any);
    }
    let listener = match (config.controller_listener, voters.len() > 1) {
        (Some(addr), true) if config.cluster.controller => {
            match glommio::net::TcpListener::bind(addr) {
                Ok(l) => Some(l),
                Err(e) => fatal_start(&format!("controller listener {addr}"), e),
            }
        }
        _ => None,
    };
    let legacy = crate::metadata::legacy::migrate(config.metadata_log_dir(), node, &config.log)
        .unwrap_or_else(|e| fatal_start("migrating metadata.log", e));
    let qc = QuorumConfig {
        node,
        voters,
        controller: config.cluster.controller,
        dir: config.metadata_log_dir().join("__cluster_metadata-0"),
        settings: Settings {
            defaults: config.log.clone(),
            default_replication_factor: config.default_replication_factor,
            groups: config.groups.clone(),
        },
        session_timeout: Duration::from_millis(config.cluster.broker_session_timeout_ms),
        heartbeat_interval: Duration::from_millis(config.cluster.broker_heartbeat_interval_ms),
        tls: controller_link_tls(config),
    };
    let publisher = shard.clone();
    let publish = Box::new(move |snap: Arc<Snapshot>| {
        let s = publisher.clone();
        glommio::spawn_local(async move { s.publish_snapshot(snap).await }).detach();
    });
    Quorum::start(qc, listener, publish, legacy)
        .unwrap_or_else(|e| fatal_start("opening the metadata log", e))
}

/// Mutual TLS for the controller links when the controller listener is SSL (checked at
/// start-up).
fn controller_link_tls(config: &Config) -> Option<LinkTls> {
    let name = config.cluster.controller_listener_names.first()?;
    if config.security.protocol_of(name) != Some(crate::config::SecurityProtocol::Ssl) {
        return None;
    }
    let (server, client) = crate::security::tls::controller_links(&config.security, name)
        .unwrap_or_else(|e| fatal_start("the controller listener's TLS", e));
    Some(LinkTls { server, client })
}

/// Retries `cmd` until the active controller takes it (it may not be elected yet).
async fn until_done(quorum: &Rc<Quorum>, what: &str, cmd: Command) {
    let mut tries = 0u32;
    loop {
        match quorum.execute(cmd.clone()).await {
            Ok(_) => return,
            Err(MetadataError::NotController(why)) => {
                tries += 1;
                if tries % 10 == 1 {
                    tracing::info!(%why, "{what}: waiting for an active controller");
                }
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => fatal_start(what, e),
        }
    }
}

async fn boot(shard: &Rc<Shard>, quorum: &Rc<Quorum>, incarnation: Uuid) {
    let config = &shard.config;
    let cluster_id = Uuid::new_v4().simple().to_string();
    until_done(
        quorum,
        "creating the cluster",
        Command::InitCluster { cluster_id },
    )
    .await;
    if config.cluster.broker {
        let (host, port) = config.advertised_listener.clone();
        let register = Command::RegisterBroker {
            node: config.node_id,
            host,
            port,
            incarnation,
            rack: None,
            endpoints: endpoints(config),
        };
        until_done(quorum, "registering this broker", register).await;
        // Serve only from an image that has this registration in it: what the controller
        // decided before it (leaderships moved away while this broker was gone) is in it too.
        wait_for_own_registration(quorum, config.node_id, incarnation, false).await;
    }
    ensure_offsets_topic(shard, quorum).await;
    ensure_txn_topic(shard, quorum).await;
    let snap = quorum.image();
    shard.publish_snapshot(snap).await;
    // The newest image, not the one published above: topics created meanwhile already have
    // their directories, and an older image would call them strays.
    remove_stray_partition_dirs(config, &quorum.image());
    if !config.cluster.broker {
        return;
    }
    // Logs open: now leaderships may come here. As Kafka's broker does, clients are let in
    // only once this broker is unfenced and its shards hold the image that says so (with the
    // leaders the unfencing elected), so none sees this broker's partitions without a leader.
    let unfence = Command::UnfenceBroker {
        node: config.node_id,
        incarnation,
    };
    until_done(quorum, "unfencing this broker", unfence).await;
    wait_for_own_registration(quorum, config.node_id, incarnation, true).await;
    shard.publish_snapshot(quorum.image()).await;
    for r in shard
        .invoke_on_all(|s| async move { crate::server::start_listener(&s) })
        .await
    {
        if let Err(e) = r {
            fatal_start("starting listeners", e);
        }
    }
    // A fenced broker does not count for the offsets topic's replicas: now it does.
    ensure_offsets_topic(shard, quorum).await;
    ensure_txn_topic(shard, quorum).await;
}

/// Waits until the image has this incarnation registered (and unfenced, if `unfenced`).
async fn wait_for_own_registration(
    quorum: &Quorum,
    me: crate::types::NodeId,
    incarnation: Uuid,
    unfenced: bool,
) {
    while !quorum
        .image()
        .brokers
        .get(&me)
        .is_some_and(|b| b.incarnation == incarnation && (!unfenced || !b.fenced))
    {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `__consumer_offsets` (compacted, offsets.topic.* settings) once enough brokers are
/// up for its replication factor (offsets.topic.replication.factor, capped at the voters).
pub async fn ensure_offsets_topic(shard: &Rc<Shard>, quorum: &Rc<Quorum>) {
    let config = &shard.config;
    if quorum.image().topic(crate::group::OFFSETS_TOPIC).is_some() {
        return;
    }
    let expected = config.cluster.voters.len().max(1);
    let rf = (config.cluster.offsets_topic_replication_factor as usize).min(expected);
    if quorum.image().live_brokers().count() < rf {
        return;
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        config.groups.offsets_topic_segment_bytes.to_string(),
    );
    let cmd = Command::CreateTopic {
        name: crate::group::OFFSETS_TOPIC.to_string(),
        partitions: config.groups.offsets_topic_num_partitions,
        replication_factor: rf as i16,
        configs,
        validate_only: false,
    };
    match quorum.execute(cmd).await {
        Ok(_) | Err(MetadataError::TopicExists(_)) => {}
        Err(e) => tracing::warn!(error = %e, "creating __consumer_offsets failed; will retry"),
    }
}

/// Creates `__transaction_state` (compacted, transaction.state.log.* settings) once enough
/// brokers are up for its replication factor (capped at the voters, as the offsets topic's).
pub async fn ensure_txn_topic(shard: &Rc<Shard>, quorum: &Rc<Quorum>) {
    use crate::txn::coordinator::TXN_TOPIC;
    let config = &shard.config;
    if quorum.image().topic(TXN_TOPIC).is_some() {
        return;
    }
    let expected = config.cluster.voters.len().max(1);
    let rf = (config.txn.log_replication_factor as usize).min(expected);
    if quorum.image().live_brokers().count() < rf {
        return;
    }
    let min_isr = (config.txn.log_min_isr as usize).min(rf);
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("compression.type".to_string(), "uncompressed".to_string());
    configs.insert("min.insync.replicas".to_string(), min_isr.to_string());
    configs.insert(
        "segment.bytes".to_string(),
        config.txn.log_segment_bytes.to_string(),
    );
    let cmd = Command::CreateTopic {
        name: TXN_TOPIC.to_string(),
        partitions: config.txn.log_num_partitions,
        replication_factor: rf as i16,
        configs,
        validate_only: false,
    };
    match quorum.execute(cmd).await {
        Ok(_) | Err(MetadataError::TopicExists(_)) => {}
        Err(e) => tracing::warn!(error = %e, "creating __transaction_state failed; will retry"),
    }
}

/// Heartbeats to the active controller; registers again after being fenced.
async fn heartbeat_loop(
    shard: Rc<Shard>,
    quorum: Rc<Quorum>,
    incarnation: Uuid,
    started: Rc<Cell<bool>>,
) {
    let config = shard.config.clone();
    if !config.cluster.broker {
        return;
    }
    let every = Duration::from_millis(config.cluster.broker_heartbeat_interval_ms);
    let registered = Cell::new(true);
    loop {
        glommio::timer::sleep(every).await;
        let answer = quorum.heartbeat(incarnation).await;
        if !started.get() {
            // Starting up: the heartbeat keeps the session; being fenced (not yet registered,
            // or registered and not yet unfenced) is expected, and start-up itself registers
            // and unfences.
            continue;
        }
        match answer {
            Some(true) => registered.set(true),
            Some(false) => {
                if registered.replace(false) {
                    tracing::warn!("this broker was fenced: registering again");
                }
                let (host, port) = config.advertised_listener.clone();
                let cmd = Command::RegisterBroker {
                    node: config.node_id,
                    host,
                    port,
                    incarnation,
                    rack: None,
                    endpoints: endpoints(&config),
                };
                if let Err(e) = quorum.execute(cmd).await {
                    tracing::warn!(error = %e, "registering again failed");
                    continue;
                }
                // This broker already serves: it asks to be unfenced at once.
                let unfence = Command::UnfenceBroker {
                    node: config.node_id,
                    incarnation,
                };
                if let Err(e) = quorum.execute(unfence).await {
                    tracing::warn!(error = %e, "unfencing after registering again failed");
                }
            }
            None => {}
        }
        ensure_offsets_topic(&shard, &quorum).await;
        ensure_txn_topic(&shard, &quorum).await;
    }
}

/// On the active controller: leadership returns to preferred replicas that are back in sync.
async fn preferred_leader_loop(shard: Rc<Shard>, quorum: Rc<Quorum>) {
    let cluster = &shard.config.cluster;
    if !cluster.auto_leader_rebalance_enable {
        return;
    }
    let every = Duration::from_secs(cluster.leader_imbalance_check_interval_seconds);
    loop {
        glommio::timer::sleep(every).await;
        if quorum.is_leader() {
            if let Err(e) = quorum.execute(Command::ElectPreferredLeaders).await {
                tracing::debug!(error = %e, "preferred leader election failed");
            }
        }
    }
}

/// A crash between deleting a topic and removing its directories leaves them behind.
fn remove_stray_partition_dirs(config: &Config, snap: &Snapshot) {
    let me = config.node_id;
    let live: HashSet<String> = snap
        .topics
        .values()
        .flat_map(|t| {
            t.assignments
                .iter()
                .enumerate()
                .filter(|(_, p)| p.replicas.contains(&me))
                .map(move |(p, _)| format!("{}-{p}", t.name))
        })
        .collect();
    let entries = config
        .log_dirs
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_partition_dir =
            entry.path().is_dir() && crate::storage::data_dir::is_partition_dir_name(&name);
        if is_partition_dir && !live.contains(&name) {
            tracing::warn!(dir = %name, "removing directory of a deleted partition");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::error!(dir = %name, error = %e, "cannot remove");
            }
        }
    }
}

/// Every client listener's advertised address, as this broker registers them.
fn endpoints(config: &Config) -> Vec<crate::metadata::image::Endpoint> {
    config
        .client_listeners()
        .into_iter()
        .map(|l| crate::metadata::image::Endpoint {
            listener: l.name,
            host: l.advertised.0,
            port: l.advertised.1,
        })
        .collect()
}
