//! The controllers that run inside `ClusterState::apply`, level-triggered: each looks at the
//! whole desired and current state and moves the current state one step toward the desired
//! one. They run in a fixed order after every entry:
//!
//! 1. evictions (node down, removed, drained, untolerated NoExecute taint) and cleanup of
//!    finished controller pods;
//! 2. bare pods (create, replace on spec change, prune);
//! 3. Deployments -> ReplicaSets -> pods ([`deployment`]);
//! 4. DaemonSets ([`daemonset`]), then nodes' static pods ([`static_pods`]: bound at once);
//! 5. services (ClusterIPs and NodePorts, [`services`]), the scheduler for every Pending
//!    pod, then endpoints.
//!
//! Pruning is the same rule everywhere: a pod whose owner is absent from the adopted commit
//! is deleted, so deleting a whole file removes everything it declared. Static pods are not
//! the commit's: they follow their node's `StaticPods` entries.

pub mod daemonset;
pub mod deployment;
pub mod services;
pub mod static_pods;

use crate::alloc;
use crate::ids;
use crate::scheduler::{self, NodeView, Placement, PodView};
use crate::state::ClusterState;
use crate::types::{
    ContainerState, ContainerStatus, Effects, Endpoint, IpChange, NodeRecord, Owner, PodEvent,
    PodPhase, PodRecord, PodStatusChange, MAX_CONTAINERS_PER_REPORT, MAX_EVENTS_PER_REPORT,
    MAX_MESSAGE_BYTES, MAX_POD_EVENTS,
};
use kommit_schemas::model::pod::{PodSpec, RestartPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Records one status report. Reports for another UID (an older incarnation) or from a node
/// the pod is not bound to are ignored.
pub fn record_status(state: &mut ClusterState, node: &str, c: &PodStatusChange) {
    let now = state.now;
    let Some(p) = state.pods.get_mut(&c.pod) else {
        return;
    };
    if p.uid != c.uid || p.node.as_deref() != Some(node) {
        return;
    }
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

/// `s` cut to at most `max` bytes at a char boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Runs every controller once, in order.
pub fn reconcile(state: &mut ClusterState, fx: &mut Effects) {
    evict(state);
    bare_pods(state);
    // Deployments run to a fixed point (bounded): scaling an old ReplicaSet down frees
    // surge budget for the new one in the same entry, as a Kubernetes resync would.
    // Pods by owner, built once: the Deployment passes keep their ReplicaSets' entries
    // current, and they never touch DaemonSet pods.
    let mut index = pods_by_owner(state);
    let mut recreating = BTreeSet::new();
    for _ in 0..4 {
        if !deployment::reconcile(state, fx, &mut recreating, &mut index) {
            break;
        }
    }
    daemonset::reconcile(state, &mut index);
    static_pods::reconcile(state, &index, fx);
    services::reconcile(state, fx);
    schedule_pending(state, fx);
    endpoints(state, fx);
}

/// Whether a pod must leave its node: the node is gone or down, drained (DaemonSet pods
/// stay), or carries a NoExecute taint the pod does not tolerate. Static pods leave only
/// with their node.
fn must_leave(state: &ClusterState, p: &PodRecord) -> bool {
    let Some(node) = &p.node else { return false };
    let Some(n) = state.nodes.get(node) else {
        return true;
    };
    // A static pod belongs to its node whatever the node's state, as the kubelet's.
    if matches!(p.owner, Owner::Static(_)) {
        return false;
    }
    !n.ready
        || (n.drained && !matches!(p.owner, Owner::DaemonSet(_)))
        || scheduler::untolerated_no_execute(&p.spec.tolerations, &n.info.taints).is_some()
}

fn evict(state: &mut ClusterState) {
    let gone: Vec<String> = state
        .pods
        .iter()
        .filter(|(_, p)| {
            must_leave(state, p)
                || (!matches!(p.owner, Owner::Pod(_) | Owner::Static(_))
                    && matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        state.pods.remove(&k);
    }
}

/// A new pod record, Pending.
#[allow(clippy::too_many_arguments)] // every argument is part of the pod's identity
pub(crate) fn new_pod(
    namespace: &str,
    name: String,
    owner: Owner,
    template_hash: &str,
    labels: BTreeMap<String, String>,
    spec: &Arc<PodSpec>,
    serial: u64,
    now: crate::types::Millis,
) -> PodRecord {
    let owner_id = owner.id();
    let uid = ids::uid(&[
        owner_id.as_bytes(),
        template_hash.as_bytes(),
        name.as_bytes(),
        &serial.to_be_bytes(),
    ]);
    PodRecord {
        namespace: namespace.to_owned(),
        name,
        uid,
        owner,
        template_hash: template_hash.to_owned(),
        labels,
        spec: Arc::clone(spec),
        node: None,
        pinned_node: None,
        pod_ip: None,
        phase: PodPhase::Pending,
        ready: false,
        ready_since: None,
        restarts: 0,
        containers: Vec::new(),
        reason: None,
        created_at: now,
        serial,
        init_containers: Vec::new(),
        start_time: None,
        node_message: None,
        events: Vec::new(),
    }
}

fn bare_pods(state: &mut ClusterState) {
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

/// The restart policy a controller pod runs with (Always for Deployments and DaemonSets).
pub fn restart_policy(spec: &PodSpec) -> RestartPolicy {
    spec.restart_policy.unwrap_or(RestartPolicy::Always)
}

/// Runs the scheduler over every Pending pod and binds the ones it places, allocating each
/// an IP from its node's pod CIDR.
fn schedule_pending(state: &mut ClusterState, fx: &mut Effects) {
    if state.pods.values().all(|p| p.node.is_some()) {
        return;
    }
    let nodes: Vec<&NodeRecord> = state.nodes.values().collect();
    // (position in `state.pods`, placement), in key order.
    let placements: Vec<(usize, Placement)> = {
        // Owner ids, one per run of pods with the same owner (pods come in key order).
        let mut owner_ids: Vec<String> = Vec::new();
        let mut owner_of: Vec<usize> = Vec::with_capacity(state.pods.len());
        let mut last: Option<&Owner> = None;
        for p in state.pods.values() {
            if last != Some(&p.owner) {
                owner_ids.push(p.owner.id());
                last = Some(&p.owner);
            }
            owner_of.push(owner_ids.len() - 1);
        }
        let views: Vec<NodeView> = nodes.iter().map(|n| NodeView::from(*n)).collect();
        let mut pending = Vec::new();
        let mut pending_pos = Vec::new();
        let mut bound = Vec::new();
        for (i, (k, p)) in state.pods.iter().enumerate() {
            let owner = owner_ids[owner_of[i]].as_str();
            match &p.node {
                None => {
                    if p.phase == PodPhase::Pending {
                        pending.push(pod_view(k, p, owner));
                        pending_pos.push(i);
                    }
                }
                Some(n) => bound.push((pod_view(k, p, owner), n.as_str())),
            }
        }
        let mut out: Vec<(usize, Placement)> =
            scheduler::schedule_indexed(&pending, &views, &bound)
                .into_iter()
                .map(|(i, p)| (pending_pos[i], p))
                .collect();
        // Already in key order (pending is); sorting keeps that explicit.
        out.sort_by_key(|(pos, _)| *pos);
        out
    };
    // Pod IPs in use per node (only needed once something binds), and where each node's
    // lowest-free search resumes.
    let mut used: Vec<BTreeSet<Ipv4Addr>> = vec![BTreeSet::new(); nodes.len()];
    let mut next_slot: Vec<u64> = vec![0; nodes.len()];
    if placements
        .iter()
        .any(|(_, p)| matches!(p, Placement::Node(_)))
    {
        let index: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.info.name.as_str(), i))
            .collect();
        for p in state.pods.values() {
            if let (Some(n), Some(ip)) = (&p.node, p.pod_ip) {
                if let Some(&i) = index.get(n.as_str()) {
                    used[i].insert(ip);
                }
            }
        }
    }
    let mut todo = placements.into_iter().peekable();
    for (pos, (key, p)) in state.pods.iter_mut().enumerate() {
        let Some((_, placement)) = todo.next_if(|(at, _)| *at == pos) else {
            continue;
        };
        match placement {
            Placement::Node(n) => {
                let node = &nodes[n].info.name;
                let Some((ip, next)) = nodes[n]
                    .pod_cidr
                    .and_then(|c| alloc::pod_ip_from(c, &used[n], next_slot[n]))
                else {
                    // Cannot happen: max_pods is capped by the CIDR's capacity.
                    p.reason = Some(format!("no free pod IP in node {node}'s pod CIDR"));
                    continue;
                };
                used[n].insert(ip);
                next_slot[n] = next;
                p.node = Some(node.clone());
                p.pod_ip = Some(ip);
                p.reason = None;
                fx.ips.push(IpChange::Pod {
                    pod: key.clone(),
                    ip,
                });
            }
            Placement::Unschedulable(reason) => {
                if p.reason.as_deref() != Some(reason.as_str()) {
                    fx.unschedulable.insert(key.clone(), reason.clone());
                    p.reason = Some(reason);
                }
            }
        }
    }
}

fn pod_view<'a>(k: &'a str, p: &'a PodRecord, owner: &'a str) -> PodView<'a> {
    PodView {
        key: k,
        uid: &p.uid,
        namespace: &p.namespace,
        owner,
        template_hash: &p.template_hash,
        labels: &p.labels,
        spec: &p.spec,
        pinned_node: p.pinned_node.as_deref(),
    }
}

fn endpoints(state: &mut ClusterState, fx: &mut Effects) {
    // Bound pods with an IP, indexed by (namespace, label, value) for the labels that come
    // first in some service's selector: each service then only filters the pods carrying
    // its first label, not every pod of its namespace.
    let first_keys: BTreeSet<&str> = state
        .desired
        .services
        .values()
        .filter_map(|s| s.spec.selector.keys().next().map(String::as_str))
        .collect();
    let mut by_label: BTreeMap<(&str, &str, &str), Vec<&PodRecord>> = BTreeMap::new();
    if !first_keys.is_empty() {
        for p in state.pods.values() {
            if p.node.is_none() || p.pod_ip.is_none() {
                continue;
            }
            for (k, v) in &p.labels {
                if first_keys.contains(k.as_str()) {
                    by_label
                        .entry((p.namespace.as_str(), k.as_str(), v.as_str()))
                        .or_default()
                        .push(p);
                }
            }
        }
    }
    let mut next: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for (key, svc) in &state.desired.services {
        if svc.spec.selector.is_empty() {
            continue;
        }
        let ns = key.split_once('/').map(|(ns, _)| ns).unwrap_or("default");
        let Some((k0, v0)) = svc.spec.selector.iter().next() else {
            continue;
        };
        let mut eps: Vec<Endpoint> = by_label
            .get(&(ns, k0.as_str(), v0.as_str()))
            .into_iter()
            .flatten()
            .filter(|p| {
                svc.spec
                    .selector
                    .iter()
                    .all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .filter_map(|p| {
                Some(Endpoint {
                    pod: p.key(),
                    ip: p.pod_ip?,
                    node: p.node.clone()?,
                    ready: p.ready,
                })
            })
            .collect();
        eps.sort();
        next.insert(key.clone(), eps);
    }
    let keys: BTreeSet<&String> = next.keys().chain(state.endpoints.keys()).collect();
    for k in keys {
        if next.get(k) != state.endpoints.get(k) {
            fx.endpoints_changed.push(k.clone());
        }
    }
    state.endpoints = next;
}

/// Pods of each owner, by key; built once per reconcile and kept current by the controllers.
pub(crate) fn pods_by_owner(state: &ClusterState) -> BTreeMap<Owner, Vec<String>> {
    let mut m: BTreeMap<Owner, Vec<String>> = BTreeMap::new();
    for (k, p) in &state.pods {
        match m.get_mut(&p.owner) {
            Some(v) => v.push(k.clone()),
            None => {
                m.insert(p.owner.clone(), vec![k.clone()]);
            }
        }
    }
    m
}

/// Orders pods for deletion the way Kubernetes' ReplicaSet controller prefers: unscheduled
/// before scheduled, not running before running, not ready before ready, ready for less time
/// before longer, newer before older.
pub(crate) fn deletion_order(state: &ClusterState, keys: &mut [String]) {
    keys.sort_by_key(|k| {
        let p = &state.pods[k];
        let phase_rank = match p.phase {
            PodPhase::Pending => 0,
            PodPhase::Unknown => 1,
            _ => 2,
        };
        (
            p.node.is_some(),
            phase_rank,
            p.ready,
            std::cmp::Reverse(p.ready_since.unwrap_or(0)),
            std::cmp::Reverse(p.serial),
            k.clone(),
        )
    });
}
