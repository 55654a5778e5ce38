//! The local API: HTTP on a Unix socket under the data dir, mode 0600 in a 0700 directory,
//! so only root (the daemon's user) can use it. Operator commands (`kommit node drain|remove`,
//! `kommit token create|delete`) and local tools go through it; they become Raft entries like
//! everything else. It sits behind the door limits of [`crate::door::Limits::LOCAL`].

use super::api::{remove_member_via_leader, status_of, Status};
use super::node::{propose, Shared};
use super::App;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::path::Path;
use std::sync::Arc;

/// Socket file name under the data dir.
pub const SOCKET: &str = "kommit.sock";

/// Errors of the local API.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The socket could not be created.
    #[error("cannot serve local api at {path}: {source}")]
    Bind {
        /// Socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Binds the local API socket at `path` and serves it, with the routes of `extra` (other
/// parts of the daemon), until the task is aborted.
pub fn serve_local<A: App>(
    shared: Arc<Shared<A>>,
    path: &Path,
    extra: Router,
) -> Result<tokio::task::JoinHandle<()>, LocalError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| LocalError::Bind {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let router = Router::new()
        .route("/status", get(status::<A>))
        .route("/state", get(state::<A>))
        .route("/propose", post(propose_entry::<A>))
        .route("/node/drain", post(drain::<A>))
        .route("/node/uncordon", post(uncordon::<A>))
        .route("/node/remove", post(remove::<A>))
        .route("/token/create", post(token_create::<A>))
        .route("/token/delete", post(token_delete::<A>))
        .with_state(shared)
        .merge(extra);
    Ok(crate::door::serve(
        listener,
        router,
        crate::door::Limits::LOCAL,
        std::future::pending(),
    ))
}

/// Body of `/token/create`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TokenCreate {
    /// Lifetime in milliseconds.
    pub ttl_ms: u64,
    /// Joins it admits; absent for any number until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
}

async fn token_create<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(t): Json<TokenCreate>,
) -> (StatusCode, String) {
    let ttl = std::time::Duration::from_millis(t.ttl_ms);
    match super::token::create(&s, ttl, t.uses).await {
        Ok(token) => (StatusCode::OK, token.to_string()),
        Err(e @ super::node::NodeError::Config(_)) => (StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Body of `/token/delete`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TokenId {
    /// The token id (the third field of the token).
    pub id: String,
}

async fn token_delete<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(t): Json<TokenId>,
) -> (StatusCode, String) {
    match super::token::delete(&s, &t.id).await {
        Ok(()) => (StatusCode::OK, format!("join token {} deleted", t.id)),
        Err(e @ super::node::NodeError::Config(_)) => (StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn status<A: App>(State(s): State<Arc<Shared<A>>>) -> Json<Status> {
    Json(status_of(&s))
}

/// The longest a blocking `/state` query waits.
pub const MAX_STATE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Header naming the applied index a `/state` answer is at least as new as.
pub const INDEX_HEADER: &str = "x-kommit-index";

/// `/state?index=N&wait_ms=W`: a blocking query, as Nomad's. With `index`, the answer waits
/// until an entry after `N` is applied, or `W` ms pass (default 5 s, at most 60 s).
#[derive(serde::Deserialize)]
struct StateQuery {
    index: Option<u64>,
    wait_ms: Option<u64>,
}

async fn state<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Query(q): Query<StateQuery>,
) -> ([(&'static str, String); 1], Vec<u8>) {
    if let Some(after) = q.index {
        let wait = std::time::Duration::from_millis(q.wait_ms.unwrap_or(5_000)).min(MAX_STATE_WAIT);
        let mut w = s.sm.applied_watch();
        let _ = tokio::time::timeout(wait, w.wait_for(|a| *a > after)).await;
    }
    // The index first: the state read after it is at least as new.
    let index = s.sm.last_applied_index();
    let bytes = s.sm.read(|a| a.snapshot_bytes());
    ([(INDEX_HEADER, index.to_string())], bytes)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    index: u64,
}

async fn propose_entry<A: App>(
    State(s): State<Arc<Shared<A>>>,
    body: Bytes,
) -> (StatusCode, String) {
    let entry: A::Entry = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid entry: {e}")),
    };
    match propose(&s, &entry).await {
        Ok(index) => (
            StatusCode::OK,
            serde_json::to_string(&Index { index }).unwrap_or_default(),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Body of `/node/drain` and `/node/remove`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct NodeName {
    /// The node.
    pub name: String,
}

async fn drain<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(n): Json<NodeName>,
) -> (StatusCode, String) {
    operator_entry(&s, &n.name, A::node_drain(&n.name), "drained").await
}

async fn uncordon<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(n): Json<NodeName>,
) -> (StatusCode, String) {
    operator_entry(&s, &n.name, A::node_uncordon(&n.name), "uncordoned").await
}

/// Proposes an operator's entry about a node the state knows.
async fn operator_entry<A: App>(
    s: &Shared<A>,
    name: &str,
    entry: A::Entry,
    done: &str,
) -> (StatusCode, String) {
    if s.sm.read(|a| a.node_view(name)).is_none() {
        return (StatusCode::NOT_FOUND, format!("unknown node {name}"));
    }
    match propose(s, &entry).await {
        Ok(i) => (StatusCode::OK, format!("node {name} {done} at index {i}")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn remove<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(n): Json<NodeName>,
) -> (StatusCode, String) {
    match remove_node(&s, &n.name).await {
        Ok(i) => (
            StatusCode::OK,
            format!(
                "node {} removed at index {i}; its certificates are revoked",
                n.name
            ),
        ),
        Err(e) => e,
    }
}

/// Removes node `name`: out of the Raft membership, then a `NodeRemove` entry, which also
/// revokes every certificate the state records for it. Returns the entry's index.
pub async fn remove_node<A: App>(s: &Shared<A>, name: &str) -> Result<u64, (StatusCode, String)> {
    if s.sm.read(|a| a.node_view(name)).is_none() {
        return Err((StatusCode::NOT_FOUND, format!("unknown node {name}")));
    }
    remove_member_via_leader(s, name)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))?;
    propose(s, &A::node_remove(name))
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// A reqwest client for the local API socket under `data_dir`.
pub fn local_client(data_dir: &Path) -> Result<reqwest::Client, reqwest::Error> {
    kommit_runtime::tls::install_crypto_provider();
    reqwest::Client::builder()
        .unix_socket(data_dir.join(SOCKET))
        .build()
}
