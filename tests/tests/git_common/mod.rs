//! Shared fixtures of the git tests: real repositories made with the `git` CLI in temp dirs,
//! a bare repo as the remote, and a `git daemon` for the git:// transport.
#![allow(dead_code, clippy::unwrap_used)]

pub mod http;
pub mod ssh;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use kommit_daemon::git::mirror::{Mirror, RemoteConfig};

/// Runs git with host config ignored; panics with stderr on failure; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env_remove("GIT_DIR");
    c
}

/// A bare remote plus a working clone that pushes to it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub remote: PathBuf,
    pub work: PathBuf,
}

pub const KOMMIT_YAML: &str =
    "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata:\n  name: test\nspec:\n  branch: main\n";
pub const KOMMIT_YAML_REWRITES: &str = "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata:\n  name: test\nspec:\n  branch: main\n  allowHistoryRewrite: true\n";

/// A valid ConfigMap manifest named `name`.
pub fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kommit-git-")
            .tempdir()
            .expect("tempdir");
        let remote = dir.path().join("remote.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                remote.to_str().unwrap(),
            ],
        );
        git(
            dir.path(),
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        git(
            &work,
            &["remote", "add", "origin", remote.to_str().unwrap()],
        );
        Fixture { dir, remote, work }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.remote.display())
    }

    /// Writes files (path, content), commits everything and pushes; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "-f", "origin", "main"]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Rewrites history: resets the clone to `to` and force pushes a new commit on top.
    pub fn force_push_on(&self, to: &str, files: &[(&str, &str)], message: &str) -> String {
        git(&self.work, &["reset", "-q", "--hard", to]);
        self.commit(files, message)
    }

    pub fn mirror(&self, url: &str) -> Mirror {
        Mirror::open(
            self.dir.path().join(format!("data-{}/mirror.git", nonce())),
            RemoteConfig::new(url, "main"),
        )
        .expect("mirror opens")
    }
}

pub fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn oid(hex: &str) -> gix::ObjectId {
    gix::ObjectId::from_hex(hex.as_bytes()).expect("hex id")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[allow(unused_imports)] // not every git test serves git://
pub use kommit_tests::git_daemon::GitDaemon;
