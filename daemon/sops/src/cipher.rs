//! One value: AES-256-GCM with SOPS's 32-byte nonce, the value's key path as additional
//! data, and the value's type.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use kommit_schemas::sops::{EncValue, ValueType, IV_LEN};
use kommit_schemas::tree::Tree;

type SopsGcm = AesGcm<Aes256, U32>;

/// What SOPS feeds its MAC first when `mac_only_encrypted` is set, so the two settings never
/// give the same digest: SHA-256 of `sops` (its `MACOnlyEncryptedInitialization`).
pub fn mac_only_encrypted_seed() -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b"sops").into()
}

/// Decrypts one value's bytes, or says the tag does not match (wrong key, wrong path,
/// tampered data, nonce or tag).
pub fn open(v: &EncValue, key: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, String> {
    let cipher = SopsGcm::new(GenericArray::from_slice(key));
    let mut buf = v.data.clone();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(&v.iv),
            aad,
            &mut buf,
            GenericArray::from_slice(&v.tag),
        )
        .map_err(|_| {
            "cannot be decrypted: its tag does not match (tampered, moved or another data key)"
                .to_owned()
        })?;
    Ok(buf)
}

/// Encrypts one value's bytes under a nonce the caller chose at random.
pub fn seal(
    plaintext: &[u8],
    kind: ValueType,
    key: &[u8; 32],
    iv: [u8; IV_LEN],
    aad: &[u8],
) -> EncValue {
    let cipher = SopsGcm::new(GenericArray::from_slice(key));
    let mut data = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(&iv), aad, &mut data)
        .expect("AES-GCM encrypts any value shorter than 64 GiB");
    EncValue {
        data,
        iv,
        tag: tag.into(),
        kind,
    }
}

/// The bytes SOPS hashes and encrypts for a scalar (Go's `ToBytes`), and its type; `None`
/// for null and collections, which SOPS neither hashes nor encrypts.
pub fn plaintext(v: &Tree) -> Option<(Vec<u8>, ValueType)> {
    Some(match v {
        Tree::Str(s) => (s.as_bytes().to_vec(), ValueType::Str),
        Tree::Int(i) => (i.to_string().into_bytes(), ValueType::Int),
        Tree::UInt(u) => (u.to_string().into_bytes(), ValueType::Int),
        // Rust's shortest round-trip form is Go's FormatFloat(f, 'f', -1, 64).
        Tree::Float(f) => (format!("{f}").into_bytes(), ValueType::Float),
        Tree::Bool(b) => (
            if *b { "True" } else { "False" }.as_bytes().to_vec(),
            ValueType::Bool,
        ),
        Tree::Null | Tree::Seq(_) | Tree::Map(_) => return None,
    })
}

/// A decrypted value as its type says (Go's `strconv` parsers).
pub fn typed(bytes: Vec<u8>, kind: ValueType) -> Result<Tree, String> {
    let text = String::from_utf8(bytes).map_err(|_| match kind {
        ValueType::Bytes => "binary values are not supported".to_owned(),
        _ => "decrypts to bytes that are not UTF-8".to_owned(),
    })?;
    Ok(match kind {
        ValueType::Str | ValueType::Bytes => Tree::Str(text),
        ValueType::Int => Tree::Int(
            text.parse()
                .map_err(|_| format!("type int, but decrypts to `{}`", shown(&text)))?,
        ),
        ValueType::Float => Tree::Float(
            text.parse()
                .map_err(|_| format!("type float, but decrypts to `{}`", shown(&text)))?,
        ),
        ValueType::Bool => Tree::Bool(match text.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => return Err(format!("type bool, but decrypts to `{}`", shown(&text))),
        }),
        ValueType::Comment => return Err("a comment where a value belongs".into()),
    })
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open() {
        let key = [7u8; 32];
        let v = seal(
            b"hunter2",
            ValueType::Str,
            &key,
            [1; IV_LEN],
            b"data:password:",
        );
        assert_eq!(open(&v, &key, b"data:password:").unwrap(), b"hunter2");
        assert!(open(&v, &key, b"data:other:").is_err());
        assert!(open(&v, &[8u8; 32], b"data:password:").is_err());
        let text = v.to_string();
        assert_eq!(EncValue::parse(&text).unwrap(), v);
    }

    #[test]
    fn scalars_as_go_writes_them() {
        for (tree, bytes, kind) in [
            (Tree::Float(1234.56789), "1234.56789", ValueType::Float),
            (Tree::Float(1.0), "1", ValueType::Float),
            (
                Tree::Float(1e21),
                "1000000000000000000000",
                ValueType::Float,
            ),
            (Tree::Int(-5), "-5", ValueType::Int),
            (Tree::Bool(false), "False", ValueType::Bool),
        ] {
            let (b, k) = plaintext(&tree).unwrap();
            assert_eq!(
                (String::from_utf8(b.clone()).unwrap().as_str(), k),
                (bytes, kind)
            );
            assert_eq!(typed(b, k).unwrap(), tree);
        }
        assert!(plaintext(&Tree::Null).is_none());
        assert!(typed(b"yes".to_vec(), ValueType::Bool).is_err());
        assert!(typed(vec![0xff], ValueType::Str).is_err());
    }
}
