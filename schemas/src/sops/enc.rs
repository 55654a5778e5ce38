//! The `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]` value syntax.

use base64::Engine;
use std::fmt;

/// SOPS's AES-GCM nonce length in bytes (it uses 32, not GCM's usual 12).
pub const IV_LEN: usize = 32;
/// The GCM tag length in bytes.
pub const TAG_LEN: usize = 16;

/// What an encrypted value decrypts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// A string.
    Str,
    /// An integer.
    Int,
    /// A float.
    Float,
    /// `True` or `False`.
    Bool,
    /// Raw bytes.
    Bytes,
    /// A comment (SOPS encrypts YAML comments; kommit does not read them).
    Comment,
}

impl ValueType {
    /// The name SOPS writes after `type:`.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Str => "str",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Bytes => "bytes",
            ValueType::Comment => "comment",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "str" => ValueType::Str,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "bool" => ValueType::Bool,
            "bytes" => ValueType::Bytes,
            "comment" => ValueType::Comment,
            _ => return None,
        })
    }
}

/// One encrypted value, decoded from its text form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncValue {
    /// The ciphertext (same length as the plaintext).
    pub data: Vec<u8>,
    /// The nonce.
    pub iv: [u8; IV_LEN],
    /// The GCM tag.
    pub tag: [u8; TAG_LEN],
    /// What the plaintext is.
    pub kind: ValueType,
}

/// Why a string is not an encrypted value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncError {
    /// Not of the form `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]`.
    #[error("expected ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]")]
    Syntax,
    /// A field is not base64.
    #[error("`{0}` is not valid base64")]
    Base64(&'static str),
    /// The nonce or tag has the wrong length.
    #[error("`{field}` is {len} bytes, expected {want}")]
    Length {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length SOPS writes.
        want: usize,
    },
    /// An unknown `type:`.
    #[error("unknown value type `{0}`")]
    Type(String),
}

impl EncValue {
    /// Whether a string looks like an encrypted value (it may still be malformed).
    pub fn looks_encrypted(s: &str) -> bool {
        s.starts_with("ENC[")
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Self, EncError> {
        let inner = s
            .strip_prefix("ENC[AES256_GCM,")
            .and_then(|r| r.strip_suffix(']'))
            .ok_or(EncError::Syntax)?;
        let mut fields = inner.split(',');
        let mut next = |name: &str| -> Result<&str, EncError> {
            fields
                .next()
                .and_then(|f| f.strip_prefix(name))
                .and_then(|f| f.strip_prefix(':'))
                .ok_or(EncError::Syntax)
        };
        let (data, iv, tag, kind) = (next("data")?, next("iv")?, next("tag")?, next("type")?);
        if fields.next().is_some() || data.is_empty() {
            return Err(EncError::Syntax);
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let data = b64.decode(data).map_err(|_| EncError::Base64("data"))?;
        let iv = b64.decode(iv).map_err(|_| EncError::Base64("iv"))?;
        let tag = b64.decode(tag).map_err(|_| EncError::Base64("tag"))?;
        let kind = ValueType::from_name(kind)
            .ok_or_else(|| EncError::Type(kind.chars().take(20).collect()))?;
        let len = |field, v: &Vec<u8>, want| EncError::Length {
            field,
            len: v.len(),
            want,
        };
        Ok(EncValue {
            iv: iv
                .as_slice()
                .try_into()
                .map_err(|_| len("iv", &iv, IV_LEN))?,
            tag: tag
                .as_slice()
                .try_into()
                .map_err(|_| len("tag", &tag, TAG_LEN))?,
            data,
            kind,
        })
    }
}

impl fmt::Display for EncValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b64 = base64::engine::general_purpose::STANDARD;
        write!(
            f,
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
            b64.encode(&self.data),
            b64.encode(self.iv),
            b64.encode(self.tag),
            self.kind.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "ENC[AES256_GCM,data:63NN,iv:tMGNl1clK1rQt7oy2huw+YJ+361iSpV2F4zT07ZPZAk=,tag:MPkuD6FNDqlr+2nuu/b61g==,type:str]";

    #[test]
    fn parses_and_prints_the_same_text() {
        let v = EncValue::parse(GOOD).unwrap();
        assert_eq!(v.data.len(), 3);
        assert_eq!(v.kind, ValueType::Str);
        assert_eq!(v.to_string(), GOOD);
    }

    #[test]
    fn refuses_malformed_values() {
        for (text, want) in [
            ("hello", EncError::Syntax),
            (
                "ENC[AES256_GCM,data:,iv:AA==,tag:AA==,type:str]",
                EncError::Syntax,
            ),
            (
                "ENC[AES256_GCM,iv:AA==,data:AA==,tag:AA==,type:str]",
                EncError::Syntax,
            ),
            (
                "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str,x:1]",
                EncError::Syntax,
            ),
            (
                "ENC[AES256_GCM,data:A!==,iv:AA==,tag:AA==,type:str]",
                EncError::Base64("data"),
            ),
            (
                "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]",
                EncError::Length {
                    field: "iv",
                    len: 1,
                    want: 32,
                },
            ),
        ] {
            assert_eq!(EncValue::parse(text), Err(want), "{text}");
        }
        let bad_type = GOOD.replace("type:str", "type:map");
        assert_eq!(
            EncValue::parse(&bad_type),
            Err(EncError::Type("map".into()))
        );
    }
}
