//! The shim's wire protocol: one JSON request line per connection, one JSON response line
//! back. The shim side reads request lines without blocking ([`Pending`]), bounded in
//! length and time; the driver side is [`call`].

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::linux::state::CtrState;

/// A request to the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Start container `name` (its `<name>.config` must exist in the pod dir).
    Start {
        /// Container name.
        name: String,
    },
    /// Send a signal to the container's init.
    Signal {
        /// Container name.
        name: String,
        /// Signal number.
        signal: i32,
    },
    /// Answer once the container has exited.
    Wait {
        /// Container name.
        name: String,
    },
    /// Forget an exited container (before its directory is removed).
    Forget {
        /// Container name.
        name: String,
    },
    /// Kill everything and exit.
    Shutdown,
    /// Liveness.
    Ping,
}

/// The shim's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    /// Success.
    pub ok: bool,
    /// Error text.
    pub error: Option<String>,
    /// State after the request.
    pub state: Option<CtrState>,
}

pub(super) fn err(msg: String) -> Response {
    Response {
        ok: false,
        error: Some(msg),
        state: None,
    }
}

/// How long a connection may take to send its request line.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections waiting for their request line at once; the oldest is dropped beyond this.
pub(super) const MAX_PENDING: usize = 64;
/// Longest request line.
const MAX_REQUEST: usize = 64 << 10;

/// A connection whose request line is still arriving.
pub(super) struct Pending {
    pub(super) stream: UnixStream,
    pub(super) buf: Vec<u8>,
    pub(super) since: Instant,
}

pub(super) enum Fill {
    /// The request line arrived.
    Line(String),
    /// Not yet.
    More,
    /// Closed, too long or not UTF-8.
    Drop,
}

impl Pending {
    /// Read what is available without blocking.
    pub(super) fn fill(&mut self) -> Fill {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Fill::Drop,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                        self.buf.truncate(end);
                        return match String::from_utf8(std::mem::take(&mut self.buf)) {
                            Ok(l) => Fill::Line(l),
                            Err(_) => Fill::Drop,
                        };
                    }
                    if self.buf.len() > MAX_REQUEST {
                        return Fill::Drop;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Fill::More,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Fill::Drop,
            }
        }
    }
}

pub(super) fn reply(stream: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let mut s = serde_json::to_string(r).map_err(std::io::Error::other)?;
    s.push('\n');
    stream.write_all(s.as_bytes())
}

/// Send one request to the shim of the pod at `pod_dir` and read the answer.
pub fn call(pod_dir: &Path, req: &Request, timeout: Option<Duration>) -> Result<Response, String> {
    // Connect through /proc/self/fd so long data-dir paths never hit the 108-byte sun_path limit.
    let dir = nix::fcntl::open(
        pod_dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", pod_dir.display()))?;
    let path = format!("/proc/self/fd/{}/shim.sock", dir.as_raw_fd());
    let mut s = UnixStream::connect(&path)
        .map_err(|e| format!("connecting to shim of {}: {e}", pod_dir.display()))?;
    drop(dir);
    s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| format!("writing to shim: {e}"))?;
    let mut resp = String::new();
    BufReader::new(&s)
        .take(1 << 20)
        .read_line(&mut resp)
        .map_err(|e| format!("reading from shim: {e}"))?;
    if resp.is_empty() {
        return Err("shim closed the connection".into());
    }
    serde_json::from_str(&resp).map_err(|e| format!("bad shim reply: {e}"))
}
