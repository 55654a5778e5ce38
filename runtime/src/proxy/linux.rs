//! The Linux Service proxy: the rendered table applied with `nft -f -`, one transaction per
//! sync, remembering what was applied so the next sync sends only the difference.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

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
    /// Run `nft` in this network namespace (a path such as `/run/netns/NAME`) instead of the
    /// caller's: tests program a node that lives in a namespace of their own.
    pub netns: Option<PathBuf>,
}

impl ProxyConfig {
    /// The node's proxy: table `table`, mark `0x4000`, the caller's network namespace.
    pub fn new(table: &str) -> Self {
        ProxyConfig {
            table: table.to_string(),
            mark: 0x4000,
            netns: None,
        }
    }
}

/// The Linux Service proxy.
pub struct LinuxProxy {
    cfg: ProxyConfig,
    /// What the kernel holds, as far as we know; `None` forces a rebuild.
    applied: Mutex<Option<State>>,
}

/// The longest nft error text kept in an error.
const MAX_ERR: usize = 4000;

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
            applied: Mutex::new(None),
        })
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.cfg.table
    }

    /// The script the next [`ServiceProxy::sync`] of `table` would run, and its report;
    /// changes nothing.
    pub fn plan(
        &self,
        table: &ServiceTable,
    ) -> std::result::Result<(String, SyncReport), ProxyError> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let step = match applied.as_ref() {
            Some(st) => st.step(table)?,
            None => State::build(table, self.cfg.mark)?,
        };
        Ok((step.tx.script(&self.cfg.table), step.report))
    }

    /// Run `nft -f -` with `script` (in the configured namespace).
    fn nft(&self, script: &str) -> std::result::Result<(), ProxyError> {
        let err = |msg: String| ProxyError::Nft {
            table: self.cfg.table.clone(),
            msg,
        };
        let run = |script: &str| -> std::result::Result<(), ProxyError> {
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| err(format!("running nft (apt-get install -y nftables): {e}")))?;
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| err("nft has no stdin".into()))?;
            let written = stdin.write_all(script.as_bytes());
            drop(stdin);
            let out = child
                .wait_with_output()
                .map_err(|e| err(format!("waiting for nft: {e}")))?;
            if !out.status.success() {
                let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if msg.len() > MAX_ERR {
                    let mut cut = MAX_ERR;
                    while !msg.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    msg.truncate(cut);
                    msg.push_str(" ...");
                }
                return Err(err(format!("{} ({msg})", out.status)));
            }
            written.map_err(|e| err(format!("writing the script to nft: {e}")))
        };
        match &self.cfg.netns {
            None => run(script),
            Some(ns) => {
                // Network namespaces are per thread, and a child inherits its forking
                // thread's: enter the namespace on a thread of our own and spawn from it.
                let f = std::fs::File::open(ns)
                    .map_err(|e| err(format!("opening netns {}: {e}", ns.display())))?;
                std::thread::scope(|s| {
                    s.spawn(|| {
                        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| err(format!("entering netns {}: {e}", ns.display())))?;
                        run(script)
                    })
                    .join()
                    .unwrap_or_else(|_| Err(err("the nft thread panicked".into())))
                })
            }
        }
    }
}

impl ServiceProxy for LinuxProxy {
    fn sync(&self, table: &ServiceTable) -> Result<SyncReport> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        // Validation comes first: an invalid table leaves everything as it was.
        let step = match applied.as_ref() {
            Some(st) => st.step(table)?,
            None => State::build(table, self.cfg.mark)?,
        };
        let report = step.report.clone();
        if step.tx.is_empty() {
            return Ok(report);
        }
        // Whatever happens now, the kernel's state is unknown until this sync succeeds.
        let known = applied.take();
        self.nft(&step.tx.script(&self.cfg.table))?;
        *applied = State::commit(known, step);
        Ok(report)
    }

    fn clear(&self) -> Result<()> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        *applied = None;
        let t = &self.cfg.table;
        self.nft(&format!("table ip {t} {{}}\ndelete table ip {t}\n"))?;
        Ok(())
    }
}
