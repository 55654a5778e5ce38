//! Drain and uncordon (issue 14): `kommit node drain n2` on a three-node cluster moves every
//! pod off n2, paced by the Deployment's `maxUnavailable` (25% of 6: one pod at a time, so
//! at no sampled moment are fewer than five of six ready), and keeps new ones away;
//! `kommit node uncordon n2` lets pods land there again. Then a PodDisruptionBudget that
//! needs every pod holds a second drain, and `kommit node drain` says which budget holds
//! it (issue 15).
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::{ClusterState, PodPhase};
use kommit_tests::cluster::manifests::sleeping_web;
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::time::{Duration, Instant};

/// Running web pods on `node`, and in all.
fn running(s: &ClusterState, node: &str) -> (usize, usize) {
    let web: Vec<_> = s
        .pods
        .values()
        .filter(|p| p.name.starts_with("web-") && p.phase == PodPhase::Running)
        .collect();
    let on = web
        .iter()
        .filter(|p| p.node.as_deref() == Some(node))
        .count();
    (on, web.len())
}

/// Running and ready web pods.
fn ready(s: &ClusterState) -> usize {
    s.pods
        .values()
        .filter(|p| p.name.starts_with("web-") && p.phase == PodPhase::Running && p.ready)
        .count()
}

#[test]
fn drain_empties_a_node_and_uncordon_lets_pods_back() {
    if skip_privileged("cluster drain") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    std::fs::remove_dir_all(c.work.join("apps/hello")).unwrap();
    c.write("apps/web/web.yaml", &sleeping_web(6));
    let commit = c.push("six web pods");
    c.wait_state(Duration::from_secs(120), "six web pods, two on n2", |s| {
        s.commit.as_deref() == Some(commit.as_str()) && running(s, "n2") == (2, 6) && ready(s) == 6
    });

    let t = Instant::now();
    let (ok, out, err) = c.node(1).kommit(&["node", "drain", "n2", "--no-wait"]);
    assert!(ok, "kommit node drain: {out}{err}");
    let mut fewest_ready = usize::MAX;
    c.wait_state(
        Duration::from_secs(60),
        "n2 empty, six pods elsewhere",
        |s| {
            if s.commit.as_deref() == Some(commit.as_str()) {
                fewest_ready = fewest_ready.min(ready(s));
            }
            s.nodes.get("n2").is_some_and(|n| n.drained) && running(s, "n2") == (0, 6)
        },
    );
    let drained = t.elapsed();
    assert!(
        fewest_ready >= 5,
        "maxUnavailable 1: at least five of six ready at every sample, saw {fewest_ready}"
    );
    // Its runtime holds none of them either.
    c.wait(Duration::from_secs(30), "n2's runtime empty", |c| {
        c.node(2).containers().is_empty()
    });
    // A scale-up while drained does not use n2.
    c.write("apps/web/web.yaml", &sleeping_web(8));
    let eight = c.push("eight web pods");
    c.wait_state(Duration::from_secs(60), "eight pods, none on n2", |s| {
        s.commit.as_deref() == Some(eight.as_str()) && running(s, "n2") == (0, 8)
    });

    let (ok, out, err) = c.node(3).kommit(&["node", "uncordon", "n2"]);
    assert!(ok, "kommit node uncordon: {out}{err}");
    assert!(out.contains("uncordoned"), "{out}");
    c.wait_state(Duration::from_secs(30), "n2 schedulable", |s| {
        s.nodes.get("n2").is_some_and(|n| !n.drained)
    });
    // Pods do not move back by themselves (as in Kubernetes); new ones land on n2.
    c.write("apps/web/web.yaml", &sleeping_web(10));
    let ten = c.push("ten web pods");
    c.wait_state(Duration::from_secs(60), "the new pods on n2", |s| {
        s.commit.as_deref() == Some(ten.as_str()) && running(s, "n2") == (2, 10)
    });
    println!(
        "TIMING drain empty_after_ms={} fewest_ready={fewest_ready}",
        drained.as_millis()
    );

    // A budget that needs all ten holds the next drain, and the drain says so.
    c.write(
        "apps/web/pdb.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web-pdb}\nspec:\n  minAvailable: 10\n  selector: {matchLabels: {app: web}}\n",
    );
    let budget = c.push("a budget for web");
    c.wait_state(Duration::from_secs(60), "the budget adopted", |s| {
        s.commit.as_deref() == Some(budget.as_str()) && ready(s) == 10
    });
    let (ok, out, err) = c.node(3).kommit(&["node", "drain", "n2", "--timeout", "3"]);
    assert!(!ok, "the budget holds the drain: {out}{err}");
    assert!(
        out.contains("PodDisruptionBudget default/web-pdb needs 10 healthy pods and has 10"),
        "{out}{err}"
    );
    assert_eq!(
        running(&c.node(1).state(), "n2"),
        (2, 10),
        "nothing evicted"
    );
    let (ok, out, err) = c.node(3).kommit(&["node", "uncordon", "n2"]);
    assert!(ok, "{out}{err}");
    let (bad, _, err) = c.node(1).kommit(&["node", "uncordon", "n9"]);
    assert!(!bad && err.contains("unknown node n9"), "{err}");

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
