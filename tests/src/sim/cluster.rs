//! An in-process cluster of real [`Node`]s for tests: each node has its own data dir, its own
//! loopback address (127.0.0.<n+1>) and a free port chosen by the kernel on first start and
//! reused on restart.

use kommit_daemon::consensus::kv::KvApp;
use kommit_daemon::consensus::liveness::{FenceHook, LivenessConfig};
use kommit_daemon::consensus::membership::VoterPolicy;
use kommit_daemon::consensus::node::{Node, NodeConfig, NodeError, Timing};
use kommit_daemon::consensus::tls::ClusterCa;
use kommit_daemon::consensus::App;
use kommit_daemon::consensus::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts fence and unfence calls.
#[derive(Default)]
pub struct FenceCounter {
    /// Times the lease expired.
    pub fenced: AtomicUsize,
    /// Times the lease was renewed after expiring.
    pub unfenced: AtomicUsize,
}

struct CountingFence(Arc<FenceCounter>);

impl FenceHook for CountingFence {
    fn fence(&self) {
        self.0.fenced.fetch_add(1, Ordering::SeqCst);
    }
    fn unfence(&self) {
        self.0.unfenced.fetch_add(1, Ordering::SeqCst);
    }
}

/// Options of a test cluster.
#[derive(Clone, Copy)]
pub struct Options {
    /// Voter policy.
    pub voters: VoterPolicy,
    /// Snapshot interval.
    pub snapshot_every: u64,
    /// Raft timing.
    pub timing: Timing,
    /// Liveness timing.
    pub liveness: LivenessConfig,
    /// Node certificate lifetime.
    pub cert_lifetime: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            voters: VoterPolicy::default(),
            snapshot_every: 1000,
            timing: Timing::default(),
            liveness: LivenessConfig {
                heartbeat_ms: 200,
                lease_ms: 1000,
                down_after_ms: 1600,
            },
            cert_lifetime: kommit_daemon::consensus::certs::DEFAULT_CERT_LIFETIME,
        }
    }
}

/// A cluster of in-process nodes replicating the reference key-value application.
pub type TestCluster = Cluster<KvApp>;

/// A cluster of in-process nodes replicating `A`.
pub struct Cluster<A: App> {
    /// Keeps every data dir alive.
    pub root: tempfile::TempDir,
    /// Running nodes by name (None when stopped).
    pub nodes: BTreeMap<String, Option<Node<A>>>,
    /// Each node's config (with its bound address after first start).
    pub cfgs: BTreeMap<String, NodeConfig>,
    /// Fence counters per node.
    pub fences: BTreeMap<String, Arc<FenceCounter>>,
    /// Bootstrap node's CA, for tokens.
    pub ca_pem: String,
}

/// Node name of the i-th node.
pub fn name(i: usize) -> String {
    format!("n{i}")
}

impl<A: App> Cluster<A> {
    fn config(root: &std::path::Path, i: usize, opts: &Options) -> NodeConfig {
        let ip = format!("127.0.0.{}", i + 1);
        let listen: SocketAddr = format!("{ip}:0").parse().expect("valid loopback address");
        let mut cfg = NodeConfig::new(&name(i), root.join(name(i)), listen);
        cfg.voters = opts.voters;
        cfg.snapshot_every = opts.snapshot_every;
        cfg.timing = opts.timing;
        cfg.liveness = opts.liveness;
        cfg.cert_lifetime = opts.cert_lifetime;
        cfg.facts.cpu_millis = 1000 * (i as u64 + 1);
        cfg.facts.memory_bytes = 1 << 30;
        cfg.facts.pods = 110;
        cfg
    }

    /// Bootstraps node 0 and joins `n - 1` more over mTLS with a join token.
    pub async fn start(n: usize, opts: Options) -> Result<Self, NodeError> {
        let root = tempfile::tempdir().expect("temp dir");
        let mut c = Self {
            root,
            nodes: BTreeMap::new(),
            cfgs: BTreeMap::new(),
            fences: BTreeMap::new(),
            ca_pem: String::new(),
        };
        let cfg0 = Self::config(c.root.path(), 0, &opts);
        let fence = Arc::new(FenceCounter::default());
        let n0 = Node::<A>::bootstrap(cfg0.clone(), Box::new(CountingFence(fence.clone()))).await?;
        c.ca_pem = ClusterCa::load(&cfg0.data_dir.join("tls"))?.cert_pem;
        c.remember(cfg0, n0, fence);
        for i in 1..n {
            c.join(i, opts).await?;
        }
        Ok(c)
    }

    fn remember(&mut self, mut cfg: NodeConfig, node: Node<A>, fence: Arc<FenceCounter>) {
        cfg.listen = node.local_addr();
        self.fences.insert(cfg.name.clone(), fence);
        self.nodes.insert(cfg.name.clone(), Some(node));
        self.cfgs.insert(cfg.name.clone(), cfg);
    }

    /// A fresh join token made through node 0.
    pub async fn token(&self) -> String {
        self.token_on(&name(0)).await
    }

    /// A fresh join token (10 minutes, any number of uses) made through node `on`: it goes
    /// into the replicated state, so any voter admits with it.
    pub async fn token_on(&self, on: &str) -> String {
        self.token_with(on, Duration::from_secs(600), None).await
    }

    /// A join token valid for `ttl` and `uses` joins, made through node `on`.
    pub async fn token_with(&self, on: &str, ttl: Duration, uses: Option<u32>) -> String {
        kommit_daemon::consensus::token::create(&self.node(on).shared(), ttl, uses)
            .await
            .expect("create token")
            .to_string()
    }

    /// Joins node `i` through node 0.
    pub async fn join(&mut self, i: usize, opts: Options) -> Result<(), NodeError> {
        self.join_via(i, opts, &name(0)).await
    }

    /// Joins node `i` through node `via`, with a token made on `via`.
    pub async fn join_via(&mut self, i: usize, opts: Options, via: &str) -> Result<(), NodeError> {
        let token = self.token_on(via).await;
        self.join_with_token(i, opts, via, &token).await
    }

    /// Joins node `i` through node `via` with `token` (made on any node).
    pub async fn join_with_token(
        &mut self,
        i: usize,
        opts: Options,
        via: &str,
        token: &str,
    ) -> Result<(), NodeError> {
        let cfg = Self::config(self.root.path(), i, &opts);
        let addr = self.cfgs[via].listen.to_string();
        let fence = Arc::new(FenceCounter::default());
        let node = Node::<A>::join(
            cfg.clone(),
            &addr,
            token,
            Box::new(CountingFence(fence.clone())),
        )
        .await?;
        self.remember(cfg, node, fence);
        Ok(())
    }

    /// Whether node `name` holds the cluster CA key on disk.
    pub fn holds_ca_key(&self, name: &str) -> bool {
        self.cfgs[name].data_dir.join("tls/ca.key").exists()
    }

    /// The running node `name`.
    pub fn node(&self, name: &str) -> &Node<A> {
        self.nodes[name].as_ref().expect("node is running")
    }

    /// Running nodes.
    pub fn running(&self) -> impl Iterator<Item = (&String, &Node<A>)> {
        self.nodes
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|n| (k, n)))
    }

    /// Stops node `name` (its disk stays).
    pub async fn stop(&mut self, name: &str) {
        if let Some(n) = self.nodes.get_mut(name).and_then(Option::take) {
            n.shutdown().await;
        }
    }

    /// Restarts node `name` from its data dir on the same address.
    pub async fn restart(&mut self, name: &str) -> Result<(), NodeError> {
        let cfg = self.cfgs[name].clone();
        let fence = self.fences[name].clone();
        let node = Node::<A>::restart(cfg.clone(), Box::new(CountingFence(fence.clone()))).await?;
        self.remember(cfg, node, fence);
        Ok(())
    }

    /// The leader as seen by a majority of running nodes, if any.
    pub fn leader(&self) -> Option<String> {
        let mut votes: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (_, n) in self.running() {
            let m = n.raft().metrics();
            let l = m.borrow().current_leader;
            if let Some(l) = l {
                *votes.entry(l).or_default() += 1;
            }
        }
        let (id, _) = votes.into_iter().max_by_key(|(_, c)| *c)?;
        let (name, _) = self.running().find(|(_, n)| n.id() == id)?;
        Some(name.clone())
    }

    /// Voter ids according to node `name`; empty while a joint (changing) configuration is
    /// in force, so "N voters" waits for the change to finish.
    pub fn voters(&self, name: &str) -> BTreeSet<NodeId> {
        let m = self.node(name).raft().metrics();
        let m = m.borrow();
        let mem = m.membership_config.membership();
        if mem.get_joint_config().len() > 1 {
            return BTreeSet::new();
        }
        mem.voter_ids().collect()
    }

    /// Member ids according to node `name`.
    pub fn members(&self, name: &str) -> BTreeSet<NodeId> {
        let m = self.node(name).raft().metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect()
    }

    /// Waits until node `name` has purged a prefix of its log (it took a snapshot), so a node
    /// behind that prefix can only catch up by installing a snapshot.
    pub async fn purged(&self, name: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.node(name).raft().metrics().borrow().purged.is_some()
        })
        .await
    }

    /// Whether node `name` has installed or taken a snapshot.
    pub fn has_snapshot(&self, name: &str) -> bool {
        self.node(name).raft().metrics().borrow().snapshot.is_some()
    }

    /// Digests of every running node.
    pub fn digests(&self) -> BTreeMap<String, String> {
        self.running()
            .map(|(k, n)| (k.clone(), n.digest()))
            .collect()
    }

    /// Waits until every running node has the same digest and applied index; returns it.
    pub async fn converged(&self, timeout: Duration) -> Result<String, String> {
        let mut last = BTreeMap::new();
        let ok = wait_until(timeout, || {
            last = self
                .running()
                .map(|(k, n)| (k.clone(), (n.applied_index(), n.digest())))
                .collect();
            let vals: BTreeSet<_> = last.values().collect();
            vals.len() == 1
        })
        .await;
        if ok {
            Ok(last
                .values()
                .next()
                .map(|(_, d)| d.clone())
                .unwrap_or_default())
        } else {
            Err(format!("nodes did not converge: {last:?}"))
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.stop(&n).await;
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
