//! Signed commits through a real `kommit daemon` (issue 16), as root: the adopted commit
//! trusts alice's SSH key; a head signed by mallory is refused with a note in Git naming
//! mallory's key, the adopted commit stays in force, and alice's signed head is adopted.
//!
//! Skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_tests::agent_support::{git, AgentNode};
use kommit_tests::runtime_support::skip_privileged;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn keygen(dir: &Path, name: &str) -> (PathBuf, String, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .expect("ssh-keygen -l");
    let fp = String::from_utf8(fp.stdout).expect("utf8");
    let fp = fp
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string();
    (key, public.trim().to_string(), fp)
}

/// Commits everything in the work clone, signed with `key`, and pushes it.
fn push_signed(n: &AgentNode, key: &Path, message: &str) -> String {
    git(&n.work, &["add", "--all", "."]);
    let signing = format!("user.signingkey={}", key.display());
    git(
        &n.work,
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signing,
            "commit",
            "--quiet",
            "-S",
            "--allow-empty",
            "-m",
            message,
        ],
    );
    git(&n.work, &["push", "--quiet", "origin", "HEAD:main"]);
    git(&n.work, &["rev-parse", "HEAD"])
}

fn note(origin: &Path, commit: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(origin)
        .args(["notes", "--ref", "kommit", "show", commit])
        .output()
        .expect("git notes");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_daemon_adopts_only_heads_signed_by_a_trusted_key() {
    if skip_privileged("signed commits end to end") {
        return;
    }
    let mut n = AgentNode::new("sign", 217);
    let (alice, alice_pub, _) = keygen(n.dir.path(), "alice");
    let (mallory, _, mallory_fp) = keygen(n.dir.path(), "mallory");
    let cfg = n.work.join("kommit.yaml");
    let mut text = std::fs::read_to_string(&cfg).expect("kommit.yaml");
    text.push_str(&format!("  trustedSigningKeys:\n  - \"{alice_pub}\"\n"));
    std::fs::write(&cfg, text).expect("kommit.yaml");
    // The first commit sets the policy.
    let c1 = n.push("the template, trusting alice");
    n.start();
    n.wait_state(Duration::from_secs(60), "the policy adopted", |s| {
        s.commit.as_deref() == Some(c1.as_str())
    });

    n.write(
        "apps/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {k: v}\n",
    );
    let bad = push_signed(&n, &mallory, "signed by mallory");
    let origin = n.origin.clone();
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(30), || {
            note(&origin, &bad).is_some_and(|t| t.contains("refused") && t.contains(&mallory_fp))
        }),
        "a refused note naming {mallory_fp} on {bad}: {:?}\n{}",
        note(&origin, &bad),
        kommit_tests::agent_support::tail(&n.log(), 40)
    );
    assert_eq!(n.state().commit.as_deref(), Some(c1.as_str()));

    let good = push_signed(&n, &alice, "signed by alice");
    n.wait_state(Duration::from_secs(60), "alice's head adopted", |s| {
        s.commit.as_deref() == Some(good.as_str())
    });
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(30), || {
            note(&origin, &good).is_some_and(|t| t.contains("adopted"))
        }),
        "an adopted note on {good}"
    );
}
