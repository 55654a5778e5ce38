//! Cluster trust in the replicated state: join tokens (only their SHA-256) and node
//! certificates (the serials issued to each node, and the serials revoked when a node is
//! removed).
//!
//! Why here: a token made on one voter must admit a node through any other voter after its
//! maker is lost, and a single-use token must admit exactly one node even when two voters are
//! asked at once. Both follow from keeping tokens in the log: a join consumes a use through an
//! entry, entries apply in one order everywhere, and the second use of a single-use token
//! finds no use left on every node alike. Revocation works the same way: `NodeRemove` moves
//! the node's serials into `revoked`, and every node's TLS verifier refuses them from that
//! entry on.
//!
//! Pure like the rest of the state: times are the entry's `at`; expired tokens and the
//! records of certificates past their `not_after` (refused by expiry anyway) are pruned
//! when a trust entry or a removal applies, so the tables stay bounded.

use crate::types::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most live join tokens; a `TokenCreate` beyond it is refused.
pub const MAX_TOKENS: usize = 1024;
/// Most live certificates recorded per node (renewals keep the newest; older ones stay
/// valid until they expire but are no longer revocable through the state).
pub const MAX_CERTS_PER_NODE: usize = 8;
/// Most revoked serials kept (the oldest-expiring ones go first past it).
pub const MAX_REVOKED: usize = 4096;

/// A join token as the state keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token's secret part.
    pub secret_sha256: String,
    /// Leader time after which the token admits nobody.
    pub expires_at: Millis,
    /// Joins it may still admit; `None` for any number until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
}

/// A node certificate the cluster issued (or that its holder registered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// The node the certificate names.
    pub node: String,
    /// Its `notAfter`, in milliseconds since the epoch.
    pub not_after: Millis,
}

/// The trust tables of the replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// Live join tokens by token id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Live node certificates by serial (lowercase hex of the DER serial's bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certs: BTreeMap<String, CertRecord>,
    /// Revoked certificates by serial, kept until they would have expired.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked: BTreeMap<String, CertRecord>,
}

/// A change to the trust tables (the payload of `Entry::Trust`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum TrustOp {
    /// A join token was made (`kommit token create`).
    TokenCreate {
        /// Token id (12 hex digits).
        id: String,
        /// Hex SHA-256 of the secret.
        secret_sha256: String,
        /// When it expires (leader time, ms).
        expires_at: Millis,
        /// How many joins it admits; `None` for any number until it expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uses: Option<u32>,
    },
    /// A join token was withdrawn.
    TokenDelete {
        /// Token id.
        id: String,
    },
    /// A certificate was issued to `node`: at a join (`token` names the token it consumes a
    /// use of, and nothing is recorded if that token cannot admit), at a renewal, or
    /// registered by its holder (`token` absent).
    CertIssued {
        /// The node.
        node: String,
        /// The certificate's serial (lowercase hex).
        serial: String,
        /// Its `notAfter` (ms).
        not_after: Millis,
        /// The token id of the join that got it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The token's secret hash as the joiner presented it (checked against the record).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_sha256: Option<String>,
    },
}

/// Why a token cannot admit a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No such token (never made, deleted, or expired and pruned).
    #[error("unknown join token id {0} (never created, deleted, or expired)")]
    Unknown(String),
    /// The secret does not match.
    #[error("wrong secret for join token id {0}")]
    WrongSecret(String),
    /// The token expired.
    #[error("join token id {0} expired")]
    Expired(String),
    /// The token has no use left.
    #[error("join token id {0} is used up")]
    UsedUp(String),
}

/// Constant-time equality of two strings' bytes (lengths leak, contents do not).
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Trust {
    /// Whether every table is empty (the state then omits the field).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.certs.is_empty() && self.revoked.is_empty()
    }

    /// Whether token `id` with secret hash `secret_sha256` can admit a node at `now`.
    pub fn check_token(
        &self,
        id: &str,
        secret_sha256: &str,
        now: Millis,
    ) -> Result<(), TokenError> {
        let t = self
            .tokens
            .get(id)
            .ok_or_else(|| TokenError::Unknown(id.into()))?;
        if !ct_eq(&t.secret_sha256, secret_sha256) {
            return Err(TokenError::WrongSecret(id.into()));
        }
        if now >= t.expires_at {
            return Err(TokenError::Expired(id.into()));
        }
        if t.uses_left == Some(0) {
            return Err(TokenError::UsedUp(id.into()));
        }
        Ok(())
    }

    /// The node a revoked serial belonged to.
    pub fn revoked_node(&self, serial: &str) -> Option<&str> {
        self.revoked.get(serial).map(|r| r.node.as_str())
    }

    /// Applies `op` at leader time `now`; `Err` says why it changed nothing.
    pub fn apply(&mut self, op: &TrustOp, now: Millis) -> Result<(), String> {
        self.prune(now);
        match op {
            TrustOp::TokenCreate {
                id,
                secret_sha256,
                expires_at,
                uses,
            } => {
                if self.tokens.len() >= MAX_TOKENS && !self.tokens.contains_key(id) {
                    return Err(format!(
                        "join token {id}: {MAX_TOKENS} tokens are live; delete some first"
                    ));
                }
                if *expires_at <= now || *uses == Some(0) {
                    return Err(format!("join token {id}: expires before it is usable"));
                }
                self.tokens.insert(
                    id.clone(),
                    TokenRecord {
                        secret_sha256: secret_sha256.clone(),
                        expires_at: *expires_at,
                        uses_left: *uses,
                    },
                );
                Ok(())
            }
            TrustOp::TokenDelete { id } => self
                .tokens
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| TokenError::Unknown(id.clone()).to_string()),
            TrustOp::CertIssued {
                node,
                serial,
                not_after,
                token,
                token_sha256,
            } => {
                if self.revoked.contains_key(serial) {
                    return Err(format!("certificate {serial} of {node} is revoked"));
                }
                if let Some(id) = token {
                    let hash = token_sha256.as_deref().unwrap_or_default();
                    self.check_token(id, hash, now).map_err(|e| e.to_string())?;
                    let t = self.tokens.get_mut(id).expect("checked above");
                    if let Some(n) = t.uses_left.as_mut() {
                        // Kept at 0 until it expires, so a late joiner hears "used up".
                        *n -= 1;
                    }
                }
                if *not_after > now {
                    self.certs.insert(
                        serial.clone(),
                        CertRecord {
                            node: node.clone(),
                            not_after: *not_after,
                        },
                    );
                    self.keep_newest(node);
                }
                Ok(())
            }
        }
    }

    /// Revokes every recorded certificate of `node` (it was removed from the cluster).
    pub fn revoke_node(&mut self, node: &str, now: Millis) {
        self.prune(now);
        let serials: Vec<String> = self
            .certs
            .iter()
            .filter(|(_, c)| c.node == node)
            .map(|(s, _)| s.clone())
            .collect();
        for s in serials {
            if let Some(c) = self.certs.remove(&s) {
                self.revoked.insert(s, c);
            }
        }
        while self.revoked.len() > MAX_REVOKED {
            let first = self
                .revoked
                .iter()
                .min_by_key(|(s, c)| (c.not_after, (*s).clone()))
                .map(|(s, _)| s.clone())
                .expect("len > MAX_REVOKED > 0");
            self.revoked.remove(&first);
        }
    }

    /// Drops expired tokens and the records of expired certificates.
    fn prune(&mut self, now: Millis) {
        self.tokens.retain(|_, t| t.expires_at > now);
        self.certs.retain(|_, c| c.not_after > now);
        self.revoked.retain(|_, c| c.not_after > now);
    }

    /// Keeps at most [`MAX_CERTS_PER_NODE`] certificates of `node`, the latest-expiring.
    fn keep_newest(&mut self, node: &str) {
        let mut mine: Vec<(Millis, String)> = self
            .certs
            .iter()
            .filter(|(_, c)| c.node == node)
            .map(|(s, c)| (c.not_after, s.clone()))
            .collect();
        if mine.len() <= MAX_CERTS_PER_NODE {
            return;
        }
        mine.sort();
        for (_, s) in &mine[..mine.len() - MAX_CERTS_PER_NODE] {
            self.certs.remove(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: &str, expires_at: Millis, uses: Option<u32>) -> TrustOp {
        TrustOp::TokenCreate {
            id: id.into(),
            secret_sha256: format!("hash-{id}"),
            expires_at,
            uses,
        }
    }

    fn join(node: &str, serial: &str, id: &str, hash: &str) -> TrustOp {
        TrustOp::CertIssued {
            node: node.into(),
            serial: serial.into(),
            not_after: 1_000_000,
            token: Some(id.into()),
            token_sha256: Some(hash.into()),
        }
    }

    #[test]
    fn a_single_use_token_admits_exactly_one_node() {
        let mut t = Trust::default();
        t.apply(&create("a", 500, Some(1)), 100).unwrap();
        t.apply(&join("n1", "01", "a", "hash-a"), 110).unwrap();
        // A second voter's join with the same token applies after the first: refused, and
        // its certificate is not recorded.
        let e = t.apply(&join("n2", "02", "a", "hash-a"), 120).unwrap_err();
        assert!(e.contains("join token id a is used up"), "{e}");
        assert_eq!(t.certs.keys().collect::<Vec<_>>(), ["01"]);
        t.apply(&TrustOp::TokenDelete { id: "x".into() }, 500)
            .unwrap_err();
        assert!(t.tokens.is_empty(), "pruned once expired");
    }

    #[test]
    fn tokens_are_refused_when_wrong_expired_or_used_up() {
        let mut t = Trust::default();
        t.apply(&create("a", 500, Some(2)), 100).unwrap();
        t.apply(&create("b", 300, None), 100).unwrap();
        let rows: &[(&str, &str, Millis, Result<(), TokenError>)] = &[
            ("a", "hash-a", 200, Ok(())),
            ("a", "hash-b", 200, Err(TokenError::WrongSecret("a".into()))),
            ("b", "hash-b", 299, Ok(())),
            ("b", "hash-b", 300, Err(TokenError::Expired("b".into()))),
            ("c", "hash-c", 200, Err(TokenError::Unknown("c".into()))),
        ];
        for (id, hash, now, want) in rows {
            assert_eq!(&t.check_token(id, hash, *now), want, "{id} {hash} at {now}");
        }
        // Unlimited uses until expiry; expired tokens go at the next trust entry.
        for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
            t.apply(&join(n, &format!("1{i}"), "b", "hash-b"), 200)
                .unwrap();
        }
        t.apply(&TrustOp::TokenDelete { id: "a".into() }, 301)
            .unwrap();
        assert!(t.tokens.is_empty(), "{:?}", t.tokens);
        assert!(
            t.apply(&create("z", 100, None), 301).is_err(),
            "born expired"
        );
    }

    #[test]
    fn removal_revokes_every_serial_of_the_node_and_only_its() {
        let mut t = Trust::default();
        for (node, serial) in [("n1", "01"), ("n1", "02"), ("n2", "03")] {
            let op = TrustOp::CertIssued {
                node: node.into(),
                serial: serial.into(),
                not_after: 1000,
                token: None,
                token_sha256: None,
            };
            t.apply(&op, 10).unwrap();
        }
        t.revoke_node("n1", 20);
        assert_eq!(t.revoked_node("01"), Some("n1"));
        assert_eq!(t.revoked_node("02"), Some("n1"));
        assert_eq!(t.revoked_node("03"), None);
        // A revoked serial cannot be registered again.
        let again = TrustOp::CertIssued {
            node: "n1".into(),
            serial: "01".into(),
            not_after: 1000,
            token: None,
            token_sha256: None,
        };
        assert!(t.apply(&again, 30).is_err());
        // Once they would have expired, the revocations are pruned.
        t.revoke_node("none", 1000);
        assert!(t.revoked.is_empty() && t.certs.is_empty());
    }

    #[test]
    fn renewals_keep_a_bounded_number_of_certificates_per_node() {
        let mut t = Trust::default();
        for i in 0..(MAX_CERTS_PER_NODE as u64 + 5) {
            let op = TrustOp::CertIssued {
                node: "n1".into(),
                serial: format!("{i:02x}"),
                not_after: 1000 + i,
                token: None,
                token_sha256: None,
            };
            t.apply(&op, 10).unwrap();
        }
        assert_eq!(t.certs.len(), MAX_CERTS_PER_NODE);
        assert!(t.certs.values().all(|c| c.not_after >= 1005));
    }
}
