//! Standalone ReplicaSets from Git, as Kubernetes' `replicaset` controller runs them: exactly
//! `replicas` pods matching the template, the extra ones removed in the ReplicaSet
//! controller's deletion order. A changed template applies to pods made afterwards only
//! (Kubernetes does not replace a ReplicaSet's pods). The record shares the Deployment's
//! ReplicaSets' map and pod sync, marked `standalone`; a name a Deployment's ReplicaSet
//! already holds stays that one's.

use super::deployment::sync_replica_set;
use crate::ids;
use crate::state::ClusterState;
use crate::types::{Owner, ReplicaSetRecord};

/// Syncs the standalone ReplicaSets `keys`; a full pass also removes those gone from Git.
pub(crate) fn reconcile(state: &mut ClusterState, keys: &[String], full: bool) {
    if full {
        let gone: Vec<String> = state
            .replica_sets
            .iter()
            .filter(|(k, r)| r.standalone && !state.desired.replica_sets.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            state.replica_sets.remove(&k);
            for p in state.pods.owned_keys(&Owner::ReplicaSet(k)) {
                state.pods.remove(&p);
            }
        }
    }
    let sets = std::mem::take(&mut state.desired.replica_sets);
    for key in keys {
        let Some(rs) = sets.get(key) else {
            continue;
        };
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        let hash = ids::template_hash(&rs.spec.template);
        let replicas = rs.spec.replicas.unwrap_or(1);
        match state.replica_sets.get_mut(key) {
            Some(r) if !r.standalone => continue,
            Some(r) => {
                r.replicas = replicas;
                if r.template_hash != hash {
                    r.template_hash = hash;
                    r.template = rs.spec.template.clone();
                }
            }
            None => {
                state.replica_sets.insert(
                    key.to_owned(),
                    ReplicaSetRecord {
                        namespace: ns.to_owned(),
                        name: name.to_owned(),
                        deployment: String::new(),
                        template_hash: hash,
                        template: rs.spec.template.clone(),
                        replicas,
                        revision: 1,
                        next_serial: 0,
                        standalone: true,
                    },
                );
            }
        }
        sync_replica_set(state, key);
    }
    state.desired.replica_sets = sets;
}
