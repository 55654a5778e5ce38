//! The controllers that run inside `ClusterState::apply`, level-triggered: each looks at the
//! whole desired and current state and moves the current state one step toward the desired
//! one. They run in a fixed order after every entry:
//!
//! 1. evictions (node down, removed, untolerated NoExecute taint; a drained node's pods
//!    paced by their Deployments' `maxUnavailable` and PodDisruptionBudgets, [`drain`]) and
//!    cleanup of finished controller pods;
//! 2. bare pods (create, replace on spec change, prune);
//! 3. standalone ReplicaSets from Git ([`replicaset`]), then Deployments -> ReplicaSets ->
//!    pods ([`deployment`]);
//! 4. DaemonSets ([`daemonset`]), then nodes' static pods ([`static_pods`]: bound at once);
//! 5. claims from Git ([`volumes`]), StatefulSets ([`statefulset`]), CronJobs
//!    ([`cronjob`]: Jobs per scheduled time), Jobs ([`job`], Git's and CronJobs'), then
//!    unbound claims to pre-provisioned PersistentVolumes ([`pv`]);
//! 6. services (ClusterIPs and NodePorts, [`services`]), the scheduler for every Pending
//!    pod (claims pin pods to their volume's node and bind on first placement), then
//!    endpoints.
//!
//! Finished Job pods stay bound with their phase (the Job's record); other controllers'
//! finished pods are removed and replaced.
//!
//! Pruning is the same rule everywhere: a pod whose owner is absent from the adopted commit
//! is deleted, so deleting a whole file removes everything it declared. Static pods are not
//! the commit's: they follow their node's `StaticPods` entries.

pub mod common;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
mod drain;
mod endpoints;
pub mod job;
mod pods;
mod pv;
pub mod replicaset;
mod schedule;
pub mod services;
pub mod statefulset;
pub mod static_pods;
mod status;
pub mod volumes;

pub use common::restart_policy;
pub(crate) use common::{deletion_order, new_pod, pods_by_owner};
pub use drain::{disruption_status, DisruptionStatus};
pub use pv::{volume_status, VolumeStatus};
pub use status::record_status;

use crate::state::ClusterState;
use crate::types::Effects;
use std::collections::BTreeSet;

/// Runs every controller once, in order.
pub fn reconcile(state: &mut ClusterState, fx: &mut Effects) {
    pods::evict(state);
    pods::bare_pods(state);
    // Deployments run to a fixed point (bounded): scaling an old ReplicaSet down frees
    // surge budget for the new one in the same entry, as a Kubernetes resync would.
    // Pods by owner, built once: the Deployment passes keep their ReplicaSets' entries
    // current, and they never touch DaemonSet pods.
    let mut index = pods_by_owner(state);
    if !state.desired.replica_sets.is_empty() || state.replica_sets.values().any(|r| r.standalone) {
        replicaset::reconcile(state, &mut index);
    }
    let mut recreating = BTreeSet::new();
    for _ in 0..4 {
        if !deployment::reconcile(state, fx, &mut recreating, &mut index) {
            break;
        }
    }
    daemonset::reconcile(state, &mut index);
    static_pods::reconcile(state, &index, fx);
    if !state.claims.is_empty() || !state.desired.persistent_volume_claims.is_empty() {
        volumes::sync_git_claims(state);
    }
    statefulset::reconcile(state, &mut index);
    if !state.desired.cron_jobs.is_empty() || !state.cron_jobs.is_empty() {
        cronjob::reconcile(state);
    }
    job::reconcile(state, &mut index);
    if !state.desired.persistent_volumes.is_empty() || !state.released_volumes.is_empty() {
        pv::bind_pre_provisioned(state);
    }
    services::reconcile(state, fx);
    schedule::schedule_pending(state, fx);
    endpoints::endpoints(state, fx);
}
