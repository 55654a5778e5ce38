//! Five nodes (issue 14): three voters and two learners (`--voters-large 3`). Two voters are
//! lost one after the other (power off), the second being the leader; each time a live
//! learner is promoted, so the cluster keeps three live voters, and after each loss it still
//! adopts a pushed commit and runs its pods on the survivors.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::PodPhase;
use kommit_tests::cluster::manifests::sleeping_web;
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The voters, by node name, as the first live node's Raft status lists them.
fn voters(c: &Cluster) -> BTreeSet<String> {
    let Some(st) = c.nodes.iter().find_map(|n| n.raft()) else {
        return BTreeSet::new();
    };
    let ids: BTreeSet<u64> = st.voters.iter().copied().collect();
    c.nodes
        .iter()
        .filter_map(|n| n.raft().map(|s| (s.id, n.name.clone())))
        .filter(|(id, _)| ids.contains(id))
        .map(|(_, name)| name)
        .chain(
            // A lost voter answers no status: count it by elimination.
            (ids.len()
                > c.nodes
                    .iter()
                    .filter_map(|n| n.raft())
                    .filter(|s| ids.contains(&s.id))
                    .count())
            .then(|| "<lost>".to_string()),
        )
        .collect()
}

/// Pushes `replicas` web pods and waits until the survivors run them all.
fn push_and_run(c: &Cluster, replicas: u32, lost: &[String]) -> Duration {
    c.write("apps/web/web.yaml", &sleeping_web(replicas));
    let t = Instant::now();
    let commit = c.push(&format!("web x{replicas}"));
    c.wait_state(
        Duration::from_secs(90),
        &format!("{replicas} web pods Running on the survivors"),
        |s| {
            s.commit.as_deref() == Some(commit.as_str())
                && s.pods
                    .values()
                    .filter(|p| p.name.starts_with("web-"))
                    .filter(|p| {
                        p.phase == PodPhase::Running
                            && p.node.as_ref().is_some_and(|n| !lost.contains(n))
                    })
                    .count()
                    == replicas as usize
        },
    );
    t.elapsed()
}

#[test]
fn three_voters_two_learners_lose_two_voters_and_keep_adopting() {
    if skip_privileged("five-node cluster") {
        return;
    }
    let mut c = Cluster::new(5);
    let names = c.names();
    for n in &mut c.nodes {
        n.extra_args = vec!["--voters-large".into(), "3".into()];
    }
    let joined = c.start();
    println!(
        "TIMING five_nodes bootstrap_and_join_ms={}",
        joined.as_millis()
    );
    std::fs::remove_dir_all(c.work.join("apps/hello")).unwrap();
    c.wait(Duration::from_secs(30), "three voters", |c| {
        let v = voters(c);
        v.len() == 3 && !v.contains("<lost>")
    });
    let first = voters(&c);
    println!("voters: {first:?}");
    push_and_run(&c, 5, &[]);

    let mut lost: Vec<String> = Vec::new();
    for round in 1..=2 {
        // First a follower voter, then the leader.
        let leader = c.leader().expect("a leader");
        let v = voters(&c);
        let victim = if round == 1 {
            v.iter().find(|n| **n != leader).unwrap().clone()
        } else {
            leader.clone()
        };
        let vi: usize = victim[1..].parse().unwrap();
        let t = Instant::now();
        c.node_mut(vi).power_off();
        lost.push(victim.clone());
        c.wait(Duration::from_secs(60), "a learner promoted", |c| {
            let v = voters(c);
            v.len() == 3 && !v.contains("<lost>") && !v.iter().any(|n| lost.contains(n))
        });
        let promoted = t.elapsed();
        let voters_now = voters(&c);
        let took = push_and_run(&c, 5 + round, &lost);
        println!(
            "TIMING five_nodes round={round} lost={victim} promoted_after_ms={} voters={voters_now:?} next_commit_running_ms={}",
            promoted.as_millis(),
            took.as_millis()
        );
    }
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(20));
    println!("final digest at applied index {index} on the three survivors: {digest}");

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
