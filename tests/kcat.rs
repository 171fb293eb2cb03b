//! The "done when": kcat -P and -C against a broker started with no settings but its
//! address and data directory. Debian's kcat (1.7.1, librdkafka 2.0.2) is the old client that
//! misreads default-valued tagged fields, so this also guards the ApiVersions encoding.
//! .ci/run installs kcat; elsewhere the test says it is skipped when kcat is missing.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Broker;

#[test]
fn kcat_produces_and_consumes_against_a_default_broker() {
    if !common::kcat_or_skip() {
        return;
    }
    let broker = Broker::start_minimal();
    let bootstrap = broker.bootstrap();
    let lines: Vec<String> = (0..500).map(|i| format!("line-{i}")).collect();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        let mut p = Command::new("kcat")
            .args(["-b", &bootstrap, "-P", "-t", &topic, "-z", codec])
            // Debian's librdkafka, not the one cargo built for the rdkafka crate.
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::piped())
            .spawn()
            .expect("kcat -P");
        let mut stdin = p.stdin.take().expect("stdin");
        stdin
            .write_all((lines.join("\n") + "\n").as_bytes())
            .unwrap();
        drop(stdin);
        assert!(p.wait().unwrap().success(), "kcat -P with {codec}");
        let out = Command::new("timeout")
            .args([
                "60", "kcat", "-b", &bootstrap, "-C", "-t", &topic, "-e", "-q",
            ])
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("kcat -C");
        assert!(out.status.success(), "kcat -C with {codec}: {out:?}");
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(got, lines, "what kcat consumed with {codec}");
    }
}
