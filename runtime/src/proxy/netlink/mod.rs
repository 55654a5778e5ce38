//! The proxy's nf_tables netlink: a [`Transaction`] encoded as one nfnetlink batch (one
//! atomic kernel transaction, as `nft -f` sends it) and sent over a netlink socket the proxy
//! keeps open, without starting a process or parsing text.
//!
//! Why not `nft`: a full sync of 1,000 Services is about 11,000 map elements, and nft's
//! parser and evaluator spend some 20 µs of CPU on each concatenated element before the
//! kernel sees a byte (about 200 ms, beyond the budget of the whole sync), plus the cost of
//! a process per sync. The kernel takes the same elements as netlink in a few milliseconds.
//! The vocabulary is [`super::nft`]'s closed set of declarations, keys and rule shapes;
//! each is encoded as nft 1.0 encodes its text (expressions, registers, byte orders, and
//! the set metadata nft stores for `nft list`), and a kernel test loads both forms into two
//! tables and compares `nft list` of each.
//!
//! The socket is opened in the proxy's network namespace (on a thread of its own when that
//! is not the caller's); a netlink socket keeps the namespace it was made in. Replies are
//! read until the answer to a table query sent after the batch: the kernel processes a batch
//! inside `sendmsg` and queues its errors before it reads the next request, so that answer
//! closes the batch's replies.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;

use super::script::Transaction;

mod abi;
mod buf;
mod encode;

use abi::{
    NETLINK_CAP_ACK, NFNL_SUBSYS_NFTABLES, NFPROTO_IPV4, NFTA_TABLE_HANDLE, NFTA_TABLE_NAME,
    NFT_MSG_GETTABLE, NFT_MSG_NEWTABLE, NLA_F_NESTED, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST,
};
use buf::Buf;
pub use encode::Batch;

/// How long to wait for the kernel's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a transaction or a query failed.
#[derive(Debug)]
pub enum Error {
    /// The socket: opening, sending, receiving, or a malformed answer.
    Io(String),
    /// The kernel refused the transaction (nothing of it was applied): each refused message
    /// as nft text, with the reason.
    Refused(Vec<String>),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(m) => f.write_str(m),
            Error::Refused(errs) => f.write_str(&errs.join("; ")),
        }
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{what}: {e}"))
}

/// What came back: the queried table's handle (`None` without the table), and the errors
/// of a batch's messages as (sequence number, negative errno).
type Replies = (Option<u64>, Vec<(u32, i32)>);

/// An open nf_tables netlink socket.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    sndbuf: usize,
    rx: Vec<u8>,
}

impl Socket {
    /// Open a socket in the caller's network namespace, or in `netns` (a path such as
    /// `/run/netns/NAME`).
    pub fn open(netns: Option<&Path>) -> Result<Socket, Error> {
        let fd = match netns {
            None => open_fd()?,
            Some(ns) => {
                // Network namespaces are per thread: make the socket on a thread of our own
                // inside the namespace; the socket stays there when the thread is gone.
                let f = std::fs::File::open(ns)
                    .map_err(|e| io(&format!("opening netns {}", ns.display()), e))?;
                std::thread::scope(|s| {
                    s.spawn(|| {
                        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| io(&format!("entering netns {}", ns.display()), e))?;
                        open_fd()
                    })
                    .join()
                    .unwrap_or_else(|_| Err(Error::Io("the netns thread panicked".into())))
                })?
            }
        };
        Ok(Socket {
            fd,
            seq: 0,
            sndbuf: 0,
            rx: vec![0; 256 * 1024],
        })
    }

    /// The next sequence number (kept far from wrapping, so a batch's numbers ascend).
    fn next_seq(&mut self) -> u32 {
        if self.seq > u32::MAX / 2 {
            self.seq = 0;
        }
        self.seq += 1;
        self.seq
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let fd = self.fd.as_raw_fd();
        if bytes.len() + 1024 > self.sndbuf {
            // The whole batch goes in one datagram, which must fit the send buffer.
            let want = (bytes.len() + 4096).next_power_of_two();
            socket::setsockopt(&self.fd, sockopt::SndBufForce, &want)
                .or_else(|_| socket::setsockopt(&self.fd, sockopt::SndBuf, &want))
                .map_err(|e| io("setting the netlink send buffer", e))?;
            self.sndbuf = want;
        }
        let n = socket::send(fd, bytes, MsgFlags::empty())
            .map_err(|e| io("sending to nf_tables", e))?;
        if n != bytes.len() {
            return Err(Error::Io(format!(
                "nf_tables took {n} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// Send a `GETTABLE` for `table` without waiting; returns its sequence number.
    fn ask_table(&mut self, table: &str) -> Result<u32, Error> {
        let seq = self.next_seq();
        let mut b = Buf::default();
        let at = b.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            NFPROTO_IPV4,
            0,
        );
        b.str(NFTA_TABLE_NAME, table);
        b.end(at);
        self.send(&b.b)?;
        Ok(seq)
    }

    /// Read answers until the table query `ask` is answered: its handle (`None` when the
    /// table does not exist), and the errors of messages numbered `errors_from..=errors_to`.
    fn read_until(&mut self, ask: u32, errors_from: u32, errors_to: u32) -> Result<Replies, Error> {
        let mut handle = None;
        let mut errors = Vec::new();
        loop {
            let n = match socket::recv(self.fd.as_raw_fd(), &mut self.rx, MsgFlags::empty()) {
                Ok(n) => n,
                // Answers were dropped for want of buffer: the batch's outcome is unknown.
                Err(Errno::ENOBUFS) => {
                    errors.push((errors_from, -(Errno::ENOBUFS as i32)));
                    continue;
                }
                Err(e) => return Err(io("reading from nf_tables", e)),
            };
            let mut off = 0;
            while off + 16 <= n {
                let b = &self.rx[off..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < 16 || len > b.len() {
                    return Err(Error::Io("a malformed answer from nf_tables".into()));
                }
                if ty == NLMSG_ERROR && len >= 20 {
                    let err = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                    if seq == ask {
                        return match err {
                            0 => Ok((handle, errors)),
                            e if e == -(Errno::ENOENT as i32) => Ok((None, errors)),
                            e => Err(io("asking for the table", Errno::from_raw(-e))),
                        };
                    }
                    if err != 0 && (errors_from..=errors_to).contains(&seq) {
                        errors.push((seq, err));
                    }
                } else if seq == ask && ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
                    handle = table_handle(&b[20..len]).or(Some(0));
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// The handle of table `ip <table>`, or `None` when there is no such table.
    pub fn table_handle(&mut self, table: &str) -> Result<Option<u64>, Error> {
        let ask = self.ask_table(table)?;
        Ok(self.read_until(ask, 1, 0)?.0)
    }

    /// Delete table `ip <table>`, if there is one.
    pub fn delete_table(&mut self, table: &str) -> Result<(), Error> {
        let first = self.next_seq();
        let batch = Batch::delete_table(table, first);
        self.seq = batch.last_seq;
        self.send(batch.bytes())?;
        let ask = self.ask_table(table)?;
        let (_, errors) = self.read_until(ask, batch.first_seq, batch.last_seq)?;
        match errors.first() {
            None => Ok(()),
            Some((_, e)) => Err(Error::Refused(vec![format!(
                "delete table ip {table}: {}",
                Errno::from_raw(-e)
            )])),
        }
    }

    /// Apply `tx` to table `ip <table>` as one transaction; the table's handle afterwards.
    pub fn apply(&mut self, tx: &Transaction, table: &str) -> Result<Option<u64>, Error> {
        let first = self.next_seq();
        let batch = Batch::encode(tx, table, first);
        self.seq = batch.last_seq;
        self.send(batch.bytes())?;
        let ask = self.ask_table(table)?;
        let (handle, errors) = self.read_until(ask, batch.first_seq, batch.last_seq)?;
        if errors.is_empty() {
            return Ok(handle);
        }
        Err(Error::Refused(
            errors
                .into_iter()
                .map(|(seq, e)| {
                    format!(
                        "{}: {}",
                        batch.describe(seq, tx, table),
                        Errno::from_raw(-e)
                    )
                })
                .collect(),
        ))
    }
}

/// `NFTA_TABLE_HANDLE` among a table message's attributes (after its `nfgenmsg`).
fn table_handle(attrs: &[u8]) -> Option<u64> {
    let mut off = 0;
    while off + 4 <= attrs.len() {
        let len = u16::from_ne_bytes([attrs[off], attrs[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[off + 2], attrs[off + 3]]) & !NLA_F_NESTED;
        if len < 4 || off + len > attrs.len() {
            return None;
        }
        if ty == NFTA_TABLE_HANDLE && len == 12 {
            let v = &attrs[off + 4..off + 12];
            return Some(u64::from_be_bytes([
                v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
            ]));
        }
        off += (len + 3) & !3;
    }
    None
}

fn open_fd() -> Result<OwnedFd, Error> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(|e| io("opening a netfilter netlink socket", e))?;
    socket::setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::new(TIMEOUT.as_secs() as _, 0),
    )
    .map_err(|e| io("setting the netlink timeout", e))?;
    let rcv = 4 * 1024 * 1024;
    socket::setsockopt(&fd, sockopt::RcvBufForce, &rcv)
        .or_else(|_| socket::setsockopt(&fd, sockopt::RcvBuf, &rcv))
        .map_err(|e| io("setting the netlink receive buffer", e))?;
    let on: libc::c_int = 1;
    // The result is not checked: without the option (kernels before 4.3) an error carries
    // the whole request back, which only makes it bigger.
    // SAFETY: `fd` is an open socket we own; the option value is a live c_int whose size is
    // passed with it, and the kernel only reads it.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_NETLINK,
            NETLINK_CAP_ACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(fd)
}
