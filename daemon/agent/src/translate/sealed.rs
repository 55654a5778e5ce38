//! SOPS-encrypted Secrets, opened on the node that runs the pod, and only there.
//!
//! The desired state carries an encrypted Secret's whole document
//! ([`kommit_schemas::sops::SealedDocument`]); the node's keyring, which the daemon reads
//! from its data dir, comes in as [`SecretKeys`]. Opening checks the SOPS MAC and gives the
//! Secret's keys with their plaintext bytes, in memory only: into the pod's plan (its
//! environment and projected files), never into an entry, a log line or an error message.
//! A failure is one line naming the Secret and the cause (no identity matches, MAC
//! mismatch), which becomes the pod's `CreateContainerConfigError`.
//!
//! Decrypting is a function of the document and the identities (age's X25519 and AES-GCM
//! read no randomness to decrypt), so `translate` stays pure; [`SecretKeys`] memoises it per
//! document, since the agent translates its pods on every pass.

use base64::Engine;
use kommit_schemas::sops::SealedDocument;
use kommit_schemas::tree::Tree;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A Secret's keys and plaintext bytes, or why it could not be opened.
pub(super) type Opened = Result<Arc<BTreeMap<String, Vec<u8>>>, String>;

/// Most documents remembered opened (then the memo starts over).
const MEMO: usize = 256;

/// The age identities this node decrypts with, and what they opened.
#[derive(Clone, Default)]
pub struct SecretKeys {
    identities: Arc<Vec<kommit_sops::keys::Identity>>,
    memo: Arc<Mutex<BTreeMap<Vec<u8>, Opened>>>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKeys({} identities)", self.identities.len())
    }
}

impl PartialEq for SecretKeys {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.identities, &other.identities)
    }
}

impl SecretKeys {
    /// Keys from the node's keyring (the current identity first).
    pub fn new(keyring: &kommit_sops::Keyring) -> SecretKeys {
        SecretKeys {
            identities: Arc::new(keyring.identities()),
            memo: Arc::default(),
        }
    }

    /// How many identities there are.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether there is none (the node has no keyring).
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Opens the encrypted Secret `key` (`namespace/name`).
    pub(super) fn open(&self, key: &str, doc: &SealedDocument) -> Opened {
        use sha2::Digest;
        let bytes = serde_json::to_vec(doc).unwrap_or_default();
        let id = sha2::Sha256::digest(&bytes).to_vec();
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = memo.get(&id) {
            return o.clone();
        }
        let opened = open(doc, &self.identities)
            .map(Arc::new)
            .map_err(|e| format!("secret {key}: cannot decrypt: {e}"));
        if memo.len() >= MEMO {
            memo.clear();
        }
        memo.insert(id, opened.clone());
        opened
    }
}

fn open(
    doc: &SealedDocument,
    identities: &[kommit_sops::keys::Identity],
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let plain = kommit_sops::decrypt_document(doc.0.clone(), identities)
        .map_err(|e| e.to_string())?
        .tree;
    let mut out = BTreeMap::new();
    for (field, decode) in [("data", true), ("stringData", false)] {
        let Some(values) = plain.get(field) else {
            continue;
        };
        let Tree::Map(entries) = values else {
            return Err(format!("`{field}` is not a mapping"));
        };
        for (k, v) in entries {
            let text = match v {
                Tree::Str(s) => s.as_str(),
                Tree::Null => "",
                _ => return Err(format!("`{field}.{k}` is not a string")),
            };
            let bytes = if decode {
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| format!("`{field}.{k}` is not base64"))?
            } else {
                text.as_bytes().to_vec()
            };
            out.insert(k.clone(), bytes);
        }
    }
    Ok(out)
}
