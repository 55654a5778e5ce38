//! Bad commit under load (issue 14): fifty commits pushed to a three-node cluster in quick
//! succession, each calling every node's push webhook, one of them invalid. Only valid
//! commits are adopted; every adopted commit but the last ends noted as superseded, by a
//! later commit of the run; the invalid one is refused with its `file:line:col`; the state
//! in force is the last commit's, with the same digest on every node.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const COMMITS: usize = 50;
const BAD: usize = 25;

fn config_map(n: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: counter}}\ndata:\n  count: \"{n}\"\n"
    )
}

/// A Deployment whose `replicas` is not a number: refused at line 5, column 13.
const BAD_FILE: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicas: many\n  selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n    spec:\n      containers: [{name: c, image: busybox:1.36}]\n";

#[test]
fn fifty_quick_commits_one_invalid_only_valid_ones_adopted() {
    if skip_privileged("cluster commit storm") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    c.write("apps/storm/counter.yaml", &config_map(0));
    let first = c.push("counter 0");
    c.wait_state(Duration::from_secs(120), "counter 0 adopted", |s| {
        s.commit.as_deref() == Some(first.as_str())
    });

    let started = Instant::now();
    let mut commits = Vec::new();
    for i in 1..=COMMITS {
        if i == BAD {
            c.write("apps/storm/bad.yaml", BAD_FILE);
            let bad = c.push(&format!("commit {i}: invalid"));
            // The invalid commit must be seen to be refused: hold the storm until its note
            // says so (a commit that is never a fetched head is never decided at all).
            c.wait(Duration::from_secs(60), "the invalid commit refused", |c| {
                c.note(&bad).is_some_and(|t| {
                    StatusNote::from_yaml(&bad, &t).is_ok_and(|n| n.state == CommitState::Refused)
                })
            });
            commits.push(bad);
            continue;
        }
        if i == BAD + 1 {
            std::fs::remove_file(c.work.join("apps/storm/bad.yaml")).unwrap();
        }
        c.write("apps/storm/counter.yaml", &config_map(i));
        commits.push(c.push(&format!("commit {i}")));
    }
    let last = commits.last().unwrap().clone();
    let pushed = started.elapsed();
    let took = c.wait_state(Duration::from_secs(60), "the last commit in force", |s| {
        s.commit.as_deref() == Some(last.as_str())
    });
    println!(
        "TIMING commit_storm commits={COMMITS} pushed_ms={} last_adopted_after_ms={}",
        pushed.as_millis(),
        took.as_millis()
    );
    let s = c.node(1).state();
    assert_eq!(
        s.desired.config_maps["default/counter"].data["count"],
        COMMITS.to_string(),
        "the state in force is the last commit's"
    );
    assert!(!s.desired.deployments.contains_key("default/bad"));

    // Every note settles: the last commit adopted, every other adopted one superseded by a
    // later commit of the run, the invalid one refused with its position.
    let position: BTreeMap<&str, usize> = commits
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut notes = BTreeMap::new();
    c.wait(Duration::from_secs(60), "the notes settled", |c| {
        notes = commits
            .iter()
            .filter_map(|id| {
                let text = c.note(id)?;
                Some((
                    id.clone(),
                    StatusNote::from_yaml(id, &text).expect("a kommit note"),
                ))
            })
            .collect::<BTreeMap<String, StatusNote>>();
        notes
            .get(&last)
            .is_some_and(|n| n.state == CommitState::Adopted)
            && notes
                .iter()
                .all(|(id, n)| *id == last || n.state != CommitState::Adopted)
    });
    let bad = &commits[BAD - 1];
    let refused = &notes[bad];
    assert_eq!(refused.state, CommitState::Refused);
    assert!(
        refused
            .diagnostics
            .iter()
            .any(|d| d.starts_with("apps/storm/bad.yaml:5:13:")),
        "the refusal names the file, line and column: {:?}",
        refused.diagnostics
    );
    let mut superseded = 0;
    for (id, n) in &notes {
        match n.state {
            CommitState::Adopted => assert_eq!(*id, last, "only the last commit is in force"),
            CommitState::Refused => assert_eq!(id, bad, "only the invalid commit is refused"),
            CommitState::Superseded => {
                superseded += 1;
                let by = n.superseded_by.as_deref().expect("superseded by a commit");
                assert!(
                    position.get(by).is_some_and(|p| *p > position[id.as_str()]),
                    "{id} superseded by {by}, a later commit of the run"
                );
            }
        }
    }
    println!(
        "notes: {} of {COMMITS} commits noted ({superseded} superseded, 1 refused, 1 in force)",
        notes.len()
    );
    let (index, digest) = c.wait_equal_digests(Duration::from_secs(20));
    println!("final digest at applied index {index}: {digest}");

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
