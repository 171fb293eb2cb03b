//! The client compatibility suite (tests/compat/README.md): every client driver runs against a
//! fresh `gregor serve` of its own, and the results become COMPATIBILITY.md at the top of the
//! repository, one row per client and version, one column per flow.
//!
//! Each driver is its own test, so two run at once on a 2-core machine; every finished driver
//! rewrites the file with all results known so far. A driver whose client is not installed is
//! a failure under CI (`.ci/run` installs them all) and a skipped row elsewhere.

mod common;
#[path = "compat/rdkafka_driver.rs"]
mod rdkafka_driver;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Broker;

/// Longest one driver may run (each flow has its own, shorter deadline).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(240);

/// The flows, in column order (tests/compat/README.md).
const FLOWS: &[&str] = &[
    "list_topics",
    "admin_topics",
    "produce_none",
    "produce_gzip",
    "produce_snappy",
    "produce_lz4",
    "produce_zstd",
    "consume_earliest",
    "consume_offset",
    "consume_timestamp",
    "group",
    "admin_groups",
    "idempotent",
    "transactions",
];

/// One flow's outcome as a driver reported it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Row {
    pub client: String,
    pub version: String,
    pub flow: String,
    pub result: String,
    #[serde(default)]
    pub detail: String,
}

impl Row {
    pub fn new(client: &str, version: &str, flow: &str, result: &str, detail: &str) -> Row {
        Row {
            client: client.to_string(),
            version: version.to_string(),
            flow: flow.to_string(),
            result: result.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// Results of every driver that has finished in this run, by driver name.
static RESULTS: Mutex<BTreeMap<String, DriverOutcome>> = Mutex::new(BTreeMap::new());

#[derive(Debug, Clone)]
enum DriverOutcome {
    Rows(Vec<Row>, Duration),
    NotInstalled(String),
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A broker as a user starts one: defaults, its own port and data directory.
fn fresh_broker() -> Broker {
    Broker::start_minimal()
}

/// Runs an external driver to completion (killing it at the deadline) and parses its rows.
fn run_external(program: &str, args: &[String], dir: &Path, broker: &Broker) -> Vec<Row> {
    let mut child = Command::new(program)
        .args(args)
        .arg("--bootstrap")
        .arg(broker.bootstrap())
        .current_dir(dir)
        .env("GREGOR_BIN", common::gregor_bin())
        // cargo points the dynamic loader at the librdkafka it built for the rdkafka crate;
        // the clients under test must load their own (Debian's for kcat, their bundled ones).
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} {args:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + DRIVER_TIMEOUT;
    let mut timed_out = false;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let mut rows: Vec<Row> = out
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if timed_out || rows.is_empty() {
        let tail: String = err.lines().rev().take(20).collect::<Vec<_>>().join(" | ");
        let why = if timed_out {
            format!("driver killed after {DRIVER_TIMEOUT:?}")
        } else {
            "driver printed no results".to_string()
        };
        let client = rows
            .first()
            .map_or(program.to_string(), |r| r.client.clone());
        rows.push(Row::new(
            &client,
            "?",
            "driver",
            "fail",
            &format!("{why}: {tail}"),
        ));
    }
    rows
}

/// Records a driver's outcome and rewrites COMPATIBILITY.md; panics on failed flows.
fn finish(driver: &str, outcome: DriverOutcome) {
    let failed: Vec<String> = match &outcome {
        DriverOutcome::Rows(rows, _) => rows
            .iter()
            .filter(|r| r.result == "fail")
            .map(|r| format!("{} {}: {}", r.client, r.flow, r.detail))
            .collect(),
        DriverOutcome::NotInstalled(why) if in_ci() => vec![format!("{driver}: {why}")],
        DriverOutcome::NotInstalled(_) => Vec::new(),
    };
    {
        let mut all = RESULTS.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(driver.to_string(), outcome);
        let text = render(&all);
        if let Err(e) = std::fs::write(repo().join("COMPATIBILITY.md"), text) {
            eprintln!("cannot write COMPATIBILITY.md: {e}");
        }
    }
    assert!(failed.is_empty(), "failed flows:\n{}", failed.join("\n"));
}

/// An external driver: `<program> <script>` in `tests/compat/<dir>`.
fn external(driver: &str, dir: &str, program: &str, script: &str, needs: &[&str]) {
    let dir_path = repo().join("tests/compat").join(dir);
    let missing: Vec<String> = std::iter::once(script)
        .chain(needs.iter().copied())
        .filter(|p| !dir_path.join(p).exists())
        .map(|p| format!("tests/compat/{dir}/{p}"))
        .collect();
    let program_ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !missing.is_empty() || !program_ok {
        let why = format!(
            "not installed (run tests/compat/{dir}/setup.sh): missing {}",
            if program_ok {
                missing.join(", ")
            } else {
                program.to_string()
            }
        );
        return finish(driver, DriverOutcome::NotInstalled(why));
    }
    let broker = fresh_broker();
    let started = Instant::now();
    let script_path = dir_path.join(script).display().to_string();
    let rows = run_external(program, &[script_path], &dir_path, &broker);
    finish(driver, DriverOutcome::Rows(rows, started.elapsed()));
}

#[test]
fn rdkafka_rust() {
    let broker = fresh_broker();
    let started = Instant::now();
    let rows = rdkafka_driver::run(&broker);
    finish("rdkafka", DriverOutcome::Rows(rows, started.elapsed()));
}

#[test]
fn kcat() {
    external("kcat", "kcat", "python3", "kcat_driver.py", &[]);
}

#[test]
fn confluent_kafka_python() {
    external(
        "confluent-kafka-python",
        "python",
        "python3",
        "confluent_kafka_driver.py",
        &[],
    );
}

#[test]
fn kafka_python() {
    external(
        "kafka-python",
        "python",
        "python3",
        "kafka_python_driver.py",
        &[],
    );
}

#[test]
fn aiokafka() {
    external("aiokafka", "python", "python3", "aiokafka_driver.py", &[]);
}

#[test]
fn kafkajs() {
    external(
        "kafkajs",
        "node",
        "node",
        "kafkajs_driver.js",
        &["node_modules/kafkajs"],
    );
}

#[test]
fn confluent_kafka_javascript() {
    external(
        "confluent-kafka-javascript",
        "node",
        "node",
        "confluent_driver.js",
        &["node_modules/@confluentinc/kafka-javascript"],
    );
}

#[test]
fn segmentio_kafka_go() {
    external(
        "kafka-go",
        "go",
        "sh",
        "kafka_go_driver.sh",
        &["bin/kafka-go-driver"],
    );
}

#[test]
fn sarama() {
    external(
        "sarama",
        "go",
        "sh",
        "sarama_driver.sh",
        &["bin/sarama-driver"],
    );
}

#[test]
fn burrow() {
    external("burrow", "burrow", "python3", "burrow_driver.py", &[]);
}

fn cell(result: &str) -> &str {
    match result {
        "pass" => "pass",
        "fail" => "**FAIL**",
        "xfail" => "xfail",
        "skip" => "n/a",
        _ => "?",
    }
}

/// The whole COMPATIBILITY.md: the matrix, then every gap and failure with its reason.
fn render(all: &BTreeMap<String, DriverOutcome>) -> String {
    let mut out = String::new();
    out.push_str(
        "# Client compatibility\n\n\
         Generated by `cargo test --release --test compat` (tests/compat/README.md): each client \
         runs its flows against a fresh `gregor serve` with default settings. Do not edit by \
         hand.\n\n\
         `pass`: works. `xfail`: a gap gregor knows about, and the client got a clear error at \
         once (reasons below). `n/a`: the client does not offer the flow. `**FAIL**`: broken.\n\n",
    );
    let mut header = String::from("| client | version |");
    let mut rule = String::from("|---|---|");
    for f in FLOWS {
        header.push_str(&format!(" {f} |"));
        rule.push_str("---|");
    }
    header.push_str(" unserved calls |");
    rule.push_str("---|");
    out.push_str(&header);
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    let mut notes = Vec::new();
    for (driver, outcome) in all {
        let (rows, took) = match outcome {
            DriverOutcome::Rows(rows, took) => (rows, took),
            DriverOutcome::NotInstalled(why) => {
                out.push_str(&format!("| {driver} | not installed: {why} |\n"));
                continue;
            }
        };
        let mut by_client: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
        for r in rows {
            by_client
                .entry((r.client.clone(), r.version.clone()))
                .or_default()
                .push(r);
        }
        for ((client, version), rows) in by_client {
            let mut line = format!("| {client} | {version} |");
            for f in FLOWS {
                let r = rows.iter().find(|r| r.flow == *f);
                line.push_str(&format!(" {} |", r.map_or("-", |r| cell(&r.result))));
            }
            // Unserved admin calls and extra flows: counted here, each listed below.
            let mut other: BTreeMap<&str, usize> = BTreeMap::new();
            for r in rows.iter().filter(|r| !FLOWS.contains(&r.flow.as_str())) {
                *other.entry(cell(&r.result)).or_default() += 1;
            }
            let other: Vec<String> = other.iter().map(|(c, n)| format!("{n} {c}")).collect();
            line.push_str(&format!(" {} |", other.join(", ")));
            out.push_str(&line);
            out.push('\n');
            for r in rows
                .iter()
                .filter(|r| r.result != "pass" && !r.detail.is_empty())
            {
                notes.push(format!(
                    "| {client} | {} | {} | {} |",
                    r.flow,
                    r.result,
                    r.detail.replace('|', "/").replace('\n', " ")
                ));
            }
            notes.push(format!(
                "| {client} | (whole driver) | took | {:.1} s |",
                took.as_secs_f64()
            ));
        }
    }
    if !notes.is_empty() {
        out.push_str("\n## Gaps, failures and skipped flows\n\n| client | flow | result | reason |\n|---|---|---|---|\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}
