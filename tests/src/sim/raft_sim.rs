//! Seeded fault simulation of the consensus layer: openraft with kommit's real redb stores
//! (in-memory backend), over an in-memory network that drops, delays and reorders messages,
//! partitions and heals, and crashes and restarts nodes (a restart reopens the same database,
//! like a process restart reads its disk). Time is tokio's paused clock, so a few hundred
//! seeds run in seconds.
//!
//! After every step the checker asserts:
//! * at most one leader per term (over the whole run);
//! * the same log id at the same index on every node, for every entry both have applied;
//! * no acknowledged write is missing from any node that applied past it;
//!
//! and once faults stop, all nodes converge to equal applied index and digest within a bound.
//!
//! The seed fixes the fault schedule and the workload; openraft's election jitter and task
//! interleaving are not seeded, so a reproduction replays the same faults, not the same
//! interleaving.

use kommit_daemon::consensus::kv::{KvApp, KvEntry};
use kommit_daemon::consensus::store::{in_memory_database, LogStore, StateMachineStore};
use kommit_daemon::consensus::{App, NodeId, Proposal, Raft, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftLogReader, ServerState, SnapshotPolicy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fault knobs of the simulated network.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Probability (per mille) to drop a request or its response.
    drop_permille: u32,
    /// Maximum extra delay per message, in ms (random per message, so messages reorder).
    max_delay_ms: u64,
    /// Partition id per node; nodes talk only within the same id.
    partition: BTreeMap<NodeId, u8>,
}

struct NetState {
    rafts: BTreeMap<NodeId, Raft>,
    faults: Faults,
    rng: ChaCha8Rng,
}

/// The in-memory network shared by every simulated node.
#[derive(Clone)]
pub struct SimNet {
    st: Arc<Mutex<NetState>>,
}

#[derive(Debug)]
struct SimError(String);
impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SimError {}

enum Fate {
    Unreachable,
    Deliver { delay: u64, drop_reply: bool },
}

impl SimNet {
    fn fate(&self, from: NodeId, to: NodeId) -> (Fate, Option<Raft>) {
        let mut st = self.st.lock().expect("net lock");
        let target = st.rafts.get(&to).cloned();
        let part = |st: &NetState, n| st.faults.partition.get(&n).copied().unwrap_or(0);
        if target.is_none() || part(&st, from) != part(&st, to) {
            return (Fate::Unreachable, None);
        }
        let d = st.faults.drop_permille;
        let max = st.faults.max_delay_ms;
        if st.rng.gen_range(0..1000) < d {
            return (Fate::Unreachable, None);
        }
        let delay = if max > 0 {
            st.rng.gen_range(0..=max)
        } else {
            0
        };
        let drop_reply = st.rng.gen_range(0..1000) < d;
        (Fate::Deliver { delay, drop_reply }, target)
    }
}

/// One simulated connection.
pub struct SimConn {
    net: SimNet,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for SimNetFactory {
    type Network = SimConn;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimConn {
        SimConn {
            net: self.net.clone(),
            from: self.from,
            to: target,
        }
    }
}

/// Per-node factory.
pub struct SimNetFactory {
    net: SimNet,
    from: NodeId,
}

macro_rules! deliver {
    ($self:ident, $call:ident, $rpc:ident) => {{
        let (fate, target) = $self.net.fate($self.from, $self.to);
        let (delay, drop_reply) = match fate {
            Fate::Unreachable => {
                return Err(RPCError::Unreachable(Unreachable::new(&SimError(
                    "unreachable".into(),
                ))))
            }
            Fate::Deliver { delay, drop_reply } => (delay, drop_reply),
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let target = target.expect("delivered messages have a target");
        let r = target.$call($rpc).await;
        if drop_reply {
            return Err(RPCError::Network(NetworkError::new(&SimError(
                "reply dropped".into(),
            ))));
        }
        r.map_err(|e| RPCError::RemoteError(RemoteError::new($self.to, e)))
    }};
}

impl RaftNetwork<TypeConfig> for SimConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        deliver!(self, append_entries, rpc)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        deliver!(self, install_snapshot, rpc)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        deliver!(self, vote, rpc)
    }
}

struct SimNode {
    db: Arc<redb::Database>,
    raft: Option<Raft>,
    sm: Option<StateMachineStore<KvApp>>,
}

/// Simulation parameters.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Number of nodes (all voters).
    pub nodes: u64,
    /// Fault steps before healing.
    pub steps: usize,
    /// Virtual time allowed for convergence after faults stop.
    pub converge_within: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            steps: 40,
            converge_within: Duration::from_secs(20),
        }
    }
}

fn raft_config() -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
            max_in_snapshot_log_to_keep: 0,
            install_snapshot_timeout: 500,
            ..Default::default()
        }
        .validate()
        .expect("valid raft config"),
    )
}

struct Sim {
    net: SimNet,
    nodes: BTreeMap<NodeId, SimNode>,
    leaders: BTreeMap<u64, NodeId>,
    acked: BTreeMap<String, (String, u64)>,
}

impl Sim {
    async fn start_node(&mut self, id: NodeId) -> Result<(), String> {
        let n = self.nodes.get_mut(&id).expect("known node");
        let log = LogStore::new_inline_in_memory(n.db.clone());
        let sm = StateMachineStore::<KvApp>::open_inline_in_memory(n.db.clone())
            .map_err(|e| e.to_string())?;
        let raft = Raft::new(
            id,
            raft_config(),
            SimNetFactory {
                net: self.net.clone(),
                from: id,
            },
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        n.raft = Some(raft.clone());
        n.sm = Some(sm);
        self.net.st.lock().expect("net lock").rafts.insert(id, raft);
        Ok(())
    }

    async fn crash(&mut self, id: NodeId) {
        self.net.st.lock().expect("net lock").rafts.remove(&id);
        let n = self.nodes.get_mut(&id).expect("known node");
        n.sm = None;
        if let Some(r) = n.raft.take() {
            let _ = r.shutdown().await;
        }
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    async fn check(&mut self, step: usize) -> Result<(), String> {
        // One leader per term.
        for (id, n) in &self.nodes {
            let Some(r) = &n.raft else { continue };
            let m = r.metrics();
            let (state, term) = {
                let m = m.borrow();
                (m.state, m.current_term)
            };
            if state == ServerState::Leader {
                if let Some(prev) = self.leaders.insert(term, *id) {
                    if prev != *id {
                        return Err(format!(
                            "step {step}: two leaders in term {term}: {prev} and {id}"
                        ));
                    }
                }
            }
        }
        // Same log id at the same applied index on every node.
        let mut seen: BTreeMap<u64, (NodeId, openraft::LogId<NodeId>)> = BTreeMap::new();
        for (id, n) in &self.nodes {
            let (Some(r), Some(sm)) = (&n.raft, &n.sm) else {
                continue;
            };
            let applied = sm.last_applied_index();
            let mut log = LogStore::new_inline_in_memory(n.db.clone());
            let entries = log
                .try_get_log_entries(..=applied)
                .await
                .map_err(|e| e.to_string())?;
            let _ = r;
            for e in entries {
                match seen.get(&e.log_id.index) {
                    Some((other, lid)) if *lid != e.log_id => {
                        return Err(format!(
                            "step {step}: index {} is {} on {other} but {} on {id}",
                            e.log_id.index, lid, e.log_id
                        ))
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(e.log_id.index, (*id, e.log_id));
                    }
                }
            }
        }
        // No acknowledged write lost on any node that applied past it.
        for (id, n) in &self.nodes {
            let Some(sm) = &n.sm else { continue };
            let applied = sm.last_applied_index();
            for (k, (v, idx)) in &self.acked {
                if *idx <= applied {
                    let got = sm.read(|a| a.kv.get(k).cloned());
                    if got.as_ref() != Some(v) {
                        return Err(format!(
                            "step {step}: acked {k}={v} at index {idx} missing on node {id} (applied {applied}, has {got:?})"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs one seed; returns a description of the first violated invariant.
pub async fn run_seed(seed: u64, cfg: SimConfig) -> Result<SimStats, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let net = SimNet {
        st: Arc::new(Mutex::new(NetState {
            rafts: BTreeMap::new(),
            faults: Faults::default(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
        })),
    };
    let mut sim = Sim {
        net,
        nodes: BTreeMap::new(),
        leaders: BTreeMap::new(),
        acked: BTreeMap::new(),
    };
    let ids: Vec<NodeId> = (1..=cfg.nodes).collect();
    for id in &ids {
        sim.nodes.insert(
            *id,
            SimNode {
                db: in_memory_database().map_err(|e| e.to_string())?,
                raft: None,
                sm: None,
            },
        );
        sim.start_node(*id).await?;
    }
    let members: BTreeMap<NodeId, BasicNode> = ids
        .iter()
        .map(|id| {
            (
                *id,
                BasicNode {
                    addr: format!("sim-{id}"),
                },
            )
        })
        .collect();
    sim.nodes[&1]
        .raft
        .as_ref()
        .expect("node 1 running")
        .initialize(members)
        .await
        .map_err(|e| e.to_string())?;
    let max_crashed = ((cfg.nodes - 1) / 2) as usize;

    for step in 0..cfg.steps {
        match rng.gen_range(0..100) {
            0..=44 => {
                // A write through a random live node (followers answer ForwardToLeader).
                let live = sim.live();
                let id = live[rng.gen_range(0..live.len())];
                let raft = sim.nodes[&id].raft.clone().expect("live");
                let key = format!("k{step}");
                let value = format!("s{seed}-{step}");
                let p = Proposal {
                    at_ms: step as u64,
                    items: vec![serde_json::to_value(KvEntry::Put {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .map_err(|e| e.to_string())?],
                };
                if let Ok(Ok(r)) =
                    tokio::time::timeout(Duration::from_millis(1500), raft.client_write(p)).await
                {
                    sim.acked.insert(key, (value, r.log_id.index));
                }
            }
            45..=54 => {
                let mut st = sim.net.st.lock().expect("net lock");
                st.faults.partition = ids.iter().map(|id| (*id, rng.gen_range(0..2u8))).collect();
            }
            55..=64 => {
                sim.net
                    .st
                    .lock()
                    .expect("net lock")
                    .faults
                    .partition
                    .clear();
            }
            65..=74 => {
                let live = sim.live();
                if ids.len() - live.len() < max_crashed {
                    let id = live[rng.gen_range(0..live.len())];
                    sim.crash(id).await;
                }
            }
            75..=84 => {
                let down: Vec<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|id| sim.nodes[id].raft.is_none())
                    .collect();
                if !down.is_empty() {
                    let id = down[rng.gen_range(0..down.len())];
                    sim.start_node(id).await?;
                }
            }
            _ => {
                let mut st = sim.net.st.lock().expect("net lock");
                st.faults.drop_permille = rng.gen_range(0..300);
                st.faults.max_delay_ms = rng.gen_range(0..120);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..300))).await;
        sim.check(step).await?;
    }

    // Faults stop: heal, restart everyone, and require convergence within the bound.
    {
        let mut st = sim.net.st.lock().expect("net lock");
        st.faults = Faults::default();
    }
    for id in &ids {
        if sim.nodes[id].raft.is_none() {
            sim.start_node(*id).await?;
        }
    }
    let deadline = tokio::time::Instant::now() + cfg.converge_within;
    let mut wrote_final = false;
    loop {
        sim.check(cfg.steps).await?;
        let states: BTreeSet<(u64, String)> = sim
            .nodes
            .values()
            .filter_map(|n| n.sm.as_ref())
            .map(|sm| (sm.last_applied_index(), sm.digest()))
            .collect();
        let leader_known = sim
            .nodes
            .values()
            .filter_map(|n| n.raft.as_ref())
            .all(|r| r.metrics().borrow().current_leader.is_some());
        if states.len() == 1 && leader_known && wrote_final {
            break;
        }
        if leader_known && !wrote_final {
            // One write after healing proves the cluster makes progress again.
            let leader = sim.nodes[&1]
                .raft
                .as_ref()
                .and_then(|r| r.metrics().borrow().current_leader);
            if let Some(l) = leader {
                if let Some(r) = sim.nodes[&l].raft.clone() {
                    let p = Proposal {
                        at_ms: cfg.steps as u64,
                        items: vec![serde_json::to_value(KvEntry::Put {
                            key: "final".into(),
                            value: format!("s{seed}"),
                        })
                        .map_err(|e| e.to_string())?],
                    };
                    if let Ok(Ok(r)) =
                        tokio::time::timeout(Duration::from_millis(1500), r.client_write(p)).await
                    {
                        sim.acked
                            .insert("final".into(), (format!("s{seed}"), r.log_id.index));
                        wrote_final = true;
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no convergence within {:?} after faults stopped: {states:?} (final write {wrote_final})",
                cfg.converge_within
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = SimStats {
        acked: sim.acked.len(),
        terms: sim.leaders.len(),
        applied: sim.nodes[&1]
            .sm
            .as_ref()
            .map(|s| s.last_applied_index())
            .unwrap_or(0),
        snapshots: sim
            .nodes
            .values()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.metrics().borrow().snapshot.is_some())
            .count(),
    };
    for id in &ids {
        sim.crash(*id).await;
    }
    Ok(stats)
}

/// What one seed did (to show the simulation exercises something).
#[derive(Debug, Clone, Copy, Default)]
pub struct SimStats {
    /// Acknowledged writes.
    pub acked: usize,
    /// Terms that had a leader.
    pub terms: usize,
    /// Final applied index.
    pub applied: u64,
    /// Nodes holding a snapshot at the end.
    pub snapshots: usize,
}

/// Runs `seed` on a fresh paused-clock runtime.
pub fn run_seed_blocking(seed: u64, cfg: SimConfig) -> Result<SimStats, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_seed(seed, cfg))
}

/// Whether a state digest exists for the kv app (keeps `App` in scope for docs).
pub fn digest_of(app: &KvApp) -> String {
    app.digest()
}
