//! Static pods: manifests in a node's `--static-pods` directory, run on that node alone, as
//! the kubelet's. The node proposes its complete set ([`Entry::StaticPods`]); the state keeps
//! it per node ([`ClusterState::static_pods`]) and this controller keeps one pod per
//! manifest, named like Kubernetes' mirror pods `<name>-<node>` in the manifest's namespace,
//! owned by [`Owner::Static`], bound and pinned to its node at once with an IP from the
//! node's pod CIDR (the scheduler's allocation: lowest free).
//!
//! They never go through the scheduler and are never evicted: a down, drained or tainted
//! node keeps them, with the phase it last reported. A changed manifest is a new incarnation
//! (the UID hashes node, namespace, name and spec); a manifest gone from the set, or its node
//! removed, removes the pod. The adopted commit's pruning never touches them. A pod key that
//! another owner's pod already holds stays that pod's; the static pod waits until it is free.
//!
//! [`Entry::StaticPods`]: crate::types::Entry::StaticPods

use crate::alloc;
use crate::ids;
use crate::state::ClusterState;
use crate::types::{Effects, IpChange, Owner, MAX_STATIC_PODS};
use kommit_schemas::model::core::Pod;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Longest pod name (a DNS-1123 subdomain); a mirror name past it is not made.
const MAX_NAME: usize = 253;

/// A `StaticPods` entry's pods as the state records them: by `namespace/name`, the first
/// manifest of a name winning, at most [`MAX_STATIC_PODS`] taken.
pub fn normalize(pods: &[Pod]) -> BTreeMap<String, Pod> {
    let mut set = BTreeMap::new();
    for p in pods.iter().take(MAX_STATIC_PODS) {
        set.entry(manifest_key(p)).or_insert_with(|| p.clone());
    }
    set
}

/// Records `node`'s complete set of static pods ([`normalize`]d); an empty set forgets the
/// node's.
pub fn record(state: &mut ClusterState, node: &str, pods: &[Pod]) {
    let set = normalize(pods);
    if set.is_empty() {
        state.static_pods.remove(node);
    } else {
        state.static_pods.insert(node.to_owned(), set);
    }
}

/// `namespace/name` of a manifest (namespace `default` when absent).
fn manifest_key(p: &Pod) -> String {
    let ns = p
        .metadata
        .namespace
        .as_ref()
        .map_or("default", |n| n.as_str());
    format!("{ns}/{}", p.metadata.name.as_str())
}

/// The mirror pod name of manifest `name` on `node`, as the kubelet names mirror pods.
pub fn mirror_name(name: &str, node: &str) -> String {
    format!("{name}-{node}")
}

/// The UID of a static pod's incarnation: a hash of node, namespace, name and spec hash.
fn static_uid(node: &str, namespace: &str, name: &str, hash: &str) -> String {
    ids::uid(&[
        b"Static",
        node.as_bytes(),
        namespace.as_bytes(),
        name.as_bytes(),
        hash.as_bytes(),
    ])
}

/// One static pod the state should hold.
struct Want<'a> {
    node: &'a str,
    namespace: &'a str,
    name: String,
    hash: String,
    uid: String,
    pod: &'a Pod,
}

/// Makes the pods match the recorded static pods of the nodes the state knows. Returns
/// whether a static pod waits (its key held by another owner's pod, or no address free on
/// its node): a pod leaving may let it in.
pub(crate) fn reconcile(state: &mut ClusterState, fx: &mut Effects) -> bool {
    // Owner::Static is the last variant, so its owners are the index's tail.
    let have: Vec<String> = state
        .pods
        .owners_from(&Owner::Static(String::new()))
        .filter(|(o, _)| matches!(o, Owner::Static(_)))
        .flat_map(|(_, keys)| keys.iter().cloned())
        .collect();
    if have.is_empty() && state.static_pods.is_empty() {
        return false;
    }
    let mut want: BTreeMap<String, Want<'_>> = BTreeMap::new();
    for (node, set) in &state.static_pods {
        if !state.nodes.contains_key(node) {
            continue;
        }
        for pod in set.values() {
            let namespace = pod
                .metadata
                .namespace
                .as_ref()
                .map_or("default", |n| n.as_str());
            let name = mirror_name(pod.metadata.name.as_str(), node);
            if name.len() > MAX_NAME {
                continue;
            }
            let hash = ids::template_hash(&(&pod.metadata.labels, &pod.spec));
            let uid = static_uid(node, namespace, &name, &hash);
            want.insert(
                format!("{namespace}/{name}"),
                Want {
                    node,
                    namespace,
                    name,
                    hash,
                    uid,
                    pod,
                },
            );
        }
    }
    // Remove static pods no longer wanted, or of an older incarnation.
    let stale: BTreeSet<String> = have
        .into_iter()
        .filter(|k| {
            want.get(k)
                .is_none_or(|w| state.pods.get(k).is_none_or(|p| p.uid != w.uid))
        })
        .collect();
    // Create the missing ones, bound at once with an IP from their node's pod CIDR.
    let missing: Vec<&String> = want
        .keys()
        .filter(|k| !state.pods.contains_key(*k) || stale.contains(*k))
        .collect();
    let mut created = Vec::new();
    let mut waiting = false;
    if !missing.is_empty() {
        let nodes: BTreeSet<&str> = missing.iter().map(|k| want[*k].node).collect();
        let mut used: BTreeMap<&str, (BTreeSet<Ipv4Addr>, u64)> = BTreeMap::new();
        for &n in &nodes {
            for k in state.pods.on_node(n) {
                if stale.contains(k) {
                    continue;
                }
                if let Some(ip) = state.pods[k].pod_ip {
                    used.entry(n).or_default().0.insert(ip);
                }
            }
        }
        for key in missing {
            let w = &want[key];
            // A key another owner's pod holds stays that pod's.
            if state
                .pods
                .get(key)
                .is_some_and(|p| !matches!(&p.owner, Owner::Static(_)))
            {
                waiting = true;
                continue;
            }
            let Some(cidr) = state.nodes.get(w.node).and_then(|n| n.pod_cidr) else {
                continue;
            };
            let (ips, next) = used.entry(w.node).or_default();
            let Some((ip, after)) = alloc::pod_ip_from(cidr, ips, *next) else {
                waiting = true;
                continue;
            };
            ips.insert(ip);
            *next = after;
            let mut p = super::new_pod(
                w.namespace,
                w.name.clone(),
                Owner::Static(w.node.to_owned()),
                &w.hash,
                w.pod.metadata.labels.clone(),
                &Arc::new(w.pod.spec.clone()),
                0,
                state.now,
            );
            p.uid = w.uid.clone();
            p.node = Some(w.node.to_owned());
            p.pinned_node = Some(w.node.to_owned());
            p.pod_ip = Some(ip);
            fx.ips.push(IpChange::Pod {
                pod: key.clone(),
                ip,
            });
            created.push(p);
        }
    }
    for k in &stale {
        state.pods.remove(k);
    }
    for p in created {
        state.pods.insert(p.key(), p);
    }
    waiting
}
