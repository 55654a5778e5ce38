//! Drain and uncordon (issue 14): `kommit node drain n2` on a three-node cluster moves every
//! pod off n2 and keeps new ones away; `kommit node uncordon n2` lets pods land there again.
//! (Pacing a drain by each Deployment's `maxUnavailable` and PodDisruptionBudgets is issue
//! 15's; this test checks the end states and that the other nodes run every replica.)
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
        s.commit.as_deref() == Some(commit.as_str()) && running(s, "n2") == (2, 6)
    });

    let t = Instant::now();
    let (ok, out, err) = c.node(1).kommit(&["node", "drain", "n2"]);
    assert!(ok, "kommit node drain: {out}{err}");
    c.wait_state(
        Duration::from_secs(60),
        "n2 empty, six pods elsewhere",
        |s| s.nodes.get("n2").is_some_and(|n| n.drained) && running(s, "n2") == (0, 6),
    );
    let drained = t.elapsed();
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
    println!("TIMING drain empty_after_ms={}", drained.as_millis());
    let (bad, _, err) = c.node(1).kommit(&["node", "uncordon", "n9"]);
    assert!(!bad && err.contains("unknown node n9"), "{err}");

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
