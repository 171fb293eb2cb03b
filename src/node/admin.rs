//! The admin HTTP listener (`admin.listeners`, default 127.0.0.1:9644): `/metrics` in
//! Prometheus text format, `/v1/health` (the process answers) and `/v1/ready` (every shard
//! serves and the metadata quorum has a leader), with JSON bodies.
//!
//! It runs on the metadata core, never on a data shard, and is built for hostile input as the
//! client port is: one request per connection (`Connection: close`), headers of at most
//! [`HEAD_MAX`] bytes read within [`IO_TIMEOUT`], answers written within it too, at most
//! [`CONNECTIONS_MAX`] connections at once (more are closed on accept). Concurrent scrapes
//! share one collection: a scrape uses the last page if its collection started after the scrape
//! arrived, so a hundred scrapers at once cost the shards one or two collections.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::report::{self, CoreReport, ProcessStats, ShardReport};
use crate::metadata::raft::transport::within;
use crate::metrics::exposition::CONTENT_TYPE;
use crate::shard::Shard;

/// Bytes of request line and headers read at most.
const HEAD_MAX: usize = 8 << 10;
/// Time to read a request, and to write its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once.
const CONNECTIONS_MAX: usize = 128;

/// Collections one at a time, and the last page collected with when its collection started.
struct Scrapes {
    lock: Rc<glommio::sync::Semaphore>,
    last: Option<(Instant, Rc<String>)>,
}

/// Binds the admin listener (start-up already checked that no other process answers there).
/// An error for a listener set explicitly, which must stop the broker; the default one is
/// skipped with a warning.
pub fn bind(core: &Rc<Shard>) -> Result<Option<TcpListener>, String> {
    let Some(addr) = core.config.admin_listener else {
        return Ok(None);
    };
    match TcpListener::bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if core.config.is_explicit("admin.listeners") => {
            Err(format!("admin listener {addr}: {e}"))
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "admin listener not started (metrics and health checks are off); set admin.listeners to another address, or to nothing");
            Ok(None)
        }
    }
}

/// Serves the admin listener until the task is dropped.
pub async fn serve(core: Rc<Shard>, listener: TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener (metrics, health) started");
    }
    let scrapes = Rc::new(RefCell::new(Scrapes {
        lock: Rc::new(glommio::sync::Semaphore::new(1)),
        last: None,
    }));
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= CONNECTIONS_MAX {
            tracing::debug!("admin connection refused: too many open");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let (core, scrapes, open) = (core.clone(), scrapes.clone(), open.clone());
        glommio::spawn_local(async move {
            if let Err(e) = answer(&core, &scrapes, stream).await {
                tracing::debug!(error = %e, "admin request failed");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Health,
    Ready,
    NotFound,
}

/// A parsed request line, or the status to refuse it with.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Incomplete,
    Get { route: Route, head_only: bool },
    Refuse(u16),
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => Parsed::Refuse(431),
        Err(_) => Parsed::Refuse(400),
        Ok(httparse::Status::Complete(_)) => {
            let head_only = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => return Parsed::Refuse(405),
            };
            let path = req.path.unwrap_or("/");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            let route = match path.trim_end_matches('/') {
                "/metrics" => Route::Metrics,
                "/v1/health" => Route::Health,
                "/v1/ready" => Route::Ready,
                _ => Route::NotFound,
            };
            Parsed::Get { route, head_only }
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> Result<Parsed, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before a whole request".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf) {
            Parsed::Incomplete if buf.len() >= HEAD_MAX => return Ok(Parsed::Refuse(431)),
            Parsed::Incomplete => {}
            done => return Ok(done),
        }
    }
}

async fn answer(
    core: &Rc<Shard>,
    scrapes: &Rc<RefCell<Scrapes>>,
    mut stream: TcpStream,
) -> Result<(), String> {
    let arrived = Instant::now();
    let parsed = within(IO_TIMEOUT, read_head(&mut stream))
        .await
        .unwrap_or(Ok(Parsed::Refuse(408)))?;
    let (status, content_type, body, head_only) = match parsed {
        Parsed::Incomplete => unreachable!("read_head returns complete requests only"),
        Parsed::Refuse(code) => (code, "application/json", error_body(code), false),
        Parsed::Get { route, head_only } => {
            let (status, ct, body) = match route {
                Route::Metrics => (200, CONTENT_TYPE, scrape(core, scrapes, arrived).await),
                Route::Health => (200, "application/json", health(core)),
                Route::Ready => {
                    let (ready, body) = readiness(core).await;
                    (if ready { 200 } else { 503 }, "application/json", body)
                }
                Route::NotFound => (404, "application/json", error_body(404)),
            };
            (status, ct, body, head_only)
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        if !head_only {
            stream.write_all(body.as_bytes()).await?;
        }
        stream.flush().await?;
        stream.close().await
    };
    match within(IO_TIMEOUT, write).await {
        Some(r) => r.map_err(|e| e.to_string()),
        None => Err("answer not read in time".into()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn error_body(status: u16) -> Rc<String> {
    Rc::new(format!(
        "{{\"status\":{status},\"error\":\"{}\"}}\n",
        reason(status)
    ))
}

fn health(core: &Rc<Shard>) -> Rc<String> {
    Rc::new(format!(
        "{{\"status\":\"ok\",\"node_id\":{}}}\n",
        core.config.node_id
    ))
}

/// Ready when every data shard serves (logs recovered, client listener open; a node without
/// the broker role has none) and the metadata quorum has a leader.
async fn readiness(core: &Rc<Shard>) -> (bool, Rc<String>) {
    let serving: Vec<bool> = core
        .invoke_on_all(|s| async move { s.is_serving() })
        .await
        .into_iter()
        .map(|r| r.unwrap_or(false))
        .collect();
    let broker = core.config.cluster.broker;
    let shards_ready = !broker || serving.iter().all(|s| *s);
    let leader = core.quorum().and_then(|q| q.leader());
    let ready = shards_ready && leader.is_some();
    let body = serde_json::json!({
        "ready": ready,
        "node_id": core.config.node_id,
        "shards_serving": serving.iter().filter(|s| **s).count(),
        "shards": serving.len(),
        "broker": broker,
        "controller_leader": leader,
    });
    (ready, Rc::new(format!("{body}\n")))
}

/// The metrics page: the last one if its collection started after `arrived`, else a new one.
async fn scrape(core: &Rc<Shard>, scrapes: &Rc<RefCell<Scrapes>>, arrived: Instant) -> Rc<String> {
    let lock = scrapes.borrow().lock.clone();
    let _held = lock.acquire_permit(1).await.ok();
    if let Some((started, page)) = &scrapes.borrow().last {
        if *started >= arrived {
            return page.clone();
        }
    }
    let started = Instant::now();
    let page = Rc::new(collect(core).await);
    scrapes.borrow_mut().last = Some((started, page.clone()));
    page
}

/// Asks every data shard for its report and renders the page.
async fn collect(core: &Rc<Shard>) -> String {
    let shards: Vec<ShardReport> = core
        .invoke_on_all(|s| async move { ShardReport::of(&s) })
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let own = CoreReport::of(core);
    report::render(&shards, &own, &ProcessStats::read())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_and_garbage_is_refused() {
        let get = |path: &str| parse(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let ok = |route| Parsed::Get {
            route,
            head_only: false,
        };
        assert_eq!(get("/metrics"), ok(Route::Metrics));
        assert_eq!(get("/metrics?name[]=x"), ok(Route::Metrics));
        assert_eq!(get("/v1/health"), ok(Route::Health));
        assert_eq!(get("/v1/ready/"), ok(Route::Ready));
        assert_eq!(get("/"), ok(Route::NotFound));
        assert_eq!(
            parse(b"HEAD /metrics HTTP/1.0\r\n\r\n"),
            Parsed::Get {
                route: Route::Metrics,
                head_only: true
            }
        );
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost"), Parsed::Incomplete);
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Parsed::Refuse(405)
        );
        assert_eq!(parse(b"\x00\x01\x02garbage\r\n\r\n"), Parsed::Refuse(400));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Parsed::Refuse(431)
        );
    }
}
