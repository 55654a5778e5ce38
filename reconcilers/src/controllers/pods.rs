//! Pods without a controller of their own: evictions (a node down, removed, drained or
//! tainted NoExecute), cleanup of finished controller pods, and bare pods from the commit.

use super::common::new_pod;
use crate::ids;
use crate::scheduler;
use crate::state::ClusterState;
use crate::types::{Owner, PodPhase, PodRecord};
use std::sync::Arc;

/// Whether and how a pod leaves its node.
#[derive(PartialEq)]
enum Leave {
    /// It stays.
    Stay,
    /// At once: the node is gone or down, or carries a NoExecute taint the pod does not
    /// tolerate.
    Now,
    /// As its budgets allow: the node is drained ([`super::drain`]).
    Drain,
}

/// Whether a pod must leave its node: the node is gone or down, drained (DaemonSet pods
/// stay), or carries a NoExecute taint the pod does not tolerate. Static pods leave only
/// with their node.
fn must_leave(state: &ClusterState, p: &PodRecord) -> Leave {
    let Some(node) = &p.node else {
        return Leave::Stay;
    };
    let Some(n) = state.nodes.get(node) else {
        return Leave::Now;
    };
    // A static pod belongs to its node whatever the node's state, as the kubelet's.
    if matches!(p.owner, Owner::Static(_)) {
        return Leave::Stay;
    }
    // A finished Job pod runs nothing: it stays as the Job's record of a completion or a
    // failure, whatever happens to its node.
    if matches!(p.owner, Owner::Job(_)) && matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed)
    {
        return Leave::Stay;
    }
    if !n.ready || scheduler::untolerated_no_execute(&p.spec.tolerations, &n.info.taints).is_some()
    {
        Leave::Now
    } else if n.drained && !matches!(p.owner, Owner::DaemonSet(_)) {
        Leave::Drain
    } else {
        Leave::Stay
    }
}

pub(super) fn evict(state: &mut ClusterState) {
    let mut gone: Vec<String> = Vec::new();
    let mut drained: Vec<String> = Vec::new();
    for (k, p) in &state.pods {
        let finished = !matches!(p.owner, Owner::Pod(_) | Owner::Static(_) | Owner::Job(_))
            && matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed);
        match must_leave(state, p) {
            Leave::Now => gone.push(k.clone()),
            _ if finished => gone.push(k.clone()),
            Leave::Drain => drained.push(k.clone()),
            Leave::Stay => {}
        }
    }
    for k in gone {
        state.pods.remove(&k);
    }
    if !drained.is_empty() || state.nodes.values().any(|n| !n.drain_waits.is_empty()) {
        for k in super::drain::pace(state, drained) {
            state.pods.remove(&k);
        }
    }
}

pub(super) fn bare_pods(state: &mut ClusterState) {
    // Prune pods whose manifest is gone or changed.
    let stale: Vec<String> = state
        .pods
        .iter()
        .filter(|(_, p)| match &p.owner {
            Owner::Pod(k) => state.desired.pods.get(k).is_none_or(|d| {
                ids::template_hash(&(&d.metadata.labels, &d.spec)) != p.template_hash
            }),
            _ => false,
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        state.pods.remove(&k);
    }
    let now = state.now;
    let mut created = Vec::new();
    for (key, d) in &state.desired.pods {
        if state.pods.contains_key(key) {
            continue;
        }
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        // A bare pod that finished under restartPolicy Never/OnFailure is not recreated:
        // it stays in the state with its final phase until its manifest changes.
        let hash = ids::template_hash(&(&d.metadata.labels, &d.spec));
        let serial = state.bare_pod_serial + created.len() as u64;
        created.push(new_pod(
            ns,
            name.to_owned(),
            Owner::Pod(key.clone()),
            &hash,
            d.metadata.labels.clone(),
            &Arc::new(d.spec.clone()),
            serial,
            now,
        ));
    }
    state.bare_pod_serial += created.len() as u64;
    for p in created {
        state.pods.insert(p.key(), p);
    }
}
