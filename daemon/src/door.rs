//! Bounds at every door: the webhook, the cluster port and the local API accept connections
//! and requests through the same limits, so no caller can make the daemon run out of memory,
//! file descriptors or workers.
//!
//! * **Connections** ([`ConnLimiter`]): at most `max_connections` open at once, and at most
//!   `max_connections_per_peer` from one IP address, so one abuser cannot starve the others.
//!   A connection over the cap is closed at once (on plain HTTP doors after a `503` line).
//!   Every connection must send its request headers within `header_timeout`.
//! * **Requests** ([`RequestGuard`]): a body larger than `max_body` is refused with `413`
//!   before it is read (by its `Content-Length`; a chunked body stops at the limit); a peer
//!   over its token bucket (`rate_per_sec`, `burst`) gets `429` with `Retry-After`; when
//!   `max_in_flight` requests are running the next one gets `503` with `Retry-After`. Every
//!   refusal has a one-line text body saying which limit and which door.
//!
//! Pure pieces (the bucket) take the time as an argument and are unit tested; the serve loop
//! is exercised end to end by the `doors_e2e` test against a running daemon.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

/// The limits of one door.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The door's name, for refusals and logs.
    pub name: &'static str,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one IP address at most.
    pub max_connections_per_peer: usize,
    /// Requests being served at once at most.
    pub max_in_flight: usize,
    /// Sustained requests per second from one IP address.
    pub rate_per_sec: u32,
    /// Requests one IP address may send in a burst.
    pub burst: u32,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Time a connection has to send a request's headers.
    pub header_timeout: Duration,
}

impl Limits {
    /// The push webhook (`--webhook-listen`): anyone who can reach it.
    pub const WEBHOOK: Limits = Limits {
        name: "webhook",
        max_connections: 256,
        max_connections_per_peer: 32,
        max_in_flight: 32,
        rate_per_sec: 10,
        burst: 20,
        max_body: 1 << 20,
        header_timeout: Duration::from_secs(10),
    };
    /// The cluster port's mTLS routes (Raft and the cluster API): authenticated peers, whose
    /// Raft traffic is steady and heavy.
    pub const CLUSTER: Limits = Limits {
        name: "cluster port",
        max_connections: 1024,
        max_connections_per_peer: 256,
        max_in_flight: 512,
        rate_per_sec: 2000,
        burst: 4000,
        max_body: 64 << 20,
        header_timeout: Duration::from_secs(30),
    };
    /// The join endpoint on the cluster port: unauthenticated until the token is checked.
    pub const JOIN: Limits = Limits {
        name: "join endpoint",
        max_in_flight: 16,
        rate_per_sec: 2,
        burst: 10,
        max_body: 64 << 10,
        ..Limits::CLUSTER
    };
    /// The local API (root-only Unix socket): operator commands and local tools.
    pub const LOCAL: Limits = Limits {
        name: "local api",
        max_connections: 128,
        max_connections_per_peer: 128,
        max_in_flight: 96,
        rate_per_sec: 200,
        burst: 400,
        max_body: 16 << 20,
        header_timeout: Duration::from_secs(30),
    };
}

/// How many peers' buckets are remembered at most.
const MAX_PEERS: usize = 4096;

/// A token bucket: `burst` requests at once, refilled at `rate` per second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token at `now`, or says how long until one is there.
    fn take(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(rate.max(1));
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Whether it has refilled completely by `now` (forgetting it changes nothing).
    fn refilled(&self, rate: u32, burst: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * f64::from(rate.max(1)) >= f64::from(burst)
    }
}

/// The peer a request came from (`None` on a Unix socket), put in its extensions by the
/// serve loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

/// Who a request's rate is counted against when that is better known than its address (an
/// authenticated node's name on the cluster port, where several nodes may share an address).
#[derive(Debug, Clone)]
pub struct RateKey(pub String);

/// The key of a request's token bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Addr(Option<IpAddr>),
    Named(String),
}

/// Per-request limits of one door: body size, per-peer rate, requests in flight.
#[derive(Debug)]
pub struct RequestGuard {
    limits: Limits,
    in_flight: Arc<Semaphore>,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
}

fn refusal(code: StatusCode, retry_after: Option<Duration>, msg: String) -> Response {
    let mut r = (code, format!("{msg}\n")).into_response();
    if let Some(d) = retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

impl RequestGuard {
    /// A guard enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one request's token for `peer` at `now`, or says how long to wait.
    fn admit(&self, peer: BucketKey, now: Instant) -> Result<(), Duration> {
        let Limits {
            rate_per_sec: rate,
            burst,
            ..
        } = self.limits;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&peer) && buckets.len() >= MAX_PEERS {
            buckets.retain(|_, b| !b.refilled(rate, burst, now));
            if buckets.len() >= MAX_PEERS {
                return Err(Duration::from_secs(1));
            }
        }
        buckets
            .entry(peer)
            .or_insert_with(|| Bucket::full(burst, now))
            .take(rate, burst, now)
    }

    /// `router` behind this guard.
    pub fn wrap(self: &Arc<Self>, router: Router) -> Router {
        router
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
            .layer(axum::extract::DefaultBodyLimit::max(self.limits.max_body))
    }
}

async fn guard(State(g): State<Arc<RequestGuard>>, req: Request, next: Next) -> Response {
    let name = g.limits.name;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > g.limits.max_body as u64) {
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!(
                "request body of {len} bytes exceeds the {name}'s limit of {} bytes",
                g.limits.max_body
            ),
        );
    }
    let key = match req.extensions().get::<RateKey>() {
        Some(k) => BucketKey::Named(k.0.clone()),
        None => BucketKey::Addr(req.extensions().get::<Peer>().and_then(|p| p.0)),
    };
    if let Err(wait) = g.admit(key, Instant::now()) {
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            Some(wait),
            format!(
                "too many requests to the {name}: at most {} per second from one address",
                g.limits.rate_per_sec
            ),
        );
    }
    let Ok(permit) = g.in_flight.clone().try_acquire_owned() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(1)),
            format!(
                "the {name} is saturated: {} requests in flight",
                g.limits.max_in_flight
            ),
        );
    };
    let resp = next.run(req).await;
    drop(permit);
    resp
}

/// Open connections per peer and in total.
#[derive(Debug)]
pub struct ConnLimiter {
    limits: Limits,
    open: Mutex<(usize, HashMap<Option<IpAddr>, usize>)>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    peer: Option<IpAddr>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

impl ConnLimiter {
    /// A limiter enforcing `limits`' connection caps.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Admits a connection from `peer`, or says which cap it hit.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<ConnPermit, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.limits.max_connections {
            return Err("too many connections");
        }
        let mine = open.1.entry(peer).or_insert(0);
        if *mine >= self.limits.max_connections_per_peer {
            return Err("too many connections from this address");
        }
        *mine += 1;
        open.0 += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            peer,
        })
    }
}

/// A listener the serve loop can accept from.
pub trait Acceptor: Send + Sync + 'static {
    /// The connection type.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Accepts one connection and names its peer.
    fn accept_peer(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Io, Option<IpAddr>)>> + Send;
    /// Writes what fits of `msg` without blocking (a refusal before closing).
    fn try_say(io: &Self::Io, msg: &[u8]);
}

impl Acceptor for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_peer(&self) -> std::io::Result<(Self::Io, Option<IpAddr>)> {
        let (s, a) = self.accept().await?;
        Ok((s, Some(a.ip())))
    }
    fn try_say(io: &Self::Io, msg: &[u8]) {
        let _ = io.try_write(msg);
    }
}

impl Acceptor for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_peer(&self) -> std::io::Result<(Self::Io, Option<IpAddr>)> {
        Ok((self.accept().await?.0, None))
    }
    fn try_say(io: &Self::Io, msg: &[u8]) {
        let _ = io.try_write(msg);
    }
}

/// The plain-HTTP answer to a connection over the cap.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";

/// Accepts connections from `listener` under `limits`' caps until `stop` resolves, handing
/// each admitted one to `handle` (with its permit, to hold while it is open). With
/// `plain_http`, a refused connection is told `503` before it is closed. Aborting the
/// returned task, or `stop`, drops every open connection.
pub fn accept_loop<L, F, Fut>(
    listener: L,
    limits: Limits,
    plain_http: bool,
    stop: impl Future<Output = ()> + Send + 'static,
    handle: F,
) -> tokio::task::JoinHandle<()>
where
    L: Acceptor,
    F: Fn(L::Io, Option<IpAddr>, ConnPermit) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let conns = ConnLimiter::new(limits);
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        let mut refused = 0u64;
        let mut last_warn: Option<Instant> = None;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept_peer() => {
                    let (io, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of descriptors or similar: wait rather than spin.
                            tracing::warn!("{}: accept failed: {e}", limits.name);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    match conns.admit(peer) {
                        Ok(permit) => {
                            tasks.spawn(handle(io, peer, permit));
                        }
                        Err(why) => {
                            if plain_http {
                                L::try_say(&io, OVER_CAP);
                            }
                            refused += 1;
                            if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                tracing::warn!(
                                    "{}: {why} (peer {peer:?}); {refused} refused so far",
                                    limits.name
                                );
                                last_warn = Some(Instant::now());
                            }
                        }
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
    })
}

/// Serves HTTP/1.1 and HTTP/2 on `io` with `router`, adding `tags` (the connection's
/// [`Peer`], and what else the door knows about it) to each request's extensions, and
/// dropping a connection that takes longer than `header_timeout` to send a request's
/// headers.
pub async fn serve_http<I>(
    io: I,
    router: Router,
    tags: axum::http::Extensions,
    header_timeout: Duration,
) -> Result<(), String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().extend(tags.clone());
        req
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    b.serve_connection(
        hyper_util::rt::TokioIo::new(io),
        hyper_util::service::TowerToHyperService::new(svc),
    )
    .await
    .map_err(|e| format!("http: {e}"))
}

/// The extensions every request of a connection from `peer` carries.
pub fn tags(peer: Option<IpAddr>) -> axum::http::Extensions {
    let mut e = axum::http::Extensions::new();
    e.insert(Peer(peer));
    e
}

/// Serves `router` behind `limits` on `listener` until `stop` resolves.
pub fn serve<L: Acceptor>(
    listener: L,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let router = RequestGuard::new(limits).wrap(router);
    accept_loop(listener, limits, true, stop, move |io, peer, permit| {
        let router = router.clone();
        async move {
            if let Err(e) = serve_http(io, router, tags(peer), limits.header_timeout).await {
                tracing::debug!("{}: connection from {peer:?} ended: {e}", limits.name);
            }
            drop(permit);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(3, t0);
        for _ in 0..3 {
            b.take(2, 3, t0).unwrap();
        }
        let wait = b.take(2, 3, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second later one token (at 2/s) is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        b.take(2, 3, t1).unwrap();
        assert!(b.take(2, 3, t1).is_err());
        assert!(!b.refilled(2, 3, t1));
        assert!(b.refilled(2, 3, t1 + Duration::from_millis(1500)));
    }

    #[test]
    fn guard_limits_each_peer_alone() {
        let g = RequestGuard::new(Limits {
            burst: 2,
            rate_per_sec: 1,
            ..Limits::WEBHOOK
        });
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        let (a, b) = (BucketKey::Addr(a), BucketKey::Addr(b));
        let node = BucketKey::Named("n1".into());
        let now = Instant::now();
        assert!(g.admit(a.clone(), now).is_ok() && g.admit(a.clone(), now).is_ok());
        assert!(g.admit(a, now).is_err(), "a is over its burst");
        assert!(g.admit(b, now).is_ok(), "b has its own bucket");
        assert!(
            g.admit(node, now).is_ok(),
            "a named peer has its own bucket"
        );
    }

    #[test]
    fn connections_are_capped_per_peer_and_in_total() {
        let l = ConnLimiter::new(Limits {
            max_connections: 3,
            max_connections_per_peer: 2,
            ..Limits::WEBHOOK
        });
        let (a, b, c) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
            Some(IpAddr::from([10, 0, 0, 3])),
        );
        let p1 = l.admit(a).unwrap();
        let _p2 = l.admit(a).unwrap();
        assert_eq!(
            l.admit(a).unwrap_err(),
            "too many connections from this address"
        );
        let _p3 = l.admit(b).unwrap();
        assert_eq!(l.admit(c).unwrap_err(), "too many connections");
        drop(p1);
        assert!(l.admit(c).is_ok(), "a dropped connection frees its place");
    }
}
