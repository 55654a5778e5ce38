//! The cluster's age keyring ([`crate::cluster_key`]) travels like the CA key: only between
//! members, over the cluster port's mTLS. Unlike the CA key it goes to every member, voters
//! and learners alike, since any node may run a pod that references an encrypted Secret.
//!
//! The leader sends its keyring to each member when its content changed since that member
//! last confirmed it, and at least every [`RESEND`]; the member merges it into its own and
//! answers with the union, which the leader merges in turn. Keyrings only grow and merge
//! as unions, so the order of exchanges does not matter, and an identity imported on any
//! node reaches every other one within two rounds. The keyring is never written to the
//! Raft log, a snapshot or Git.

use super::node::Shared;
use super::{App, NodeId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use openraft::ServerState;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the leader looks.
const EVERY: Duration = Duration::from_secs(1);
/// How often a member that already confirmed the leader's keyring gets it again (to pick
/// up identities imported on that member).
const RESEND: Duration = Duration::from_secs(15);

/// The keyring sent and answered.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct KeyringHandoff {
    /// The keyring file's text.
    pub keyring: String,
}

fn digest(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Merges a keyring sent by the leader into this node's, and answers with the union.
pub(crate) async fn receive_keys<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Json(h): Json<KeyringHandoff>,
) -> (StatusCode, Json<KeyringHandoff>) {
    let fail = |status, why: String| {
        tracing::warn!("cluster age keyring refused: {why}");
        (
            status,
            Json(KeyringHandoff {
                keyring: String::new(),
            }),
        )
    };
    if h.keyring.len() as u64 > crate::cluster_key::MAX_KEYRING_BYTES {
        return fail(StatusCode::PAYLOAD_TOO_LARGE, "too large".into());
    }
    let ring = match kommit_sops::Keyring::parse(&h.keyring) {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let dir = s.cfg.data_dir.clone();
    let merged = tokio::task::spawn_blocking(move || crate::cluster_key::merge(&dir, &ring)).await;
    match merged {
        Ok(Ok((ring, added))) => {
            if added > 0 {
                tracing::info!(
                    added,
                    current = ring.current().unwrap_or_default(),
                    "received the cluster age keyring"
                );
            }
            (
                StatusCode::OK,
                Json(KeyringHandoff {
                    keyring: ring.to_text(),
                }),
            )
        }
        Ok(Err(e)) => fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// As leader: hands the keyring to every member (see the module docs).
pub(crate) async fn keyring_loop<A: App>(shared: Arc<Shared<A>>) {
    // Per member: the digest it confirmed, and when.
    let mut confirmed: BTreeMap<NodeId, (String, Instant)> = BTreeMap::new();
    loop {
        tokio::time::sleep(EVERY).await;
        let members: Vec<(NodeId, String)> = {
            let m = shared.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                confirmed.clear();
                continue;
            }
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != shared.id)
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect()
        };
        let dir = shared.cfg.data_dir.clone();
        let ring = match tokio::task::spawn_blocking(move || crate::cluster_key::load(&dir)).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::warn!("the cluster age keyring: {e:#}");
                continue;
            }
            Err(_) => continue,
        };
        let text = ring.to_text();
        let ours = digest(&text);
        confirmed.retain(|id, _| members.iter().any(|(m, _)| m == id));
        for (id, addr) in members {
            let fresh = confirmed
                .get(&id)
                .is_some_and(|(d, at)| *d == ours && at.elapsed() < RESEND);
            if fresh {
                continue;
            }
            let answer = shared
                .client
                .post(format!("https://{addr}/cluster/age-keys"))
                .timeout(Duration::from_secs(2))
                .json(&KeyringHandoff {
                    keyring: text.clone(),
                })
                .send()
                .await;
            let theirs = match answer {
                Ok(r) if r.status().is_success() => match r.json::<KeyringHandoff>().await {
                    Ok(h) => h.keyring,
                    Err(e) => {
                        tracing::debug!(member = id, "keyring hand-over: {e}");
                        continue;
                    }
                },
                Ok(r) => {
                    tracing::warn!(member = id, status = %r.status(), "keyring hand-over refused");
                    continue;
                }
                Err(e) => {
                    tracing::debug!(member = id, "keyring hand-over failed: {e}");
                    continue;
                }
            };
            if digest(&theirs) == ours {
                confirmed.insert(id, (ours.clone(), Instant::now()));
                continue;
            }
            // The member holds more: take it (the next round sends the union to all).
            match kommit_sops::Keyring::parse(&theirs) {
                Ok(r) => {
                    let dir = shared.cfg.data_dir.clone();
                    match tokio::task::spawn_blocking(move || crate::cluster_key::merge(&dir, &r))
                        .await
                    {
                        Ok(Ok((_, added))) if added > 0 => {
                            tracing::info!(member = id, added, "merged a member's age keyring")
                        }
                        Ok(Err(e)) => tracing::warn!("merging a member's age keyring: {e:#}"),
                        _ => {}
                    }
                }
                Err(e) => tracing::warn!(member = id, "a member's age keyring: {e}"),
            }
        }
    }
}
