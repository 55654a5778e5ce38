//! StatefulSet rules, one table test each: ordinal names and identity, OrderedReady and
//! Parallel, scale-down order, RollingUpdate with partition and maxUnavailable, OnDelete,
//! minReadySeconds, claims per ordinal kept across restarts, volume node affinity and the
//! claim retention policy.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, Entry, PodPhase, PodStatusChange};

fn sts_yaml(name: &str, replicas: u32, image: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  serviceName: {name}
  selector:
    matchLabels:
      app: {name}
{extra}  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: main
          image: {image}
          volumeMounts:
            - name: data
              mountPath: /data
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi
"#
    )
}

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  clusterIP: None\n  selector:\n    app: db\n  ports:\n    - port: 5432\n";

struct Cluster {
    s: ClusterState,
    t: u64,
    commit: u32,
}

impl Cluster {
    fn new(nodes: &[&str]) -> Self {
        let mut s = ClusterState::new();
        for n in nodes {
            s.apply(
                &Entry::NodeUp {
                    info: node(n, 8000, 16 * GI, 50),
                },
                1,
            );
        }
        Cluster {
            s,
            t: 10,
            commit: 0,
        }
    }
    fn push(&mut self, files: &[(&str, &str)]) {
        let d = desired(files);
        let parent = (self.commit > 0).then(|| format!("c{}", self.commit));
        self.commit += 1;
        self.t += 1000;
        let e = adopt_entry(&format!("c{}", self.commit), parent.as_deref(), &d);
        let fx = self.s.apply(&e, self.t);
        assert!(fx.rejected.is_none(), "{:?}", fx.rejected);
    }
    fn apply(&mut self, e: Entry) {
        self.t += 1000;
        self.s.apply(&e, self.t);
    }
    fn ready_all(&mut self) {
        self.t += 1000;
        make_ready(&mut self.s, self.t);
    }
    fn report(&mut self, pod: &str, phase: PodPhase, ready: bool) {
        let p = &self.s.pods[pod];
        let e = Entry::PodStatus {
            node: p.node.clone().unwrap(),
            changes: vec![PodStatusChange {
                pod: pod.into(),
                uid: p.uid.clone(),
                phase,
                ready,
                ..Default::default()
            }],
        };
        self.apply(e);
    }
    fn names(&self, prefix: &str) -> Vec<String> {
        pods_with_prefix(&self.s, prefix)
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }
    fn revision(&self, pod: &str) -> String {
        self.s.pods[pod].labels["controller-revision-hash"].clone()
    }
}

fn files(sts: &str) -> Vec<(&'static str, String)> {
    vec![
        ("kommit.yaml", KOMMIT_YAML.to_string()),
        ("svc.yaml", SVC.to_string()),
        ("sts.yaml", sts.to_string()),
    ]
}

fn push(c: &mut Cluster, sts: &str) {
    let f = files(sts);
    let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (*a, b.as_str())).collect();
    c.push(&refs);
}

#[test]
fn ordered_ready_creates_in_order_with_identity_and_claims() {
    let mut c = Cluster::new(&["n1", "n2"]);
    push(&mut c, &sts_yaml("db", 3, "postgres:16", ""));
    assert_eq!(c.names("default/db-"), vec!["db-0"], "one pod at a time");
    let p = &c.s.pods["default/db-0"];
    assert_eq!(p.spec.hostname.as_ref().unwrap().as_str(), "db-0");
    assert_eq!(p.spec.subdomain.as_ref().unwrap().as_str(), "db");
    let claim = p.spec.volumes[0].persistent_volume_claim.as_ref().unwrap();
    assert_eq!(claim.claim_name.as_str(), "data-db-0");
    let node0 = p.node.clone().expect("scheduled");
    let rec = &c.s.claims["default/data-db-0"];
    assert_eq!(
        rec.node.as_deref(),
        Some(node0.as_str()),
        "bound where its pod went"
    );
    assert!(rec.volume.as_deref().unwrap().starts_with("pvc-"));
    assert_eq!(rec.phase(), "Bound");
    // Running but not ready: still one pod.
    c.report("default/db-0", PodPhase::Running, false);
    assert_eq!(c.names("default/db-"), vec!["db-0"]);
    c.report("default/db-0", PodPhase::Running, true);
    assert_eq!(c.names("default/db-"), vec!["db-0", "db-1"]);
    c.ready_all();
    c.ready_all();
    assert_eq!(c.names("default/db-"), vec!["db-0", "db-1", "db-2"]);
    assert_eq!(c.s.claims.len(), 3);
    let st = &c.s.stateful_sets["default/db"];
    assert_eq!((st.replicas, st.ready), (3, 3));
}

#[test]
fn parallel_creates_and_deletes_at_once() {
    let mut c = Cluster::new(&["n1", "n2"]);
    let extra = "  podManagementPolicy: Parallel\n";
    push(&mut c, &sts_yaml("db", 4, "postgres:16", extra));
    assert_eq!(c.names("default/db-").len(), 4);
    push(&mut c, &sts_yaml("db", 1, "postgres:16", extra));
    assert_eq!(c.names("default/db-"), vec!["db-0"]);
    // Retain (the default): the claims of the removed ordinals stay.
    assert_eq!(c.s.claims.len(), 4);
}

#[test]
fn ordered_scale_down_goes_highest_first_one_at_a_time() {
    let mut c = Cluster::new(&["n1"]);
    push(&mut c, &sts_yaml("db", 3, "postgres:16", ""));
    for _ in 0..3 {
        c.ready_all();
    }
    assert_eq!(c.names("default/db-").len(), 3);
    push(&mut c, &sts_yaml("db", 1, "postgres:16", ""));
    assert_eq!(c.names("default/db-"), vec!["db-0", "db-1"], "db-2 first");
    c.apply(Entry::Tick);
    assert_eq!(c.names("default/db-"), vec!["db-0"]);
    // Not while another pod is unhealthy.
    push(&mut c, &sts_yaml("db", 3, "postgres:16", ""));
    c.ready_all();
    c.ready_all();
    c.report("default/db-0", PodPhase::Running, false);
    push(&mut c, &sts_yaml("db", 2, "postgres:16", ""));
    assert_eq!(
        c.names("default/db-").len(),
        3,
        "db-0 is not ready: nothing goes"
    );
}

#[test]
fn rolling_update_respects_partition_and_goes_highest_first() {
    let mut c = Cluster::new(&["n1", "n2"]);
    let extra =
        "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      partition: 1\n";
    push(&mut c, &sts_yaml("db", 3, "postgres:16", extra));
    for _ in 0..3 {
        c.ready_all();
    }
    let old = c.revision("default/db-0");
    push(&mut c, &sts_yaml("db", 3, "postgres:17", extra));
    // db-2 replaced first; the recreated pod has the new revision and is not ready.
    let new = c.revision("default/db-2");
    assert_ne!(new, old);
    assert_eq!(c.revision("default/db-1"), old, "one at a time");
    c.ready_all();
    assert_eq!(c.revision("default/db-1"), new);
    c.ready_all();
    c.apply(Entry::Tick);
    assert_eq!(c.revision("default/db-0"), old, "below the partition");
    let st = &c.s.stateful_sets["default/db"];
    assert_eq!((st.updated, st.current), (2, 1));
    // A pod below the partition that fails comes back with the current revision.
    c.report("default/db-0", PodPhase::Failed, false);
    assert_eq!(c.revision("default/db-0"), old);
    // Partition 0 finishes the rollout; the update revision becomes current.
    let extra0 =
        "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      partition: 0\n";
    c.ready_all();
    push(&mut c, &sts_yaml("db", 3, "postgres:17", extra0));
    c.ready_all();
    let st = &c.s.stateful_sets["default/db"];
    assert_eq!(st.current_revision, st.update_revision);
    assert!(st.current_template.is_none());
    assert_eq!(c.revision("default/db-0"), new);
}

#[test]
fn rolling_update_max_unavailable_replaces_several() {
    let mut c = Cluster::new(&["n1", "n2"]);
    let extra = "  podManagementPolicy: Parallel\n  updateStrategy:\n    rollingUpdate:\n      maxUnavailable: 2\n";
    push(&mut c, &sts_yaml("db", 4, "postgres:16", extra));
    c.ready_all();
    let old = c.revision("default/db-0");
    push(&mut c, &sts_yaml("db", 4, "postgres:17", extra));
    let revs: Vec<bool> = (0..4)
        .map(|i| c.revision(&format!("default/db-{i}")) != old)
        .collect();
    assert_eq!(revs, vec![false, false, true, true]);
}

#[test]
fn on_delete_replaces_only_pods_that_go() {
    let mut c = Cluster::new(&["n1"]);
    let extra = "  updateStrategy:\n    type: OnDelete\n";
    push(&mut c, &sts_yaml("db", 2, "postgres:16", extra));
    c.ready_all();
    c.ready_all();
    let old = c.revision("default/db-1");
    push(&mut c, &sts_yaml("db", 2, "postgres:17", extra));
    c.ready_all();
    assert_eq!(c.revision("default/db-1"), old);
    assert_eq!(c.revision("default/db-0"), old);
    c.report("default/db-1", PodPhase::Failed, false);
    assert_ne!(c.revision("default/db-1"), old);
    assert_eq!(c.revision("default/db-0"), old);
}

#[test]
fn min_ready_seconds_holds_the_next_ordinal() {
    let mut c = Cluster::new(&["n1"]);
    push(
        &mut c,
        &sts_yaml("db", 2, "postgres:16", "  minReadySeconds: 30\n"),
    );
    c.ready_all();
    assert_eq!(c.names("default/db-"), vec!["db-0"]);
    c.t += 31_000;
    c.apply(Entry::Tick);
    assert_eq!(c.names("default/db-"), vec!["db-0", "db-1"]);
}

#[test]
fn a_pod_follows_its_volume_and_waits_for_a_down_node() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    push(&mut c, &sts_yaml("db", 1, "postgres:16", ""));
    let node = c.s.pods["default/db-0"].node.clone().unwrap();
    let uid = c.s.pods["default/db-0"].uid.clone();
    let volume = c.s.claims["default/data-db-0"].volume.clone();
    c.apply(Entry::NodeDown { node: node.clone() });
    let p = &c.s.pods["default/db-0"];
    assert_ne!(p.uid, uid, "a new incarnation");
    assert_eq!(p.node, None, "never started elsewhere on an empty volume");
    let why = p.reason.clone().unwrap();
    assert!(
        why.contains(&node) && why.contains("data-db-0") && why.contains("not ready"),
        "{why}"
    );
    c.apply(Entry::NodeUp {
        info: kommit_reconcilers::NodeInfo { ..node_info(&node) },
    });
    let p = &c.s.pods["default/db-0"];
    assert_eq!(
        p.node.as_deref(),
        Some(node.as_str()),
        "back on its volume's node"
    );
    assert_eq!(
        c.s.claims["default/data-db-0"].volume, volume,
        "same volume"
    );
    // Drained: the pod leaves and waits for the node, with a reason that says so.
    c.apply(Entry::NodeDrain { node: node.clone() });
    let why = c.s.pods["default/db-0"].reason.clone().unwrap();
    assert!(why.contains("cordoned"), "{why}");
    assert_eq!(c.s.pods["default/db-0"].node, None);
    c.apply(Entry::NodeUncordon { node: node.clone() });
    assert_eq!(
        c.s.pods["default/db-0"].node.as_deref(),
        Some(node.as_str())
    );
}

fn node_info(name: &str) -> kommit_reconcilers::NodeInfo {
    node(name, 8000, 16 * GI, 50)
}

#[test]
fn claims_outlive_the_set_unless_the_policy_deletes_them() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    push(&mut c, &sts_yaml("db", 1, "postgres:16", ""));
    let before = c.s.claims["default/data-db-0"].clone();
    // Deleted from Git, then added back: the same claim, volume and node.
    c.push(&[("kommit.yaml", KOMMIT_YAML), ("svc.yaml", SVC)]);
    assert!(c.names("default/db-").is_empty());
    assert_eq!(c.s.claims["default/data-db-0"], before);
    push(&mut c, &sts_yaml("db", 1, "postgres:16", ""));
    assert_eq!(c.s.pods["default/db-0"].node, before.node);
    // whenDeleted/whenScaled: Delete.
    let extra = "  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Delete\n  podManagementPolicy: Parallel\n";
    push(&mut c, &sts_yaml("db", 2, "postgres:16", extra));
    assert!(c.s.claims.contains_key("default/data-db-1"));
    push(&mut c, &sts_yaml("db", 1, "postgres:16", extra));
    assert!(!c.s.claims.contains_key("default/data-db-1"), "scaled away");
    c.push(&[("kommit.yaml", KOMMIT_YAML), ("svc.yaml", SVC)]);
    assert!(c.s.claims.is_empty(), "deleted with the set");
}

#[test]
fn git_claims_bind_on_first_consumer_and_one_pod_claims_are_exclusive() {
    let pvc = |name: &str, class: &str| {
        format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOncePod]\n{class}  resources:\n    requests:\n      storage: 1Gi\n")
    };
    let pod = |name: &str, claim: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n    - name: main\n      image: busybox\n  volumes:\n    - name: v\n      persistentVolumeClaim:\n        claimName: {claim}\n")
    };
    let mut c = Cluster::new(&["n1", "n2"]);
    let (a, b, other) = (
        pvc("a", ""),
        pvc("b", "  storageClassName: fast\n"),
        pod("p2", "a"),
    );
    let (p1, p3) = (pod("p1", "a"), pod("p3", "b"));
    c.push(&[
        ("kommit.yaml", KOMMIT_YAML),
        ("a.yaml", &a),
        ("b.yaml", &b),
        ("p1.yaml", &p1),
        ("p2.yaml", &other),
        ("p3.yaml", &p3),
    ]);
    let claim = &c.s.claims["default/a"];
    let p1n = c.s.pods["default/p1"].node.clone();
    assert_eq!(claim.node, p1n, "bound where p1 went");
    // p2 was placed in the same pass before the claim bound: it waits, then is refused.
    assert!(c.s.pods["default/p2"].node.is_none());
    c.apply(Entry::Tick);
    let why = c.s.pods["default/p2"].reason.clone().unwrap_or_default();
    assert!(c.s.pods["default/p2"].node.is_none());
    assert!(why.contains("ReadWriteOncePod"), "{why}");
    // Any class is served by local-path (no StorageClass kind yet).
    assert!(c.s.pods["default/p3"].node.is_some());
    assert_eq!(c.s.claims["default/b"].phase(), "Bound");
}

#[test]
fn same_log_same_bytes_with_stateful_sets() {
    let run = || {
        let mut c = Cluster::new(&["n1", "n2", "n3"]);
        push(&mut c, &sts_yaml("db", 3, "postgres:16", ""));
        for _ in 0..3 {
            c.ready_all();
        }
        push(&mut c, &sts_yaml("db", 3, "postgres:17", ""));
        c.ready_all();
        c.apply(Entry::NodeDown { node: "n2".into() });
        c.s.digest()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_class_with_a_foreign_provisioner_keeps_the_pod_pending() {
    let sc = |name: &str, prov: &str| {
        format!("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}\nprovisioner: {prov}\n")
    };
    let sts = sts_yaml("db", 1, "postgres:16", "").replace(
        "        accessModes: [ReadWriteOnce]\n",
        "        accessModes: [ReadWriteOnce]\n        storageClassName: fast\n",
    );
    let mut c = Cluster::new(&["n1"]);
    let fast = sc("fast", "k8s.io/minikube-hostpath");
    c.push(&[
        ("kommit.yaml", KOMMIT_YAML),
        ("svc.yaml", SVC),
        ("sts.yaml", &sts),
        ("sc.yaml", &fast),
    ]);
    let p = &c.s.pods["default/db-0"];
    assert!(p.node.is_none());
    let why = p.reason.clone().unwrap();
    assert!(why.contains("k8s.io/minikube-hostpath"), "{why}");
    // The same class served by kommit's provisioner binds.
    let fast = sc("fast", "kommit.dev/local-path");
    c.push(&[
        ("kommit.yaml", KOMMIT_YAML),
        ("svc.yaml", SVC),
        ("sts.yaml", &sts),
        ("sc.yaml", &fast),
    ]);
    assert_eq!(c.s.pods["default/db-0"].node.as_deref(), Some("n1"));
}
