//! The cluster's age keyring: the identities SOPS-encrypted Secrets are decrypted with, in
//! `DATA_DIR/secrets/age.key` (0600, never in Git), as `age-keygen` blocks one after the
//! other (`age -d -i` and `SOPS_AGE_KEY_FILE` read it as it is). The newest identity is the
//! current one: `kommit secrets key` prints its recipient and `kommit secrets encrypt`
//! encrypts to it.
//!
//! - made when a node bootstraps the cluster ([`ensure`]);
//! - `kommit secrets key --rotate` adds a newer identity, `--import FILE` an operator's
//!   `age-keygen` file ([`merge`]); old identities keep decrypting;
//! - every node's keyring becomes the union of all of them: the leader sends its keyring to
//!   every member over the cluster port (mTLS) and merges what each answers
//!   (`consensus::keys`), so a joining node, voter or learner, holds it within seconds of
//!   joining, and an import or rotation on any node reaches every other one;
//! - the agent reads it again when the file changes ([`Watch`]) and decrypts with it.

use anyhow::Context;
use kommit_sops::Keyring;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where the keyring lives under the data dir.
pub const KEY_FILE: &str = "secrets/age.key";

/// Largest keyring file read (64 identities take about 12 KiB).
pub const MAX_KEYRING_BYTES: u64 = 64 * 1024;

/// Serialises this process's read-merge-write cycles of the file.
static WRITING: Mutex<()> = Mutex::new(());

/// The keyring file's path.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// The keyring under `data_dir`, or None if the node has none yet.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<Keyring>> {
    let file = path(data_dir);
    let meta = match std::fs::metadata(&file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    if meta.len() > MAX_KEYRING_BYTES {
        anyhow::bail!(
            "{}: {} bytes, over the limit of {MAX_KEYRING_BYTES}",
            file.display(),
            meta.len()
        );
    }
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Keyring::parse(&text)
        .map(Some)
        .with_context(|| file.display().to_string())
}

/// Adds `other`'s identities to the keyring under `data_dir` (made if absent); returns the
/// keyring after the merge and how many identities were new.
pub fn merge(data_dir: &Path, other: &Keyring) -> anyhow::Result<(Keyring, usize)> {
    let _guard = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let mut ring = load(data_dir)?.unwrap_or_default();
    let added = ring.merge(other)?;
    if added > 0 {
        let file = path(data_dir);
        crate::consensus::tls::write_private(&file, ring.to_text().as_bytes())
            .with_context(|| format!("writing the cluster's age keyring {}", file.display()))?;
    }
    Ok((ring, added))
}

/// Creates the keyring unless it exists, and returns its current recipient. `created` is
/// the time written in the new identity's comment (RFC 3339, UTC).
pub fn ensure(data_dir: &Path, created: &str) -> anyhow::Result<String> {
    if let Some(ring) = load(data_dir)? {
        return current(&ring);
    }
    let (ring, _) = merge(data_dir, &Keyring::generate(created))?;
    current(&ring)
}

fn current(ring: &Keyring) -> anyhow::Result<String> {
    ring.current()
        .map(str::to_owned)
        .context("the keyring holds no identity")
}

/// The current recipient of the keyring under `data_dir`.
pub fn recipient(data_dir: &Path) -> anyhow::Result<String> {
    let ring = load(data_dir)?.with_context(|| {
        format!(
            "no cluster age keyring at {} (a node makes it when it bootstraps the cluster, and receives it when it joins)",
            path(data_dir).display()
        )
    })?;
    current(&ring)
}

/// The agent's keys, read again whenever the file's size or modification time changes.
pub struct Watch {
    data_dir: PathBuf,
    seen: Mutex<(
        Option<(u64, std::time::SystemTime)>,
        kommit_agent::translate::SecretKeys,
    )>,
}

impl Watch {
    /// Watches the keyring under `data_dir`.
    pub fn new(data_dir: &Path) -> Watch {
        Watch {
            data_dir: data_dir.to_path_buf(),
            seen: Mutex::new((None, Default::default())),
        }
    }

    /// The keys as the file holds them now (none while it is absent or unreadable).
    pub fn keys(&self) -> kommit_agent::translate::SecretKeys {
        let stamp = std::fs::metadata(path(&self.data_dir))
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.0 != stamp {
            let keys = match load(&self.data_dir) {
                Ok(Some(ring)) => {
                    tracing::info!(
                        identities = ring.len(),
                        current = ring.current().unwrap_or_default(),
                        "agent: cluster age keyring loaded"
                    );
                    kommit_agent::translate::SecretKeys::new(&ring)
                }
                Ok(None) => Default::default(),
                Err(e) => {
                    tracing::warn!("agent: the cluster age keyring: {e:#}");
                    Default::default()
                }
            };
            *seen = (stamp, keys);
        }
        seen.1.clone()
    }
}
