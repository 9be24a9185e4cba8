//! The built-in router: a small weighted reverse proxy for machines
//! without nginx (and for the demo). Two slots, stable and candidate, each
//! a backend — an HTTP address, or a release folder served as static
//! files. Unforced requests split by the candidate's weight, exactly (of
//! every 100 requests, `weight` go to the candidate); a request can force
//! its slot with the `X-Stella-Variant` header or the `stella-variant`
//! cookie (`stable`/`candidate`, or `a`/`b`). Every response says where it
//! went in `X-Stella-Slot`. Counters — requests, errors (5xx or a backend
//! that failed), latency — are kept per release (the digest each slot's
//! route names), so a swap never credits one release with another's
//! traffic; they feed the analysis.
//!
//! Routes are swapped whole: a request keeps the routes it started with,
//! so shifting traffic never fails one in flight, as long as the backend
//! it went to stays up until it is answered.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::domain::Digest;

type Body = BoxBody<Bytes, hyper::Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Stable,
    Candidate,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Stable => "stable",
            Slot::Candidate => "candidate",
        }
    }

    fn parse(s: &str) -> Option<Slot> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stable" | "a" => Some(Slot::Stable),
            "candidate" | "b" => Some(Slot::Candidate),
            _ => None,
        }
    }
}

/// Where a slot's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Http(SocketAddr),
    /// A release folder, served as static files.
    Static(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routes {
    pub stable: Option<Backend>,
    pub candidate: Option<Backend>,
    /// Percent (0–100) of unforced requests for the candidate.
    pub weight: u8,
    /// Which routes these are: answered in `X-Stella-Routes`, so whoever
    /// changed them can see when they are live.
    pub version: u64,
    /// A/B: a client without the `stella-variant` cookie gets one naming
    /// the variant it was given, and keeps it.
    pub sticky: bool,
    /// Feature flags, `on`, `off` or `N%`, sent to process backends in
    /// `X-Stella-Flags`.
    pub flags: std::collections::BTreeMap<String, String>,
    /// The release each slot serves: requests are counted per release.
    /// A slot without one is counted as that slot.
    pub stable_release: Option<Digest>,
    pub candidate_release: Option<Digest>,
}

impl Routes {
    /// The release `slot` serves, if the routes name it.
    pub fn release(&self, slot: Slot) -> Option<&Digest> {
        match slot {
            Slot::Stable => self.stable_release.as_ref(),
            Slot::Candidate => self.candidate_release.as_ref(),
        }
    }
}

/// Whether flag `name` (`on`, `off` or `N%`) is on for the client at
/// `ip`: a percentage is decided by a hash of the client and the flag, so
/// a client keeps its answer.
pub fn flag_on(value: &str, name: &str, ip: std::net::IpAddr) -> bool {
    match value {
        "on" => true,
        "off" => false,
        v => {
            let pct: u64 = v.trim_end_matches('%').parse().unwrap_or(0);
            // FNV-1a over the address and the flag's name.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in ip.to_string().bytes().chain([b'/']).chain(name.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            h % 100 < pct
        }
    }
}

/// The `X-Stella-Flags` value for the client at `ip`: `name=on; other=off`.
pub fn flags_header(
    flags: &std::collections::BTreeMap<String, String>,
    ip: std::net::IpAddr,
) -> String {
    flags
        .iter()
        .map(|(n, v)| format!("{n}={}", if flag_on(v, n, ip) { "on" } else { "off" }))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Latency bucket bounds in microseconds: 50 µs doubling to ~1.7 min.
const BUCKETS: usize = 22;

fn bucket(d: Duration) -> usize {
    let us = d.as_micros().max(1) as u64;
    let mut b = 0;
    let mut bound = 50u64;
    while us > bound && b < BUCKETS - 1 {
        bound *= 2;
        b += 1;
    }
    b
}

fn bound_ms(b: usize) -> f64 {
    (50u64 << b) as f64 / 1000.0
}

/// A slot's live counters: requests, errors and a latency histogram.
#[derive(Default)]
pub struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

/// A slot's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SlotStats {
    pub requests: u64,
    pub errors: u64,
    /// Upper bounds of the latency buckets the percentiles fall in.
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Requests per latency bucket (50 µs doubling), for percentiles of
    /// an interval.
    latency: [u64; BUCKETS],
}

impl SlotStats {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// What happened between `earlier` and this: for an analysis interval.
    pub fn since(&self, earlier: &SlotStats) -> SlotStats {
        let mut latency = [0; BUCKETS];
        for (i, l) in latency.iter_mut().enumerate() {
            *l = self.latency[i].saturating_sub(earlier.latency[i]);
        }
        stats_of(
            self.requests.saturating_sub(earlier.requests),
            self.errors.saturating_sub(earlier.errors),
            latency,
        )
    }
}

fn percentile(latency: &[u64; BUCKETS], total: u64, p: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let want = (total as f64 * p).ceil() as u64;
    let mut seen = 0;
    for (b, n) in latency.iter().enumerate() {
        seen += n;
        if seen >= want {
            return bound_ms(b);
        }
    }
    bound_ms(BUCKETS - 1)
}

fn stats_of(requests: u64, errors: u64, latency: [u64; BUCKETS]) -> SlotStats {
    let timed: u64 = latency.iter().sum();
    SlotStats {
        requests,
        errors,
        p50_ms: percentile(&latency, timed, 0.50),
        p95_ms: percentile(&latency, timed, 0.95),
        latency,
    }
}

impl Counters {
    pub fn record(&self, error: bool, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> SlotStats {
        let mut latency = [0; BUCKETS];
        for (i, l) in latency.iter_mut().enumerate() {
            *l = self.latency[i].load(Ordering::Relaxed);
        }
        stats_of(
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            latency,
        )
    }
}

struct Shared {
    live: RwLock<Arc<Live>>,
    unforced: AtomicU64,
    tally: Mutex<Tally>,
    client: Client<HttpConnector, Incoming>,
}

/// The routes served now, with the counters of each slot's release: one
/// `Arc` taken per request, as for the routes alone.
struct Live {
    routes: Routes,
    counters: [Arc<Counters>; 2],
}

/// Every release's counters, and those of slots whose release is not
/// named.
#[derive(Default)]
pub struct Tally {
    releases: BTreeMap<Digest, Arc<Counters>>,
    unnamed: [Arc<Counters>; 2],
}

/// How many releases' counters a router keeps: those it routes to, and
/// others up to this many (past it, releases no longer routed to are
/// dropped, in digest order), so a long-running router stays small.
const KEPT_RELEASES: usize = 16;

impl Tally {
    /// The counters `routes` sends each slot's requests to; a release
    /// seen before keeps its counters, a new one starts at zero.
    pub fn counters_for(&mut self, routes: &Routes) -> [Arc<Counters>; 2] {
        let mut pick = |slot: Slot, i: usize| match routes.release(slot) {
            Some(d) => self.releases.entry(d.clone()).or_default().clone(),
            None => self.unnamed[i].clone(),
        };
        let counters = [pick(Slot::Stable, 0), pick(Slot::Candidate, 1)];
        if self.releases.len() > KEPT_RELEASES {
            let routed = [
                routes.release(Slot::Stable),
                routes.release(Slot::Candidate),
            ];
            let extra = self.releases.len() - KEPT_RELEASES;
            let gone: Vec<Digest> = self
                .releases
                .keys()
                .filter(|d| !routed.contains(&Some(*d)))
                .take(extra)
                .cloned()
                .collect();
            for d in gone {
                self.releases.remove(&d);
            }
        }
        counters
    }

    /// The counters of `digest`, created at zero if it has none yet.
    pub fn release(&mut self, digest: &Digest) -> Arc<Counters> {
        self.releases.entry(digest.clone()).or_default().clone()
    }

    /// The counters of a slot whose release is not named.
    pub fn unnamed(&self, slot: Slot) -> &Counters {
        match slot {
            Slot::Stable => &self.unnamed[0],
            Slot::Candidate => &self.unnamed[1],
        }
    }

    /// Every named release's counters now.
    pub fn snapshot(&self) -> BTreeMap<Digest, SlotStats> {
        self.releases
            .iter()
            .map(|(d, c)| (d.clone(), c.snapshot()))
            .collect()
    }
}

/// A running router; dropping it does not stop it (`stop` does).
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Router {
    /// Listens on `listen` (port 0: any) and serves `routes`.
    pub async fn start(listen: SocketAddr, routes: Routes) -> std::io::Result<Router> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let mut tally = Tally::default();
        let counters = tally.counters_for(&routes);
        let shared = Arc::new(Shared {
            live: RwLock::new(Arc::new(Live { routes, counters })),
            unforced: AtomicU64::new(0),
            tally: Mutex::new(tally),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = stopped.wait_for(|v| *v) => return,
                };
                let Ok((stream, peer)) = conn else { continue };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(&s, req, peer.ip()).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Router { shared, addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the routes; requests already routed keep theirs (and
    /// are counted for the release they went to).
    pub fn set_routes(&self, routes: Routes) {
        let counters = self
            .shared
            .tally
            .lock()
            .expect("tally lock")
            .counters_for(&routes);
        *self.shared.live.write().expect("routes lock") = Arc::new(Live { routes, counters });
    }

    pub fn routes(&self) -> Routes {
        self.shared.live.read().expect("routes lock").routes.clone()
    }

    /// The counters of the release `slot` serves now (of the slot, when
    /// its release is not named).
    pub fn stats(&self, slot: Slot) -> SlotStats {
        let live = self.shared.live.read().expect("routes lock").clone();
        live.counters[slot_index(slot)].snapshot()
    }

    /// The counters of every release this router has served.
    pub fn release_stats(&self) -> BTreeMap<Digest, SlotStats> {
        self.shared.tally.lock().expect("tally lock").snapshot()
    }

    /// Stops accepting connections (open ones finish their requests).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

fn slot_index(slot: Slot) -> usize {
    match slot {
        Slot::Stable => 0,
        Slot::Candidate => 1,
    }
}

/// Which slot a request goes to: forced by header or cookie, else by the
/// weight, exactly `weight` of every 100 unforced requests.
fn choose(s: &Shared, routes: &Routes, req: &Request<Incoming>) -> (Slot, bool) {
    let forced = req
        .headers()
        .get("x-stella-variant")
        .and_then(|v| v.to_str().ok())
        .and_then(Slot::parse)
        .or_else(|| {
            req.headers()
                .get_all(hyper::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().strip_prefix("stella-variant="))
                .find_map(Slot::parse)
        });
    let assigned = forced.is_none();
    let slot = forced.unwrap_or_else(|| {
        let w = u64::from(routes.weight.min(100));
        let n = s.unforced.fetch_add(1, Ordering::Relaxed);
        if (n + 1) * w / 100 > n * w / 100 {
            Slot::Candidate
        } else {
            Slot::Stable
        }
    });
    // A slot with no backend sends its traffic to the other.
    let slot = match (slot, &routes.stable, &routes.candidate) {
        (Slot::Candidate, Some(_), None) => Slot::Stable,
        (Slot::Stable, None, Some(_)) => Slot::Candidate,
        _ => slot,
    };
    (slot, assigned)
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from(text.to_owned()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a valid response")
}

async fn handle(
    s: &Shared,
    mut req: Request<Incoming>,
    client: std::net::IpAddr,
) -> Response<Body> {
    let started = Instant::now();
    let live = s.live.read().expect("routes lock").clone();
    let (routes, counters) = (&live.routes, &live.counters);
    let (slot, assigned) = choose(s, routes, &req);
    let backend = match slot {
        Slot::Stable => routes.stable.clone(),
        Slot::Candidate => routes.candidate.clone(),
    };
    let mut resp = match backend {
        None => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "stella router: no release is serving\n",
        ),
        Some(Backend::Static(dir)) => serve_file(&dir, req.uri().path()).await,
        Some(Backend::Http(addr)) => {
            // Flags come from stella only, never from the client.
            req.headers_mut().remove("x-stella-flags");
            if !routes.flags.is_empty()
                && let Ok(v) =
                    hyper::header::HeaderValue::from_str(&flags_header(&routes.flags, client))
            {
                req.headers_mut().insert("x-stella-flags", v);
            }
            proxy(s, req, addr).await
        }
    };
    let error = resp.status().is_server_error();
    counters[slot_index(slot)].record(error, started.elapsed());
    resp.headers_mut().insert(
        "x-stella-slot",
        hyper::header::HeaderValue::from_static(slot.as_str()),
    );
    resp.headers_mut().insert(
        "x-stella-routes",
        hyper::header::HeaderValue::from(routes.version),
    );
    if routes.sticky && assigned {
        resp.headers_mut().append(
            hyper::header::SET_COOKIE,
            hyper::header::HeaderValue::from_static(match slot {
                Slot::Stable => "stella-variant=a; Path=/",
                Slot::Candidate => "stella-variant=b; Path=/",
            }),
        );
    }
    resp
}

async fn proxy(s: &Shared, mut req: Request<Incoming>, addr: SocketAddr) -> Response<Body> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) = format!("http://{addr}{path}").parse() else {
        return plain(StatusCode::BAD_REQUEST, "stella router: bad request path\n");
    };
    *req.uri_mut() = uri;
    match s.client.request(req).await {
        Ok(r) => r.map(|b| b.boxed()),
        Err(e) => plain(
            StatusCode::BAD_GATEWAY,
            &format!("stella router: backend {addr} failed: {e}\n"),
        ),
    }
}

/// A file of the release folder, opened through a capability handle on
/// it: `..`, absolute paths and links that lead outside (whatever is on
/// disk) are refused, with 404 as for a missing file.
async fn serve_file(dir: &Path, path: &str) -> Response<Body> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    let (dir, rel, slash) = (dir.to_owned(), rel.to_owned(), path.ends_with('/'));
    let read = tokio::task::spawn_blocking(move || read_beneath(&dir, &rel, slash)).await;
    match read {
        Ok(Ok((file, bytes))) => {
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("css") => "text/css",
                Some("js") => "text/javascript",
                Some("json") => "application/json",
                Some("txt") | None => "text/plain; charset=utf-8",
                _ => "application/octet-stream",
            };
            Response::builder()
                .header("content-type", kind)
                .body(
                    Full::new(Bytes::from(bytes))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .expect("a valid response")
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Reads `rel` (a folder: its `index.html`) beneath `dir`; every
/// component, links included, resolves inside `dir` or the read fails.
fn read_beneath(dir: &Path, rel: &Path, slash: bool) -> std::io::Result<(PathBuf, Vec<u8>)> {
    use std::io::Read;
    let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
    let mut file = rel.to_owned();
    let named = match rel.as_os_str().is_empty() {
        true => None,
        false => Some(root.open(&file)?),
    };
    let mut f = match named {
        Some(f) if !slash && !f.metadata()?.is_dir() => f,
        _ => {
            file = file.join("index.html");
            root.open(&file)?
        }
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok((file, bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_percentage_flag_is_on_for_that_share_of_clients_each_keeping_its_answer() {
        let ips: Vec<std::net::IpAddr> = (0..2000u32)
            .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
            .collect();
        let on = ips.iter().filter(|ip| flag_on("25%", "dark", **ip)).count();
        assert!((400..600).contains(&on), "{on} of 2000 clients");
        assert!(
            ips.iter()
                .all(|ip| flag_on("25%", "dark", *ip) == flag_on("25%", "dark", *ip))
        );
        assert!(
            ips.iter()
                .all(|ip| flag_on("100%", "x", *ip) && !flag_on("0%", "x", *ip))
        );
        let mut flags = std::collections::BTreeMap::new();
        flags.insert("b".to_owned(), "off".to_owned());
        flags.insert("a".to_owned(), "on".to_owned());
        assert_eq!(flags_header(&flags, ips[0]), "a=on; b=off");
    }

    use super::*;

    #[test]
    fn static_paths_never_leave_the_release_folder() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("release");
        std::fs::create_dir_all(release.join("sub")).unwrap();
        std::fs::write(release.join("sub/index.html"), "inside").unwrap();
        std::fs::write(dir.path().join("secret"), "outside").unwrap();
        // Links put there behind the unpacker's back: out is refused, in
        // is served.
        std::os::unix::fs::symlink("..", release.join("out")).unwrap();
        std::os::unix::fs::symlink("../secret", release.join("up")).unwrap();
        std::os::unix::fs::symlink("sub/index.html", release.join("inside")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for (path, want) in [
                ("/sub/", StatusCode::OK),
                ("/sub", StatusCode::OK),
                ("/../secret", StatusCode::NOT_FOUND),
                ("/sub/../../secret", StatusCode::NOT_FOUND),
                ("//etc/passwd", StatusCode::NOT_FOUND),
                ("/missing", StatusCode::NOT_FOUND),
                ("/out/secret", StatusCode::NOT_FOUND),
                ("/up", StatusCode::NOT_FOUND),
                ("/%2e%2e/secret", StatusCode::NOT_FOUND),
                ("/inside", StatusCode::OK),
            ] {
                assert_eq!(serve_file(&release, path).await.status(), want, "{path}");
            }
        });
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let c = Counters::default();
        for _ in 0..90 {
            c.record(false, Duration::from_micros(40));
        }
        for _ in 0..10 {
            c.record(true, Duration::from_millis(30));
        }
        let s = c.snapshot();
        assert_eq!((s.requests, s.errors), (100, 10));
        assert!((s.error_rate() - 0.1).abs() < 1e-9);
        assert_eq!(s.p50_ms, 0.05);
        assert!(s.p95_ms >= 30.0 && s.p95_ms < 60.0, "{}", s.p95_ms);
        let later = {
            c.record(false, Duration::from_micros(40));
            c.snapshot()
        };
        let d = later.since(&s);
        assert_eq!((d.requests, d.errors), (1, 0));
    }

    #[test]
    fn after_a_swap_each_release_keeps_its_own_counters() {
        let dir = tempfile::tempdir().unwrap();
        for r in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(r)).unwrap();
            std::fs::write(dir.path().join(r).join("index.html"), r).unwrap();
        }
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let routes = |stable: (&str, &Digest), candidate: Option<(&str, &Digest)>| Routes {
            stable: Some(Backend::Static(dir.path().join(stable.0))),
            stable_release: Some(stable.1.clone()),
            candidate: candidate.map(|c| Backend::Static(dir.path().join(c.0))),
            candidate_release: candidate.map(|c| c.1.clone()),
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let router = Router::start("127.0.0.1:0".parse().unwrap(), routes(("a", &a), None))
                .await
                .unwrap();
            let url = format!("http://{}/", router.addr());
            let get =
                |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
            for _ in 0..5 {
                assert_eq!(get(url.clone()).await, "a");
            }
            // Blue/green: b becomes stable, a stays warm as the candidate.
            router.set_routes(routes(("b", &b), Some(("a", &a))));
            assert_eq!(router.stats(Slot::Stable).requests, 0, "b starts at zero");
            assert_eq!(router.stats(Slot::Candidate).requests, 5, "a keeps its own");
            assert_eq!(get(url.clone()).await, "b");
            let all = router.release_stats();
            assert_eq!((all[&a].requests, all[&b].requests), (5, 1));
            // And back: a's counters carry on from where they were.
            router.set_routes(routes(("a", &a), Some(("b", &b))));
            assert_eq!(get(url).await, "a");
            assert_eq!(router.stats(Slot::Stable).requests, 6);
            assert_eq!(router.stats(Slot::Candidate).requests, 1);
            router.stop();
        });
    }
}
