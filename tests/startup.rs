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
