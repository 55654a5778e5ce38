//! The Git end of the pipeline on a real cluster: three in-process nodes replicate
//! `ClusterState`, each mirrors a bare repository, and the leader adopts valid heads, refuses
//! invalid ones and history rewrites with a note, writes `adopted`/`superseded` notes and the
//! `kommit/status` branch, and keeps doing so after the leader is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_daemon::cli::up::snapshot;
use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_daemon::git::writer::WriterConfig;
use kommit_daemon::sync::{GitConfig, GitSide, SyncConfig};
use kommit_reconcilers::ClusterState;
use kommit_tests::fixtures::{copy_dir, repo_template_dir};
use kommit_tests::sim::cluster::{name, wait_until, Cluster, Options};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().expect("git runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn note(origin: &Path, commit: &str) -> Option<StatusNote> {
    let o = origin.to_str().unwrap();
    let text = git(&["--git-dir", o, "notes", "--ref", "kommit", "show", commit])?;
    Some(StatusNote::from_yaml(commit, &text).expect("a kommit note"))
}

fn status_file(origin: &Path, path: &str) -> Option<String> {
    let o = origin.to_str().unwrap();
    git(&[
        "--git-dir",
        o,
        "show",
        &format!("refs/heads/kommit/status:{path}"),
    ])
}

struct Fixture {
    c: Cluster<ClusterState>,
    sides: BTreeMap<String, GitSide>,
    git: GitConfig,
    origin: PathBuf,
    work: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start_side(&mut self, n: &str) {
        let data = self.c.cfgs[n].data_dir.clone();
        let side = GitSide::start(&self.git, &data, self.c.node(n).shared()).expect("git side");
        self.sides.insert(n.to_string(), side);
    }

    async fn stop(&mut self, n: &str) {
        if let Some(s) = self.sides.remove(n) {
            s.stop().await;
        }
        self.c.stop(n).await;
    }

    fn commit_work(&self) -> String {
        snapshot(&self.work, &self.origin).expect("snapshot").0
    }

    /// Waits until every running node has adopted `commit`.
    async fn adopted_everywhere(&self, commit: &str) -> bool {
        wait_until(SETTLE, || {
            self.c
                .running()
                .all(|(_, n)| n.read_local(|s| s.commit.as_deref() == Some(commit)))
        })
        .await
    }

    async fn note_state(&self, commit: &str, state: CommitState) -> StatusNote {
        let mut last = None;
        let ok = wait_until(SETTLE, || {
            last = note(&self.origin, commit);
            last.as_ref().is_some_and(|n| n.state == state)
        })
        .await;
        assert!(ok, "note on {commit} never became {state:?}: {last:?}");
        last.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_adopts_refuses_and_reports_through_git() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let origin = dir.path().join("origin.git");
    copy_dir(&repo_template_dir(), &work);
    let first = snapshot(&work, &origin).unwrap().0;

    let c = Cluster::<ClusterState>::start(3, Options::default())
        .await
        .expect("start cluster");
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
    let mut f = Fixture {
        c,
        sides: BTreeMap::new(),
        git: git_cfg,
        origin,
        work,
        _dir: dir,
    };
    for i in 0..3 {
        f.start_side(&name(i));
    }

    // 1. The head is adopted on every node, noted, and reported on the status branch.
    assert!(f.adopted_everywhere(&first).await, "first commit adopted");
    let n = f.note_state(&first, CommitState::Adopted).await;
    let leader = f.c.leader().expect("leader");
    assert_eq!(n.by.as_deref(), Some(leader.as_str()));
    assert!(n.digest.is_some());
    assert!(
        wait_until(SETTLE, || status_file(
            &f.origin,
            "objects/default/Deployment/hello.yaml"
        )
        .is_some_and(|t| t.contains("replicas: 2")))
        .await,
        "status branch reports the Deployment"
    );
    assert!(
        wait_until(SETTLE, || status_file(&f.origin, "nodes/n0.yaml")
            .is_some_and(|t| t.contains("ready: true")))
        .await,
        "status branch reports the nodes"
    );

    // 2. An invalid commit is refused with the loader's diagnostics; the old one stays.
    let deployment = f.work.join("apps/hello/deployment.yaml");
    let good = std::fs::read_to_string(&deployment).unwrap();
    std::fs::write(&deployment, good.replace("replicas: 2", "replicas: many")).unwrap();
    let bad = f.commit_work();
    let n = f.note_state(&bad, CommitState::Refused).await;
    assert!(
        n.diagnostics
            .iter()
            .any(|d| d.starts_with("apps/hello/deployment.yaml:")),
        "{n:?}"
    );
    for (k, node) in f.c.running() {
        assert_eq!(
            node.read_local(|s| s.commit.clone()).as_deref(),
            Some(first.as_str()),
            "{k}"
        );
    }

    // 3. A valid fast-forward is adopted; the first commit is marked superseded.
    std::fs::write(&deployment, good.replace("replicas: 2", "replicas: 3")).unwrap();
    let second = f.commit_work();
    assert!(f.adopted_everywhere(&second).await, "second commit adopted");
    let n = f.note_state(&first, CommitState::Superseded).await;
    assert_eq!(n.superseded_by.as_deref(), Some(second.as_str()));
    assert!(f
        .c
        .running()
        .all(|(_, n)| n.read_local(|s| s.pods.len()) == 3));
    assert!(
        wait_until(SETTLE, || status_file(
            &f.origin,
            "objects/default/Deployment/hello.yaml"
        )
        .is_some_and(|t| t.contains("replicas: 3")))
        .await,
        "status follows the new commit"
    );

    // 4. A force-push that rewrites history is refused (kommit.yaml does not allow it).
    let o = f.origin.to_str().unwrap().to_string();
    let tree = git(&["--git-dir", &o, "rev-parse", &format!("{second}^{{tree}}")]).unwrap();
    let rewrite = {
        let out = Command::new("git")
            .args([
                "--git-dir",
                &o,
                "commit-tree",
                &tree,
                "-p",
                &first,
                "-m",
                "rewrite",
            ])
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["--git-dir", &o, "update-ref", "refs/heads/main", &rewrite]).unwrap();
    let n = f.note_state(&rewrite, CommitState::Refused).await;
    assert!(
        n.reason
            .as_deref()
            .is_some_and(|r| r.contains("history rewrite")),
        "{n:?}"
    );
    assert!(f
        .c
        .running()
        .all(|(_, n)| n.read_local(|s| s.commit.as_deref() == Some(second.as_str()))));

    // 5. Back on a fast-forward of the adopted commit, after the leader is killed: the new
    //    leader adopts it and signs the note.
    git(&["--git-dir", &o, "update-ref", "refs/heads/main", &second]).unwrap();
    let old_leader = f.c.leader().expect("leader");
    f.stop(&old_leader).await;
    assert!(
        wait_until(SETTLE, || f.c.leader().is_some_and(|l| l != old_leader)).await,
        "a new leader"
    );
    std::fs::write(&deployment, good.replace("replicas: 2", "replicas: 1")).unwrap();
    let third = f.commit_work();
    assert!(f.adopted_everywhere(&third).await, "third commit adopted");
    let n = f.note_state(&third, CommitState::Adopted).await;
    let new_leader = f.c.leader().expect("leader");
    assert_eq!(n.by.as_deref(), Some(new_leader.as_str()));
    assert_ne!(new_leader, old_leader);

    let names: Vec<String> = f.sides.keys().cloned().collect();
    for n in names {
        f.stop(&n).await;
    }
    f.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_repository_is_reported_not_fatal() {
    let c = Cluster::<ClusterState>::start(1, Options::default())
        .await
        .expect("start cluster");
    let missing = c.root.path().join("no-such-repo.git");
    let mut g = GitConfig::new(missing.to_str().unwrap(), "main");
    g.poll = Duration::from_millis(100);
    let data = c.cfgs[&name(0)].data_dir.clone();
    let side = GitSide::start(&g, &data, c.node(&name(0)).shared()).expect("starts anyway");
    let mut state = side.state.clone();
    assert!(
        wait_until(SETTLE, || {
            let s = state.borrow_and_update();
            s.fetches >= 2
                && s.fetch_error
                    .as_deref()
                    .is_some_and(|e| e.contains("no-such-repo"))
        })
        .await,
        "fetch errors are reported: {:?}",
        side.state.borrow()
    );
    assert!(c.node(&name(0)).read_local(|s| s.commit.is_none()));
    side.stop().await;
    c.shutdown().await;
}
