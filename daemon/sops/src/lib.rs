//! SOPS files with age recipients: decrypting them into the document they encrypt, and
//! writing them.
//!
//! Why this crate: Flux and Argo CD users keep Secrets in Git as SOPS files encrypted to an
//! age recipient, and kommit reads what they already write. The format (the `sops:` block,
//! the `ENC[...]` value syntax, the key selectors) belongs to `kommit-schemas`, which checks
//! it without a key in `kommit validate`; this crate adds what needs the data key: age to
//! open or wrap it ([`keys`]), AES-256-GCM per value with the value's key path as additional
//! data ([`cipher`]), and the MAC, SHA-512 over the values in document order, itself stored
//! encrypted ([`decrypt`], [`encrypt`]).
//!
//! Everything read is untrusted: the YAML budgets of `kommit-schemas` bound the document,
//! recipients and stanzas are counted and sized, a data key must be exactly 32 bytes, and
//! every failure is one line naming the field or key path. Nothing here reads the clock or
//! the OS's randomness except age's own key wrapping and generation ([`keys::wrap_data_key`],
//! [`keys::new_identity_file`]): time, data
//! keys and the nonces' generator are arguments.

#![deny(missing_docs)]

pub mod cipher;
pub mod decrypt;
pub mod encrypt;
pub mod keyring;
pub mod keys;
mod walk;

pub use decrypt::{decrypt, decrypt_document, decrypt_with_data_key, Decrypted};
pub use encrypt::{encrypt, EncryptOptions};
pub use keyring::Keyring;
pub use keys::{
    new_identity_file, parse_identities, parse_recipient, unwrap_data_key, wrap_data_key, DataKey,
};

/// Why a SOPS file could not be read or written. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not YAML within the budgets.
    #[error("line {line} column {col}: {message}")]
    Yaml {
        /// 1-based line.
        line: u32,
        /// 1-based column.
        col: u32,
        /// What is wrong.
        message: String,
    },
    /// The file is not one YAML document.
    #[error("a SOPS file holds exactly one YAML document, found {0}")]
    Documents(usize),
    /// The document has no `sops` block.
    #[error("not a SOPS file: no top-level `sops` mapping")]
    NotSops,
    /// The document already has a `sops` block (encrypting it again).
    #[error("already encrypted: the document has a top-level `sops` key")]
    AlreadyEncrypted,
    /// The document is not a mapping.
    #[error("the document must be a mapping")]
    NotAMapping,
    /// A field of the `sops` block is wrong.
    #[error("sops.{field}: {message}")]
    Metadata {
        /// The field, e.g. `age[0].recipient`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No identity opens any stanza.
    #[error("no age identity given matches the file's recipients ({0})")]
    NoMatchingIdentity(String),
    /// A value could not be decrypted or encrypted.
    #[error("{path}: {message}")]
    Value {
        /// The value's key path, e.g. `data.password` or `list[1]`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The MAC does not match the values.
    #[error("MAC mismatch: the file's values were changed after SOPS encrypted them")]
    MacMismatch,
    /// An age key or identity is malformed.
    #[error("{0}")]
    Key(String),
}

/// One-line text of an error from another crate.
pub(crate) fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}
