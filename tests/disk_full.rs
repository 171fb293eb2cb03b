//! A log directory whose device fills: a tmpfs mounted with a size limit, listed in `log.dirs`
//! after an ordinary directory. Produce to the partitions on the full device gets
//! KAFKA_STORAGE_ERROR while the partitions of the other directory, reads of the full ones and
//! the metadata log go on; freeing space resumes writes without a restart; nothing acknowledged
//! is lost, across a SIGKILL and restart too.
//!
//! Mounting needs root (CI runs as root); elsewhere the test says it is skipped.
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::clients::{consume_all, create_topic, watermarks};
use common::{free_port, plain_batch, produce_request, wait_until, Broker, RawClient};

const PRODUCE_VERSION: i16 = 9;
const KAFKA_STORAGE_ERROR: i16 = 56;
const MIB: u64 = 1 << 20;

/// A tmpfs of a given size, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a size-limited tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let size = format!("size={bytes}");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs on {}", dir.display());
        Some(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, bytes: u64) {
        let opts = format!("remount,size={bytes}");
        let status = Command::new("mount")
            .args(["-o", &opts])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Sixteen 4 KiB values, each naming its batch and place.
fn values(topic: &str, batch: usize) -> Vec<Vec<u8>> {
    (0..16)
        .map(|i| {
            let mut v = format!("{topic}-{batch}-{i}-").into_bytes();
            v.resize(4096, b'.');
            v
        })
        .collect()
}

/// Produces one batch; returns its error code and base offset.
fn produce(c: &mut RawClient, topic: &str, values: &[Vec<u8>]) -> (i16, i64) {
    let req = produce_request(topic, 0, -1, plain_batch(values));
    let resp = c.request(&req, PRODUCE_VERSION);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// What was acknowledged: offset -> value.
#[derive(Default)]
struct Acked(BTreeMap<i64, Vec<u8>>);

impl Acked {
    fn add(&mut self, base: i64, values: Vec<Vec<u8>>) {
        for (i, v) in values.into_iter().enumerate() {
            assert!(self.0.insert(base + i as i64, v).is_none(), "offset twice");
        }
    }

    /// Every acknowledged record is in the partition at its offset, with its value.
    fn check(&self, broker: &Broker, topic: &str, what: &str) {
        let (_, end) = watermarks(&broker.consumer_config(), topic, 0);
        let got = consume_all(
            &broker.consumer_config(),
            topic,
            1,
            end as usize,
            Duration::from_secs(60),
        );
        let by_offset: BTreeMap<i64, Option<Vec<u8>>> =
            got.into_iter().map(|g| (g.offset, g.value)).collect();
        for (offset, value) in &self.0 {
            let v = by_offset
                .get(offset)
                .unwrap_or_else(|| panic!("{what}: {topic} acknowledged offset {offset} is gone"));
            assert_eq!(v.as_ref(), Some(value), "{what}: {topic} offset {offset}");
        }
    }
}

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).expect("read page");
    page
}

fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not on the page"))
}

#[test]
fn a_full_log_dir_refuses_writes_to_its_partitions_only_and_resumes_when_space_returns() {
    let root = tempfile::tempdir().unwrap();
    let (big, small) = (root.path().join("big"), root.path().join("small"));
    let Some(fs) = Tmpfs::mount(&small, 12 * MIB) else {
        return;
    };
    let admin = free_port();
    let dirs = format!("{},{}", big.display(), small.display());
    let admin_listener = format!("127.0.0.1:{admin}");
    let mut b = Broker::start(&[
        ("log.dirs", dirs.as_str()),
        ("log.segment.bytes", "1048576"),
        ("admin.listeners", admin_listener.as_str()),
    ]);

    // A new partition goes to the directory with the fewest: "healthy" to the first (a tie),
    // "full" to the tmpfs.
    create_topic(&b.admin_config(), "healthy", 1, &[]);
    assert!(wait_until(Duration::from_secs(10), || big
        .join("healthy-0")
        .is_dir()));
    create_topic(&b.admin_config(), "full", 1, &[]);
    assert!(wait_until(Duration::from_secs(10), || small
        .join("full-0")
        .is_dir()));

    let mut full = RawClient::connect(b.addr());
    let mut healthy = RawClient::connect(b.addr());
    let (mut acked_full, mut acked_healthy) = (Acked::default(), Acked::default());
    let mut batch = 0;
    let mut produce_healthy = |acked: &mut Acked, batch: usize| {
        let v = values("healthy", batch);
        let (code, base) = produce(&mut healthy, "healthy", &v);
        assert_eq!(code, 0, "healthy batch {batch} refused");
        acked.add(base, v);
    };

    // Fill the tmpfs: 64 KiB batches until one is refused, the other directory's partition
    // taking a batch between every two.
    let refused = loop {
        assert!(batch < 1000, "12 MiB took more than 1000 batches of 64 KiB");
        let v = values("full", batch);
        let (code, base) = produce(&mut full, "full", &v);
        produce_healthy(&mut acked_healthy, batch);
        batch += 1;
        match code {
            0 => acked_full.add(base, v),
            code => break code,
        }
    };
    assert_eq!(
        refused, KAFKA_STORAGE_ERROR,
        "a full device is KAFKA_STORAGE_ERROR"
    );
    eprintln!(
        "the tmpfs took {} records before it was full",
        acked_full.0.len()
    );

    // While full: the full partition keeps refusing, the other keeps taking, reads go on.
    for _ in 0..5 {
        let (code, _) = produce(&mut full, "full", &values("full", batch));
        assert_eq!(code, KAFKA_STORAGE_ERROR, "still full");
        produce_healthy(&mut acked_healthy, batch);
        batch += 1;
    }
    acked_full.check(&b, "full", "reading a full partition");
    acked_healthy.check(&b, "healthy", "while the other is full");
    let page = scrape(admin);
    assert!(counter(&page, "gregor_log_out_of_space_total") >= 1.0);
    assert_eq!(counter(&page, "gregor_log_failures_total"), 0.0);
    assert!(b
        .stderr()
        .contains("no space left for this partition's log"));

    // Space returns: writes resume by themselves.
    fs.resize(64 * MIB);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = values("full", batch);
        let (code, base) = produce(&mut full, "full", &v);
        batch += 1;
        if code == 0 {
            acked_full.add(base, v);
            break;
        }
        assert_eq!(code, KAFKA_STORAGE_ERROR);
        assert!(Instant::now() < deadline, "writes did not resume");
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..20 {
        let v = values("full", batch);
        let (code, base) = produce(&mut full, "full", &v);
        assert_eq!(code, 0, "after space returned");
        acked_full.add(base, v);
        produce_healthy(&mut acked_healthy, batch);
        batch += 1;
    }
    assert!(b.stderr().contains("space is available again"));
    acked_full.check(&b, "full", "after space returned");

    // Nothing acknowledged is lost across a crash.
    drop((full, produce_healthy));
    b.kill();
    b.start_again();
    acked_full.check(&b, "full", "after a restart");
    acked_healthy.check(&b, "healthy", "after a restart");
}
