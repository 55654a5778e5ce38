//! HTTP handlers of the cluster port (behind mTLS) and of the join endpoint (token-only), plus
//! the local API served on a root-only Unix socket for `kommit node drain|remove`.

use super::node::{
    Heartbeat, JoinRequest, JoinResponse, ProposeRequest, ProposeResponse, ReadIndexResponse,
    Shared,
};
use super::token::JoinToken;
use super::{node_id_for, now_ms, App, NodeId, Proposal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Longest accepted node name.
const MAX_NAME: usize = 253;

/// Routes on the mTLS cluster port.
pub fn cluster_routes<A: App>(shared: Arc<Shared<A>>) -> Router {
    Router::new()
        .route("/cluster/propose", post(propose::<A>))
        .route("/cluster/heartbeat", post(heartbeat::<A>))
        .route("/cluster/read_index", post(read_index::<A>))
        .route("/cluster/add_learner", post(add_learner::<A>))
        .route("/cluster/remove_member", post(remove_member::<A>))
        .route("/cluster/status", get(status::<A>))
        .route("/cluster/ca", post(receive_ca::<A>))
        .route("/cluster/age-keys", post(super::keys::receive_keys::<A>))
        .route("/cluster/renew", post(super::renew::renew::<A>))
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .with_state(shared)
}

/// Routes on the join endpoint (no client certificate; the token authenticates).
pub fn join_routes<A: App>(shared: Arc<Shared<A>>) -> Router {
    Router::new()
        .route("/join", post(join::<A>))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 10))
        .with_state(shared)
}

async fn propose<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(req): Json<ProposeRequest>,
) -> Json<ProposeResponse> {
    let r = s
        .raft
        .client_write(Proposal {
            at_ms: now_ms(),
            items: req.items,
        })
        .await;
    Json(match r {
        Ok(r) => ProposeResponse {
            index: Some(r.log_id.index),
            error: None,
        },
        Err(e) => ProposeResponse {
            index: None,
            error: Some(e.to_string()),
        },
    })
}

async fn read_index<A: App>(State(s): State<Arc<Shared<A>>>) -> Json<ReadIndexResponse> {
    Json(match s.raft.ensure_linearizable().await {
        Ok(l) => ReadIndexResponse {
            index: Some(l.map(|l| l.index).unwrap_or(0)),
            error: None,
        },
        Err(e) => ReadIndexResponse {
            index: None,
            error: Some(e.to_string()),
        },
    })
}

pub(crate) fn is_member<A: App>(s: &Shared<A>, id: NodeId) -> bool {
    s.raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .is_some()
}

async fn heartbeat<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(hb): Json<Heartbeat>,
) -> (StatusCode, String) {
    if hb.facts.name.len() > MAX_NAME || node_id_for(&hb.facts.name) != hb.id {
        return (
            StatusCode::BAD_REQUEST,
            "node id does not match name".into(),
        );
    }
    if !is_member(&s, hb.id) {
        return (StatusCode::FORBIDDEN, "not a cluster member".into());
    }
    if let Err(e) = A::node_up(hb.facts.clone()) {
        return (StatusCode::BAD_REQUEST, e);
    }
    // Acknowledge only while this node provably leads a quorum, so a deposed leader cannot
    // renew anybody's lease.
    let confirmed = s
        .confirmer
        .confirm(|| async { s.raft.ensure_linearizable().await.is_ok() })
        .await;
    if confirmed {
        s.tracker.seen(hb.id, hb.facts, Instant::now());
        (StatusCode::OK, "ok".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot confirm leadership".into(),
        )
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct AddLearner {
    pub id: NodeId,
    pub addr: String,
}

async fn add_learner<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(req): Json<AddLearner>,
) -> (StatusCode, String) {
    match s
        .raft
        .add_learner(req.id, BasicNode { addr: req.addr }, false)
        .await
    {
        Ok(_) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RemoveMember {
    pub id: NodeId,
}

async fn remove_member<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(req): Json<RemoveMember>,
) -> (StatusCode, String) {
    match remove_local(&s, req.id).await {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn remove_local<A: App>(s: &Shared<A>, id: NodeId) -> Result<(), String> {
    let voters: BTreeSet<NodeId> = s
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    if voters.contains(&id) {
        let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
        if rest.is_empty() {
            return Err("cannot remove the last voter".into());
        }
        s.raft
            .change_membership(rest, true)
            .await
            .map_err(|e| e.to_string())?;
    }
    match s
        .raft
        .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
        .await
    {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::LearnerNotFound(_),
        ))) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Status of one node, as served on `/cluster/status` and the local API.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Raft role.
    pub state: String,
    /// Current term.
    pub term: u64,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Last applied index.
    pub applied: u64,
    /// State digest at that index.
    pub digest: String,
    /// Voter ids.
    pub voters: Vec<NodeId>,
    /// Every member id.
    pub members: Vec<NodeId>,
    /// Whether the lease fence is active.
    pub fenced: bool,
}

/// The status of the node behind `s`.
pub fn status_of<A: App>(s: &Shared<A>) -> Status {
    let m = s.raft.metrics();
    let m = m.borrow();
    let mem = m.membership_config.membership();
    let (applied, digest) = s.sm.applied_digest();
    Status {
        id: s.id,
        name: s.name.clone(),
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        applied,
        digest,
        voters: mem.voter_ids().collect(),
        members: mem.nodes().map(|(id, _)| *id).collect(),
        fenced: s.lease.fenced(),
    }
}

async fn status<A: App>(State(s): State<Arc<Shared<A>>>) -> Json<Status> {
    Json(status_of(&s))
}

async fn join<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(req): Json<JoinRequest>,
) -> (StatusCode, String) {
    match admit(&s, req).await {
        Ok(resp) => (
            StatusCode::OK,
            serde_json::to_string(&resp).unwrap_or_default(),
        ),
        Err((code, msg)) => {
            tracing::warn!("join refused: {msg}");
            (code, msg)
        }
    }
}

async fn admit<A: App>(
    s: &Shared<A>,
    req: JoinRequest,
) -> Result<JoinResponse, (StatusCode, String)> {
    let unauthorized = |m: String| (StatusCode::UNAUTHORIZED, m);
    let token = JoinToken::parse(&req.token).map_err(|e| unauthorized(e.to_string()))?;
    let ca = s.ca().ok_or_else(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {} holds no CA key; join through a voter", s.name),
        )
    })?;
    let ca_hash = super::tls::ca_hash(&ca.cert_pem)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if token.ca_hash != ca_hash {
        return Err(unauthorized(
            "invalid join token: CA hash does not match this cluster".into(),
        ));
    }
    super::token::check(s, &token)
        .await
        .map_err(|e| unauthorized(format!("invalid join token: {e}")))?;
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    if req.name.is_empty()
        || req.name.len() > MAX_NAME
        || !req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad(format!("invalid node name {:?}", req.name)));
    }
    req.address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| bad(format!("invalid address {:?}: {e}", req.address)))?;
    let cert_pem = ca
        .sign_csr(&req.csr_pem, &req.name, s.cfg.cert_lifetime)
        .map_err(|e| bad(e.to_string()))?;
    let issued = super::certs::pem_cert_info(&cert_pem)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // The token's use is consumed, and the certificate recorded, before it is handed out.
    super::token::record_cert(
        s,
        Some(&token),
        &req.name,
        &issued.serial,
        issued.not_after_ms,
    )
    .await
    .map_err(unauthorized)?;
    let id = node_id_for(&req.name);
    add_learner_via_leader(s, id, &req.address)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(JoinResponse {
        ca_pem: ca.cert_pem.clone(),
        cert_pem,
    })
}

/// Runs `f` on the leader: locally when this node leads, else through the leader's cluster
/// endpoint `path` with `body`.
async fn add_learner_via_leader<A: App>(
    s: &Shared<A>,
    id: NodeId,
    addr: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (state, leader) = {
            let m = s.raft.metrics();
            let m = m.borrow();
            let leader = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            (m.state, leader)
        };
        let r = if state == ServerState::Leader {
            s.raft
                .add_learner(id, BasicNode { addr: addr.into() }, false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else if let Some(l) = leader {
            post_ok(
                s,
                &l,
                "/cluster/add_learner",
                &AddLearner {
                    id,
                    addr: addr.into(),
                },
            )
            .await
        } else {
            Err("no leader".into())
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(format!("cannot add learner: {e}")),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

async fn post_ok<A: App, T: serde::Serialize>(
    s: &Shared<A>,
    leader: &str,
    path: &str,
    body: &T,
) -> Result<(), String> {
    let url = format!("https://{leader}{path}");
    let r = s
        .client
        .post(&url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(r.text().await.unwrap_or_default())
    }
}

/// Removes node `name` from the Raft membership, through the leader.
pub async fn remove_member_via_leader<A: App>(s: &Shared<A>, name: &str) -> Result<(), String> {
    let id = node_id_for(name);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (state, leader) = {
            let m = s.raft.metrics();
            let m = m.borrow();
            let leader = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            (m.state, leader)
        };
        let r = if state == ServerState::Leader {
            remove_local(s, id).await
        } else if let Some(l) = leader {
            post_ok(s, &l, "/cluster/remove_member", &RemoveMember { id }).await
        } else {
            Err("no leader".into())
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("cannot remove {name}: {e}"))
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// The CA handed from the leader to a voter.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct CaHandoff {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Stores the cluster CA key sent by the leader, if this node is a voter, the certificate is
/// this cluster's and the key belongs to it.
async fn receive_ca<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(h): Json<CaHandoff>,
) -> (StatusCode, String) {
    let voter = {
        let m = s.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .voter_ids()
            .any(|v| v == s.id)
    };
    if !voter {
        return (StatusCode::FORBIDDEN, "only voters hold the CA key".into());
    }
    let dir = s.cfg.data_dir.join("tls");
    let own = match super::tls::NodeIdentity::load(&dir) {
        Ok(i) => i.ca_pem,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if own != h.cert_pem {
        return (StatusCode::BAD_REQUEST, "not this cluster's CA".into());
    }
    let ca = super::tls::ClusterCa {
        cert_pem: h.cert_pem,
        key_pem: h.key_pem,
    };
    match ca.key_matches_cert() {
        Ok(true) => {}
        Ok(false) => {
            return (
                StatusCode::BAD_REQUEST,
                "CA key does not match the CA".into(),
            )
        }
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    }
    if s.ca().is_none() {
        if let Err(e) = ca.store(&dir) {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        *s.ca.write().unwrap_or_else(|p| p.into_inner()) = Some(ca);
        tracing::info!("received the cluster CA key: this voter can admit nodes");
    }
    (StatusCode::OK, "ok".into())
}
