//! The paced drain, one table: a drained node's pods leave only while their Deployment
//! stays within `max(maxUnavailable, 1)` unavailable pods and every PodDisruptionBudget
//! selecting them stays met; the node records which budget holds each pod that waits.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, Entry, PodPhase, PodStatusChange};

fn cluster(nodes: &[&str]) -> ClusterState {
    let mut s = ClusterState::new();
    for n in nodes {
        s.apply(
            &Entry::NodeUp {
                info: node(n, 4000, 8 * GI, 110),
            },
            1,
        );
    }
    s
}

fn strategy(max_unavailable: &str) -> String {
    format!("  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: {max_unavailable}\n")
}

fn pdb(name: &str, ns: Option<&str>, spec: &str) -> String {
    let ns = ns
        .map(|n| format!("  namespace: {n}\n"))
        .unwrap_or_default();
    format!("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {name}\n{ns}spec:\n{spec}")
}

const OTHER_NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n";

/// Web pods bound to `node`.
fn on(s: &ClusterState, node: &str) -> Vec<String> {
    s.pods
        .values()
        .filter(|p| p.name.starts_with("web-") && p.node.as_deref() == Some(node))
        .map(|p| p.key())
        .collect()
}

/// Four web pods over n0 and n1 (two each), all ready; then `extra` pods of n0 marked not
/// ready when `unready` is set.
fn four_web(max_unavailable: &str, extra: &[(&str, &str)], unready: bool) -> ClusterState {
    let mut s = cluster(&["n0", "n1"]);
    let web = deployment_yaml("web", 4, "nginx:1", &strategy(max_unavailable));
    let mut files = vec![("web.yaml", web.as_str()), ("ns.yaml", OTHER_NS)];
    files.extend_from_slice(extra);
    s.apply(&adopt_entry("c1", None, &desired(&files)), 10);
    make_ready(&mut s, 11);
    assert_eq!(on(&s, "n0").len(), 2, "two web pods on n0");
    if unready {
        let k = on(&s, "n0")[0].clone();
        let p = &s.pods[&k];
        let e = Entry::PodStatus {
            node: "n0".into(),
            changes: vec![PodStatusChange {
                pod: k.clone(),
                uid: p.uid.clone(),
                phase: PodPhase::Running,
                ready: false,
                pod_ip: p.pod_ip,
                ..Default::default()
            }],
        };
        s.apply(&e, 12);
    }
    s
}

#[test]
fn first_drain_entry_evicts_what_the_budgets_allow() {
    const SEL: &str = "  selector:\n    matchLabels:\n      app: web\n";
    // (case, Deployment maxUnavailable, PDB, one n0 pod unready, evicted, wait reason)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<String>,
        bool,
        usize,
        Option<&'a str>,
    );
    let cases: &[Case] = &[
        (
            "Deployment maxUnavailable 1",
            "1",
            None,
            false,
            1,
            Some("Deployment default/web needs 3 healthy pods and has 3"),
        ),
        ("Deployment maxUnavailable 2", "2", None, false, 2, None),
        (
            "maxUnavailable 0 still takes one at a time",
            "0",
            None,
            false,
            1,
            Some("Deployment default/web needs 3 healthy pods and has 3"),
        ),
        (
            "PDB minAvailable 4 holds all",
            "2",
            Some(pdb("web-pdb", None, &format!("  minAvailable: 4\n{SEL}"))),
            false,
            0,
            Some("PodDisruptionBudget default/web-pdb needs 4 healthy pods and has 4"),
        ),
        (
            "PDB minAvailable 3",
            "2",
            Some(pdb("web-pdb", None, &format!("  minAvailable: 3\n{SEL}"))),
            false,
            1,
            Some("PodDisruptionBudget default/web-pdb needs 3 healthy pods and has 3"),
        ),
        (
            "PDB minAvailable 75% rounds up to 3",
            "2",
            Some(pdb("web-pdb", None, &format!("  minAvailable: 75%\n{SEL}"))),
            false,
            1,
            Some("PodDisruptionBudget default/web-pdb needs 3 healthy pods and has 3"),
        ),
        (
            "PDB maxUnavailable 50% of the Deployment's 4",
            "2",
            Some(pdb(
                "web-pdb",
                None,
                &format!("  maxUnavailable: 50%\n{SEL}"),
            )),
            false,
            2,
            None,
        ),
        (
            "PDB maxUnavailable 30% rounds up to 2",
            "2",
            Some(pdb(
                "web-pdb",
                None,
                &format!("  maxUnavailable: 30%\n{SEL}"),
            )),
            false,
            2,
            None,
        ),
        (
            "PDB maxUnavailable 0",
            "2",
            Some(pdb("web-pdb", None, &format!("  maxUnavailable: 0\n{SEL}"))),
            false,
            0,
            Some("PodDisruptionBudget default/web-pdb needs 4 healthy pods and has 4"),
        ),
        (
            "PDB selecting other labels",
            "2",
            Some(pdb(
                "db-pdb",
                None,
                "  minAvailable: 4\n  selector:\n    matchLabels:\n      app: db\n",
            )),
            false,
            2,
            None,
        ),
        (
            "PDB in another namespace",
            "2",
            Some(pdb(
                "web-pdb",
                Some("other"),
                &format!("  minAvailable: 4\n{SEL}"),
            )),
            false,
            2,
            None,
        ),
        (
            "PDB without a selector covers nothing",
            "2",
            Some(pdb("web-pdb", None, "  minAvailable: 4\n")),
            false,
            2,
            None,
        ),
        (
            "PDB with an empty selector covers the namespace",
            "2",
            Some(pdb("web-pdb", None, "  minAvailable: 4\n  selector: {}\n")),
            false,
            0,
            Some("PodDisruptionBudget default/web-pdb needs 4 healthy pods and has 4"),
        ),
        (
            "an unhealthy pod waits while the budget is not met (IfHealthyBudget)",
            "2",
            Some(pdb("web-pdb", None, &format!("  minAvailable: 4\n{SEL}"))),
            true,
            0,
            Some("PodDisruptionBudget default/web-pdb needs 4 healthy pods and has 3"),
        ),
        (
            "an unhealthy pod goes at once with AlwaysAllow",
            "2",
            Some(pdb(
                "web-pdb",
                None,
                &format!("  minAvailable: 4\n  unhealthyPodEvictionPolicy: AlwaysAllow\n{SEL}"),
            )),
            true,
            1,
            Some("PodDisruptionBudget default/web-pdb needs 4 healthy pods and has 3"),
        ),
    ];
    for (case, mu, budget, unready, evicted, why) in cases {
        let extra: Vec<(&str, &str)> = budget.iter().map(|b| ("pdb.yaml", b.as_str())).collect();
        let mut s = four_web(mu, &extra, *unready);
        let before = on(&s, "n0");
        let fx = s.apply(&Entry::NodeDrain { node: "n0".into() }, 20);
        let left = on(&s, "n0");
        assert_eq!(before.len() - left.len(), *evicted, "{case}: evicted");
        assert_eq!(
            fx.stop.get("n0").map_or(0, Vec::len),
            *evicted,
            "{case}: stop effects"
        );
        let waits = &s.nodes["n0"].drain_waits;
        assert_eq!(waits.len(), left.len(), "{case}: every pod left waits");
        for (pod, w) in waits {
            assert!(left.contains(pod), "{case}: {pod} waits but is gone");
            assert_eq!(Some(w.as_str()), *why, "{case}: reason");
        }
        if left.is_empty() {
            assert!(why.is_none(), "{case}: expected a wait");
        }
        // Replacements are Pending or placed on n1, never on n0.
        assert!(
            s.pods
                .values()
                .all(|p| p.node.as_deref() != Some("n0") || before.contains(&p.key())),
            "{case}: nothing new lands on the drained node"
        );
    }
}

#[test]
fn evictions_follow_replacements_becoming_healthy_then_uncordon_clears() {
    let mut s = four_web("1", &[], false);
    let mut t = 20;
    s.apply(&Entry::NodeDrain { node: "n0".into() }, t);
    let mut rounds = Vec::new();
    while !on(&s, "n0").is_empty() {
        rounds.push(on(&s, "n0").len());
        assert!(rounds.len() < 10, "drain does not progress: {rounds:?}");
        // Nothing moves while nothing changes.
        t += 1;
        s.apply(&Entry::Tick, t);
        assert_eq!(
            on(&s, "n0").len(),
            *rounds.last().unwrap(),
            "a tick evicts nothing"
        );
        // The replacement on n1 reports ready: the next pod goes.
        t += 1;
        for e in ready_entries(&s, |_| true) {
            s.apply(&e, t);
        }
    }
    assert_eq!(rounds, [1], "one pod waited for one replacement");
    assert!(s.nodes["n0"].drain_waits.is_empty(), "no wait once empty");
    assert_eq!(on(&s, "n1").len(), 4);

    // A budget that holds, then an uncordon: the waits go with the drain.
    let mut s = four_web("1", &[], false);
    s.apply(&Entry::NodeDrain { node: "n0".into() }, 20);
    assert_eq!(s.nodes["n0"].drain_waits.len(), 1);
    s.apply(&Entry::NodeUncordon { node: "n0".into() }, 21);
    assert!(s.nodes["n0"].drain_waits.is_empty());
    assert_eq!(on(&s, "n0").len(), 1, "the waiting pod stays");
}

#[test]
fn stateful_pods_on_a_drained_node_wait_for_their_budget_and_volume() {
    // The zookeeper shape: three ordinals, one claim each, a budget of one unavailable.
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: zk\nspec:\n  replicas: 3\n  serviceName: zk\n  podManagementPolicy: Parallel\n  selector:\n    matchLabels: {app: zk}\n  template:\n    metadata:\n      labels: {app: zk}\n    spec:\n      containers:\n        - name: zk\n          image: zk:1\n          volumeMounts: [{name: data, mountPath: /data}]\n  volumeClaimTemplates:\n    - metadata: {name: data}\n      spec:\n        accessModes: [ReadWriteOnce]\n        resources: {requests: {storage: 1Gi}}\n";
    let budget = pdb(
        "zk-pdb",
        None,
        "  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app: zk\n",
    );
    let mut s = cluster(&["n0", "n1", "n2"]);
    let d = desired(&[("zk.yaml", sts), ("pdb.yaml", &budget)]);
    s.apply(&adopt_entry("c1", None, &d), 10);
    make_ready(&mut s, 11);
    let nodes: Vec<String> = (0..3)
        .map(|i| s.pods[&format!("default/zk-{i}")].node.clone().unwrap())
        .collect();
    let mut sorted = nodes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "spread over three nodes: {nodes:?}");
    // Drain zk-0's node: it goes (the budget allows one), and waits for its volume's node.
    s.apply(
        &Entry::NodeDrain {
            node: nodes[0].clone(),
        },
        20,
    );
    let p = &s.pods["default/zk-0"];
    assert_eq!(p.node, None);
    assert!(
        p.reason.as_deref().unwrap().contains("cordoned"),
        "{:?}",
        p.reason
    );
    // Drain zk-1's node too: the budget is spent, zk-1 stays and the node says why.
    s.apply(
        &Entry::NodeDrain {
            node: nodes[1].clone(),
        },
        21,
    );
    assert_eq!(s.pods["default/zk-1"].node.as_ref(), Some(&nodes[1]));
    assert_eq!(
        s.nodes[&nodes[1]].drain_waits["default/zk-1"],
        "PodDisruptionBudget default/zk-pdb needs 2 healthy pods and has 2"
    );
    // Uncordoning the first node lets zk-0 back; once it is ready, zk-1 goes.
    s.apply(
        &Entry::NodeUncordon {
            node: nodes[0].clone(),
        },
        22,
    );
    assert_eq!(s.pods["default/zk-0"].node.as_ref(), Some(&nodes[0]));
    assert_eq!(s.pods["default/zk-1"].node.as_ref(), Some(&nodes[1]));
    make_ready(&mut s, 23);
    assert_eq!(s.pods["default/zk-1"].node, None);
    assert!(s.nodes[&nodes[1]].drain_waits.is_empty());
}
