//! SOPS-encrypted Secrets through `validate`, without a key: a well-formed one is a valid
//! Secret; each structural problem is one `file:line:col` diagnostic; a Secret in clear is a
//! warning, or an error under `requireEncryptedSecrets: true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_schemas::load::validate_with_warnings;
use kommit_schemas::{Limits, SourceTree};

const RECIPIENT: &str = "age1se5ghfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569";

/// A syntactically valid encrypted value (validation never decrypts).
fn enc(ty: &str) -> String {
    format!(
        "ENC[AES256_GCM,data:aGk=,iv:{}=,tag:{}==,type:{ty}]",
        "A".repeat(43),
        "A".repeat(22)
    )
}

/// An encrypted Secret; `sops:` is line 10, the recipient line 12.
fn secret(data: &str, sops_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n{data}sops:\n  age:\n  - recipient: {RECIPIENT}\n    enc: |\n      -----BEGIN AGE ENCRYPTED FILE-----\n      YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n      -----END AGE ENCRYPTED FILE-----\n  lastmodified: \"2025-11-24T16:00:00Z\"\n  mac: {}\n{sops_extra}  version: 3.9.4\n",
        enc("str")
    )
}

fn data() -> String {
    format!(
        "data:\n  password: {}\nstringData:\n  user: {}\n",
        enc("str"),
        enc("str")
    )
}

const REGEX: &str = "  encrypted_regex: ^(data|stringData)$\n";

fn run(files: &[(&str, String)]) -> (Vec<String>, Vec<String>) {
    let mut t = SourceTree::default();
    for (p, c) in files {
        t.add(*p, c.as_bytes());
    }
    let (result, warnings) = validate_with_warnings(&t, &Limits::default());
    let errors = match result {
        Ok(_) => vec!["(valid)".into()],
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    };
    (errors, warnings.iter().map(|w| w.warning_line()).collect())
}

#[test]
fn an_encrypted_secret_is_a_valid_secret() {
    let (errors, warnings) = run(&[("s.yaml", secret(&data(), REGEX))]);
    assert_eq!(errors, ["(valid)"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    // mac_only_encrypted and an empty value, as SOPS writes them.
    let d = format!(
        "data:\n  password: {}\nstringData:\n  empty: \"\"\n",
        enc("str")
    );
    let (errors, _) = run(&[(
        "s.yaml",
        secret(&d, &format!("{REGEX}  mac_only_encrypted: true\n")),
    )]);
    assert_eq!(errors, ["(valid)"]);
}

#[test]
fn secrets_in_clear_warn_or_fail() {
    let clear =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2\n"
            .to_owned();
    let (errors, warnings) = run(&[("s.yaml", clear.clone())]);
    assert_eq!(errors, ["(valid)"]);
    assert_eq!(warnings, ["s.yaml:1:1: warning: Secret default/db is committed in clear: anyone who can clone the repository reads it; encrypt it with `kommit secrets encrypt` (SOPS, age)"]);
    let config = "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  requireEncryptedSecrets: true\n".to_owned();
    let (errors, _) = run(&[("s.yaml", clear), ("kommit.yaml", config.clone())]);
    assert_eq!(errors, ["s.yaml:1:1: error: Secret default/db is committed in clear: anyone who can clone the repository reads it; encrypt it with `kommit secrets encrypt` (SOPS, age); kommit.yaml sets `requireEncryptedSecrets: true`"]);
    // Encrypted, or without values, it passes the policy.
    let empty = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: e\n".to_owned();
    let (errors, warnings) = run(&[
        ("s.yaml", secret(&data(), REGEX)),
        ("e.yaml", empty),
        ("kommit.yaml", config),
    ]);
    assert_eq!((errors, warnings), (vec!["(valid)".to_owned()], vec![]));
}

/// (what, files, every diagnostic expected in order).
type Case = (&'static str, Vec<(&'static str, String)>, Vec<&'static str>);

#[test]
fn structural_problems_are_pinned() {
    let table: Vec<Case> = vec![
        (
            "a recipient with a typo",
            vec![("s.yaml", secret(&data(), REGEX).replace("age1se5g", "age1se5h"))],
            vec!["s.yaml:12:16: error: `sops.age[0].recipient`: `age1se5hhfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569` is not an age recipient: no valid bech32 or bech32m checksum"],
        ),
        (
            "no MAC",
            vec![("s.yaml", secret(&data(), REGEX).replace(&format!("  mac: {}\n", enc("str")), ""))],
            vec!["s.yaml:11:3: error: `sops.mac` is required"],
        ),
        (
            "a value left in clear",
            vec![("s.yaml", secret("data:\n  password: aHVudGVyMg==\n", REGEX))],
            vec!["s.yaml:7:13: error: `data.password`: value should be encrypted by SOPS but is not: expected ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]"],
        ),
        (
            "an int in data",
            vec![("s.yaml", secret(&format!("data:\n  port: {}\n", enc("int")), REGEX))],
            vec!["s.yaml:7:9: error: `data.port` is encrypted as type int; Secret values are strings"],
        ),
        (
            "the name encrypted",
            vec![("s.yaml", secret(&data(), REGEX).replace("name: db", &format!("name: {}", enc("str"))).replace("^(data|stringData)$", "^(data|stringData|name)$"))],
            vec!["s.yaml:4:9: error: `metadata.name` is SOPS-encrypted; kommit reads a Secret's apiVersion, kind and metadata in clear: encrypt only `data` and `stringData` (`kommit secrets encrypt` does; with sops, `--encrypted-regex '^(data|stringData)$'`)"],
        ),
        (
            "everything encrypted",
            vec![("s.yaml", secret(&data(), "").replace("apiVersion: v1", &format!("apiVersion: {}", enc("str"))).replace("kind: Secret", &format!("kind: {}", enc("str"))))],
            vec!["s.yaml:2:7: error: `kind` and `apiVersion` are SOPS-encrypted; kommit reads a Secret's apiVersion, kind and metadata in clear: encrypt only `data` and `stringData` (`kommit secrets encrypt` does; with sops, `--encrypted-regex '^(data|stringData)$'`)"],
        ),
        (
            "two selectors",
            vec![("s.yaml", secret(&data(), &format!("{REGEX}  unencrypted_suffix: _clear\n")))],
            vec!["s.yaml:19:20: error: `sops.encrypted_regex`: only one key selector may be set, found unencrypted_suffix and encrypted_regex"],
        ),
        (
            "an unknown field in the block",
            vec![("s.yaml", secret(&data(), &format!("{REGEX}  surprise: 1\n")))],
            vec!["s.yaml:20:3: error: `sops.surprise` is not a SOPS field kommit knows (it knows age, lastmodified, mac, unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex, unencrypted_comment_regex, encrypted_comment_regex, mac_only_encrypted, version, kms, gcp_kms, azure_kv, hc_vault, pgp, key_groups, shamir_threshold)"],
        ),
        (
            "a ConfigMap with a sops block",
            vec![("c.yaml", secret(&data(), REGEX).replace("kind: Secret", "kind: ConfigMap").replace("type: Opaque\n", "").replace("stringData:\n", "binaryData:\n"))],
            vec!["c.yaml:9:1: error: `sops` is not supported: only Secrets may be SOPS-encrypted (their `data` and `stringData`); the node agent decrypts Secrets alone"],
        ),
        (
            "another document beside it",
            vec![("s.yaml", format!("{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n", secret(&data(), REGEX)))],
            vec!["s.yaml:10:1: error: a SOPS-encrypted document must be the only document in its file"],
        ),
    ];
    let mut report = String::new();
    for (what, files, want) in table {
        let (errors, _) = run(&files);
        if errors != want {
            report.push_str(&format!("{what}:\n  {}\n", errors.join("\n  ")));
        }
    }
    assert!(report.is_empty(), "{report}");
}
