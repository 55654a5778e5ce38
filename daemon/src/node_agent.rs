//! The daemon's side of the node agent: it feeds `kommit-agent` this node's view of the
//! replicated state and carries the entries the agent produces (`PodStatus`, `Ack`) through
//! the same proposal path as any client. The agent itself (translate, plan, exec, probes,
//! report) lives in `daemon/agent/`; this is glue only.

use crate::consensus::node::{leader_read_index, propose, Shared};
use kommit_agent::{Agent, Host, View};
use kommit_reconcilers::{ClusterState, Entry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The agent's [`Host`] over a running node.
pub struct DaemonHost {
    shared: Arc<Shared<ClusterState>>,
    handle: tokio::runtime::Handle,
    /// The node's resolver configuration (`--resolv-conf`), read at start.
    host_resolv_conf: String,
    /// Set once this daemon has applied everything the leader had committed when it first
    /// reached it (see [`catch_up`]).
    caught_up: Arc<AtomicBool>,
    /// The cluster's age keyring, to open SOPS-encrypted Secrets with.
    keys: crate::cluster_key::Watch,
}

impl Host for DaemonHost {
    fn view(&self) -> View {
        let keys = self.keys.keys();
        self.shared
            .sm
            .read(|s| kommit_agent::view::view(s, &self.shared.name, &self.host_resolv_conf, &keys))
    }

    /// Fenced while the lease is expired, and also until the daemon has caught up with the
    /// leader: a daemon starts from its own log, possibly stale (a node back from a power
    /// loss still holds its old pods as bound to it, though the cluster moved them), and must
    /// not start a pod that may not run twice before it knows it is still its own. Running
    /// containers are left alone meanwhile (only the lease's fence hook stops them).
    fn fenced(&self) -> bool {
        self.shared.lease.fenced() || !self.caught_up.load(Ordering::SeqCst)
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
    catch_up: tokio::task::JoinHandle<()>,
}

impl RunningAgent {
    /// Stops the loop and waits for it (containers keep running: the agent only stops
    /// taking steps).
    pub fn stop(mut self) {
        self.watch.abort();
        self.catch_up.abort();
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
    let caught_up = Arc::new(AtomicBool::new(false));
    let host = Arc::new(DaemonHost {
        shared: shared.clone(),
        handle: tokio::runtime::Handle::current(),
        host_resolv_conf,
        caught_up: caught_up.clone(),
        keys: crate::cluster_key::Watch::new(&shared.cfg.data_dir),
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
    let catch_up = tokio::spawn(catch_up(shared.clone(), caught_up, kick.clone()));
    let watch = tokio::spawn(async move {
        while applied.changed().await.is_ok() {
            kick.kick();
        }
    });
    Ok(RunningAgent {
        stop,
        thread: Some(thread),
        watch,
        catch_up,
    })
}

/// Asks the leader for its read index until it answers, waits until this node has applied
/// it, then sets `caught_up` and wakes the agent.
async fn catch_up(
    shared: Arc<Shared<ClusterState>>,
    caught_up: Arc<AtomicBool>,
    kick: kommit_agent::Kick,
) {
    loop {
        if let Ok(index) = leader_read_index(&shared).await {
            let mut applied = shared.sm.applied_watch();
            if applied.wait_for(|a| *a >= index).await.is_ok() {
                caught_up.store(true, Ordering::SeqCst);
                tracing::info!(index, "caught up with the leader");
                kick.kick();
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
