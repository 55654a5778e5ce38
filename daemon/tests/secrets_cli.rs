//! `kommit secrets` and `kommit validate` on encrypted Secrets, as a user runs them:
//! encrypt to a recipient, validate the repository without a key, decrypt with the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const TEST_RECIPIENT: &str = "age1se5ghfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569";

fn kommit(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kommit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn test_key() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sops/tests/data/test-age-key.txt")
        .to_str()
        .unwrap()
        .to_owned()
}

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  password: hunter2\n  user: admin\n";

#[test]
fn encrypt_validate_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let plain = root.join("plain.yaml");
    std::fs::write(&plain, SECRET).unwrap();
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let enc = repo.join("db-secret.yaml");
    let nowhere = root.join("no-data-dir");
    let (code, out, err) = kommit(&[
        "secrets",
        "encrypt",
        plain.to_str().unwrap(),
        "-r",
        TEST_RECIPIENT,
        "--data-dir",
        nowhere.to_str().unwrap(),
        "-o",
        enc.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&enc).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("admin"),
        "{text}"
    );
    assert!(
        text.contains("name: db") && text.contains("ENC[AES256_GCM,"),
        "{text}"
    );

    // CI has no key: the encrypted Secret is a valid Secret, with no warning.
    let (code, out, _) = kommit(&["validate", repo.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (0, "ok: 1 object in 1 file is valid\n")
    );

    // The key holder reads it back.
    let (code, out, err) = kommit(&[
        "secrets",
        "decrypt",
        enc.to_str().unwrap(),
        "-i",
        &test_key(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, SECRET);

    // A changed value fails with one line naming it.
    let at = text.find("ENC[AES256_GCM,data:").unwrap() + "ENC[AES256_GCM,data:".len();
    let mut tampered = text.clone().into_bytes();
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let bad = root.join("bad.yaml");
    std::fs::write(&bad, tampered).unwrap();
    let (code, _, err) = kommit(&[
        "secrets",
        "decrypt",
        bad.to_str().unwrap(),
        "-i",
        &test_key(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("stringData.password: cannot be decrypted"),
        "{err}"
    );
}

#[test]
fn a_secret_in_clear_warns_and_the_policy_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("s.yaml"), SECRET).unwrap();
    let (code, out, _) = kommit(&["validate", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "s.yaml:1:1: warning: Secret default/db is committed in clear: anyone who can clone the repository reads it; encrypt it with `kommit secrets encrypt` (SOPS, age)\nok: 1 object in 1 file is valid\n"
    );
    std::fs::write(
        root.join("kommit.yaml"),
        "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  requireEncryptedSecrets: true\n",
    )
    .unwrap();
    let (code, out, _) = kommit(&["validate", root.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("requireEncryptedSecrets: true"), "{out}");
}

#[test]
fn the_cluster_key_is_a_default_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = kommit(&["secrets", "key", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("no cluster age keyring"), "{err}");
    let recipient = kommit_daemon::cluster_key::ensure(&data, "2025-11-24T16:00:00Z").unwrap();
    // Made once, kept 0600.
    let key = kommit_daemon::cluster_key::path(&data);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        kommit_daemon::cluster_key::ensure(&data, "later").unwrap(),
        recipient
    );
    let (code, out, _) = kommit(&["secrets", "key", "--data-dir", data.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (0, recipient.as_str()));
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, SECRET).unwrap();
    let (code, out, err) = kommit(&[
        "secrets",
        "encrypt",
        plain.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "-r",
        TEST_RECIPIENT,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&recipient) && out.contains(TEST_RECIPIENT),
        "{out}"
    );
    // The cluster's identity file opens it.
    let enc = dir.path().join("enc.yaml");
    std::fs::write(&enc, &out).unwrap();
    let (code, out, err) = kommit(&[
        "secrets",
        "decrypt",
        enc.to_str().unwrap(),
        "-i",
        key.to_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (0, SECRET), "{err}");
    // Without any recipient, encrypt says what to give.
    let nowhere = dir.path().join("none");
    let (code, _, err) = kommit(&[
        "secrets",
        "encrypt",
        plain.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no recipient"), "{err}");
}
