//! Standalone ReplicaSets from Git: exactly `replicas` pods, scale down in the ReplicaSet
//! controller's order, a changed template only for new pods, pruned with the manifest, and
//! no interference with a Deployment's own ReplicaSets.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, Entry};

fn rs_yaml(replicas: u32, image: &str) -> String {
    format!("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: frontend\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      tier: frontend\n  template:\n    metadata:\n      labels:\n        tier: frontend\n    spec:\n      containers:\n      - name: nginx\n        image: {image}\n")
}

fn adopt(s: &mut ClusterState, n: u32, files: &[(&str, &str)]) {
    let d = desired(files);
    let parent = (n > 0).then(|| format!("c{}", n - 1));
    let fx = s.apply(
        &adopt_entry(&format!("c{n}"), parent.as_deref(), &d),
        10 + u64::from(n),
    );
    assert!(fx.rejected.is_none());
}

#[test]
fn a_standalone_replica_set_keeps_its_count() {
    let mut s = ClusterState::new();
    s.apply(
        &Entry::NodeUp {
            info: node("n1", 8000, 16 * GI, 50),
        },
        1,
    );
    let dep = deployment_yaml("web", 2, "nginx:1", "");
    let rs3 = rs_yaml(3, "nginx:1");
    adopt(
        &mut s,
        0,
        &[
            ("kommit.yaml", KOMMIT_YAML),
            ("rs.yaml", &rs3),
            ("web.yaml", &dep),
        ],
    );
    let frontend = pods_with_prefix(&s, "default/frontend-");
    assert_eq!(frontend.len(), 3);
    assert!(frontend.iter().all(|p| p.node.is_some()));
    assert!(s.replica_sets["default/frontend"].standalone);
    assert_eq!(
        pods_with_prefix(&s, "default/web-").len(),
        2,
        "the Deployment is untouched"
    );
    // A new template: existing pods stay (Kubernetes does not replace them).
    let before: Vec<String> = frontend.iter().map(|p| p.key()).collect();
    let rs3b = rs_yaml(3, "nginx:2");
    adopt(
        &mut s,
        1,
        &[
            ("kommit.yaml", KOMMIT_YAML),
            ("rs.yaml", &rs3b),
            ("web.yaml", &dep),
        ],
    );
    let after: Vec<String> = pods_with_prefix(&s, "default/frontend-")
        .iter()
        .map(|p| p.key())
        .collect();
    assert_eq!(before, after);
    // Scale down, then delete.
    let rs1 = rs_yaml(1, "nginx:2");
    adopt(
        &mut s,
        2,
        &[
            ("kommit.yaml", KOMMIT_YAML),
            ("rs.yaml", &rs1),
            ("web.yaml", &dep),
        ],
    );
    assert_eq!(pods_with_prefix(&s, "default/frontend-").len(), 1);
    adopt(
        &mut s,
        3,
        &[("kommit.yaml", KOMMIT_YAML), ("web.yaml", &dep)],
    );
    assert!(pods_with_prefix(&s, "default/frontend-").is_empty());
    assert!(!s.replica_sets.contains_key("default/frontend"));
    assert_eq!(pods_with_prefix(&s, "default/web-").len(), 2);
}
