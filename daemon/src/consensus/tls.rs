//! The cluster's certificate authority, node certificates, join tokens and the rustls
//! configurations built from them.
//!
//! * The first node makes a CA at bootstrap ([`ClusterCa::generate`]). Every node certificate
//!   carries the DNS name [`NODE_SERVER_NAME`] and is verified against the CA under that fixed
//!   name, so a peer is trusted because the cluster CA signed it, whatever address it has.
//! * A joining node pins the CA by the hash its join token carries (see `token`) before it
//!   trusts the server.
//! * A joining node makes its own key and sends a CSR; its private key never leaves it.
//! * Certificates have random serials and bounded lifetimes, and the cluster port's configs
//!   take the node's certificate from a swappable slot and check revocations (see `certs`).
//!
//! Files under the data dir (`tls/`) are written with mode 0600.

use super::certs::{
    random_serial, CertSlot, Revocations, RevokingClientVerifier, CA_LIFETIME, CLOCK_SKEW,
};
use super::now_ms;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The DNS name every node certificate carries and every peer verifies.
pub const NODE_SERVER_NAME: &str = "kommit-node";
/// The TLS server name a joining node sends; the server answers it without client auth and
/// serves only the join endpoint on it.
pub const JOIN_SERVER_NAME: &str = "join.kommit";

/// Errors of the TLS layer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation or signing failed.
    #[error("certificate error: {0}")]
    Cert(#[from] rcgen::Error),
    /// A PEM file could not be parsed.
    #[error("invalid pem in {what}: {message}")]
    Pem {
        /// Which file or field.
        what: String,
        /// What failed.
        message: String,
    },
    /// rustls refused a configuration.
    #[error("tls configuration error: {0}")]
    Rustls(String),
    /// A file under the data dir could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A join token is malformed, unknown, expired or wrong.
    #[error("invalid join token: {0}")]
    Token(String),
}

/// `now + by` as a certificate time (seconds precision), from the system clock.
fn cert_time(now_ms: u64, by_ms: i128) -> Result<time::OffsetDateTime, TlsError> {
    let at = i128::from(now_ms) + by_ms;
    time::OffsetDateTime::from_unix_timestamp_nanos(at * 1_000_000)
        .map_err(|e| TlsError::Rustls(format!("certificate time out of range: {e}")))
}

/// Sets a certificate's serial and validity: from [`CLOCK_SKEW`] (at most a tenth of the
/// lifetime) before `now_ms` until `lifetime` after it.
fn set_validity(
    params: &mut CertificateParams,
    now_ms: u64,
    lifetime: Duration,
) -> Result<(), TlsError> {
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
    let skew = CLOCK_SKEW.min(lifetime / 10);
    params.not_before = cert_time(now_ms, -(skew.as_millis() as i128))?;
    params.not_after = cert_time(now_ms, lifetime.as_millis() as i128)?;
    Ok(())
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.into(),
            message: e.to_string(),
        })
}

fn pem_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: what.into(),
        message: e.to_string(),
    })
}

/// Hex SHA-256 of the CA certificate (DER): the pin a join token carries.
pub fn ca_hash(ca_pem: &str) -> Result<String, TlsError> {
    let certs = pem_certs(ca_pem, "ca certificate")?;
    let first = certs.first().ok_or_else(|| TlsError::Pem {
        what: "ca certificate".into(),
        message: "no certificate found".into(),
    })?;
    Ok(hex::encode(sha2::Sha256::digest(first.as_ref())))
}

/// Writes `contents` to `path` with mode 0600 (created that way, never widened).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The cluster CA (certificate and private key).
#[derive(Clone)]
pub struct ClusterCa {
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// CA private key, PEM.
    pub key_pem: String,
}

impl ClusterCa {
    /// Makes a new CA, valid for [`CA_LIFETIME`].
    pub fn generate(cluster_name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        set_validity(&mut params, now_ms(), CA_LIFETIME)?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("kommit cluster CA {cluster_name}"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads the CA from `dir` (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert_pem: read(&dir.join("ca.pem"))?,
            key_pem: read(&dir.join("ca.key"))?,
        })
    }

    /// Whether the private key belongs to the certificate (a handed-over CA is checked with
    /// this before it is stored: a peer cannot plant a different CA key).
    pub fn key_matches_cert(&self) -> Result<bool, TlsError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .map_err(|e| TlsError::Token(format!("invalid CA certificate PEM: {e}")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| TlsError::Token(format!("invalid CA certificate: {e}")))?;
        Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
    }

    /// Stores the CA in `dir` (`ca.pem`, `ca.key`, both 0600).
    pub fn store(&self, dir: &Path) -> Result<(), TlsError> {
        write_private(&dir.join("ca.pem"), self.cert_pem.as_bytes())?;
        write_private(&dir.join("ca.key"), self.key_pem.as_bytes())
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, TlsError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, key)?)
    }

    fn node_params(params: &mut CertificateParams, name: &str) -> Result<(), TlsError> {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![
            SanType::DnsName(NODE_SERVER_NAME.try_into()?),
            SanType::DnsName(JOIN_SERVER_NAME.try_into()?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        Ok(())
    }

    /// Issues a certificate and key for the node `name`, valid for `lifetime` from now (used
    /// for the bootstrap node itself).
    pub fn issue(&self, name: &str, lifetime: Duration) -> Result<NodeIdentity, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        Self::node_params(&mut params, name)?;
        set_validity(&mut params, now_ms(), lifetime)?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(NodeIdentity {
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a node's CSR (at a join or a renewal), valid for `lifetime` from now. The
    /// subject, names, serial and validity are set here, not taken from the CSR.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        name: &str,
        lifetime: Duration,
    ) -> Result<String, TlsError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        Self::node_params(&mut csr.params, name)?;
        set_validity(&mut csr.params, now_ms(), lifetime)?;
        Ok(csr.signed_by(&self.issuer()?)?.pem())
    }
}

/// Makes a key pair and a CSR for a joining node: (key PEM, CSR PEM).
pub fn make_csr(name: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// A node's TLS identity: the CA certificate, its own certificate and key.
#[derive(Clone)]
pub struct NodeIdentity {
    /// Cluster CA certificate, PEM.
    pub ca_pem: String,
    /// Node certificate, PEM.
    pub cert_pem: String,
    /// Node private key, PEM.
    pub key_pem: String,
}

impl NodeIdentity {
    /// Loads the identity from `dir` (`ca.pem`, `node.pem`, `node.key`).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            ca_pem: read(&dir.join("ca.pem"))?,
            cert_pem: read(&dir.join("node.pem"))?,
            key_pem: read(&dir.join("node.key"))?,
        })
    }

    /// Whether an identity is stored in `dir`.
    pub fn exists(dir: &Path) -> bool {
        dir.join("node.pem").exists() && dir.join("node.key").exists()
    }

    /// Stores the identity in `dir`, every file 0600.
    pub fn store(&self, dir: &Path) -> Result<(), TlsError> {
        write_private(&dir.join("ca.pem"), self.ca_pem.as_bytes())?;
        write_private(&dir.join("node.pem"), self.cert_pem.as_bytes())?;
        write_private(&dir.join("node.key"), self.key_pem.as_bytes())
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in pem_certs(&self.ca_pem, "ca certificate")? {
            roots
                .add(c)
                .map_err(|e| TlsError::Rustls(format!("ca certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let mut chain = pem_certs(&self.cert_pem, "node certificate")?;
        chain.extend(pem_certs(&self.ca_pem, "ca certificate")?);
        Ok(chain)
    }

    /// The certificate and key as rustls uses them.
    pub fn certified_key(&self) -> Result<rustls::sign::CertifiedKey, TlsError> {
        rustls::sign::CertifiedKey::from_der(
            self.chain()?,
            pem_key(&self.key_pem, "node key")?,
            &ring(),
        )
        .map_err(|e| TlsError::Rustls(format!("node key: {e}")))
    }

    fn server_builder(
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
        slot: &Arc<CertSlot>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let mut cfg = ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(slot.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No resumption: a resumed session would skip the verifier (and so a revocation or an
        // expiry) and carry the certificate of the session it resumes.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    fn ca_server_verifier(&self) -> Result<Arc<rustls::client::WebPkiServerVerifier>, TlsError> {
        rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots()?, ring())
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))
    }

    /// The cluster port's TLS, live: the node's certificate comes from one [`CertSlot`]
    /// (swapped on renewal) on both sides, and both sides refuse revoked serials.
    pub fn live(&self, revocations: Arc<Revocations>) -> Result<LiveTls, TlsError> {
        let slot = Arc::new(CertSlot::new(self.certified_key()?));
        let webpki =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots()?, ring())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let cluster = Self::server_builder(
            Arc::new(RevokingClientVerifier {
                inner: webpki,
                revocations: revocations.clone(),
            }),
            &slot,
        )?;
        let join = Self::server_builder(
            rustls::server::WebPkiClientVerifier::no_client_auth(),
            &slot,
        )?;
        let mut client = ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterCaVerifier {
                inner: self.ca_server_verifier()?,
                revocations: Some(revocations),
            }))
            .with_client_cert_resolver(slot.clone());
        client.resumption = rustls::client::Resumption::disabled();
        Ok(LiveTls {
            slot,
            cluster,
            join,
            client,
        })
    }

    /// A static client config presenting this identity and trusting only servers the
    /// cluster CA signed (tools and tests; the node itself uses [`NodeIdentity::live`]).
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterCaVerifier {
                inner: self.ca_server_verifier()?,
                revocations: None,
            }))
            .with_client_auth_cert(self.chain()?, pem_key(&self.key_pem, "node key")?)
            .map_err(|e| TlsError::Rustls(e.to_string()))
    }
}

/// The cluster port's TLS configurations over one swappable certificate.
pub struct LiveTls {
    /// The node's certificate and key in use.
    pub slot: Arc<CertSlot>,
    /// mTLS server config of the cluster port.
    pub cluster: Arc<ServerConfig>,
    /// Server config of the join endpoint (no client certificate).
    pub join: Arc<ServerConfig>,
    /// Client config for peers.
    pub client: ClientConfig,
}

/// Client config for joining: no client certificate, and the server must present a chain
/// whose CA certificate hashes to `ca_hash_hex`.
pub fn join_client_config(ca_hash_hex: &str) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier {
            ca_hash: ca_hash_hex.to_ascii_lowercase(),
        }))
        .with_no_client_auth())
}

/// Verifies a peer against the cluster CA under the fixed name [`NODE_SERVER_NAME`], whatever
/// address was dialled, and refuses revoked serials.
#[derive(Debug)]
struct ClusterCaVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    /// Serials to refuse (the node's own live config; tools' static configs have none).
    revocations: Option<Arc<Revocations>>,
}

fn fixed_name() -> ServerName<'static> {
    ServerName::try_from(NODE_SERVER_NAME).expect("NODE_SERVER_NAME is a valid DNS name")
}

impl ServerCertVerifier for ClusterCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok =
            self.inner
                .verify_server_cert(end_entity, intermediates, &fixed_name(), ocsp, now)?;
        if let Some(r) = &self.revocations {
            r.check(end_entity, "server")?;
        }
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

/// Trusts the server only if its chain contains a CA certificate with the pinned hash and the
/// server certificate verifies against that CA.
#[derive(Debug)]
struct PinnedCaVerifier {
    ca_hash: String,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| hex::encode(sha2::Sha256::digest(c.as_ref())) == self.ca_hash)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "server's CA does not match the join token's CA hash {}",
                    self.ca_hash
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned ca: {e}")))?;
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ring())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], &fixed_name(), ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &ring().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &ring().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ring().signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_ca_key_must_belong_to_the_certificate() {
        let a = ClusterCa::generate("a").unwrap();
        let b = ClusterCa::generate("b").unwrap();
        assert!(a.key_matches_cert().unwrap());
        let planted = ClusterCa {
            cert_pem: a.cert_pem.clone(),
            key_pem: b.key_pem.clone(),
        };
        assert!(!planted.key_matches_cert().unwrap());
        let garbage = ClusterCa {
            cert_pem: "not a pem".into(),
            key_pem: a.key_pem.clone(),
        };
        assert!(garbage.key_matches_cert().is_err());
    }
}
