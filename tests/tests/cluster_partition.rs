//! Minority partition (issue 14): the node that runs an at-most-once pod is cut off from the
//! other two (its link goes down; its daemon and pods keep running). It fences itself, so
//! its at-most-once pod stops before the majority starts the replacement; at no sampled
//! moment do two copies run. When the link comes back the node rejoins, starts nothing it
//! lost, and every node ends with the same state digest.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::PodPhase;
use kommit_tests::cluster::history::{check, first_round, Sampler};
use kommit_tests::cluster::manifests::SOLO;
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::time::{Duration, Instant};

#[test]
fn a_cut_off_node_fences_its_at_most_once_pod_before_it_runs_elsewhere() {
    if skip_privileged("cluster minority partition") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    std::fs::remove_dir_all(c.work.join("apps/hello")).unwrap();
    c.write("apps/solo/solo.yaml", SOLO);
    let commit = c.push("an at-most-once pod");
    c.wait_state(Duration::from_secs(120), "solo Running", |s| {
        s.commit.as_deref() == Some(commit.as_str())
            && s.pods
                .get("default/solo")
                .is_some_and(|p| p.phase == PodPhase::Running)
    });
    let s = c.node(1).state();
    let victim = s.pods["default/solo"].node.clone().unwrap();
    let vi: usize = victim[1..].parse().unwrap();
    let sampler = Sampler::start(c.watched(), Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(500));

    let cut_at = sampler.now_ms();
    let t = Instant::now();
    c.node(vi).net.isolate();
    println!("{victim} cut off (it ran solo)");
    let majority = c.nodes.iter().find(|n| n.name != victim).unwrap().index;
    let mut moved_to = String::new();
    c.wait(
        Duration::from_secs(30),
        "solo Running on the majority",
        |c| {
            c.node(majority).try_state().is_some_and(|s| {
                s.pods.get("default/solo").is_some_and(|p| {
                    moved_to = p.node.clone().unwrap_or_default();
                    p.phase == PodPhase::Running && p.node.as_deref() != Some(victim.as_str())
                })
            })
        },
    );
    let replaced = t.elapsed();
    // Let the sampler see the new copy running, then check when each side acted.
    std::thread::sleep(Duration::from_millis(500));
    let history = sampler.history();
    let runs_on = |r: &kommit_tests::cluster::history::Round, node: &str| {
        r.nodes
            .iter()
            .any(|n| n.node == node && n.pods.iter().any(|p| p.pod == "default.solo" && p.running))
    };
    let stopped_at = first_round(&history, |r| r.at_ms > cut_at && !runs_on(r, &victim))
        .expect("the cut-off node stopped solo");
    let started_at = first_round(&history, |r| r.at_ms > cut_at && runs_on(r, &moved_to))
        .expect("the majority started solo");
    println!(
        "TIMING partition fenced_after_ms={} replaced_running_after_ms={} (state Running after {} ms)",
        stopped_at - cut_at,
        started_at - cut_at,
        replaced.as_millis()
    );
    assert!(
        stopped_at < started_at,
        "the cut-off node stopped solo ({stopped_at} ms) before the majority started it ({started_at} ms)"
    );

    // Healed: the node rejoins and starts nothing it lost.
    c.node(vi).net.heal();
    c.wait_state(
        Duration::from_secs(30),
        &format!("{victim} Ready again"),
        |s| s.nodes.get(&victim).is_some_and(|n| n.ready),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(20));
    println!("final digest at applied index {index}: {digest}");
    let history = sampler.finish();
    println!("history: {} rounds", history.len());
    check(&history, &[]).unwrap();

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
