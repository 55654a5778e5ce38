//! The agent's loop: on every change of the replicated state, every probe verdict that flips,
//! every background step that ends, and at least once a second, it observes the runtime,
//! plans, executes and reports.
//!
//! It runs on a thread of its own (every runtime call blocks). It does not talk to Raft or
//! Git: the daemon gives it a [`Host`], which computes the [`View`] from the state and
//! carries the entries it produces.

use crate::exec::Executor;
use crate::plan::{attempts, plan, Observed};
use crate::probe::{now_ms, Prober, Target};
use crate::report::{pod_status, Coalescer};
use crate::translate::LABEL_UID;
use crate::view::View;
use kommit_reconcilers::{Entry, PodStatusChange};
use kommit_runtime::spec::ContainerState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait between two passes.
pub const RESYNC: Duration = Duration::from_secs(1);

/// What the daemon provides the agent.
pub trait Host: Send + Sync {
    /// This node's view of the replicated state now ([`crate::view::view`]).
    fn view(&self) -> View;
    /// Carries an entry to the cluster; Err when it could not be committed.
    fn propose(&self, entry: Entry) -> Result<(), String>;
    /// Whether the node's lease expired (it fenced itself).
    fn fenced(&self) -> bool {
        false
    }
}

/// Wakes the agent loop.
#[derive(Clone)]
pub struct Kick(mpsc::SyncSender<()>);

impl Kick {
    /// Asks for a pass soon (coalesced).
    pub fn kick(&self) {
        let _ = self.0.try_send(());
    }
}

/// The node agent.
pub struct Agent {
    host: Arc<dyn Host>,
    exec: Executor,
    prober: Prober,
    rx: mpsc::Receiver<()>,
    coalescer: Coalescer,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The configuration error each sandbox was last reported with (an event each time it
    /// changes, as the kubelet's `Failed` events).
    config_errors: BTreeMap<String, String>,
}

/// A handle that stops the agent loop.
#[derive(Clone)]
pub struct Stop(Arc<std::sync::atomic::AtomicBool>, Kick);

impl Stop {
    /// Ends the loop after its current pass.
    pub fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        self.1.kick();
    }
}

impl Agent {
    /// An agent over these runtimes. Returns the agent, the handle that wakes it and the one
    /// that stops it.
    pub fn new(
        host: Arc<dyn Host>,
        runtimes: crate::exec::Runtimes,
        creds: crate::exec::Credentials,
    ) -> (Agent, Kick, Stop) {
        let (tx, rx) = mpsc::sync_channel(1);
        let kick = Kick(tx);
        let k1 = kick.clone();
        let k2 = kick.clone();
        let exec = Executor::new(runtimes.clone(), creds, Arc::new(move || k1.kick()));
        let prober = Prober::start(runtimes.containers.clone(), Arc::new(move || k2.kick()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            Agent {
                host,
                exec,
                prober,
                rx,
                coalescer: Coalescer::default(),
                stop: stop.clone(),
                config_errors: BTreeMap::new(),
            },
            kick.clone(),
            Stop(stop, kick),
        )
    }

    /// Re-adopts the pods a previous instance left running (kills nothing).
    pub fn recover(&self) {
        match self.exec.runtimes().containers.recover() {
            Ok(pods) => {
                for p in pods.iter().filter(|p| p.labels.contains_key(LABEL_UID)) {
                    let first = p.containers.iter().filter_map(|c| c.started_at_ms).min();
                    self.exec.adopt(&p.id, first.unwrap_or_else(now_ms));
                }
                tracing::info!("agent: recovered {} pods from the runtime", pods.len());
            }
            Err(e) => tracing::warn!("agent: recovering pods: {e}"),
        }
    }

    /// Runs passes until stopped.
    pub fn run(mut self) {
        self.recover();
        let mut wake: Option<u64> = None;
        let mut passes: u64 = 0;
        while !self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            wake = self.pass(passes).or(wake.filter(|w| *w > now_ms()));
            passes += 1;
            let until = wake
                .map(|w| Duration::from_millis(w.saturating_sub(now_ms())))
                .unwrap_or(RESYNC)
                .min(RESYNC);
            let _ = self.rx.recv_timeout(until);
        }
    }

    /// One pass; returns when the next one is due at the latest.
    pub fn pass(&mut self, n: u64) -> Option<u64> {
        let view = self.host.view();
        if !view.registered {
            return None;
        }
        let now = now_ms();
        // Pods on other nodes are reached unmasqueraded (idempotent: a comparison unless the
        // cluster's pod CIDR changed).
        if let Err(e) = self
            .exec
            .runtimes()
            .network
            .set_cluster_cidr(view.cluster_cidr)
        {
            tracing::warn!("agent: the cluster's pod CIDR into the pod network: {e}");
        }
        let rt = self.exec.runtimes().containers.clone();
        let pods = match rt.list() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("agent: listing pods: {e}");
                return None;
            }
        };
        let observed_pods: BTreeMap<String, _> =
            pods.into_iter().map(|p| (p.id.clone(), p)).collect();
        // Probe verdicts into the memory plan reads.
        let mut targets = Vec::new();
        for p in &view.plans {
            let Some(rp) = observed_pods.get(p.id()) else {
                continue;
            };
            for (name, list) in attempts(rp) {
                let Some((_, c)) = list.last() else { continue };
                let Some(cp) = p.all_containers().find(|c| c.spec.name == name) else {
                    continue;
                };
                if c.state == ContainerState::Running {
                    targets.push(Target {
                        sandbox: p.id().to_string(),
                        runtime_name: c.name.clone(),
                        pod_ip: p.address.map(|a| a.ip),
                        started_at: c.started_at_ms.unwrap_or(0),
                        probes: cp.probes.clone(),
                    });
                }
            }
        }
        self.prober.sync(targets.clone());
        let mut verdicts = BTreeMap::new();
        for t in &targets {
            if let Some(v) = self.prober.verdicts(&t.sandbox, &t.runtime_name) {
                let name = crate::plan::parse_runtime_name(&t.runtime_name)
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_default();
                for (reason, msg) in &v.events {
                    self.exec.event(
                        &t.sandbox,
                        kommit_reconcilers::EventType::Warning,
                        reason,
                        msg.clone(),
                    );
                }
                self.exec.update_container(&t.sandbox, &name, |m| {
                    m.started = v.started;
                    m.ready = v.ready;
                    m.unhealthy = v.unhealthy.is_some();
                });
                verdicts.insert((t.sandbox.clone(), t.runtime_name.clone()), v);
            }
        }
        let fenced = self.host.fenced();
        if fenced {
            for p in view
                .plans
                .iter()
                .filter(|p| crate::fence::must_not_run_twice(&p.sandbox.labels))
            {
                for c in p.all_containers() {
                    self.exec
                        .update_container(p.id(), &c.spec.name, |m| m.fenced = true);
                }
            }
        }
        let observed = Observed {
            pods: observed_pods.clone(),
            memory: self.exec.memory(),
            fenced,
        };
        let busy: BTreeSet<String> = observed
            .pods
            .keys()
            .filter(|id| self.exec.busy(id))
            .cloned()
            .collect();
        let decided = plan(&view.plans, &observed, now);
        let actions: Vec<_> = decided
            .actions
            .into_iter()
            .filter(|a| match a {
                crate::plan::Action::RemovePod { sandbox, .. }
                | crate::plan::Action::RemoveContainer { sandbox, .. } => !busy.contains(sandbox),
                // A kill under way (preStop, then the grace) is not started again each pass.
                crate::plan::Action::KillContainer { key, .. } => !view
                    .plans
                    .iter()
                    .any(|p| &p.key == key && busy.contains(p.id())),
                _ => true,
            })
            .collect();
        let acted = !actions.is_empty();
        if acted {
            tracing::debug!(
                actions = actions.len(),
                what = ?actions,
                since_pass_start_ms = now_ms().saturating_sub(now),
                "pass: acting"
            );
            let by_key: BTreeMap<String, &crate::translate::PodPlan> =
                view.plans.iter().map(|p| (p.key.clone(), p)).collect();
            self.exec.run(actions, &by_key);
        }
        // A pod that cannot be configured (a missing reference, a Secret this node cannot
        // decrypt) gets an event when its error first shows or changes.
        self.config_errors
            .retain(|id, _| view.plans.iter().any(|p| p.id() == id));
        for p in &view.plans {
            match &p.config_error {
                Some(e) if self.config_errors.get(p.id()) != Some(e) => {
                    self.exec.event(
                        p.id(),
                        kommit_reconcilers::EventType::Warning,
                        "Failed",
                        format!("Error: {e}"),
                    );
                    self.config_errors.insert(p.id().to_string(), e.clone());
                }
                Some(_) => {}
                None => {
                    self.config_errors.remove(p.id());
                }
            }
        }
        // Report what the runtime shows now.
        let after: BTreeMap<String, _> = if acted {
            rt.list()
                .map(|l| l.into_iter().map(|p| (p.id.clone(), p)).collect())
                .unwrap_or(observed_pods)
        } else {
            observed_pods
        };
        let memory = self.exec.memory();
        let mut statuses: Vec<PodStatusChange> = Vec::new();
        for p in &view.plans {
            let id = p.id().to_string();
            let v = |rname: &str| verdicts.get(&(id.clone(), rname.to_string())).cloned();
            let mut s = pod_status(
                p,
                after.get(&id),
                memory.get(&id),
                &v,
                self.exec.created_at(&id),
                now_ms(),
            );
            s.events = self.exec.take_events(&id);
            statuses.push(s);
        }
        let assigned: Vec<String> = view.plans.iter().map(|p| p.key.clone()).collect();
        if let Some(changes) = self.coalescer.due(&statuses, now_ms()) {
            let started = now_ms();
            match self.host.propose(Entry::PodStatus {
                node: view.node.clone(),
                changes: changes.clone(),
            }) {
                Ok(()) => {
                    tracing::debug!(
                        pods = changes.len(),
                        pass_ms = started.saturating_sub(now),
                        propose_ms = now_ms().saturating_sub(started),
                        "pass: status reported"
                    );
                    self.coalescer.sent(&changes, &assigned, now_ms())
                }
                Err(e) => {
                    tracing::warn!("agent: reporting pod status: {e}");
                    for c in changes {
                        let id = view
                            .plans
                            .iter()
                            .find(|p| p.key == c.pod)
                            .map(|p| p.id().to_string());
                        if let Some(id) = id {
                            self.exec.restore_events(&id, c.events);
                        }
                    }
                }
            }
        } else {
            // Events not sent yet go back for the next report.
            for (p, s) in view.plans.iter().zip(statuses) {
                if !s.events.is_empty() {
                    self.exec.restore_events(p.id(), s.events);
                }
            }
        }
        // Acknowledge the commit once this node's pods converged on it.
        if let Some(commit) = &view.commit {
            if view.converged && view.acked.as_ref() != Some(commit) {
                if let Err(e) = self.host.propose(Entry::Ack {
                    node: view.node.clone(),
                    commit: commit.clone(),
                }) {
                    tracing::warn!("agent: acknowledging {commit}: {e}");
                }
            }
        }
        if n.is_multiple_of(60) {
            let live: BTreeSet<String> = after.keys().cloned().collect();
            self.exec.collect_orphan_volumes(&live);
            if let Some(keep) = &view.local_volumes {
                self.exec.collect_local_volumes(keep, &view.plans);
            }
        }
        // Steps just taken may need a quick follow-up (a container started: report it), and
        // changes the rate limit held back go out as soon as it allows.
        let held = (now_ms() < self.coalescer.next_at()).then(|| self.coalescer.next_at());
        let wake = if acted {
            Some(now_ms() + 100)
        } else {
            decided.wake_at
        };
        match (wake, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
