//! Who may read the page. On loopback, anyone on the machine (as `kommit status` over the
//! local socket is root's, the page is read-only and shows what Git's notes already show).
//! Bound beyond loopback, every request needs the bearer token from `--http-token-file`:
//! `Authorization: Bearer <token>`, or HTTP Basic auth with the token as the password (what
//! a browser asks for after a 401), else 401.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};

/// Longest token accepted from a file (bytes).
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Shortest token accepted (bytes).
pub const MIN_TOKEN_BYTES: usize = 16;

/// A listener that cannot be configured as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// A non-loopback address without a token.
    #[error("--http-listen {0} is not loopback: give --http-token-file so only holders of the token read the page")]
    TokenRequired(SocketAddr),
    /// A token too short or too long.
    #[error("the http token must be {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes (got {0})")]
    TokenLength(usize),
}

/// Whether `addr` answers only this machine: 127.0.0.0/8, ::1, or ::ffff:127.x.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// The token check of one listener.
#[derive(Clone)]
pub struct Gate {
    /// SHA-256 of the token, when this listener asks for one.
    token: Option<[u8; 32]>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("requires_token", &self.token.is_some())
            .finish()
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Gate {
    /// The gate of a listener on `addr`: open on loopback, the token elsewhere (which must
    /// then be given).
    pub fn for_listener(addr: SocketAddr, token: Option<&str>) -> Result<Gate, AuthError> {
        let token = token.map(str::trim);
        if let Some(t) = token {
            if !(MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES).contains(&t.len()) {
                return Err(AuthError::TokenLength(t.len()));
            }
        }
        if is_loopback(&addr) {
            return Ok(Gate { token: None });
        }
        match token {
            Some(t) => Ok(Gate {
                token: Some(digest(t.as_bytes())),
            }),
            None => Err(AuthError::TokenRequired(addr)),
        }
    }

    /// Whether this listener asks for the token.
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a request with this `Authorization` header value may read.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        let Some(h) = authorization.and_then(|h| std::str::from_utf8(h).ok()) else {
            return false;
        };
        let given: Option<Vec<u8>> = if let Some(t) = strip_scheme(h, "bearer") {
            Some(t.trim().as_bytes().to_vec())
        } else if let Some(b) = strip_scheme(h, "basic") {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|raw| {
                    let colon = raw.iter().position(|c| *c == b':')?;
                    Some(raw[colon + 1..].to_vec())
                })
        } else {
            None
        };
        // Digests compared, so the time taken says nothing about the token's bytes.
        given.is_some_and(|g| digest(&g) == *want)
    }
}

fn strip_scheme<'a>(h: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = h.trim_start().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn loopback_is_127_slash_8_and_v6_loopback_only() {
        for a in [
            "127.0.0.1:80",
            "127.4.5.6:80",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_loopback(&addr(a)), "{a}");
        }
        for a in [
            "0.0.0.0:80",
            "10.0.0.1:80",
            "[::]:80",
            "[::ffff:10.0.0.1]:80",
            "192.168.1.1:80",
        ] {
            assert!(!is_loopback(&addr(a)), "{a}");
        }
    }

    #[test]
    fn beyond_loopback_a_token_is_required() {
        assert_eq!(
            Gate::for_listener(addr("0.0.0.0:8080"), None).map(|g| g.requires_token()),
            Err(AuthError::TokenRequired(addr("0.0.0.0:8080")))
        );
        let open = Gate::for_listener(addr("127.0.0.1:8080"), Some(TOKEN)).expect("gate");
        assert!(!open.requires_token() && open.allows(None));
        assert_eq!(
            Gate::for_listener(addr("10.1.1.1:1"), Some("short")).map(|g| g.requires_token()),
            Err(AuthError::TokenLength(5))
        );
    }

    #[test]
    fn the_token_is_checked_as_bearer_or_basic_password() {
        let g = Gate::for_listener(addr("10.1.1.1:8080"), Some(TOKEN)).expect("gate");
        assert!(g.requires_token());
        assert!(!g.allows(None));
        assert!(g.allows(Some(format!("Bearer {TOKEN}").as_bytes())));
        assert!(g.allows(Some(format!("bearer  {TOKEN} ").as_bytes())));
        assert!(!g.allows(Some(b"Bearer wrong-token-0123456789")));
        assert!(!g.allows(Some(TOKEN.as_bytes())), "no scheme");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{TOKEN}"));
        assert!(g.allows(Some(format!("Basic {basic}").as_bytes())));
        let bad = base64::engine::general_purpose::STANDARD.encode("anyone:nope");
        assert!(!g.allows(Some(format!("Basic {bad}").as_bytes())));
        assert!(!g.allows(Some(b"Basic !!!")));
        assert!(!format!("{g:?}").contains(TOKEN));
    }
}
