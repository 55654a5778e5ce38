//! Pre-provisioned PersistentVolumes (`local` or `hostPath`, from Git), bound the way
//! Kubernetes' PV controller matches a claim (`findBestMatchForClaim`): among the volumes no
//! other claim holds and not Released, those reserved for it (`claimRef`) or for nobody,
//! named by its `volumeName` if it names one, of its class (a volume without a class fits
//! only a claim naming it, or naming the class `""`), offering every access mode it asks
//! for, at least as large as its request and matching its selector: one reserved for it,
//! else the smallest, then the first by name. Binding is immediate (when the claim appears); its pods then run only on
//! a node the volume's `nodeAffinity` admits: the first such node by name that is ready and
//! not cordoned, recorded as the claim's node on first placement like a local-path volume's.

use crate::records::ClaimRecord;
use crate::scheduler::term_matches;
use crate::state::ClusterState;
use kommit_schemas::model::storage::PersistentVolume;
use std::collections::BTreeSet;

/// Whether `pv` fits `claim` (apart from being free).
fn fits(name: &str, pv: &PersistentVolume, claim: &ClaimRecord) -> bool {
    let s = &pv.spec;
    if let Some(r) = &s.claim_ref {
        let ns = r.namespace.as_deref().unwrap_or("default");
        if ns != claim.namespace || r.name != claim.name {
            return false;
        }
    }
    if claim.spec.volume_name.as_deref().is_some_and(|v| v != name) {
        return false;
    }
    let pv_class = s.storage_class_name.as_deref().unwrap_or("");
    let class_ok = match claim.spec.storage_class_name.as_deref() {
        Some(c) => c == pv_class,
        None => {
            pv_class == crate::records::LOCAL_PATH_CLASS
                || (pv_class.is_empty() && claim.spec.volume_name.is_some())
        }
    };
    if !class_ok {
        return false;
    }
    if !claim
        .spec
        .access_modes
        .iter()
        .all(|m| s.access_modes.contains(m))
    {
        return false;
    }
    let want = claim
        .spec
        .resources
        .requests
        .get("storage")
        .map_or(0, |q| q.milli());
    if capacity(pv) < want {
        return false;
    }
    claim
        .spec
        .selector
        .as_ref()
        .is_none_or(|sel| sel.matches(&pv.metadata.labels))
}

fn capacity(pv: &PersistentVolume) -> u64 {
    pv.spec.capacity.get("storage").map_or(0, |q| q.milli())
}

/// Binds every unbound claim that a free PersistentVolume fits, in claim key order.
pub(super) fn bind_pre_provisioned(state: &mut ClusterState) {
    // Released volumes whose PersistentVolume left Git are forgotten: added back, it is new.
    let gone: Vec<String> = state
        .released_volumes
        .iter()
        .filter(|(name, r)| {
            r.pre_provisioned && !state.desired.persistent_volumes.contains_key(*name)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        state.released_volumes.remove(&name);
    }
    if state.desired.persistent_volumes.is_empty() {
        return;
    }
    let mut taken: BTreeSet<String> = state
        .claims
        .values()
        .filter(|c| c.pre_provisioned)
        .filter_map(|c| c.volume.clone())
        .collect();
    taken.extend(state.released_volumes.keys().cloned());
    let unbound: Vec<String> = state
        .claims
        .iter()
        .filter(|(_, c)| c.volume.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    for key in unbound {
        let Some(claim) = state.claims.get(&key) else {
            continue;
        };
        let best = state
            .desired
            .persistent_volumes
            .iter()
            .filter(|(name, pv)| !taken.contains(*name) && fits(name, pv, claim))
            // One reserved for it first, as Kubernetes binds a pre-bound volume.
            .min_by_key(|(name, pv)| (pv.spec.claim_ref.is_none(), capacity(pv), (*name).clone()))
            .map(|(name, _)| name.clone());
        if let (Some(name), Some(c)) = (best, state.claims.get_mut(&key)) {
            taken.insert(name.clone());
            c.volume = Some(name);
            c.pre_provisioned = true;
        }
    }
}

/// The node a pod using `claim` (bound to a PersistentVolume, not yet used) must run on:
/// the first ready, schedulable node by name its volume's `nodeAffinity` admits; None when
/// the volume has no affinity (any node; the first one used keeps it).
pub(super) fn affinity_node<'a>(
    state: &'a ClusterState,
    claim: &ClaimRecord,
) -> Result<Option<&'a str>, String> {
    let name = claim.volume.as_deref().unwrap_or_default();
    let Some(pv) = state.desired.persistent_volumes.get(name) else {
        return Err(format!(
            "persistentvolume \"{name}\" is no longer in the commit"
        ));
    };
    let Some(aff) = &pv.spec.node_affinity else {
        return Ok(None);
    };
    state
        .nodes
        .iter()
        .find(|(n, rec)| {
            rec.ready
                && !rec.drained
                && aff
                    .required
                    .node_selector_terms
                    .iter()
                    .any(|t| term_matches(t, n, &rec.info.labels))
        })
        .map(|(n, _)| Some(n.as_str()))
        .ok_or_else(|| {
            format!(
                "persistentvolume \"{name}\"'s node affinity admits no ready, schedulable node; the pod waits for one"
            )
        })
}

/// A PersistentVolume's phase and claim, as `kubectl get pv` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeStatus {
    /// `Available`, `Bound`, `Released` (its claim went, `Retain`) or `Failed` (its claim
    /// went, `Delete`, which kommit does not do to a volume it did not make).
    pub phase: &'static str,
    /// The claim, `namespace/name`, bound now or before it was released.
    pub claim: Option<String>,
}

/// The status of the PersistentVolume `name` from Git; None when the commit has none.
pub fn volume_status(state: &ClusterState, name: &str) -> Option<VolumeStatus> {
    state.desired.persistent_volumes.get(name)?;
    if let Some((key, _)) = state
        .claims
        .iter()
        .find(|(_, c)| c.pre_provisioned && c.volume.as_deref() == Some(name))
    {
        return Some(VolumeStatus {
            phase: "Bound",
            claim: Some(key.clone()),
        });
    }
    Some(match state.released_volumes.get(name) {
        Some(r) => VolumeStatus {
            phase: match r.policy {
                kommit_schemas::model::storage::ReclaimPolicy::Retain => "Released",
                kommit_schemas::model::storage::ReclaimPolicy::Delete => "Failed",
            },
            claim: Some(r.claim.clone()),
        },
        None => VolumeStatus {
            phase: "Available",
            claim: None,
        },
    })
}
