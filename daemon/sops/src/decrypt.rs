//! Reading a SOPS file: open the data key, decrypt each value, check the MAC.

use crate::cipher::{open, plaintext, typed};
use crate::keys::{unwrap_data_key, DataKey};
use crate::walk::{aad, scalars};
use crate::{one_line, Error};
use age::x25519::Identity;
use kommit_schemas::sops::{check_metadata, mac_aad, EncValue, SopsMetadata, ValueType};
use kommit_schemas::tree::Tree;
use kommit_schemas::yaml::{parse_trees, YamlBudget};
use sha2::{Digest, Sha512};

/// A decrypted file: the document it encrypts, and its `sops` block.
#[derive(Clone, Debug)]
pub struct Decrypted {
    /// The plaintext document, without the `sops` key, in the file's key order.
    pub tree: Tree,
    /// The metadata the file carried.
    pub metadata: SopsMetadata,
}

/// Splits a SOPS file into its document and its checked metadata.
pub fn split(text: &str, budget: &YamlBudget) -> Result<(Tree, SopsMetadata), Error> {
    let mut docs = parse_trees(text, budget).map_err(|e| Error::Yaml {
        line: e.pos.line,
        col: e.pos.col,
        message: e.message,
    })?;
    if docs.len() != 1 {
        return Err(Error::Documents(docs.len()));
    }
    split_tree(docs.remove(0))
}

/// Splits a parsed SOPS document into its values and its checked metadata.
pub fn split_tree(mut doc: Tree) -> Result<(Tree, SopsMetadata), Error> {
    if !matches!(doc, Tree::Map(_)) {
        return Err(Error::NotAMapping);
    }
    let sops = doc.remove("sops").ok_or(Error::NotSops)?;
    let json = sops.to_json().map_err(|f| Error::Metadata {
        field: "(block)".into(),
        message: format!("number {f} is not finite"),
    })?;
    if !json.is_object() {
        return Err(Error::NotSops);
    }
    let metadata: SopsMetadata = serde_json::from_value(json).map_err(|e| Error::Metadata {
        field: "(block)".into(),
        message: one_line(e),
    })?;
    if let Some((field, message)) = check_metadata(&metadata).into_iter().next() {
        return Err(Error::Metadata {
            field: kommit_schemas::load::field_path(&format!("/{field}")),
            message,
        });
    }
    Ok((doc, metadata))
}

/// Decrypts a SOPS file with the first of `identities` that opens its data key, and checks
/// its MAC.
pub fn decrypt(text: &str, identities: &[Identity]) -> Result<Decrypted, Error> {
    let (doc, metadata) = split(text, &YamlBudget::default())?;
    let key = unwrap_data_key(&metadata.age, identities)?;
    decrypt_tree(doc, metadata, &key)
}

/// Decrypts a SOPS document already parsed in document order (what the desired state
/// carries, [`kommit_schemas::sops::SealedDocument`]) with the first of `identities` that
/// opens its data key, and checks its MAC.
pub fn decrypt_document(doc: Tree, identities: &[Identity]) -> Result<Decrypted, Error> {
    let (doc, metadata) = split_tree(doc)?;
    let key = unwrap_data_key(&metadata.age, identities)?;
    decrypt_tree(doc, metadata, &key)
}

/// Decrypts a SOPS file whose data key is already known.
pub fn decrypt_with_data_key(text: &str, key: &DataKey) -> Result<Decrypted, Error> {
    let (doc, metadata) = split(text, &YamlBudget::default())?;
    decrypt_tree(doc, metadata, key)
}

fn decrypt_tree(mut doc: Tree, metadata: SopsMetadata, key: &DataKey) -> Result<Decrypted, Error> {
    let selector = metadata
        .selector()
        .map_err(|(field, message)| Error::Metadata {
            field: field.into(),
            message,
        })?;
    let mac_only = metadata.mac_only_encrypted();
    let mut hash = Sha512::new();
    if mac_only {
        hash.update(crate::cipher::mac_only_encrypted_seed());
    }
    scalars(&mut doc, &mut |leaf, path, shown| {
        let encrypted = selector.encrypts(path);
        if encrypted {
            let value_error = |message: String| Error::Value {
                path: shown.to_owned(),
                message,
            };
            match leaf {
                // SOPS leaves empty strings as they are.
                Tree::Str(s) if s.is_empty() => {}
                Tree::Str(s) => {
                    let v = EncValue::parse(s)
                        .map_err(|e| value_error(format!("should be encrypted but is not: {e}")))?;
                    let bytes = open(&v, key, &aad(path)).map_err(value_error)?;
                    *leaf = typed(bytes, v.kind).map_err(value_error)?;
                }
                _ => return Err(value_error("should be encrypted but is in clear".into())),
            }
        }
        if encrypted || !mac_only {
            if let Some((bytes, _)) = plaintext(leaf) {
                hash.update(&bytes);
            }
        }
        Ok(())
    })?;
    let computed = hex::encode_upper(hash.finalize());
    let stored = stored_mac(&metadata, key)?;
    if stored != computed {
        return Err(Error::MacMismatch);
    }
    Ok(Decrypted {
        tree: doc,
        metadata,
    })
}

fn stored_mac(metadata: &SopsMetadata, key: &DataKey) -> Result<String, Error> {
    let err = |message: String| Error::Metadata {
        field: "mac".into(),
        message,
    };
    let aad = mac_aad(&metadata.lastmodified).map_err(|message| Error::Metadata {
        field: "lastmodified".into(),
        message,
    })?;
    let v = EncValue::parse(&metadata.mac).map_err(|e| err(format!("not a SOPS MAC: {e}")))?;
    if v.kind != ValueType::Str {
        return Err(err("the MAC must be of type str".into()));
    }
    let bytes = open(&v, key, aad.as_bytes()).map_err(err)?;
    String::from_utf8(bytes).map_err(|_| err("decrypts to bytes that are not UTF-8".into()))
}
