//! The controllers that run inside `ClusterState::apply`, level-triggered: each looks at the
//! desired and current state of its objects and moves the current state one step toward
//! the desired one. They run in a fixed order after every entry, over every object after an
//! `Adopt` and over the objects the entry changed otherwise ([`crate::tracker`]):
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
pub(crate) use common::{deletion_order, new_pod};
pub use drain::{disruption_status, DisruptionStatus};
pub use pv::{volume_status, VolumeStatus};
pub use status::record_status;

use crate::pods::Pods;
use crate::state::ClusterState;
use crate::tracker::Pass;
use crate::types::{Effects, Owner};
use std::collections::BTreeSet;

/// Runs every controller once, in order: over the whole state in a full pass, else over
/// what changed (see [`crate::tracker`]); both give the same state and effects.
pub(crate) fn reconcile(state: &mut ClusterState, fx: &mut Effects, pass: &mut Pass) {
    let claims_before = (!pass.full && !state.claims.is_empty()).then(|| state.claims.clone());
    pods::evict(state, pass);
    pods::bare_pods(state, pass);
    let standalone = pass.replica_sets(state);
    if (pass.full
        && (!state.desired.replica_sets.is_empty()
            || state.replica_sets.values().any(|r| r.standalone)))
        || !standalone.is_empty()
    {
        replicaset::reconcile(state, &standalone, pass.full);
    }
    // Deployments run to a fixed point (bounded): scaling an old ReplicaSet down frees
    // surge budget for the new one in the same entry, as a Kubernetes resync would. A
    // Deployment syncs only its own ReplicaSets and pods, so the set to sync is known
    // before the first round.
    let deployments = pass.deployments(state);
    let mut recreating = BTreeSet::new();
    for _ in 0..4 {
        if !deployment::reconcile(state, fx, &mut recreating, &deployments, pass) {
            break;
        }
    }
    let daemon_sets = pass.daemon_sets(state);
    daemonset::reconcile(state, &daemon_sets, pass);
    let static_dirty = pass.full
        || pass.static_entry
        || pass.node_facts
        || Pods::removed_any(state.pods.log(), |_, o| {
            state.tracker.static_waiting || matches!(o, Owner::Static(_))
        });
    if static_dirty {
        state.tracker.static_waiting = static_pods::reconcile(state, fx);
    }
    if !state.claims.is_empty() || !state.desired.persistent_volume_claims.is_empty() {
        volumes::sync_git_claims(state);
    }
    let stateful_sets = pass.stateful_sets(state);
    statefulset::reconcile(state, &stateful_sets, pass.full);
    let mut jobs = pass.jobs(state);
    if !state.desired.cron_jobs.is_empty() || !state.cron_jobs.is_empty() {
        let spawned: Vec<String> = state.cron_spawned.keys().cloned().collect();
        cronjob::reconcile(state);
        if !state.cron_spawned.keys().eq(spawned.iter()) {
            // A CronJob made or dropped a Job: every Job, and the pods of dropped ones.
            jobs = None;
        }
    }
    job::reconcile(state, jobs.as_ref(), pass);
    if !state.desired.persistent_volumes.is_empty() || !state.released_volumes.is_empty() {
        pv::bind_pre_provisioned(state);
    }
    if pass.full {
        services::reconcile(state, fx);
    }
    let claims_changed = claims_before.is_some_and(|c| c != state.claims);
    if pass.full || pass.sched || pass.node_facts || claims_changed || state.pods.log().sched {
        schedule::schedule_pending(state, fx);
    }
    if pass.full {
        state.tracker.index_services(&state.desired);
        endpoints::endpoints(state, fx);
    } else {
        endpoints::refresh(state, fx);
    }
}
