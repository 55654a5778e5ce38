//! Writing a SOPS file: encrypt each selected value with the data key, compute the MAC, and
//! append the `sops` block. Pure: the data key, its age stanzas, the time and the nonces'
//! generator are arguments.

use crate::cipher::{plaintext, seal};
use crate::keys::DataKey;
use crate::walk::{aad, scalars};
use crate::Error;
use kommit_schemas::sops::{format_rfc3339, mac_aad, AgeKey, SopsMetadata, ValueType, IV_LEN};
use kommit_schemas::tree::Tree;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};

/// The SOPS version whose format kommit writes.
pub const SOPS_VERSION: &str = "3.9.4";

/// What to encrypt.
#[derive(Clone, Debug, Default)]
pub struct EncryptOptions {
    /// The one key selector (`encrypted_regex` and the others), as `sops` takes it; none
    /// encrypts every value.
    pub encrypted_regex: Option<String>,
    /// Keys matching this stay in clear.
    pub unencrypted_regex: Option<String>,
    /// Only keys ending with this are encrypted.
    pub encrypted_suffix: Option<String>,
    /// Keys ending with this stay in clear.
    pub unencrypted_suffix: Option<String>,
    /// The MAC covers only the encrypted values.
    pub mac_only_encrypted: bool,
}

/// Encrypts `doc` with `key`, whose age stanzas are `stanzas`, as of `now` (Unix seconds),
/// drawing each value's nonce from `rng`.
pub fn encrypt(
    mut doc: Tree,
    options: &EncryptOptions,
    key: &DataKey,
    stanzas: Vec<AgeKey>,
    now: i64,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Tree, Error> {
    if !matches!(doc, Tree::Map(_)) {
        return Err(Error::NotAMapping);
    }
    if doc.get("sops").is_some() {
        return Err(Error::AlreadyEncrypted);
    }
    let mut metadata = SopsMetadata {
        age: stanzas,
        lastmodified: format_rfc3339(now),
        encrypted_regex: options.encrypted_regex.clone(),
        unencrypted_regex: options.unencrypted_regex.clone(),
        encrypted_suffix: options.encrypted_suffix.clone(),
        unencrypted_suffix: options.unencrypted_suffix.clone(),
        mac_only_encrypted: options.mac_only_encrypted.then_some(true),
        version: Some(SOPS_VERSION.into()),
        ..SopsMetadata::default()
    };
    let selector = metadata
        .selector()
        .map_err(|(field, message)| Error::Metadata {
            field: field.into(),
            message,
        })?;
    let mut hash = Sha512::new();
    if options.mac_only_encrypted {
        hash.update(crate::cipher::mac_only_encrypted_seed());
    }
    scalars(&mut doc, &mut |leaf, path, _| {
        let encrypted = selector.encrypts(path);
        let Some((bytes, kind)) = plaintext(leaf) else {
            return Ok::<_, Error>(());
        };
        if encrypted || !options.mac_only_encrypted {
            hash.update(&bytes);
        }
        // SOPS leaves empty strings as they are.
        if encrypted && !bytes.is_empty() {
            let v = seal(&bytes, kind, key, nonce(rng), &aad(path));
            *leaf = Tree::Str(v.to_string());
        }
        Ok(())
    })?;
    let mac = hex::encode_upper(hash.finalize());
    let aad = mac_aad(&metadata.lastmodified).map_err(|message| Error::Metadata {
        field: "lastmodified".into(),
        message,
    })?;
    metadata.mac = seal(
        mac.as_bytes(),
        ValueType::Str,
        key,
        nonce(rng),
        aad.as_bytes(),
    )
    .to_string();
    if let Tree::Map(entries) = &mut doc {
        entries.push(("sops".into(), metadata_tree(&metadata)));
    }
    Ok(doc)
}

fn nonce(rng: &mut (impl RngCore + CryptoRng)) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    iv
}

/// The `sops` block in the order SOPS writes it.
fn metadata_tree(m: &SopsMetadata) -> Tree {
    let s = |v: &str| Tree::Str(v.to_owned());
    let mut out = vec![(
        "age".to_owned(),
        Tree::Seq(
            m.age
                .iter()
                .map(|k| {
                    Tree::Map(vec![
                        ("recipient".into(), s(&k.recipient)),
                        ("enc".into(), s(&k.enc)),
                    ])
                })
                .collect(),
        ),
    )];
    out.push(("lastmodified".into(), s(&m.lastmodified)));
    out.push(("mac".into(), s(&m.mac)));
    for (name, v) in [
        ("unencrypted_suffix", &m.unencrypted_suffix),
        ("encrypted_suffix", &m.encrypted_suffix),
        ("unencrypted_regex", &m.unencrypted_regex),
        ("encrypted_regex", &m.encrypted_regex),
    ] {
        if let Some(v) = v {
            out.push((name.into(), s(v)));
        }
    }
    if m.mac_only_encrypted() {
        out.push(("mac_only_encrypted".into(), Tree::Bool(true)));
    }
    if let Some(v) = &m.version {
        out.push(("version".into(), s(v)));
    }
    Tree::Map(out)
}
