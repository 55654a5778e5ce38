//! One node of a test cluster: a host of its own in a network namespace, with its own data
//! dir, pod bridge, cgroup parent and `kommit daemon` process.
//!
//! The daemon runs under `nsenter --net=/run/netns/<ns>`, not `ip netns exec`: the latter
//! gives the process a private mount namespace with a fresh `/sys`, where the cgroup
//! hierarchies are no longer mounted and the runtime cannot start. With `nsenter --net` the
//! node shares the host's mounts (and cgroupfs) but has a network of its own: its link, its
//! pod bridge, its routes, its nftables tables and its DNS server address.

use super::net::NodeNet;
use crate::agent_support::{tail, wait_for};
use crate::fixtures::kommit_bin;
use kommit_reconcilers::ClusterState;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The cluster port every node listens on (its own address in its own namespace).
pub const PORT: u16 = 7946;
/// The push webhook's port on every node's address.
pub const WEBHOOK_PORT: u16 = 7947;
/// The webhook's shared secret (GitLab style token), written to each node's secret file.
pub const WEBHOOK_SECRET: &str = "kc-webhook-secret";

/// A node under test.
pub struct ClusterNode {
    /// 1-based index.
    pub index: usize,
    /// Its node name (`n<i>`).
    pub name: String,
    /// Its namespace and link.
    pub net: NodeNet,
    /// Its data dir.
    pub data: PathBuf,
    /// Its pod bridge (inside its namespace).
    pub bridge: String,
    /// Its pods' cgroup parent (`kommit-kc<N>-n<i>`, removed by the teardown).
    pub cgroup_parent: String,
    /// More daemon arguments, given on every start.
    pub extra_args: Vec<String>,
    /// Cleared while the node is powered off (the history sampler reads it).
    pub up: Arc<AtomicBool>,
    log: PathBuf,
    secret_file: PathBuf,
    daemon: Option<Child>,
}

impl ClusterNode {
    /// A node whose scratch space is `dir`; not started. Images `busybox:1.36` and
    /// `busybox:1.37` are in its store.
    pub fn new(lan_index: u8, index: usize, net: NodeNet, dir: &Path) -> ClusterNode {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("node data dir");
        crate::agent_support::import_busybox(&data, dir);
        ClusterNode {
            index,
            name: format!("n{index}"),
            net,
            data,
            bridge: format!("kc{lan_index}p{index}"),
            cgroup_parent: format!("kommit-kc{lan_index}-n{index}"),
            extra_args: Vec::new(),
            up: Arc::new(AtomicBool::new(true)),
            log: dir.join("daemon.log"),
            secret_file: {
                let f = dir.join("webhook-secret");
                std::fs::write(&f, WEBHOOK_SECRET).expect("webhook secret file");
                f
            },
            daemon: None,
        }
    }

    /// Its cluster address, `ip:port`.
    pub fn address(&self) -> String {
        format!("{}:{PORT}", self.net.addr)
    }

    /// Starts the daemon as README tells operators: `--bootstrap` for the first node,
    /// `--join ADDR --token-file F` for the others (first start only), only `--data-dir` and
    /// the node's flags on a restart. `repo` is the git:// URL of the desired state.
    pub fn start(&mut self, repo: &str, first: FirstStart) {
        assert!(self.daemon.is_none(), "{} already runs", self.name);
        let addr = self.address();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.net.ns.path().display()))
            .arg("--")
            .arg(kommit_bin())
            .arg("daemon")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--node-name", &self.name])
            .args(["--listen", &addr, "--advertise", &addr])
            .args(["--repo", repo])
            .args(["--poll-ms", "250", "--status-every-ms", "500"])
            .args([
                "--webhook-listen",
                &format!("{}:{WEBHOOK_PORT}", self.net.addr),
            ])
            .arg("--webhook-secret-file")
            .arg(&self.secret_file)
            .args(["--pod-bridge", &self.bridge])
            .args(["--cgroup-parent", &self.cgroup_parent])
            // Equal, known resources, so `kommit plan` can be given the same inventory.
            .args(["--cpu-millis", "2000", "--memory-bytes", "4294967296"])
            .args(["--label", &format!("node={}", self.name)])
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                "info,kommit_agent=debug,kommit_daemon::sync=debug",
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("node log"),
            );
        match first {
            FirstStart::Bootstrap => {
                cmd.arg("--bootstrap");
            }
            FirstStart::Join { via, token_file } => {
                cmd.args(["--join", &via])
                    .arg("--token-file")
                    .arg(token_file);
            }
            FirstStart::Restart => {}
        }
        self.daemon = Some(cmd.spawn().expect("spawn kommit daemon"));
        self.up.store(true, Ordering::SeqCst);
        assert!(
            wait_for(Duration::from_secs(30), || self.try_state().is_some()),
            "{} came up:\n{}",
            self.name,
            tail(&self.log(), 40)
        );
    }

    /// SIGKILLs the daemon; its containers keep running (a daemon crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the daemon runs.
    pub fn running(&self) -> bool {
        self.daemon.is_some()
    }

    /// Loses the node as a host loses power: its link goes down, the daemon, its shims and
    /// every process in its pods are SIGKILLed. The history counts its pods as lost until
    /// [`ClusterNode::power_on`].
    pub fn power_off(&mut self) {
        self.net.isolate();
        self.up.store(false, Ordering::SeqCst);
        self.kill9();
        self.kill_pod_processes();
    }

    /// Brings a powered-off node back: link up, daemon restarted (it re-adopts or cleans up
    /// its pods from its runtime records).
    pub fn power_on(&mut self, repo: &str) {
        self.net.heal();
        self.start(repo, FirstStart::Restart);
    }

    /// SIGKILLs every process of this node's pods: its shims (their command line names its
    /// data dir) and everything in a cgroup below its cgroup parent.
    pub fn kill_pod_processes(&self) {
        let needle = self.data.as_os_str().as_encoded_bytes().to_vec();
        let cg = format!("/{}/", self.cgroup_parent);
        for _ in 0..3 {
            let Ok(dir) = std::fs::read_dir("/proc") else {
                return;
            };
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
                if cmdline
                    .windows(needle.len())
                    .any(|w| w == needle.as_slice())
                    || cgroup.contains(&cg)
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Tells the node's daemon that `main` was pushed, as a forge's push webhook does
    /// (`POST /hooks/git` with a GitLab token); whether it answered 202.
    pub fn notify_push(&self) -> bool {
        use std::io::{Read, Write};
        if self.daemon.is_none() {
            return false;
        }
        let addr = std::net::SocketAddr::from((self.net.addr, WEBHOOK_PORT));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        else {
            return false;
        };
        let body = r#"{"ref":"refs/heads/main"}"#;
        let req = format!(
            "POST /hooks/git HTTP/1.1\r\nHost: {addr}\r\nX-Gitlab-Token: {WEBHOOK_SECRET}\r\nX-Gitlab-Event: Push Hook\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 202")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The replicated state as this node holds it, if its daemon answers.
    pub fn try_state(&self) -> Option<ClusterState> {
        self.daemon.as_ref()?;
        kommit_daemon::cli::get::fetch_state(&self.data).ok()
    }

    /// The node's Raft status from its local API (role, term, leader, applied index and the
    /// state digest at that index), if its daemon answers.
    pub fn raft(&self) -> Option<kommit_daemon::consensus::api::Status> {
        self.daemon.as_ref()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let client = kommit_daemon::consensus::local::local_client(&self.data).ok()?;
            let resp = client
                .get("http://localhost/status")
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            resp.json().await.ok()
        })
    }

    /// The replicated state (panics if the daemon does not answer).
    pub fn state(&self) -> ClusterState {
        self.try_state()
            .unwrap_or_else(|| panic!("{} does not answer:\n{}", self.name, tail(&self.log(), 40)))
    }

    /// Runs `kommit ARGS... --data-dir DATA` against this node (`--data-dir` goes before a
    /// `--`, if any); (success, stdout, stderr).
    pub fn kommit(&self, args: &[&str]) -> (bool, String, String) {
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let out = Command::new(kommit_bin())
            .args(&args[..split])
            .arg("--data-dir")
            .arg(&self.data)
            .args(&args[split..])
            .output()
            .expect("run kommit");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kommit status --format json` of this node, parsed (`{"sync": ..., "state": ...}`).
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let (ok, out, _) = self.kommit(&["status", "--format", "json"]);
        ok.then(|| serde_json::from_str(&out).ok()).flatten()
    }

    /// Runs `sh -c script` in pod `pod` (default namespace) on this node through
    /// `kommit exec`; (success, stdout + stderr).
    pub fn exec_in(&self, pod: &str, script: &str) -> (bool, String) {
        let (ok, out, err) = self.kommit(&["exec", pod, "--", "sh", "-c", script]);
        (ok, format!("{out}{err}"))
    }

    /// Every container of the agent's pods in this node's runtime records, by (sandbox,
    /// container): its process id and start time. Equal readings before and after a daemon
    /// restart mean no container was restarted.
    pub fn containers(
        &self,
    ) -> std::collections::BTreeMap<(String, String), (Option<u32>, Option<u64>)> {
        use kommit_runtime::ContainerRuntime;
        let images = kommit_runtime::images::ImageStore::open(&self.data).expect("image store");
        let rt = kommit_runtime::linux::LinuxRuntime::new(
            kommit_runtime::linux::LinuxConfig {
                data_dir: self.data.clone(),
                helper: kommit_bin(),
                cgroup_parent: self.cgroup_parent.clone(),
            },
            std::sync::Arc::new(images),
        )
        .expect("runtime");
        rt.list()
            .expect("runtime records")
            .into_iter()
            .filter(|p| p.labels.contains_key(kommit_agent::translate::LABEL_UID))
            .flat_map(|p| {
                p.containers
                    .into_iter()
                    .map(move |c| ((p.id.clone(), c.name), (c.pid, c.started_at_ms)))
            })
            .collect()
    }

    /// Removes every pod the agent made (containers, veths, volumes, cgroups), from a thread
    /// inside the node's namespace, then any process left, then the cgroup parent itself.
    pub fn remove_pods(&self) {
        let data = self.data.clone();
        let bridge = self.bridge.clone();
        let parent = self.cgroup_parent.clone();
        if let Ok(t) = kommit_runtime::proxy::testnet::NetnsThread::spawn(&self.net.ns.path()) {
            t.run(move || {
                if let Ok((rt, _)) = kommit_agent::node::open(&data, kommit_bin(), &bridge, &parent)
                {
                    kommit_agent::node::remove_agent_pods(&rt, Duration::from_secs(1));
                }
            });
        }
        self.kill_pod_processes();
        remove_cgroup_tree(&self.cgroup_parent);
        // Memory emptyDirs are the only host mounts a pod makes; none may outlive it.
        for m in mounts_below(&self.data) {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // The cluster heals every link before any daemon dies (see `Cluster::drop`).
        self.kill9();
        if let Some(dir) = std::env::var_os("KOMMIT_KEEP_LOGS") {
            let to = Path::new(&dir).join(format!("{}-{}.log", self.net.ns.name(), self.name));
            let _ = std::fs::copy(&self.log, to);
        }
        self.remove_pods();
        self.net.unplug();
    }
}

/// How a node starts.
pub enum FirstStart {
    /// The first node of a new cluster.
    Bootstrap,
    /// A new node joining through a voter's address with a token file.
    Join {
        /// A voter's cluster address.
        via: String,
        /// The token file.
        token_file: PathBuf,
    },
    /// A node that already joined.
    Restart,
}

/// Removes the cgroup `parent` (and everything below it) from every hierarchy, deepest
/// first. Its processes must be gone.
pub fn remove_cgroup_tree(parent: &str) {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(d) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(d.flatten().map(|e| e.path()));
    }
    for root in roots {
        let top = root.join(parent);
        if top.is_dir() {
            let mut dirs = Vec::new();
            collect_dirs(&top, &mut dirs);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                for _ in 0..50 {
                    if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Mount points at or below `dir` in this process's mount namespace (the host's).
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}
