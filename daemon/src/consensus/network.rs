//! Transport: openraft's RPCs as JSON over HTTPS with mutual TLS, and the TLS server loop.
//!
//! * Client side: [`PeerNetwork`] implements `RaftNetworkFactory`; each [`PeerConn`] posts to
//!   `https://<peer addr>/raft/{append,vote,snapshot}` with a shared reqwest client whose
//!   rustls config presents this node's certificate and trusts only the cluster CA.
//! * Server side: [`serve_tls`] accepts TCP, reads the ClientHello first, and picks the TLS
//!   configuration by server name: [`tls::JOIN_SERVER_NAME`] gets a config without client
//!   auth and only the join router; everything else gets the mandatory-mTLS config and the
//!   cluster router. A peer without a valid certificate (or with a revoked one) therefore fails
//!   in the handshake and never reaches a handler.
//! * Both sides sit behind the door limits of [`crate::door`].

use super::certs::{self, PeerCert};
use super::tls;
use super::{NodeId, Raft, TypeConfig};
use crate::door::{self, Limits, RequestGuard};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use rustls::ServerConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the reqwest client used for every peer call from a rustls client config.
pub fn peer_client(cfg: rustls::ClientConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

/// openraft network factory over HTTPS.
#[derive(Clone)]
pub struct PeerNetwork {
    client: reqwest::Client,
}

impl PeerNetwork {
    /// A factory using `client` (see [`peer_client`]).
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConn {
        PeerConn {
            client: self.client.clone(),
            base: format!("https://{}", node.addr),
            target,
        }
    }
}

/// One peer connection (a base URL over the shared client).
pub struct PeerConn {
    client: reqwest::Client,
    base: String,
    target: NodeId,
}

impl PeerConn {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .timeout(option.hard_ttl())
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let res: Result<Resp, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("/raft/vote", &rpc, &option).await
    }
}

/// The Raft RPC routes, to be merged into the cluster router.
pub fn raft_routes(raft: Raft) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(raft)
}

async fn append(
    State(raft): State<Raft>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.append_entries(req).await)
}

async fn vote(
    State(raft): State<Raft>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.vote(req).await)
}

async fn snapshot(
    State(raft): State<Raft>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(raft.install_snapshot(req).await)
}

/// Serves `cluster` (mTLS) and `join` (server-auth only, selected by SNI) on `listener` until
/// the returned task is aborted; aborting it also drops every open connection. Connections
/// are capped per peer and in total ([`Limits::CLUSTER`]); each router has its own request
/// limits ([`Limits::CLUSTER`], [`Limits::JOIN`]). Every request on the mTLS side carries
/// the peer's [`PeerCert`].
pub fn serve_tls(
    listener: TcpListener,
    cluster_cfg: Arc<ServerConfig>,
    join_cfg: Arc<ServerConfig>,
    cluster: Router,
    join: Router,
) -> tokio::task::JoinHandle<()> {
    let cluster = RequestGuard::new(Limits::CLUSTER).wrap(cluster);
    let join = RequestGuard::new(Limits::JOIN).wrap(join);
    door::accept_loop(
        listener,
        Limits::CLUSTER,
        false,
        std::future::pending(),
        move |tcp, peer, permit| {
            let (cc, jc) = (cluster_cfg.clone(), join_cfg.clone());
            let (cr, jr) = (cluster.clone(), join.clone());
            async move {
                if let Err(e) = serve_conn(tcp, peer, cc, jc, cr, jr).await {
                    tracing::debug!(?peer, "connection ended: {e}");
                }
                drop(permit);
            }
        },
    )
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
    peer: Option<std::net::IpAddr>,
    cluster_cfg: Arc<ServerConfig>,
    join_cfg: Arc<ServerConfig>,
    cluster: Router,
    join: Router,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(|e| format!("client hello: {e}"))?;
        let is_join = start.client_hello().server_name() == Some(tls::JOIN_SERVER_NAME);
        let cfg = if is_join { join_cfg } else { cluster_cfg };
        let stream = start
            .into_stream(cfg)
            .await
            .map_err(|e| format!("tls handshake: {e}"))?;
        Ok::<_, String>((stream, is_join))
    };
    let (stream, is_join) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "tls handshake timed out".to_string())??;
    let mut tags = door::tags(peer);
    if is_join {
        return door::serve_http(stream, join, tags, Limits::JOIN.header_timeout).await;
    }
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no client certificate")?;
    let info = certs::cert_info(cert.as_ref()).map_err(|e| e.to_string())?;
    // Nodes may share an address (in tests, or behind NAT): count each node's rate alone.
    tags.insert(door::RateKey(format!("node:{}", info.node)));
    tags.insert(PeerCert { info });
    door::serve_http(stream, cluster, tags, Limits::CLUSTER.header_timeout).await
}
