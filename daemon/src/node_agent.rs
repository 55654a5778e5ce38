//! The daemon's side of the node agent: it feeds `kommit-agent` this node's view of the
//! replicated state and carries the entries the agent produces (`PodStatus`, `Ack`) through
//! the same proposal path as any client. The agent itself (translate, plan, exec, probes,
//! report) lives in `daemon/agent/`; this is glue only.

use crate::consensus::node::{propose, Shared};
use kommit_agent::{Agent, Host, View};
use kommit_reconcilers::{ClusterState, Entry};
use std::sync::Arc;

/// The agent's [`Host`] over a running node.
pub struct DaemonHost {
    shared: Arc<Shared<ClusterState>>,
    handle: tokio::runtime::Handle,
    /// The node's resolver configuration (`--resolv-conf`), read at start.
    host_resolv_conf: String,
}

impl Host for DaemonHost {
    fn view(&self) -> View {
        self.shared
            .sm
            .read(|s| kommit_agent::view::view(s, &self.shared.name, &self.host_resolv_conf))
    }

    fn fenced(&self) -> bool {
        self.shared.lease.fenced()
    }

    fn propose(&self, entry: Entry) -> Result<(), String> {
        self.handle
            .block_on(propose(&self.shared, &entry))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// A running agent: its thread and the handles that wake and stop it.
pub struct RunningAgent {
    stop: kommit_agent::Stop,
    thread: Option<std::thread::JoinHandle<()>>,
    watch: tokio::task::JoinHandle<()>,
}

impl RunningAgent {
    /// Stops the loop and waits for it (containers keep running: the agent only stops
    /// taking steps).
    pub fn stop(mut self) {
        self.watch.abort();
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the agent for the node of `shared` over `runtimes` on a thread of its own, woken
/// by every applied entry.
pub fn start(
    shared: Arc<Shared<ClusterState>>,
    runtimes: kommit_agent::Runtimes,
    creds: kommit_agent::exec::Credentials,
    host_resolv_conf: String,
) -> std::io::Result<RunningAgent> {
    let host = Arc::new(DaemonHost {
        shared: shared.clone(),
        handle: tokio::runtime::Handle::current(),
        host_resolv_conf,
    });
    // The agent is built on its own thread: its HTTP clients (probes, hooks) are blocking
    // ones, which cannot be made on an async worker.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("kommit-agent".into())
        .spawn(move || {
            let (agent, kick, stop) = Agent::new(host, runtimes, creds);
            if tx.send((kick, stop)).is_ok() {
                agent.run();
            }
        })?;
    let (kick, stop) = rx
        .recv()
        .map_err(|_| std::io::Error::other("the agent thread ended at start"))?;
    let mut applied = shared.sm.applied_watch();
    let watch = tokio::spawn(async move {
        while applied.changed().await.is_ok() {
            kick.kick();
        }
    });
    Ok(RunningAgent {
        stop,
        thread: Some(thread),
        watch,
    })
}
