//! Bootstrap and join (issue 14): three real `kommit daemon` processes, each a host of its
//! own in a network namespace, bootstrapped and joined as README tells operators; the
//! repo-template pushed to a `git daemon` on the test bridge. The pods land where `kommit
//! plan` says for that inventory, every node reports the same adopted commit and state
//! digest, each node routes to the others' pod CIDRs, the leader notes the commit in Git,
//! and the teardown leaves nothing behind.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::PodPhase;
use kommit_tests::cluster::history::{check, Sampler};
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[test]
fn three_nodes_bootstrap_join_and_run_the_template_as_planned() {
    if skip_privileged("cluster bootstrap and join") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    let joined = c.start();
    println!(
        "TIMING bootstrap_and_join_3_nodes_ms={}",
        joined.as_millis()
    );
    let sampler = Sampler::start(c.watched(), Duration::from_millis(100));

    let pushed = Instant::now();
    let commit = c.push("the template");
    let took = c.wait(
        Duration::from_secs(120),
        "hello Running on every node's view",
        |c| {
            c.nodes.iter().all(|n| {
                n.try_state().is_some_and(|s| {
                    s.commit.as_deref() == Some(commit.as_str())
                        && s.pods
                            .values()
                            .filter(|p| p.name.starts_with("hello-"))
                            .filter(|p| p.phase == PodPhase::Running && p.ready)
                            .count()
                            == 2
                })
            })
        },
    );
    println!(
        "TIMING template_push_to_ready_ms={} (wait {} ms)",
        pushed.elapsed().as_millis(),
        took.as_millis()
    );

    // Placement is the one `kommit plan` computes offline for the same inventory.
    let plan = c.plan();
    let planned: BTreeMap<String, String> = plan["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pod"].as_str().unwrap().to_string(),
                p["node"].as_str().expect("every pod placed").to_string(),
            )
        })
        .collect();
    let s = c.node(1).state();
    let placed: BTreeMap<String, String> = s
        .pods
        .iter()
        .map(|(k, p)| (k.clone(), p.node.clone().unwrap()))
        .collect();
    assert_eq!(placed, planned, "placement is the plan's");
    println!("placement: {placed:?}");

    // Every node reports the same commit (through the CLI) and the same state.
    for n in &c.nodes {
        let st = n.status_json().expect("kommit status --format json");
        assert_eq!(
            st["state"]["commit"].as_str(),
            Some(commit.as_str()),
            "{} status",
            n.name
        );
    }
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(10));
    println!("every node's state digest at applied index {index}: {digest}");

    // Each node's network, from inside its namespace: a node running pods has its pod
    // bridge on its own pod CIDR (the bridge is made with the first pod), and every node
    // routes to every other node's CIDR through that node.
    for n in &c.nodes {
        let routes = n.net.routes();
        let mine = s.nodes[&n.name].pod_cidr.unwrap();
        let runs_pods = placed.values().any(|p| *p == n.name);
        assert!(
            !runs_pods || routes.contains(&format!("{mine} dev {}", n.bridge)),
            "{}: {mine} on {}:\n{routes}",
            n.name,
            n.bridge
        );
        for o in c.nodes.iter().filter(|o| o.name != n.name) {
            let cidr = s.nodes[&o.name].pod_cidr.unwrap();
            assert!(
                routes.contains(&format!("{cidr} via {} ", o.net.addr)),
                "{}: route to {}'s {cidr}:\n{routes}",
                n.name,
                o.name
            );
        }
    }

    // The leader notes the adoption in Git, once.
    c.wait(Duration::from_secs(30), "the adopted note", |c| {
        c.note(&commit).is_some_and(|n| n.contains("adopted"))
    });

    let history = sampler.finish();
    println!("history: {} rounds", history.len());
    check(&history, &[]).unwrap();

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
