//! Helpers every workload controller shares: making a pod record, removing a deleted
//! controller's pods, Kubernetes' deletion order, restart policies, count-or-percentage bounds and readiness
//! for `minReadySeconds`.

use crate::ids;
use crate::state::ClusterState;
use crate::types::{Millis, Owner, PodPhase, PodRecord};
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::pod::{PodSpec, RestartPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// The restart policy a controller pod runs with (Always for Deployments and DaemonSets).
pub fn restart_policy(spec: &PodSpec) -> RestartPolicy {
    spec.restart_policy.unwrap_or(RestartPolicy::Always)
}

/// Removes the pods of every owner `gone` names (a controller deleted from the commit).
pub(crate) fn remove_pods_of(
    state: &mut ClusterState,
    gone: impl Fn(&ClusterState, &Owner) -> bool,
) {
    let keys: Vec<String> = state
        .pods
        .owners()
        .filter(|(o, _)| gone(state, o))
        .flat_map(|(_, keys)| keys.iter().cloned())
        .collect();
    for k in keys {
        state.pods.remove(&k);
    }
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

/// `s` cut to at most `max` bytes at a char boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Resolves an IntOrString bound ("25%" or 2) against `total`, rounding percentages up or
/// down as Kubernetes does. Malformed values count as 0.
pub fn resolve(v: &IntOrString, total: u32, round_up: bool) -> u32 {
    match v {
        IntOrString::Int(i) => u32::try_from((*i).max(0)).unwrap_or(u32::MAX),
        IntOrString::String(s) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<u64>().ok()) else {
                return 0;
            };
            let num = pct.saturating_mul(u64::from(total));
            let r = if round_up {
                num.div_ceil(100)
            } else {
                num / 100
            };
            u32::try_from(r).unwrap_or(u32::MAX)
        }
    }
}

/// Whether a pod counts as available: ready for at least minReadySeconds.
pub(crate) fn available(p: &PodRecord, min_ready_secs: u32, now: Millis) -> bool {
    p.ready
        && p.ready_since
            .is_some_and(|t| t.saturating_add(u64::from(min_ready_secs) * 1000) <= now)
}
