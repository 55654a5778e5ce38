//! The SOPS file format, without its cryptography.
//!
//! A SOPS file is the document it encrypts with its values replaced by
//! `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|float|bool|bytes>]` strings,
//! plus a top-level `sops:` mapping: the data key encrypted to each age recipient, when the
//! file was last written, the MAC (itself an `ENC[...]` value) and the key selectors that say
//! which values are encrypted.
//!
//! This module knows the format: the metadata's shape ([`SopsMetadata`], also the `sops`
//! field of a Secret's JSON Schema), the value syntax ([`EncValue`]), the selectors
//! ([`Selector`]) and the checks a file passes without a key ([`check_metadata`],
//! [`check_values`]), which is what `kommit validate` can do in CI. Decrypting and
//! encrypting need the data key and live in the node-side crate `kommit-sops`.

mod enc;
mod sealed;
mod time;

pub use enc::{EncError, EncValue, ValueType, IV_LEN, TAG_LEN};
pub use sealed::{SealedDocument, MAX_SEALED_BYTES};
pub use time::{format_rfc3339, mac_aad};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most age recipients one file may name.
pub const MAX_RECIPIENTS: usize = 64;
/// Largest armored age stanza (`enc`), in bytes. A 32-byte key to one X25519 recipient is
/// about 400.
pub const MAX_STANZA_BYTES: usize = 4096;
/// Longest selector regex, in bytes.
pub const MAX_REGEX_BYTES: usize = 1024;

/// The `sops:` block, as SOPS writes it for age recipients.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SopsMetadata {
    /// The data key, encrypted to each age recipient.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub age: Vec<AgeKey>,
    /// When the file was last written (RFC 3339); the MAC's additional data.
    pub lastmodified: String,
    /// The MAC over the values, encrypted with the data key.
    pub mac: String,
    /// Keys ending with this are left in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unencrypted_suffix: Option<String>,
    /// Only keys ending with this are encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_suffix: Option<String>,
    /// Keys matching this are left in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unencrypted_regex: Option<String>,
    /// Only keys matching this are encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_regex: Option<String>,
    /// Comments matching this are left in clear (comments are not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unencrypted_comment_regex: Option<String>,
    /// Only comments matching this are encrypted (comments are not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_comment_regex: Option<String>,
    /// The MAC covers only the encrypted values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_only_encrypted: Option<bool>,
    /// The SOPS version that wrote the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// AWS KMS keys (not used by kommit; SOPS writes an empty list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<Vec<serde_json::Value>>,
    /// GCP KMS keys (not used by kommit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_kms: Option<Vec<serde_json::Value>>,
    /// Azure Key Vault keys (not used by kommit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_kv: Option<Vec<serde_json::Value>>,
    /// HashiCorp Vault keys (not used by kommit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hc_vault: Option<Vec<serde_json::Value>>,
    /// PGP keys (not used by kommit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgp: Option<Vec<serde_json::Value>>,
    /// Shamir key groups: refused (the data key would be split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_groups: Option<Vec<serde_json::Value>>,
    /// Shamir threshold: refused with `key_groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shamir_threshold: Option<u32>,
}

/// The data key encrypted to one age recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgeKey {
    /// The recipient (`age1...`).
    pub recipient: String,
    /// The data key as an ASCII-armored age file.
    pub enc: String,
}

/// Which values of a file are encrypted. SOPS allows one selector per file.
#[derive(Clone, Debug)]
pub enum Selector {
    /// Every value.
    All,
    /// Values under a key ending with the suffix are in clear.
    UnencryptedSuffix(String),
    /// Only values under a key ending with the suffix are encrypted.
    EncryptedSuffix(String),
    /// Values under a key matching the regex are in clear.
    UnencryptedRegex(regex::Regex),
    /// Only values under a key matching the regex are encrypted.
    EncryptedRegex(regex::Regex),
}

impl Selector {
    /// Whether the value at `path` (its mapping keys from the root; sequence items share
    /// their parent's path) is encrypted, as SOPS decides it.
    pub fn encrypts<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let mut keys = path.iter().map(AsRef::as_ref);
        match self {
            Selector::All => true,
            Selector::UnencryptedSuffix(s) => !keys.any(|k| k.ends_with(s.as_str())),
            Selector::EncryptedSuffix(s) => keys.any(|k| k.ends_with(s.as_str())),
            Selector::UnencryptedRegex(r) => !keys.any(|k| r.is_match(k)),
            Selector::EncryptedRegex(r) => keys.any(|k| r.is_match(k)),
        }
    }

    /// Compiles a regex selector under size bounds.
    pub fn regex(pattern: &str) -> Result<regex::Regex, String> {
        if pattern.len() > MAX_REGEX_BYTES {
            return Err(format!("is longer than {MAX_REGEX_BYTES} bytes"));
        }
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| {
                let text = e.to_string();
                let last = text.lines().last().unwrap_or("invalid").trim().to_owned();
                format!("is not a valid regex: {last}")
            })
    }
}

impl SopsMetadata {
    /// The selector the metadata names, or which field is wrong and why.
    pub fn selector(&self) -> Result<Selector, (&'static str, String)> {
        let set = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let mut found = Vec::new();
        if let Some(s) = set(&self.unencrypted_suffix) {
            found.push(("unencrypted_suffix", Selector::UnencryptedSuffix(s)));
        }
        if let Some(s) = set(&self.encrypted_suffix) {
            found.push(("encrypted_suffix", Selector::EncryptedSuffix(s)));
        }
        if let Some(s) = set(&self.unencrypted_regex) {
            let r = Selector::regex(&s).map_err(|e| ("unencrypted_regex", e))?;
            found.push(("unencrypted_regex", Selector::UnencryptedRegex(r)));
        }
        if let Some(s) = set(&self.encrypted_regex) {
            let r = Selector::regex(&s).map_err(|e| ("encrypted_regex", e))?;
            found.push(("encrypted_regex", Selector::EncryptedRegex(r)));
        }
        match found.len() {
            0 => Ok(Selector::All),
            1 => Ok(found.remove(0).1),
            _ => Err((
                found[1].0,
                format!(
                    "only one key selector may be set, found {}",
                    found.iter().map(|f| f.0).collect::<Vec<_>>().join(" and ")
                ),
            )),
        }
    }

    /// Whether the MAC covers only the encrypted values.
    pub fn mac_only_encrypted(&self) -> bool {
        self.mac_only_encrypted.unwrap_or(false)
    }
}

/// Checks what can be checked without a key: recipients, stanzas, MAC syntax, timestamp,
/// selectors. Returns each problem as (field under `sops`, message).
pub fn check_metadata(m: &SopsMetadata) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if m.key_groups.as_ref().is_some_and(|g| !g.is_empty()) || m.shamir_threshold.is_some() {
        out.push((
            "key_groups".into(),
            "key groups (Shamir secret sharing) are not supported; encrypt to age recipients"
                .into(),
        ));
    }
    if m.age.is_empty() {
        out.push((
            "age".into(),
            "no age recipient: kommit decrypts with the cluster's age identity (`kommit secrets key`)"
                .into(),
        ));
    }
    if m.age.len() > MAX_RECIPIENTS {
        out.push((
            "age".into(),
            format!("more than {MAX_RECIPIENTS} age recipients"),
        ));
    }
    for (i, k) in m.age.iter().enumerate().take(MAX_RECIPIENTS) {
        if let Err(e) = check_recipient(&k.recipient) {
            out.push((format!("age/{i}/recipient"), e));
        }
        if let Err(e) = check_stanza(&k.enc) {
            out.push((format!("age/{i}/enc"), e));
        }
    }
    if let Err(e) = mac_aad(&m.lastmodified) {
        out.push(("lastmodified".into(), e));
    }
    match EncValue::parse(&m.mac) {
        Ok(v) if v.kind != ValueType::Str => {
            out.push(("mac".into(), "the MAC must be of type str".into()))
        }
        Ok(_) => {}
        Err(e) => out.push(("mac".into(), format!("not a SOPS MAC: {e}"))),
    }
    if let Err((field, e)) = m.selector() {
        out.push((field.into(), e));
    }
    out
}

/// Checks an age recipient: `age1` and a valid bech32 X25519 key.
pub fn check_recipient(r: &str) -> Result<(), String> {
    let shown: String = r.chars().take(80).collect();
    let (hrp, data) =
        bech32::decode(r).map_err(|e| format!("`{shown}` is not an age recipient: {e}"))?;
    if hrp.as_str() != "age" || r.starts_with("AGE") {
        return Err(format!(
            "`{shown}` is not an age X25519 recipient (age1...)"
        ));
    }
    if data.len() != 32 {
        return Err(format!(
            "`{shown}` holds {} bytes, not a 32-byte X25519 key",
            data.len()
        ));
    }
    Ok(())
}

/// Checks an armored age stanza's shape and size (not its content: that needs the key).
pub fn check_stanza(enc: &str) -> Result<(), String> {
    if enc.len() > MAX_STANZA_BYTES {
        return Err(format!("is larger than {MAX_STANZA_BYTES} bytes"));
    }
    let t = enc.trim();
    if !t.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
        || !t.ends_with("-----END AGE ENCRYPTED FILE-----")
    {
        return Err("is not an ASCII-armored age file (-----BEGIN AGE ENCRYPTED FILE-----)".into());
    }
    Ok(())
}

/// One problem a value check finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueProblem {
    /// The JSON pointer of the value.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// Walks a document (without its `sops` key) and checks that every value the selector
/// encrypts is an `ENC[...]` value (or empty or null, which SOPS leaves as they are). Calls
/// `visit` with the pointer and parsed value of each encrypted value found.
pub fn check_values(
    doc: &serde_json::Value,
    selector: &Selector,
    visit: &mut dyn FnMut(&str, &EncValue),
) -> Vec<ValueProblem> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    let mut pointer = String::new();
    walk_json(doc, selector, &mut path, &mut pointer, visit, &mut out);
    out
}

fn walk_json(
    v: &serde_json::Value,
    sel: &Selector,
    path: &mut Vec<String>,
    pointer: &mut String,
    visit: &mut dyn FnMut(&str, &EncValue),
    out: &mut Vec<ValueProblem>,
) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&crate::yaml::escape_segment(k));
                path.push(k.clone());
                walk_json(child, sel, path, pointer, visit, out);
                path.pop();
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk_json(child, sel, path, pointer, visit, out);
                pointer.truncate(len);
            }
        }
        Value::Null => {}
        leaf => {
            if !sel.encrypts(path) {
                return;
            }
            match leaf {
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => match EncValue::parse(s) {
                    Ok(e) => visit(pointer, &e),
                    Err(e) => out.push(ValueProblem {
                        pointer: pointer.clone(),
                        message: format!("value should be encrypted by SOPS but is not: {e}"),
                    }),
                },
                _ => out.push(ValueProblem {
                    pointer: pointer.clone(),
                    message: "value should be encrypted by SOPS but is in clear".into(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1se5ghfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569";

    #[test]
    fn recipients() {
        assert_eq!(check_recipient(RECIPIENT), Ok(()));
        let typo = RECIPIENT.replace("se5g", "se5h");
        assert!(check_recipient(&typo)
            .unwrap_err()
            .contains("not an age recipient"));
        assert!(check_recipient("age1").is_err());
        assert!(check_recipient("").is_err());
    }

    #[test]
    fn selectors_follow_sops() {
        let m = |f: &dyn Fn(&mut SopsMetadata)| {
            let mut md = SopsMetadata::default();
            f(&mut md);
            md.selector().unwrap()
        };
        let all = m(&|_| {});
        assert!(all.encrypts(&["a", "b"]));
        let unenc = m(&|md| md.unencrypted_suffix = Some("_unencrypted".into()));
        assert!(!unenc.encrypts(&["a_unencrypted", "b"]));
        assert!(unenc.encrypts(&["a", "b"]));
        let enc = m(&|md| md.encrypted_suffix = Some("_enc".into()));
        assert!(enc.encrypts(&["x", "a_enc"]));
        assert!(!enc.encrypts(&["x"]));
        let re = m(&|md| md.encrypted_regex = Some("^(data|stringData)$".into()));
        assert!(re.encrypts(&["data", "password"]));
        assert!(!re.encrypts(&["metadata", "name"]));
        let unre = m(&|md| md.unencrypted_regex = Some("^meta".into()));
        assert!(!unre.encrypts(&["metadata", "name"]));
        // An empty selector is unset, as in SOPS.
        assert!(m(&|md| md.encrypted_suffix = Some(String::new())).encrypts(&["a"]));
        let two = SopsMetadata {
            encrypted_regex: Some("a".into()),
            unencrypted_suffix: Some("b".into()),
            ..Default::default()
        };
        assert!(two
            .selector()
            .unwrap_err()
            .1
            .contains("only one key selector"));
        let bad = SopsMetadata {
            encrypted_regex: Some("(".into()),
            ..Default::default()
        };
        assert_eq!(bad.selector().unwrap_err().0, "encrypted_regex");
    }
}
