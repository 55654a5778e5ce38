//! One real `kommit daemon` with its node agent, a bare repository as its remote and a work
//! clone to push from: the harness of the end-to-end tests and the push-to-running bench.
//!
//! Every node gets its own data dir, pod bridge and nftables table, so it never touches a
//! `kommit up` running on the same host. Teardown (also on panic) kills the daemon and
//! removes every pod its agent made: containers, cgroups, veths, the bridge, volumes.

use crate::fixtures::{copy_dir, free_port, kommit_bin, repo_template_dir};
use kommit_reconcilers::{ClusterState, PodRecord};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// In `dir`: a bare remote `origin.git` (branch `main`, nothing pushed) and a work clone
/// `work` holding a copy of `repo-template/`, not yet committed.
pub fn template_repo(dir: &Path) {
    git(
        dir,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "origin.git",
        ],
    );
    let origin = dir.join("origin.git");
    git(
        dir,
        &["clone", "--quiet", origin.to_str().expect("utf8"), "work"],
    );
    let work = dir.join("work");
    git(&work, &["checkout", "--quiet", "-b", "main"]);
    copy_dir(&repo_template_dir(), &work);
}

/// Runs git in `dir`, panicking with its stderr on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `f` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    wait_for_every(timeout, Duration::from_millis(20), f)
}

/// Polls `f` every `every` until it holds or `timeout` passes.
pub fn wait_for_every(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// A one-node cluster under test.
pub struct AgentNode {
    /// Scratch space (data dir, repositories, log).
    pub dir: tempfile::TempDir,
    /// The node's data dir.
    pub data: PathBuf,
    /// The bare remote.
    pub origin: PathBuf,
    /// A work clone that pushes to it.
    pub work: PathBuf,
    /// The pod bridge.
    pub bridge: String,
    /// The pod CIDR the test's kommit.yaml uses.
    pub pod_cidr: String,
    /// More `kommit daemon` arguments (e.g. `--static-pods DIR`), given on every start.
    pub extra_args: Vec<String>,
    listen: String,
    log: PathBuf,
    daemon: Option<Child>,
}

impl AgentNode {
    /// A node whose desired state starts as a copy of `repo-template/` (with its own pod
    /// CIDR `10.<octet>.0.0/16` and bridge), not yet committed. Images `busybox:1.36` and
    /// `busybox:1.37` (both from the host's busybox-static) are in its store.
    pub fn new(name: &str, octet: u8) -> AgentNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let origin = dir.path().join("origin.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&data).expect("data dir");
        template_repo(dir.path());
        let pod_cidr = format!("10.{octet}.0.0/16");
        let cfg = work.join("kommit.yaml");
        let text = std::fs::read_to_string(&cfg).expect("kommit.yaml");
        // Its own Service CIDR too: nodes on one host each program their VIPs (and reject
        // unknown ones in their range) in the host's network namespace.
        let text = text
            .replace("10.244.0.0/16", &pod_cidr)
            .replace("10.96.0.0/16", &format!("192.168.{octet}.0/24"));
        std::fs::write(&cfg, text).expect("kommit.yaml");
        import_busybox(&data, dir.path());
        let bridge = format!("kt{name}0");
        AgentNode {
            log: dir.path().join("daemon.log"),
            listen: format!("127.0.0.1:{}", free_port()),
            dir,
            data,
            origin,
            work,
            bridge,
            pod_cidr,
            extra_args: Vec::new(),
            daemon: None,
        }
    }

    /// Commits everything in the work clone and pushes it; returns the commit.
    pub fn push(&self, message: &str) -> String {
        git(&self.work, &["add", "--all", "."]);
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "--quiet", "origin", "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Writes a file of the work clone.
    pub fn write(&self, path: &str, text: &str) {
        let p = self.work.join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }

    /// Starts (first time: bootstraps) the daemon.
    pub fn start(&mut self) {
        let first = !self.data.join("raft.redb").exists();
        let mut cmd = Command::new(kommit_bin());
        cmd.arg("daemon")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen", &self.listen, "--node-name", "e2e"])
            .args(["--repo", self.origin.to_str().expect("utf8")])
            .args(["--poll-ms", "500", "--status-every-ms", "500"])
            .args(["--pod-bridge", &self.bridge])
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                "info,kommit_agent=debug,kommit_daemon::sync=debug,kommit_daemon::git::triggers=debug",
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("log"),
            );
        if first {
            cmd.arg("--bootstrap");
        }
        self.daemon = Some(cmd.spawn().expect("spawn kommit daemon"));
        let sock = self.data.join("kommit.sock");
        assert!(
            wait_for(Duration::from_secs(30), || sock.exists()
                && self.try_state().is_some()),
            "daemon came up: {}",
            self.log()
        );
    }

    /// SIGKILLs the daemon (its containers keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.data.join("kommit.sock"));
    }

    /// The daemon's pid, while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The replicated state, if the daemon answers.
    pub fn try_state(&self) -> Option<ClusterState> {
        kommit_daemon::cli::get::fetch_state(&self.data).ok()
    }

    /// A blocking query: the state once an entry after `index` is applied (or `wait`
    /// passed), with its applied index.
    pub fn state_after(&self, index: u64, wait: Duration) -> Option<(u64, ClusterState)> {
        kommit_daemon::cli::get::fetch_state_after(&self.data, index, wait).ok()
    }

    /// The replicated state (panics if the daemon does not answer).
    pub fn state(&self) -> ClusterState {
        self.try_state()
            .unwrap_or_else(|| panic!("daemon does not answer: {}", self.log()))
    }

    /// The pods whose name starts with `prefix`.
    pub fn pods(&self, prefix: &str) -> Vec<PodRecord> {
        self.state()
            .pods
            .values()
            .filter(|p| p.name.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Runs `kommit SUBCOMMAND --data-dir DATA ARGS...` and returns (success, stdout, stderr).
    pub fn kommit(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(kommit_bin())
            .args(&args[..1])
            .arg("--data-dir")
            .arg(&self.data)
            .args(&args[1..])
            .output()
            .expect("run kommit");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits until `f` holds on the state, or panics with `what` and the log.
    pub fn wait_state(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&ClusterState) -> bool,
    ) {
        let ok = wait_for(timeout, || self.try_state().is_some_and(|s| f(&s)));
        assert!(
            ok,
            "timed out waiting for {what}\n--- daemon log (tail) ---\n{}",
            tail(&self.log(), 60)
        );
    }

    /// The node's runtime, opened as the agent opens it.
    pub fn runtimes(&self) -> kommit_agent::Runtimes {
        kommit_agent::node::open(
            &self.data,
            kommit_bin(),
            &self.bridge,
            kommit_agent::node::CGROUP_PARENT,
        )
        .expect("open the node's runtime")
        .0
    }
}

/// Imports `busybox:1.36` and `busybox:1.37` (both made from the host's busybox-static)
/// into the image store of the data dir `data`, building their layouts in `scratch`.
pub fn import_busybox(data: &Path, scratch: &Path) {
    let store = kommit_runtime::images::ImageStore::open(data).expect("image store");
    for tag in ["busybox:1.36", "busybox:1.37"] {
        let layout = scratch.join(format!("layout-{tag}"));
        kommit_runtime::images::busybox::busybox_layout(&layout, tag).expect("busybox layout");
        store.import_path(&layout).expect("import busybox");
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An HTTP GET from the host; the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.starts_with("HTTP/1.") && status.split_whitespace().nth(1) == Some("200"))
        .then(|| body.to_string())
}

impl Drop for AgentNode {
    fn drop(&mut self) {
        self.kill9();
        // KOMMIT_KEEP_LOGS=DIR keeps each daemon's whole log (the tests print only its tail).
        if let Some(dir) = std::env::var_os("KOMMIT_KEEP_LOGS") {
            let to = std::path::Path::new(&dir).join(format!("{}.log", self.bridge));
            let _ = std::fs::copy(&self.log, to);
        }
        if let Ok((rt, _)) = kommit_agent::node::open(
            &self.data,
            kommit_bin(),
            &self.bridge,
            kommit_agent::node::CGROUP_PARENT,
        ) {
            kommit_agent::node::remove_agent_pods(&rt, Duration::from_secs(2));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = Command::new("nft")
            .args([
                "delete",
                "table",
                "ip",
                &kommit_agent::node::nft_table(&self.bridge),
            ])
            .output();
        let _ = kommit_daemon::node_services::remove_proxy_rules(&self.bridge);
    }
}
