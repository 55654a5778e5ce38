//! A multi-node test cluster (issue 14): N real `kommit daemon` processes, each a host of its
//! own in a network namespace on a test bridge ([`net`]), each with its own data dir, pod
//! bridge and cgroup parent ([`node`]), bootstrapped and joined as README tells operators.
//! The desired state is a bare repository in the root namespace, served by `git daemon` on
//! the bridge's address, so every node really fetches over the network. [`history`] samples
//! who runs what and checks it afterwards.
//!
//! Teardown (in `Drop`, so also when a test panics) kills every daemon, removes every pod
//! (containers, shims, veths, volumes, cgroups), deletes each node's namespace (which takes
//! its links, pod bridge, routes and nftables tables with it), the node cgroup parents, the
//! bridge and the git daemon. [`Cluster::leftovers`] lists what a teardown would have missed.

pub mod history;
pub mod manifests;
pub mod net;
pub mod node;

use crate::agent_support::{git, tail, wait_for};
use crate::fixtures::kommit_bin;
use crate::git_daemon::GitDaemon;
use kommit_reconcilers::ClusterState;
use net::Lan;
use node::{ClusterNode, FirstStart};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The pod CIDR of the test clusters (inside the nodes' namespaces only).
pub const POD_CIDR: &str = "10.217.0.0/16";
/// Their Service CIDR.
pub const SERVICE_CIDR: &str = "10.218.0.0/16";
/// The git daemon's port on the bridge address.
const GIT_PORT: u16 = 9418;

/// A cluster under test. Fields drop in order: nodes (daemons, pods, namespaces), the git
/// daemon, the bridge, the scratch directory.
pub struct Cluster {
    /// The nodes, `nodes[0]` is `n1`.
    pub nodes: Vec<ClusterNode>,
    /// The git daemon serving the remote (stop or restart it for a forge outage).
    pub git: GitDaemon,
    /// The bridge and the address range.
    pub lan: Lan,
    /// Scratch space: `origin.git`, `work`, one directory per node.
    pub dir: tempfile::TempDir,
    /// The bare remote.
    pub origin: PathBuf,
    /// A work clone that pushes to it.
    pub work: PathBuf,
    /// The remote's git:// URL the nodes fetch.
    pub url: String,
}

impl Cluster {
    /// `n` nodes' namespaces and data dirs, the remote (nothing pushed yet) and a work clone
    /// holding a copy of `repo-template/` with the cluster's pod and Service CIDRs. Nothing
    /// runs yet but the git daemon.
    pub fn new(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let lan = Lan::create();
        let origin = dir.path().join("origin.git");
        let work = dir.path().join("work");
        crate::agent_support::template_repo(dir.path());
        let cfg = work.join("kommit.yaml");
        let text = std::fs::read_to_string(&cfg)
            .expect("kommit.yaml")
            .replace("10.244.0.0/16", POD_CIDR)
            .replace("10.96.0.0/16", SERVICE_CIDR);
        std::fs::write(&cfg, text).expect("kommit.yaml");
        let git_daemon = GitDaemon::start_at(dir.path(), IpAddr::V4(lan.host_address()), GIT_PORT);
        let url = git_daemon.url("origin.git");
        let nodes = (1..=n)
            .map(|i| {
                let ndir = dir.path().join(format!("n{i}"));
                std::fs::create_dir_all(&ndir).expect("node dir");
                ClusterNode::new(lan.index, i, lan.attach(i), &ndir)
            })
            .collect();
        Cluster {
            nodes,
            git: git_daemon,
            lan,
            origin,
            work,
            url,
            dir,
        }
    }

    /// Node `i` (1-based).
    pub fn node(&self, i: usize) -> &ClusterNode {
        &self.nodes[i - 1]
    }

    /// Node `i` (1-based), mutably.
    pub fn node_mut(&mut self, i: usize) -> &mut ClusterNode {
        &mut self.nodes[i - 1]
    }

    /// Bootstraps `n1`, then joins every other node with a token `n1` made
    /// (`kommit token create`), one after the other; returns once every node is Ready in
    /// `n1`'s state. Prints how long that took.
    pub fn start(&mut self) -> Duration {
        self.start_first(self.nodes.len())
    }

    /// [`Cluster::start`] for the first `k` nodes only; the others stay down.
    pub fn start_first(&mut self, k: usize) -> Duration {
        let t = Instant::now();
        let url = self.url.clone();
        self.nodes[0].start(&url, FirstStart::Bootstrap);
        for i in 2..=k {
            let (ok, token, err) = self.nodes[0].kommit(&["token", "create"]);
            assert!(ok, "kommit token create: {err}");
            self.join(i, 1, token.trim());
        }
        self.wait_state(Duration::from_secs(60), "every node Ready", |s| {
            s.nodes.len() == k && s.nodes.values().all(|r| r.ready && r.pod_cidr.is_some())
        });
        t.elapsed()
    }

    /// Starts node `i` joining through node `via` (1-based) with `token`.
    pub fn join(&mut self, i: usize, via: usize, token: &str) {
        let url = self.url.clone();
        let token_file = self.dir.path().join(format!("token-n{i}"));
        std::fs::write(&token_file, token).expect("token file");
        let via = self.node(via).address();
        self.node_mut(i)
            .start(&url, FirstStart::Join { via, token_file });
    }

    /// Writes a file of the work clone.
    pub fn write(&self, path: &str, text: &str) {
        let p = self.work.join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }

    /// Commits everything in the work clone and pushes it, then calls every node's push
    /// webhook as a forge would; returns the commit.
    pub fn push(&self, message: &str) -> String {
        let commit = self.commit(message);
        self.push_committed();
        commit
    }

    /// Commits everything in the work clone (nothing pushed); returns the commit.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "--all", "."]);
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Pushes the work clone's HEAD and calls every running node's push webhook.
    pub fn push_committed(&self) {
        git(&self.work, &["push", "--quiet", "origin", "HEAD:main"]);
        for n in &self.nodes {
            n.notify_push();
        }
    }

    /// The note kommit wrote on `commit` (`refs/notes/kommit`), read with `git`.
    pub fn note(&self, commit: &str) -> Option<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&self.origin)
            .args(["notes", "--ref", "kommit", "show", commit])
            .output()
            .expect("git notes");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The state of the first node whose daemon answers.
    pub fn any_state(&self) -> Option<ClusterState> {
        self.nodes.iter().find_map(ClusterNode::try_state)
    }

    /// Waits until `f` holds on the state of the first live node, or panics with `what` and
    /// every node's log tail. Returns how long it took.
    pub fn wait_state(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&ClusterState) -> bool,
    ) -> Duration {
        let t = Instant::now();
        let ok = wait_for(timeout, || self.any_state().is_some_and(|s| f(&s)));
        assert!(
            ok,
            "timed out after {timeout:?} waiting for {what}\n{}",
            self.logs(30)
        );
        t.elapsed()
    }

    /// Waits until `f` holds, or panics with `what` and the logs; how long it took.
    pub fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Cluster) -> bool,
    ) -> Duration {
        let t = Instant::now();
        let ok = wait_for(timeout, || f(self));
        assert!(
            ok,
            "timed out after {timeout:?} waiting for {what}\n{}",
            self.logs(30)
        );
        t.elapsed()
    }

    /// Waits until every running node has applied the same Raft index, and checks that they
    /// hold the same state digest there (read from each node's local `/status`); returns
    /// (applied index, digest). Entries keep coming (heartbeats), so readings are repeated
    /// until one index is seen on every node; a different digest at one index fails at once.
    pub fn wait_equal_digests(&self, timeout: Duration) -> (u64, String) {
        use std::collections::BTreeMap;
        let live: Vec<&ClusterNode> = self.nodes.iter().filter(|n| n.running()).collect();
        let mut seen: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            for n in &live {
                if let Some(st) = n.raft() {
                    let at = seen.entry(st.applied).or_default();
                    at.insert(n.name.clone(), st.digest.clone());
                    let pairs: Vec<(String, String)> =
                        at.iter().map(|(n, d)| (n.clone(), d.clone())).collect();
                    if let Err(e) = history::check_digests(&pairs) {
                        panic!("at applied index {}: {e}", st.applied);
                    }
                    if at.len() == live.len() {
                        return (st.applied, st.digest);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "no applied index seen on every node within {timeout:?}: {:?}\n{}",
            seen.iter().rev().take(5).collect::<Vec<_>>(),
            self.logs(20)
        );
    }

    /// The Raft leader's node name, as the first answering node knows it.
    pub fn leader(&self) -> Option<String> {
        let st = self.nodes.iter().find_map(ClusterNode::raft)?;
        let leader = st.leader?;
        self.nodes
            .iter()
            .find(|n| n.raft().is_some_and(|s| s.id == leader))
            .map(|n| n.name.clone())
    }

    /// The last `n` log lines of every node.
    pub fn logs(&self, n: usize) -> String {
        self.nodes
            .iter()
            .map(|node| {
                format!(
                    "--- {} log (tail) ---\n{}\n",
                    node.name,
                    tail(&node.log(), n)
                )
            })
            .collect()
    }

    /// `kommit plan` of the work clone on an inventory of this cluster's nodes (each with the
    /// resources and label the harness gives its daemon), as JSON.
    pub fn plan(&self) -> serde_json::Value {
        let mut inv = String::from("nodes:\n");
        for n in &self.nodes {
            inv.push_str(&format!(
                "  - {{name: {}, address: \"{}\", cpu: \"2\", memory: \"4294967296\", labels: {{node: {}}}}}\n",
                n.name,
                n.address(),
                n.name
            ));
        }
        let f = self.dir.path().join("inventory.yaml");
        std::fs::write(&f, inv).expect("inventory");
        let out = Command::new(kommit_bin())
            .arg("plan")
            .arg(&self.work)
            .arg("--nodes")
            .arg(&f)
            .args(["--format", "json"])
            .output()
            .expect("kommit plan");
        assert!(
            out.status.success(),
            "kommit plan: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("plan json")
    }

    /// The history sampler's view of every node.
    pub fn watched(&self) -> Vec<history::Watched> {
        self.nodes
            .iter()
            .map(|n| history::Watched {
                node: n.name.clone(),
                data: n.data.clone(),
                cgroup_parent: n.cgroup_parent.clone(),
                up: n.up.clone(),
            })
            .collect()
    }

    /// What this cluster's teardown must remove and a finished teardown must not have left:
    /// the namespaces, links, cgroup parents, mounts and processes it made (empty while
    /// none is left). Called after [`Cluster::teardown`].
    pub fn leftovers(names: &Names) -> Vec<String> {
        let mut out = Vec::new();
        let netns: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_else(|_| Vec::new());
        out.extend(
            netns
                .into_iter()
                .filter(|n| names.netns.contains(n))
                .map(|n| format!("netns {n}")),
        );
        for l in &names.links {
            if Path::new("/sys/class/net").join(l).exists() {
                out.push(format!("link {l}"));
            }
        }
        for root in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for cg in &names.cgroups {
                if root.path().join(cg).exists() {
                    out.push(format!("cgroup {}", root.path().join(cg).display()));
                }
            }
        }
        out.extend(
            node::mounts_below(&names.dir)
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        let needle = names.dir.display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle)
                || names
                    .cgroups
                    .iter()
                    .any(|c| cgroup.contains(&format!("/{c}")))
            {
                out.push(format!("process {}", e.file_name().to_string_lossy()));
            }
        }
        out
    }

    /// The names this cluster made, for [`Cluster::leftovers`].
    pub fn names(&self) -> Names {
        let mut links = vec![self.lan.bridge.clone()];
        links.extend(self.nodes.iter().map(|n| n.net.host_link.clone()));
        Names {
            netns: self
                .nodes
                .iter()
                .map(|n| n.net.ns.name().to_string())
                .collect(),
            links,
            cgroups: self.nodes.iter().map(|n| n.cgroup_parent.clone()).collect(),
            dir: self.dir.path().to_path_buf(),
        }
    }

    /// Tears the cluster down now (what dropping it does): every daemon killed first, so no
    /// agent restarts a pod the teardown removes.
    pub fn teardown(self) {
        drop(self);
    }
}

/// The names of what a cluster made (see [`Cluster::leftovers`]).
#[derive(Debug, Clone)]
pub struct Names {
    /// Network namespaces.
    pub netns: Vec<String>,
    /// Links in the root namespace.
    pub links: Vec<String>,
    /// Cgroup parents.
    pub cgroups: Vec<String>,
    /// The scratch directory.
    pub dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Links up and cuts gone first, so the daemons' connections close both ways when
        // they die (an orphan socket to an unreachable peer holds its namespace alive).
        for n in &self.nodes {
            let _ = n.net.ns.ip(&["link", "set", &n.net.link, "up"]);
            n.net.uncut();
        }
        for n in &mut self.nodes {
            n.kill9();
        }
        // Nodes drop first (pods, then namespaces), then the git daemon and the bridge.
        self.nodes.clear();
    }
}
