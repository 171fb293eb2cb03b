//! The composition root: pre-flight checks, the executors (one pinned per data shard, plus the
//! metadata core that runs the controller quorum), the start-up order (metadata, then logs and
//! replication, then listeners), and clean shutdown on a signal. The only module that knows
//! every other one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;

use crate::config::Config;
use crate::shard::mesh::{self, Job};

mod admin;
mod boot;
pub mod report;

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
    raise_nofile_limit();
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

/// Lifts the soft RLIMIT_NOFILE to the hard limit: every client connection is a descriptor,
/// and the usual soft limit (1024) would refuse clients long before `max.connections`.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!(
                    soft = lim.rlim_cur,
                    "cannot raise the open-file limit to its hard limit"
                );
            }
        }
    }
}

/// How often a shard checks whether a stop signal came.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long start-up waits for a port that still answers, which is what a broker killed a
/// moment ago leaves behind while the kernel tears its io_uring and sockets down.
const PORT_WAIT: Duration = Duration::from_secs(5);

/// Loads every TLS listener's key material, parses its principal mapping rules and builds the
/// inter-broker client's TLS and SASL settings now, so a bad file, rule or login stops the
/// start naming it.
fn check_tls(config: &Config) -> Result<(), StartError> {
    for l in config.client_listeners() {
        let rules = config
            .security
            .value(Some(&l.name), "ssl.principal.mapping.rules")
            .unwrap_or_default();
        crate::security::principal::PrincipalMapper::parse(&rules).map_err(|e| {
            StartError::Environment(format!(
                "setting `ssl.principal.mapping.rules` of listener {}: {e}",
                l.name
            ))
        })?;
        if l.protocol.is_tls() {
            crate::security::tls::server_config(&config.security, &l.name)
                .map_err(|e| StartError::Environment(e.to_string()))?;
        }
    }
    // How this broker will reach the others, so that missing credentials stop the start.
    crate::client::ClientSecurity::inter_broker(config).map_err(StartError::Environment)?;
    if let Some(name) = config.cluster.controller_listener_names.first() {
        if config.security.protocol_of(name) == Some(crate::config::SecurityProtocol::Ssl) {
            crate::security::tls::controller_links(&config.security, name)
                .map_err(|e| StartError::Environment(e.to_string()))?;
        }
    }
    Ok(())
}

/// Refuses to share the port with another broker: SO_REUSEPORT would let two processes bind it
/// and split the connections between them.
fn check_port_free(config: &Config) -> Result<(), StartError> {
    if let Some(c) = config.controller_listener {
        check_addr_free(c)?;
    }
    for l in config.client_listeners() {
        check_addr_free(l.addr)?;
    }
    Ok(())
}

/// The admin listener binds with SO_REUSEPORT too, so a second broker would share it
/// silently. Set explicitly, its address must come free as the client listener's must; the
/// default one, when another broker answers there, is left off with a warning.
fn check_admin_free(config: &mut Config) -> Result<(), StartError> {
    let Some(addr) = config.admin_listener else {
        return Ok(());
    };
    if config.is_explicit("admin.listeners") {
        return check_addr_free(addr);
    }
    if answers(addr) {
        tracing::warn!(%addr, "admin listener not started: another process answers there (set admin.listeners to another address, or to nothing)");
        config.admin_listener = None;
    }
    Ok(())
}

fn answers(addr: std::net::SocketAddr) -> bool {
    let probe = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
}

fn check_addr_free(addr: std::net::SocketAddr) -> Result<(), StartError> {
    let start = std::time::Instant::now();
    while answers(addr) {
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
    let _data_dirs = crate::storage::data_dir::open_all(&config.log_dirs)
        .map_err(|e| StartError::Io(e.to_string()))?;
    check_tls(&config)?;
    check_port_free(&config)?;
    let mut config = config;
    check_admin_free(&mut config)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let num_shards = if config.num_shards == 0 {
        cpus
    } else {
        config.num_shards
    };
    let config = Arc::new(config);
    // The data shards, and the metadata core after them (mesh peer `num_shards`).
    let mesh = MeshBuilder::<Job, _>::full(num_shards + 1, mesh::MESH_CHANNEL_CAPACITY);
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
            .spawn(move || boot::shard_main(config, mesh, num_shards, stop_rx))
            .map_err(|e| StartError::Environment(format!("starting shard {i}: {e}")))?;
        handles.push(handle);
    }
    // Spawned last: glommio orders mesh peers by executor creation, so this one is peer
    // `num_shards`, after the data shards.
    {
        let (config, mesh, stop_rx) = (config.clone(), mesh.clone(), stop.clone());
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name("metadata")
            .io_memory(config.io_memory_bytes)
            .spawn(move || boot::controller_main(config, mesh, num_shards, stop_rx))
            .map_err(|e| StartError::Environment(format!("starting the metadata core: {e}")))?;
        handles.push(handle);
    }
    spawn_signal_thread(set, stop);
    tracing::info!(
        listener = %config.listener,
        shards = num_shards,
        log_dirs = %config.get("log.dirs").unwrap_or_default(),
        "gregor started"
    );
    for h in handles {
        h.join()
            .map_err(|e| StartError::Io(format!("shard stopped: {e}")))?;
    }
    tracing::info!("gregor stopped");
    Ok(())
}
