//! Hand-made states for the unit tests and `kommit-bench web`: nodes, Deployments whose pods
//! are bound and Running, a clear-text Secret, and a history of adopted and refused commits.

use kommit_reconcilers::{ClusterState, Entry, NodeInfo, PodPhase, PodStatusChange};
use std::collections::BTreeMap;

/// The value of the synthetic Secret `default/db` (key `password`): tests check that no
/// page shows it.
pub const SECRET_VALUE: &str = "s3cr3t-synthetic-value-9f1c";

/// A 40-hex commit id made of `c`.
pub fn sha(c: char) -> String {
    c.to_string().repeat(40)
}

fn tree(deployments: usize, replicas: usize) -> kommit_schemas::SourceTree {
    let mut t = kommit_schemas::SourceTree::default();
    t.add(
        "kommit.yaml",
        "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata:\n  name: synthetic\nspec:\n  podCIDR: 10.128.0.0/10\n  nodeCIDRMaskSize: 24\n",
    );
    for ns in ["default", "ns0", "ns1", "ns2", "ns3"] {
        if ns != "default" {
            t.add(
                format!("{ns}/namespace.yaml"),
                format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
            );
        }
        t.add(
            format!("{ns}/secret.yaml"),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\nstringData:\n  password: {SECRET_VALUE}\n"
            ),
        );
    }
    for d in 0..deployments {
        t.add(
            format!("apps/app{d}.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app{d}\n  namespace: ns{ns}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: app{d}\n  template:\n    metadata:\n      labels:\n        app: app{d}\n    spec:\n      containers:\n      - name: web\n        image: busybox:1.36\n        env:\n        - name: PASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: db\n              key: password\n        resources:\n          requests:\n            cpu: 10m\n            memory: 8Mi\n",
                ns = d % 4
            ),
        );
    }
    t
}

/// A state of `nodes` nodes and `deployments` Deployments of `replicas` pods each, all
/// Running and ready, adopted as commit `b...b` after `a...a`, with `c...c` refused (a
/// diagnostic at `apps/broken.yaml:3:5`).
pub fn state(nodes: usize, deployments: usize, replicas: usize) -> ClusterState {
    with_history(nodes, deployments, replicas, 0)
}

/// [`state`] with `extra` more decisions before `a...a`: commits `0...01`, `0...02`, ...,
/// every third one refused, the others adopted and superseded.
pub fn with_history(
    nodes: usize,
    deployments: usize,
    replicas: usize,
    extra: usize,
) -> ClusterState {
    let limits = kommit_schemas::Limits::default();
    let desired = kommit_schemas::validate(&tree(deployments, replicas), &limits)
        .unwrap_or_else(|d| panic!("synthetic tree is invalid: {d:?}"));
    let mut s = ClusterState::new();
    for i in 0..nodes {
        let info = NodeInfo {
            name: format!("node{i}"),
            address: format!("10.255.{}.{}:7946", i / 250, i % 250 + 1),
            cpu_millis: 64_000,
            memory_bytes: 256 << 30,
            pods: 500,
            labels: BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]),
            taints: vec![],
        };
        s.apply(&Entry::NodeUp { info }, 1_000);
    }
    let mut at = 2_000;
    let mut parent = None;
    let mut commits: Vec<(String, bool)> = (1..=extra)
        .map(|i| (format!("{i:040x}"), i % 3 != 0))
        .collect();
    commits.push((sha('a'), true));
    commits.push((sha('b'), true));
    for (c, adopt) in commits {
        if adopt {
            s.apply(
                &Entry::Adopt {
                    commit: c.clone(),
                    parent: parent.clone(),
                    digest: desired.digest(),
                    desired: desired.clone(),
                    by: Some("node0".into()),
                },
                at,
            );
            parent = Some(c);
        } else {
            s.apply(
                &Entry::Refuse {
                    commit: c,
                    reason: None,
                    diagnostics: vec![
                        "apps/app0.yaml:9:7: error: replicas: expected an integer".into()
                    ],
                    by: Some("node0".into()),
                },
                at,
            );
        }
        at += 1_000;
    }
    s.apply(
        &Entry::Refuse {
            commit: sha('c'),
            reason: None,
            diagnostics: vec!["apps/broken.yaml:3:5: error: unknown field `replicaz`".into()],
            by: Some("node0".into()),
        },
        at,
    );
    let mut by_node: BTreeMap<String, Vec<PodStatusChange>> = BTreeMap::new();
    for (k, p) in &s.pods {
        if let Some(n) = &p.node {
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
    for (node, changes) in by_node {
        at += 10;
        s.apply(&Entry::PodStatus { node, changes }, at);
    }
    for i in 0..nodes {
        at += 10;
        s.apply(
            &Entry::Ack {
                node: format!("node{i}"),
                commit: sha('b'),
            },
            at,
        );
    }
    s
}
