//! Forwarding names outside the zone to the node's resolvers, with a cache.
//!
//! Each forwarded question is asked afresh (a new random ID, the lowercased name, RD, EDNS
//! 1232) over UDP from a new ephemeral port, retried over TCP when the answer is truncated,
//! trying the upstreams in order, each within `timeout`. An answer is accepted only from the
//! upstream asked, with the ID and question asked. At most `max_in_flight` forwards run at
//! once; past that a query gets SERVFAIL at once rather than queueing.

use crate::cache::{Cache, CachePolicy, Key};
use crate::respond::{ForwardRequest, Transport};
use crate::wire;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest upstream UDP answer read.
const MAX_UDP_ANSWER: usize = 4096;

/// How the server forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Upstream resolvers, tried in order (see [`crate::resolv::upstreams`]). Empty: every
    /// name outside the zone gets SERVFAIL.
    pub upstreams: Vec<SocketAddr>,
    /// Time for one upstream to answer (each of UDP and a TCP retry).
    pub timeout: Duration,
    /// Most forwards at once.
    pub max_in_flight: usize,
    /// The cache's bounds.
    pub cache: CachePolicy,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
            max_in_flight: 256,
            cache: CachePolicy::default(),
        }
    }
}

/// Counters of the forwarder, for tests and metrics.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Questions sent to an upstream (each UDP or TCP attempt).
    pub upstream_queries: AtomicU64,
    /// Answers served from the cache.
    pub cache_hits: AtomicU64,
    /// Queries refused with SERVFAIL because `max_in_flight` forwards were running.
    pub overloaded: AtomicU64,
    /// Forwards no upstream answered.
    pub failures: AtomicU64,
}

/// Errors of one upstream exchange (logged, then the next upstream is tried).
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("upstream {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("upstream {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("upstream {0}: unreadable answer: {1}")]
    Decode(SocketAddr, String),
    #[error("cannot encode the query for {0}: {1}")]
    Encode(String, String),
}

/// The forwarder and its cache, shared by the server's tasks.
pub struct Forwarder {
    config: ForwardConfig,
    cache: Mutex<Cache>,
    permits: Arc<Semaphore>,
    stats: ForwardStats,
}

impl Forwarder {
    /// A forwarder with an empty cache.
    pub fn new(config: ForwardConfig) -> Self {
        Self {
            cache: Mutex::new(Cache::new(config.cache)),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            stats: ForwardStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// A slot for one forward, or `None` when `max_in_flight` are running (counted).
    pub fn permit(&self) -> Option<OwnedSemaphorePermit> {
        let p = self.permits.clone().try_acquire_owned().ok();
        if p.is_none() {
            self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    /// The cached response to `req`, if any, ready to send.
    pub fn cached(&self, packet: &[u8], req: &ForwardRequest, t: Transport) -> Option<Vec<u8>> {
        let key = cache_key(req);
        let now = tokio::time::Instant::now().into_std();
        let hit = self.cache.lock().ok()?.get(&key, now)?;
        self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(client_response(&hit, packet, req, t))
    }

    /// Forwards `req` and returns the response to send (SERVFAIL if no upstream answered).
    pub async fn resolve(&self, packet: &[u8], req: &ForwardRequest, t: Transport) -> Vec<u8> {
        if let Some(hit) = self.cached(packet, req, t) {
            return hit;
        }
        let name = wire::display_name(req.question.wire_name());
        for &upstream in &self.config.upstreams {
            match self.exchange(upstream, req).await {
                Ok(answer) => {
                    tracing::debug!(%upstream, %name, rcode = %answer.metadata.response_code, "forwarded");
                    if let Ok(mut cache) = self.cache.lock() {
                        let now = tokio::time::Instant::now().into_std();
                        cache.insert(cache_key(req), &answer, now);
                    }
                    return client_response(&answer, packet, req, t);
                }
                Err(e) => tracing::debug!(%name, "forward failed: {e}"),
            }
        }
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        crate::respond::error_reply(
            &mut out,
            &req.header,
            packet,
            &req.question,
            req.edns,
            wire::rcode::SERVFAIL,
        );
        out
    }

    /// One question to one upstream: UDP, then TCP if the answer was truncated.
    async fn exchange(
        &self,
        upstream: SocketAddr,
        req: &ForwardRequest,
    ) -> Result<Message, ExchangeError> {
        let name = Name::from_labels(req.question.labels())
            .map_err(|e| ExchangeError::Encode(req.question.display(), e.to_string()))?;
        let query = Query::query(name, RecordType::from(req.question.qtype))
            .set_query_class(DNSClass::from(req.question.qclass))
            .clone();
        let id: u16 = rand::random();
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = req.header.cd;
        m.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(wire::SERVER_UDP_SIZE);
        m.set_edns(edns);
        let bytes = m
            .to_vec()
            .map_err(|e| ExchangeError::Encode(req.question.display(), e.to_string()))?;
        let timeout = self.config.timeout;
        self.stats.upstream_queries.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(timeout, udp_exchange(upstream, &bytes, id, &query))
            .await
            .map_err(|_| ExchangeError::Timeout(upstream, timeout))??;
        if !answer.metadata.truncation {
            return Ok(answer);
        }
        self.stats.upstream_queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(timeout, tcp_exchange(upstream, &bytes, id, &query))
            .await
            .map_err(|_| ExchangeError::Timeout(upstream, timeout))?
    }
}

fn cache_key(req: &ForwardRequest) -> Key {
    let q = &req.question;
    (q.wire_name().into(), q.qtype, q.qclass)
}

/// Whether `m` answers the question `query` with ID `id`.
fn matches(m: &Message, id: u16, query: &Query) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].name() == query.name()
        && m.queries[0].query_type() == query.query_type()
        && m.queries[0].query_class() == query.query_class()
}

async fn udp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ExchangeError> {
    let io = |e| ExchangeError::Io(upstream, e);
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(upstream).await.map_err(io)?;
    sock.send(bytes).await.map_err(io)?;
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        // Anything else on this port (a stale or forged answer) is ignored; the timeout
        // around this bounds the wait.
        match Message::from_vec(&buf[..n]) {
            Ok(m) if matches(&m, id, query) => return Ok(m),
            Ok(_) => tracing::debug!(%upstream, "ignored a mismatched answer"),
            Err(e) => tracing::debug!(%upstream, "ignored an unreadable answer: {e}"),
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ExchangeError> {
    let io = |e| ExchangeError::Io(upstream, e);
    let mut s = TcpStream::connect(upstream).await.map_err(io)?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| ExchangeError::Encode(query.name().to_string(), "query too long".into()))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await.map_err(io)?;
    let n = s.read_u16().await.map_err(io)? as usize;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.map_err(io)?;
    let m = Message::from_vec(&buf).map_err(|e| ExchangeError::Decode(upstream, e.to_string()))?;
    if matches(&m, id, query) {
        Ok(m)
    } else {
        Err(ExchangeError::Decode(
            upstream,
            "answer to another question".into(),
        ))
    }
}

/// The upstream's answer as a response to the client's query: the client's ID, flags and
/// question (in the case it asked), the upstream's records and response code; over UDP,
/// truncated (TC, no records) beyond the client's payload size.
fn client_response(answer: &Message, packet: &[u8], req: &ForwardRequest, t: Transport) -> Vec<u8> {
    let h = &req.header;
    let servfail = || {
        let mut out = Vec::new();
        crate::respond::error_reply(
            &mut out,
            h,
            packet,
            &req.question,
            req.edns,
            wire::rcode::SERVFAIL,
        );
        out
    };
    // The client's question as it sent it; respond() already read it, so this only fails on
    // what hickory reads more strictly.
    let Some(query) = Message::from_vec(packet)
        .ok()
        .and_then(|m| m.queries.into_iter().next())
    else {
        return servfail();
    };
    let mut m = Message::new(h.id, MessageType::Response, OpCode::Query);
    m.metadata.response_code = answer.metadata.response_code;
    m.metadata.recursion_desired = h.rd;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = h.cd;
    m.add_query(query);
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(wire::SERVER_UDP_SIZE);
        m.set_edns(edns);
    }
    let limit = match t {
        Transport::Udp => wire::udp_limit(req.edns),
        Transport::Tcp => u16::MAX as usize,
    };
    let bare = m.clone();
    m.answers = answer.answers.clone();
    m.authorities = answer.authorities.clone();
    m.additionals = answer.additionals.clone();
    match m.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        Ok(_) => {
            let mut tc = bare;
            tc.metadata.truncation = true;
            tc.to_vec().unwrap_or_else(|_| servfail())
        }
        Err(e) => {
            tracing::debug!("cannot encode a forwarded answer: {e}");
            servfail()
        }
    }
}
