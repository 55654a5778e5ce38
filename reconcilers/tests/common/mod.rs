//! Helpers shared by the reconcilers' integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use kommit_reconcilers::{ClusterState, Entry, NodeInfo, PodPhase, PodStatusChange, Taint};
use kommit_schemas::{DesiredState, Limits, SourceTree};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;

pub const GI: u64 = 1 << 30;

/// Validates manifests (path, yaml) into a DesiredState, panicking with the diagnostics.
pub fn desired(files: &[(&str, &str)]) -> DesiredState {
    let mut tree = SourceTree::default();
    for (p, y) in files {
        tree.add(*p, y.as_bytes().to_vec());
    }
    match kommit_schemas::validate(&tree, &Limits::default()) {
        Ok(d) => d,
        Err(diags) => panic!("invalid test manifests: {diags:?}"),
    }
}

/// [`desired`] of owned (path, yaml) pairs.
pub fn desired_of(files: &[(String, String)]) -> DesiredState {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    desired(&refs)
}

/// The seeds of a property test: `KOMMIT_SEED=<n>` alone, or `KOMMIT_PROP_CASES=<n>` (else
/// `default`) seeds spread from `salt`.
pub fn seeds(salt: u64, default: u64) -> Vec<u64> {
    match std::env::var("KOMMIT_SEED") {
        Ok(s) => vec![s.parse().expect("KOMMIT_SEED must be a number")],
        Err(_) => {
            let n: u64 = std::env::var("KOMMIT_PROP_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default);
            (0..n)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt)
                .collect()
        }
    }
}

pub fn adopt_entry(commit: &str, parent: Option<&str>, d: &DesiredState) -> Entry {
    Entry::Adopt {
        commit: commit.into(),
        parent: parent.map(Into::into),
        desired: d.clone(),
        digest: d.digest(),
        by: None,
    }
}

pub fn node(name: &str, cpu_millis: u64, memory_bytes: u64, pods: u32) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        address: format!("192.0.2.{}", name.len()),
        cpu_millis,
        memory_bytes,
        pods,
        labels: BTreeMap::new(),
        taints: Vec::<Taint>::new(),
    }
}

pub fn labelled(mut n: NodeInfo, labels: &[(&str, &str)]) -> NodeInfo {
    for (k, v) in labels {
        n.labels.insert((*k).into(), (*v).into());
    }
    n
}

/// PodStatus entries reporting every bound pod (optionally only those matching `filter`)
/// as Running and ready, one entry per node.
pub fn ready_entries(state: &ClusterState, mut filter: impl FnMut(&str) -> bool) -> Vec<Entry> {
    let mut by_node: BTreeMap<String, Vec<PodStatusChange>> = BTreeMap::new();
    for (k, p) in &state.pods {
        if let Some(n) = &p.node {
            if !p.ready && filter(k) {
                by_node.entry(n.clone()).or_default().push(PodStatusChange {
                    pod: k.clone(),
                    uid: p.uid.clone(),
                    phase: PodPhase::Running,
                    ready: true,
                    containers: vec![],
                    pod_ip: p.pod_ip,
                    ..Default::default()
                });
            }
        }
    }
    by_node
        .into_iter()
        .map(|(node, changes)| Entry::PodStatus { node, changes })
        .collect()
}

/// Reports every bound pod ready, at time `at`.
pub fn make_ready(state: &mut ClusterState, at: u64) {
    for e in ready_entries(state, |_| true) {
        state.apply(&e, at);
    }
}

/// Pods whose key starts with `prefix`.
pub fn pods_with_prefix<'a>(
    state: &'a ClusterState,
    prefix: &str,
) -> Vec<&'a kommit_reconcilers::PodRecord> {
    state
        .pods
        .values()
        .filter(|p| p.key().starts_with(prefix))
        .collect()
}

pub fn deployment_yaml(name: &str, replicas: u32, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
{extra_spec}  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: main
          image: {image}
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
"#
    )
}

pub const KOMMIT_YAML: &str =
    "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata:\n  name: test\n";

/// A random node `node-<i>`: cpu, memory and pod capacity, a zone label (`a` or `b`), and
/// one in eight tainted `gpu:NoSchedule`.
pub fn random_node(rng: &mut rand_chacha::ChaCha8Rng, i: usize) -> NodeInfo {
    let mut n = node(
        &format!("node-{i}"),
        rng.gen_range(1..=8) * 500,
        rng.gen_range(1..=8) * GI / 2,
        rng.gen_range(3..=20),
    );
    n.labels.insert(
        "zone".into(),
        if rng.gen_bool(0.5) { "a" } else { "b" }.into(),
    );
    if rng.gen_ratio(1, 8) {
        n.taints.push(Taint {
            key: "gpu".into(),
            value: None,
            effect: kommit_schemas::model::pod::TaintEffect::NoSchedule,
        });
    }
    n
}

/// A `PodStatus` entry from a random node of `state` reporting, for each of its pods, what
/// `outcome` rolls (phase, ready), or nothing for that pod; a Tick when there is no node.
pub fn random_reports(
    state: &ClusterState,
    rng: &mut rand_chacha::ChaCha8Rng,
    mut outcome: impl FnMut(
        &mut rand_chacha::ChaCha8Rng,
        &kommit_reconcilers::PodRecord,
    ) -> Option<(PodPhase, bool)>,
) -> Entry {
    let nodes: Vec<&String> = state.nodes.keys().collect();
    let Some(node) = nodes.choose(rng) else {
        return Entry::Tick;
    };
    let mut changes = Vec::new();
    for p in state.pods_on_node(node) {
        let Some((phase, ready)) = outcome(rng, p) else {
            continue;
        };
        changes.push(PodStatusChange {
            pod: p.key(),
            uid: p.uid.clone(),
            phase,
            ready,
            pod_ip: p.pod_ip,
            ..Default::default()
        });
    }
    Entry::PodStatus {
        node: (*node).clone(),
        changes,
    }
}
