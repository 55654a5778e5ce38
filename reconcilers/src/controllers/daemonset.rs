//! The DaemonSet controller: one pod per eligible node, nodes joining later included. A node
//! is eligible when it is up, its labels satisfy the template's nodeSelector and required
//! node affinity, and the template tolerates its NoSchedule/NoExecute taints. Cordoned nodes
//! stay eligible, as in Kubernetes. Each pod is pinned to its node and still goes through the
//! scheduler, so a full node leaves it Pending with a reason.
//!
//! Updates: RollingUpdate (default) replaces pods of an old template while at most
//! maxUnavailable (default 1) of the DaemonSet's pods are unavailable; OnDelete keeps old pods.

use super::common::{remove_pods_of, resolve};
use super::new_pod;
use crate::ids;
use crate::scheduler::{node_matches, untolerated};
use crate::state::ClusterState;
use crate::tracker::{Pass, Target};
use crate::types::Owner;
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::workloads::{DaemonSet, DaemonSetStrategyType};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Nodes a DaemonSet's pods belong on, sorted.
pub fn eligible_nodes(state: &ClusterState, ds: &DaemonSet) -> Vec<String> {
    let spec = &ds.spec.template.spec;
    state
        .nodes
        .values()
        .filter(|n| {
            n.ready
                && n.pod_cidr.is_some()
                && node_matches(spec, &n.info.name, &n.info.labels)
                && untolerated(&spec.tolerations, &n.info.taints).is_none()
        })
        .map(|n| n.info.name.clone())
        .collect()
}

/// Syncs the DaemonSets `keys`; a full pass also removes the pods of deleted ones. A
/// DaemonSet whose new pod found its name taken is left unsettled (the next entry tries
/// the next name).
pub(crate) fn reconcile(state: &mut ClusterState, keys: &[String], pass: &mut Pass) {
    if pass.full {
        // Pods of deleted DaemonSets go.
        remove_pods_of(
            state,
            |s, o| matches!(o, Owner::DaemonSet(k) if !s.desired.daemon_sets.contains_key(k)),
        );
        state
            .daemon_sets
            .retain(|k, _| state.desired.daemon_sets.contains_key(k));
    }
    // Syncs never read the desired state, so it is lent out rather than cloned.
    let sets = std::mem::take(&mut state.desired.daemon_sets);
    for key in keys {
        let Some(ds) = sets.get(key) else {
            continue;
        };
        let pods = state.pods.owned_keys(&Owner::DaemonSet(key.clone()));
        if !sync(state, key, ds, pods) {
            pass.unsettled.insert(Target::DaemonSet(key.clone()));
        }
    }
    state.desired.daemon_sets = sets;
}

/// Returns false when a pod could not be made because another pod holds its name.
fn sync(state: &mut ClusterState, key: &str, ds: &DaemonSet, keys: Vec<String>) -> bool {
    let Some((ns, name)) = key.split_once('/') else {
        return true;
    };
    let hash = ids::template_hash(&ds.spec.template);
    let eligible = eligible_nodes(state, ds);
    let on_delete = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.kind)
        .is_some_and(|k| k == DaemonSetStrategyType::OnDelete);
    let eligible_n = u32::try_from(eligible.len()).unwrap_or(u32::MAX);
    let max_unavailable = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .map(|v| resolve(&v, eligible_n, false))
        .unwrap_or_else(|| resolve(&IntOrString::Int(1), eligible_n, false))
        .max(1);

    // One pod per node: drop pods on ineligible nodes and duplicates. `eligible` is sorted
    // (node map order), so membership is a binary search.
    let mut by_node: BTreeMap<String, String> = BTreeMap::new();
    for k in keys {
        let p = &state.pods[&k];
        let node = p.pinned_node.clone().unwrap_or_default();
        if eligible.binary_search(&node).is_err() || by_node.contains_key(&node) {
            state.pods.remove(&k);
        } else {
            by_node.insert(node, k);
        }
    }
    // Rolling update: replace old-template pods while the unavailable count allows.
    if !on_delete {
        let mut unavailable = by_node.values().filter(|k| !state.pods[*k].ready).count() as u32;
        let mut old: Vec<(bool, String, String)> = by_node
            .iter()
            .filter(|(_, k)| state.pods[*k].template_hash != hash)
            .map(|(n, k)| (state.pods[k].ready, n.clone(), k.clone()))
            .collect();
        // Not-ready old pods first: replacing them costs no availability.
        old.sort();
        for (ready, node, k) in old {
            if ready {
                if unavailable >= max_unavailable {
                    break;
                }
                unavailable += 1;
            }
            state.pods.remove(&k);
            by_node.remove(&node);
        }
    }
    let now = state.now;
    let rec = state.daemon_sets.entry(key.to_owned()).or_default();
    let mut serial = rec.next_serial;
    let mut created = Vec::new();
    let spec = Arc::new(ds.spec.template.spec.clone());
    for node in &eligible {
        if by_node.contains_key(node) {
            continue;
        }
        let suffix = ids::safe_suffix(
            &[
                key.as_bytes(),
                node.as_bytes(),
                hash.as_bytes(),
                &serial.to_be_bytes(),
            ],
            5,
        );
        let mut pod = new_pod(
            ns,
            format!("{name}-{suffix}"),
            Owner::DaemonSet(key.to_owned()),
            &hash,
            ds.spec.template.metadata.labels.clone(),
            &spec,
            serial,
            now,
        );
        serial += 1;
        pod.pinned_node = Some(node.clone());
        created.push(pod);
    }
    rec.next_serial = serial;
    let mut settled = true;
    for p in created {
        settled &= state.pods.insert_new(p);
    }
    settled
}
