//! The node: one Raft member with its stores, TLS server, proposal batcher and control loops.
//!
//! [`Node::bootstrap`], [`Node::join`] and [`Node::restart`] differ only in how the TLS
//! identity and the membership come to exist; all three end in [`Node::start`]. What a node
//! persists under its data dir (`raft.redb`, `tls/`) is enough to restart it with
//! nothing else: no add_learner, no initialize.

use super::certs::{CertSlot, Revocations};
use super::liveness::{FenceHook, Lease, LivenessConfig, Tracker};
use super::membership::VoterPolicy;
use super::network::{self, PeerNetwork};
use super::store::{self, LogStore, StateMachineStore};
use super::tls::{self, ClusterCa, NodeIdentity};
use super::token::JoinToken;
use super::{node_id_for, App, NodeFacts, NodeId, Raft};
use crate::consensus::api;
use openraft::{BasicNode, SnapshotPolicy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(crate) use super::loops::Heartbeat;
use super::loops::{heartbeat_loop, leader_loop};
use super::propose::{batcher, read_index};
pub use super::propose::{catch_up, propose, propose_applied, wait_applied, MAX_BATCH_ITEMS};

/// The index a linearizable read must wait for: the leader's commit index, confirmed by a
/// quorum (asked of the leader when this node follows).
pub async fn leader_read_index<A: App>(shared: &Shared<A>) -> Result<u64, NodeError> {
    read_index(shared).await
}
pub(crate) use super::propose::{ProposeRequest, ProposeResponse, ReadIndexResponse};

/// Capacity of the proposal queue.
const QUEUE: usize = 4096;

/// Errors of a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Store error.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// TLS error.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// I/O error on a path.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Raft refused or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// The join was refused by the cluster.
    #[error("join refused by {addr}: {message}")]
    JoinRefused {
        /// The address joined.
        addr: String,
        /// The server's reason.
        message: String,
    },
    /// A proposal could not be committed.
    #[error("proposal failed: {0}")]
    Propose(String),
    /// An HTTP call failed.
    #[error("request to {url} failed: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
}

/// Raft election and replication timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Minimum election timeout.
    pub election_min_ms: u64,
    /// Maximum election timeout.
    pub election_max_ms: u64,
}

impl Default for Timing {
    /// Defaults that elect a new leader well under 2 s after the old one dies.
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
        }
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Unique node name; the Raft id is derived from it.
    pub name: String,
    /// Data dir holding `raft.redb` and `tls/`.
    pub data_dir: PathBuf,
    /// Address the cluster port binds.
    pub listen: SocketAddr,
    /// Address peers dial; defaults to the bound address.
    pub advertise: Option<String>,
    /// Raft timing.
    pub timing: Timing,
    /// Take a snapshot every this many applied entries.
    pub snapshot_every: u64,
    /// Voter policy.
    pub voters: VoterPolicy,
    /// Liveness timing.
    pub liveness: LivenessConfig,
    /// Facts reported in heartbeats (name and address are filled in).
    pub facts: NodeFacts,
    /// How often the leader asks the application for a periodic entry (`App::tick`).
    pub tick_ms: u64,
    /// Lifetime of the node certificates this node issues (as a voter) and of its own; the
    /// holder renews once two thirds have passed.
    pub cert_lifetime: Duration,
}

impl NodeConfig {
    /// A config with defaults for `name` in `data_dir`, listening on `listen`.
    pub fn new(name: &str, data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            name: name.into(),
            data_dir,
            listen,
            advertise: None,
            timing: Timing::default(),
            snapshot_every: 1000,
            voters: VoterPolicy::default(),
            liveness: LivenessConfig::default(),
            facts: NodeFacts::default(),
            tick_ms: 5000,
            cert_lifetime: super::certs::DEFAULT_CERT_LIFETIME,
        }
    }

    fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }
}

pub(crate) struct Pending {
    pub items: Vec<serde_json::Value>,
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// State shared by the node's tasks and HTTP handlers.
pub struct Shared<A: App> {
    /// openraft handle.
    pub raft: Raft,
    /// State machine.
    pub sm: StateMachineStore<A>,
    /// This node's id.
    pub id: NodeId,
    /// This node's name.
    pub name: String,
    /// Advertised cluster address.
    pub addr: String,
    /// mTLS client for peers.
    pub client: reqwest::Client,
    /// Configuration.
    pub cfg: NodeConfig,
    /// Heartbeat record (leader side).
    pub tracker: Tracker,
    /// Coalesced leadership confirmations for heartbeat acknowledgements.
    pub confirmer: super::liveness::Confirmer,
    /// This node's lease.
    pub lease: Lease,
    /// CA, when this node holds the key (it can admit joining nodes). The bootstrap node
    /// makes it; the leader hands it to every voter, so any voter can admit nodes.
    pub ca: std::sync::RwLock<Option<ClusterCa>>,
    /// This node's certificate and key in use on the cluster port (swapped on renewal).
    pub cert: Arc<CertSlot>,
    /// Revoked certificate serials, as the replicated state last said.
    pub revocations: Arc<Revocations>,
    pub(crate) batch_tx: mpsc::Sender<Pending>,
}

impl<A: App> Shared<A> {
    /// The cluster CA, when this node holds its key.
    pub fn ca(&self) -> Option<ClusterCa> {
        self.ca.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running node.
pub struct Node<A: App> {
    shared: Arc<Shared<A>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    local_addr: SocketAddr,
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct JoinRequest {
    pub token: String,
    pub name: String,
    pub address: String,
    pub csr_pem: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct JoinResponse {
    pub ca_pem: String,
    pub cert_pem: String,
}

impl<A: App> Node<A> {
    /// Starts the first node of a new cluster: makes the CA and this node's certificate (once)
    /// and initialises a one-voter membership (once).
    pub async fn bootstrap(cfg: NodeConfig, fence: Box<dyn FenceHook>) -> Result<Self, NodeError> {
        let dir = cfg.tls_dir();
        if !NodeIdentity::exists(&dir) {
            let ca = ClusterCa::generate(&cfg.name)?;
            ca.store(&dir)?;
            ca.issue(&cfg.name, cfg.cert_lifetime)?.store(&dir)?;
        }
        let node = Self::start(cfg, fence).await?;
        let raft = &node.shared.raft;
        if !raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?
        {
            let members = BTreeMap::from([(
                node.shared.id,
                BasicNode {
                    addr: node.shared.addr.clone(),
                },
            )]);
            raft.initialize(members)
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
        }
        Ok(node)
    }

    /// Joins the cluster at `addr` with `token` (first start only; a node that already has an
    /// identity just restarts).
    pub async fn join(
        cfg: NodeConfig,
        addr: &str,
        token: &str,
        fence: Box<dyn FenceHook>,
    ) -> Result<Self, NodeError> {
        let dir = cfg.tls_dir();
        if NodeIdentity::exists(&dir) {
            return Self::start(cfg, fence).await;
        }
        let token = JoinToken::parse(token)?;
        let (key_pem, csr_pem) = tls::make_csr(&cfg.name)?;
        // Bind first so the advertised address is known; the listener is handed to start().
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| NodeError::Io {
                path: cfg.listen.to_string(),
                source: e,
            })?;
        let advertise = match &cfg.advertise {
            Some(a) => a.clone(),
            None => listener
                .local_addr()
                .map_err(|e| NodeError::Io {
                    path: cfg.listen.to_string(),
                    source: e,
                })?
                .to_string(),
        };
        let resp = request_join(addr, &token, &cfg.name, &advertise, &csr_pem).await?;
        NodeIdentity {
            ca_pem: resp.ca_pem,
            cert_pem: resp.cert_pem,
            key_pem,
        }
        .store(&dir)?;
        Self::start_on(cfg, listener, fence).await
    }

    /// Restarts a node from its data dir.
    pub async fn restart(cfg: NodeConfig, fence: Box<dyn FenceHook>) -> Result<Self, NodeError> {
        if !NodeIdentity::exists(&cfg.tls_dir()) {
            return Err(NodeError::Config(format!(
                "{} holds no node identity; bootstrap or join first",
                cfg.data_dir.display()
            )));
        }
        Self::start(cfg, fence).await
    }

    async fn start(cfg: NodeConfig, fence: Box<dyn FenceHook>) -> Result<Self, NodeError> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| NodeError::Io {
                path: cfg.listen.to_string(),
                source: e,
            })?;
        Self::start_on(cfg, listener, fence).await
    }

    async fn start_on(
        cfg: NodeConfig,
        listener: tokio::net::TcpListener,
        fence: Box<dyn FenceHook>,
    ) -> Result<Self, NodeError> {
        cfg.liveness
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        // The invariant the fencing argument rests on, asserted where the loops start.
        assert!(
            cfg.liveness.lease_ms < cfg.liveness.down_after_ms,
            "lease must be shorter than the down timeout"
        );
        std::fs::create_dir_all(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
        // The data dir holds keys, the Raft log and the mirror; the log carries the desired
        // state, Secrets included. Only root may read it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&cfg.data_dir))?;
        }
        let local_addr = listener.local_addr().map_err(io(&cfg.data_dir))?;
        let addr = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| local_addr.to_string());
        let tls_dir = cfg.tls_dir();
        let identity = NodeIdentity::load(&tls_dir)?;
        let ca = ClusterCa::load(&tls_dir).ok();
        let revocations = Arc::new(Revocations::default());
        let live = identity.live(revocations.clone())?;
        let client = network::peer_client(live.client).map_err(|e| NodeError::Http {
            url: "client".into(),
            message: e.to_string(),
        })?;

        let db = store::open_database(&cfg.data_dir.join("raft.redb"))?;
        let sm = StateMachineStore::<A>::open(db.clone(), None)?;
        let log = LogStore::new(db);
        let raft_cfg = openraft::Config {
            cluster_name: "kommit".into(),
            heartbeat_interval: cfg.timing.heartbeat_ms,
            election_timeout_min: cfg.timing.election_min_ms,
            election_timeout_max: cfg.timing.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))?;
        let id = node_id_for(&cfg.name);
        let raft = Raft::new(
            id,
            Arc::new(raft_cfg),
            PeerNetwork::new(client.clone()),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;

        let (batch_tx, batch_rx) = mpsc::channel(QUEUE);
        let lease = Lease::new(cfg.liveness.lease_ms, fence);
        let shared = Arc::new(Shared {
            raft: raft.clone(),
            sm,
            id,
            name: cfg.name.clone(),
            addr,
            client,
            cfg,
            tracker: Tracker::default(),
            confirmer: Default::default(),
            lease,
            ca: std::sync::RwLock::new(ca),
            cert: live.slot,
            revocations: revocations.clone(),
            batch_tx,
        });
        // Revocations already in the restored state hold from the first handshake on.
        super::renew::refresh_revocations(&shared);
        let cluster_router = network::raft_routes(raft)
            .merge(api::cluster_routes(shared.clone()))
            .layer(axum::middleware::from_fn_with_state(
                revocations,
                super::certs::refuse_revoked,
            ));
        let tasks = vec![
            network::serve_tls(
                listener,
                live.cluster,
                live.join,
                cluster_router,
                api::join_routes(shared.clone()),
            ),
            tokio::spawn(batcher(shared.clone(), batch_rx)),
            tokio::spawn(heartbeat_loop(shared.clone())),
            tokio::spawn(leader_loop(shared.clone())),
            tokio::spawn(super::keys::keyring_loop(shared.clone())),
            tokio::spawn(super::renew::revocation_loop(shared.clone())),
            tokio::spawn(super::renew::cert_loop(shared.clone())),
        ];
        Ok(Self {
            shared,
            tasks,
            local_addr,
        })
    }

    /// The address the cluster port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The openraft handle (metrics, membership).
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// Shared state (for the local API).
    pub fn shared(&self) -> Arc<Shared<A>> {
        self.shared.clone()
    }

    /// Proposes one application entry through the batcher; returns the log index that
    /// committed it. Works on any node (followers forward to the leader).
    pub async fn propose(&self, entry: &A::Entry) -> Result<u64, NodeError> {
        propose(&self.shared, entry).await
    }

    /// Reads the local (possibly stale) state.
    pub fn read_local<R>(&self, f: impl FnOnce(&A) -> R) -> R {
        self.shared.sm.read(f)
    }

    /// A linearizable read: on the leader via `ensure_linearizable`; on a follower by asking
    /// the leader for its read index and waiting until it is applied locally.
    pub async fn read_linearizable<R>(&self, f: impl FnOnce(&A) -> R) -> Result<R, NodeError> {
        catch_up(&self.shared).await?;
        Ok(self.shared.sm.read(f))
    }

    /// Digest of the local state.
    pub fn digest(&self) -> String {
        self.shared.sm.digest()
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.shared.sm.last_applied_index()
    }

    /// Whether this node's lease fence is active.
    pub fn fenced(&self) -> bool {
        self.shared.lease.fenced()
    }

    /// Stops every task and Raft, dropping open connections (like a crash, minus the disk).
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.shared.raft.shutdown().await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn request_join(
    addr: &str,
    token: &JoinToken,
    name: &str,
    advertise: &str,
    csr_pem: &str,
) -> Result<JoinResponse, NodeError> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| NodeError::Config(format!("join address {addr}: {e}")))?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls::join_client_config(&token.ca_hash)?)
        .resolve(tls::JOIN_SERVER_NAME, sock)
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| NodeError::Http {
            url: addr.into(),
            message: e.to_string(),
        })?;
    let url = format!("https://{}:{}/join", tls::JOIN_SERVER_NAME, sock.port());
    let resp = client
        .post(&url)
        .json(&JoinRequest {
            token: token.to_string(),
            name: name.into(),
            address: advertise.into(),
            csr_pem: csr_pem.into(),
        })
        .send()
        .await
        .map_err(|e| NodeError::Http {
            url: url.clone(),
            message: format!("{e:#}: {}", error_chain(&e)),
        })?;
    if !resp.status().is_success() {
        let message = resp.text().await.unwrap_or_default();
        return Err(NodeError::JoinRefused {
            addr: addr.into(),
            message,
        });
    }
    resp.json().await.map_err(|e| NodeError::Http {
        url,
        message: e.to_string(),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}
