//! `plan(assigned, observed, now) -> actions`: the agent's decisions, as a pure function.
//!
//! Level-triggered, like the kubelet's sync loop: every pass compares the pods the replicated
//! state binds to this node ([`PodPlan`]s) with what the runtime reports and what the agent
//! remembers ([`Observed`]), and returns the next steps. Running it twice on the same input
//! gives the same actions; running it after the actions took effect gives none. Time is an
//! argument, so back-off is tested by tables without waiting.
//!
//! Containers are run as numbered attempts: the runtime container of attempt `n` of
//! container `web` is `web.n`, so the restart count is the attempt number and survives a
//! daemon restart in the runtime's own records. The previous attempt is kept (for `logs
//! --previous` and `lastState`); older ones are removed.

use crate::translate::{PodPlan, LABEL_UID};
use kommit_reconcilers::Millis;
use kommit_runtime::spec::{ContainerState, ContainerStatus as RtContainer, PodStatus as RtPod};
use kommit_schemas::model::pod::RestartPolicy;
use std::collections::BTreeMap;

/// First restart delay (the kubelet's).
pub const BACKOFF_INITIAL_MS: u64 = 10_000;
/// Longest restart delay.
pub const BACKOFF_MAX_MS: u64 = 300_000;
/// A run this long resets the back-off.
pub const BACKOFF_RESET_MS: u64 = 600_000;

/// What the agent remembers about one container (by container name, not attempt).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMemory {
    /// Restarts in a row after short runs (the back-off exponent).
    pub streak: u32,
    /// The startup probe passed (or there is none) for the current attempt.
    pub started: bool,
    /// The readiness probe passes for the current attempt.
    pub ready: bool,
    /// The liveness (or startup) probe failed for the current attempt: restart it.
    pub unhealthy: bool,
    /// The last image pull failed: when, how often in a row, and why.
    pub pull_error: Option<(Millis, u32, String)>,
    /// The last start failed before the process ran (bad command, missing mount...).
    pub start_error: Option<(Millis, u32, String)>,
    /// It was stopped by the fence: once the lease is back it starts again at once, and the
    /// stop does not count as a crash.
    pub fenced: bool,
}

/// First retry of a sandbox that could not be made (its address still held by a pod being
/// removed, a transient netlink error).
pub const SANDBOX_RETRY_INITIAL_MS: u64 = 500;
/// Longest wait between sandbox retries.
pub const SANDBOX_RETRY_MAX_MS: u64 = 30_000;

/// What the agent remembers about one pod sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMemory {
    /// Digest of each volume's content as last written.
    pub volumes: BTreeMap<String, String>,
    /// The last sandbox creation failed: when, how often in a row, and why.
    pub sandbox_error: Option<(Millis, u32, String)>,
    /// Container memory by name.
    pub containers: BTreeMap<String, ContainerMemory>,
}

/// What the agent sees: the runtime's pods and its own memory, by sandbox id.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The runtime's pods (from `list`), by id.
    pub pods: BTreeMap<String, RtPod>,
    /// The agent's memory, by sandbox id.
    pub memory: BTreeMap<String, PodMemory>,
    /// The node's lease expired: pods that must not run twice are not started.
    pub fenced: bool,
}

/// One step for the executor. Steps of one pod run in order; a failed step ends the pod's
/// steps for this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make the sandbox, wire its address and its volumes.
    CreatePod {
        /// The pod's `namespace/name`.
        key: String,
    },
    /// Write the volumes whose content changed (ConfigMap or Secret edited).
    SyncVolumes {
        /// The pod's `namespace/name`.
        key: String,
    },
    /// Pull (per policy), create and start attempt `attempt` of a container, then run its
    /// postStart hook.
    StartContainer {
        /// The pod's `namespace/name`.
        key: String,
        /// The container's name.
        container: String,
        /// The attempt number (its restart count).
        attempt: u32,
    },
    /// Stop a running container (preStop hook, SIGTERM, SIGKILL after the grace).
    KillContainer {
        /// The pod's `namespace/name`.
        key: String,
        /// The runtime container (`name.attempt`).
        runtime_name: String,
        /// Why, for the event.
        reason: String,
    },
    /// Remove an exited container of a sandbox.
    RemoveContainer {
        /// The sandbox id.
        sandbox: String,
        /// The runtime container (`name.attempt`).
        runtime_name: String,
    },
    /// Stop everything of a sandbox no longer bound here (or whose shim died) and remove it,
    /// its address and its volumes.
    RemovePod {
        /// The sandbox id.
        sandbox: String,
        /// Grace for its containers, ms.
        grace_ms: u64,
        /// Why, for the log.
        reason: String,
    },
}

/// The actions of one pass, and when the next pass is due at the latest (a back-off ends).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps, pod by pod.
    pub actions: Vec<Action>,
    /// The earliest time a waiting step becomes due.
    pub wake_at: Option<Millis>,
}

impl Plan {
    fn wake(&mut self, at: Millis) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// The runtime name of attempt `attempt` of container `name`.
pub fn runtime_name(name: &str, attempt: u32) -> String {
    format!("{name}.{attempt}")
}

/// Splits a runtime container name into (container, attempt).
pub fn parse_runtime_name(n: &str) -> Option<(&str, u32)> {
    let (name, a) = n.rsplit_once('.')?;
    Some((name, a.parse().ok()?))
}

/// The back-off before restart number `streak + 1` after short runs.
pub fn backoff_ms(streak: u32) -> u64 {
    BACKOFF_INITIAL_MS
        .saturating_mul(1u64 << streak.min(20))
        .min(BACKOFF_MAX_MS)
}

/// The streak that applies to an exited container: reset after a long clean run.
pub fn effective_streak(memory: u32, c: &RtContainer) -> u32 {
    match (c.started_at_ms, c.finished_at_ms) {
        (Some(s), Some(f)) if f.saturating_sub(s) >= BACKOFF_RESET_MS => 0,
        _ => memory,
    }
}

/// Attempts of each container in a runtime pod, newest last.
pub fn attempts(pod: &RtPod) -> BTreeMap<&str, Vec<(u32, &RtContainer)>> {
    let mut m: BTreeMap<&str, Vec<(u32, &RtContainer)>> = BTreeMap::new();
    for c in &pod.containers {
        if let Some((name, a)) = parse_runtime_name(&c.name) {
            m.entry(name).or_default().push((a, c));
        }
    }
    for v in m.values_mut() {
        v.sort_by_key(|(a, _)| *a);
    }
    m
}

/// Whether a container that exited with `code` restarts under `policy`.
pub fn restarts(policy: RestartPolicy, code: Option<i32>) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => code != Some(0),
        RestartPolicy::Never => false,
    }
}

/// Whether the container's latest attempt has ended (or cannot be known).
pub fn ended(c: &RtContainer) -> bool {
    matches!(c.state, ContainerState::Exited | ContainerState::Unknown)
}

/// When a failed step of a container may be retried.
fn retry_at(err: &Option<(Millis, u32, String)>) -> Option<Millis> {
    err.as_ref()
        .map(|(at, n, _)| at + backoff_ms(n.saturating_sub(1)))
}

/// The agent's decisions for one pass.
pub fn plan(assigned: &[PodPlan], observed: &Observed, now: Millis) -> Plan {
    let mut out = Plan::default();
    let wanted: BTreeMap<&str, &PodPlan> = assigned.iter().map(|p| (p.id(), p)).collect();
    // Sandboxes the agent made that are no longer bound here, or whose shim is gone.
    for (id, pod) in &observed.pods {
        if !pod.labels.contains_key(LABEL_UID) {
            continue; // not the agent's (e.g. `kommit ctr run`)
        }
        match wanted.get(id.as_str()) {
            None => out.actions.push(Action::RemovePod {
                sandbox: id.clone(),
                grace_ms: grace_of(pod),
                reason: "no longer bound to this node".into(),
            }),
            Some(p) if !pod.ready => out.actions.push(Action::RemovePod {
                sandbox: id.clone(),
                grace_ms: p.grace_ms,
                reason: "its sandbox died".into(),
            }),
            Some(_) => {}
        }
    }
    for p in assigned {
        plan_pod(p, observed, now, &mut out);
    }
    out
}

/// Grace of a sandbox the agent no longer has a plan for (recorded in its labels).
fn grace_of(pod: &RtPod) -> u64 {
    pod.labels
        .get(crate::translate::LABEL_GRACE_MS)
        .and_then(|g| g.parse().ok())
        .unwrap_or(u64::from(crate::translate::DEFAULT_GRACE_SECONDS) * 1000)
}

fn plan_pod(p: &PodPlan, observed: &Observed, now: Millis, out: &mut Plan) {
    if p.config_error.is_some() {
        return; // reported as CreateContainerConfigError; a new commit makes a new plan
    }
    if observed.fenced && crate::fence::must_not_run_twice(&p.sandbox.labels) {
        return; // the fence stopped it; it starts again when the lease is back
    }
    let key = p.key.clone();
    let empty = PodMemory::default();
    let mem = observed.memory.get(p.id()).unwrap_or(&empty);
    let rt = observed.pods.get(p.id()).filter(|r| r.ready);
    let Some(rt) = rt else {
        if let Some((at, n, _)) = &mem.sandbox_error {
            let due = at
                + (SANDBOX_RETRY_INITIAL_MS << n.saturating_sub(1).min(10))
                    .min(SANDBOX_RETRY_MAX_MS);
            if due > now {
                out.wake(due);
                return;
            }
        }
        out.actions.push(Action::CreatePod { key: key.clone() });
        // Fresh sandbox: the first init container, or every container, starts now.
        match p.init.first() {
            Some(c) => start(out, p, mem, &c.spec.name, 0, now),
            None => {
                for c in &p.containers {
                    start(out, p, mem, &c.spec.name, 0, now);
                }
            }
        }
        return;
    };
    let digests: BTreeMap<String, String> = p
        .volumes
        .iter()
        .map(|(n, v)| (n.clone(), v.digest()))
        .collect();
    if digests != mem.volumes {
        out.actions.push(Action::SyncVolumes { key: key.clone() });
    }
    let att = attempts(rt);
    // Garbage: attempts older than the previous one, and containers the plan does not have.
    for (name, list) in &att {
        let known = p.all_containers().any(|c| c.spec.name == *name);
        let keep_from = if known {
            list.len().saturating_sub(2)
        } else {
            list.len()
        };
        for (_, c) in &list[..keep_from] {
            if ended(c) || !known {
                out.actions.push(Action::RemoveContainer {
                    sandbox: p.id().to_string(),
                    runtime_name: c.name.clone(),
                });
            }
        }
    }
    // Init containers, in order: the first that has not completed is the one to act on.
    for c in &p.init {
        let name = c.spec.name.as_str();
        match att.get(name).and_then(|l| l.last()) {
            None => {
                start(out, p, mem, name, 0, now);
                return;
            }
            Some((_, rc)) if !ended(rc) => {
                if rc.state == ContainerState::Created {
                    out.actions.push(Action::RemoveContainer {
                        sandbox: p.id().to_string(),
                        runtime_name: rc.name.clone(),
                    });
                }
                return;
            }
            Some((_, rc)) if rc.exit_code == Some(0) => continue,
            Some((a, rc)) => {
                // An init container failed: the pod fails under Never, else it retries.
                if p.restart_policy != RestartPolicy::Never {
                    restart(out, p, mem, name, *a, rc, now);
                }
                return;
            }
        }
    }
    for c in &p.containers {
        let name = c.spec.name.as_str();
        let cm = mem.containers.get(name);
        match att.get(name).and_then(|l| l.last()) {
            None => start(out, p, mem, name, 0, now),
            Some((a, rc)) => match rc.state {
                ContainerState::Running => {
                    if cm.is_some_and(|m| m.unhealthy) {
                        out.actions.push(Action::KillContainer {
                            key: key.clone(),
                            runtime_name: rc.name.clone(),
                            reason: "failed its liveness probe, will be restarted".into(),
                        });
                    }
                }
                ContainerState::Created => {
                    // Made but never started (the agent died in between): make it again.
                    out.actions.push(Action::RemoveContainer {
                        sandbox: p.id().to_string(),
                        runtime_name: rc.name.clone(),
                    });
                    start(out, p, mem, name, *a, now);
                }
                ContainerState::Exited | ContainerState::Unknown => {
                    if restarts(p.restart_policy, rc.exit_code) {
                        restart(out, p, mem, name, *a, rc, now);
                    }
                }
            },
        }
    }
}

fn start(out: &mut Plan, p: &PodPlan, mem: &PodMemory, name: &str, attempt: u32, now: Millis) {
    let cm = mem.containers.get(name);
    let due = cm
        .and_then(|m| retry_at(&m.pull_error).max(retry_at(&m.start_error)))
        .unwrap_or(0);
    if due > now {
        out.wake(due);
        return;
    }
    out.actions.push(Action::StartContainer {
        key: p.key.clone(),
        container: name.to_string(),
        attempt,
    });
}

fn restart(
    out: &mut Plan,
    p: &PodPlan,
    mem: &PodMemory,
    name: &str,
    attempt: u32,
    rc: &RtContainer,
    now: Millis,
) {
    let cm = mem.containers.get(name);
    let streak = effective_streak(cm.map_or(0, |m| m.streak), rc);
    let finished = rc.finished_at_ms.unwrap_or(now);
    let due = if cm.is_some_and(|m| m.fenced) {
        now
    } else {
        finished + backoff_ms(streak)
    };
    if due > now {
        out.wake(due);
        return;
    }
    start(out, p, mem, name, attempt + 1, now);
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
