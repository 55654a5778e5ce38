//! Join tokens: `kommit1.<sha256 of the CA certificate>.<id>.<secret>`, like kubeadm's
//! `--discovery-token-ca-cert-hash`. The joining node pins the CA by the hash before it
//! trusts the server; the server checks the secret against the SHA-256 the replicated state
//! keeps (see `kommit_reconcilers::trust`).
//!
//! A token is made by any node ([`create`]: a `TokenCreate` entry through Raft), so every
//! voter holding the CA key can admit with it, whoever made it and whether its maker still
//! runs. A join consumes one use through a `CertIssued` entry naming the token ([`record_cert`])
//! before the certificate is handed out: two voters asked at once with a single-use token
//! both propose, the log orders them, and only the first is recorded.

use super::node::{catch_up, propose_applied, NodeError, Shared};
use super::tls::{self, TlsError};
use super::{now_ms, App};
use kommit_reconcilers::trust::{TrustOp, MAX_TOKENS};
use sha2::Digest;
use std::time::Duration;

/// A parsed join token `kommit1.<ca hash>.<id>.<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA certificate.
    pub ca_hash: String,
    /// Token id (its key in the replicated state).
    pub id: String,
    /// Token secret.
    pub secret: String,
}

impl JoinToken {
    /// Parses a token string.
    pub fn parse(s: &str) -> Result<Self, TlsError> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let bad = |why: &str| {
            TlsError::Token(format!("{why} (expected kommit1.<ca-hash>.<id>.<secret>)"))
        };
        if parts.len() != 4 || parts[0] != "kommit1" {
            return Err(bad("malformed token"));
        }
        let hexok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !hexok(parts[1], 64) || !hexok(parts[2], 12) || !hexok(parts[3], 32) {
            return Err(bad("malformed token fields"));
        }
        Ok(Self {
            ca_hash: parts[1].to_ascii_lowercase(),
            id: parts[2].to_ascii_lowercase(),
            secret: parts[3].to_ascii_lowercase(),
        })
    }

    /// A token for the CA `ca_pem` from 22 random bytes (6 for the id, 16 for the secret).
    pub fn from_random(ca_pem: &str, rand_bytes: [u8; 22]) -> Result<Self, TlsError> {
        Ok(Self {
            ca_hash: tls::ca_hash(ca_pem)?,
            id: hex::encode(&rand_bytes[..6]),
            secret: hex::encode(&rand_bytes[6..]),
        })
    }

    /// Hex SHA-256 of the secret: all the replicated state keeps.
    pub fn secret_sha256(&self) -> String {
        hex::encode(sha2::Sha256::digest(self.secret.as_bytes()))
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kommit1.{}.{}.{}", self.ca_hash, self.id, self.secret)
    }
}

/// Longest token lifetime `kommit token create` accepts.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Makes a join token valid for `ttl` (and `uses` joins, or any number) through Raft, and
/// returns it once this node has applied it. Works on any node of the cluster.
pub async fn create<A: App>(
    s: &Shared<A>,
    ttl: Duration,
    uses: Option<u32>,
) -> Result<JoinToken, NodeError> {
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL || uses == Some(0) {
        return Err(NodeError::Config(format!(
            "a token needs a ttl between 1 ms and {} days and at least one use",
            MAX_TOKEN_TTL.as_secs() / 86_400
        )));
    }
    let live = s.sm.read(|a| a.trust().tokens.len());
    if live >= MAX_TOKENS {
        return Err(NodeError::Config(format!(
            "{live} join tokens are live (at most {MAX_TOKENS}); delete some first"
        )));
    }
    let ca_pem = tls::NodeIdentity::load(&s.cfg.data_dir.join("tls"))?.ca_pem;
    let token = JoinToken::from_random(&ca_pem, rand::random())?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let op = TrustOp::TokenCreate {
        id: token.id.clone(),
        secret_sha256: token.secret_sha256(),
        expires_at: now_ms().saturating_add(ttl_ms),
        uses,
    };
    propose_applied(s, &A::trust_entry(op)).await?;
    if !s.sm.read(|a| a.trust().tokens.contains_key(&token.id)) {
        return Err(NodeError::Propose(format!(
            "the cluster did not record join token {}",
            token.id
        )));
    }
    Ok(token)
}

/// Withdraws join token `id` through Raft.
pub async fn delete<A: App>(s: &Shared<A>, id: &str) -> Result<(), NodeError> {
    catch_up(s).await?;
    if !s.sm.read(|a| a.trust().tokens.contains_key(id)) {
        return Err(NodeError::Config(format!("unknown join token id {id}")));
    }
    let op = TrustOp::TokenDelete { id: id.into() };
    propose_applied(s, &A::trust_entry(op)).await.map(|_| ())
}

/// Whether `token` can admit a node now, by the replicated state as the leader last
/// committed it (a token made a moment ago through another voter is seen).
pub async fn check<A: App>(s: &Shared<A>, token: &JoinToken) -> Result<(), String> {
    let hash = token.secret_sha256();
    let now = now_ms();
    let local = s.sm.read(|a| a.trust().check_token(&token.id, &hash, now));
    if local.is_ok() {
        return Ok(());
    }
    catch_up(s).await.map_err(|e| e.to_string())?;
    s.sm.read(|a| a.trust().check_token(&token.id, &hash, now))
        .map_err(|e| e.to_string())
}

/// Records the certificate `serial` (valid until `not_after_ms`) issued to `node`, consuming
/// one use of `token` (if any), through Raft. `Err` says why the cluster refused it (the
/// token was used up or expired meanwhile, or the serial is revoked); the certificate must
/// then not be handed out.
pub async fn record_cert<A: App>(
    s: &Shared<A>,
    token: Option<&JoinToken>,
    node: &str,
    serial: &str,
    not_after_ms: u64,
) -> Result<(), String> {
    let op = TrustOp::CertIssued {
        node: node.into(),
        serial: serial.into(),
        not_after: not_after_ms,
        token: token.map(|t| t.id.clone()),
        token_sha256: token.map(JoinToken::secret_sha256),
    };
    propose_applied(s, &A::trust_entry(op))
        .await
        .map_err(|e| e.to_string())?;
    if s.sm.read(|a| a.trust().certs.contains_key(serial)) {
        return Ok(());
    }
    let why = match token {
        Some(t) => {
            s.sm.read(|a| a.trust().check_token(&t.id, &t.secret_sha256(), now_ms()))
                .err()
                .map_or_else(|| "the token no longer admits".into(), |e| e.to_string())
        }
        None => format!("certificate {serial} is revoked"),
    };
    Err(format!("the cluster refused the join: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_print_and_hash() {
        let ca = tls::ClusterCa::generate("t").unwrap();
        let t = JoinToken::from_random(&ca.cert_pem, [7; 22]).unwrap();
        let s = t.to_string();
        assert_eq!(JoinToken::parse(&s).unwrap(), t);
        assert_eq!(t.id, "070707070707");
        assert_eq!(t.secret_sha256().len(), 64);
        for bad in ["", "kommit1.a.b.c", &s.replace("kommit1", "kommit2")] {
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
    }
}
