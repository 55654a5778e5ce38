//! What the agent takes from the replicated state: this node's pods as plans, and whether
//! the node may acknowledge the commit in force. Pure: the state and the node's own facts in,
//! a [`View`] out.

use crate::translate::{translate, ClaimVolume, NodeContext, PodPlan, SecretKeys, VolumePlan};
use kommit_reconcilers::{ClusterState, Owner, PodPhase, PodRecord, RolloutPhase};
use kommit_runtime::traits::HostPathKind;
use std::collections::{BTreeMap, BTreeSet};

/// This node's share of the replicated state.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The node's name.
    pub node: String,
    /// Its pods, translated.
    pub plans: Vec<PodPlan>,
    /// The commit in force.
    pub commit: Option<String>,
    /// The commit this node acknowledged last.
    pub acked: Option<String>,
    /// Whether every pod bound here has converged as the state records it (running and
    /// ready, or finished) and no rollout that owns a pod here is still progressing.
    pub converged: bool,
    /// Whether the state knows this node at all.
    pub registered: bool,
    /// The cluster's pod CIDR, once a commit is adopted.
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    /// Once a commit is adopted: the node-local persistent volumes this node keeps (those
    /// of claims bound here, and released ones kept by `Retain`); any other one on disk
    /// goes (reclaim policy Delete).
    pub local_volumes: Option<BTreeSet<String>>,
}

/// The claims bound to volumes on `node`, as its pods mount them, and the local-path
/// volumes it keeps.
fn claims_on(
    state: &ClusterState,
    node: &str,
) -> (BTreeMap<String, ClaimVolume>, BTreeSet<String>) {
    let mut claims = BTreeMap::new();
    let mut keep = BTreeSet::new();
    for (k, c) in &state.claims {
        if c.node.as_deref() != Some(node) {
            continue;
        }
        let Some(volume) = &c.volume else { continue };
        let plan = if c.pre_provisioned {
            let Some(pv) = state.desired.persistent_volumes.get(volume) else {
                continue;
            };
            let Some(path) = pv.spec.path() else { continue };
            let kind = match &pv.spec.host_path {
                Some(h) => crate::translate::host_path_kind(h.kind),
                // A local volume is a directory that must exist, as Kubernetes requires.
                None => HostPathKind::Directory,
            };
            VolumePlan::HostPath {
                path: path.to_string(),
                kind,
            }
        } else {
            keep.insert(volume.clone());
            VolumePlan::Local {
                name: volume.clone(),
            }
        };
        claims.insert(
            k.clone(),
            ClaimVolume {
                plan,
                read_only: c.read_only(),
            },
        );
    }
    for (name, r) in &state.released_volumes {
        if !r.pre_provisioned && r.node.as_deref() == Some(node) {
            keep.insert(name.clone());
        }
    }
    (claims, keep)
}

/// The template annotations of a pod, from its owner in the desired state (a static pod's
/// from its node's manifest).
pub fn annotations(state: &ClusterState, p: &PodRecord) -> BTreeMap<String, String> {
    match &p.owner {
        Owner::Pod(k) => state
            .desired
            .pods
            .get(k)
            .map(|d| d.metadata.annotations.clone())
            .unwrap_or_default(),
        Owner::ReplicaSet(k) => state
            .replica_sets
            .get(k)
            .map(|rs| rs.template.metadata.annotations.clone())
            .unwrap_or_default(),
        Owner::DaemonSet(k) => state
            .desired
            .daemon_sets
            .get(k)
            .map(|d| d.spec.template.metadata.annotations.clone())
            .unwrap_or_default(),
        Owner::StatefulSet(k) => state
            .stateful_sets
            .get(k)
            .map(|r| match &r.current_template {
                Some(t) if p.template_hash == r.current_revision => t.metadata.annotations.clone(),
                _ => r.template.metadata.annotations.clone(),
            })
            .unwrap_or_default(),
        Owner::Job(k) => {
            let mut a = state
                .desired
                .jobs
                .get(k)
                .map(|j| j.spec.template.metadata.annotations.clone())
                .unwrap_or_default();
            // Indexed Jobs: the index as Kubernetes annotates it (the downward API reads it).
            if let Some(i) = p
                .labels
                .get(kommit_reconcilers::controllers::job::COMPLETION_INDEX_LABEL)
            {
                a.insert(
                    kommit_reconcilers::controllers::job::COMPLETION_INDEX_LABEL.to_string(),
                    i.clone(),
                );
            }
            a
        }
        Owner::Static(node) => p
            .name
            .strip_suffix(node.as_str())
            .and_then(|n| n.strip_suffix('-'))
            .and_then(|n| {
                state
                    .static_pods
                    .get(node)?
                    .get(&format!("{}/{n}", p.namespace))
            })
            .map(|d| d.metadata.annotations.clone())
            .unwrap_or_default(),
    }
}

/// The Deployment (`namespace/name`) owning a pod, if any.
fn deployment_of(state: &ClusterState, p: &PodRecord) -> Option<String> {
    match &p.owner {
        Owner::ReplicaSet(k) => state
            .replica_sets
            .get(k)
            .filter(|rs| !rs.standalone)
            .map(|rs| rs.deployment.clone()),
        _ => None,
    }
}

/// This node's view of `state`. `host_resolv_conf` is the node's `/etc/resolv.conf`, as
/// text (see [`NodeContext::host_resolv_conf`]); `secrets` opens SOPS-encrypted Secrets.
pub fn view(
    state: &ClusterState,
    node: &str,
    host_resolv_conf: &str,
    secrets: &SecretKeys,
) -> View {
    let Some(rec) = state.nodes.get(node) else {
        return View {
            node: node.to_string(),
            commit: state.commit.clone(),
            ..View::default()
        };
    };
    let host_ip = rec
        .info
        .address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']'))
        .unwrap_or(&rec.info.address)
        .to_string();
    let (claims, keep) = claims_on(state, node);
    let ctx = NodeContext {
        name: node.to_string(),
        host_ip,
        pod_cidr: rec.pod_cidr,
        host_resolv_conf: host_resolv_conf.to_string(),
        secrets: secrets.clone(),
        claims,
    };
    let mut plans = Vec::new();
    let mut converged = true;
    for p in state.pods_on_node(node) {
        plans.push(translate(p, &annotations(state, p), &state.desired, &ctx));
        let done = matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed);
        if !(done || (p.phase == PodPhase::Running && p.ready)) {
            converged = false;
        }
        if let Some(d) = deployment_of(state, p) {
            if state
                .deployments
                .get(&d)
                .is_some_and(|s| s.phase == RolloutPhase::Progressing)
            {
                converged = false;
            }
        }
    }
    View {
        node: node.to_string(),
        plans,
        commit: state.commit.clone(),
        acked: rec.acked.clone(),
        converged,
        registered: true,
        cluster_cidr: state
            .commit
            .is_some()
            .then_some(state.desired.config.pod_cidr),
        local_volumes: state.commit.is_some().then_some(keep),
    }
}
