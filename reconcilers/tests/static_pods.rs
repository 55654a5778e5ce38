//! Static pods (`Entry::StaticPods`): bound at once to their node, never scheduled elsewhere
//! or evicted, replaced on a spec change, removed with their manifest or their node.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{
    ClusterState, Entry, IpChange, Owner, PodPhase, PodStatusChange, Taint, MAX_STATIC_PODS,
};
use kommit_schemas::model::core::Pod;
use kommit_schemas::model::pod::TaintEffect;
use std::collections::BTreeSet;

fn cluster(nodes: usize) -> ClusterState {
    let mut s = ClusterState::new();
    for i in 0..nodes {
        s.apply(
            &Entry::NodeUp {
                info: node(&format!("n{i}"), 4000, 8 * GI, 110),
            },
            1,
        );
    }
    s
}

fn pod_yaml(name: &str, ns: Option<&str>, image: &str) -> String {
    let ns = ns.map_or(String::new(), |n| format!("  namespace: {n}\n"));
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{ns}  annotations:\n    a: b\nspec:\n  containers:\n    - name: c\n      image: {image}\n"
    )
}

/// Static pod manifests as the daemon's loader gives them.
fn manifests(pods: &[(&str, Option<&str>, &str)]) -> Vec<Pod> {
    let files: Vec<(String, String)> = pods
        .iter()
        .enumerate()
        .map(|(i, (n, ns, img))| (format!("p{i}.yaml"), pod_yaml(n, *ns, img)))
        .collect();
    desired_of(&files).pods.into_values().collect()
}

fn statics(node: &str, pods: &[(&str, Option<&str>, &str)]) -> Entry {
    Entry::StaticPods {
        node: node.into(),
        pods: manifests(pods),
    }
}

#[test]
fn static_pods_are_bound_at_once_to_their_node_with_an_ip() {
    let mut s = cluster(2);
    let fx = s.apply(
        &statics(
            "n1",
            &[
                ("web", None, "busybox:1"),
                ("kp", Some("kube-system"), "x:1"),
            ],
        ),
        5,
    );
    let p = &s.pods["default/web-n1"];
    assert_eq!(p.owner, Owner::Static("n1".into()));
    assert_eq!(p.owner.id(), "Static/n1");
    assert_eq!(p.node.as_deref(), Some("n1"));
    assert_eq!(p.pinned_node.as_deref(), Some("n1"));
    let cidr = s.nodes["n1"].pod_cidr.unwrap();
    assert!(cidr.contains(&p.pod_ip.unwrap()));
    assert!(s.pods.contains_key("kube-system/kp-n1"));
    let started: Vec<&str> = fx.start["n1"].iter().map(|r| r.pod.as_str()).collect();
    assert_eq!(started, ["default/web-n1", "kube-system/kp-n1"]);
    assert_eq!(
        fx.ips
            .iter()
            .filter(|c| matches!(c, IpChange::Pod { .. }))
            .count(),
        2
    );
    assert!(!fx.start.contains_key("n0"));
    // Two IPs, distinct.
    let ips: BTreeSet<_> = s.pods.values().filter_map(|p| p.pod_ip).collect();
    assert_eq!(ips.len(), 2);
}

#[test]
fn nothing_but_their_node_moves_static_pods() {
    // (case, entry applied after the pod exists)
    let mut tainted = node("n1", 4000, 8 * GI, 110);
    tainted.taints.push(Taint {
        key: "k".into(),
        value: None,
        effect: TaintEffect::NoExecute,
    });
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("node down", vec![Entry::NodeDown { node: "n1".into() }]),
        ("node drained", vec![Entry::NodeDrain { node: "n1".into() }]),
        ("NoExecute taint", vec![Entry::NodeUp { info: tainted }]),
        (
            "a commit without them (pruning)",
            vec![adopt_entry("c1", None, &desired(&[]))],
        ),
        (
            "a deployment filling the cluster",
            vec![adopt_entry(
                "c1",
                None,
                &desired(&[("d.yaml", &deployment_yaml("web", 6, "nginx:1", ""))]),
            )],
        ),
        (
            "another node's set",
            vec![statics("n0", &[("web", None, "busybox:1")])],
        ),
        ("a tick", vec![Entry::Tick]),
    ];
    for (case, entries) in cases {
        let mut s = cluster(2);
        s.apply(&statics("n1", &[("web", None, "busybox:1")]), 5);
        let before = s.pods["default/web-n1"].clone();
        for (t, e) in (10..).zip(&entries) {
            let fx = s.apply(e, t);
            let stopped = fx.stop.values().flatten().any(|r| r.uid == before.uid);
            assert!(!stopped, "{case}: the static pod was stopped");
        }
        let p = &s.pods["default/web-n1"];
        assert_eq!(p.uid, before.uid, "{case}");
        assert_eq!(p.node.as_deref(), Some("n1"), "{case}");
        assert_eq!(p.pod_ip, before.pod_ip, "{case}");
        // No scheduler-bound pod shares its IP.
        let same_ip = s.pods.values().filter(|q| q.pod_ip == p.pod_ip).count();
        assert_eq!(same_ip, 1, "{case}: IP taken twice");
    }
}

#[test]
fn a_changed_manifest_is_a_new_incarnation_and_a_removed_one_goes() {
    let mut s = cluster(1);
    s.apply(&statics("n0", &[("web", None, "busybox:1")]), 5);
    let old = s.pods["default/web-n0"].clone();
    // Same set again: nothing moves.
    let fx = s.apply(&statics("n0", &[("web", None, "busybox:1")]), 6);
    assert!(fx.start.is_empty() && fx.stop.is_empty());
    // Changed spec: a new UID, the old one stopped, same IP back (lowest free).
    let fx = s.apply(&statics("n0", &[("web", None, "busybox:2")]), 7);
    let new = s.pods["default/web-n0"].clone();
    assert_ne!(new.uid, old.uid);
    assert_eq!(fx.stop["n0"][0].uid, old.uid);
    assert_eq!(fx.start["n0"][0].uid, new.uid);
    assert_eq!(new.pod_ip, old.pod_ip);
    // The empty set removes it and forgets the node's set.
    let fx = s.apply(
        &Entry::StaticPods {
            node: "n0".into(),
            pods: vec![],
        },
        8,
    );
    assert!(s.pods.is_empty());
    assert_eq!(fx.stop["n0"][0].uid, new.uid);
    assert!(s.static_pods.is_empty());
    // Same manifests give the same UIDs on any node applying the same log.
    let mut a = cluster(1);
    a.apply(&statics("n0", &[("web", None, "busybox:1")]), 5);
    assert_eq!(a.pods["default/web-n0"].uid, old.uid);
}

#[test]
fn node_remove_removes_static_pods_and_their_manifests() {
    let mut s = cluster(2);
    s.apply(&statics("n1", &[("web", None, "busybox:1")]), 5);
    let fx = s.apply(&Entry::NodeRemove { node: "n1".into() }, 6);
    assert!(s.pods.is_empty());
    assert!(s.static_pods.is_empty());
    assert_eq!(fx.stop["n1"].len(), 1);
    // A set from a node the state does not know is kept, and runs once it joins.
    s.apply(&statics("n9", &[("web", None, "busybox:1")]), 7);
    assert!(s.pods.is_empty());
    s.apply(
        &Entry::NodeUp {
            info: node("n9", 4000, 8 * GI, 110),
        },
        8,
    );
    assert_eq!(s.pods["default/web-n9"].node.as_deref(), Some("n9"));
}

#[test]
fn the_reported_phase_stays_and_a_finished_static_pod_is_not_recreated() {
    let mut s = cluster(1);
    s.apply(&statics("n0", &[("job", None, "busybox:1")]), 5);
    let p = s.pods["default/job-n0"].clone();
    let report = |phase| Entry::PodStatus {
        node: "n0".into(),
        changes: vec![PodStatusChange {
            pod: "default/job-n0".into(),
            uid: p.uid.clone(),
            phase,
            ..Default::default()
        }],
    };
    s.apply(&report(PodPhase::Running), 6);
    s.apply(&Entry::NodeDown { node: "n0".into() }, 7);
    assert_eq!(s.pods["default/job-n0"].phase, PodPhase::Running);
    s.apply(
        &Entry::NodeUp {
            info: node("n0", 4000, 8 * GI, 110),
        },
        8,
    );
    let fx = s.apply(&report(PodPhase::Succeeded), 9);
    assert!(fx.stop.is_empty() && fx.start.is_empty());
    let fx = s.apply(&Entry::Tick, 10);
    assert!(fx.stop.is_empty() && fx.start.is_empty());
    assert_eq!(s.pods["default/job-n0"].phase, PodPhase::Succeeded);
}

#[test]
fn bounds_duplicates_and_collisions() {
    // At most MAX_STATIC_PODS per node; the first manifest of a name wins.
    let mut s = cluster(1);
    let names: Vec<String> = (0..MAX_STATIC_PODS + 6)
        .map(|i| format!("p{i:03}"))
        .collect();
    let list: Vec<(&str, Option<&str>, &str)> = names
        .iter()
        .map(|n| (n.as_str(), None, "busybox:1"))
        .collect();
    s.apply(&statics("n0", &list), 5);
    assert_eq!(s.pods.len(), MAX_STATIC_PODS);
    let mut pods = manifests(&[("dup", None, "busybox:1")]);
    pods.extend(manifests(&[("dup", None, "busybox:2")]));
    let mut s = cluster(1);
    s.apply(
        &Entry::StaticPods {
            node: "n0".into(),
            pods,
        },
        5,
    );
    assert_eq!(
        s.pods["default/dup-n0"].spec.containers[0].image.as_str(),
        "busybox:1"
    );
    // A repository pod holding the mirror name keeps it; the static pod waits.
    let mut s = cluster(1);
    let d = desired(&[("p.yaml", &pod_yaml("web-n0", None, "repo:1"))]);
    s.apply(&adopt_entry("c1", None, &d), 5);
    let repo_uid = s.pods["default/web-n0"].uid.clone();
    s.apply(&statics("n0", &[("web", None, "busybox:1")]), 6);
    assert_eq!(s.pods["default/web-n0"].uid, repo_uid);
    assert_eq!(s.pods.len(), 1);
    s.apply(&adopt_entry("c2", Some("c1"), &desired(&[])), 7);
    assert_eq!(
        s.pods["default/web-n0"].owner,
        Owner::Static("n0".into()),
        "the freed name goes to the static pod"
    );
}

#[test]
fn snapshots_without_static_pods_keep_their_bytes_and_round_trip() {
    let mut s = cluster(1);
    assert!(!String::from_utf8(s.canonical_bytes())
        .unwrap()
        .contains("static_pods"));
    s.apply(&statics("n0", &[("web", None, "busybox:1")]), 5);
    let back = ClusterState::from_canonical_bytes(&s.canonical_bytes()).unwrap();
    assert_eq!(back.digest(), s.digest());
    assert_eq!(back, s);
    // The entry itself crosses the log unchanged.
    let e = statics("n0", &[("web", None, "busybox:1")]);
    let json = serde_json::to_vec(&e).unwrap();
    assert_eq!(serde_json::from_slice::<Entry>(&json).unwrap(), e);
}
