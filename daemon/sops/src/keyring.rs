//! The cluster's keyring: every age identity a node decrypts with, in the file format
//! `age-keygen` writes (`# created:`, `# public key:`, `AGE-SECRET-KEY-1...`), several
//! blocks in one file, which `age -d -i` and `SOPS_AGE_KEY_FILE` read as they are.
//!
//! Every identity decrypts; the newest one (latest `# created:` time, RFC 3339 in UTC as
//! `age-keygen` writes it) is the *current* one, whose recipient new Secrets are encrypted
//! to. Rotating adds a newer identity; importing adds an operator's `age-keygen` file.
//! Keyrings merge as a union, so nodes that exchange theirs agree on the set and on the
//! current identity whatever the order of the exchanges.

use crate::keys::MAX_IDENTITIES;
use crate::Error;
use age::secrecy::ExposeSecret;
use age::x25519::Identity;
use std::str::FromStr;

/// One identity and when it was made.
#[derive(Clone)]
struct Entry {
    created: String,
    identity: Identity,
    recipient: String,
}

/// A set of age identities, newest first.
#[derive(Clone, Default)]
pub struct Keyring {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Keyring {
    // Recipients only: the identities never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.recipients()).finish()
    }
}

impl Keyring {
    /// Reads a keyring or an `age-keygen` identity file. An identity takes the time of the
    /// last `# created:` comment above it (none: the oldest possible).
    pub fn parse(text: &str) -> Result<Keyring, Error> {
        let mut ring = Keyring::default();
        let mut created = String::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(c) = line.strip_prefix("# created:") {
                created = c.trim().chars().take(64).collect();
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = Identity::from_str(line).map_err(|_| {
                // The line itself is never shown: it may be a key with a typo.
                Error::Key(format!(
                    "identity file line {}: not an age X25519 identity (AGE-SECRET-KEY-1...)",
                    i + 1
                ))
            })?;
            ring.insert(std::mem::take(&mut created), identity)?;
        }
        if ring.entries.is_empty() {
            return Err(Error::Key("the identity file holds no age identity".into()));
        }
        Ok(ring)
    }

    /// A keyring of one new identity made at `created` (RFC 3339, UTC). age draws the key
    /// from the OS's randomness.
    pub fn generate(created: &str) -> Keyring {
        let identity = Identity::generate();
        let recipient = identity.to_public().to_string();
        Keyring {
            entries: vec![Entry {
                created: created.to_owned(),
                identity,
                recipient,
            }],
        }
    }

    /// Adds a new identity made at `created` and returns its recipient (the current one if
    /// `created` is the latest time in the ring); an error when the ring is full.
    pub fn insert_new(&mut self, created: &str) -> Result<String, Error> {
        let identity = Identity::generate();
        let recipient = identity.to_public().to_string();
        self.insert(created.to_owned(), identity)?;
        Ok(recipient)
    }

    /// Adds every identity of `other` this ring lacks; returns how many were added.
    pub fn merge(&mut self, other: &Keyring) -> Result<usize, Error> {
        let mut added = 0;
        for e in &other.entries {
            if self.insert(e.created.clone(), e.identity.clone())? {
                added += 1;
            }
        }
        Ok(added)
    }

    fn insert(&mut self, created: String, identity: Identity) -> Result<bool, Error> {
        let recipient = identity.to_public().to_string();
        if let Some(e) = self.entries.iter_mut().find(|e| e.recipient == recipient) {
            // The same key seen with two times keeps the earlier (a union is then
            // independent of the order of merges).
            if !created.is_empty() && (e.created.is_empty() || created < e.created) {
                e.created = created;
                self.sort();
            }
            return Ok(false);
        }
        if self.entries.len() == MAX_IDENTITIES {
            return Err(Error::Key(format!(
                "a keyring holds at most {MAX_IDENTITIES} identities"
            )));
        }
        self.entries.push(Entry {
            created,
            identity,
            recipient,
        });
        self.sort();
        Ok(true)
    }

    fn sort(&mut self) {
        self.entries.sort_by(|a, b| {
            (b.created.as_str(), b.recipient.as_str())
                .cmp(&(a.created.as_str(), a.recipient.as_str()))
        });
    }

    /// The current recipient: the newest identity's.
    pub fn current(&self) -> Option<&str> {
        self.entries.first().map(|e| e.recipient.as_str())
    }

    /// Every recipient, the current one first.
    pub fn recipients(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.recipient.as_str()).collect()
    }

    /// Every identity, to decrypt with (the current one first).
    pub fn identities(&self) -> Vec<Identity> {
        self.entries.iter().map(|e| e.identity.clone()).collect()
    }

    /// How many identities the ring holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file text: one `age-keygen` block per identity, newest first.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            if !e.created.is_empty() {
                out.push_str(&format!("# created: {}\n", e.created));
            }
            out.push_str(&format!("# public key: {}\n", e.recipient));
            out.push_str(e.identity.to_string().expose_secret());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_is_current_and_all_decrypt() {
        let mut ring = Keyring::generate("2026-01-01T00:00:00Z");
        let first = ring.current().unwrap().to_owned();
        let second = ring.insert_new("2026-06-01T00:00:00Z").unwrap();
        assert_eq!(ring.current(), Some(second.as_str()));
        assert_eq!(ring.recipients(), [second.as_str(), first.as_str()]);
        let text = ring.to_text();
        assert!(text.starts_with("# created: 2026-06-01T00:00:00Z\n# public key: age1"));
        let again = Keyring::parse(&text).unwrap();
        assert_eq!(again.recipients(), ring.recipients());
        assert_eq!(crate::parse_identities(&text).unwrap().len(), 2);
        assert!(!format!("{ring:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn merges_are_unions_in_any_order() {
        let a = Keyring::generate("2026-01-01T00:00:00Z");
        let b = Keyring::generate("2026-02-01T00:00:00Z");
        let mut ab = a.clone();
        assert_eq!(ab.merge(&b).unwrap(), 1);
        assert_eq!(ab.merge(&b).unwrap(), 0);
        let mut ba = b.clone();
        ba.merge(&a).unwrap();
        assert_eq!(ab.to_text(), ba.to_text());
        assert_eq!(ab.current(), b.current());
    }

    #[test]
    fn reads_age_keygen_files_and_refuses_junk() {
        let id = Identity::generate();
        let text = format!(
            "# created: 2025-11-24T16:00:00Z\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        );
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.current(), Some(id.to_public().to_string().as_str()));
        let err = Keyring::parse("AGE-SECRET-KEY-1NOPE\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && !err.contains("NOPE"), "{err}");
        assert!(Keyring::parse("# nothing\n").is_err());
    }
}
