//! Issue 4: status write-back (notes + kommit/status) pushed to real remotes and read back
//! by the git CLI; concurrent writers; outage + restart without loss or duplicates.

mod git_common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use git_common::*;
use kommit_daemon::git::mirror::Mirror;
use kommit_daemon::git::note::{CommitState, Health, ObjectHealth, StatusNote};
use kommit_daemon::git::push::Round;
use kommit_daemon::git::queue::Outbox;
use kommit_daemon::git::status::{Identity, NodeStatus, ObjectStatus, StatusChange};
use kommit_daemon::git::time::Timestamp;
use kommit_daemon::git::writer::{StatusWriter, WriterConfig};

const T0: i64 = 1_795_303_800;

fn writer(mirror: Mirror, data: &Path, interval_ms: u64) -> StatusWriter {
    let outbox = Outbox::open(data.join("outbox.redb"), 1000).expect("outbox");
    StatusWriter::new(
        mirror,
        outbox,
        Identity::node("n1"),
        WriterConfig {
            interval: Duration::from_millis(interval_ms),
            retry_min: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            max_batch: 100,
        },
    )
}

fn adopted(commit: &str, at: i64, acks: &[&str]) -> StatusNote {
    let mut n = StatusNote::new(oid(commit), CommitState::Adopted, Timestamp(at));
    n.by = Some("n1".into());
    n.acks = acks
        .iter()
        .map(|a| ((*a).to_owned(), Timestamp(at + 1)))
        .collect();
    n
}

fn node_change(source: &str, at: i64, node: &str) -> StatusChange {
    StatusChange {
        source_commit: source.to_owned(),
        at: Timestamp(at),
        nodes: [(
            node.to_owned(),
            Some(NodeStatus {
                version: 1,
                node: node.to_owned(),
                at: Timestamp(at),
                ready: true,
                commit: Some(source.to_owned()),
                pods: 3,
                message: None,
            }),
        )]
        .into(),
        objects: BTreeMap::new(),
    }
}

fn object_change(source: &str, at: i64) -> StatusChange {
    StatusChange {
        source_commit: source.to_owned(),
        at: Timestamp(at),
        nodes: BTreeMap::new(),
        objects: [(
            "default/Deployment/web".to_owned(),
            Some(ObjectStatus {
                version: 1,
                namespace: "default".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                at: Timestamp(at),
                health: Health::Progressing,
                replicas: Some(3),
                ready_replicas: Some(1),
                message: Some("1/3 ready".into()),
            }),
        )]
        .into(),
    }
}

fn remote_note(remote: &Path, commit: &str) -> StatusNote {
    let text = git(remote, &["notes", "--ref=kommit", "show", commit]);
    StatusNote::from_yaml(commit, &text).expect("a kommit note")
}

fn status_subjects(remote: &Path) -> Vec<String> {
    git(remote, &["log", "--format=%s", "kommit/status"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn schema_validator(def: &str) -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/status.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema file")).expect("json");
    let wrapper = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": schema["$defs"],
        "$ref": format!("#/$defs/{def}"),
    });
    jsonschema::validator_for(&wrapper).expect("schema compiles")
}

fn assert_valid(def: &str, yaml: &str) {
    let v: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
    let validator = schema_validator(def);
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{def} invalid: {errors:?}\n{yaml}");
}

#[test]
fn note_and_status_commit_are_pushed_and_read_back_by_git() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let c2 = f.commit(&[("apps/a.yaml", "x: 1\n")], "two");
    let data = f.dir.path().join("data");
    let w = writer(f.mirror(&f.url()), &data, 10);
    let mut note = adopted(&c2, T0, &["n1", "n2"]);
    note.objects.insert(
        "default/Deployment/web".into(),
        ObjectHealth {
            health: Health::Healthy,
            message: None,
            replicas: Some(2),
            ready_replicas: Some(2),
        },
    );
    note.updated = Some(Timestamp(T0 + 3));
    w.note(note.clone()).expect("queued");
    let diags = [kommit_daemon::git::loader::Diagnostic {
        path: "apps/a.yaml".into(),
        line: 1,
        col: 1,
        message: "missing apiVersion".into(),
    }];
    w.note(StatusNote::refused(oid(&c1), Timestamp(T0 - 5), &diags))
        .expect("queued");
    w.status(node_change(&c2, T0, "n1")).expect("queued");
    w.status(object_change(&c2, T0 + 1)).expect("queued");
    assert_eq!(w.outbox().len().expect("len"), 4);
    let round = w.round_blocking().expect("push");
    assert!(
        matches!(round, Round::Pushed { ref seqs, .. } if seqs.len() == 4),
        "{round:?}"
    );
    assert_eq!(w.outbox().len().expect("len"), 0);

    // git CLI reads the notes.
    assert_eq!(remote_note(&f.remote, &c2), note);
    let refused_text = git(&f.remote, &["notes", "--ref=kommit", "show", &c1]);
    assert!(refused_text.contains("state: refused"), "{refused_text}");
    assert!(
        refused_text.contains("apps/a.yaml:1:1: missing apiVersion"),
        "{refused_text}"
    );
    assert_valid("note", &refused_text);
    assert_valid(
        "note",
        &git(&f.remote, &["notes", "--ref=kommit", "show", &c2]),
    );

    // git CLI reads the status branch: one commit per change, naming the source commit.
    assert_eq!(
        status_subjects(&f.remote),
        vec![
            format!("kommit status for {c2}"),
            format!("kommit status for {c2}")
        ]
    );
    let body = git(&f.remote, &["log", "-1", "--format=%B", "kommit/status"]);
    assert!(body.contains(&format!("Kommit-Source: {c2}")), "{body}");
    assert_eq!(
        git(
            &f.remote,
            &["log", "-1", "--format=%an %ct", "kommit/status"]
        ),
        format!("kommit/n1 {}", T0 + 1),
        "commit identity and date come from the write, not a clock"
    );
    let files = git(
        &f.remote,
        &["ls-tree", "-r", "--name-only", "kommit/status"],
    );
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["nodes/n1.yaml", "objects/default/Deployment/web.yaml"]
    );
    let node = git(&f.remote, &["show", "kommit/status:nodes/n1.yaml"]);
    assert!(node.contains("ready: true"), "{node}");
    assert_valid("nodeStatus", &node);
    assert_valid(
        "objectStatus",
        &git(
            &f.remote,
            &["show", "kommit/status:objects/default/Deployment/web.yaml"],
        ),
    );

    // Nothing pending: the next round is idle.
    assert_eq!(w.round_blocking().expect("idle"), Round::Idle);
}

/// A concurrent writer updates the remote between our fetch and our push (from a
/// pre-receive hook): the push is rejected, and the next round merges and succeeds.
#[test]
fn concurrent_writer_forces_merge_and_retry() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let c2 = f.commit(&[("apps/a.yaml", "x: 1\n")], "two");
    let data = f.dir.path().join("data");
    let w = writer(f.mirror(&f.url()), &data, 10);
    w.note(adopted(&c1, T0, &["n1"])).expect("queued");
    w.status(node_change(&c1, T0, "n1")).expect("queued");
    assert!(matches!(
        w.round_blocking().expect("push"),
        Round::Pushed { .. }
    ));

    // The other writer: a note on c1 (acks n3), a note on c2, a commit on kommit/status.
    let other_note = {
        let mut n = adopted(&c1, T0 + 20, &["n1", "n3"]);
        n.by = Some("n9".into());
        n.to_yaml().expect("yaml")
    };
    let note_file = f.dir.path().join("other-note.yaml");
    std::fs::write(&note_file, other_note).expect("write");
    let hook = f.remote.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
set -e
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
[ -e "$0.done" ] && exit 0
touch "$0.done"
export GIT_COMMITTER_NAME=other GIT_COMMITTER_EMAIL=other@example.com GIT_AUTHOR_NAME=other GIT_AUTHOR_EMAIL=other@example.com
git notes --ref=kommit add -f -F '{note}' {c1}
git notes --ref=kommit add -f -m 'free text from another tool' {c2}
export GIT_INDEX_FILE="$0.index"
git read-tree refs/heads/kommit/status
blob=$(printf 'node: other\n' | git hash-object -w --stdin)
git update-index --add --cacheinfo 100644,$blob,nodes/other.yaml
tree=$(git write-tree)
c=$(git commit-tree $tree -p refs/heads/kommit/status -m "other writer")
git update-ref refs/heads/kommit/status $c
"#,
            note = note_file.display()
        ),
    )
    .expect("hook");
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&hook).expect("meta").permissions(),
        0o755,
    );
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    w.note(adopted(&c1, T0 + 10, &["n2"])).expect("queued");
    w.status(object_change(&c1, T0 + 10)).expect("queued");
    let first = w.round_blocking().expect("round");
    assert!(
        matches!(first, Round::Rejected { .. }),
        "expected a rejection, got {first:?}"
    );
    assert!(
        f.remote.join("hooks/pre-receive.done").exists(),
        "the concurrent writer ran"
    );
    assert_eq!(
        w.outbox().len().expect("len"),
        2,
        "nothing is lost on rejection"
    );
    let second = w.round_blocking().expect("round");
    assert!(matches!(second, Round::Pushed { .. }), "{second:?}");
    assert_eq!(
        w.stats()
            .rejections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // Notes: union per commit.
    let merged = remote_note(&f.remote, &c1);
    assert_eq!(
        merged.acks.keys().cloned().collect::<Vec<_>>(),
        ["n1", "n2", "n3"]
    );
    assert_eq!(merged.at, Timestamp(T0 + 20), "the later state wins");
    assert_eq!(
        git(&f.remote, &["notes", "--ref=kommit", "show", &c2]),
        "free text from another tool"
    );
    // Status branch: our change re-applied on top of the other writer's commit.
    assert_eq!(
        status_subjects(&f.remote),
        vec![
            format!("kommit status for {c1}"),
            "other writer".to_owned(),
            format!("kommit status for {c1}")
        ]
    );
    let files = git(
        &f.remote,
        &["ls-tree", "-r", "--name-only", "kommit/status"],
    );
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [
            "nodes/n1.yaml",
            "nodes/other.yaml",
            "objects/default/Deployment/web.yaml"
        ]
    );
}

const CHILD_ENV: &str = "KOMMIT_GIT_TEST_CHILD";

fn queue_writes(w: &StatusWriter, commits: &[String]) {
    for (i, c) in commits.iter().enumerate() {
        w.note(adopted(c, T0 + i as i64, &["n1"])).expect("queued");
    }
    w.status(node_change(&commits[0], T0, "n1"))
        .expect("queued");
    w.status(node_change(&commits[1], T0 + 1, "n2"))
        .expect("queued");
}

/// The remote goes down, writes are queued, the process is killed (SIGKILL) and restarted,
/// the remote comes back: every queued write arrives exactly once.
#[test]
fn remote_down_then_restart_delivers_every_write_exactly_once() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        // Child process: queue writes against the unreachable remote, report, wait to be killed.
        let parts: Vec<&str> = spec.split('|').collect();
        let mirror = Mirror::open(
            parts[1],
            kommit_daemon::git::mirror::RemoteConfig::new(parts[2], "main"),
        )
        .expect("mirror");
        let w = writer(mirror, Path::new(parts[0]), 10);
        let commits: Vec<String> = parts[3].split(',').map(str::to_owned).collect();
        queue_writes(&w, &commits);
        let err = w.round_blocking().expect_err("remote is down");
        println!("QUEUED {} ({err})", w.outbox().len().expect("len"));
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    let f = Fixture::new();
    let commits = [
        f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one"),
        f.commit(&[("apps/a.yaml", "x: 1\n")], "two"),
        f.commit(&[("apps/b.yaml", "x: 2\n")], "three"),
    ];
    let mut daemon = GitDaemon::start(f.dir.path());
    let url = daemon.url("remote.git");
    let data = f.dir.path().join("data");
    let mirror_path = data.join("mirror.git");
    daemon.stop();

    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "remote_down_then_restart_delivers_every_write_exactly_once",
            "--nocapture",
        ])
        .env(
            CHILD_ENV,
            format!(
                "{}|{}|{url}|{}",
                data.display(),
                mirror_path.display(),
                commits.join(",")
            ),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let stdout = child.stdout.take().expect("stdout");
    let mut queued = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("QUEUED ") {
            queued = Some(rest.to_owned());
            break;
        }
    }
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    let queued = queued.expect("child queued its writes");
    assert!(queued.starts_with("5 "), "{queued}");

    // Restarted process: same data dir, remote restored.
    daemon = GitDaemon::start_on(f.dir.path(), daemon.port);
    let mirror = Mirror::open(
        &mirror_path,
        kommit_daemon::git::mirror::RemoteConfig::new(url.clone(), "main"),
    )
    .expect("mirror");
    let w = writer(mirror.clone(), &data, 10);
    assert_eq!(
        w.outbox().len().expect("len"),
        5,
        "the restart lost nothing"
    );
    let snapshot = data.join("outbox-before-push.redb");
    drop(w);
    std::fs::copy(data.join("outbox.redb"), &snapshot).expect("copy");
    let w = writer(mirror.clone(), &data, 10);
    assert!(
        matches!(w.round_blocking().expect("push"), Round::Pushed { ref seqs, .. } if seqs.len() == 5)
    );
    drop(w);

    // A crash between a successful push and the outbox removal: the same writes again.
    std::fs::copy(&snapshot, data.join("outbox.redb")).expect("restore");
    let w = writer(mirror, &data, 10);
    assert_eq!(w.outbox().len().expect("len"), 5);
    assert!(matches!(
        w.round_blocking().expect("push"),
        Round::Pushed { .. }
    ));
    assert_eq!(w.outbox().len().expect("len"), 0);

    let listed = git(&f.remote, &["notes", "--ref=kommit", "list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for (i, c) in commits.iter().enumerate() {
        assert_eq!(
            remote_note(&f.remote, c),
            adopted(c, T0 + i as i64, &["n1"])
        );
    }
    let bodies = git(&f.remote, &["log", "--format=%B", "kommit/status"]);
    let ids: Vec<&str> = bodies
        .lines()
        .filter(|l| l.starts_with("Kommit-Write: "))
        .collect();
    assert_eq!(ids.len(), 2, "each status write exactly once: {bodies}");
    assert_ne!(ids[0], ids[1]);
    drop(daemon);
}

/// With the run loop active, writes made in a burst go out in few pushes (coalescing), and
/// everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_loop_coalesces_pushes() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let data = f.dir.path().join("data");
    let w = writer(f.mirror(&f.url()), &data, 500);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(w.clone().run(stop_rx));
    for i in 0..10 {
        w.status(node_change(&c1, T0 + i, &format!("n{i}")))
            .expect("queued");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.outbox().len().expect("len") > 0 {
        assert!(Instant::now() < deadline, "writes never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).expect("stop");
    task.await.expect("loop ends");
    let pushes = w.stats().pushes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=2).contains(&pushes),
        "10 writes in a burst took {pushes} pushes"
    );
    assert_eq!(
        status_subjects(&f.remote).len(),
        10,
        "one commit per status change"
    );
}

/// Smart HTTPS (private CA) with basic auth: fetch with gix (credentials by callback, CA
/// from config) and push with the git CLI (credentials and CA in its environment), through a
/// server that refuses anonymous access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_https_with_basic_auth_fetches_and_pushes() {
    use kommit_daemon::git::mirror::{Credentials, RemoteConfig};
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let ca = f.dir.path().join("ca.pem");
    let (addr, server) =
        git_common::http::serve_tls(f.dir.path().to_owned(), "kommit", "t0ken", &ca).await;
    let url = format!("https://{addr}/remote.git");
    let open = |credentials: Credentials, ca_file: Option<std::path::PathBuf>, name: &str| {
        Mirror::open(
            f.dir.path().join(name),
            RemoteConfig {
                url: url.clone(),
                branch: "main".into(),
                credentials,
                ca_file,
            },
        )
        .expect("mirror")
    };
    let basic = Credentials::Basic {
        username: "kommit".into(),
        password: "t0ken".into(),
    };
    for (mirror, why) in [
        (
            open(Credentials::None, Some(ca.clone()), "anon.git"),
            "anonymous",
        ),
        (
            open(basic.clone(), None, "untrusted.git"),
            "untrusted certificate",
        ),
        (
            open(
                Credentials::Basic {
                    username: "kommit".into(),
                    password: "wrong".into(),
                },
                Some(ca.clone()),
                "wrong.git",
            ),
            "wrong password",
        ),
    ] {
        let r = tokio::task::spawn_blocking(move || mirror.fetch())
            .await
            .expect("task");
        assert!(r.is_err(), "{why} fetch must fail");
    }

    let mirror = open(basic, Some(ca.clone()), "auth.git");
    let m = mirror.clone();
    let fetched = tokio::task::spawn_blocking(move || m.fetch())
        .await
        .expect("task")
        .expect("fetch");
    assert_eq!(fetched.head, Some(oid(&c1)));

    let data = f.dir.path().join("data-https");
    let w = writer(mirror, &data, 10);
    w.note(adopted(&c1, T0, &["n1"])).expect("queued");
    w.status(node_change(&c1, T0, "n1")).expect("queued");
    let round = w.round().await.expect("push over https");
    assert!(matches!(round, Round::Pushed { .. }), "{round:?}");
    assert_eq!(remote_note(&f.remote, &c1), adopted(&c1, T0, &["n1"]));
    assert_eq!(
        status_subjects(&f.remote),
        vec![format!("kommit status for {c1}")]
    );
    server.abort();
}

/// The same note queued again (by a new leader, with only a later `updated`) lands nowhere;
/// a note whose content changed (a new ack) updates the one note, it is not duplicated.
#[test]
fn a_note_written_twice_lands_once_and_a_changed_note_updates_it() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let data = f.dir.path().join("data");
    let w = writer(f.mirror(&f.url()), &data, 10);
    let notes_commits = || {
        git(&f.remote, &["log", "--format=%H", "refs/notes/kommit"])
            .lines()
            .count()
    };
    let mut first = adopted(&c1, T0, &["n1"]);
    first.updated = Some(Timestamp(T0 + 1));
    w.note(first.clone()).expect("queued");
    assert!(matches!(
        w.round_blocking().expect("push"),
        Round::Pushed { .. }
    ));
    assert_eq!(notes_commits(), 1);

    let mut again = first.clone();
    again.updated = Some(Timestamp(T0 + 50));
    w.note(again.clone()).expect("queued");
    w.note(first.clone()).expect("queued");
    assert!(matches!(
        w.round_blocking().expect("push"),
        Round::Pushed { .. }
    ));
    assert_eq!(notes_commits(), 1, "an unchanged note is not rewritten");
    assert_eq!(remote_note(&f.remote, &c1), first);

    let mut acked = adopted(&c1, T0, &["n1", "n2"]);
    acked.updated = Some(Timestamp(T0 + 60));
    w.note(acked.clone()).expect("queued");
    assert!(matches!(
        w.round_blocking().expect("push"),
        Round::Pushed { .. }
    ));
    assert_eq!(notes_commits(), 2, "the new ack is one update");
    assert_eq!(
        git(&f.remote, &["notes", "--ref=kommit", "list"])
            .lines()
            .count(),
        1
    );
    let got = remote_note(&f.remote, &c1);
    assert_eq!(got, acked);
    assert_valid(
        "note",
        &git(&f.remote, &["notes", "--ref=kommit", "show", &c1]),
    );
}
