//! Notes follow the replicated state, not the node that proposed the entry: a leader that
//! adopts a commit and refuses another, then goes away before writing any note, leaves both
//! notes to the next leader, which writes each exactly once; an `Ack` entry then updates the
//! adopted note in place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_daemon::cli::up::snapshot;
use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_daemon::git::writer::WriterConfig;
use kommit_daemon::sync::{GitConfig, GitSide, SyncConfig};
use kommit_reconcilers::{ClusterState, CommitOutcome, Entry};
use kommit_tests::fixtures::{copy_dir, repo_template_dir};
use kommit_tests::sim::cluster::{name, wait_until, Cluster, Options};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);

fn git(origin: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(origin)
        .args(args)
        .output()
        .expect("git runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn note(origin: &Path, commit: &str) -> Option<StatusNote> {
    let text = git(origin, &["notes", "--ref", "kommit", "show", commit])?;
    Some(StatusNote::from_yaml(commit, &text).expect("a kommit note"))
}

/// Every version of the note on `commit` in the history of `refs/notes/kommit`, oldest
/// first, with the author of the notes commit that wrote it.
fn versions(origin: &Path, commit: &str) -> Vec<(String, StatusNote)> {
    let Some(list) = git(origin, &["rev-list", "--reverse", "refs/notes/kommit"]) else {
        return Vec::new();
    };
    let mut out: Vec<(String, StatusNote)> = Vec::new();
    let mut last_blob = None;
    for c in list.lines() {
        let names = git(origin, &["ls-tree", "-r", "--name-only", c]).unwrap();
        let Some(path) = names.lines().find(|p| p.replace('/', "") == commit) else {
            continue;
        };
        let blob = git(origin, &["rev-parse", &format!("{c}:{path}")]).unwrap();
        if last_blob.as_ref() == Some(&blob) {
            continue;
        }
        last_blob = Some(blob);
        let text = git(origin, &["show", &format!("{c}:{path}")]).unwrap();
        let author = git(origin, &["log", "-1", "--format=%an", c]).unwrap();
        out.push((author, StatusNote::from_yaml(commit, &text).expect("note")));
    }
    out
}

/// Each write of the note changed what it says: nothing was written twice.
fn assert_no_rewrites(origin: &Path, commit: &str) -> Vec<(String, StatusNote)> {
    let v = versions(origin, commit);
    for w in v.windows(2) {
        assert!(
            !w[0].1.same_content(&w[1].1),
            "the note on {commit} was rewritten without a change: {:?}",
            w[1]
        );
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notes_survive_a_leader_lost_between_the_entry_and_its_note() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let origin = dir.path().join("origin.git");
    copy_dir(&repo_template_dir(), &work);
    let first = snapshot(&work, &origin).unwrap().0;

    let mut c = Cluster::<ClusterState>::start(3, Options::default())
        .await
        .expect("start cluster");
    assert!(
        wait_until(SETTLE, || c.leader().is_some()).await,
        "a leader"
    );
    let old = c.leader().expect("leader");
    let mut git_cfg = GitConfig::new(origin.to_str().unwrap(), "main");
    git_cfg.poll = Duration::from_millis(200);
    git_cfg.sync = SyncConfig {
        status_every: Duration::from_millis(300),
        ..Default::default()
    };
    git_cfg.writer = WriterConfig {
        interval: Duration::from_millis(100),
        ..Default::default()
    };
    // The first leader proposes entries but never writes a note: it is as if it went away
    // right after each apply.
    let mut silent = git_cfg.clone();
    silent.sync.write_notes = false;
    let mut sides: BTreeMap<String, GitSide> = BTreeMap::new();
    for i in 0..3 {
        let n = name(i);
        let cfg = if n == old { &silent } else { &git_cfg };
        let data = c.cfgs[&n].data_dir.clone();
        sides.insert(
            n.clone(),
            GitSide::start(cfg, &data, c.node(&n).shared()).expect("git side"),
        );
    }

    // 1. The first leader adopts the head, then refuses an invalid commit.
    assert!(
        wait_until(SETTLE, || c.running().all(
            |(_, n)| n.read_local(|s| s.commit.as_deref() == Some(first.as_str()))
        ))
        .await,
        "first commit adopted"
    );
    let deployment = work.join("apps/hello/deployment.yaml");
    let good = std::fs::read_to_string(&deployment).unwrap();
    std::fs::write(&deployment, good.replace("replicas: 2", "replicas: many")).unwrap();
    let bad = snapshot(&work, &origin).unwrap().0;
    assert!(
        wait_until(SETTLE, || c
            .running()
            .all(|(_, n)| n.read_local(|s| s.history.is_refused(&bad))))
        .await,
        "the refusal is in the replicated state"
    );
    assert_eq!(
        c.leader().as_deref(),
        Some(old.as_str()),
        "leadership moved on its own"
    );
    let record = c.node(&old).read_local(|s| s.history.get(&first).cloned());
    let record = record.expect("the adoption is recorded");
    assert_eq!(record.by.as_deref(), Some(old.as_str()));
    let CommitOutcome::Adopted { digest, .. } = record.outcome else {
        panic!("{record:?}");
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        note(&origin, &first).is_none(),
        "the first leader wrote no note"
    );
    assert!(
        note(&origin, &bad).is_none(),
        "the first leader wrote no note"
    );

    // 2. The leader goes away; the next one writes both notes from the state.
    sides.remove(&old).expect("side").stop().await;
    c.stop(&old).await;
    assert!(
        wait_until(SETTLE, || c.leader().is_some_and(|l| l != old)).await,
        "a new leader"
    );
    let new = c.leader().expect("leader");
    let mut adopted = None;
    assert!(
        wait_until(SETTLE, || {
            adopted = note(&origin, &first);
            adopted.is_some()
        })
        .await,
        "the new leader wrote the adopted note"
    );
    let adopted = adopted.unwrap();
    assert_eq!(adopted.state, CommitState::Adopted);
    assert_eq!(
        adopted.by.as_deref(),
        Some(old.as_str()),
        "signed by the proposer"
    );
    assert_eq!(adopted.digest.as_deref(), Some(digest.as_str()));
    assert!(
        adopted.objects.contains_key("default/Deployment/hello"),
        "{adopted:?}"
    );
    let mut refused = None;
    assert!(
        wait_until(SETTLE, || {
            refused = note(&origin, &bad);
            refused.is_some()
        })
        .await,
        "the new leader wrote the refused note"
    );
    let refused = refused.unwrap();
    assert_eq!(refused.state, CommitState::Refused);
    assert_eq!(refused.by.as_deref(), Some(old.as_str()));
    assert!(
        refused
            .diagnostics
            .iter()
            .any(|d| d.starts_with("apps/hello/deployment.yaml:")),
        "{refused:?}"
    );

    // 3. An Ack for the adopted commit updates its note.
    c.node(&new)
        .propose(&Entry::Ack {
            node: new.clone(),
            commit: first.clone(),
        })
        .await
        .expect("ack");
    let mut acked = None;
    assert!(
        wait_until(SETTLE, || {
            acked = note(&origin, &first);
            acked.as_ref().is_some_and(|n| n.acks.contains_key(&new))
        })
        .await,
        "the ack reached the note: {acked:?}"
    );
    let acked = acked.unwrap();
    assert_eq!((acked.state, acked.at), (CommitState::Adopted, adopted.at));

    // 4. Exactly once: one note per commit, each write by the new leader, and no write that
    //    did not change what the note says (several more status rounds have passed).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listed = git(&origin, &["notes", "--ref", "kommit", "list"]).unwrap();
    for commit in [&first, &bad] {
        assert_eq!(
            listed
                .lines()
                .filter(|l| l.ends_with(commit.as_str()))
                .count(),
            1,
            "{listed}"
        );
    }
    let firsts = assert_no_rewrites(&origin, &first);
    assert!(firsts.len() >= 2, "adopted, then acked: {firsts:?}");
    assert_eq!(firsts[0].1.state, CommitState::Adopted);
    assert!(firsts.iter().all(|(_, n)| n.state == CommitState::Adopted));
    let bads = assert_no_rewrites(&origin, &bad);
    assert_eq!(bads.len(), 1, "the refusal is written once: {bads:?}");
    for (author, n) in firsts.iter().chain(&bads) {
        assert_eq!(author, &format!("kommit/{new}"), "{n:?}");
    }

    for (_, s) in sides {
        s.stop().await;
    }
    c.shutdown().await;
}
