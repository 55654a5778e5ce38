//! Pods without a controller of their own: evictions (a node down, removed, drained or
//! tainted NoExecute), cleanup of finished controller pods, and bare pods from the commit.

use super::common::new_pod;
use crate::ids;
use crate::scheduler;
use crate::state::ClusterState;
use crate::tracker::Pass;
use crate::types::{Owner, PodPhase, PodRecord};
use std::collections::BTreeSet;
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

/// Evicts the pods that must leave their node and removes finished controller pods. A
/// full pass looks at every pod; otherwise only the pods this entry touched, those on the
/// nodes it changed and those on drained nodes can have to go: after every pass no other
/// pod does.
pub(super) fn evict(state: &mut ClusterState, pass: &Pass) {
    let scoped: Option<BTreeSet<&String>> = (!pass.full).then(|| {
        let mut keys: BTreeSet<&String> = state.pods.log().touched.keys().collect();
        for (name, n) in &state.nodes {
            if n.drained {
                keys.extend(state.pods.on_node(name));
            }
        }
        // The nodes the entry changed, gone ones included.
        for name in &pass.nodes {
            keys.extend(state.pods.on_node(name));
        }
        keys
    });
    let candidates: Box<dyn Iterator<Item = (&String, &PodRecord)> + '_> = match &scoped {
        None => Box::new(state.pods.iter()),
        Some(keys) => Box::new(
            keys.iter()
                .filter_map(|k| state.pods.get(*k).map(|p| (*k, p))),
        ),
    };
    let mut gone: Vec<String> = Vec::new();
    let mut drained: Vec<String> = Vec::new();
    for (k, p) in candidates {
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

/// Bare pods: a full pass prunes pods whose manifest is gone or changed and makes the
/// missing ones; otherwise only a bare pod removed in this entry can be missing.
pub(super) fn bare_pods(state: &mut ClusterState, pass: &Pass) {
    if pass.full {
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
    }
    let missing: Vec<&String> = if pass.full {
        state.desired.pods.keys().collect()
    } else {
        state
            .pods
            .log()
            .touched
            .keys()
            .filter(|k| state.desired.pods.contains_key(*k))
            .collect()
    };
    let now = state.now;
    let mut created = Vec::new();
    for key in missing {
        let Some(d) = state.desired.pods.get(key) else {
            continue;
        };
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
