//! One monotonic clock for the whole driver: nanoseconds since the first call in this process.
//! Producers write it into record values and consumers read it back in the same process, so
//! end-to-end latency never mixes clocks (and never goes backwards with NTP steps).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process's clock base.
pub fn now_ns() -> u64 {
    let base = BASE.get_or_init(Instant::now);
    base.elapsed().as_nanos() as u64
}

/// Wall-clock milliseconds since the Unix epoch, for the Kafka record timestamp.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sleeps until the clock reads `deadline_ns` (returns at once if it already passed).
pub fn sleep_until(deadline_ns: u64) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(Duration::from_nanos(deadline_ns - now));
    }
}
