//! Keeping node identities current: the revocation list each verifier reads, the
//! registration of a node's own certificate in the replicated state, and renewal.
//!
//! * [`revocation_loop`] copies the state's revoked serials into the node's [`Revocations`]
//!   after every applied batch that changed them.
//! * [`cert_loop`] makes sure the certificate in use is recorded in the state (the bootstrap
//!   node's, and any issued before the state recorded serials), so `kommit node remove` can
//!   revoke it; and renews it once two thirds of its validity have passed: a new key and CSR,
//!   signed locally when this node holds the CA key, else by a voter through `/cluster/renew`
//!   (authenticated by the current certificate). The new certificate is recorded before it is
//!   used, stored under `tls/`, and put in the [`CertSlot`](super::certs::CertSlot) for every
//!   new connection.

use super::api::is_member;
use super::certs::{pem_cert_info, renewal_due, PeerCert};
use super::node::Shared;
use super::tls::{self, NodeIdentity};
use super::{node_id_for, now_ms, App};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Copies the state's revoked serials into the node's revocation list.
pub(crate) fn refresh_revocations<A: App>(s: &Shared<A>) {
    let latest: BTreeMap<String, String> = s.sm.read(|a| {
        a.trust()
            .revoked
            .iter()
            .map(|(serial, r)| (serial.clone(), r.node.clone()))
            .collect()
    });
    if s.revocations.update(&latest) {
        tracing::info!(
            "revocation list updated: {} revoked certificate(s) of {:?}",
            latest.len(),
            latest.values().collect::<std::collections::BTreeSet<_>>()
        );
    }
}

/// Keeps the revocation list current as entries apply.
pub(crate) async fn revocation_loop<A: App>(s: Arc<Shared<A>>) {
    let mut applied = s.sm.applied_watch();
    while applied.changed().await.is_ok() {
        refresh_revocations(&s);
    }
}

/// How often the certificate loop looks: a thirtieth of the lifetime, between 200 ms and
/// ten minutes.
fn check_every(lifetime: Duration) -> Duration {
    (lifetime / 30).clamp(Duration::from_millis(200), Duration::from_secs(600))
}

/// How soon the loop looks again while something it must do failed (no leader yet, say).
const RETRY: Duration = Duration::from_secs(2);

/// Registers and renews this node's certificate (see the module doc).
pub(crate) async fn cert_loop<A: App>(s: Arc<Shared<A>>) {
    let every = check_every(s.cfg.cert_lifetime);
    let mut told_revoked = false;
    let mut next = every.min(RETRY);
    loop {
        tokio::time::sleep(next).await;
        next = every;
        let info = match s.cert.info() {
            Ok(i) => i,
            Err(e) => {
                tracing::error!("cannot read this node's certificate: {e}");
                continue;
            }
        };
        if s.revocations.revoked(&info.serial).is_some() {
            if !told_revoked {
                tracing::error!(
                    "this node's certificate {} is revoked: it was removed from the cluster; \
                     wipe {} and join again with a new token",
                    info.serial,
                    s.cfg.data_dir.display()
                );
                told_revoked = true;
            }
            continue;
        }
        if !is_member(&s, s.id) {
            next = every.min(RETRY);
            continue;
        }
        let known = s.sm.read(|a| a.trust().certs.contains_key(&info.serial));
        if !known {
            match super::token::record_cert(&s, None, &s.name, &info.serial, info.not_after_ms)
                .await
            {
                Ok(()) => tracing::info!("registered certificate {} in the cluster", info.serial),
                Err(e) => {
                    tracing::debug!("cannot register certificate {}: {e}", info.serial);
                    next = every.min(RETRY);
                }
            }
        }
        if renewal_due(&info, now_ms()) {
            match renew_now(&s).await {
                Ok(serial) => tracing::info!(
                    "renewed this node's certificate: serial {} replaced by {serial}",
                    info.serial
                ),
                Err(e) => {
                    tracing::warn!(
                        "cannot renew this node's certificate {} (expires at {} ms): {e}",
                        info.serial,
                        info.not_after_ms
                    );
                    next = every.min(RETRY);
                }
            }
        }
    }
}

/// A renewal request: a CSR for a new key of the calling node.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RenewRequest {
    pub csr_pem: String,
}

/// Renews this node's certificate now; returns the new serial.
async fn renew_now<A: App>(s: &Shared<A>) -> Result<String, String> {
    let (key_pem, csr_pem) = tls::make_csr(&s.name).map_err(|e| e.to_string())?;
    let cert_pem = match s.ca() {
        Some(ca) => {
            let cert = ca
                .sign_csr(&csr_pem, &s.name, s.cfg.cert_lifetime)
                .map_err(|e| e.to_string())?;
            let info = pem_cert_info(&cert).map_err(|e| e.to_string())?;
            super::token::record_cert(s, None, &s.name, &info.serial, info.not_after_ms).await?;
            cert
        }
        None => renew_through_voter(s, &csr_pem).await?,
    };
    let info = pem_cert_info(&cert_pem).map_err(|e| e.to_string())?;
    if info.node != s.name {
        return Err(format!(
            "the renewed certificate names {:?}, not this node",
            info.node
        ));
    }
    let dir = s.cfg.data_dir.join("tls");
    let identity = NodeIdentity {
        ca_pem: NodeIdentity::load(&dir).map_err(|e| e.to_string())?.ca_pem,
        cert_pem,
        key_pem,
    };
    let key = identity.certified_key().map_err(|e| e.to_string())?;
    identity.store(&dir).map_err(|e| e.to_string())?;
    s.cert.set(key);
    Ok(info.serial)
}

/// Asks each voter in turn to sign `csr_pem`; the first answer wins.
async fn renew_through_voter<A: App>(s: &Shared<A>, csr_pem: &str) -> Result<String, String> {
    let voters: Vec<String> = {
        let m = s.raft.metrics();
        let m = m.borrow();
        let mem = m.membership_config.membership();
        mem.voter_ids()
            .filter(|v| *v != s.id)
            .filter_map(|v| mem.get_node(&v).map(|n| n.addr.clone()))
            .collect()
    };
    let mut errors = Vec::new();
    for addr in &voters {
        let url = format!("https://{addr}/cluster/renew");
        let r = s
            .client
            .post(&url)
            .timeout(Duration::from_secs(15))
            .json(&RenewRequest {
                csr_pem: csr_pem.into(),
            })
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                return r.text().await.map_err(|e| format!("{url}: {e}"));
            }
            Ok(r) => errors.push(format!("{addr}: {}", r.text().await.unwrap_or_default())),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(format!("no voter renewed it: {}", errors.join("; ")))
}

/// `/cluster/renew`: signs a new certificate for the calling node (named by the certificate
/// it connected with), records it, and answers it as PEM.
pub(crate) async fn renew<A: App>(
    State(s): State<Arc<Shared<A>>>,
    Extension(peer): Extension<PeerCert>,
    Json(req): Json<RenewRequest>,
) -> (StatusCode, String) {
    let node = peer.info.node;
    if !is_member(&s, node_id_for(&node)) {
        return (
            StatusCode::FORBIDDEN,
            format!("{node} is not a cluster member"),
        );
    }
    let Some(ca) = s.ca() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {} holds no CA key; renew through a voter", s.name),
        );
    };
    let cert = match ca.sign_csr(&req.csr_pem, &node, s.cfg.cert_lifetime) {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    let info = match pem_cert_info(&cert) {
        Ok(i) => i,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match super::token::record_cert(&s, None, &node, &info.serial, info.not_after_ms).await {
        Ok(()) => {
            tracing::info!(
                "renewed the certificate of {node} (was {}, now {})",
                peer.info.serial,
                info.serial
            );
            (StatusCode::OK, cert)
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
