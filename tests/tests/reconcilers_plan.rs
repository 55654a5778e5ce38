//! `kommit plan` is deterministic: the same output twice and with the inventory reversed.
#![allow(clippy::unwrap_used)]

use kommit_daemon::cli::plan::{output, Args, Format};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The inventory with its node list reversed (each `- name:` block moved as a whole).
fn reversed_inventory(text: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    let mut head = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("- name:") {
            blocks.push(String::new());
        }
        match blocks.last_mut() {
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {
                head.push_str(line);
                head.push('\n');
            }
        }
    }
    assert!(blocks.len() >= 3, "the inventory lists at least 3 nodes");
    blocks.reverse();
    head + &blocks.concat()
}

fn plan(repo: &Path, nodes: &Path, format: Format) -> (String, u8) {
    output(&Args {
        path: repo.into(),
        nodes: nodes.into(),
        format,
        fail_on_pending: false,
    })
    .unwrap()
}

fn check_deterministic(repo: &Path) -> String {
    let inv = root().join("tests/fixtures/nodes-3.yaml");
    let dir = tempfile::tempdir().unwrap();
    let rev = dir.path().join("nodes-reversed.yaml");
    let text = std::fs::read_to_string(&inv).unwrap();
    let rtext = reversed_inventory(&text);
    assert_ne!(text, rtext);
    std::fs::write(&rev, rtext).unwrap();
    for format in [Format::Text, Format::Json] {
        let a = plan(repo, &inv, format);
        let b = plan(repo, &inv, format);
        let c = plan(repo, &rev, format);
        assert_eq!(a.1, 0, "{}", a.0);
        assert_eq!(a, b, "same inputs, different plans");
        assert_eq!(a, c, "reversed inventory, different plan");
    }
    plan(repo, &inv, Format::Text).0
}

#[test]
fn plan_fixture_is_deterministic_and_explains_pending_pods() {
    let out = check_deterministic(&root().join("tests/fixtures/plan-repo"));
    let line =
        |prefix: &str| -> Vec<&str> { out.lines().filter(|l| l.starts_with(prefix)).collect() };
    // Two db replicas fit (ssd nodes, one per host); two are Pending with the reason.
    let db = line("default/db-");
    assert_eq!(db.len(), 4);
    assert_eq!(db.iter().filter(|l| l.contains("<none>")).count(), 2);
    assert!(out.contains("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: batch}, 2 node(s) didn't match pod anti-affinity rules."), "{out}");
    assert!(out.contains("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: batch}, 2 Insufficient cpu."), "{out}");
    // The DaemonSet tolerates the taint: one pod on each node.
    let agents = line("default/node-agent-");
    assert_eq!(agents.len(), 3);
    for n in ["node-a", "node-b", "node-c"] {
        assert_eq!(
            agents
                .iter()
                .filter(|l| l.split_whitespace().nth(1) == Some(n))
                .count(),
            1,
            "{out}"
        );
    }
    // Pod IPs come from kommit.yaml's podCIDR.
    assert!(
        line("default/web-").iter().all(|l| l.contains("10.42.")),
        "{out}"
    );
    assert!(out.contains("12 pods: 9 placed, 3 pending"), "{out}");
}

#[test]
fn plan_repo_template_is_deterministic() {
    let repo = root().join("repo-template");
    let out = check_deterministic(&repo);
    // The template's Deployment has 2 replicas, and every one finds a node.
    assert!(out.contains("2 pods: 2 placed, 0 pending"), "{out}");
}

#[test]
fn plan_fails_on_pending_when_asked_and_on_invalid_repos() {
    let inv = root().join("tests/fixtures/nodes-3.yaml");
    let args = Args {
        path: root().join("tests/fixtures/plan-repo"),
        nodes: inv.clone(),
        format: Format::Text,
        fail_on_pending: true,
    };
    assert_eq!(output(&args).unwrap().1, 3);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec: {}\n",
    )
    .unwrap();
    let (text, code) = plan(dir.path(), &inv, Format::Text);
    assert_eq!(code, 1);
    assert!(text.contains("bad.yaml:"), "{text}");
}

const STS: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  serviceName: db\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n        - name: db\n          image: postgres:16\n          resources:\n            requests: {cpu: 100m, memory: 64Mi}\n          volumeMounts:\n            - {name: data, mountPath: /data}\n  volumeClaimTemplates:\n    - metadata: {name: data}\n      spec:\n        accessModes: [ReadWriteOnce]\n        resources:\n          requests: {storage: 1Gi}\n";
const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  clusterIP: None\n  selector: {app: db}\n  ports:\n    - port: 5432\n";
const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  completions: 4\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: m\n          image: busybox\n          resources:\n            requests: {cpu: 50m, memory: 32Mi}\n";

#[test]
fn plan_shows_stateful_set_ordinals_and_job_pods_whatever_the_layout() {
    let kommit =
        std::fs::read_to_string(root().join("tests/fixtures/plan-repo/kommit.yaml")).unwrap();
    // One file per object.
    let a = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("kommit.yaml"), &kommit).unwrap();
    std::fs::create_dir_all(a.path().join("apps/db")).unwrap();
    std::fs::write(a.path().join("apps/db/sts.yaml"), STS).unwrap();
    std::fs::write(a.path().join("apps/db/svc.yaml"), SVC).unwrap();
    std::fs::write(a.path().join("job.yaml"), JOB).unwrap();
    // Everything in one multi-document file, in another order.
    let b = tempfile::tempdir().unwrap();
    std::fs::write(b.path().join("kommit.yaml"), &kommit).unwrap();
    std::fs::write(
        b.path().join("all.yaml"),
        format!("{JOB}---\n{SVC}---\n{STS}"),
    )
    .unwrap();
    let out = check_deterministic(a.path());
    assert_eq!(out, check_deterministic(b.path()), "layouts plan alike");
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("default/db-") || n.starts_with("default/migrate-"))
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("default/db-"))
            .copied()
            .collect::<Vec<_>>(),
        vec!["default/db-0", "default/db-1", "default/db-2"],
        "{out}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("default/migrate-"))
            .count(),
        2,
        "parallelism 2: {out}"
    );
    assert!(out.contains("5 pods: 5 placed, 0 pending"), "{out}");
}
