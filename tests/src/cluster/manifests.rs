//! Manifests and state checks the cluster tests and benchmarks share.

use kommit_reconcilers::{ClusterState, PodPhase, PodRecord};

/// An at-most-once bare pod `solo` (`kommit.dev/at-most-once: "true"`) that sleeps.
pub const SOLO: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: solo
  annotations: {kommit.dev/at-most-once: "true"}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
"#;

/// A Deployment `web` of `replicas` busybox pods that sleep, with small requests.
pub fn sleeping_web(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:1.36
        command: ["sleep", "3600"]
        resources:
          requests: {{cpu: 10m, memory: 8Mi}}
"#
    )
}

/// `web` pods Running on a node other than `not_on`, `web` of them, and `solo` too.
pub fn web_and_solo_running(s: &ClusterState, web: usize, not_on: Option<&str>) -> bool {
    let ok = |p: &PodRecord| {
        p.phase == PodPhase::Running && p.node.is_some() && p.node.as_deref() != not_on
    };
    s.pods
        .values()
        .filter(|p| p.name.starts_with("web-"))
        .filter(|p| ok(p))
        .count()
        == web
        && s.pods.get("default/solo").is_some_and(ok)
}
