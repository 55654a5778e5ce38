//! SOPS-encrypted Secrets end to end, as root: one real `kommit daemon` with a bare
//! repository as its remote. One Secret is encrypted by `kommit secrets encrypt` to the
//! cluster's recipient, one by the same command to an identity made by Debian's
//! `age-keygen`. The pod that references both waits with `CreateContainerConfigError` (and
//! an event) while the node lacks the `age-keygen` identity, runs once
//! `kommit secrets key --import` adds it, and sees both plaintexts in its environment and
//! its mounted files (tmpfs mounts on the node). Then a byte search over the Raft log and its snapshots (the redb
//! file), the node's mirror, the remote's objects (status branch and notes included), and
//! the daemon's log finds no plaintext, neither in clear nor base64.
//!
//! Skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::{ClusterState, ContainerState, PodPhase, PodRecord};
use kommit_tests::agent_support::{git, tail, AgentNode};
use kommit_tests::fixtures::kommit_bin;
use kommit_tests::runtime_support::skip_privileged;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The plaintexts; none may appear anywhere but in the pod.
const KOMMIT_PLAIN: &str = "pl41n-from-kommit-encrypt-7Qx";
const AGE_PLAIN: &str = "pl41n-from-age-keygen-key-9Zr";
/// `AGE_PLAIN` as the Secret's `data` holds it.
const AGE_PLAIN_B64: &str = "cGw0MW4tZnJvbS1hZ2Uta2V5Z2VuLWtleS05WnI=";

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: sops-reader}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
    env:
    - name: FROM_KOMMIT
      valueFrom: {secretKeyRef: {name: kommit-sealed, key: password}}
    envFrom:
    - prefix: AGE_
      secretRef: {name: age-sealed}
    volumeMounts:
    - {name: a, mountPath: /etc/a, readOnly: true}
    - {name: b, mountPath: /etc/b, readOnly: true}
  volumes:
  - {name: a, secret: {secretName: kommit-sealed}}
  - {name: b, secret: {secretName: age-sealed}}
"#;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn reader(s: &ClusterState) -> Option<&PodRecord> {
    s.pods.get("default/sops-reader")
}

fn waiting(s: &ClusterState) -> Option<(String, String)> {
    match &reader(s)?.containers.first()?.state {
        Some(ContainerState::Waiting { reason, message }) => {
            Some((reason.clone(), message.clone().unwrap_or_default()))
        }
        _ => None,
    }
}

/// Every byte the files under `dir` hold.
fn bytes_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        let md = std::fs::symlink_metadata(&p).expect("metadata");
        if md.is_dir() {
            bytes_under(&p, out);
        } else if md.is_file() {
            out.push((p.display().to_string(), std::fs::read(&p).expect("read")));
        }
    }
}

/// Every object of a repository, decompressed (`git cat-file --batch-all-objects`).
fn git_objects(repo: &Path) -> Vec<u8> {
    Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .output()
        .expect("git cat-file")
        .stdout
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn encrypted_secrets_reach_only_the_pod() {
    if skip_privileged("SOPS secrets end to end") {
        return;
    }
    let mut n = AgentNode::new("sops", 216);
    // Snapshots early, so the search below covers some.
    n.extra_args = vec!["--snapshot-every".into(), "20".into()];
    n.push("the template");
    n.start();
    let scratch = n.dir.path().to_path_buf();

    // The cluster's recipient, made at bootstrap.
    let data = n.data.to_str().expect("utf8").to_string();
    let cluster = run(Command::new(kommit_bin()).args(["secrets", "key", "--data-dir", &data]));
    let cluster = cluster.trim().to_string();
    assert!(cluster.starts_with("age1"), "{cluster}");
    let key_file = n.data.join("secrets/age.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).expect("keyring").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // An operator's identity, made by Debian's age-keygen.
    let op_key = scratch.join("operator.key");
    run(Command::new("age-keygen").arg("-o").arg(&op_key));
    let op_recipient = run(Command::new("age-keygen").arg("-y").arg(&op_key));
    let op_recipient = op_recipient.trim().to_string();

    // Two Secrets, encrypted by `kommit secrets encrypt`: one to the cluster's recipient
    // (from the node's data dir), one to the age-keygen recipient only.
    let plain_a = scratch.join("a.yaml");
    std::fs::write(
        &plain_a,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: kommit-sealed\nstringData:\n  password: {KOMMIT_PLAIN}\n"),
    )
    .expect("write");
    let plain_b = scratch.join("b.yaml");
    std::fs::write(
        &plain_b,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: age-sealed\ntype: Opaque\ndata:\n  token: {AGE_PLAIN_B64}\n"),
    )
    .expect("write");
    let apps = n.work.join("apps");
    std::fs::create_dir_all(&apps).expect("apps");
    run(Command::new(kommit_bin())
        .args(["secrets", "encrypt"])
        .arg(&plain_a)
        .args(["--data-dir", &data, "-o"])
        .arg(apps.join("kommit-sealed.yaml")));
    run(Command::new(kommit_bin())
        .args(["secrets", "encrypt"])
        .arg(&plain_b)
        .args(["-r", &op_recipient, "--data-dir"])
        .arg(scratch.join("no-node"))
        .arg("-o")
        .arg(apps.join("age-sealed.yaml")));
    let sealed_b = std::fs::read_to_string(apps.join("age-sealed.yaml")).expect("read");
    assert!(sealed_b.contains(&op_recipient) && !sealed_b.contains(&cluster));
    // Debian's age opens the data key kommit wrapped for the age-keygen key (the format
    // is the tool's own), and `kommit secrets decrypt` with that key gives the plaintext.
    let shown = run(Command::new(kommit_bin())
        .args(["secrets", "decrypt"])
        .arg(apps.join("age-sealed.yaml"))
        .arg("-i")
        .arg(&op_key));
    assert!(shown.contains(AGE_PLAIN_B64), "{shown}");
    n.write("apps/sops-reader.yaml", POD);
    let c2 = n.push("two encrypted Secrets and their reader");

    // The node lacks the age-keygen identity: the pod waits, saying why, with an event.
    n.wait_state(
        Duration::from_secs(60),
        "sops-reader waiting with CreateContainerConfigError",
        |s| {
            s.commit.as_deref() == Some(c2.as_str())
                && waiting(s).is_some_and(|(r, m)| {
                    r == "CreateContainerConfigError"
                        && m.contains("secret default/age-sealed: cannot decrypt")
                })
        },
    );
    n.wait_state(Duration::from_secs(30), "a Failed event", |s| {
        reader(s).is_some_and(|p| {
            p.events
                .iter()
                .any(|e| e.reason == "Failed" && e.message.contains("age-sealed: cannot decrypt"))
        })
    });
    let (_, message) = waiting(&n.state()).expect("waiting");
    assert!(!message.contains('\n'), "{message}");

    // The operator imports the identity; the agent reads the keyring again and runs the pod.
    run(Command::new(kommit_bin())
        .args(["secrets", "key", "--import"])
        .arg(&op_key)
        .args(["--data-dir", &data]));
    let all =
        run(Command::new(kommit_bin()).args(["secrets", "key", "--all", "--data-dir", &data]));
    assert!(
        all.contains(&op_recipient) && all.contains(&cluster),
        "{all}"
    );
    n.wait_state(Duration::from_secs(60), "sops-reader Running", |s| {
        reader(s).is_some_and(|p| p.phase == PodPhase::Running)
    });

    // The pod sees the plaintext in its environment and its files.
    let exec = |cmd: &[&str]| {
        let mut args = vec!["exec", "sops-reader", "--"];
        args.extend_from_slice(cmd);
        let (ok, out, err) = n.kommit(&args);
        assert!(ok, "kommit exec {cmd:?}: {err}");
        out
    };
    let env = exec(&["env"]);
    assert!(
        env.contains(&format!("FROM_KOMMIT={KOMMIT_PLAIN}")),
        "{env}"
    );
    assert!(env.contains(&format!("AGE_token={AGE_PLAIN}")), "{env}");
    assert_eq!(exec(&["cat", "/etc/a/password"]), KOMMIT_PLAIN);
    assert_eq!(exec(&["cat", "/etc/b/token"]), AGE_PLAIN);
    // Both secret volumes are tmpfs mounts on the node: the plaintext is never on its disk.
    let vols = n.data.join("volumes");
    let vols = vols.to_str().expect("utf8");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let tmpfs = mounts
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1].starts_with(vols) && f[2] == "tmpfs"
        })
        .count();
    assert_eq!(tmpfs, 2, "{mounts}");

    // Let status, notes and a snapshot be written, then search.
    let origin = n.origin.clone();
    let notes_and_status = |_: &()| {
        let refs = git(&origin, &["for-each-ref", "--format=%(refname)"]);
        refs.contains("refs/notes/kommit") && refs.contains("refs/heads/kommit/status")
    };
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(30), || notes_and_status(&())),
        "notes and status branch pushed: {}",
        tail(&n.log(), 40)
    );
    let status = git(&origin, &["log", "--oneline", "kommit/status"]);
    assert!(!status.is_empty());
    std::thread::sleep(Duration::from_secs(2));
    n.kill9();

    let mut files = Vec::new();
    bytes_under(&n.data, &mut files);
    // The runtime keeps each container's config, its environment included, on the node's
    // disk: readable by root alone.
    let configs: Vec<&String> = files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p.contains("/pods/") && p.ends_with(".config"))
        .collect();
    assert!(!configs.is_empty());
    for p in configs {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(p).expect("config").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{p}");
    }
    let raft: Vec<_> = files.iter().filter(|(p, _)| p.ends_with(".redb")).collect();
    assert!(!raft.is_empty(), "no redb file under {}", n.data.display());
    let mut searched: Vec<(String, Vec<u8>)> =
        raft.iter().map(|(p, b)| (p.clone(), b.clone())).collect();
    searched.push((
        "the node's mirror".into(),
        git_objects(&n.data.join("mirror.git")),
    ));
    searched.push((
        "the remote (status branch, notes)".into(),
        git_objects(&origin),
    ));
    searched.push(("the daemon's log".into(), n.log().into_bytes()));
    // The search can see: the Secrets' names and ciphertext are where they should be.
    let redb: Vec<u8> = raft.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(contains(&redb, "age-sealed") && contains(&redb, "ENC[AES256_GCM"));
    let remote = git_objects(&origin);
    assert!(
        contains(&remote, "sops-reader"),
        "the status branch names the pod"
    );
    for (what, bytes) in &searched {
        for plain in [KOMMIT_PLAIN, AGE_PLAIN, AGE_PLAIN_B64] {
            assert!(!contains(bytes, plain), "{plain} found in {what}");
        }
    }
}
