//! The process's TLS crypto provider.
//!
//! Every HTTPS client kommit builds goes through rustls with *ring*: reqwest (under oci-client,
//! gix's http transport, the agent's probes and exec hooks, the consensus peers) is compiled
//! without a provider of its own (`rustls-no-provider`), so the process-wide default must be
//! installed before the first client is built, or reqwest panics. One provider instead of
//! reqwest's default aws-lc-rs next to the ring the consensus TLS uses keeps the aws-lc C
//! library out of the build and the binary.

use std::sync::Once;

/// Installs ring as the process's default rustls provider. Idempotent and cheap; every place
/// that builds an HTTP client calls it first, so no entry point (the binary, a test, an
/// embedding program) can forget it. A provider someone installed before is left alone.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err only means a default is already installed; that one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
