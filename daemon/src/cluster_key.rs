//! The cluster's age identity: the recipient SOPS-encrypted Secrets are encrypted to
//! (`kommit secrets key` prints it). Made once when a node bootstraps the cluster, kept 0600
//! under the data dir like the CA key, never sent to Git.
//!
//! Not yet: handing it to the other voters as the CA key is, rotation, and decryption by the
//! agent of the node that runs a pod (issue 16).

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where the identity lives under the data dir.
pub const KEY_FILE: &str = "secrets/age.key";

/// The identity file's path.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Creates the identity unless it exists, and returns its recipient. `created` is the time
/// written in the file's comment.
pub fn ensure(data_dir: &Path, created: &str) -> anyhow::Result<String> {
    let file = path(data_dir);
    if file.exists() {
        return recipient(data_dir);
    }
    let (text, recipient) = kommit_sops::new_identity_file(created);
    crate::consensus::tls::write_private(&file, text.as_bytes())
        .with_context(|| format!("writing the cluster's age identity {}", file.display()))?;
    Ok(recipient)
}

/// The recipient of the identity under `data_dir`.
pub fn recipient(data_dir: &Path) -> anyhow::Result<String> {
    let file = path(data_dir);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no cluster age identity at {} (a node makes it when it bootstraps the cluster)",
            file.display()
        )
    })?;
    let ids = kommit_sops::parse_identities(&text).with_context(|| file.display().to_string())?;
    Ok(ids[0].to_public().to_string())
}
