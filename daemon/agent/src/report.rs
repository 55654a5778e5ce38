//! Observed state becomes `PodStatus` entries, in Kubernetes' vocabulary.
//!
//! [`pod_status`] is pure: the pod's plan, what the runtime reports, the agent's memory and
//! the probe verdicts go in; the phase, readiness and each container's state come out.
//! [`Coalescer`] sends only what changed, and at most [`MAX_REPORTS_PER_SECOND`] entries a
//! second per node: changes that arrive faster are merged into the next entry.

use crate::plan::{attempts, backoff_ms, effective_streak, ended, restarts, PodMemory};
use crate::translate::PodPlan;
use kommit_reconcilers::{
    ContainerState as KState, ContainerStatus as KContainer, Millis, PodPhase, PodStatusChange,
};
use kommit_runtime::spec::{ContainerState, ContainerStatus as RtContainer, PodStatus as RtPod};
use kommit_schemas::model::pod::RestartPolicy;
use std::collections::BTreeMap;

/// Most `PodStatus` entries one node proposes per second (each carries every change since
/// the previous one).
pub const MAX_REPORTS_PER_SECOND: u64 = 5;

fn terminated(c: &RtContainer) -> KState {
    KState::Terminated {
        exit_code: c.exit_code.unwrap_or(-1),
        reason: c.reason.clone().unwrap_or_else(|| {
            if c.state == ContainerState::Unknown {
                "ContainerStatusUnknown".into()
            } else if c.exit_code == Some(0) {
                "Completed".into()
            } else {
                "Error".into()
            }
        }),
        started_at: c.started_at_ms,
        finished_at: c.finished_at_ms,
    }
}

fn waiting(reason: &str, message: Option<String>) -> KState {
    KState::Waiting {
        reason: reason.into(),
        message,
    }
}

/// The status of one pod.
pub fn pod_status(
    p: &PodPlan,
    rt: Option<&RtPod>,
    mem: Option<&PodMemory>,
    verdicts: &dyn Fn(&str) -> Option<crate::probe::Verdicts>,
    start_time: Option<Millis>,
    now: Millis,
) -> PodStatusChange {
    let mut out = PodStatusChange {
        pod: p.key.clone(),
        uid: p.uid.clone(),
        phase: PodPhase::Pending,
        ready: false,
        pod_ip: rt.and(p.address.map(|a| a.ip)),
        start_time,
        ..Default::default()
    };
    if let Some(e) = &p.config_error {
        out.reason = Some("CreateContainerConfigError".into());
        out.message = Some(e.clone());
    }
    let att = rt.map(attempts).unwrap_or_default();
    let status_of = |c: &crate::translate::ContainerPlan, init: bool| -> KContainer {
        let name = c.spec.name.as_str();
        let list = att.get(name).unwrap_or(&Vec::new()).clone();
        let cm = mem.and_then(|m| m.containers.get(name));
        let latest = list.last();
        let previous = list.len().checked_sub(2).map(|i| list[i].1);
        let mut s = KContainer {
            name: name.to_string(),
            image: c.spec.image.clone(),
            restarts: latest.map_or(0, |(a, _)| *a),
            last_state: previous.filter(|c| ended(c)).map(terminated),
            ..Default::default()
        };
        let pending_error = cm.and_then(|m| {
            m.pull_error
                .as_ref()
                .map(|(at, n, msg)| {
                    let backing_off = *n > 1 && now < at + backoff_ms(n.saturating_sub(1));
                    (
                        if backing_off {
                            "ImagePullBackOff"
                        } else {
                            "ErrImagePull"
                        },
                        msg,
                    )
                })
                .or_else(|| {
                    m.start_error
                        .as_ref()
                        .map(|(_, _, msg)| ("CreateContainerError", msg))
                })
        });
        s.state = Some(match latest {
            None => match (&p.config_error, pending_error) {
                (Some(e), _) => waiting("CreateContainerConfigError", Some(e.clone())),
                (None, Some((r, m))) => waiting(r, Some(m.clone())),
                (None, None) if !init && !p.init.is_empty() => waiting("PodInitializing", None),
                (None, None) => waiting("ContainerCreating", None),
            },
            Some((_, rc)) => match rc.state {
                ContainerState::Running => {
                    let v = verdicts(&rc.name).unwrap_or_default();
                    s.started = v.started;
                    s.ready = !init && v.ready;
                    KState::Running {
                        started_at: rc.started_at_ms.unwrap_or(0),
                    }
                }
                ContainerState::Created => waiting("ContainerCreating", None),
                ContainerState::Exited | ContainerState::Unknown => {
                    let again = if init {
                        rc.exit_code != Some(0) && p.restart_policy != RestartPolicy::Never
                    } else {
                        restarts(p.restart_policy, rc.exit_code)
                    };
                    if again {
                        let streak = effective_streak(cm.map_or(0, |m| m.streak), rc);
                        let due = rc.finished_at_ms.unwrap_or(now) + backoff_ms(streak);
                        if let Some((r, m)) = pending_error {
                            waiting(r, Some(m.clone()))
                        } else if now < due {
                            s.last_state = Some(terminated(rc));
                            waiting(
                                "CrashLoopBackOff",
                                Some(format!(
                                    "back-off {}s restarting failed container={name} pod={}",
                                    backoff_ms(streak) / 1000,
                                    p.key
                                )),
                            )
                        } else {
                            terminated(rc)
                        }
                    } else {
                        terminated(rc)
                    }
                }
            },
        });
        s.exit_reason = match &s.state {
            Some(KState::Terminated { reason, .. }) => Some(reason.clone()),
            _ => match &s.last_state {
                Some(KState::Terminated { reason, .. }) => Some(reason.clone()),
                _ => None,
            },
        };
        s
    };
    out.init_containers = p.init.iter().map(|c| status_of(c, true)).collect();
    out.containers = p.containers.iter().map(|c| status_of(c, false)).collect();
    out.phase = phase(p, &out);
    out.ready = out.phase == PodPhase::Running && out.containers.iter().all(|c| c.ready);
    out
}

fn is_terminated(s: &KContainer) -> Option<i32> {
    match &s.state {
        Some(KState::Terminated { exit_code, .. }) => Some(*exit_code),
        _ => None,
    }
}

/// Kubernetes' pod phase from the container states.
fn phase(p: &PodPlan, s: &PodStatusChange) -> PodPhase {
    // An init container that failed for good fails the pod.
    if p.restart_policy == RestartPolicy::Never
        && s.init_containers
            .iter()
            .any(|c| is_terminated(c).is_some_and(|code| code != 0))
    {
        return PodPhase::Failed;
    }
    let init_done = s
        .init_containers
        .iter()
        .all(|c| is_terminated(c) == Some(0));
    if !init_done {
        return PodPhase::Pending;
    }
    let any_started = s.containers.iter().any(|c| {
        matches!(
            c.state,
            Some(KState::Running { .. }) | Some(KState::Terminated { .. })
        ) || c.restarts > 0
            || c.last_state.is_some()
    });
    if !any_started {
        return PodPhase::Pending;
    }
    let codes: Vec<Option<i32>> = s.containers.iter().map(is_terminated).collect();
    if codes.iter().all(Option::is_some) {
        // Everything stopped and nothing will restart (a restarting one is Waiting).
        if codes.iter().all(|c| *c == Some(0)) {
            return PodPhase::Succeeded;
        }
        return PodPhase::Failed;
    }
    PodPhase::Running
}

/// Sends only changes, at a bounded rate.
#[derive(Debug, Default)]
pub struct Coalescer {
    sent: BTreeMap<String, PodStatusChange>,
    last_at: Millis,
}

impl Coalescer {
    /// The earliest time the next entry may be sent.
    pub fn next_at(&self) -> Millis {
        self.last_at + 1000 / MAX_REPORTS_PER_SECOND
    }

    /// The changes to send now (events always count as a change), or None when nothing
    /// changed or the last entry went out less than 1/[`MAX_REPORTS_PER_SECOND`] s ago.
    /// `current` is every assigned pod's status.
    pub fn due(&self, current: &[PodStatusChange], now: Millis) -> Option<Vec<PodStatusChange>> {
        if now < self.next_at() {
            return None;
        }
        let changed: Vec<PodStatusChange> = current
            .iter()
            .filter(|c| {
                !c.events.is_empty()
                    || self.sent.get(&c.pod).is_none_or(|s| {
                        let mut a = s.clone();
                        a.events.clear();
                        let mut b = (*c).clone();
                        b.events.clear();
                        a != b
                    })
            })
            .cloned()
            .collect();
        (!changed.is_empty()).then_some(changed)
    }

    /// Records that `sent` went out at `now`; forgets pods no longer assigned.
    pub fn sent(&mut self, sent: &[PodStatusChange], assigned: &[String], now: Millis) {
        self.last_at = now;
        for c in sent {
            let mut c = c.clone();
            c.events.clear();
            self.sent.insert(c.pod.clone(), c);
        }
        self.sent.retain(|k, _| assigned.contains(k));
    }

    /// Forgets everything (after the state was replaced, e.g. a snapshot install).
    pub fn reset(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
