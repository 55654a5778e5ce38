//! Node certificate lifetimes, serials and revocation on the cluster port.
//!
//! * Every node certificate has a random 128-bit serial and a bounded lifetime
//!   ([`DEFAULT_CERT_LIFETIME`], a year as k3s; the CA gets [`CA_LIFETIME`], ten years as
//!   kubeadm, and nothing rotates it). The holder renews its certificate once two thirds of
//!   its validity have passed ([`renewal_due`], run by `renew`); rustls' WebPKI verifiers
//!   refuse an expired one.
//! * [`CertSlot`] holds the node's current certificate and key for both the server and the
//!   client side of the cluster port, so a renewed certificate is used for every new
//!   connection without a restart.
//! * [`Revocations`] mirrors the replicated state's revoked serials. The verifiers on both
//!   sides refuse a revoked serial in the handshake, and the cluster router refuses requests
//!   on connections opened before the revocation or the expiry (see [`refuse_revoked`]).

use super::tls::TlsError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Default lifetime of a node certificate.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Lifetime of the cluster CA made at bootstrap (not rotated).
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far before "now" a new certificate's `notBefore` is set, for peers whose clocks lag.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What kommit reads from a node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name: the node name.
    pub node: String,
    /// The serial, lowercase hex of its DER bytes.
    pub serial: String,
    /// `notBefore`, ms since the epoch.
    pub not_before_ms: u64,
    /// `notAfter`, ms since the epoch.
    pub not_after_ms: u64,
}

fn epoch_ms(t: x509_parser::time::ASN1Time) -> u64 {
    u64::try_from(t.timestamp())
        .unwrap_or(0)
        .saturating_mul(1000)
}

/// Reads a certificate's node name, serial and validity.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Pem {
        what: "certificate".into(),
        message: e.to_string(),
    })?;
    let node = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok(CertInfo {
        node,
        serial: hex::encode(cert.raw_serial()),
        not_before_ms: epoch_ms(cert.validity().not_before),
        not_after_ms: epoch_ms(cert.validity().not_after),
    })
}

/// Reads the first certificate of a PEM string.
pub fn pem_cert_info(pem: &str) -> Result<CertInfo, TlsError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "certificate".into(),
        message: e.to_string(),
    })?;
    cert_info(&p.contents)
}

/// A fresh random serial: 16 bytes, first byte in 1..=127 so the DER INTEGER is positive and
/// has no leading zero (its hex is then exactly what [`cert_info`] reads back).
pub fn random_serial() -> Vec<u8> {
    let mut b: [u8; 16] = rand::random();
    b[0] = (b[0] & 0x7f).max(1);
    b.to_vec()
}

/// Whether a certificate should be renewed at `now_ms`: once two thirds of its validity
/// have passed, or at once when it is valid for longer than the CA (a certificate from
/// before lifetimes were bounded: rcgen's default ran to the year 4096).
pub fn renewal_due(info: &CertInfo, now_ms: u64) -> bool {
    let validity = info.not_after_ms.saturating_sub(info.not_before_ms);
    if u128::from(validity) > CA_LIFETIME.as_millis() {
        return true;
    }
    now_ms >= info.not_before_ms + validity / 3 * 2
}

/// The node's current certificate and key, swapped on renewal.
#[derive(Debug)]
pub struct CertSlot {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertSlot {
    /// A slot holding `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// The certificate and key in use.
    pub fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a renewed certificate in use for every new connection.
    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
    }

    /// What the certificate in use says.
    pub fn info(&self) -> Result<CertInfo, TlsError> {
        let key = self.get();
        let der = key.cert.first().ok_or_else(|| TlsError::Pem {
            what: "node certificate".into(),
            message: "empty chain".into(),
        })?;
        cert_info(der.as_ref())
    }
}

impl rustls::server::ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl rustls::client::ResolvesClientCert for CertSlot {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// The revoked serials (serial to node name), as the replicated state last said.
#[derive(Debug, Default)]
pub struct Revocations {
    revoked: RwLock<Arc<BTreeMap<String, String>>>,
}

impl Revocations {
    /// The node whose revoked certificate has `serial`.
    pub fn revoked(&self, serial: &str) -> Option<String> {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(serial)
            .cloned()
    }

    /// Replaces the list when it differs from `latest` (serial to node); returns whether it did.
    pub fn update(&self, latest: &BTreeMap<String, String>) -> bool {
        let mut cur = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        if **cur == *latest {
            return false;
        }
        *cur = Arc::new(latest.clone());
        true
    }

    /// Refuses `der` when its serial is revoked, with a log line naming the node.
    pub(crate) fn check(&self, der: &CertificateDer<'_>, side: &str) -> Result<(), rustls::Error> {
        let info =
            cert_info(der.as_ref()).map_err(|e| rustls::Error::General(format!("{side}: {e}")))?;
        match self.revoked(&info.serial) {
            None => Ok(()),
            Some(node) => {
                tracing::warn!(
                    node = %node,
                    serial = %info.serial,
                    "refused the {side} certificate of removed node {node}: serial {} is revoked",
                    info.serial
                );
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked,
                ))
            }
        }
    }
}

/// Server side of the cluster port: the cluster CA's WebPKI check, then revocation.
#[derive(Debug)]
pub struct RevokingClientVerifier {
    /// The CA check.
    pub inner: Arc<dyn ClientCertVerifier>,
    /// The revoked serials.
    pub revocations: Arc<Revocations>,
}

impl ClientCertVerifier for RevokingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.revocations.check(end_entity, "client")?;
        Ok(ok)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The authenticated peer of a cluster-port connection, put in every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// What the peer's certificate says.
    pub info: CertInfo,
}

/// Middleware of the cluster router: a request on a connection whose certificate was
/// revoked, or has expired, since the handshake is refused with 403, and the connection is
/// closed so the peer's next request opens a new one (with its current certificate).
pub async fn refuse_revoked(
    State(revocations): State<Arc<Revocations>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(peer) = req.extensions().get::<PeerCert>() else {
        return next.run(req).await;
    };
    let serial = &peer.info.serial;
    let why = match revocations.revoked(serial) {
        Some(node) => {
            tracing::warn!(node = %node, serial = %serial, "refused a request from removed node {node}");
            format!("certificate serial {serial} of node {node} is revoked (the node was removed)")
        }
        None if peer.info.not_after_ms <= super::now_ms() => {
            format!(
                "certificate serial {serial} of node {} has expired",
                peer.info.node
            )
        }
        None => return next.run(req).await,
    };
    let mut r = (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_after_two_thirds_or_for_overlong_certificates() {
        let day = 24 * 3600 * 1000;
        let cert = |nb: u64, na: u64| CertInfo {
            node: "n".into(),
            serial: "01".into(),
            not_before_ms: nb,
            not_after_ms: na,
        };
        let c = cert(0, 90 * day);
        assert!(!renewal_due(&c, 59 * day));
        assert!(renewal_due(&c, 60 * day));
        // A certificate valid until the year 4096 (rcgen's default) is renewed at once.
        assert!(renewal_due(&cert(0, 1 << 50), 1));
    }
}
