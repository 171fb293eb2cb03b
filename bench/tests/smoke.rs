//! Smoke run of the driver against a real gregor: a few seconds of end-to-end and consume load
//! for every acks setting, of idempotent producers with read_committed consumers, and of the
//! backlog workload, retention deleting segments and the per-interval report, checking
//! correctness only (every record acknowledged, consumed and counted, no errors, outputs
//! written). No timing is asserted.
//!
//! The broker binary is `target/{release,debug}/gregor`, built beforehand (`cargo build -p
//! gregor` in CI); the test fails with a clear message when it is missing.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gregor_bench::result::ResultFile;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The gregor binary next to this test's own build, preferring the profile the test runs in.
fn gregor_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profiles = if cfg!(debug_assertions) {
        ["debug", "release"]
    } else {
        ["release", "debug"]
    };
    for p in profiles {
        let bin = target.join(p).join("gregor");
        if bin.exists() {
            return bin;
        }
    }
    panic!(
        "no gregor binary under {}/{{debug,release}}: run `cargo build -p gregor` first",
        target.display()
    );
}

struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// A broker with these extra `--set name=value` settings.
    fn start_with(settings: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("log file");
        let child = Command::new(gregor_bin())
            .arg("serve")
            .arg("--set")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--set")
            .arg(format!("log.dirs={}", dir.path().join("data").display()))
            .args(settings.iter().flat_map(|s| ["--set", s]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn gregor");
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "gregor did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_bench(broker: &Broker, out: &Path, extra: &[&str]) -> ResultFile {
    run_bench_acks(broker, out, "0,1,all", extra)
}

fn run_bench_acks(broker: &Broker, out: &Path, acks: &str, extra: &[&str]) -> ResultFile {
    let status = Command::new(env!("CARGO_BIN_EXE_gregor-bench"))
        .args(["--brokers", &format!("127.0.0.1:{}", broker.port)])
        .args(["--acks", acks, "--partitions", "3", "--record-size", "200"])
        .args([
            "--progress-secs",
            "0",
            "--drain-timeout",
            "20s",
            "--label",
            "smoke",
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .status()
        .expect("run gregor-bench");
    assert!(status.success(), "gregor-bench failed: {status}");
    ResultFile::read(&out.join("result.json")).expect("result.json")
}

fn check_every_record(file: &ResultFile, produced: u64) {
    check_runs(file, 3, produced);
}

fn check_runs(file: &ResultFile, runs: usize, produced: u64) {
    assert_eq!(file.runs.len(), runs);
    for r in &file.runs {
        let what = format!("acks={} {}", r.acks, r.config.workload);
        assert!(r.errors.is_empty(), "{what}: errors {:?}", r.errors);
        assert_eq!(r.error_records, 0, "{what}");
        assert_eq!(r.produce.records, produced, "{what}: acknowledged");
        let consumed = r.consume.as_ref().map_or(0, |c| c.records);
        assert_eq!(consumed, produced, "{what}: consumed");
        assert_eq!(r.missing_records, 0, "{what}");
    }
}

#[test]
fn driver_acknowledges_consumes_and_counts_every_record() {
    let broker = Broker::start();
    let out = tempfile::tempdir().expect("out dir");

    let e2e_dir = out.path().join("e2e");
    let n = 30_000u64;
    let e2e = run_bench(
        &broker,
        &e2e_dir,
        &[
            "--workload",
            "e2e",
            "--records",
            &n.to_string(),
            "--rate",
            "20000",
            "--key-cardinality",
            "100",
        ],
    );
    check_every_record(&e2e, n);
    for r in &e2e.runs {
        let lat = r.e2e_latency.as_ref().expect("e2e latency");
        assert_eq!(lat.count, n, "acks={}: one e2e sample per record", r.acks);
        assert_eq!(r.produce_latency.count, n);
    }
    for file in [
        "result.json",
        "report.svg",
        "smoke-e2e-acksall-e2e.hgrm",
        "smoke-e2e-acks1-produce.hgrm",
    ] {
        assert!(e2e_dir.join(file).exists(), "{file} missing");
    }

    let consume_dir = out.path().join("consume");
    let consume = run_bench(
        &broker,
        &consume_dir,
        &[
            "--workload",
            "consume",
            "--records",
            &n.to_string(),
            "--compression",
            "lz4",
            "--consumers",
            "2",
        ],
    );
    check_every_record(&consume, n);

    // Idempotent producers (sequences checked by the broker) and read_committed consumers.
    let idem_dir = out.path().join("idempotent");
    let idem = run_bench_acks(
        &broker,
        &idem_dir,
        "all",
        &[
            "--workload",
            "e2e",
            "--idempotent",
            "--producers",
            "2",
            "--isolation-level",
            "read_committed",
            "--records",
            &n.to_string(),
            "--rate",
            "20000",
        ],
    );
    check_runs(&idem, 1, n);
    let r = &idem.runs[0];
    assert_eq!(r.config.mode, "idempotent");
    assert_eq!(r.config.isolation_level, "read_committed");
    assert!(r.transactions.is_none() && r.commit_latency.is_none());
    assert!(idem_dir.join("smoke-e2e-acksall-idem-e2e.hgrm").exists());
}

#[test]
fn transactional_producers_commit_and_read_committed_consumers_see_every_record() {
    let broker = Broker::start();
    let out = tempfile::tempdir().expect("out dir");
    let n = 10_000u64;
    let file = run_bench_acks(
        &broker,
        out.path(),
        "all",
        &[
            "--workload",
            "e2e",
            "--transaction-records",
            "0,100",
            "--producers",
            "2",
            "--isolation-level",
            "read_committed",
            "--records",
            &n.to_string(),
            "--rate",
            "5000",
            "--key-cardinality",
            "100",
        ],
    );
    check_runs(&file, 2, n);
    let txn = &file.runs[1];
    assert_eq!(txn.config.mode, "txn100");
    let t = txn.transactions.as_ref().expect("transaction stats");
    // Two producers of 5,000 records each, in transactions of 100.
    assert_eq!((t.committed, t.aborted), (100, 0));
    assert_eq!(txn.commit_latency.as_ref().map(|l| l.count), Some(100));
    assert_eq!(txn.aborted_records_skipped, 0);
    assert!(out
        .path()
        .join("smoke-e2e-acksall-txn100-commit.hgrm")
        .exists());
}

#[test]
fn backlog_retention_and_per_interval_report() {
    let broker = Broker::start_with(&["log.retention.check.interval.ms=200"]);
    let pid = broker.child.id().to_string();
    let out = tempfile::tempdir().expect("out dir");

    // A 2 MB backlog of keyed records (8-byte keys + 200-byte values), then 3 s at 5,000
    // records/s while the consumer reads from the start.
    let backlog = run_bench_acks(
        &broker,
        &out.path().join("backlog"),
        "1",
        &[
            "--workload",
            "backlog",
            "--backlog-bytes",
            "2MB",
            "--keys",
            "1000",
            "--key-size",
            "8",
            "--rate",
            "5000",
            "--duration",
            "3s",
            "--report-interval",
            "1s",
            "--broker-pid",
            &pid,
        ],
    );
    assert_eq!(backlog.runs.len(), 1);
    let r = &backlog.runs[0];
    assert!(r.errors.is_empty(), "errors {:?}", r.errors);
    assert_eq!(r.config.workload, "backlog");
    assert_eq!(r.config.key_size, 8);
    let b = r.backlog.as_ref().expect("backlog stats");
    assert_eq!(b.fill.records, 2_000_000u64.div_ceil(208));
    assert_eq!(b.fill.bytes, b.fill.records * 208);
    assert!(b.drained && b.drain_seconds.is_some(), "{b:?}");
    assert_eq!(b.unread_records, 0);
    let consumed = r.consume.as_ref().map_or(0, |c| c.records);
    assert_eq!(consumed, b.fill.records + r.produce.records);
    // End-to-end latency is measured for the new records only.
    let e2e = r.e2e_latency.as_ref().expect("e2e latency");
    assert_eq!(e2e.count, r.produce.records);
    assert_eq!(r.intervals.len(), 3, "{:?}", r.intervals);
    let sampled: u64 = r.intervals.iter().map(|i| i.produce.count).sum();
    assert_eq!(sampled, r.produce.records);
    let e2e_sampled: u64 = r.intervals.iter().map(|i| i.e2e.count).sum();
    assert_eq!(e2e_sampled, e2e.count);
    assert!(r
        .intervals
        .iter()
        .all(|i| i.broker_rss_mb.unwrap_or(0.0) > 1.0));
    assert!(r.timeline.iter().any(|s| s.broker_rss_mb.is_some()));

    // Small segments and retention.bytes: the broker deletes segments while the run goes on.
    let retention = run_bench_acks(
        &broker,
        &out.path().join("retention"),
        "1",
        &[
            "--workload",
            "e2e",
            "--keys",
            "1000",
            "--rate",
            "5000",
            "--duration",
            "3s",
            "--topic-config",
            "segment.bytes=65536,retention.bytes=131072",
        ],
    );
    check_runs(&retention, 1, retention.runs[0].produce.records);
    let r = &retention.runs[0];
    assert!(r.records_deleted > 0, "nothing deleted");
    assert_eq!(r.config.topic_configs.len(), 2);
}
