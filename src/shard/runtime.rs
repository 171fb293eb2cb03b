//! Starting and stopping the shards: pre-flight checks, one pinned glommio executor per shard,
//! the start-up order (metadata, then logs, then listeners), and clean shutdown on a signal.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;

use super::mesh::{self, Job, Outboxes};
use super::Shard;
use crate::config::Config;
use crate::metadata::{Controller, MetadataLog};
use crate::types::ShardId;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("{0}")]
    Environment(String),
    #[error("{0}")]
    Io(String),
}

/// Glommio needs io_uring and some locked memory; find out now and say what to change, instead
/// of panicking deep inside the first executor.
fn preflight(config: &Config) -> Result<(), StartError> {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if v.trim() == "2" {
            return Err(StartError::Environment(
                "io_uring is disabled on this machine (kernel.io_uring_disabled=2); \
                 run `sysctl -w kernel.io_uring_disabled=0`"
                    .into(),
            ));
        }
    }
    raise_memlock_limit();
    let io_memory = config.io_memory_bytes;
    // The probe may panic inside glommio; its message is replaced by ours below.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(move || {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(io_memory)
            .make()
            .map(|ex| ex.run(async {}))
            .map_err(|e| e.to_string())
    });
    std::panic::set_hook(hook);
    let why = match probe {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => "the io_uring executor panicked while starting".to_string(),
    };
    Err(StartError::Environment(format!(
        "cannot start an io_uring executor: {why}. gregor needs io_uring (is it blocked by \
         kernel.io_uring_disabled or a container seccomp profile?) and {io_memory} bytes of \
         locked memory per shard (raise `ulimit -l`, e.g. `ulimit -l unlimited` or LimitMEMLOCK= \
         in a systemd unit, or lower io.memory.bytes)"
    )))
}

/// Lifts the soft RLIMIT_MEMLOCK to the hard limit; io_uring buffers count against it.
fn raise_memlock_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
        }
    }
}

/// How often a shard checks whether a stop signal came.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long start-up waits for a port that still answers, which is what a broker killed a
/// moment ago leaves behind while the kernel tears its io_uring and sockets down.
const PORT_WAIT: Duration = Duration::from_secs(5);

/// Refuses to share the port with another broker: SO_REUSEPORT would let two processes bind it
/// and split the connections between them.
fn check_port_free(config: &Config) -> Result<(), StartError> {
    let addr = config.listener;
    let probe = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
        if start.elapsed() > PORT_WAIT {
            return Err(StartError::Io(format!("address {addr} is already in use")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set; pthread_sigmask affects
    // only the calling thread (and the threads it spawns afterwards inherit it).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for SIGINT/SIGTERM on a thread of its own and tells every shard to stop. A second
/// signal more than a second later exits at once (one arriving sooner is the same stop sent to
/// the process and its group, as `timeout` and terminals do).
fn spawn_signal_thread(set: libc::sigset_t, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` holds signals blocked in every thread, so sigwait receives them here.
        unsafe { libc::sigwait(&set, &mut sig) };
        let first = std::time::Instant::now();
        tracing::info!(signal = sig, "stopping: closing logs");
        stop.store(true, Ordering::Release);
        loop {
            // SAFETY: as above.
            unsafe { libc::sigwait(&set, &mut sig) };
            if first.elapsed() > Duration::from_secs(1) {
                tracing::warn!("second signal: exiting without closing logs");
                std::process::exit(1);
            }
        }
    });
}

/// Runs the broker until a stop signal, then closes every log and returns.
pub fn run(config: Config) -> Result<(), StartError> {
    config
        .validate()
        .map_err(|e| StartError::Environment(e.to_string()))?;
    preflight(&config)?;
    // Held until this function returns: no second broker may open the directory meanwhile.
    let _data_dir = crate::storage::DataDir::open(&config.log_dirs)
        .map_err(|e| StartError::Io(e.to_string()))?;
    check_port_free(&config)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let num_shards = if config.num_shards == 0 {
        cpus
    } else {
        config.num_shards
    };
    let config = Arc::new(config);
    let mesh = MeshBuilder::<Job, _>::full(num_shards, mesh::MESH_CHANNEL_CAPACITY);
    let set = block_stop_signals();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for i in 0..num_shards {
        let stop_rx = stop.clone();
        let (config, mesh) = (config.clone(), mesh.clone());
        let placement = if num_shards <= cpus {
            Placement::Fixed(i)
        } else {
            Placement::Unbound
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{i}"))
            .io_memory(config.io_memory_bytes)
            .spawn(move || shard_main(config, mesh, num_shards, stop_rx))
            .map_err(|e| StartError::Environment(format!("starting shard {i}: {e}")))?;
        handles.push(handle);
    }
    spawn_signal_thread(set, stop);
    tracing::info!(
        listener = %config.listener,
        shards = num_shards,
        log_dirs = %config.log_dirs.display(),
        "gregor started"
    );
    for h in handles {
        h.join()
            .map_err(|e| StartError::Io(format!("shard stopped: {e}")))?;
    }
    tracing::info!("gregor stopped");
    Ok(())
}

/// Start-up failures inside a shard leave the broker half-built; stop the process with the
/// reason rather than serve a partial set of partitions.
fn fatal_start(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("cannot start: {what}: {e}");
    eprintln!("gregor: cannot start: {what}: {e}");
    std::process::exit(1);
}

async fn shard_main(
    config: Arc<Config>,
    mesh: MeshBuilder<Job, glommio::channels::channel_mesh::Full>,
    num_shards: usize,
    stop: Arc<AtomicBool>,
) {
    let (senders, receivers) = match mesh.join().await {
        Ok(x) => x,
        Err(e) => fatal_start("joining the shard mesh", e),
    };
    let id = ShardId(senders.peer_id());
    let controller = (id.0 == 0).then(|| open_controller(&config));
    let shard = Rc::new(Shard {
        id,
        num_shards,
        config: config.clone(),
        snapshot: RefCell::new(Arc::default()),
        logs: RefCell::new(Default::default()),
        mesh: Outboxes::start(senders),
        controller: controller.map(RefCell::new),
        reconcile: glommio::sync::Semaphore::new(1),
        shutting_down: Cell::new(false),
        producers: RefCell::new(Default::default()),
        coordinator: RefCell::new(Default::default()),
        background: RefCell::new(Vec::new()),
        clock: Default::default(),
    });
    mesh::start_receivers(receivers, shard.clone());
    if id.0 == 0 {
        boot_cluster(&shard).await;
    }
    // Polled rather than signalled: a waker woken from the signal thread would go through
    // glommio's foreign-wake path (see Shard::invoke_on).
    while !stop.load(Ordering::Acquire) {
        glommio::timer::sleep(STOP_POLL).await;
    }
    crate::server::stop_listener(&shard);
    shard.close_logs().await;
}

fn open_controller(config: &Config) -> Controller {
    let (log, records) = MetadataLog::open(&config.log_dirs)
        .unwrap_or_else(|e| fatal_start("opening the metadata log", e));
    Controller::open(log, records, config.log.clone())
        .unwrap_or_else(|e| fatal_start("loading metadata", e))
}

/// Shard 0, at start: publish the metadata to every shard (each opens and recovers the logs it
/// owns), remove directories of topics that no longer exist, then open the listeners.
async fn boot_cluster(shard: &Rc<Shard>) {
    let snap = shard
        .controller()
        .map(|c| ensure_offsets_topic(&shard.config, &mut c.borrow_mut()))
        .unwrap_or_else(|| fatal_start("boot", "shard 0 has no controller"));
    crate::server::publish_snapshot(shard, snap.clone()).await;
    remove_stray_partition_dirs(&shard.config, &snap);
    for r in shard
        .invoke_on_all(|s| async move { crate::group::coordinator::load(s).await })
        .await
    {
        if let Err(e) = r {
            fatal_start("loading consumer groups", e);
        }
    }
    for r in shard
        .invoke_on_all(|s| async move { crate::server::start_listener(&s) })
        .await
    {
        if let Err(e) = r {
            fatal_start("starting listeners", e);
        }
    }
}

/// Creates `__consumer_offsets` on first start (compacted, offsets.topic.* settings).
fn ensure_offsets_topic(config: &Config, c: &mut Controller) -> Arc<crate::metadata::Snapshot> {
    let snap = c.snapshot();
    if snap.topic(crate::group::OFFSETS_TOPIC).is_some() {
        return snap;
    }
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        config.groups.offsets_topic_segment_bytes.to_string(),
    );
    let topic = crate::metadata::CreateTopic {
        name: crate::group::OFFSETS_TOPIC.to_string(),
        partitions: config.groups.offsets_topic_num_partitions,
        replication_factor: 1,
        configs,
    };
    if let Err(e) = c.create_topic(topic, false) {
        fatal_start("creating __consumer_offsets", e);
    }
    c.snapshot()
}

/// A crash between deleting a topic and removing its directories leaves them behind.
fn remove_stray_partition_dirs(config: &Config, snap: &crate::metadata::Snapshot) {
    let live: HashSet<String> = snap
        .topics
        .values()
        .flat_map(|t| (0..t.partitions).map(move |p| format!("{}-{p}", t.name)))
        .collect();
    let Ok(entries) = std::fs::read_dir(&config.log_dirs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_partition_dir = entry.path().is_dir()
            && name
                .rsplit_once('-')
                .is_some_and(|(_, p)| p.parse::<u32>().is_ok());
        if is_partition_dir && !live.contains(&name) {
            tracing::warn!(dir = %name, "removing directory of a deleted partition");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::error!(dir = %name, error = %e, "cannot remove");
            }
        }
    }
}
