//! Transport: openraft's RPCs as JSON over HTTPS with mutual TLS, and the TLS server loop.
//!
//! * Client side: [`PeerNetwork`] implements `RaftNetworkFactory`; each [`PeerConn`] posts to
//!   `https://<peer addr>/raft/{append,vote,snapshot}` with a shared reqwest client whose
//!   rustls config presents this node's certificate and trusts only the cluster CA.
//! * Server side: [`serve_tls`] accepts TCP, reads the ClientHello first, and picks the TLS
//!   configuration by server name: [`tls::JOIN_SERVER_NAME`] gets a config without client
//!   auth and only the join router; everything else gets the mandatory-mTLS config and the
//!   cluster router. A peer without a valid certificate therefore fails in the handshake and
//!   never reaches a handler.

use super::tls;
use super::{NodeId, Raft, TypeConfig};
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
/// Maximum concurrent connections the server accepts.
const MAX_CONNECTIONS: usize = 1024;

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
/// the returned task is aborted; aborting it also drops every open connection.
pub fn serve_tls(
    listener: TcpListener,
    cluster_cfg: Arc<ServerConfig>,
    join_cfg: Arc<ServerConfig>,
    cluster: Router,
    join: Router,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if conns.len() >= MAX_CONNECTIONS {
                        tracing::warn!(%peer, "connection limit reached, dropping");
                        continue;
                    }
                    let (cc, jc) = (cluster_cfg.clone(), join_cfg.clone());
                    let (cr, jr) = (cluster.clone(), join.clone());
                    conns.spawn(async move {
                        if let Err(e) = serve_conn(tcp, cc, jc, cr, jr).await {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
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
    let router = if is_join { join } else { cluster };
    let service = hyper_util::service::TowerToHyperService::new(router);
    hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await
        .map_err(|e| format!("http: {e}"))
}
