//! The SOPS reference files (`tests/data`, see SOURCES.md there): each decrypts with the test
//! key to exactly its plaintext twin, and any flipped byte of a value, nonce, tag, the MAC,
//! its timestamp or the encrypted data key fails with one line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_schemas::tree::Tree;
use kommit_schemas::yaml::{parse_trees, YamlBudget};
use kommit_sops::{decrypt, parse_identities, Error};

const CASES: &[&str] = &[
    "age_example",
    "age_encrypted_regex",
    "age_unencrypted_suffix",
    "age_mac_only_encrypted",
];

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn identities() -> Vec<age::x25519::Identity> {
    parse_identities(&data("test-age-key.txt")).unwrap()
}

fn plaintext(case: &str) -> Tree {
    let mut docs = parse_trees(
        &data(&format!("{case}_plaintext.yaml")),
        &YamlBudget::default(),
    )
    .unwrap();
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

#[test]
fn reference_files_decrypt_to_their_twins() {
    let ids = identities();
    for case in CASES {
        let got =
            decrypt(&data(&format!("{case}.yaml")), &ids).unwrap_or_else(|e| panic!("{case}: {e}"));
        let want = plaintext(case);
        // Same values, and the same key order.
        assert_eq!(got.tree, want, "{case}");
        assert_eq!(
            got.tree.to_json().unwrap(),
            want.to_json().unwrap(),
            "{case}"
        );
    }
}

/// One edit of a file and what it must break.
struct Site {
    what: String,
    text: String,
}

/// Flips the first character of `s[at..]` to another base64 character.
fn flip(s: &str, at: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Every place a byte can be flipped: each value's data, iv and tag (the MAC's too), the
/// MAC's timestamp, and each line of the armored data key.
fn sites(text: &str) -> Vec<Site> {
    let mut out = Vec::new();
    for field in ["data:", "iv:", "tag:"] {
        for (i, _) in text.match_indices(field) {
            let at = i + field.len();
            let line = text[..i].lines().count();
            out.push(Site {
                what: format!("{field} on line {line}"),
                text: flip(text, at),
            });
        }
    }
    let lm = text.find("lastmodified: ").unwrap() + "lastmodified: ".len();
    let mut b = text.as_bytes().to_vec();
    b[lm + 3] = if b[lm + 3] == b'9' { b'8' } else { b'9' };
    out.push(Site {
        what: "lastmodified".into(),
        text: String::from_utf8(b).unwrap(),
    });
    let begin = text.find("-----BEGIN AGE ENCRYPTED FILE-----").unwrap();
    let end = text.find("-----END AGE ENCRYPTED FILE-----").unwrap();
    let mut pos = begin + text[begin..].find('\n').unwrap() + 1;
    let mut n = 0;
    while pos < end {
        let indent = text[pos..].len() - text[pos..].trim_start().len();
        n += 1;
        out.push(Site {
            what: format!("age stanza line {n}"),
            text: flip(text, pos + indent),
        });
        pos += text[pos..].find('\n').unwrap() + 1;
    }
    out
}

#[test]
fn a_flipped_byte_anywhere_fails_with_one_line() {
    let ids = identities();
    let mut checked = 0;
    for case in CASES {
        let text = data(&format!("{case}.yaml"));
        let sites = sites(&text);
        assert!(sites.len() >= 8, "{case}: only {} sites", sites.len());
        for site in sites {
            assert_ne!(site.text, text);
            let err = match decrypt(&site.text, &ids) {
                Ok(_) => panic!("{case}: a flipped byte in {} was not noticed", site.what),
                Err(e) => e.to_string(),
            };
            assert!(
                !err.is_empty() && !err.contains('\n'),
                "{case}: {}: {err:?}",
                site.what
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
}

#[test]
fn the_mac_covers_values_in_clear_unless_mac_only_encrypted() {
    let ids = identities();
    for (case, clear, changed) in [
        (
            "age_encrypted_regex",
            "  not_encrypted: aaa",
            "  not_encrypted: aab",
        ),
        ("age_unencrypted_suffix", "    - 456", "    - 457"),
        (
            "age_mac_only_encrypted",
            "d_unencrypted: aaa",
            "d_unencrypted: aab",
        ),
    ] {
        let text = data(&format!("{case}.yaml"));
        assert!(text.contains(clear), "{case}");
        let result = decrypt(&text.replacen(clear, changed, 1), &ids);
        if case == "age_mac_only_encrypted" {
            // What SOPS does: values in clear are outside the MAC.
            assert!(result.is_ok(), "{case}");
        } else {
            assert!(
                matches!(result, Err(Error::MacMismatch)),
                "{case}: {result:?}"
            );
        }
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let ids = identities();
    let text = data("age_example.yaml");
    let cases: Vec<(String, &str)> = vec![
        (
            text.replacen("example_key", "other_key", 1),
            "other_key: cannot be decrypted",
        ),
        (
            text.replacen("type:float", "type:int", 1),
            "example_number: type int",
        ),
        (
            text.replace("mac: ENC", "mac: XENC"),
            "sops.mac: not a SOPS MAC",
        ),
        (
            text.replace(
                "lastmodified: 2023-12-25T10:31:01Z",
                "lastmodified: yesterday",
            ),
            "sops.lastmodified",
        ),
        (
            text.replace("  lastmodified:", "  surprise: 1\n  lastmodified:"),
            "unknown field `surprise`",
        ),
        (text.replace("age1se5", "age1se6"), "sops.age[0].recipient"),
        (
            text.replace("example_key: ENC", "example_key: XENC"),
            "example_key: should be encrypted",
        ),
        (
            format!("{text}---\na: 1\n"),
            "exactly one YAML document, found 2",
        ),
        ("a: 1\n".to_owned(), "no top-level `sops`"),
    ];
    for (input, want) in cases {
        let err = decrypt(&input, &ids).expect_err(want).to_string();
        assert!(err.contains(want), "want {want:?} in {err:?}");
        assert!(!err.contains('\n'), "{err:?}");
    }
    let other = age::x25519::Identity::generate();
    let err = decrypt(&text, &[other]).unwrap_err().to_string();
    assert!(
        err.contains("no age identity given matches") && err.contains("age1se5"),
        "{err}"
    );
}

/// What the desired state carries to a node (the ordered tree, through JSON and even
/// through a `serde_json::Value`, which sorts maps) still decrypts, MAC checked, to the
/// plaintext twin, and the keyring format reads the test key.
#[test]
fn reference_files_decrypt_as_the_desired_state_carries_them() {
    use kommit_schemas::sops::SealedDocument;
    let ring = kommit_sops::Keyring::parse(&data("test-age-key.txt")).unwrap();
    for case in CASES {
        let sealed =
            SealedDocument::parse(&data(&format!("{case}.yaml")), &YamlBudget::default()).unwrap();
        let json: serde_json::Value = serde_json::to_value(&sealed).unwrap();
        let carried: SealedDocument = serde_json::from_value(json).unwrap();
        let got = kommit_sops::decrypt_document(carried.0, &ring.identities())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(got.tree, plaintext(case), "{case}");
    }
}
