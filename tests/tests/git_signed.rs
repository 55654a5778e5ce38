//! Signed commits (issue 16): `kommit.yaml` lists `trustedSigningKeys`; with `git commit -S`
//! and `gpg.format=ssh` (keys made by `ssh-keygen`), a head signed by a trusted key is
//! adopted, and an unsigned one, one signed by another key, and one that adds its own key
//! to the list are refused with a note that says why and names the signer. The list that
//! applies is the adopted commit's.

mod git_common;

use git_common::*;
use kommit_daemon::git::heads::{self, Verdict};
use kommit_daemon::git::loader::Limits;
use kommit_daemon::git::note::CommitState;
use kommit_daemon::git::read;
use kommit_daemon::git::time::Timestamp;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A new ed25519 key pair `dir/name` (no passphrase); its public key line.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_string())
}

/// The SHA-256 fingerprint `ssh-keygen -l` prints for a key.
fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .expect("ssh-keygen -l");
    let text = String::from_utf8(out.stdout).expect("utf8");
    text.split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

/// Commits `files` on top of `parent` (signed with `key` if given) and force pushes it.
fn commit(
    f: &Fixture,
    parent: Option<&str>,
    files: &[(&str, &str)],
    key: Option<&Path>,
    message: &str,
) -> String {
    if let Some(p) = parent {
        git(&f.work, &["reset", "-q", "--hard", p]);
    }
    for (path, content) in files {
        let p = f.work.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
    }
    git(&f.work, &["add", "-A"]);
    match key {
        Some(k) => {
            let signing = format!("user.signingkey={}", k.display());
            git(
                &f.work,
                &[
                    "-c",
                    "gpg.format=ssh",
                    "-c",
                    &signing,
                    "commit",
                    "-q",
                    "-S",
                    "--allow-empty",
                    "-m",
                    message,
                ],
            )
        }
        None => git(&f.work, &["commit", "-q", "--allow-empty", "-m", message]),
    };
    git(&f.work, &["push", "-q", "-f", "origin", "main"]);
    f.head()
}

fn kommit_yaml(keys: &[&str]) -> String {
    let mut s = format!("{KOMMIT_YAML}  trustedSigningKeys:\n");
    for k in keys {
        s.push_str(&format!("  - \"{k}\"\n"));
    }
    s
}

#[test]
fn only_heads_signed_by_a_key_the_adopted_commit_trusts_are_adopted() {
    let f = Fixture::new();
    let (alice, alice_pub) = keygen(f.dir.path(), "alice");
    let (mallory, mallory_pub) = keygen(f.dir.path(), "mallory");
    let m = f.mirror(&f.url());
    let limits = Limits::default();
    let at = Timestamp(1_795_303_800);

    // The first commit sets the policy: alice signs.
    let c1 = commit(
        &f,
        None,
        &[
            ("kommit.yaml", &kommit_yaml(&[&alice_pub])),
            ("apps/a.yaml", &config_map("a")),
        ],
        None,
        "policy",
    );
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    let adopted = read::load_commit(&repo, oid(&c1), &limits).expect("valid");
    let trusted = adopted.desired.config.trusted_signing_keys.clone();
    assert_eq!(trusted, vec![alice_pub.clone()]);

    // Signed by alice: adopted.
    let c2 = commit(
        &f,
        None,
        &[("apps/b.yaml", &config_map("b"))],
        Some(&alice),
        "alice",
    );
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    let v = heads::evaluate_signed(
        &repo,
        Some((oid(&c1), false)),
        &trusted,
        oid(&c2),
        &limits,
        at,
    )
    .expect("evaluate");
    assert!(matches!(v, Verdict::Adopt { .. }), "{v:?}");

    // Against c2 (same list): unsigned, another key, and another key that trusts itself.
    let refusal = |head: &str| {
        m.fetch().expect("fetch");
        let repo = m.repo().expect("repo");
        match heads::evaluate_signed(
            &repo,
            Some((oid(&c2), false)),
            &trusted,
            oid(head),
            &limits,
            at,
        )
        .expect("evaluate")
        {
            Verdict::Refuse { note, .. } => {
                assert_eq!(note.state, CommitState::Refused);
                assert_eq!(note.commit, head);
                note.reason.expect("a reason")
            }
            other => panic!("{head}: expected a refusal, got {other:?}"),
        }
    };
    let unsigned = commit(
        &f,
        Some(&c2),
        &[("apps/c.yaml", &config_map("c"))],
        None,
        "u",
    );
    let why = refusal(&unsigned);
    assert!(why.starts_with("unsigned"), "{why}");

    let other = commit(
        &f,
        Some(&c2),
        &[("apps/d.yaml", &config_map("d"))],
        Some(&mallory),
        "mallory",
    );
    let why = refusal(&other);
    let mallory_fp = fingerprint(&mallory);
    assert!(
        why.contains(&mallory_fp) && why.contains("not among the trustedSigningKeys"),
        "{why} (want {mallory_fp})"
    );

    let self_trusting = commit(
        &f,
        Some(&c2),
        &[("kommit.yaml", &kommit_yaml(&[&alice_pub, &mallory_pub]))],
        Some(&mallory),
        "mallory trusts mallory",
    );
    let why = refusal(&self_trusting);
    assert!(why.contains(&mallory_fp), "{why}");
    assert!(!why.contains('\n'), "{why}");

    // Without a list, nothing is required (the default).
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    let v = heads::evaluate_signed(
        &repo,
        Some((oid(&c2), false)),
        &[],
        oid(&unsigned),
        &limits,
        at,
    )
    .expect("evaluate");
    assert!(matches!(v, Verdict::Adopt { .. }), "{v:?}");
}
