//! The server: UDP and TCP on one address, answering from the current zone and forwarding
//! the rest.
//!
//! UDP is served by `udp_sockets` sockets bound to the same address with `SO_REUSEPORT`, so
//! the kernel spreads queries over them, each read by its own OS thread with blocking calls:
//! one `recvfrom` and one `sendto` per query, no readiness round trip through the async
//! runtime, no allocation, no task spawned for the zone's names. Only forwards become tasks on
//! the runtime `start` was called in, each holding one of `max_in_flight` permits; their
//! answers go out through the same socket (a UDP send does not wait on loopback or a LAN). TCP takes at most `max_tcp_connections` connections, each
//! closed after `tcp_idle_timeout` without a query; queries on one connection are answered
//! in order.
//!
//! Everything the network sends is bounded: a UDP datagram is read into 4 KiB (longer ones
//! are cut and answered FORMERR), a TCP message is at most 65,535 bytes by its framing.

use crate::forward::{ForwardConfig, ForwardStats, Forwarder};
use crate::respond::{respond, Outcome, Transport};
use crate::zone::ZoneHandle;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Largest UDP query read.
const MAX_UDP_QUERY: usize = 4096;
/// How often an idle UDP thread looks whether the server stopped.
const UDP_STOP_POLL: Duration = Duration::from_millis(100);

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be made or bound.
    #[error("cannot bind DNS {proto} socket on {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `start` was called outside a Tokio runtime.
    #[error("the DNS server must start inside a Tokio runtime")]
    NoRuntime,
    /// A UDP thread could not be started.
    #[error("cannot start a DNS UDP thread: {0}")]
    Thread(std::io::Error),
}

/// How the server listens and forwards.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen, UDP and TCP (port 0: any free port, the same for both).
    pub listen: SocketAddr,
    /// UDP sockets on `listen` (`SO_REUSEPORT`), at least 1.
    pub udp_sockets: usize,
    /// Most TCP connections at once; more are closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Forwarding.
    pub forward: ForwardConfig,
    /// Bind `listen` even before the address exists on an interface (`IP_FREEBIND`): the
    /// daemon serves pods on its bridge's gateway, which appears with the first pod.
    pub freebind: bool,
}

impl ServerConfig {
    /// Defaults for `listen`: one UDP socket per core, 128 TCP connections idle for at most
    /// 10 s, and [`ForwardConfig::default`] (no upstreams).
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            udp_sockets: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_tcp_connections: 128,
            tcp_idle_timeout: Duration::from_secs(10),
            forward: ForwardConfig::default(),
            freebind: false,
        }
    }
}

struct Shared {
    zone: ZoneHandle,
    forwarder: Forwarder,
    stop: AtomicBool,
}

/// A running server. Dropping it (or [`DnsServer::shutdown`]) stops every task and thread
/// (a UDP thread notices within 100 ms).
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` and starts serving `zone` (swap it through
    /// [`DnsServer::zone`]). Must be called inside a Tokio runtime.
    pub async fn start(config: ServerConfig, zone: ZoneHandle) -> Result<DnsServer, ServerError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ServerError::NoRuntime)?;
        let (udp, tcp) = bind_all(&config)?;
        let addr = tcp.local_addr().map_err(|source| ServerError::Bind {
            proto: "tcp",
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            zone,
            forwarder: Forwarder::new(config.forward.clone()),
            stop: AtomicBool::new(false),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(tcp_accept(tcp, shared.clone(), config.clone()));
        let mut server = DnsServer {
            addr,
            shared,
            tasks,
            threads: Vec::new(),
        };
        for (i, sock) in udp.into_iter().enumerate() {
            let (shared, runtime) = (server.shared.clone(), runtime.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || udp_thread(Arc::new(sock), shared, runtime))
                .map_err(ServerError::Thread)?;
            server.threads.push(thread);
        }
        tracing::debug!(%addr, "cluster DNS serving");
        Ok(server)
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The zone being served: `server.zone().store(new_zone)` swaps it.
    pub fn zone(&self) -> &ZoneHandle {
        &self.shared.zone
    }

    /// The forwarder's counters.
    pub fn forward_stats(&self) -> &ForwardStats {
        self.shared.forwarder.stats()
    }

    /// Stops every task and thread and waits for them to end.
    pub async fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = joined.await;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn bind_all(config: &ServerConfig) -> Result<(Vec<UdpSocket>, TcpListener), ServerError> {
    // With port 0 the first UDP socket picks the port; TCP may find it taken, so retry.
    let attempts = if config.listen.port() == 0 { 8 } else { 1 };
    let mut attempt = 1;
    loop {
        let first = udp_socket(config.listen, config.freebind)?;
        let addr = first.local_addr().map_err(|source| ServerError::Bind {
            proto: "udp",
            addr: config.listen,
            source,
        })?;
        match tcp_listener(addr, config.freebind) {
            Ok(tcp) => {
                let mut udp = vec![first];
                for _ in 1..config.udp_sockets.max(1) {
                    udp.push(udp_socket(addr, config.freebind)?);
                }
                return Ok((udp, tcp));
            }
            Err(e) if attempt >= attempts => return Err(e),
            Err(_) => attempt += 1,
        }
    }
}

fn udp_socket(addr: SocketAddr, freebind: bool) -> Result<UdpSocket, ServerError> {
    let err = |source| ServerError::Bind {
        proto: "udp",
        addr,
        source,
    };
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    s.set_reuse_port(true).map_err(err)?;
    if freebind {
        s.set_freebind_v4(true).map_err(err)?;
    }
    s.set_read_timeout(Some(UDP_STOP_POLL)).map_err(err)?;
    // Best effort: a larger buffer absorbs bursts; the kernel caps it.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into()).map_err(err)?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr, freebind: bool) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError::Bind {
        proto: "tcp",
        addr,
        source,
    };
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    if freebind {
        s.set_freebind_v4(true).map_err(err)?;
    }
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    s.listen(128).map_err(err)?;
    TcpListener::from_std(s.into()).map_err(err)
}

fn udp_thread(sock: Arc<UdpSocket>, shared: Arc<Shared>, runtime: tokio::runtime::Handle) {
    let mut buf = vec![0u8; MAX_UDP_QUERY];
    let mut out = Vec::with_capacity(1500);
    let mut errors = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => {
                errors = 0;
                r
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here; never spin on a broken socket.
                errors += 1;
                tracing::debug!("dns udp receive: {e}");
                if errors > 100 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        if src.port() == 0 {
            continue;
        }
        let packet = &buf[..n];
        let outcome = respond(&shared.zone.guard(), packet, Transport::Udp, &mut out);
        match outcome {
            Outcome::Reply => send(&sock, &out, src),
            Outcome::Drop => {}
            Outcome::Forward(req) => {
                if let Some(hit) = shared.forwarder.cached(packet, &req, Transport::Udp) {
                    send(&sock, &hit, src);
                } else if let Some(permit) = shared.forwarder.permit() {
                    let (sock, shared, packet) = (sock.clone(), shared.clone(), packet.to_vec());
                    runtime.spawn(async move {
                        let reply = shared
                            .forwarder
                            .resolve(&packet, &req, Transport::Udp)
                            .await;
                        send(&sock, &reply, src);
                        drop(permit);
                    });
                } else {
                    overloaded(&mut out, packet, &req);
                    send(&sock, &out, src);
                }
            }
        }
    }
}

fn overloaded(out: &mut Vec<u8>, packet: &[u8], req: &crate::respond::ForwardRequest) {
    crate::respond::error_reply(
        out,
        &req.header,
        packet,
        &req.question,
        req.edns,
        crate::wire::rcode::SERVFAIL,
    );
}

fn send(sock: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(bytes, to) {
        tracing::debug!(%to, "dns udp send: {e}");
    }
}

async fn tcp_accept(listener: TcpListener, shared: Arc<Shared>, config: ServerConfig) {
    let slots = Arc::new(Semaphore::new(config.max_tcp_connections));
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("dns tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "dns tcp: too many connections, closed");
            continue;
        };
        let shared = shared.clone();
        let idle = config.tcp_idle_timeout;
        conns.spawn(async move {
            if let Err(e) = tcp_conn(stream, &shared, idle).await {
                tracing::debug!(%peer, "dns tcp connection: {e}");
            }
            drop(slot);
        });
    }
}

async fn tcp_conn(mut s: TcpStream, shared: &Shared, idle: Duration) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(512);
    loop {
        let len = match tokio::time::timeout(idle, s.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r? as usize,
        };
        buf.resize(len, 0);
        tokio::time::timeout(idle, s.read_exact(&mut buf))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "query body timed out")
            })??;
        let outcome = {
            let zone = shared.zone.guard();
            respond(&zone, &buf, Transport::Tcp, &mut out)
        };
        let reply = match outcome {
            Outcome::Reply => std::mem::take(&mut out),
            Outcome::Drop => continue,
            Outcome::Forward(req) => match shared.forwarder.permit() {
                Some(_permit) => shared.forwarder.resolve(&buf, &req, Transport::Tcp).await,
                None => {
                    overloaded(&mut out, &buf, &req);
                    std::mem::take(&mut out)
                }
            },
        };
        let n = u16::try_from(reply.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "response over 65535 bytes")
        })?;
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&reply);
        tokio::time::timeout(idle, s.write_all(&framed))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "response write timed out")
            })??;
        out = reply;
    }
}
