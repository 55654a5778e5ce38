//! Issue 4: `kommit log` on a repository with adopted, refused and superseded commits.

mod git_common;

use std::time::Duration;

use git_common::*;
use kommit_daemon::cli::log::{self, Args, Format};
use kommit_daemon::git::loader::Diagnostic;
use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_daemon::git::push::Round;
use kommit_daemon::git::queue::Outbox;
use kommit_daemon::git::status::Identity;
use kommit_daemon::git::time::Timestamp;
use kommit_daemon::git::writer::{StatusWriter, WriterConfig};

const T0: i64 = 1_795_303_800;

/// c1 adopted then superseded by c2; c2 adopted and acked; c3 refused; c4 not seen yet.
fn history() -> (Fixture, [String; 4]) {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "bootstrap");
    let c2 = f.commit(&[("apps/web.yaml", "kind: Deployment\n")], "add web");
    let c3 = f.commit(
        &[("apps/web.yaml", "kind: Deployment\nreplica: 3\n")],
        "typo",
    );
    let c4 = f.commit(&[("apps/db.yaml", "kind: Service\n")], "add db");
    let outbox = Outbox::open(f.dir.path().join("data/outbox.redb"), 100).expect("outbox");
    let w = StatusWriter::new(
        f.mirror(&f.url()),
        outbox,
        Identity::node("n1"),
        WriterConfig {
            interval: Duration::from_millis(1),
            ..WriterConfig::default()
        },
    );
    let mut a1 = StatusNote::new(oid(&c1), CommitState::Adopted, Timestamp(T0));
    a1.acks.insert("n1".into(), Timestamp(T0 + 1));
    w.note(a1).expect("queued");
    w.note(StatusNote::superseded(
        oid(&c1),
        Timestamp(T0 + 100),
        oid(&c2),
    ))
    .expect("queued");
    let mut a2 = StatusNote::new(oid(&c2), CommitState::Adopted, Timestamp(T0 + 100));
    a2.by = Some("n1".into());
    a2.acks.insert("n1".into(), Timestamp(T0 + 101));
    a2.acks.insert("n2".into(), Timestamp(T0 + 102));
    w.note(a2).expect("queued");
    let diag = Diagnostic {
        path: "apps/web.yaml".into(),
        line: 2,
        col: 1,
        message: "unknown field \"replica\"".into(),
    };
    w.note(StatusNote::refused(oid(&c3), Timestamp(T0 + 200), &[diag]))
        .expect("queued");
    assert!(matches!(
        w.round_blocking().expect("push"),
        Round::Pushed { .. }
    ));
    (f, [c1, c2, c3, c4])
}

#[test]
fn log_shows_adopted_refused_and_superseded() {
    let (f, [c1, c2, c3, c4]) = history();
    let repo = gix::open(&f.remote).expect("open remote");
    let entries = log::collect(&repo, Some("main"), 20).expect("log");
    assert_eq!(
        entries.iter().map(|e| e.commit.clone()).collect::<Vec<_>>(),
        [c4.clone(), c3.clone(), c2.clone(), c1.clone()]
    );
    let state = |i: usize| entries[i].note.as_ref().map(|n| n.state);
    assert_eq!(state(0), None);
    assert_eq!(state(1), Some(CommitState::Refused));
    assert_eq!(state(2), Some(CommitState::Adopted));
    assert_eq!(state(3), Some(CommitState::Superseded));
    let superseded = entries[3].note.as_ref().expect("note");
    assert_eq!(superseded.superseded_by.as_deref(), Some(c2.as_str()));
    assert_eq!(
        superseded.acks.len(),
        1,
        "acks survive the superseded merge"
    );

    let text = log::render_text(&entries);
    let lines: Vec<&str> = text.lines().collect();
    let short = |c: &str| c[..12].to_owned();
    assert_eq!(lines[0], format!("{} (not seen)  add db", short(&c4)));
    assert_eq!(
        lines[1],
        format!("{} refused 2026-11-21T23:33:20Z  typo", short(&c3))
    );
    assert_eq!(
        lines[2],
        "    error: apps/web.yaml:2:1: unknown field \"replica\""
    );
    assert_eq!(
        lines[3],
        format!(
            "{} adopted 2026-11-21T23:31:40Z (leader n1)  add web",
            short(&c2)
        )
    );
    assert_eq!(
        lines[4],
        "    acks: n1@2026-11-21T23:31:41Z, n2@2026-11-21T23:31:42Z"
    );
    assert_eq!(
        lines[5],
        format!(
            "{} superseded 2026-11-21T23:31:40Z by {}  bootstrap",
            short(&c1),
            short(&c2)
        )
    );
    assert_eq!(lines[6], "    acks: n1@2026-11-21T23:30:01Z");
    assert_eq!(lines.len(), 7, "{text}");

    let json = serde_json::to_value(&entries).expect("json");
    assert_eq!(json[0]["commit"], c4.as_str());
    assert!(json[0].get("note").is_none());
    assert_eq!(json[1]["note"]["state"], "refused");
    assert_eq!(
        json[1]["note"]["diagnostics"][0],
        "apps/web.yaml:2:1: unknown field \"replica\""
    );
    assert_eq!(json[2]["note"]["state"], "adopted");
    assert_eq!(json[2]["note"]["acks"]["n2"], "2026-11-21T23:31:42Z");
    assert_eq!(json[3]["note"]["state"], "superseded");
    assert_eq!(json[3]["note"]["supersededBy"], c2.as_str());

    // -n bounds the window.
    assert_eq!(log::collect(&repo, Some("main"), 2).expect("log").len(), 2);
}

#[test]
fn log_reads_a_clone_a_worktree_and_a_url() {
    let (f, [_, _, c3, c4]) = history();
    // A working clone that fetched the notes reads the same, from HEAD.
    git(
        &f.work,
        &[
            "fetch",
            "-q",
            "origin",
            "refs/notes/kommit:refs/notes/kommit",
        ],
    );
    let repo = gix::open(&f.work).expect("open work");
    let entries = log::collect(&repo, None, 20).expect("log");
    assert_eq!(entries[0].commit, c4);
    assert_eq!(
        entries[1].note.as_ref().map(|n| n.state),
        Some(CommitState::Refused)
    );
    assert_eq!(entries[1].commit, c3);
    // A URL is fetched first; the command succeeds in both formats.
    for format in [Format::Text, Format::Json] {
        let code = log::run(Args {
            repo: f.url(),
            format,
            max_count: 5,
            branch: Some("main".into()),
        })
        .expect("log over a url");
        assert_eq!(code, 0);
    }
    // A missing repository is a clear error, not a panic.
    let err = log::run(Args {
        repo: f.dir.path().join("nope").display().to_string(),
        format: Format::Text,
        max_count: 5,
        branch: None,
    })
    .expect_err("no repository");
    assert!(err.to_string().contains("nope"), "{err:#}");
}
