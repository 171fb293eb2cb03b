//! Shared harness for the integration tests: a real `gregor serve` process on 127.0.0.1 with its
//! own temp data dir, librdkafka client configs, and a raw-TCP Kafka client for bad-input tests.
//!
//! Every wait has a deadline, so a broken broker fails a test instead of hanging CI. A broker's
//! stderr goes to a file in its temp dir and is printed when the test that owns it panics.
#![allow(dead_code)]

pub mod clients;
pub mod cluster;
pub mod members;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};
use rdkafka::ClientConfig;

/// How long a broker may take to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean stop may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout on raw sockets.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub fn gregor_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gregor")
}

/// A free TCP port on 127.0.0.1 (bound then released; a race with another process is unlikely).
/// Starts `gregor serve` with an optional config file and `--set` settings, stdout and stderr
/// appended to `log` (RUST_LOG=info unless the caller's environment sets it).
pub fn spawn_serve(
    config_file: Option<&Path>,
    settings: &[(String, String)],
    log: std::fs::File,
) -> std::process::Child {
    let mut cmd = Command::new(gregor_bin());
    cmd.arg("serve");
    if let Some(f) = config_file {
        cmd.arg("--config").arg(f);
    }
    for (k, v) in settings {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("dup stderr file")))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", gregor_bin()))
}

/// A port for a broker to listen on. Taken below the kernel's ephemeral range (32768 and up
/// here), where neither a `bind(0)` nor an outgoing connection can take it between this call
/// and the broker's bind (a port from `bind(0)` could be, and a cluster test once failed with
/// "address already in use"). Each port is handed out once per test process, from an offset
/// that differs between processes, and only if it binds now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN);
}

/// A running `gregor serve` process.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    /// `--set` pairs given on every (re)start, listener and log.dirs included.
    settings: Vec<(String, String)>,
    child: Option<Child>,
    stderr_path: PathBuf,
    starts: u32,
    /// `--config FILE`, applied before the `--set` flags.
    config_file: Option<PathBuf>,
}

impl Broker {
    /// A broker with the test defaults (2 shards, auto-create on) plus `extra` settings.
    pub fn start(extra: &[(&str, &str)]) -> Broker {
        let mut settings = vec![("num.shards", "2")];
        settings.extend_from_slice(extra);
        Broker::start_raw(&settings)
    }

    /// A broker with only the listener and log.dirs set: everything else at its default.
    pub fn start_minimal() -> Broker {
        Broker::start_raw(&[])
    }

    /// A broker reading `file` (`--config`), then the listener, log.dirs and `extra` flags.
    pub fn start_with_config(file: &Path, extra: &[(&str, &str)]) -> Broker {
        Broker::start_inner(Some(file.to_path_buf()), extra)
    }

    fn start_raw(extra: &[(&str, &str)]) -> Broker {
        Broker::start_inner(None, extra)
    }

    /// A broker listening on PLAINTEXT (its `port`, which start-up waits for) and on
    /// `more_listeners` too (`NAME://127.0.0.1:PORT,...`).
    pub fn start_with_listeners(more_listeners: &str, extra: &[(&str, &str)]) -> Broker {
        let listeners = format!("PLAINTEXT://127.0.0.1:{},{more_listeners}", "{port}");
        let mut all = vec![("listeners", listeners.as_str())];
        all.extend_from_slice(extra);
        Broker::start_inner(None, &all)
    }

    fn start_inner(config_file: Option<PathBuf>, extra: &[(&str, &str)]) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("gregor-test-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        let mut settings = vec![
            (
                "listeners".to_string(),
                format!("PLAINTEXT://127.0.0.1:{port}"),
            ),
            ("log.dirs".to_string(), data.display().to_string()),
        ];
        for (k, v) in extra {
            settings.push((k.to_string(), v.replace("{port}", &port.to_string())));
        }
        let stderr_path = dir.path().join("broker.stderr");
        let mut b = Broker {
            port,
            dir,
            settings,
            child: None,
            stderr_path,
            starts: 0,
            config_file,
        };
        b.spawn();
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker's log.dirs.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory that lives as long as the broker (for test files).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<log.dirs>/<topic>-<partition>`.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir().join(format!("{topic}-{partition}"))
    }

    /// Everything the broker wrote to stderr so far, over all its starts.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Panics (with the exit status) if the broker process has died since it was started.
    pub fn assert_alive(&mut self, what: &str) {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            self.child = None;
            panic!("{what}: the broker process died ({status})");
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("open broker stderr file");
        writeln!(log, "===== gregor start #{} =====", self.starts).ok();
        self.child = Some(spawn_serve(
            self.config_file.as_deref(),
            &self.settings,
            log,
        ));
        self.wait_ready();
    }

    /// Waits until the port accepts and an ApiVersions round trip works.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_err = String::from("never tried");
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "gregor exited during start-up with {status}\n----- broker stderr -----\n{}",
                    self.stderr()
                );
            }
            match api_versions_round_trip(self.addr()) {
                Ok(()) => return,
                Err(e) => last_err = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let stderr = self.stderr();
        self.kill();
        panic!(
            "gregor did not answer ApiVersions on {} within {START_TIMEOUT:?}: {last_err}\n\
             ----- broker stderr -----\n{stderr}",
            self.bootstrap()
        );
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }

    /// Clean stop: SIGTERM, then wait. Panics (with stderr) if it does not exit 0 in time.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(libc::SIGTERM);
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "gregor exited with {status} after SIGTERM\n----- broker stderr -----\n{}",
                self.stderr()
            ),
            None => {
                let stderr = self.stderr();
                self.kill();
                panic!(
                    "gregor did not exit within {STOP_TIMEOUT:?} of SIGTERM\n\
                     ----- broker stderr -----\n{stderr}"
                );
            }
        }
    }

    /// Crash: SIGKILL, then reap, then wait until the kernel has released the listening socket.
    /// (A dead process's io_uring is torn down asynchronously and can hold the socket in LISTEN
    /// for a moment; gregor refuses to start while the port still accepts connections.)
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let addr = self.addr();
            let released = wait_until(Duration::from_secs(10), || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
            });
            if !released {
                eprintln!(
                    "warning: port {} still accepts connections 10 s after SIGKILL",
                    self.port
                );
            }
        }
    }

    /// Starts again on the same port and data dir (stops it cleanly first if running).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts again after a `stop()` or `kill()`, e.g. once the test has edited the files.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    // ----- librdkafka configs -----

    /// Producer settings every test shares: Java-compatible keyed partitioning, bounded waits.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("api.version.request", "true")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "60000")
            .set("request.timeout.ms", "30000")
            .set("socket.timeout.ms", "30000")
            .set("linger.ms", "5");
        c
    }

    /// Consumer settings for `assign`-only consumers: librdkafka wants a group.id even for
    /// `assign`, but with explicit start offsets and no commits the group is never joined.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("group.id", "gregor-tests")
            .set("api.version.request", "true")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("socket.timeout.ms", "30000")
            .set("fetch.wait.max.ms", "100");
        c
    }

    pub fn admin_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("api.version.request", "true")
            .set("socket.timeout.ms", "30000");
        c
    }

    /// A raw protocol connection to this broker.
    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.addr())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- gregor stderr ({}) -----\n{}\n----- end gregor stderr -----",
                self.stderr_path.display(),
                self.stderr()
            );
        }
    }
}

fn api_versions_round_trip(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("gregor-tests"))
        .with_client_software_version(StrBytes::from_static_str("0"));
    let frame = encode_request(&req, 3, 1);
    s.write_all(&frame).map_err(|e| format!("write: {e}"))?;
    let body = read_frame(&mut s).map_err(|e| format!("read: {e}"))?;
    let (corr, resp) = decode_response::<ApiVersionsRequest>(&body, 3)?;
    if corr != 1 {
        return Err(format!("correlation id {corr}, expected 1"));
    }
    if resp.error_code != 0 {
        return Err(format!("ApiVersions error {}", resp.error_code));
    }
    Ok(())
}

// ----- raw protocol -----

/// A size-prefixed request frame: header (version chosen by the API key) + body.
pub fn encode_request<R: Request>(req: &R, version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("gregor-tests")));
    let mut buf = BytesMut::new();
    encode_request_header_into_buffer(&mut buf, &header).expect("encode header");
    req.encode(&mut buf, version).expect("encode request");
    frame(&buf)
}

/// Prefixes `body` with its length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Reads one size-prefixed frame; an error on EOF, reset or timeout.
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(0..=256 << 20).contains(&len) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("response size {len}"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// Splits a response frame body into correlation id and decoded response.
pub fn decode_response<R: Request>(
    body: &[u8],
    version: i16,
) -> Result<(i32, R::Response), String> {
    let mut buf = Bytes::copy_from_slice(body);
    let hv = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut buf, hv).map_err(|e| format!("header: {e}"))?;
    let resp = <R::Response as Decodable>::decode(&mut buf, version)
        .map_err(|e| format!("decode {:?} v{version}: {e}", ApiKey::try_from(R::KEY)))?;
    Ok((header.correlation_id, resp))
}

/// A blocking raw Kafka connection for building exact (and broken) requests.
pub struct RawClient {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Sends bytes exactly as given (no size prefix added).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends a request and decodes its response, checking the correlation id.
    pub fn request<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let corr = self.next_correlation_id;
        self.next_correlation_id += 1;
        self.send_bytes(&encode_request(req, version, corr))
            .unwrap_or_else(|e| panic!("send {:?} v{version}: {e}", ApiKey::try_from(R::KEY)));
        let body = read_frame(&mut self.stream).unwrap_or_else(|e| {
            panic!(
                "no response to {:?} v{version}: {e}",
                ApiKey::try_from(R::KEY)
            )
        });
        let (got, resp) = decode_response::<R>(&body, version).unwrap();
        assert_eq!(got, corr, "correlation id");
        resp
    }

    /// Reads one raw response frame.
    pub fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        read_frame(&mut self.stream)
    }

    /// True if the broker closed (or reset) the connection within the IO timeout; false if it
    /// sent a response or kept the connection open without answering.
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 1];
        match self.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ),
        }
    }

    /// Panics unless the broker closes the connection.
    pub fn expect_closed(&mut self, what: &str) {
        assert!(
            self.is_closed_by_peer(),
            "{what}: the broker should close the connection"
        );
    }

    /// A healthy ApiVersions round trip on this connection.
    pub fn assert_served(&mut self, what: &str) {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("gregor-tests"))
            .with_client_software_version(StrBytes::from_static_str("0"));
        let resp = self.request(&req, 3);
        assert_eq!(
            resp.error_code, 0,
            "{what}: ApiVersions on a healthy connection"
        );
        assert!(!resp.api_keys.is_empty(), "{what}: ApiVersions lists APIs");
    }
}

// ----- records and partitioning -----

/// Java's `Utils.murmur2`, as librdkafka's `murmur2_random` partitioner implements it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java's default partitioner (and librdkafka's murmur2_random) picks for a key.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sizes of `.log` files in a partition dir, sorted by name (= base offset).
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Walks a segment file batch by batch with `gregor::record::scan`; returns the batch headers and
/// the number of bytes they cover. Stops at the end, at padding, or at the first bad batch.
pub fn walk_segment(bytes: &[u8]) -> (Vec<gregor::record::BatchHeader>, usize) {
    let mut pos = 0;
    let mut out = Vec::new();
    while let gregor::record::Scan::Batch(h) = gregor::record::scan(&bytes[pos..]) {
        pos += h.total_bytes();
        out.push(h);
    }
    (out, pos)
}

pub fn read_file(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    v
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw Fetch v12 at `offset`: the partition's error code and log start offset.
pub fn raw_fetch(broker: &Broker, topic: &str, offset: i64) -> (i16, i64) {
    let req = kafka_protocol::messages::FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            kafka_protocol::messages::fetch_request::FetchTopic::default()
                .with_topic(kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_string(topic.to_string()),
                ))
                .with_partitions(vec![
                    kafka_protocol::messages::fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(offset)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let resp = broker.raw().request(&req, 12);
    let p = &resp.responses[0].partitions[0];
    let _: &Option<bytes::Bytes> = &p.records;
    (p.error_code, p.log_start_offset)
}

/// A plain (non-idempotent, uncompressed) RecordBatch v2 holding `values`, keyed `k<i>`,
/// encoded by kafka-protocol.
pub fn plain_batch(values: &[Vec<u8>]) -> Bytes {
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let now = now_ms();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol batches records whose offset - sequence agree; the first has -1.
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.clone())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode batch");
    buf.freeze()
}

/// A Produce request of one batch to one partition.
pub fn produce_request(
    topic: &str,
    partition: i32,
    acks: i16,
    batch: Bytes,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    kafka_protocol::messages::ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

/// splitmix64: the seeded generator of the randomized tests (a seed replays a run).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints `<test> FAILED with <VAR>=<seed>` if the test panics anywhere while it lives.
pub struct SeedGuard {
    pub test: &'static str,
    pub var: &'static str,
    pub seed: u64,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{} FAILED with {}={}", self.test, self.var, self.seed);
        }
    }
}

/// Whether Debian's kcat is installed; CI installs it (.ci/run), so there its absence fails the
/// test, and elsewhere the caller is told to skip (false).
pub fn kcat_or_skip() -> bool {
    if std::process::Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "kcat is missing in CI; .ci/run installs it"
    );
    eprintln!("kcat not installed: skipped (CI runs it)");
    false
}

/// Runs a `gregor` tool against `b` (its bootstrap server appended), within 60 s.
pub fn cli(b: &Broker, args: &[&str]) -> Output {
    let bootstrap = b.bootstrap();
    let mut child = Command::new(gregor_bin())
        .args(args)
        .args(["--bootstrap-server", &bootstrap])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gregor");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait gregor").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gregor {args:?} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("gregor output")
}

/// [`cli`] that must succeed; returns its stdout.
pub fn cli_ok(b: &Broker, args: &[&str]) -> String {
    let out = cli(b, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "gregor {args:?} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
