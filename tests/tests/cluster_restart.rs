//! Full restart (issue 14): every daemon of a three-node cluster is SIGKILLed at once and
//! started again, as after a crash of the whole control plane. No container is restarted
//! (same process, same start time on every node), the cluster elects a leader and keeps
//! adopting commits, and every node ends with the same state digest. A history sampled every
//! 100 ms shows no pod going down and no at-most-once pod on two nodes.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_tests::cluster::history::{check, Availability, Sampler};
use kommit_tests::cluster::manifests::{web_and_solo_running, SOLO};
use kommit_tests::cluster::node::FirstStart;
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const APPS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
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

type Containers = BTreeMap<String, BTreeMap<(String, String), (Option<u32>, Option<u64>)>>;

fn containers(c: &Cluster) -> Containers {
    c.nodes
        .iter()
        .map(|n| (n.name.clone(), n.containers()))
        .collect()
}

#[test]
fn every_daemon_restarted_at_once_restarts_no_container() {
    if skip_privileged("cluster full restart") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    std::fs::remove_dir_all(c.work.join("apps/hello")).unwrap();
    c.write("apps/restart/apps.yaml", &format!("{APPS}---\n{SOLO}"));
    let commit = c.push("four web pods and an at-most-once one");
    c.wait_state(Duration::from_secs(120), "web and solo Running", |s| {
        s.commit.as_deref() == Some(commit.as_str()) && web_and_solo_running(s, 4, None)
    });
    // Every node's agent has reported its pods; what its runtime holds now must survive.
    std::thread::sleep(Duration::from_secs(1));
    let before = containers(&c);
    let total: usize = before.values().map(BTreeMap::len).sum();
    assert_eq!(total, 5, "five containers across the nodes: {before:?}");
    let restarts_before: BTreeMap<String, u32> = c
        .node(1)
        .state()
        .pods
        .iter()
        .map(|(k, p)| (k.clone(), p.restarts))
        .collect();

    let sampler = Sampler::start(c.watched(), Duration::from_millis(100));
    let deployments = [Availability {
        pod_prefix: "default.web-".into(),
        min_available: 4,
        from_ms: 0,
    }];
    std::thread::sleep(Duration::from_millis(300));

    // The whole control plane crashes at once ...
    for n in &mut c.nodes {
        n.kill9();
    }
    std::thread::sleep(Duration::from_millis(500));
    // ... and comes back.
    let restarted = Instant::now();
    let url = c.url.clone();
    for n in &mut c.nodes {
        n.start(&url, FirstStart::Restart);
    }
    c.wait(Duration::from_secs(30), "a leader after the restart", |c| {
        c.leader().is_some()
    });
    let leader_after = restarted.elapsed();
    c.wait_state(Duration::from_secs(30), "every node Ready again", |s| {
        s.nodes.values().all(|n| n.ready) && web_and_solo_running(s, 4, None)
    });
    let ready_after = restarted.elapsed();

    // The cluster keeps adopting commits.
    c.write(
        "apps/restart/apps.yaml",
        &format!("{}---\n{SOLO}", APPS.replace("replicas: 4", "replicas: 5")),
    );
    let next = c.push("five web pods");
    let pushed = Instant::now();
    c.wait_state(
        Duration::from_secs(60),
        "the next commit adopted and run",
        |s| s.commit.as_deref() == Some(next.as_str()) && web_and_solo_running(s, 5, None),
    );
    println!(
        "TIMING full_restart leader_ms={} all_ready_ms={} next_commit_running_ms={}",
        leader_after.as_millis(),
        ready_after.as_millis(),
        pushed.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_secs(1));

    // No container was restarted: every one seen before is there with its process and
    // start time, and the state counts no restart.
    let after = containers(&c);
    for (node, cs) in &before {
        for (key, was) in cs {
            assert_eq!(
                after[node].get(key),
                Some(was),
                "{node}: container {key:?} changed across the restart"
            );
        }
    }
    let s = c.node(1).state();
    for (k, n) in &restarts_before {
        assert_eq!(s.pods.get(k).map(|p| p.restarts), Some(*n), "{k} restarts");
    }
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(20));
    println!("final digest at applied index {index}: {digest}");

    let history = sampler.finish();
    println!("history: {} rounds", history.len());
    check(&history, &deployments).unwrap();

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
