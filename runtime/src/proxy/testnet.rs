//! Test networks for the Service proxy: network namespaces a test creates and deletes,
//! threads living in them, and a TCP server that tells each client who it is and who it saw.
//! The conformance harness and the `services` benchmark build their nodes, endpoints and
//! clients from these, so no test touches the host's own network namespace.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Run `ip ARGS`; Err with its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A named network namespace (`ip netns add`), deleted when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Self, String> {
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path, for `setns` and [`super::ProxyConfig::netns`].
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Run `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Set a sysctl under `/proc/sys/net` inside the namespace (`ipv4/ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let path = format!("/proc/sys/net/{key}");
        let value = value.to_string();
        NetnsThread::spawn(&self.path())?
            .run(move || std::fs::write(&path, value).map_err(|e| format!("writing {path}: {e}")))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("testnet: {e}");
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread inside a network namespace that runs closures for its owner.
pub struct NetnsThread {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl NetnsThread {
    /// A thread that has entered the namespace at `path`.
    pub fn spawn(path: &Path) -> Result<Self, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let shown = path.display().to_string();
        let handle = std::thread::spawn(move || {
            let entered = nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {shown}: {e}"));
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            if ok {
                while let Ok(job) = rx.recv() {
                    job();
                }
            }
        });
        let entered = ready_rx
            .recv()
            .map_err(|_| "netns thread died".to_string())
            .and_then(|r| r);
        let t = NetnsThread {
            tx: Some(tx),
            handle: Some(handle),
        };
        entered.map(|_| t)
    }

    /// Run `f` on the thread and return its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.tx
            .as_ref()
            .expect("the sender lives until drop")
            .send(job)
            .expect("the netns thread runs until drop");
        rx.recv().expect("the netns thread finished the job")
    }
}

impl Drop for NetnsThread {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a TCP connect found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// A [`WhoServer`] answered: its own address, and the client address it saw.
    Answered {
        /// The server's address.
        server: SocketAddrV4,
        /// The peer address the server saw.
        peer: Ipv4Addr,
    },
    /// Refused at once (a reset, or ICMP port unreachable).
    Refused,
    /// Nothing answered within the timeout.
    TimedOut,
    /// Anything else.
    Failed(String),
}

/// Connect to `to` from the current thread's namespace and read the server's line.
pub fn connect(to: SocketAddrV4, timeout: Duration) -> Connect {
    use std::io::ErrorKind;
    let mut s = match TcpStream::connect_timeout(&SocketAddr::V4(to), timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Connect::Refused,
        Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
            return Connect::TimedOut
        }
        Err(e) => return Connect::Failed(format!("connect {to}: {e}")),
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut line = String::new();
    if let Err(e) = s.read_to_string(&mut line) {
        return Connect::Failed(format!("reading from {to}: {e}"));
    }
    let mut it = line.split_whitespace();
    match (
        it.next().and_then(|a| a.parse().ok()),
        it.next().and_then(|a| a.parse().ok()),
    ) {
        (Some(server), Some(peer)) => Connect::Answered { server, peer },
        _ => Connect::Failed(format!("{to} answered {line:?}")),
    }
}

/// A TCP server in a namespace that answers every connection with `"<its address> <peer
/// address>\n"` and closes it. Stops when dropped.
pub struct WhoServer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl WhoServer {
    /// Listen on `addr` inside the namespace at `netns`.
    pub fn start(netns: &Path, addr: SocketAddrV4) -> Result<Self, String> {
        let f = std::fs::File::open(netns).map_err(|e| format!("open {}: {e}", netns.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let bound = nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns: {e}"))
                .and_then(|_| TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}")))
                .and_then(|l| {
                    l.set_nonblocking(true)
                        .map_err(|e| format!("nonblocking: {e}"))?;
                    Ok(l)
                });
            let listener = match bound {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            while !flag.load(Ordering::Relaxed) {
                // Wake at least every 50 ms to notice the stop flag.
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::from(50u8)).unwrap_or(0) == 0 {
                    continue;
                }
                while let Ok((mut s, peer)) = listener.accept() {
                    let _ = s.set_nonblocking(false);
                    let _ = writeln!(s, "{addr} {}", peer.ip());
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| format!("server thread for {addr} died"))??;
        Ok(WhoServer {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for WhoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
