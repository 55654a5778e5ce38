//! `encrypt` writes what `decrypt` (and so SOPS) reads: the corpus plaintexts and a Secret
//! round-trip through YAML text, and Debian's `age` opens the data key stanza written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_schemas::tree::{to_yaml, Tree};
use kommit_schemas::yaml::{parse_trees, YamlBudget};
use kommit_sops::{
    decrypt, encrypt, parse_identities, parse_recipient, wrap_data_key, EncryptOptions,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const TEST_RECIPIENT: &str = "age1se5ghfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569";
const NOW: i64 = 1_764_000_000;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn one(text: &str) -> Tree {
    let mut docs = parse_trees(text, &YamlBudget::default()).unwrap();
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

fn seal(doc: Tree, options: &EncryptOptions, key: [u8; 32], seed: u64) -> String {
    let stanza = wrap_data_key(&key, &parse_recipient(TEST_RECIPIENT).unwrap()).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let tree = encrypt(doc, options, &key, vec![stanza], NOW, &mut rng).unwrap();
    to_yaml(&tree).unwrap()
}

#[test]
fn corpus_plaintexts_round_trip() {
    let ids = parse_identities(&data("test-age-key.txt")).unwrap();
    let cases = [
        ("age_example", EncryptOptions::default()),
        (
            "age_encrypted_regex",
            EncryptOptions {
                encrypted_regex: Some("^encrypted".into()),
                ..Default::default()
            },
        ),
        (
            "age_unencrypted_suffix",
            EncryptOptions {
                unencrypted_suffix: Some("unencrypted".into()),
                ..Default::default()
            },
        ),
        (
            "age_mac_only_encrypted",
            EncryptOptions {
                unencrypted_suffix: Some("_unencrypted".into()),
                mac_only_encrypted: true,
                ..Default::default()
            },
        ),
    ];
    for (i, (case, options)) in cases.iter().enumerate() {
        let plain = one(&data(&format!("{case}_plaintext.yaml")));
        let text = seal(plain.clone(), options, [i as u8 + 1; 32], i as u64);
        let back = decrypt(&text, &ids).unwrap_or_else(|e| panic!("{case}: {e}\n{text}"));
        assert_eq!(back.tree, plain, "{case}\n{text}");
        let sops = one(&text).get("sops").cloned().unwrap();
        assert_eq!(
            sops.get("lastmodified"),
            Some(&Tree::Str("2025-11-24T16:00:00Z".into()))
        );
        assert_eq!(sops.get("version"), Some(&Tree::Str("3.9.4".into())));
        // The values the reference file encrypts, this one encrypts too.
        let reference = data(&format!("{case}.yaml"));
        assert_eq!(
            text.matches("ENC[AES256_GCM").count(),
            reference.matches("ENC[AES256_GCM").count(),
            "{case}\n{text}"
        );
    }
}

#[test]
fn a_secret_keeps_its_metadata_in_clear() {
    let ids = parse_identities(&data("test-age-key.txt")).unwrap();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels:\n    app: web\ntype: Opaque\ndata:\n  password: aHVudGVyMg==\nstringData:\n  user: admin\n  empty: \"\"\n";
    let options = EncryptOptions {
        encrypted_regex: Some("^(data|stringData)$".into()),
        ..Default::default()
    };
    let text = seal(one(secret), &options, [42; 32], 7);
    assert!(
        text.starts_with("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"),
        "{text}"
    );
    assert!(
        !text.contains("aHVudGVyMg") && !text.contains("admin"),
        "{text}"
    );
    assert!(
        text.contains("  empty: ''") || text.contains("  empty: \"\""),
        "{text}"
    );
    assert_eq!(decrypt(&text, &ids).unwrap().tree, one(secret));
    // Same seed, same key, same time: the same bytes (no hidden randomness in the values).
    let stanza_free = |t: &str| t.split("sops:").next().unwrap().to_owned();
    assert_eq!(
        stanza_free(&text),
        stanza_free(&seal(one(secret), &options, [42; 32], 7))
    );
}

#[test]
fn debian_age_opens_the_data_key_stanza() {
    let Ok(out) = std::process::Command::new("age").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "Debian's `age` is missing: .ci/run installs it"
        );
        eprintln!("skipped: `age` is not installed (apt-get install age)");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, data("test-age-key.txt")).unwrap();
    let key = [0x5a; 32];
    let text = seal(one("a: b\n"), &EncryptOptions::default(), key, 1);
    let enc = parse_trees(&text, &YamlBudget::default()).unwrap()[0]
        .get("sops")
        .and_then(|s| s.get("age"))
        .and_then(|a| match a {
            Tree::Seq(items) => items
                .first()
                .and_then(|s| s.get("enc"))
                .and_then(Tree::as_str)
                .map(str::to_owned),
            _ => None,
        })
        .unwrap();
    let stanza = dir.path().join("stanza.age");
    std::fs::write(&stanza, enc).unwrap();
    let out = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(&stanza)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, key);
}
