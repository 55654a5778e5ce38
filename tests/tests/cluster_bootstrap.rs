//! Bootstrap and join (issue 14): three real `kommit daemon` processes, each a host of its
//! own in a network namespace, bootstrapped and joined as README tells operators; the
//! repo-template pushed to a `git daemon` on the test bridge. The pods land where `kommit
//! plan` says for that inventory, every node reports the same adopted commit and state
//! digest, each node routes to the others' pod CIDRs, every node holds the cluster's age
//! keyring and a rotation on one reaches all, the leader notes the commit in Git, and the
//! teardown leaves nothing behind.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::PodPhase;
use kommit_tests::cluster::history::{check, Sampler};
use kommit_tests::cluster::node::ClusterNode;
use kommit_tests::cluster::Cluster;
use kommit_tests::fixtures::kommit_bin;
use kommit_tests::runtime_support::skip_privileged;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
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

    // The cluster's age keyring (issue 16): made by the bootstrap node, handed to the nodes
    // that joined (0600); a rotation on the last node reaches every node, the old identity
    // kept for decryption.
    let first = keyring(c.node(1));
    assert_eq!(first.len(), 1, "{first:?}");
    c.wait(Duration::from_secs(30), "the keyring on every node", |c| {
        c.nodes.iter().all(|n| keyring(n) == first)
    });
    for n in &c.nodes {
        let md = std::fs::metadata(n.data.join("secrets/age.key")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600, "{}", n.name);
    }
    let out = Command::new(kommit_bin())
        .args(["secrets", "key", "--rotate", "--data-dir"])
        .arg(&c.node(3).data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rotated = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_ne!(rotated, first[0]);
    let want = vec![rotated, first[0].clone()];
    let t = c.wait(Duration::from_secs(60), "the rotation on every node", |c| {
        c.nodes.iter().all(|n| keyring(n) == want)
    });
    println!("TIMING keyring_rotation_everywhere_ms={}", t.as_millis());

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

/// `kommit secrets key --all` on a node: its keyring's recipients, the current one first.
fn keyring(n: &ClusterNode) -> Vec<String> {
    let out = Command::new(kommit_bin())
        .args(["secrets", "key", "--all", "--data-dir"])
        .arg(&n.data)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// One link cut (between n2 and n3, both ways, by nft rules inside their namespaces) while a
/// commit is pushed, then healed: every node adopts the commit and the cluster converges to
/// one state. (Runs beside the test above: each cluster has a bridge and range of its own.)
#[test]
fn a_cut_link_between_two_nodes_heals_and_the_cluster_converges() {
    if skip_privileged("cluster cut link") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    let (a2, a3) = (c.node(2).net.addr, c.node(3).net.addr);
    c.node(2).net.cut(a3);
    c.node(3).net.cut(a2);
    let (ok, out) = c
        .node(2)
        .net
        .exec("ping", &["-c", "1", "-W", "1", &a3.to_string()]);
    assert!(!ok, "n2 still reaches n3: {out}");
    let commit = c.push("the template, with n2 and n3 cut from each other");
    let t = Instant::now();
    c.wait(
        Duration::from_secs(60),
        "every node adopts the commit",
        |c| {
            c.nodes.iter().all(|n| {
                n.try_state()
                    .is_some_and(|s| s.commit.as_deref() == Some(commit.as_str()))
            })
        },
    );
    println!(
        "TIMING cut_link_push_to_adopted_everywhere_ms={}",
        t.elapsed().as_millis()
    );
    c.node(2).net.uncut();
    c.node(3).net.uncut();
    let t = Instant::now();
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(20));
    println!(
        "TIMING heal_to_equal_digests_ms={} (index {index}, {digest})",
        t.elapsed().as_millis()
    );
    c.wait_state(Duration::from_secs(60), "every node Ready", |s| {
        s.nodes.values().all(|n| n.ready)
    });
    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
