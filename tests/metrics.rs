//! The admin HTTP endpoint against a real broker: `/metrics` values checked against what the
//! test did (records in and out per topic, consumer lag after a consumer stops, error and
//! close counters after bad requests), the page parsed by two independent parsers (the
//! `prometheus-parse` crate, and Python's `prometheus_client`, strict, installed by
//! tests/compat/python/setup.sh), health and readiness, garbage HTTP, stalled and concurrent
//! scrapers under produce load, and `log.format=json`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use common::clients::{create_topic, produce, TestRecord};
use common::{frame, free_port, wait_until, Broker};

/// A broker with its admin listener on a free port.
fn start(extra: &[(&str, &str)]) -> (Broker, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = admin.to_string();
    let mut settings = vec![
        ("admin.listeners", listen.as_str()),
        ("group.initial.rebalance.delay.ms", "0"),
    ];
    settings.extend_from_slice(extra);
    (Broker::start(&settings), admin)
}

/// One HTTP exchange: status, headers, body. The server closes after each answer.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    if !request.starts_with(b"HEAD") {
        assert_eq!(body.len(), length, "body length matches Content-Length");
    }
    (status, head.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (status, _, body) = http(addr, req.as_bytes());
    (status, body)
}

fn scrape_text(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "scrape answered: {body}");
    body
}

/// The samples of a page, by the crate's parser (histograms collapsed into one sample).
struct Page {
    scrape: prometheus_parse::Scrape,
}

impl Page {
    fn read(addr: SocketAddr) -> Page {
        Page::parse(&scrape_text(addr))
    }

    /// The page, or None when the broker does not answer (it is starting).
    fn try_read(addr: SocketAddr) -> Option<Page> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| Page::parse(body))
    }

    fn parse(text: &str) -> Page {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Page {
            scrape: prometheus_parse::Scrape::parse(lines).expect("page parses"),
        }
    }

    /// The samples of `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> {
        self.scrape
            .samples
            .iter()
            .filter(move |s| s.metric == name)
            .filter(move |s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// Sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("{name} is not a counter or gauge"),
            })
            .sum()
    }

    /// The `le="+Inf"` count of one histogram.
    fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                _ => panic!("{name} is not a histogram"),
            })
            .sum()
    }
}

/// Parses the page with Python's prometheus_client, which refuses malformed lines, and
/// returns the number of families it read. None when the parser is not installed (outside CI).
fn python_parse(text: &str) -> Option<usize> {
    let script =
        "import sys\nfrom prometheus_client.parser import text_string_to_metric_families\n\
                  fams = list(text_string_to_metric_families(sys.stdin.read()))\n\
                  print(len(fams))\n";
    let available = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "prometheus_client is not installed (tests/compat/python/setup.sh installs it)"
        );
        eprintln!("skipping the Python parser check: prometheus_client is not installed");
        return None;
    }
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "prometheus_client refused the page: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("family count"),
    )
}

fn keyed(n: usize, tag: &str) -> Vec<TestRecord> {
    (0..n)
        .map(|i| {
            let mut r = TestRecord::value(format!("{tag}-{i}"));
            r.key = Some(format!("k{}", i % 17).into_bytes());
            r
        })
        .collect()
}

fn group_consumer(b: &Broker, group: &str) -> BaseConsumer {
    let mut cfg: ClientConfig = b.consumer_config();
    cfg.set("group.id", group)
        .set("enable.auto.offset.store", "true")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    cfg.create().expect("consumer")
}

#[test]
fn metrics_count_what_clients_did() {
    let (b, admin) = start(&[]);
    let topic = "metered";
    create_topic(&b.admin_config(), topic, 3, &[]);
    let first = keyed(5000, "a");
    let delivered = produce(&b.producer_config(), topic, &first);
    assert_eq!(delivered.len(), 5000);

    // Records and bytes in, per topic, and each partition's log end.
    let page = Page::read(admin);
    let t = [("topic", topic)];
    assert_eq!(page.sum("gregor_topic_messages_in_total", &t), 5000.0);
    let payload: usize = first.iter().map(|r| r.value.as_ref().unwrap().len()).sum();
    assert!(page.sum("gregor_topic_bytes_in_total", &t) > payload as f64);
    assert_eq!(page.sum("gregor_log_end_offset", &t), 5000.0);
    assert_eq!(page.sum("gregor_log_high_watermark", &t), 5000.0);
    assert!(page.sum("gregor_log_size_bytes", &t) > payload as f64);
    assert_eq!(page.sum("gregor_log_segments", &t), 3.0);
    assert!(page.sum("gregor_requests_total", &[("api", "Produce")]) >= 1.0);
    assert!(
        page.histogram_count(
            "gregor_request_duration_seconds",
            &[("api", "Produce"), ("phase", "total")]
        ) >= 1.0
    );

    // A group reads everything, commits, and leaves; then more is produced: the lag is
    // exactly what came after.
    let c = group_consumer(&b, "metered-group");
    c.subscribe(&[topic]).expect("subscribe");
    let got = common::clients::poll_n(&c, 5000, Duration::from_secs(60));
    assert_eq!(got.len(), 5000);
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    drop(c);
    produce(&b.producer_config(), topic, &keyed(700, "b"));
    let g = [("group", "metered-group"), ("topic", topic)];
    let mut page = Page::read(admin);
    assert!(
        wait_until(Duration::from_secs(20), || {
            page = Page::read(admin);
            page.sum("gregor_consumer_group_lag", &g) == 700.0
        }),
        "lag after the consumer stopped: {}",
        page.sum("gregor_consumer_group_lag", &g)
    );
    assert_eq!(
        page.sum("gregor_consumer_group_committed_offset", &g),
        5000.0
    );
    assert!(
        page.sum(
            "gregor_consumer_group_generation",
            &[("group", "metered-group")]
        ) >= 1.0
    );
    assert_eq!(page.sum("gregor_consumer_groups", &[]), 1.0);
    assert!(page.sum("gregor_topic_messages_out_total", &t) >= 5000.0);
    assert!(page.sum("gregor_topic_bytes_out_total", &t) > payload as f64);
    assert_eq!(page.sum("gregor_topic_messages_in_total", &t), 5700.0);
    assert!(
        page.histogram_count(
            "gregor_request_duration_seconds",
            &[("api", "JoinGroup"), ("phase", "remote")]
        ) >= 1.0
    );

    // A produce to a partition that does not exist: one error counted, by Kafka's name. A
    // request the broker does not serve closes its connection, and is counted too.
    let before = page.sum("gregor_connections_closed_on_error_total", &[]);
    let bad = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(99)
                .with_records(Some(Bytes::from_static(b"not a batch")))])]);
    let resp = b.raw().request(&bad, 9);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 3);
    let mut raw = b.raw();
    let mut unknown = vec![0x03, 0xE7, 0, 0, 0, 0, 0, 7, 0, 0]; // api key 999, v0, corr 7
    unknown.extend_from_slice(&[0; 4]);
    raw.send_bytes(&frame(&unknown)).unwrap();
    raw.expect_closed("a request of an unknown API");
    let mut page = Page::read(admin);
    let err = [("api", "Produce"), ("error", "UNKNOWN_TOPIC_OR_PARTITION")];
    assert!(
        wait_until(Duration::from_secs(10), || {
            page = Page::read(admin);
            page.sum("gregor_request_errors_total", &err) == 1.0
                && page.sum("gregor_connections_closed_on_error_total", &[]) == before + 1.0
        }),
        "error counters: {} {}",
        page.sum("gregor_request_errors_total", &err),
        page.sum("gregor_connections_closed_on_error_total", &[])
    );

    // Connections: the raw clients above are gone; the gauge never goes negative and the
    // counters agree with it.
    let opened = page.sum("gregor_connections_opened_total", &[]);
    let closed = page.sum("gregor_connections_closed_total", &[]);
    assert_eq!(page.sum("gregor_connections", &[]), opened - closed);
    assert!(opened >= 4.0);
    assert_eq!(page.sum("gregor_shard_serving", &[]), 2.0);
    // Both shards report their cross-shard backlog, far below the mark where reading stops.
    assert_eq!(page.matching("gregor_shard_outbox_jobs", &[]).count(), 2);
    assert!(page.sum("gregor_shard_outbox_jobs", &[]) < 8192.0);
    assert_eq!(page.sum("gregor_active_controller", &[]), 1.0);
    assert_eq!(page.sum("gregor_under_replicated_partitions", &[]), 0.0);
    assert!(page.sum("process_resident_memory_bytes", &[]) > 1e6);

    // The same page by a strict parser.
    let families = python_parse(&scrape_text(admin));
    if let Some(n) = families {
        assert!(n > 40, "{n} families");
    }
}

#[test]
fn health_and_readiness() {
    let (b, admin) = start(&[]);
    let (status, body) = get(admin, "/v1/health");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "ok");
    let (status, body) = get(admin, "/v1/ready");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["ready"], true);
    assert_eq!(v["shards_serving"], 2);
    assert_eq!(v["controller_leader"], 1);
    drop(b);
}

#[test]
fn the_endpoint_survives_garbage_stalls_and_crowds_while_serving_load() {
    let (b, admin) = start(&[]);
    let topic = "loaded";
    create_topic(&b.admin_config(), topic, 2, &[]);

    // A producer keeps writing the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let cfg = b.producer_config();
        std::thread::spawn(move || {
            let p: BaseProducer = cfg.create().expect("producer");
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("v{sent}");
                if p.send(BaseRecord::<(), _>::to(topic).payload(&v)).is_ok() {
                    sent += 1;
                }
                p.poll(Duration::from_millis(1));
            }
            p.flush(Duration::from_secs(30)).expect("flush");
            acked.store(sent, Ordering::Relaxed);
        })
    };

    // Garbage of every kind gets an HTTP error or a close, never a hang or a crash.
    let mut rng = 0x5eed_u64 ^ std::process::id() as u64;
    eprintln!("garbage seed {rng:#x}");
    for i in 0..50 {
        let len = 1 + (next(&mut rng) % 600) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next(&mut rng) as u8).collect();
        if i % 2 == 0 {
            junk.extend_from_slice(b"\r\n\r\n");
        }
        let mut s = TcpStream::connect(admin).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let head = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || head.starts_with("HTTP/1.1 4"),
            "garbage {i} answered {head:?}"
        );
    }
    let (status, _, _) = http(admin, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 405);
    let (status, _) = get(admin, "/nothing/here");
    assert_eq!(status, 404);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (status, _, _) = http(admin, huge.as_bytes());
    assert_eq!(status, 431);
    let (status, head, body) = http(admin, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"));
    assert!(body.is_empty());

    // Clients that send half a request and stall, and clients that ask for the page and never
    // read it, hold no scrape back.
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(admin).expect("connect");
            s.write_all(b"GET /metr").unwrap();
            s
        })
        .collect();
    for _ in 0..10 {
        let mut s = TcpStream::connect(admin).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        stalled.push(s);
    }

    // A crowd of concurrent scrapes: every one answered with a whole page, each with the
    // producer's requests in it once one has been answered.
    assert!(wait_until(Duration::from_secs(30), || {
        Page::read(admin).sum("gregor_requests_total", &[("api", "Produce")]) > 0.0
    }));
    let crowd: Vec<_> = (0..100)
        .map(|_| std::thread::spawn(move || scrape_text(admin)))
        .collect();
    let pages: Vec<String> = crowd.into_iter().map(|t| t.join().unwrap()).collect();
    for p in &pages {
        assert!(p.contains("gregor_requests_total{api=\"Produce\""));
        assert!(p.ends_with('\n'));
    }
    drop(stalled);
    python_parse(&pages[99]);

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let sent = acked.load(Ordering::Relaxed);
    assert!(sent > 0);
    let mut page = Page::read(admin);
    let t = [("topic", topic)];
    assert!(
        wait_until(Duration::from_secs(10), || {
            page = Page::read(admin);
            page.sum("gregor_topic_messages_in_total", &t) == sent as f64
        }),
        "records in {} of {sent} delivered",
        page.sum("gregor_topic_messages_in_total", &t)
    );
    assert_eq!(page.sum("gregor_log_end_offset", &t), sent as f64);
    drop(b);
}

#[test]
fn json_logs_and_an_admin_port_that_is_taken() {
    let b = Broker::start(&[("log.format", "json"), ("admin.listeners", "")]);
    let mut lines: Vec<HashMap<String, serde_json::Value>> = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        lines = b
            .stderr()
            .lines()
            .filter(|l| !l.starts_with("=====")) // the harness marks each start
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        lines
            .iter()
            .any(|l| l.get("message").and_then(|m| m.as_str()) == Some("gregor started"))
    }));
    let started = lines
        .iter()
        .find(|l| l.get("message").and_then(|m| m.as_str()) == Some("gregor started"))
        .unwrap();
    assert_eq!(started["level"], "INFO");
    assert!(started.contains_key("timestamp"));
    assert!(started.contains_key("listener"));
    drop(b);

    // An admin address given explicitly where another process listens stops the broker with
    // the reason (after the wait a just-killed broker's socket gets to go away).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log");
    let settings = vec![
        (
            "listeners".to_string(),
            format!("PLAINTEXT://127.0.0.1:{}", free_port()),
        ),
        (
            "log.dirs".to_string(),
            dir.path().join("data").display().to_string(),
        ),
        ("admin.listeners".to_string(), addr.clone()),
    ];
    let mut child = common::spawn_serve(None, &settings, std::fs::File::create(&log_path).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the broker kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains(&format!("address {addr} is already in use")),
        "{log}"
    );
}

/// splitmix64.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn replication_metrics_follow_a_killed_follower() {
    use common::cluster::{create_topic_rf, Cluster};
    let fast = [
        ("broker.session.timeout.ms", "3000"),
        ("broker.heartbeat.interval.ms", "500"),
        ("replica.lag.time.max.ms", "3000"),
    ];
    let mut c = Cluster::start(3, &fast);
    c.wait_brokers_live(3, Duration::from_secs(60));
    let admin = |c: &Cluster, id| -> SocketAddr {
        format!("127.0.0.1:{}", c.node(id).admin_port)
            .parse()
            .unwrap()
    };
    let topic = "replicated";
    create_topic_rf(&c.admin_config(), topic, 3, 3, &[]);
    c.wait_isr_all(topic, 3, 3, Duration::from_secs(60));
    produce(&c.producer_config(), topic, &keyed(300, "r"));
    // A node that does not answer yet (restarting) counts as NaN, which no condition accepts.
    let total_of = |c: &Cluster, ids: &[i32], name: &str, labels: &[(&str, &str)]| -> f64 {
        ids.iter()
            .map(|id| Page::try_read(admin(c, *id)).map_or(f64::NAN, |p| p.sum(name, labels)))
            .sum()
    };
    let total = |c: &Cluster, ids: &[i32], name: &str| total_of(c, ids, name, &[]);
    let isr = [("topic", topic)];
    let all = [1, 2, 3];
    assert_eq!(total(&c, &all, "gregor_under_replicated_partitions"), 0.0);
    assert!(total(&c, &all, "gregor_leader_partitions") >= 3.0);
    assert_eq!(total(&c, &all, "gregor_active_controller"), 1.0);
    assert_eq!(total(&c, &all, "gregor_topic_messages_in_total"), 300.0);
    assert!(total(&c, &all, "gregor_replication_bytes_out_total") > 0.0);
    assert!(total(&c, &all, "gregor_replication_bytes_in_total") > 0.0);
    let leaders: Vec<f64> = all
        .iter()
        .map(|id| Page::read(admin(&c, *id)).sum("gregor_raft_current_leader", &[]))
        .collect();
    assert!(
        leaders.iter().all(|l| *l == leaders[0] && *l > 0.0),
        "{leaders:?}"
    );

    assert_eq!(
        total_of(&c, &all, "gregor_partition_in_sync_replicas", &isr),
        9.0
    );

    // A follower dies: every partition (the internal topics' too) has a replica there, so each
    // is under-replicated on its leader once the ISR shrinks.
    c.kill(3);
    let live = [1, 2];
    c.wait_for("the ISR to shrink", Duration::from_secs(60), |c| {
        total_of(c, &live, "gregor_partition_in_sync_replicas", &isr) == 6.0
            && total(c, &live, "gregor_under_replicated_partitions") >= 3.0
    });
    assert!(total(&c, &live, "gregor_isr_shrinks_total") >= 1.0);
    assert!(total(&c, &live, "gregor_live_brokers") >= 4.0); // each of the two sees both

    // It comes back and catches up: the ISR grows again.
    c.start_node(3);
    c.wait_for("the ISR to expand", Duration::from_secs(60), |c| {
        total_of(c, &all, "gregor_partition_in_sync_replicas", &isr) == 9.0
            && total(c, &all, "gregor_under_replicated_partitions") == 0.0
            && total(c, &all, "gregor_isr_expands_total") >= 1.0
    });
}
