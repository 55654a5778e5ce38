//! Node loss (issue 14): on a three-node cluster of real daemons, a node running pods is
//! lost as a host losing power (link down, daemon, shims and containers SIGKILLed). Its
//! pods are replaced on the other nodes, Running, within 5 s of the kill; when it comes
//! back it starts none of its old pods again. A history sampled every 100 ms from every
//! node's runtime records shows no at-most-once pod on two nodes at once and no Deployment
//! below its allowed availability but for the pods the lost node took; the final state
//! digests are equal.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_tests::cluster::history::{check, Availability, Sampler};
use kommit_tests::cluster::manifests::{web_and_solo_running, SOLO};
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::time::{Duration, Instant};

const APPS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080", "-h", "/"]
        resources:
          requests: {cpu: 10m, memory: 8Mi}
"#;

#[test]
fn a_lost_node_s_pods_run_elsewhere_within_5_s_and_never_twice() {
    if skip_privileged("cluster node loss") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    std::fs::remove_dir_all(c.work.join("apps/hello")).unwrap();
    c.write("apps/loss/loss.yaml", &format!("{APPS}---\n{SOLO}"));
    let commit = c.push("six web pods and an at-most-once one");
    c.wait_state(Duration::from_secs(120), "web and solo Running", |s| {
        s.commit.as_deref() == Some(commit.as_str()) && web_and_solo_running(s, 6, None)
    });
    let sampler = Sampler::start(c.watched(), Duration::from_millis(100));
    let deployments = [Availability {
        pod_prefix: "default.web-".into(),
        min_available: 5,
        from_ms: 0,
    }];
    std::thread::sleep(Duration::from_millis(500));

    // The victim: solo's node unless it leads (leader loss is a test of its own), else the
    // follower with the most pods.
    let s = c.node(1).state();
    let leader = c.leader().expect("a leader");
    let count = |n: &str| {
        s.pods
            .values()
            .filter(|p| p.node.as_deref() == Some(n))
            .count()
    };
    let solo_node = s.pods["default/solo"].node.clone().unwrap();
    let victim = if solo_node != leader {
        solo_node
    } else {
        c.nodes
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| *n != leader)
            .max_by_key(|n| count(n))
            .unwrap()
    };
    let lost: Vec<String> = s
        .pods
        .values()
        .filter(|p| p.node.as_deref() == Some(victim.as_str()))
        .map(|p| p.name.clone())
        .collect();
    println!("leader {leader}; losing {victim} with {lost:?}");
    assert!(!lost.is_empty(), "{victim} runs pods");
    let vi: usize = victim[1..].parse().unwrap();

    let killed = Instant::now();
    c.node_mut(vi).power_off();
    let mut down_at = None;
    c.wait_state(
        Duration::from_secs(30),
        "every pod Running on the other nodes",
        |s| {
            if down_at.is_none() && s.nodes.get(&victim).is_some_and(|n| !n.ready) {
                down_at = Some(killed.elapsed());
            }
            web_and_solo_running(s, 6, Some(victim.as_str()))
        },
    );
    let replaced = killed.elapsed();
    let down_at = down_at.unwrap_or(replaced);
    println!(
        "TIMING node_loss_to_running_ms={} (declared down after {} ms, then Running in {} ms; the daemons' --down-after-ms is the default 4000)",
        replaced.as_millis(),
        down_at.as_millis(),
        (replaced - down_at).as_millis()
    );

    // The node comes back: it starts none of the pods it lost.
    let url = c.url.clone();
    c.node_mut(vi).power_on(&url);
    c.wait_state(
        Duration::from_secs(30),
        &format!("{victim} Ready again"),
        |s| s.nodes.get(&victim).is_some_and(|n| n.ready),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(10));
    println!("final digest at applied index {index}: {digest}");

    let history = sampler.finish();
    println!("history: {} rounds", history.len());
    check(&history, &deployments).unwrap();
    assert!(
        replaced < Duration::from_secs(5),
        "issue 14's goal: replacements Running within 5 s of the kill, took {replaced:?}"
    );

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
