//! age: the identities that open a file's data key, and wrapping a data key to recipients.

use crate::{one_line, Error};
/// An age X25519 identity (re-exported: what the agent decrypts with).
pub use age::x25519::Identity;
use age::x25519::Recipient;
use kommit_schemas::sops::{check_stanza, AgeKey, MAX_RECIPIENTS};
use std::io::{Read, Write};
use std::str::FromStr;

/// A file's 32-byte AES-256 data key.
pub type DataKey = [u8; 32];

/// Most identities read from one identity file.
pub const MAX_IDENTITIES: usize = 64;

/// Reads an age identity file: `AGE-SECRET-KEY-1...` lines, `#` comments and blank lines.
pub fn parse_identities(text: &str) -> Result<Vec<Identity>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() == MAX_IDENTITIES {
            return Err(Error::Key(format!(
                "more than {MAX_IDENTITIES} identities in the identity file"
            )));
        }
        // The key itself never appears in the message.
        let id = Identity::from_str(line).map_err(|_| {
            Error::Key(format!(
                "identity file line {}: not an age X25519 identity (AGE-SECRET-KEY-1...)",
                i + 1
            ))
        })?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(Error::Key("the identity file holds no age identity".into()));
    }
    Ok(out)
}

/// Parses a recipient (`age1...`).
pub fn parse_recipient(s: &str) -> Result<Recipient, Error> {
    Recipient::from_str(s.trim()).map_err(|e| {
        let shown: String = s.chars().take(80).collect();
        Error::Key(format!(
            "`{shown}` is not an age X25519 recipient: {}",
            one_line(e)
        ))
    })
}

/// Opens the data key with the first stanza one of `identities` can decrypt.
pub fn unwrap_data_key(stanzas: &[AgeKey], identities: &[Identity]) -> Result<DataKey, Error> {
    let mut first_error = None;
    for (i, stanza) in stanzas.iter().enumerate().take(MAX_RECIPIENTS) {
        let field = || format!("age[{i}].enc");
        check_stanza(&stanza.enc).map_err(|message| Error::Metadata {
            field: field(),
            message,
        })?;
        match open_stanza(&stanza.enc, identities) {
            Ok(key) => return Ok(key),
            Err(None) => {}
            Err(Some(message)) => {
                first_error.get_or_insert(Error::Metadata {
                    field: field(),
                    message,
                });
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        let names: Vec<_> = stanzas.iter().map(|s| s.recipient.as_str()).collect();
        Error::NoMatchingIdentity(names.join(", "))
    }))
}

/// `Err(None)` when no identity matches, `Err(Some(why))` when the stanza is broken.
fn open_stanza(enc: &str, identities: &[Identity]) -> Result<DataKey, Option<String>> {
    let reader = age::armor::ArmoredReader::new(enc.as_bytes());
    let decryptor = age::Decryptor::new(reader)
        .map_err(|e| Some(format!("not a valid age file: {}", one_line(e))))?;
    let ids = identities.iter().map(|i| i as &dyn age::Identity);
    let mut stream = match decryptor.decrypt(ids) {
        Ok(s) => s,
        Err(age::DecryptError::NoMatchingKeys) => return Err(None),
        Err(e) => return Err(Some(format!("cannot be decrypted: {}", one_line(e)))),
    };
    let mut key = Vec::with_capacity(33);
    (&mut stream)
        .take(33)
        .read_to_end(&mut key)
        .map_err(|e| Some(format!("cannot be decrypted: {}", one_line(e))))?;
    key.as_slice()
        .try_into()
        .map_err(|_| Some(format!("holds {} bytes, not a 32-byte data key", key.len())))
}

/// Encrypts the data key to one recipient as SOPS stores it: an ASCII-armored age file.
/// age draws the file key and the ephemeral X25519 key from the OS's randomness itself.
pub fn wrap_data_key(key: &DataKey, recipient: &Recipient) -> Result<AgeKey, Error> {
    let io = |e: std::io::Error| Error::Key(format!("age encryption failed: {e}"));
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| Error::Key(format!("age encryption failed: {}", one_line(e))))?;
    let armor = age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor)
        .map_err(io)?;
    let mut w = encryptor.wrap_output(armor).map_err(io)?;
    w.write_all(key).map_err(io)?;
    let bytes = w.finish().and_then(|a| a.finish()).map_err(io)?;
    let enc = String::from_utf8(bytes).map_err(|_| Error::Key("age armor is not UTF-8".into()))?;
    Ok(AgeKey {
        recipient: recipient.to_string(),
        enc,
    })
}

/// A new age identity as `age-keygen` writes it (`# created:`, `# public key:`, the
/// secret key), and its recipient. age draws the key from the OS's randomness.
pub fn new_identity_file(created: &str) -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        id.to_string().expose_secret()
    );
    (text, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap() {
        let id = Identity::generate();
        let other = Identity::generate();
        let key = [9u8; 32];
        let stanza = wrap_data_key(&key, &id.to_public()).unwrap();
        assert!(stanza
            .enc
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert_eq!(
            unwrap_data_key(std::slice::from_ref(&stanza), &[id]).unwrap(),
            key
        );
        let err = unwrap_data_key(&[stanza], &[other]).unwrap_err();
        assert!(matches!(err, Error::NoMatchingIdentity(_)), "{err}");
    }

    #[test]
    fn new_identity_files_read_back() {
        let (text, recipient) = new_identity_file("2025-11-24T16:00:00Z");
        let ids = parse_identities(&text).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].to_public().to_string(), recipient);
        assert!(text.starts_with("# created: 2025-11-24T16:00:00Z\n# public key: age1"));
    }

    #[test]
    fn identity_files() {
        let id = Identity::generate();
        use age::secrecy::ExposeSecret;
        let text = format!(
            "# created: now\n# public key: {}\n\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        );
        assert_eq!(parse_identities(&text).unwrap().len(), 1);
        let Err(err) = parse_identities("AGE-SECRET-KEY-1NOPE\n") else {
            panic!("a bad identity was read");
        };
        let err = err.to_string();
        assert!(err.contains("line 1") && !err.contains("NOPE"), "{err}");
        assert!(parse_identities("# nothing\n").is_err());
    }
}
