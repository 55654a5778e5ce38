//! Agents' pod reports entering the state: one `PodStatusChange` becomes the pod record's
//! phase, readiness, containers and events, bounded before it is stored.

use super::common::cut;
use crate::state::ClusterState;
use crate::types::{
    ContainerState, ContainerStatus, Millis, PodEvent, PodPhase, PodRecord, PodStatusChange,
    MAX_CONTAINERS_PER_REPORT, MAX_EVENTS_PER_REPORT, MAX_MESSAGE_BYTES, MAX_POD_EVENTS,
};

/// Records one status report. Reports for another UID (an older incarnation) or from a node
/// the pod is not bound to are ignored.
pub fn record_status(state: &mut ClusterState, node: &str, c: &PodStatusChange) {
    let now = state.now;
    let Some(p) = state.pods.get(&c.pod) else {
        return;
    };
    if p.uid != c.uid || p.node.as_deref() != Some(node) {
        return;
    }
    state.pods.update(&c.pod, |p| apply_report(p, c, now));
}

/// One report's fields on its pod record, bounded.
fn apply_report(p: &mut PodRecord, c: &PodStatusChange, now: Millis) {
    p.phase = c.phase;
    let ready = c.ready && c.phase == PodPhase::Running;
    if ready && !p.ready {
        p.ready_since = Some(now);
    } else if !ready {
        p.ready_since = None;
    }
    p.ready = ready;
    p.restarts = c.containers.iter().map(|s| s.restarts).sum();
    p.containers = bounded_containers(&c.containers);
    p.init_containers = bounded_containers(&c.init_containers);
    if c.start_time.is_some() {
        p.start_time = c.start_time;
    }
    p.node_message = c.reason.as_ref().map(|r| {
        (
            cut(r, 128),
            cut(c.message.as_deref().unwrap_or(""), MAX_MESSAGE_BYTES),
        )
    });
    for e in c.events.iter().take(MAX_EVENTS_PER_REPORT) {
        let e = PodEvent {
            reason: cut(&e.reason, 128),
            message: cut(&e.message, MAX_MESSAGE_BYTES),
            ..e.clone()
        };
        // Repeats of the latest event are folded into its count, as Kubernetes does.
        match p.events.last_mut() {
            Some(last) if last.reason == e.reason && last.message == e.message => {
                last.count = last.count.saturating_add(e.count);
                last.at = e.at;
            }
            _ => p.events.push(e),
        }
    }
    if p.events.len() > MAX_POD_EVENTS {
        let extra = p.events.len() - MAX_POD_EVENTS;
        p.events.drain(..extra);
    }
}

/// A report's containers, at most [`MAX_CONTAINERS_PER_REPORT`], with messages cut to size
/// (reports come from agents and are bounded before they enter the state).
fn bounded_containers(cs: &[ContainerStatus]) -> Vec<ContainerStatus> {
    cs.iter()
        .take(MAX_CONTAINERS_PER_REPORT)
        .map(|c| {
            let mut c = c.clone();
            c.name = cut(&c.name, 253);
            c.image = cut(&c.image, 1024);
            c.exit_reason = c.exit_reason.as_deref().map(|r| cut(r, 128));
            for st in [&mut c.state, &mut c.last_state].into_iter().flatten() {
                match st {
                    ContainerState::Waiting { reason, message } => {
                        *reason = cut(reason, 128);
                        *message = message.as_deref().map(|m| cut(m, MAX_MESSAGE_BYTES));
                    }
                    ContainerState::Terminated { reason, .. } => *reason = cut(reason, 128),
                    ContainerState::Running { .. } => {}
                }
            }
            c
        })
        .collect()
}
