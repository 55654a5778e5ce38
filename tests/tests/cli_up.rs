//! `kommit up DIR`, the README's first command, as a user runs it: the real binary snapshots a
//! copy of repo-template into `origin.git`, bootstraps a one-node cluster, adopts the commit
//! and writes the note and the status branch. Stopped with SIGTERM and started again on an
//! edited directory, it restarts from disk (no second bootstrap) and adopts the new snapshot.
//!
//! Needs the daemon binary (`cargo test --workspace` builds it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_tests::fixtures::{copy_dir, free_port, kommit_bin, repo_template_dir};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

struct Up(Child);

impl Up {
    fn start(dir: &Path, data: &Path, port: u16, metrics: u16) -> Self {
        Up(Command::new(kommit_bin())
            .arg("up")
            .arg(dir)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap())
    }

    fn term(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if self.0.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kommit up did not stop on SIGTERM");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the development node's pods when the test ends (they outlive `kommit up`, as
/// they outlive any daemon restart).
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let out = Command::new(kommit_bin())
            .args(["up", "--down", "--data-dir"])
            .arg(&self.0)
            .output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("kommit up --down: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

fn note(origin: &str, rev: &str) -> Option<StatusNote> {
    let commit = git(&["--git-dir", origin, "rev-parse", rev])?;
    let text = git(&[
        "--git-dir",
        origin,
        "notes",
        "--ref",
        "kommit",
        "show",
        &commit,
    ])?;
    StatusNote::from_yaml(&commit, &text).ok()
}

#[test]
fn kommit_up_runs_a_one_node_cluster_from_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("desired");
    let data = tmp.path().join("data");
    copy_dir(&repo_template_dir(), &dir);
    let origin = data.join("origin.git");
    let o = origin.to_str().unwrap().to_string();
    let port = free_port();
    let metrics = free_port();

    let _down = Down(data.clone());
    let up = Up::start(&dir, &data, port, metrics);
    assert!(
        wait(Duration::from_secs(60), || note(&o, "main").is_some_and(
            |n| n.state == CommitState::Adopted && n.by.as_deref() == Some("dev")
        )),
        "the snapshot of repo-template is adopted"
    );
    let first = git(&["--git-dir", &o, "rev-parse", "main"]).unwrap();
    assert!(
        wait(Duration::from_secs(30), || git(&[
            "--git-dir",
            &o,
            "show",
            "kommit/status:objects/default/Deployment/hello.yaml"
        ])
        .is_some_and(|t| t.contains("replicas: 2"))),
        "the status branch reports the Deployment"
    );
    // `kommit status` reads the same state through the local socket.
    let out = Command::new(kommit_bin())
        .args(["status", "--data-dir"])
        .arg(data.join("node"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("commit {first} adopted")), "{text}");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.starts_with("repository ")
                && l.contains("(branch main)")
                && l.contains(&first[..12])),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("dev ") && l.contains("Ready")),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("default/hello-"))
            .count(),
        2,
        "{text}"
    );
    // Prometheus metrics on the metrics port; the template's pods really run.
    assert!(
        wait(Duration::from_secs(60), || scrape(metrics)
            .contains("kommit_pods{phase=\"Running\"} 2")),
        "the template's two pods run: {}",
        scrape(metrics)
    );
    let text = scrape(metrics);
    for line in [
        "kommit_raft_leader 1".to_string(),
        "kommit_nodes{status=\"ready\"} 1".to_string(),
        format!("kommit_adopted_commit_info{{commit=\"{first}\"}} 1"),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    up.term();

    // Edit and run again: a new snapshot on top, adopted by the restarted node.
    let deployment = dir.join("apps/hello/deployment.yaml");
    let text = std::fs::read_to_string(&deployment).unwrap();
    std::fs::write(&deployment, text.replace("replicas: 2", "replicas: 3")).unwrap();
    let up = Up::start(&dir, &data, port, metrics);
    assert!(
        wait(Duration::from_secs(60), || note(&o, &first)
            .is_some_and(|n| n.state == CommitState::Superseded)),
        "the first snapshot is superseded after the restart"
    );
    let second = git(&["--git-dir", &o, "rev-parse", "main"]).unwrap();
    assert_ne!(first, second);
    assert_eq!(
        git(&["--git-dir", &o, "rev-parse", "main^"]).as_deref(),
        Some(first.as_str())
    );
    assert!(note(&o, &second).is_some_and(|n| n.state == CommitState::Adopted));
    assert!(
        wait(Duration::from_secs(60), || scrape(metrics)
            .contains("kommit_pods{phase=\"Running\"} 3")),
        "three pods after the restart: {}",
        scrape(metrics)
    );
    up.term();
}
