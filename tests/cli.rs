//! The client tools (`gregor topics|produce|consume|dump-log`) against a real broker, checked
//! both by their own output and by librdkafka.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use common::clients::{consume_all, create_topic, produce, TestRecord};
use common::{gregor_bin, java_partition, segment_files, walk_segment, Broker};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `gregor <args>` with `stdin`, killing it after `CLI_TIMEOUT`.
fn gregor(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(gregor_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gregor");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "gregor {args:?} did not finish in {CLI_TIMEOUT:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a networked command against `broker` and requires success; returns stdout.
fn ok(broker: &Broker, args: &[&str], stdin: &[u8]) -> String {
    let bootstrap = broker.bootstrap();
    let mut full: Vec<&str> = args.to_vec();
    full.push("--bootstrap-server");
    full.push(&bootstrap);
    let out = gregor(&full, stdin);
    assert!(
        out.status.success(),
        "gregor {full:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a networked command that must fail; returns stderr.
fn fails(broker: &Broker, args: &[&str]) -> String {
    let bootstrap = broker.bootstrap();
    let mut full: Vec<&str> = args.to_vec();
    full.push("--bootstrap-server");
    full.push(&bootstrap);
    let out = gregor(&full, b"");
    assert!(!out.status.success(), "gregor {full:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn partition_count(broker: &Broker, topic: &str) -> usize {
    let c = common::clients::consumer(&broker.consumer_config());
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0].partitions().len()
}

#[test]
fn help_lists_the_commands() {
    let out = gregor(&["--help"], b"");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "topics", "produce", "consume", "dump-log"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}:\n{text}");
    }
}

#[test]
fn topics_create_list_describe_alter_delete() {
    let broker = Broker::start(&[("auto.create.topics.enable", "false")]);
    let out = ok(
        &broker,
        &["topics", "create", "--topic", "orders", "--partitions", "3"],
        b"",
    );
    assert!(out.contains("orders"), "{out}");
    ok(
        &broker,
        &[
            "topics",
            "create",
            "--topic",
            "audit",
            "--partitions",
            "1",
            "--config",
            "retention.ms=86400000",
        ],
        b"",
    );

    let list = ok(&broker, &["topics", "list"], b"");
    let names: Vec<&str> = list.lines().collect();
    assert!(
        names.contains(&"orders") && names.contains(&"audit"),
        "{list}"
    );

    let desc = ok(&broker, &["topics", "describe", "--topic", "orders"], b"");
    assert!(desc.contains("PartitionCount: 3"), "{desc}");
    assert_eq!(
        desc.lines().filter(|l| l.contains("Partition: ")).count(),
        3,
        "{desc}"
    );
    let desc = ok(&broker, &["topics", "describe", "--topic", "audit"], b"");
    assert!(
        desc.contains("retention.ms=86400000"),
        "topic override not shown:\n{desc}"
    );
    let all = ok(&broker, &["topics", "describe"], b"");
    assert!(all.contains("orders") && all.contains("audit"), "{all}");

    let err = fails(
        &broker,
        &["topics", "create", "--topic", "orders", "--partitions", "3"],
    );
    assert!(err.contains("TOPIC_ALREADY_EXISTS"), "{err}");
    let err = fails(&broker, &["topics", "create", "--topic", "bad/name"]);
    assert!(err.contains("INVALID_TOPIC_EXCEPTION"), "{err}");

    ok(
        &broker,
        &[
            "topics",
            "alter-partitions",
            "--topic",
            "orders",
            "--partitions",
            "5",
        ],
        b"",
    );
    let desc = ok(&broker, &["topics", "describe", "--topic", "orders"], b"");
    assert!(desc.contains("PartitionCount: 5"), "{desc}");
    assert_eq!(partition_count(&broker, "orders"), 5);
    assert!(
        broker.partition_dir("orders", 4).is_dir(),
        "log dir of a new partition"
    );
    let err = fails(
        &broker,
        &[
            "topics",
            "alter-partitions",
            "--topic",
            "orders",
            "--partitions",
            "2",
        ],
    );
    assert!(err.contains("INVALID_PARTITIONS"), "shrinking: {err}");

    ok(&broker, &["topics", "delete", "--topic", "orders"], b"");
    let list = ok(&broker, &["topics", "list"], b"");
    assert!(!list.lines().any(|l| l == "orders"), "{list}");
    assert!(list.lines().any(|l| l == "audit"), "{list}");
    assert!(
        common::wait_until(Duration::from_secs(10), || !broker
            .partition_dir("orders", 0)
            .exists()),
        "log dir of a deleted topic is still there"
    );
    let err = fails(&broker, &["topics", "delete", "--topic", "orders"]);
    assert!(err.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{err}");
}

fn keyed_lines(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{tag}-k{}:{tag}-v{i}\n", i % 17))
        .collect()
}

/// Produce keyed lines with each codec, read them back with `consume` and with librdkafka.
#[test]
fn produce_and_consume_with_each_codec() {
    let broker = Broker::start(&[]);
    for (codec, id) in [
        ("none", 0),
        ("gzip", 1),
        ("snappy", 2),
        ("lz4", 3),
        ("zstd", 4),
    ] {
        let topic = format!("cli-{codec}");
        ok(
            &broker,
            &["topics", "create", "--topic", &topic, "--partitions", "1"],
            b"",
        );
        let input = keyed_lines(codec, 200);
        ok(
            &broker,
            &[
                "produce",
                "--topic",
                &topic,
                "--key-separator",
                ":",
                "--compression",
                codec,
                "--acks",
                "all",
            ],
            input.as_bytes(),
        );
        let out = ok(
            &broker,
            &[
                "consume",
                "--topic",
                &topic,
                "--from-beginning",
                "--max-messages",
                "200",
                "--print-key",
                "--timeout-ms",
                "30000",
            ],
            b"",
        );
        let expected: Vec<String> = input.lines().map(|l| l.replacen(':', "\t", 1)).collect();
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got, expected, "{codec}: consume output");

        // librdkafka agrees, and the stored batches carry the codec.
        let got = consume_all(
            &broker.consumer_config(),
            &topic,
            1,
            200,
            Duration::from_secs(30),
        );
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.offset, i as i64);
            assert_eq!(
                g.key.as_deref(),
                Some(format!("{codec}-k{}", i % 17).as_bytes())
            );
            assert_eq!(g.value.as_deref(), Some(format!("{codec}-v{i}").as_bytes()));
        }
        let seg = segment_files(&broker.partition_dir(&topic, 0));
        let bytes = common::read_file(&seg[0]);
        let (batches, _) = walk_segment(&bytes);
        assert!(!batches.is_empty());
        for b in batches {
            assert_eq!(b.compression(), id, "{codec}: batch codec on disk");
        }
    }
}

/// Keyed records land in the partition Java's partitioner picks, like any Kafka client.
#[test]
fn produce_partitions_keys_like_java() {
    let broker = Broker::start(&[]);
    ok(
        &broker,
        &["topics", "create", "--topic", "keyed", "--partitions", "4"],
        b"",
    );
    let input = keyed_lines("p", 400);
    ok(
        &broker,
        &["produce", "--topic", "keyed", "--key-separator", ":"],
        input.as_bytes(),
    );
    let got = consume_all(
        &broker.consumer_config(),
        "keyed",
        4,
        400,
        Duration::from_secs(30),
    );
    for g in &got {
        let key = g.key.as_deref().unwrap();
        assert_eq!(
            g.partition,
            java_partition(key, 4),
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
    // And consume over all partitions prints every record once.
    let out = ok(
        &broker,
        &[
            "consume",
            "--topic",
            "keyed",
            "--from-beginning",
            "--max-messages",
            "400",
            "--timeout-ms",
            "30000",
        ],
        b"",
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<String> = (0..400).map(|i| format!("p-v{i}")).collect();
    want.sort_unstable();
    assert_eq!(lines, want);
}

/// Records written by librdkafka print with headers, offsets and timestamps.
#[test]
fn consume_prints_what_librdkafka_produced() {
    let broker = Broker::start(&[]);
    create_topic(&broker.admin_config(), "rk", 1, &[]);
    let records: Vec<TestRecord> = (0..5)
        .map(|i| TestRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            timestamp: Some(1_700_000_000_000 + i),
            headers: vec![("h".to_string(), b"x".to_vec())],
            partition: Some(0),
        })
        .collect();
    produce(&broker.producer_config(), "rk", &records);
    let out = ok(
        &broker,
        &[
            "consume",
            "--topic",
            "rk",
            "--offset",
            "2",
            "--partition",
            "0",
            "--max-messages",
            "3",
            "--print-key",
            "--print-offset",
            "--print-timestamp",
            "--print-headers",
            "--timeout-ms",
            "30000",
        ],
        b"",
    );
    let want: Vec<String> = (2..5)
        .map(|i| {
            format!(
                "CreateTime:{}\tOffset:{i}\th:x\tk{i}\tv{i}",
                1_700_000_000_000i64 + i
            )
        })
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

/// `dump-log` lists the batches of a segment file with their offsets, matching the file itself.
#[test]
fn dump_log_lists_batches_with_offsets() {
    let mut broker = Broker::start(&[]);
    ok(
        &broker,
        &["topics", "create", "--topic", "dump", "--partitions", "1"],
        b"",
    );
    for round in 0..3 {
        let lines: String = (0..10).map(|i| format!("r{round}-{i}\n")).collect();
        ok(
            &broker,
            &["produce", "--topic", "dump", "--acks", "all"],
            lines.as_bytes(),
        );
    }
    broker.stop();
    let seg = segment_files(&broker.partition_dir("dump", 0));
    let seg = seg.last().unwrap().to_str().unwrap().to_string();
    let out = gregor(&["dump-log", &seg], b"");
    assert!(
        out.status.success(),
        "dump-log: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |line: &str, name: &str| -> Option<i64> {
        let at = line.find(&format!("{name}: "))? + name.len() + 2;
        line[at..]
            .split_whitespace()
            .next()?
            .trim_end_matches(',')
            .parse()
            .ok()
    };
    let listed: Vec<(i64, i64)> = text
        .lines()
        .filter_map(|l| Some((field(l, "baseOffset")?, field(l, "lastOffset")?)))
        .collect();
    assert_eq!(
        listed,
        vec![(0, 9), (10, 19), (20, 29)],
        "dump-log output:\n{text}"
    );
    let bytes = common::read_file(std::path::Path::new(&seg));
    let (batches, _) = walk_segment(&bytes);
    let on_disk: Vec<(i64, i64)> = batches
        .iter()
        .map(|b| (b.base_offset, b.last_offset()))
        .collect();
    assert_eq!(listed, on_disk);

    let out = gregor(&["dump-log", &seg, "--print-data-log"], b"");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("r2-9"),
        "--print-data-log shows record values:\n{text}"
    );
}

/// Like kafka-console-producer (and kcat), `produce` to a missing topic auto-creates it when the
/// broker allows that (auto.create.topics.enable defaults to true).
#[test]
fn produce_auto_creates_a_missing_topic() {
    let broker = Broker::start(&[]);
    ok(
        &broker,
        &["produce", "--topic", "fresh"],
        b"one\ntwo\nthree\n",
    );
    let out = ok(
        &broker,
        &[
            "consume",
            "--topic",
            "fresh",
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "30000",
        ],
        b"",
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["one", "two", "three"]);
}

/// The example config in configs/ is valid and holds the defaults: a broker started from it
/// behaves like one started without it.
#[test]
fn example_config_file_starts_a_broker() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/gregor.toml");
    let broker = Broker::start_with_config(&file, &[("num.shards", "2")]);
    ok(
        &broker,
        &["topics", "create", "--topic", "from-config"],
        b"",
    );
    ok(&broker, &["produce", "--topic", "from-config"], b"a\nb\n");
    let out = ok(
        &broker,
        &[
            "consume",
            "--topic",
            "from-config",
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "30000",
        ],
        b"",
    );
    assert_eq!(out, "a\nb\n");
    // Every broker setting the config module knows appears in the example (commented or not).
    let text = std::fs::read_to_string(&file).unwrap();
    for name in gregor::config::BROKER_CONFIGS {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "configs/gregor.toml lacks {name}"
        );
    }
}

#[test]
fn produce_refuses_a_record_larger_than_the_topic_takes_before_sending() {
    let broker = Broker::start(&[]);
    ok(
        &broker,
        &[
            "topics",
            "create",
            "--topic",
            "small",
            "--partitions",
            "1",
            "--config",
            "max.message.bytes=2000",
        ],
        b"",
    );
    let bootstrap = broker.bootstrap();
    let mut line = "x".repeat(5000).into_bytes();
    line.push(b'\n');
    let out = gregor(
        &[
            "produce",
            "--topic",
            "small",
            "--bootstrap-server",
            &bootstrap,
        ],
        &line,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("larger than small's max.message.bytes (2000)"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("Broken pipe"), "stderr: {stderr}");
    // Small lines around the limit still go, in batches the topic accepts.
    let lines: String = (0..40).map(|i| format!("{i:0>100}\n")).collect();
    ok(&broker, &["produce", "--topic", "small"], lines.as_bytes());
    let out = ok(
        &broker,
        &[
            "consume",
            "--topic",
            "small",
            "--from-beginning",
            "--max-messages",
            "40",
            "--timeout-ms",
            "10000",
        ],
        b"",
    );
    assert_eq!(out.lines().count(), 40);
}

#[test]
fn consume_from_an_offset_outside_the_log_names_the_valid_range() {
    let broker = Broker::start(&[]);
    ok(&broker, &["produce", "--topic", "ranged"], b"a\nb\nc\n");
    let stderr = fails(
        &broker,
        &["consume", "--topic", "ranged", "--offset", "100"],
    );
    assert!(
        stderr.contains("offset 100 is outside ranged-0: valid offsets are 0 to 3"),
        "stderr: {stderr}"
    );
    let out = ok(
        &broker,
        &[
            "consume",
            "--topic",
            "ranged",
            "--offset",
            "1",
            "--max-messages",
            "2",
            "--timeout-ms",
            "10000",
        ],
        b"",
    );
    assert_eq!(out, "b\nc\n");
}

#[test]
fn cluster_status_shows_the_broker_and_the_quorum() {
    let broker = Broker::start(&[]);
    let out = ok(&broker, &["cluster", "status"], b"");
    assert!(out.contains("LeaderId:        1"), "{out}");
    assert!(out.contains("CurrentVoters:   [1]"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('1') && l.contains("unfenced"))
        .unwrap_or_else(|| panic!("no broker line: {out}"));
    assert!(line.contains(&broker.bootstrap()), "{line}");
    assert!(
        out.lines()
            .any(|l| l.starts_with('1') && l.contains("Leader")),
        "{out}"
    );
}
