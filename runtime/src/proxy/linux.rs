//! The Linux Service proxy: each sync is one nf_tables transaction sent over netlink
//! ([`super::netlink`]), holding only what changed since the last one ([`super::state`]).
//!
//! The proxy's account of the table is only trusted while the kernel's table is the one it
//! built: before each sync it asks the kernel for the table's handle (one netlink round
//! trip), and a table deleted or replaced behind its back (`nft delete table`,
//! `nft flush ruleset`, a firewall reload) is rebuilt whole by that sync. A refused
//! transaction leaves the kernel as it was (nf_tables applies all of a batch or nothing);
//! the proxy then forgets its account, so the next sync rebuilds, as kube-proxy resyncs
//! fully after any error. And like kube-proxy it resyncs fully now and then
//! ([`ProxyConfig::full_sync_period`]): everything it holds is put in the table again (chains
//! and sets emptied and refilled in one transaction), which repairs a rule or element
//! changed behind its back without deleting the table or the affinity entries.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::netlink::{self, Socket};
use super::state::State;
use super::{ProxyError, ServiceTable, SyncReport};
use crate::traits::{Result, ServiceProxy};

/// Configuration of the Linux proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The nft table (family `ip`), distinct from the pod network's (`kommit-services` on a
    /// node; tests use their own).
    pub table: String,
    /// The packet mark bit that asks for masquerade (kube-proxy uses `0x4000`).
    pub mark: u32,
    /// Program the table in this network namespace (a path such as `/run/netns/NAME`)
    /// instead of the caller's: tests program a node that lives in a namespace of their own.
    pub netns: Option<PathBuf>,
    /// How often a sync also refreshes the whole table ([`super::state::State::refresh`]);
    /// `None` never does. kube-proxy's period is an hour.
    pub full_sync_period: Option<Duration>,
}

impl ProxyConfig {
    /// The node's proxy: table `table`, mark `0x4000`, the caller's network namespace, a
    /// full sync every hour.
    pub fn new(table: &str) -> Self {
        ProxyConfig {
            table: table.to_string(),
            mark: 0x4000,
            netns: None,
            full_sync_period: Some(Duration::from_secs(3600)),
        }
    }
}

/// What the proxy knows of the kernel.
#[derive(Default)]
struct Inner {
    /// The netlink socket, opened by the first sync (and again after a socket error).
    socket: Option<Socket>,
    /// What the table holds, as far as we know; `None` forces a rebuild.
    state: Option<State>,
    /// The table's handle when `state` was applied: another handle is another table.
    handle: Option<u64>,
    /// When the whole table was last written (rebuilt or refreshed).
    last_full: Option<Instant>,
}

/// The Linux Service proxy.
pub struct LinuxProxy {
    cfg: ProxyConfig,
    inner: Mutex<Inner>,
}

fn valid_table(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl LinuxProxy {
    /// A proxy with `cfg`; the table is created by the first sync.
    pub fn new(cfg: ProxyConfig) -> std::result::Result<Self, ProxyError> {
        if !valid_table(&cfg.table) {
            return Err(ProxyError::Config(format!(
                "table name {:?} must be 1-64 letters, digits, '-' or '_', starting with a letter",
                cfg.table
            )));
        }
        if cfg.mark.count_ones() != 1 {
            return Err(ProxyError::Config(format!(
                "mark {:#x} must be a single bit",
                cfg.mark
            )));
        }
        Ok(LinuxProxy {
            cfg,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.cfg.table
    }

    /// The transaction the next [`ServiceProxy::sync`] of `table` would send, as an
    /// `nft -f` script, and its report, assuming the kernel still holds what the proxy
    /// applied; changes nothing and asks the kernel nothing.
    pub fn plan(
        &self,
        table: &ServiceTable,
    ) -> std::result::Result<(String, SyncReport), ProxyError> {
        let inner = self.lock();
        let step = match &inner.state {
            Some(st) => st.step(table)?,
            None => State::build(table, self.cfg.mark)?,
        };
        Ok((step.tx.script(&self.cfg.table), step.report))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: impl std::fmt::Display) -> ProxyError {
        ProxyError::Nft {
            table: self.cfg.table.clone(),
            msg: e.to_string(),
        }
    }

    /// The socket, opened if need be.
    fn socket<'a>(&self, inner: &'a mut Inner) -> std::result::Result<&'a mut Socket, ProxyError> {
        if inner.socket.is_none() {
            inner.socket = Some(Socket::open(self.cfg.netns.as_deref()).map_err(|e| self.err(e))?);
        }
        inner
            .socket
            .as_mut()
            .ok_or_else(|| self.err("no netlink socket"))
    }

    /// After a socket error the socket may hold stale answers: the next call opens another.
    fn failed(&self, inner: &mut Inner, e: netlink::Error) -> ProxyError {
        if let netlink::Error::Io(_) = e {
            inner.socket = None;
        }
        self.err(e)
    }

    fn sync_locked(
        &self,
        inner: &mut Inner,
        table: &ServiceTable,
    ) -> std::result::Result<SyncReport, ProxyError> {
        let t = self.cfg.table.as_str();
        // Is the kernel's table still the one the proxy built?
        let known_handle = inner.state.is_some().then_some(inner.handle).flatten();
        let intact = match known_handle {
            Some(h) => {
                let now = self.socket(inner)?.table_handle(t);
                let now = now.map_err(|e| {
                    inner.state = None;
                    self.failed(inner, e)
                })?;
                if now != Some(h) {
                    tracing::warn!(
                        table = t,
                        "the proxy's nft table was deleted or replaced behind its back: rebuilding it"
                    );
                }
                now == Some(h)
            }
            None => false,
        };
        // Validation comes first: an invalid table leaves everything as it was.
        let step = match inner.state.as_ref().filter(|_| intact) {
            Some(st) => st.step(table)?,
            None => State::build(table, self.cfg.mark)?,
        };
        let report = step.report.clone();
        if !step.tx.is_empty() {
            self.apply(inner, &step.tx)?;
            inner.state = State::commit(inner.state.take(), step);
            if report.rebuilt {
                inner.last_full = Some(Instant::now());
            }
        }
        let due = match (self.cfg.full_sync_period, inner.last_full) {
            (Some(period), Some(last)) => last.elapsed() >= period,
            _ => false,
        };
        if let Some(tx) = inner.state.as_ref().filter(|_| due).map(State::refresh) {
            tracing::debug!(table = t, "periodic full sync of the proxy's nft table");
            self.apply(inner, &tx)?;
            inner.last_full = Some(Instant::now());
        }
        Ok(report)
    }

    /// Send `tx`. Until it is in, the kernel's state is unknown: on failure the proxy's
    /// account stays forgotten, so the next sync rebuilds.
    fn apply(
        &self,
        inner: &mut Inner,
        tx: &super::script::Transaction,
    ) -> std::result::Result<(), ProxyError> {
        inner.handle = None;
        let known = inner.state.take();
        let applied = self.socket(inner)?.apply(tx, &self.cfg.table);
        inner.handle = applied.map_err(|e| self.failed(inner, e))?;
        inner.state = known;
        Ok(())
    }
}

impl ServiceProxy for LinuxProxy {
    fn sync(&self, table: &ServiceTable) -> Result<SyncReport> {
        let mut inner = self.lock();
        Ok(self.sync_locked(&mut inner, table)?)
    }

    fn clear(&self) -> Result<()> {
        let mut inner = self.lock();
        inner.state = None;
        inner.handle = None;
        inner.last_full = None;
        let t = self.cfg.table.clone();
        let done = self.socket(&mut inner)?.delete_table(&t);
        done.map_err(|e| self.failed(&mut inner, e))?;
        Ok(())
    }
}
