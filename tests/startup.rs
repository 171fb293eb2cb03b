//! `gregor serve` refuses to start in an environment it cannot run in, at once and with a
//! message that says what to change, instead of panicking or limping along.

use std::process::Command;
use std::time::{Duration, Instant};

fn serve_in_shell(prelude: &str, extra: &str) -> (i32, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_gregor");
    let script = format!(
        "{prelude}; exec {bin} serve --set listeners=PLAINTEXT://127.0.0.1:1 --set log.dirs={} {extra}",
        dir.path().display()
    );
    let start = Instant::now();
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), stderr, start.elapsed())
}

#[test]
fn too_little_locked_memory_is_refused_with_advice() {
    // Lowering the hard limit needs no privilege, so this works as root and as a user.
    let (code, stderr, took) = serve_in_shell("ulimit -l 64", "");
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(stderr.contains("ulimit -l"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked at"), "a panic leaked: {stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn an_io_memory_request_the_kernel_cannot_pin_is_refused() {
    let (code, stderr, _) = serve_in_shell("true", "--set io.memory.bytes=1099511627776");
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(stderr.contains("io.memory.bytes"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked at"), "a panic leaked: {stderr}");
}

#[test]
fn bad_settings_name_the_setting() {
    let (code, stderr, _) = serve_in_shell("true", "--set log.segment.bytes=lots");
    assert_eq!(code, 1);
    assert!(stderr.contains("log.segment.bytes"), "stderr: {stderr}");
    let (code, stderr, _) = serve_in_shell("true", "--set no.such.thing=1");
    assert_eq!(code, 1);
    assert!(stderr.contains("no.such.thing"), "stderr: {stderr}");
}

mod common;

fn serve_on(log_dirs: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gregor"))
        .arg("serve")
        .arg("--set")
        .arg(format!(
            "listeners=PLAINTEXT://127.0.0.1:{}",
            common::free_port()
        ))
        .arg("--set")
        .arg(format!("log.dirs={}", log_dirs.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn log_dirs_that_is_not_a_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let (code, stderr) = serve_on(&file);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("log.dirs: {} is not a directory", file.display())),
        "stderr: {stderr}"
    );
    let (code, stderr) = serve_on(&file.join("below"));
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(stderr.contains("log.dirs: "), "stderr: {stderr}");
    assert!(stderr.contains("is not a directory"), "stderr: {stderr}");
}

#[test]
fn a_second_broker_on_the_same_log_dirs_is_refused_and_nothing_is_lost() {
    use common::clients::{consume_all, produce, TestRecord};
    let mut broker = common::Broker::start(&[]);
    let records: Vec<TestRecord> = (0..50)
        .map(|i| TestRecord::value(format!("first-{i}")).in_partition(0))
        .collect();
    let cfg = broker.producer_config();
    let delivered = produce(&cfg, "locked", &records);

    let pid = broker.pid().expect("running");
    let (code, stderr) = serve_on(&broker.data_dir());
    assert_eq!(code, 1, "the second broker must not start: {stderr}");
    let named = format!("log.dirs: {} is in use", broker.data_dir().display());
    assert!(stderr.contains(&named), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("process {pid}")),
        "stderr: {stderr}"
    );

    // The first broker keeps serving, and after a restart still has every acknowledged record.
    let more: Vec<TestRecord> = (0..50)
        .map(|i| TestRecord::value(format!("second-{i}")).in_partition(0))
        .collect();
    let delivered_more = produce(&cfg, "locked", &more);
    broker.kill();
    broker.start_again();
    let got = consume_all(
        &broker.consumer_config(),
        "locked",
        1,
        100,
        Duration::from_secs(30),
    );
    let all: Vec<TestRecord> = records.into_iter().chain(more).collect();
    let offsets: Vec<(i32, i64)> = delivered.into_iter().chain(delivered_more).collect();
    common::clients::assert_same(&all, &offsets, &got);
}
