//! Leader loss mid-rollout (issue 14): a three-node cluster rolls a six-replica Deployment to
//! a new template (maxSurge 1, maxUnavailable 1, pods Ready two seconds after they start),
//! and the Raft leader loses power halfway. A new leader is elected in under 2 s, the
//! rollout completes on the survivors with exactly six pods of the new template, the
//! Deployment never has fewer than five pods running but for those on the lost node, and
//! the commit's note is created exactly once in the notes history and carries the
//! survivors' acks.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_reconcilers::{ClusterState, PodPhase};
use kommit_tests::cluster::history::{check, Availability, Sampler};
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

fn web(version: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 6
  selector: {{matchLabels: {{app: web}}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080", "-h", "/"]
        env: [{{name: VERSION, value: "{version}"}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          initialDelaySeconds: 2
          periodSeconds: 1
        resources:
          requests: {{cpu: 10m, memory: 8Mi}}
"#
    )
}

/// The `web` pods of the state: (template hash, node, Running and ready).
fn web_pods(s: &ClusterState) -> Vec<(String, Option<String>, bool)> {
    s.pods
        .values()
        .filter(|p| p.name.starts_with("web-"))
        .map(|p| {
            (
                p.template_hash.clone(),
                p.node.clone(),
                p.phase == PodPhase::Running && p.ready,
            )
        })
        .collect()
}

/// How many times the notes history created the note of `commit` (`git log` of the notes
/// ref, added paths only; a note's path is the commit id, possibly fanned out).
fn note_creations(c: &Cluster, commit: &str) -> usize {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(&c.origin)
        .args([
            "log",
            "--format=",
            "--name-only",
            "--diff-filter=A",
            "refs/notes/kommit",
        ])
        .output()
        .expect("git log");
    assert!(out.status.success(), "git log of the notes ref");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.replace('/', "") == commit)
        .count()
}

#[test]
fn the_leader_lost_mid_rollout_the_rollout_completes_without_loss_or_duplicate() {
    if skip_privileged("cluster leader loss mid-rollout") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    std::fs::remove_dir_all(c.work.join("apps/hello")).unwrap();
    c.write("apps/web/web.yaml", &web(1));
    let v1 = c.push("web v1");
    c.wait_state(Duration::from_secs(120), "six v1 pods ready", |s| {
        s.commit.as_deref() == Some(v1.as_str())
            && web_pods(s).len() == 6
            && web_pods(s).iter().all(|p| p.2)
    });
    let old: BTreeSet<String> = web_pods(&c.node(1).state())
        .into_iter()
        .map(|p| p.0)
        .collect();

    let sampler = Sampler::start(c.watched(), Duration::from_millis(100));
    let deployments = [Availability {
        pod_prefix: "default.web-".into(),
        min_available: 5,
        from_ms: 0,
    }];

    c.write("apps/web/web.yaml", &web(2));
    let v2 = c.push("web v2");
    // Halfway: some pod of the new template ready, some old pod still there.
    c.wait_state(Duration::from_secs(60), "the rollout halfway", |s| {
        s.commit.as_deref() == Some(v2.as_str()) && {
            let pods = web_pods(s);
            pods.iter().any(|p| !old.contains(&p.0) && p.2)
                && pods.iter().any(|p| old.contains(&p.0))
        }
    });
    let leader = c.leader().expect("a leader");
    let li: usize = leader[1..].parse().unwrap();
    let killed = Instant::now();
    c.node_mut(li).power_off();
    c.wait(Duration::from_secs(10), "a new leader", |c| {
        c.leader().is_some_and(|l| l != leader)
    });
    let elected = killed.elapsed();
    let new_leader = c.leader().unwrap();
    println!(
        "TIMING leader_loss new_leader_ms={} ({leader} lost, {new_leader} leads)",
        elected.as_millis()
    );

    // The rollout completes on the survivors.
    c.wait_state(Duration::from_secs(90), "the rollout complete", |s| {
        let pods = web_pods(s);
        pods.len() == 6
            && pods
                .iter()
                .all(|p| !old.contains(&p.0) && p.2 && p.1.as_deref() != Some(leader.as_str()))
    });
    let completed = killed.elapsed();
    println!(
        "TIMING leader_loss rollout_complete_after_kill_ms={}",
        completed.as_millis()
    );
    let s = c.any_state().unwrap();
    let names_now: BTreeSet<&str> = s
        .pods
        .values()
        .filter(|p| p.name.starts_with("web-"))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names_now.len(),
        6,
        "six web pods, none twice: {names_now:?}"
    );

    // The commit's note: adopted, acknowledged by both survivors, created exactly once even
    // though its writer changed.
    let survivors: Vec<String> = c
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| *n != leader)
        .collect();
    let mut note = None;
    c.wait(
        Duration::from_secs(30),
        "v2's note with the survivors' acks",
        |c| {
            note = c
                .note(&v2)
                .and_then(|t| StatusNote::from_yaml(&v2, &t).ok());
            note.as_ref().is_some_and(|n| {
                n.state == CommitState::Adopted && survivors.iter().all(|s| n.acks.contains_key(s))
            })
        },
    );
    assert_eq!(note_creations(&c, &v2), 1, "v2's note created once");
    assert_eq!(note_creations(&c, &v1), 1, "v1's note created once");
    let v1_note = StatusNote::from_yaml(&v1, &c.note(&v1).unwrap()).unwrap();
    assert_eq!(v1_note.state, CommitState::Superseded);
    assert_eq!(v1_note.superseded_by.as_deref(), Some(v2.as_str()));

    // The lost node comes back and agrees.
    let url = c.url.clone();
    c.node_mut(li).power_on(&url);
    c.wait_state(
        Duration::from_secs(30),
        &format!("{leader} Ready again"),
        |s| s.nodes.get(&leader).is_some_and(|n| n.ready),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(20));
    println!("final digest at applied index {index}: {digest}");

    let history = sampler.finish();
    println!("history: {} rounds", history.len());
    check(&history, &deployments).unwrap();
    assert!(
        elected < Duration::from_secs(2),
        "issue 14's goal: a new leader within 2 s of the loss, took {elected:?}"
    );

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
