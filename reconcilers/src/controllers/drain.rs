//! The paced drain: the pods of a drained node leave one budget at a time, as
//! `kubectl drain` evicts through the Eviction API.
//!
//! A pod on a drained node (not a DaemonSet's or a static pod, not a finished Job pod) is
//! evicted only while no budget covering it would break:
//!
//! - its Deployment: after the eviction, at most `max(maxUnavailable, 1)` of its `replicas`
//!   are unavailable (ready for `minReadySeconds`). `maxUnavailable` resolves as the rollout
//!   resolves it (default 25%, rounded down); a rollout with `maxUnavailable: 0` relies on
//!   surge, which an eviction cannot use, so a drain then takes one pod at a time. A pod
//!   that is not available counts for nothing there and may always go;
//! - every PodDisruptionBudget of its namespace whose selector matches its labels (as
//!   Kubernetes' disruption controller counts it): healthy pods (Running and Ready) must
//!   stay at least `minAvailable`, or the expected count (the replicas of the pods'
//!   controllers; 1 for a pod without one) less `maxUnavailable`; percentages of
//!   `minAvailable` round up, of `maxUnavailable` up. A pod that is not healthy leaves only
//!   while the budget is met (`IfHealthyBudget`), or always (`AlwaysAllow`).
//!
//! Candidates are taken in key order and each eviction is counted before the next is
//! weighed, so one entry evicts as many as the budgets allow; replacements elsewhere become
//! healthy through later `PodStatus` entries, which let the next ones go. A pod that must
//! wait is recorded in its node's [`NodeRecord::drain_waits`] with the budget that holds
//! it, for `kommit node drain` and `kommit get nodes`.

use super::common::{available, resolve};
use super::deployment::surge_and_unavailable;
use crate::state::ClusterState;
use crate::types::{NodeRecord, Owner, PodPhase, PodRecord};
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::policy::{PodDisruptionBudget, UnhealthyPodEvictionPolicy};
use std::collections::{BTreeMap, BTreeSet};

/// One budget as the drain weighs it.
#[derive(Debug)]
struct Budget {
    /// `PodDisruptionBudget ns/name` or `Deployment ns/name`, for people.
    name: String,
    /// Pods that must stay healthy.
    desired: u32,
    /// Pods healthy now (less the ones this pass evicted).
    healthy: u32,
    /// `AlwaysAllow`: unhealthy pods leave whatever the count.
    always_allow_unhealthy: bool,
    /// How a pod counts as healthy for this budget.
    rule: Health,
    /// The pods the budget expects (its pods' controllers' replicas; 1 for a pod without
    /// one); for a Deployment's own budget, its replicas.
    expected: u32,
}

/// A PodDisruptionBudget's status, as Kubernetes' disruption controller reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisruptionStatus {
    /// Its pods that are Running and Ready.
    pub current_healthy: u32,
    /// How many must stay so.
    pub desired_healthy: u32,
    /// How many pods it expects: its pods' controllers' replicas, 1 for a pod without one.
    pub expected_pods: u32,
    /// How many may be evicted now: `current_healthy - desired_healthy`, at least 0.
    pub disruptions_allowed: u32,
}

/// The status of the PodDisruptionBudget `key` (`namespace/name`) from Git; None when the
/// commit has none.
pub fn disruption_status(state: &ClusterState, key: &str) -> Option<DisruptionStatus> {
    let pdb = state.desired.pod_disruption_budgets.get(key)?;
    let b = pdb_budget(state, key, pdb);
    Some(DisruptionStatus {
        current_healthy: b.healthy,
        desired_healthy: b.desired,
        expected_pods: b.expected,
        disruptions_allowed: b.healthy.saturating_sub(b.desired),
    })
}

#[derive(Debug, Clone, Copy)]
enum Health {
    /// Running and Ready (a PodDisruptionBudget).
    Ready,
    /// Available for `minReadySeconds` (a Deployment).
    Available(u32),
}

impl Health {
    fn of(self, p: &PodRecord, now: u64) -> bool {
        match self {
            Health::Ready => p.phase == PodPhase::Running && p.ready,
            Health::Available(min_ready) => available(p, min_ready, now),
        }
    }
}

/// The Deployment (`namespace/name`) a pod belongs to, through its ReplicaSet.
fn deployment_of<'a>(state: &'a ClusterState, p: &PodRecord) -> Option<&'a str> {
    let Owner::ReplicaSet(rs) = &p.owner else {
        return None;
    };
    let r = state.replica_sets.get(rs)?;
    (!r.standalone && state.desired.deployments.contains_key(&r.deployment))
        .then_some(r.deployment.as_str())
}

/// The budgets covering `p`, as keys into the budget map.
fn budget_keys(state: &ClusterState, p: &PodRecord) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(d) = deployment_of(state, p) {
        keys.push(format!("Deployment {d}"));
    }
    for (k, b) in &state.desired.pod_disruption_budgets {
        if b.metadata.namespace.as_ref().map(|n| n.as_str()) == Some(p.namespace.as_str())
            && b.spec
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&p.labels))
        {
            keys.push(format!("PodDisruptionBudget {k}"));
        }
    }
    keys
}

fn deployment_budget(state: &ClusterState, key: &str) -> Option<Budget> {
    let d = state.desired.deployments.get(key)?;
    let replicas = d.spec.replicas.unwrap_or(1);
    let (_, unavailable) = surge_and_unavailable(d, replicas);
    let rule = Health::Available(d.spec.min_ready_seconds.unwrap_or(0));
    // Its pods are those of its ReplicaSets (what `deployment_of` names).
    let healthy = super::deployment::replica_sets_of(state, key)
        .into_iter()
        .flat_map(|rs| state.pods.owned(&Owner::ReplicaSet(rs)))
        .filter(|k| rule.of(&state.pods[*k], state.now))
        .count();
    Some(Budget {
        name: format!("Deployment {key}"),
        desired: replicas.saturating_sub(unavailable.max(1)),
        healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
        // An unavailable pod adds nothing to the rollout's availability: it may go.
        always_allow_unhealthy: true,
        rule,
        expected: replicas,
    })
}

/// The replicas a pod's controller wants, keyed by that controller (None: the pod counts 1).
fn controller_scale(state: &ClusterState, p: &PodRecord) -> Option<(String, u32)> {
    if let Some(d) = deployment_of(state, p) {
        let r = state.desired.deployments.get(d)?.spec.replicas.unwrap_or(1);
        return Some((format!("Deployment/{d}"), r));
    }
    match &p.owner {
        Owner::ReplicaSet(k) => {
            let r = state
                .desired
                .replica_sets
                .get(k)?
                .spec
                .replicas
                .unwrap_or(1);
            Some((format!("ReplicaSet/{k}"), r))
        }
        Owner::StatefulSet(k) => {
            let r = state
                .desired
                .stateful_sets
                .get(k)?
                .spec
                .replicas
                .unwrap_or(1);
            Some((format!("StatefulSet/{k}"), r))
        }
        _ => None,
    }
}

fn pdb_budget(state: &ClusterState, key: &str, pdb: &PodDisruptionBudget) -> Budget {
    let ns = key.split_once('/').map_or("", |(ns, _)| ns);
    let matched: Vec<&PodRecord> = match &pdb.spec.selector {
        None => Vec::new(),
        Some(sel) => state
            .pods
            .values()
            .filter(|p| p.namespace == ns && sel.matches(&p.labels))
            // A finished Job pod is no longer part of what the budget protects.
            .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
            .collect(),
    };
    let rule = Health::Ready;
    let healthy = matched.iter().filter(|p| rule.of(p, state.now)).count();
    let healthy = u32::try_from(healthy).unwrap_or(u32::MAX);
    let expected = {
        let mut scales: BTreeMap<String, u32> = BTreeMap::new();
        let mut loose = 0u32;
        for p in &matched {
            match controller_scale(state, p) {
                Some((c, r)) => {
                    scales.insert(c, r);
                }
                None => loose = loose.saturating_add(1),
            }
        }
        scales.values().fold(loose, |a, r| a.saturating_add(*r))
    };
    let desired = match (&pdb.spec.min_available, &pdb.spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => u32::try_from((*n).max(0)).unwrap_or(u32::MAX),
        (Some(min @ IntOrString::String(_)), _) => resolve(min, expected, true),
        (None, Some(max)) => expected.saturating_sub(resolve(max, expected, true)),
        (None, None) => 0,
    };
    Budget {
        name: format!("PodDisruptionBudget {key}"),
        desired,
        healthy,
        always_allow_unhealthy: pdb.spec.unhealthy_pod_eviction_policy
            == Some(UnhealthyPodEvictionPolicy::AlwaysAllow),
        rule,
        expected,
    }
}

/// Why evicting a pod would break `b`, if it would.
fn breaks(b: &Budget, healthy_pod: bool) -> Option<String> {
    let ok = if healthy_pod {
        b.healthy > b.desired
    } else {
        b.always_allow_unhealthy || b.healthy >= b.desired
    };
    (!ok).then(|| {
        format!(
            "{} needs {} healthy pod{} and has {}",
            b.name,
            b.desired,
            if b.desired == 1 { "" } else { "s" },
            b.healthy
        )
    })
}

/// Decides which of `candidates` (pods of drained nodes, in key order) leave now; records
/// the others' waits in their nodes. Returns the pods to remove.
pub(super) fn pace(state: &mut ClusterState, candidates: Vec<String>) -> Vec<String> {
    let mut budgets: BTreeMap<String, Option<Budget>> = BTreeMap::new();
    let mut evict = Vec::new();
    let mut waits: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let now = state.now;
    for key in candidates {
        let Some(p) = state.pods.get(&key) else {
            continue;
        };
        let keys = budget_keys(state, p);
        for k in &keys {
            if !budgets.contains_key(k) {
                let b = match k.split_once(' ') {
                    Some(("Deployment", d)) => deployment_budget(state, d),
                    Some((_, name)) => state
                        .desired
                        .pod_disruption_budgets
                        .get(name)
                        .map(|pdb| pdb_budget(state, name, pdb)),
                    None => None,
                };
                budgets.insert(k.clone(), b);
            }
        }
        let held = keys.iter().find_map(|k| {
            let b = budgets.get(k)?.as_ref()?;
            breaks(b, b.rule.of(p, now))
        });
        match held {
            Some(why) => {
                let node = p.node.clone().unwrap_or_default();
                waits.entry(node).or_default().insert(key, why);
            }
            None => {
                for k in &keys {
                    if let Some(Some(b)) = budgets.get_mut(k) {
                        if b.rule.of(p, now) {
                            b.healthy = b.healthy.saturating_sub(1);
                        }
                    }
                }
                evict.push(key);
            }
        }
    }
    record_waits(&mut state.nodes, waits);
    evict
}

/// Sets each node's drain waits (empty for nodes with none).
fn record_waits(
    nodes: &mut BTreeMap<String, NodeRecord>,
    mut waits: BTreeMap<String, BTreeMap<String, String>>,
) {
    let touched: BTreeSet<String> = nodes
        .iter()
        .filter(|(name, n)| !n.drain_waits.is_empty() || waits.contains_key(*name))
        .map(|(name, _)| name.clone())
        .collect();
    for name in touched {
        if let Some(n) = nodes.get_mut(&name) {
            n.drain_waits = waits.remove(&name).unwrap_or_default();
        }
    }
}
