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
use std::collections::BTreeMap;

pub(crate) fn reconcile(state: &mut ClusterState, index: &mut BTreeMap<Owner, Vec<String>>) {
    let gone: Vec<String> = state
        .replica_sets
        .iter()
        .filter(|(k, r)| r.standalone && !state.desired.replica_sets.contains_key(*k))
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        state.replica_sets.remove(&k);
        for p in index.remove(&Owner::ReplicaSet(k)).unwrap_or_default() {
            state.pods.remove(&p);
        }
    }
    let sets = std::mem::take(&mut state.desired.replica_sets);
    for (key, rs) in &sets {
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
                    key.clone(),
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
        sync_replica_set(state, key, index);
    }
    state.desired.replica_sets = sets;
}
