//! Binding Pending pods: the scheduler ([`crate::scheduler`]) over every Pending pod, then
//! an IP from the chosen node's pod CIDR for each pod it places. It runs when something it
//! reads changed since it last ran (a pod came, went or was bound, a node changed, a claim
//! changed); otherwise it would decide as it did then.

use super::volumes;
use crate::alloc;
use crate::scheduler::{self, NodeView, Placement, PodView};
use crate::state::ClusterState;
use crate::types::{Effects, IpChange, NodeRecord, Owner, PodPhase, PodRecord};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Runs the scheduler over every Pending pod and binds the ones it places, allocating each
/// an IP from its node's pod CIDR.
pub(super) fn schedule_pending(state: &mut ClusterState, fx: &mut Effects) {
    if state.pods.unbound_len() == 0 {
        return;
    }
    let nodes: Vec<&NodeRecord> = state.nodes.values().collect();
    // (pod key, placement), in key order.
    let placements: Vec<(String, Placement)> = {
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
        let mut blocked = Vec::new();
        let one_pod_users = if state.claims.is_empty() {
            BTreeSet::new()
        } else {
            volumes::one_pod_users(state)
        };
        for (i, (k, p)) in state.pods.iter().enumerate() {
            let owner = owner_ids[owner_of[i]].as_str();
            match &p.node {
                None => {
                    if p.phase == PodPhase::Pending {
                        let mut view = pod_view(k, p, owner);
                        match volumes::gate(state, p, &one_pod_users) {
                            volumes::Gate::Free => {}
                            volumes::Gate::Pin(n) => view.pinned_node = Some(n),
                            volumes::Gate::Blocked(why) => {
                                blocked.push((i, Placement::Unschedulable(why)));
                                continue;
                            }
                        }
                        pending.push(view);
                        pending_pos.push(i);
                    }
                }
                // A finished Job pod holds no resources on its node.
                Some(_) if finished_job_pod(p) => {}
                Some(n) => bound.push((pod_view(k, p, owner), n.as_str())),
            }
        }
        let mut out: Vec<(usize, Placement)> =
            scheduler::schedule_indexed(&pending, &views, &bound)
                .into_iter()
                .map(|(i, p)| (pending_pos[i], p))
                .chain(blocked)
                .collect();
        // Already in key order (pending is); sorting keeps that explicit.
        out.sort_by_key(|(pos, _)| *pos);
        let keys: Vec<&String> = state.pods.keys().collect();
        out.into_iter()
            .map(|(pos, p)| (keys[pos].clone(), p))
            .collect()
    };
    // Pod IPs in use on each node something binds to, and where each node's lowest-free
    // search resumes.
    let mut used: Vec<BTreeSet<Ipv4Addr>> = vec![BTreeSet::new(); nodes.len()];
    let mut next_slot: Vec<u64> = vec![0; nodes.len()];
    let targets: BTreeSet<usize> = placements
        .iter()
        .filter_map(|(_, p)| match p {
            Placement::Node(n) => Some(*n),
            Placement::Unschedulable(_) => None,
        })
        .collect();
    for n in targets {
        used[n] = state
            .pods
            .on_node(&nodes[n].info.name)
            .filter_map(|k| state.pods[k].pod_ip)
            .collect();
    }
    for (key, placement) in placements {
        let Some(p) = state.pods.get(&key) else {
            continue;
        };
        match placement {
            Placement::Node(n) => {
                let node = &nodes[n].info.name;
                // Another pod bound one of its claims elsewhere in this pass: it waits for
                // the next entry, which pins it to that volume's node.
                if !volumes::fits(&state.claims, p, node) {
                    let why = "waiting for its claim's volume to bind".to_string();
                    if p.reason.as_deref() != Some(why.as_str()) {
                        fx.unschedulable.insert(key.clone(), why.clone());
                        state.pods.set_reason(&key, Some(why));
                    }
                    continue;
                }
                volumes::bind(&mut state.claims, p, node);
                let Some((ip, next)) = nodes[n]
                    .pod_cidr
                    .and_then(|c| alloc::pod_ip_from(c, &used[n], next_slot[n]))
                else {
                    // Cannot happen: max_pods is capped by the CIDR's capacity.
                    let why = format!("no free pod IP in node {node}'s pod CIDR");
                    state.pods.set_reason(&key, Some(why));
                    continue;
                };
                used[n].insert(ip);
                next_slot[n] = next;
                state.pods.bind(&key, node, ip);
                fx.ips.push(IpChange::Pod { pod: key, ip });
            }
            Placement::Unschedulable(reason) => {
                if p.reason.as_deref() != Some(reason.as_str()) {
                    fx.unschedulable.insert(key.clone(), reason.clone());
                    state.pods.set_reason(&key, Some(reason));
                }
            }
        }
    }
}

/// A Job pod that ran to completion or failed: it stays bound (its status and logs are
/// the Job's record) but no longer counts against its node.
fn finished_job_pod(p: &PodRecord) -> bool {
    matches!(p.owner, Owner::Job(_)) && matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed)
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
