//! Issue 4: an ssh:// remote with a key from node config: gix fetches through
//! `core.sshCommand`, the git CLI pushes through `GIT_SSH_COMMAND`, and the server's host key
//! is pinned. Needs `openssh-server` (sshd); skipped only with `KOMMIT_SKIP_SSH=1`.

mod git_common;

use git_common::*;
use kommit_daemon::git::mirror::{Credentials, Mirror, RemoteConfig};
use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_daemon::git::push::Round;
use kommit_daemon::git::queue::Outbox;
use kommit_daemon::git::status::Identity;
use kommit_daemon::git::time::Timestamp;
use kommit_daemon::git::writer::{StatusWriter, WriterConfig};

#[test]
fn ssh_remote_with_key_fetches_and_pushes() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let ssh_dir = f.dir.path().join("ssh");
    std::fs::create_dir_all(&ssh_dir).expect("dir");
    let Some(sshd) = git_common::ssh::Sshd::start(&ssh_dir) else {
        assert_eq!(
            std::env::var("KOMMIT_SKIP_SSH").as_deref(),
            Ok("1"),
            "sshd is missing: install openssh-server (or set KOMMIT_SKIP_SSH=1 to skip)"
        );
        eprintln!("SKIPPED: sshd not installed");
        return;
    };
    let url = sshd.url(&f.remote);
    let open = |credentials: Credentials, name: &str| {
        Mirror::open(
            f.dir.path().join(name),
            RemoteConfig {
                url: url.clone(),
                branch: "main".into(),
                credentials,
                ca_file: None,
            },
        )
        .expect("mirror")
    };

    // A key the server does not know is refused.
    let stranger = ssh_dir.join("stranger");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let refused = open(
        Credentials::SshKey {
            key: stranger,
            known_hosts: Some(sshd.known_hosts.clone()),
        },
        "stranger.git",
    );
    assert!(refused.fetch().is_err(), "an unknown key must not fetch");

    let mirror = open(
        Credentials::SshKey {
            key: sshd.key.clone(),
            known_hosts: Some(sshd.known_hosts.clone()),
        },
        "ssh.git",
    );
    assert_eq!(mirror.fetch().expect("fetch over ssh").head, Some(oid(&c1)));

    let outbox = Outbox::open(f.dir.path().join("data/outbox.redb"), 100).expect("outbox");
    let w = StatusWriter::new(
        mirror,
        outbox,
        Identity::node("n1"),
        WriterConfig::default(),
    );
    w.note(StatusNote::new(
        oid(&c1),
        CommitState::Adopted,
        Timestamp(1_795_303_800),
    ))
    .expect("queued");
    let round = w.round_blocking().expect("push over ssh");
    assert!(matches!(round, Round::Pushed { .. }), "{round:?}");
    let text = git(&f.remote, &["notes", "--ref=kommit", "show", &c1]);
    assert!(text.contains("state: adopted"), "{text}");
}
