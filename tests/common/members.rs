//! Members of a consumer group for the group tests: librdkafka consumers polling on threads
//! or in a child process (to be SIGKILLed), whose rebalance callbacks report to a [`Registry`]
//! that records every moment a partition was assigned to one member while another owned it.
//!
//! A test binary using [`ChildMember`] must have a test named `child_member_entry` that calls
//! [`child_entry`].

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use super::clients::{produce, TestRecord};
use super::{wait_until, Broker};

/// librdkafka's (and the broker's) minimum session timeout, for classic members.
pub const SESSION_TIMEOUT_MS: &str = "6000";
/// Env var that turns `child_member_entry` into a consumer loop (bootstrap;group;topic;strategy).
const CHILD_ENV: &str = "GREGOR_GROUPS_TEST_CHILD";
/// The child's "strategy" that makes it a member of the consumer protocol (KIP-848).
pub const CONSUMER_PROTOCOL: &str = "consumer-protocol";

/// Who owns which partition, as the members' rebalance callbacks report it.
#[derive(Default)]
pub struct Registry {
    owners: Mutex<BTreeMap<i32, String>>,
    violations: Mutex<Vec<String>>,
}

impl Registry {
    pub fn assign(&self, who: &str, partitions: &[i32]) {
        let mut owners = self.owners.lock().unwrap();
        for p in partitions {
            if let Some(other) = owners.get(p).filter(|o| *o != who) {
                self.violations.lock().unwrap().push(format!(
                    "partition {p} assigned to {who} while {other} owns it"
                ));
            }
            owners.insert(*p, who.to_string());
        }
    }

    pub fn revoke(&self, who: &str, partitions: &[i32]) {
        let mut owners = self.owners.lock().unwrap();
        for p in partitions {
            if owners.get(p).is_some_and(|o| o == who) {
                owners.remove(p);
            }
        }
    }

    pub fn release_all(&self, who: &str) {
        self.owners.lock().unwrap().retain(|_, o| o != who);
    }

    pub fn owned_by(&self, who: &str) -> Vec<i32> {
        let owners = self.owners.lock().unwrap();
        owners
            .iter()
            .filter(|(_, o)| *o == who)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Partition count per owner.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self.owners.lock().unwrap().values() {
            *out.entry(o.clone()).or_default() += 1;
        }
        out
    }

    pub fn owned(&self) -> usize {
        self.owners.lock().unwrap().len()
    }

    pub fn assert_no_violations(&self) {
        let v = self.violations.lock().unwrap();
        assert!(v.is_empty(), "ownership violations: {v:?}");
    }
}

pub fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v
}

/// A member's context: reports to the registry and keeps its own rebalance log.
pub struct Tracker {
    pub name: String,
    pub registry: Arc<Registry>,
    /// ("assign" | "revoke", partitions), in order.
    pub log: Mutex<Vec<(&'static str, Vec<i32>)>>,
    pub rebalances: AtomicUsize,
}

impl ClientContext for Tracker {}

impl ConsumerContext for Tracker {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let ps = partitions_of(tpl);
            self.registry.revoke(&self.name, &ps);
            self.log.lock().unwrap().push(("revoke", ps));
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            let ps = partitions_of(tpl);
            self.registry.assign(&self.name, &ps);
            self.log.lock().unwrap().push(("assign", ps));
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A consumer in a group, polling on its own thread; every record it gets goes into `seen`
/// and its offset is stored for auto-commit.
pub struct Member {
    pub tracker: Arc<TrackerHandle>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the test reads of a member while its thread owns the consumer.
pub struct TrackerHandle {
    pub name: String,
    log: Mutex<Vec<(&'static str, Vec<i32>)>>,
    rebalances: AtomicUsize,
    consumed: AtomicUsize,
}

pub type Seen = Arc<Mutex<HashSet<(i32, i64)>>>;

impl Member {
    pub fn spawn(
        cfg: ClientConfig,
        name: &str,
        topic: &str,
        registry: &Arc<Registry>,
        seen: &Seen,
    ) -> Member {
        let handle = Arc::new(TrackerHandle {
            name: name.to_string(),
            log: Mutex::new(Vec::new()),
            rebalances: AtomicUsize::new(0),
            consumed: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, reg, seen, topic) = (
            handle.clone(),
            stop.clone(),
            registry.clone(),
            seen.clone(),
            topic.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let ctx = Tracker {
                name: h.name.clone(),
                registry: reg,
                log: Mutex::new(Vec::new()),
                rebalances: AtomicUsize::new(0),
            };
            let c: BaseConsumer<Tracker> = cfg.create_with_context(ctx).expect("create consumer");
            c.subscribe(&[&topic]).expect("subscribe");
            let sync = |c: &BaseConsumer<Tracker>| {
                *h.log.lock().unwrap() = c.context().log.lock().unwrap().clone();
                h.rebalances.store(
                    c.context().rebalances.load(Ordering::SeqCst),
                    Ordering::SeqCst,
                );
            };
            while !s.load(Ordering::SeqCst) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    seen.lock().unwrap().insert((m.partition(), m.offset()));
                    let _ = c.store_offset_from_message(&m);
                    h.consumed.fetch_add(1, Ordering::SeqCst);
                }
                sync(&c);
            }
            // Dropping closes the consumer: final commit, revoke, LeaveGroup (unless static).
            let ctx_reg = c.context().registry.clone();
            drop(c);
            ctx_reg.release_all(&h.name);
        });
        Member {
            tracker: handle,
            stop,
            thread: Some(thread),
        }
    }

    pub fn rebalances(&self) -> usize {
        self.tracker.rebalances.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<(&'static str, Vec<i32>)> {
        self.tracker.log.lock().unwrap().clone()
    }

    /// Clean stop: the consumer closes (commits, leaves the group) before this returns.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread panicked");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A member in a child process (this binary, running `child_member_entry`), so it can be
/// killed without a LeaveGroup. It never commits; its rebalance callbacks come back over
/// stdout into the registry under the name "child".
pub struct ChildMember {
    child: Child,
    reader: Option<JoinHandle<()>>,
}

impl ChildMember {
    pub fn spawn(
        b: &Broker,
        group: &str,
        topic: &str,
        strategy: &str,
        registry: &Arc<Registry>,
    ) -> ChildMember {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .args([
                "child_member_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{};{group};{topic};{strategy}", b.bootstrap()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child member");
        let out = child.stdout.take().expect("child stdout");
        let reg = registry.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // libtest's "test child_member_entry ... " may share the first event's line.
                let Some(at) = line.find("EVENT ") else {
                    continue;
                };
                let mut parts = line[at..].split_whitespace().skip(1);
                let kind = parts.next().unwrap_or_default().to_string();
                let ps: Vec<i32> = parts
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|p| p.parse().ok())
                    .collect();
                match kind.as_str() {
                    "ASSIGN" => reg.assign("child", &ps),
                    "REVOKE" => reg.revoke("child", &ps),
                    _ => {}
                }
            }
        });
        ChildMember {
            child,
            reader: Some(reader),
        }
    }

    /// SIGKILL: no LeaveGroup, no commit.
    pub fn kill(mut self, registry: &Registry) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        registry.release_all("child");
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's context: prints its rebalances, then gives the parent time to read them before
/// the consumer rejoins.
pub struct ChildTracker;

impl ClientContext for ChildTracker {}

impl ConsumerContext for ChildTracker {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            println!("EVENT REVOKE {}", join(&partitions_of(tpl)));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            println!("EVENT ASSIGN {}", join(&partitions_of(tpl)));
        }
    }
}

pub fn join(ps: &[i32]) -> String {
    ps.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The killable member's consumer loop, when `CHILD_ENV` is set (otherwise nothing).
pub fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(';').collect();
    let [bootstrap, group, topic, strategy] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", "child")
        .set("max.poll.interval.ms", "30000")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    if strategy == CONSUMER_PROTOCOL {
        cfg.set("group.protocol", "consumer");
    } else {
        cfg.set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", "500")
            .set("partition.assignment.strategy", strategy);
    }
    let c: BaseConsumer<ChildTracker> = cfg.create_with_context(ChildTracker).expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    // Bounded even if the parent dies without killing us.
    let deadline = Instant::now() + Duration::from_secs(150);
    while Instant::now() < deadline {
        let _ = c.poll(Duration::from_millis(100));
    }
}

// ----- broker-side views shared by the group suites -----

pub fn wait_for(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}

pub fn gregor_client(b: &Broker) -> gregor::client::Client {
    gregor::client::Client::connect(&b.bootstrap(), "group-members-test").expect("connect")
}

/// Committed offsets per partition of `topic` (absent partitions have none).
pub fn committed(b: &Broker, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let rows = match gregor_client(b).committed_offsets(group) {
        Ok(rows) => rows,
        Err(e) => panic!("offset fetch of {group}: {e}"),
    };
    rows.into_iter()
        .filter(|(t, _, o)| t == topic && *o >= 0)
        .map(|(_, p, o)| (p, o))
        .collect()
}

pub fn log_ends(b: &Broker, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let queries: Vec<(i32, i64)> = (0..partitions).map(|p| (p, -1)).collect();
    gregor_client(b)
        .list_offsets(topic, &queries, 0)
        .expect("list offsets")
        .into_iter()
        .collect()
}

/// `n` records spread round-robin over `partitions`, values tagged with their index.
pub fn produce_spread(b: &Broker, topic: &str, partitions: i32, first: usize, n: usize) {
    let records: Vec<TestRecord> = (first..first + n)
        .map(|i| TestRecord::value(format!("r{i}")).in_partition(i as i32 % partitions))
        .collect();
    produce(&b.producer_config(), topic, &records);
}
