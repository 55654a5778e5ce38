//! Claims and node-local volumes, the way a k3s cluster's `local-path` provisioner binds
//! them (`volumeBindingMode: WaitForFirstConsumer`):
//!
//! - a claim from Git, or from a StatefulSet's `volumeClaimTemplates`, is Pending until the
//!   scheduler places the first pod that uses it; it then binds to a new volume, a
//!   directory on that node's disk (`pvc-<uid>`);
//! - a pod whose claims are bound may only run on their node (the volume's node affinity):
//!   while that node is down or cordoned the pod stays Pending, with a reason naming the
//!   node and the claim, and is never started elsewhere on an empty volume;
//! - a claim of a StorageClass from Git whose provisioner is not `kommit.dev/local-path`
//!   (nor k3s' `rancher.io/local-path`) stays Pending with a reason naming it, as in a
//!   cluster without that provisioner; a class name no StorageClass defines is served by
//!   `local-path`, as the schemas model documents (any class name is accepted);
//! - a missing claim, or a `ReadWriteOncePod` claim another bound pod uses, keeps the pod
//!   Pending with a reason;
//! - a claim removed from Git goes once no bound pod uses it (Kubernetes'
//!   `pvc-protection`); its volume then follows its reclaim policy (the StorageClass's,
//!   default Delete: the node's agent removes the directory; Retain: kept, see
//!   [`crate::records::ReleasedVolume`]);
//! - a claim that a pre-provisioned PersistentVolume fits binds to it first ([`super::pv`]);
//!   its pods then run only on a node the volume's `nodeAffinity` admits.

use crate::ids;
use crate::records::{ClaimRecord, LOCAL_PATH_PROVISIONER};
use crate::state::ClusterState;
use crate::types::PodRecord;
use std::collections::BTreeSet;

/// Keeps the claim records of Git's claims in step with the adopted commit.
pub(super) fn sync_git_claims(state: &mut ClusterState) {
    let now = state.now;
    for (k, c) in &state.desired.persistent_volume_claims {
        if state.claims.contains_key(k) {
            continue;
        }
        let Some((ns, name)) = k.split_once('/') else {
            continue;
        };
        state.claims.insert(
            k.clone(),
            ClaimRecord {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                stateful_set: None,
                spec: c.spec.clone(),
                node: None,
                volume: None,
                created_at: now,
                pre_provisioned: false,
            },
        );
    }
    let stale: Vec<String> = state
        .claims
        .iter()
        .filter(|(k, c)| {
            c.stateful_set.is_none() && !state.desired.persistent_volume_claims.contains_key(*k)
        })
        .map(|(k, _)| k.clone())
        .collect();
    if stale.is_empty() {
        return;
    }
    let used = claims_in_use(state);
    for k in stale {
        if !used.contains(&k) {
            release_claim(state, &k);
        }
    }
}

/// Removes a claim; its volume follows its reclaim policy. A local-path volume of a class
/// with `reclaimPolicy: Retain` is kept on its node; one with Delete (the default) goes
/// (the node's agent removes directories no claim holds). A PersistentVolume from Git is
/// Released, whatever its policy: kommit never deletes data it did not provision.
pub(crate) fn release_claim(state: &mut ClusterState, key: &str) {
    use kommit_schemas::model::storage::ReclaimPolicy;
    let Some(c) = state.claims.remove(key) else {
        return;
    };
    let Some(volume) = c.volume.clone() else {
        return;
    };
    let policy = if c.pre_provisioned {
        state
            .desired
            .persistent_volumes
            .get(&volume)
            .and_then(|pv| pv.spec.persistent_volume_reclaim_policy)
            .unwrap_or(ReclaimPolicy::Retain)
    } else {
        state
            .desired
            .storage_classes
            .get(c.class())
            .and_then(|sc| sc.reclaim_policy)
            .unwrap_or(ReclaimPolicy::Delete)
    };
    if !c.pre_provisioned && policy == ReclaimPolicy::Delete {
        return;
    }
    state.released_volumes.insert(
        volume,
        crate::records::ReleasedVolume {
            claim: key.to_owned(),
            node: c.node.clone(),
            pre_provisioned: c.pre_provisioned,
            policy,
            at: state.now,
        },
    );
    while state.released_volumes.len() > crate::records::MAX_RELEASED_VOLUMES {
        let oldest = state
            .released_volumes
            .iter()
            .min_by_key(|(name, r)| (r.at, (*name).clone()))
            .map(|(name, _)| name.clone());
        match oldest {
            Some(name) => {
                state.released_volumes.remove(&name);
            }
            None => break,
        }
    }
}

/// Whether a StorageClass provisioner is kommit's own.
pub fn is_local_path(provisioner: &str) -> bool {
    provisioner == LOCAL_PATH_PROVISIONER || provisioner == "rancher.io/local-path"
}

/// Claims (`namespace/name`) a bound pod uses.
fn claims_in_use(state: &ClusterState) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for p in state.pods.values() {
        if p.node.is_some() {
            for c in claim_names(p) {
                used.insert(format!("{}/{c}", p.namespace));
            }
        }
    }
    used
}

/// The claims a pod's volumes name.
pub(crate) fn claim_names(p: &PodRecord) -> impl Iterator<Item = &str> {
    p.spec
        .volumes
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// What a Pending pod's claims allow.
pub(super) enum Gate<'a> {
    /// No claim constrains it.
    Free,
    /// Its claims' volumes are on this node.
    Pin(&'a str),
    /// It cannot be placed now, for this reason.
    Blocked(String),
}

/// The gate of one Pending pod. `one_pod_users` holds the `ReadWriteOncePod` claims bound
/// pods use (built only when such a claim exists).
pub(super) fn gate<'a>(
    state: &'a ClusterState,
    p: &PodRecord,
    one_pod_users: &BTreeSet<String>,
) -> Gate<'a> {
    let mut pin: Option<&'a str> = None;
    for c in claim_names(p) {
        let key = format!("{}/{c}", p.namespace);
        let Some(claim) = state.claims.get(&key) else {
            return Gate::Blocked(format!("persistentvolumeclaim \"{c}\" not found"));
        };
        if let (None, Some(sc)) = (
            &claim.volume,
            state.desired.storage_classes.get(claim.class()),
        ) {
            if !is_local_path(&sc.provisioner) {
                return Gate::Blocked(format!(
                    "persistentvolumeclaim \"{c}\": no PersistentVolume fits it, and storageclass \"{}\" uses provisioner \"{}\", which kommit does not have (it provisions {LOCAL_PATH_PROVISIONER})",
                    claim.class(),
                    sc.provisioner
                ));
            }
        }
        if claim.one_pod() && one_pod_users.contains(&key) {
            return Gate::Blocked(format!(
                "persistentvolumeclaim \"{c}\" is ReadWriteOncePod and another pod uses it"
            ));
        }
        if claim.pre_provisioned && claim.node.is_none() {
            match super::pv::affinity_node(state, claim) {
                Ok(Some(n)) => {
                    if pin.is_some_and(|p| p != n) {
                        return Gate::Blocked(format!(
                            "the pod's claims are bound to volumes on different nodes ({} and {n})",
                            pin.unwrap_or_default()
                        ));
                    }
                    pin = Some(n);
                }
                Ok(None) => {}
                Err(why) => return Gate::Blocked(format!("persistentvolumeclaim \"{c}\": {why}")),
            }
            continue;
        }
        let Some(node) = claim.node.as_deref() else {
            continue;
        };
        if pin.is_some_and(|n| n != node) {
            return Gate::Blocked(format!(
                "the pod's claims are bound to volumes on different nodes ({} and {node})",
                pin.unwrap_or_default()
            ));
        }
        match state.nodes.get(node) {
            None => {
                return Gate::Blocked(format!(
                    "persistentvolumeclaim \"{c}\" is bound to a volume on node {node}, which is gone"
                ))
            }
            Some(n) if !n.ready => {
                return Gate::Blocked(format!(
                    "persistentvolumeclaim \"{c}\" is bound to a volume on node {node}, which is not ready; the pod waits for that node"
                ))
            }
            Some(n) if n.drained => {
                return Gate::Blocked(format!(
                    "persistentvolumeclaim \"{c}\" is bound to a volume on node {node}, which is cordoned; the pod waits for that node"
                ))
            }
            Some(_) => pin = Some(node),
        }
    }
    match pin {
        Some(n) => Gate::Pin(n),
        None => Gate::Free,
    }
}

/// `ReadWriteOncePod` claims bound pods use; empty (and nothing scanned) when no claim is
/// `ReadWriteOncePod`.
pub(super) fn one_pod_users(state: &ClusterState) -> BTreeSet<String> {
    if !state.claims.values().any(ClaimRecord::one_pod) {
        return BTreeSet::new();
    }
    claims_in_use(state)
        .into_iter()
        .filter(|k| state.claims.get(k).is_some_and(ClaimRecord::one_pod))
        .collect()
}

/// Whether the pod may bind to `node` as far as its claims go: each is unbound or bound
/// there (a claim bound earlier in the same pass, by another pod, may disagree).
pub(super) fn fits(
    claims: &std::collections::BTreeMap<String, ClaimRecord>,
    p: &PodRecord,
    node: &str,
) -> bool {
    claim_names(p).all(|c| {
        claims
            .get(&format!("{}/{c}", p.namespace))
            .is_none_or(|r| r.node.as_deref().is_none_or(|n| n == node))
    })
}

/// Binds the pod's unbound claims to new volumes on `node` (WaitForFirstConsumer).
pub(super) fn bind(
    claims: &mut std::collections::BTreeMap<String, ClaimRecord>,
    p: &PodRecord,
    node: &str,
) {
    for c in claim_names(p) {
        let key = format!("{}/{c}", p.namespace);
        if let Some(r) = claims.get_mut(&key) {
            if r.node.is_none() {
                r.node = Some(node.to_owned());
                if r.volume.is_none() {
                    let uid = ids::uid(&[key.as_bytes(), &r.created_at.to_be_bytes()]);
                    r.volume = Some(format!("pvc-{uid}"));
                }
            }
        }
    }
}
