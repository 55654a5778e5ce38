//! Table tests of each controller step driven through `ClusterState::apply`.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, Entry, IpChange, Owner, RolloutPhase, Taint};
use kommit_schemas::model::pod::TaintEffect;

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

fn rs_of<'a>(s: &'a ClusterState, deploy: &str) -> Vec<(&'a str, u32, u64)> {
    let mut v: Vec<_> = s
        .replica_sets
        .values()
        .filter(|r| r.deployment == format!("default/{deploy}"))
        .map(|r| (r.name.as_str(), r.replicas, r.revision))
        .collect();
    v.sort_by_key(|x| x.2);
    v
}

fn ready_count(s: &ClusterState, prefix: &str) -> usize {
    pods_with_prefix(s, prefix)
        .iter()
        .filter(|p| p.ready)
        .count()
}

#[test]
fn bare_pods_are_created_placed_replaced_and_pruned() {
    let mut s = cluster(2);
    let pod = |img: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\nspec:\n  containers:\n    - name: c\n      image: {img}\n")
    };
    let d1 = desired(&[("p.yaml", &pod("busybox:1"))]);
    let fx = s.apply(&adopt_entry("c1", None, &d1), 10);
    assert_eq!(fx.adopted.as_deref(), Some("c1"));
    let p = &s.pods["default/solo"];
    let node = p.node.clone().expect("placed");
    assert_eq!(fx.start[&node][0].pod, "default/solo");
    assert!(p.pod_ip.is_some());
    let uid1 = p.uid.clone();
    // Same spec again: nothing moves.
    let fx = s.apply(&Entry::Tick, 11);
    assert!(fx.start.is_empty() && fx.stop.is_empty());
    // Spec change: replaced (new UID), old one stopped.
    let d2 = desired(&[("p.yaml", &pod("busybox:2"))]);
    let fx = s.apply(&adopt_entry("c2", Some("c1"), &d2), 12);
    assert_ne!(s.pods["default/solo"].uid, uid1);
    assert_eq!(fx.stop.values().flatten().next().unwrap().uid, uid1);
    // File deleted: pruned.
    let d3 = desired(&[]);
    let fx = s.apply(&adopt_entry("c3", Some("c2"), &d3), 13);
    assert!(s.pods.is_empty());
    assert_eq!(fx.stop.values().flatten().count(), 1);
}

#[test]
fn deployment_expands_into_a_replicaset_named_by_template_hash() {
    let mut s = cluster(3);
    let d = desired(&[("web.yaml", &deployment_yaml("web", 3, "nginx:1", ""))]);
    s.apply(&adopt_entry("c1", None, &d), 10);
    let rs = rs_of(&s, "web");
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].1, 3);
    let rs_name = rs[0].0.to_owned();
    let hash = rs_name.strip_prefix("web-").unwrap();
    assert_eq!(hash.len(), 10);
    let pods = pods_with_prefix(&s, &format!("default/{rs_name}-"));
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(p.name.len(), rs_name.len() + 6, "{}", p.name);
        assert_eq!(p.labels["pod-template-hash"], hash);
        assert_eq!(p.owner, Owner::ReplicaSet(format!("default/{rs_name}")));
    }
    // Spread: three replicas on three nodes.
    let nodes: std::collections::BTreeSet<_> =
        pods.iter().map(|p| p.node.clone().unwrap()).collect();
    assert_eq!(nodes.len(), 3);
    // Same log in a fresh state: same names and UIDs.
    let mut t = cluster(3);
    t.apply(&adopt_entry("c1", None, &d), 10);
    assert_eq!(s.digest(), t.digest());
}

#[test]
fn rolling_update_steps_follow_surge_and_unavailable() {
    // 4 replicas, defaults: maxSurge ceil(25%)=1, maxUnavailable floor(25%)=1.
    let mut s = cluster(4);
    let v1 = desired(&[("web.yaml", &deployment_yaml("web", 4, "nginx:1", ""))]);
    s.apply(&adopt_entry("c1", None, &v1), 10);
    make_ready(&mut s, 11);
    assert_eq!(s.deployments["default/web"].phase, RolloutPhase::Complete);
    let v2 = desired(&[("web.yaml", &deployment_yaml("web", 4, "nginx:2", ""))]);
    s.apply(&adopt_entry("c2", Some("c1"), &v2), 20);
    // Table: after each step, (new replicas, old replicas), then all pods report ready.
    // Surge to 5 pods at once (new 2, old 3), then 4/1 once two new pods are ready, then 4/0.
    let want = [(2, 3), (4, 1), (4, 0)];
    let mut t = 20;
    for (i, (new, old)) in want.iter().enumerate() {
        let rs = rs_of(&s, "web");
        assert_eq!((rs[1].1, rs[0].1), (*new, *old), "step {i}: {rs:?}");
        let total = pods_with_prefix(&s, "default/web-").len();
        assert!(
            total <= 5,
            "step {i}: {total} pods exceed replicas + maxSurge"
        );
        assert!(
            ready_count(&s, "default/web-") >= 3,
            "step {i}: below minAvailable"
        );
        // Advance only on readiness: without reports nothing moves.
        t += 1;
        s.apply(&Entry::Tick, t);
        let rs_again = rs_of(&s, "web");
        assert_eq!(
            (rs_again[1].1, rs_again[0].1),
            (*new, *old),
            "step {i} moved without readiness"
        );
        t += 1;
        make_ready(&mut s, t);
    }
    assert_eq!(s.deployments["default/web"].phase, RolloutPhase::Complete);
    assert_eq!(pods_with_prefix(&s, "default/web-").len(), 4);
}

#[test]
fn surge_and_unavailable_rounding_matches_kubernetes() {
    use kommit_reconcilers::controllers::deployment::resolve;
    use kommit_schemas::model::meta::IntOrString::{Int, String as S};
    let table = [
        (S("25%".into()), 10, true, 3),
        (S("25%".into()), 10, false, 2),
        (S("25%".into()), 1, true, 1),
        (S("25%".into()), 1, false, 0),
        (S("50%".into()), 3, true, 2),
        (S("50%".into()), 3, false, 1),
        (Int(2), 10, true, 2),
        (S("bad".into()), 10, true, 0),
    ];
    for (v, total, up, want) in table {
        assert_eq!(resolve(&v, total, up), want, "{v:?} of {total} up={up}");
    }
}

#[test]
fn recreate_stops_old_pods_before_starting_new_ones() {
    let mut s = cluster(2);
    let strat = "  strategy:\n    type: Recreate\n";
    let v1 = desired(&[("web.yaml", &deployment_yaml("web", 2, "nginx:1", strat))]);
    s.apply(&adopt_entry("c1", None, &v1), 10);
    make_ready(&mut s, 11);
    let v2 = desired(&[("web.yaml", &deployment_yaml("web", 2, "nginx:2", strat))]);
    let fx = s.apply(&adopt_entry("c2", Some("c1"), &v2), 20);
    assert_eq!(fx.stop.values().flatten().count(), 2);
    assert!(
        fx.start.is_empty(),
        "new pods must wait for the old ones to go"
    );
    let fx = s.apply(&Entry::Tick, 21);
    assert_eq!(fx.start.values().flatten().count(), 2);
    let rs = rs_of(&s, "web");
    assert_eq!((rs[0].1, rs[1].1), (0, 2));
}

#[test]
fn progress_deadline_uses_entry_timestamps() {
    let mut s = cluster(1);
    let extra = "  progressDeadlineSeconds: 10\n";
    let v1 = desired(&[("web.yaml", &deployment_yaml("web", 1, "nginx:1", extra))]);
    s.apply(&adopt_entry("c1", None, &v1), 1_000);
    let table = [
        (5_000, RolloutPhase::Progressing),
        (11_001, RolloutPhase::DeadlineExceeded),
    ];
    for (at, want) in table {
        let fx = s.apply(&Entry::Tick, at);
        assert_eq!(s.deployments["default/web"].phase, want, "at {at}");
        if want == RolloutPhase::DeadlineExceeded {
            assert_eq!(fx.rollouts["default/web"], want);
        }
    }
    make_ready(&mut s, 12_000);
    assert_eq!(s.deployments["default/web"].phase, RolloutPhase::Complete);
}

#[test]
fn revision_history_limit_keeps_newest_old_replicasets() {
    let mut s = cluster(1);
    let extra = "  revisionHistoryLimit: 1\n";
    let mut parent: Option<String> = None;
    for (i, img) in ["a:1", "a:2", "a:3", "a:4"].iter().enumerate() {
        let d = desired(&[("web.yaml", &deployment_yaml("web", 1, img, extra))]);
        let c = format!("c{i}");
        s.apply(&adopt_entry(&c, parent.as_deref(), &d), 10 + i as u64 * 10);
        for k in 0..4 {
            make_ready(&mut s, 11 + i as u64 * 10 + k);
            s.apply(&Entry::Tick, 12 + i as u64 * 10 + k);
        }
        parent = Some(c);
    }
    let rs = rs_of(&s, "web");
    assert_eq!(rs.len(), 2, "current + 1 old: {rs:?}");
    assert_eq!(rs[1].2, 4);
    assert_eq!(rs[0].2, 3);
}

#[test]
fn daemonset_runs_one_pod_per_eligible_node_including_late_joiners() {
    let mut s = ClusterState::new();
    s.apply(
        &Entry::NodeUp {
            info: labelled(node("a", 1000, GI, 10), &[("disk", "ssd")]),
        },
        1,
    );
    s.apply(
        &Entry::NodeUp {
            info: node("b", 1000, GI, 10),
        },
        1,
    );
    let mut tainted = labelled(node("c", 1000, GI, 10), &[("disk", "ssd")]);
    tainted.taints.push(Taint {
        key: "dedicated".into(),
        value: Some("db".into()),
        effect: TaintEffect::NoSchedule,
    });
    s.apply(&Entry::NodeUp { info: tainted }, 1);
    let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      nodeSelector: {disk: ssd}\n      containers:\n        - name: c\n          image: agent:1\n";
    let d = desired(&[("ds.yaml", ds)]);
    s.apply(&adopt_entry("c1", None, &d), 2);
    let placed = |s: &ClusterState| {
        let mut v: Vec<String> = pods_with_prefix(s, "default/agent-")
            .iter()
            .map(|p| p.node.clone().unwrap())
            .collect();
        v.sort();
        v
    };
    // b lacks the label, c's taint is not tolerated.
    assert_eq!(placed(&s), ["a"]);
    // A node joining later gets its pod.
    let fx = s.apply(
        &Entry::NodeUp {
            info: labelled(node("d", 1000, GI, 10), &[("disk", "ssd")]),
        },
        3,
    );
    assert_eq!(placed(&s), ["a", "d"]);
    assert_eq!(fx.start["d"].len(), 1);
    // Drained nodes keep their DaemonSet pod; a down node loses it.
    s.apply(&Entry::NodeDrain { node: "a".into() }, 4);
    assert_eq!(placed(&s), ["a", "d"]);
    s.apply(&Entry::NodeDown { node: "d".into() }, 5);
    assert_eq!(placed(&s), ["a"]);
}

#[test]
fn pod_cidrs_are_stable_and_freed_only_on_remove() {
    let mut s = ClusterState::new();
    let cidr = |s: &ClusterState, n: &str| s.nodes[n].pod_cidr.unwrap().to_string();
    for n in ["a", "b"] {
        s.apply(
            &Entry::NodeUp {
                info: node(n, 1000, GI, 10),
            },
            1,
        );
    }
    assert_eq!(cidr(&s, "a"), "10.244.0.0/24");
    assert_eq!(cidr(&s, "b"), "10.244.1.0/24");
    s.apply(&Entry::NodeDown { node: "a".into() }, 2);
    s.apply(
        &Entry::NodeUp {
            info: node("a", 1000, GI, 10),
        },
        3,
    );
    assert_eq!(cidr(&s, "a"), "10.244.0.0/24");
    // Snapshot round trip keeps it.
    let back = ClusterState::from_canonical_bytes(&s.canonical_bytes()).unwrap();
    assert_eq!(back, s);
    let fx = s.apply(&Entry::NodeRemove { node: "a".into() }, 4);
    assert!(matches!(&fx.ips[0], IpChange::NodeCidrFreed { node, .. } if node == "a"));
    let fx = s.apply(
        &Entry::NodeUp {
            info: node("c", 1000, GI, 10),
        },
        5,
    );
    assert_eq!(cidr(&s, "c"), "10.244.0.0/24");
    assert!(matches!(&fx.ips[0], IpChange::NodeCidr { node, .. } if node == "c"));
}

#[test]
fn node_cidrs_follow_the_first_commits_pod_cidr_but_never_under_bound_pods() {
    let mut s = ClusterState::new();
    let cidr = |s: &ClusterState, n: &str| s.nodes[n].pod_cidr.unwrap().to_string();
    // Nodes join before any commit: CIDRs from the default 10.244.0.0/16.
    for n in ["b", "a"] {
        s.apply(
            &Entry::NodeUp {
                info: node(n, 1000, GI, 10),
            },
            1,
        );
    }
    assert_eq!(cidr(&s, "b"), "10.244.0.0/24");
    let config = |net: &str| {
        format!(
            "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata:\n  name: c\nspec:\n  podCIDR: {net}\n  nodeCIDRMaskSize: 24\n"
        )
    };
    let app = deployment_yaml("web", 2, "busybox:1.36", "");
    let d1 = desired(&[("kommit.yaml", &config("10.50.0.0/16")), ("web.yaml", &app)]);
    let fx = s.apply(&adopt_entry("c1", None, &d1), 2);
    // Realigned in node-name order, with the effects an agent needs.
    assert_eq!(cidr(&s, "a"), "10.50.0.0/24");
    assert_eq!(cidr(&s, "b"), "10.50.1.0/24");
    let freed = fx
        .ips
        .iter()
        .filter(|c| matches!(c, IpChange::NodeCidrFreed { .. }))
        .count();
    assert_eq!(freed, 2, "{:?}", fx.ips);
    assert!(s
        .pods
        .values()
        .all(|p| p.pod_ip.is_some_and(|ip| ip.octets()[..2] == [10, 50])));
    // A later commit moving podCIDR keeps the CIDR of nodes with bound pods.
    let busy: Vec<String> = s.pods.values().filter_map(|p| p.node.clone()).collect();
    let d2 = desired(&[("kommit.yaml", &config("10.60.0.0/16")), ("web.yaml", &app)]);
    s.apply(&adopt_entry("c2", Some("c1"), &d2), 3);
    for n in ["a", "b"] {
        let want = if busy.iter().any(|b| b == n) {
            "10.50."
        } else {
            "10.60."
        };
        assert!(cidr(&s, n).starts_with(want), "{n}: {}", cidr(&s, n));
    }
}

#[test]
fn evictions_move_pods_only_when_their_node_is_lost_drained_or_noexecute() {
    let mut s = cluster(2);
    let d = desired(&[("web.yaml", &deployment_yaml("web", 4, "nginx:1", ""))]);
    s.apply(&adopt_entry("c1", None, &d), 10);
    make_ready(&mut s, 11);
    let before = s.placements();
    // A new node joining moves nothing.
    s.apply(
        &Entry::NodeUp {
            info: node("n9", 4000, 8 * GI, 110),
        },
        12,
    );
    assert_eq!(s.placements(), before);
    // NodeDown: n0's pods are stopped there and replaced elsewhere.
    let fx = s.apply(&Entry::NodeDown { node: "n0".into() }, 13);
    assert_eq!(fx.stop["n0"].len(), 2);
    assert!(s.pods.values().all(|p| p.node.as_deref() != Some("n0")));
    assert_eq!(s.pods.len(), 4);
    // NoExecute taint on n1: only pods without a toleration leave.
    let mut t = node("n1", 4000, 8 * GI, 110);
    t.taints.push(Taint {
        key: "maint".into(),
        value: None,
        effect: TaintEffect::NoExecute,
    });
    s.apply(&Entry::NodeUp { info: t }, 14);
    assert!(s.pods.values().all(|p| p.node.as_deref() == Some("n9")));
    // Drain n9: none of its pods is available yet, so no budget holds them: everything is
    // Pending with a reason.
    s.apply(&Entry::NodeDrain { node: "n9".into() }, 15);
    assert!(s.pods.values().all(|p| p.node.is_none()));
    assert!(s.nodes["n9"].drain_waits.is_empty());
    let p = s.pods.values().next().unwrap();
    assert_eq!(
        p.reason.as_deref(),
        Some("0/3 nodes are available: 1 node(s) had untolerated taint {maint: }, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable.")
    );
    s.apply(&Entry::NodeUncordon { node: "n9".into() }, 16);
    assert!(s.pods.values().all(|p| p.node.as_deref() == Some("n9")));
}

#[test]
fn services_get_cluster_ips_and_endpoints_follow_readiness() {
    let mut s = cluster(1);
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - port: 80\n";
    let d = desired(&[
        ("web.yaml", &deployment_yaml("web", 2, "nginx:1", "")),
        ("svc.yaml", svc),
    ]);
    let fx = s.apply(&adopt_entry("c1", None, &d), 10);
    let ip = s.service_ips["default/web"];
    assert!(fx.ips.contains(&IpChange::Service {
        service: "default/web".into(),
        ip
    }));
    assert!(s.endpoints["default/web"].iter().all(|e| !e.ready));
    assert_eq!(s.endpoints["default/web"].len(), 2);
    let e = ready_entries(&s, |_| true).remove(0);
    let fx = s.apply(&e, 11);
    assert_eq!(fx.endpoints_changed, ["default/web"]);
    assert!(s.endpoints["default/web"].iter().all(|e| e.ready));
    // Removing the service frees its IP.
    let d2 = desired(&[("web.yaml", &deployment_yaml("web", 2, "nginx:1", ""))]);
    let fx = s.apply(&adopt_entry("c2", Some("c1"), &d2), 12);
    assert!(fx.ips.contains(&IpChange::ServiceFreed {
        service: "default/web".into(),
        ip
    }));
    assert!(s.endpoints.is_empty());
}

#[test]
fn adopt_refuses_bad_digests_and_non_fast_forwards() {
    let mut s = cluster(1);
    let d = desired(&[("web.yaml", &deployment_yaml("web", 1, "nginx:1", ""))]);
    let bad = Entry::Adopt {
        commit: "c1".into(),
        parent: None,
        desired: d.clone(),
        digest: "00".into(),
        by: None,
    };
    let fx = s.apply(&bad, 1);
    assert!(fx.rejected.unwrap().contains("does not match"));
    assert!(s.commit.is_none());
    s.apply(&adopt_entry("c1", None, &d), 2);
    let fx = s.apply(&adopt_entry("c2", Some("elsewhere"), &d), 3);
    assert!(fx.rejected.unwrap().contains("does not fast-forward"));
    assert_eq!(s.commit.as_deref(), Some("c1"));
    let fx = s.apply(&adopt_entry("c2", Some("c1"), &d), 4);
    assert_eq!(fx.adopted.as_deref(), Some("c2"));
}

#[test]
fn status_reports_for_other_incarnations_are_ignored() {
    let mut s = cluster(1);
    let d = desired(&[("web.yaml", &deployment_yaml("web", 1, "nginx:1", ""))]);
    s.apply(&adopt_entry("c1", None, &d), 1);
    let mut e = ready_entries(&s, |_| true).remove(0);
    if let Entry::PodStatus { changes, .. } = &mut e {
        changes[0].uid = "not-this-one".into();
    }
    s.apply(&e, 2);
    assert!(s.pods.values().all(|p| !p.ready));
    // A failed controller pod is replaced.
    let mut e = ready_entries(&s, |_| true).remove(0);
    if let Entry::PodStatus { changes, .. } = &mut e {
        changes[0].phase = kommit_reconcilers::PodPhase::Failed;
        changes[0].ready = false;
    }
    let old: Vec<String> = s.pods.keys().cloned().collect();
    s.apply(&e, 3);
    assert_eq!(s.pods.len(), 1);
    assert_ne!(s.pods.keys().cloned().collect::<Vec<_>>(), old);
}
