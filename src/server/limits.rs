//! Connection limits: how many clients the broker takes (broker-wide and per address), and
//! when it lets one go (idle, or not reading what it is owed).
//!
//! Counting ([`ConnectionQuotas`]) happens at accept and close only, never per request, so one
//! mutex shared by every shard is enough. Kafka's rules (SocketServer's ConnectionQuotas):
//! at `max.connections` a listener holds the connection it just accepted, unserved, until a
//! connection closes, and accepts no other meanwhile (later clients wait in the kernel's
//! backlog); a connection over `max.connections.per.ip` (or its override) is closed at once.
//!
//! Each connection has a watchdog ([`watch`]) that closes it when [`Rules::check`] says so:
//! - idle: no request read and no response byte written for `connections.max.idle.ms`, Kafka's
//!   rule (its Selector expires connections whose last read or write is that old);
//! - unread: more than `connections.max.unsent.bytes` of responses wait for the client and the
//!   socket has taken none of them for `connections.max.unsent.ms`. Kafka would keep such a
//!   client until the idle timeout, holding its requests' share of `queued.max.request.bytes`;
//!   gregor lets it go sooner (the default 30 s is clients' own `request.timeout.ms`, after
//!   which they have given up on the response anyway). Closing drops its queued responses and
//!   releases the request bytes it held.
//!
//! The watchdog shuts the socket down (`shutdown(2)`), which ends the connection's reader and
//! writer as if the client had gone; it never touches the descriptor after the connection
//! marked itself closed.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::framing::SendProgress;
use crate::config::ConnectionConfig;

/// How often a listener at `max.connections` looks for a free slot.
const SLOT_POLL: Duration = Duration::from_millis(10);
/// The watchdog never sleeps less than this (a deadline that just passed is rechecked soon).
const RECHECK_MIN: Duration = Duration::from_millis(10);

/// Open client connections of the broker, by address. One per process (one broker).
pub struct ConnectionQuotas {
    config: ConnectionConfig,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `max.connections` is reached: wait for a slot.
    Broker { max: u32 },
    /// `max.connections.per.ip` (or the address's override).
    Ip { ip: IpAddr, max: u32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Broker { max } => write!(f, "max.connections ({max}) reached"),
            Refusal::Ip { ip, max } => {
                write!(
                    f,
                    "too many connections from {ip} (max.connections.per.ip {max})"
                )
            }
        }
    }
}

/// A counted connection; dropping it gives the slot back.
pub struct Admission {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.quotas.release(self.ip);
    }
}

impl ConnectionQuotas {
    pub fn new(config: &ConnectionConfig) -> Arc<ConnectionQuotas> {
        Arc::new(ConnectionQuotas {
            config: config.clone(),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic while holding the lock cannot leave the counts half-updated (each update is
        // one statement), so a poisoned lock is still good.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the broker is below `max.connections`.
    pub fn slot_available(&self) -> bool {
        self.counts().total < self.config.max_connections
    }

    /// Open connections, broker-wide and from `ip`.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> (u32, u32) {
        let c = self.counts();
        (c.total, c.per_ip.get(&ip).copied().unwrap_or(0))
    }

    /// Counts a new connection from `ip`, or says why it must be closed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let mut c = self.counts();
        let max = self.config.max_connections;
        if c.total >= max {
            return Err(Refusal::Broker { max });
        }
        let max = self.config.max_for(ip);
        let from_ip = c.per_ip.entry(ip).or_insert(0);
        if *from_ip >= max {
            if *from_ip == 0 {
                c.per_ip.remove(&ip);
            }
            return Err(Refusal::Ip { ip, max });
        }
        *from_ip += 1;
        c.total += 1;
        Ok(Admission {
            quotas: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut c = self.counts();
        let from_ip = c.per_ip.get_mut(&ip);
        let Some(n) = from_ip else {
            panic!("a connection from {ip} closed that was never counted");
        };
        *n -= 1;
        if *n == 0 {
            c.per_ip.remove(&ip);
        }
        c.total -= 1;
    }

    /// Waits until the broker is below `max.connections` (polled: the connection that frees
    /// a slot may live on another shard, and glommio tasks are not woken across threads).
    pub async fn wait_for_slot(&self) {
        while !self.slot_available() {
            glommio::timer::sleep(SLOT_POLL).await;
        }
    }
}

static BROKER_QUOTAS: OnceLock<Arc<ConnectionQuotas>> = OnceLock::new();

/// The broker's connection counts, shared by every shard's listener.
pub fn broker_quotas(config: &ConnectionConfig) -> Arc<ConnectionQuotas> {
    BROKER_QUOTAS
        .get_or_init(|| ConnectionQuotas::new(config))
        .clone()
}

/// What the watchdog looks at, updated by the connection's reader and writer.
#[derive(Debug, Default)]
pub struct Activity {
    /// When the last request was read (or the connection opened).
    pub last_read: Cell<Option<Instant>>,
    pub send: SendProgress,
    /// Cleared by the writer before the socket is closed: the watchdog must not touch the
    /// descriptor after that.
    pub open: Cell<bool>,
}

impl Activity {
    pub fn new() -> Rc<Activity> {
        let a = Activity::default();
        a.last_read.set(Some(Instant::now()));
        a.open.set(true);
        Rc::new(a)
    }

    /// A request was read.
    pub fn read(&self) {
        self.last_read.set(Some(Instant::now()));
    }

    fn view(&self) -> View {
        let sent = self.send.last_progress.get();
        View {
            last_io: self.last_read.get().map_or(sent, |r| r.max(sent)),
            unsent_bytes: self.send.unsent_bytes.get() as u64,
            last_sent: sent,
        }
    }
}

/// A connection's state as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// The last request read or response byte written.
    pub last_io: Instant,
    pub unsent_bytes: u64,
    /// When the socket last took response bytes.
    pub last_sent: Instant,
}

/// Why a connection was let go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    Idle { for_ms: u128 },
    Unread { unsent_bytes: u64, for_ms: u128 },
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Idle { for_ms } => write!(f, "idle for {for_ms} ms (connections.max.idle.ms)"),
            Cut::Unread {
                unsent_bytes,
                for_ms,
            } => write!(
                f,
                "{unsent_bytes} response bytes unread for {for_ms} ms \
                 (connections.max.unsent.bytes/.ms)"
            ),
        }
    }
}

/// The watchdog's rules, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    idle: Option<Duration>,
    unsent_bytes_max: u64,
    unsent_for: Duration,
}

/// What the watchdog does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Cut(Cut),
    /// Look again after this long.
    Recheck(Duration),
}

impl Rules {
    pub fn new(c: &ConnectionConfig) -> Rules {
        Rules {
            idle: u64::try_from(c.connections_max_idle_ms)
                .ok()
                .map(Duration::from_millis),
            unsent_bytes_max: c.connections_max_unsent_bytes,
            unsent_for: Duration::from_millis(c.connections_max_unsent_ms),
        }
    }

    pub fn check(&self, now: Instant, v: View) -> Check {
        let quiet = now.saturating_duration_since(v.last_io);
        let mut next = self.unsent_for;
        if let Some(idle) = self.idle {
            if quiet >= idle {
                return Check::Cut(Cut::Idle {
                    for_ms: quiet.as_millis(),
                });
            }
            next = next.min(idle - quiet);
        }
        if v.unsent_bytes > self.unsent_bytes_max {
            let stalled = now.saturating_duration_since(v.last_sent);
            if stalled >= self.unsent_for {
                return Check::Cut(Cut::Unread {
                    unsent_bytes: v.unsent_bytes,
                    for_ms: stalled.as_millis(),
                });
            }
            next = next.min(self.unsent_for - stalled);
        }
        Check::Recheck(next.max(RECHECK_MIN))
    }
}

/// Watches one connection and shuts its socket down when the rules say so. Ends when it does,
/// or when the connection closes (the task is also dropped then).
pub async fn watch(fd: RawFd, activity: Rc<Activity>, rules: Rules, peer: String) {
    loop {
        match rules.check(Instant::now(), activity.view()) {
            Check::Recheck(after) => glommio::timer::sleep(after).await,
            Check::Cut(why) => {
                if activity.open.get() {
                    tracing::info!(%peer, %why, "closing connection");
                    // SAFETY: shutdown(2) on the connection's socket, which is still open
                    // (`open` is cleared before it closes); no memory is involved.
                    unsafe {
                        libc::shutdown(fd, libc::SHUT_RDWR);
                    }
                }
                return;
            }
        }
        if !activity.open.get() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: u32, per_ip: u32, overrides: &str) -> ConnectionConfig {
        let mut c = ConnectionConfig {
            max_connections: max,
            max_connections_per_ip: per_ip,
            ..ConnectionConfig::default()
        };
        c.set("max.connections.per.ip.overrides", overrides)
            .unwrap();
        c
    }

    #[test]
    fn quotas_count_admit_refuse_and_release() {
        let q = ConnectionQuotas::new(&config(3, 2, "10.0.0.9:0,10.0.0.8:3"));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = q.admit(a).unwrap();
        let a2 = q.admit(a).unwrap();
        assert_eq!(q.admit(a).err(), Some(Refusal::Ip { ip: a, max: 2 }));
        assert_eq!(q.open(a), (2, 2));
        let no_one: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            q.admit(no_one).err(),
            Some(Refusal::Ip { ip: no_one, max: 0 })
        );
        assert_eq!(q.open(no_one), (2, 0));
        assert!(q.slot_available());
        let b1 = q.admit(b).unwrap();
        assert!(!q.slot_available());
        assert_eq!(q.admit(b).err(), Some(Refusal::Broker { max: 3 }));
        drop(a1);
        assert!(q.slot_available());
        assert_eq!(q.open(a), (2, 1));
        let b2 = q.admit(b).unwrap();
        drop((a2, b1, b2));
        assert_eq!(q.open(a), (0, 0));
        assert!(q.counts().per_ip.is_empty());
        let many: IpAddr = "10.0.0.8".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| q.admit(many).unwrap()).collect();
        assert_eq!(q.open(many), (3, 3));
        drop(held);
    }

    fn rules(idle_ms: i64, unsent_bytes: u64, unsent_ms: u64) -> Rules {
        Rules::new(&ConnectionConfig {
            connections_max_idle_ms: idle_ms,
            connections_max_unsent_bytes: unsent_bytes,
            connections_max_unsent_ms: unsent_ms,
            ..ConnectionConfig::default()
        })
    }

    #[test]
    fn rules_cut_idle_and_unread_connections_only() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let view = |last_io: u64, unsent_bytes: u64, last_sent: u64| View {
            last_io: t0 + ms(last_io),
            unsent_bytes,
            last_sent: t0 + ms(last_sent),
        };
        let r = rules(1000, 100, 300);
        let cases = [
            // (now, view, expected)
            (0, view(0, 0, 0), Check::Recheck(ms(300))),
            (900, view(0, 0, 0), Check::Recheck(ms(100))),
            (995, view(0, 0, 0), Check::Recheck(RECHECK_MIN)),
            (1000, view(0, 0, 0), Check::Cut(Cut::Idle { for_ms: 1000 })),
            (1500, view(1000, 0, 0), Check::Recheck(ms(300))),
            // Owed no more than the limit: only the idle rule applies.
            (400, view(0, 100, 0), Check::Recheck(ms(300))),
            // Owed more, and the socket took something 100 ms ago.
            (400, view(300, 101, 300), Check::Recheck(ms(200))),
            (
                600,
                view(300, 101, 300),
                Check::Cut(Cut::Unread {
                    unsent_bytes: 101,
                    for_ms: 300,
                }),
            ),
        ];
        for (now, v, want) in cases {
            assert_eq!(r.check(t0 + ms(now), v), want, "now {now} {v:?}");
        }
        let never_idle = rules(-1, 100, 300);
        assert_eq!(
            never_idle.check(t0 + ms(1_000_000), view(0, 0, 0)),
            Check::Recheck(ms(300))
        );
    }
}
