//! Issue 4: mirror, read, new heads, over file:// and git://, against real repositories.

mod git_common;

use git_common::*;
use kommit_daemon::git::heads::{self, Decision};
use kommit_daemon::git::loader::{Limits, SourceContent};
use kommit_daemon::git::read::{self, LoadError};

const APP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n";

#[test]
fn fetch_and_read_through_file_url_and_plain_path() {
    let f = Fixture::new();
    let c1 = f.commit(
        &[
            ("kommit.yaml", KOMMIT_YAML),
            ("apps/a.yaml", APP),
            ("README.md", "docs are listed, never read\n"),
            (".github/workflows/ci.yml", "on: push\n"),
        ],
        "one",
    );
    for url in [f.url(), f.remote.display().to_string()] {
        let m = f.mirror(&url);
        let out = m.fetch().expect("fetch");
        assert_eq!(out.head, Some(oid(&c1)), "{url}");
        assert_eq!(m.head().expect("head"), Some(oid(&c1)));
        let repo = m.repo().expect("repo");
        let loaded = read::load_commit(&repo, oid(&c1), &Limits::default()).expect("valid");
        assert_eq!(loaded.commit, oid(&c1));
        assert_eq!(
            loaded.tree.to_string(),
            git(&f.work, &["rev-parse", "HEAD^{tree}"])
        );
        assert_eq!(loaded.desired.config.branch, "main");
        // The loader input holds the files, read from the object database.
        let (tree, diags) = read::read_tree(&repo, loaded.tree, &Limits::default()).expect("tree");
        assert!(diags.is_empty());
        let mut paths: Vec<_> = tree.files.iter().map(|f| f.path.clone()).collect();
        paths.sort();
        assert_eq!(
            paths,
            ["README.md", "apps/a.yaml", "kommit.yaml"],
            "dot-directories skipped"
        );
        let readme = tree
            .files
            .iter()
            .find(|f| f.path == "README.md")
            .expect("readme");
        assert_eq!(
            readme.content,
            SourceContent::Bytes(Vec::new()),
            "non-manifests are not read"
        );
        let app = tree
            .files
            .iter()
            .find(|f| f.path == "apps/a.yaml")
            .expect("app");
        assert_eq!(app.content, SourceContent::Bytes(APP.as_bytes().to_vec()));
    }
}

#[test]
fn only_the_branch_and_notes_are_fetched() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    git(
        &f.work,
        &["notes", "--ref=kommit", "add", "-m", "hello", &c1],
    );
    git(&f.work, &["push", "-q", "origin", "refs/notes/kommit"]);
    git(&f.work, &["push", "-q", "origin", "main:refs/heads/other"]);
    git(&f.work, &["tag", "v1"]);
    git(&f.work, &["push", "-q", "origin", "v1"]);
    let m = f.mirror(&f.url());
    let out = m.fetch().expect("fetch");
    assert_eq!(out.head, Some(oid(&c1)));
    assert!(out.notes.is_some());
    let refs = git(m.path(), &["for-each-ref", "--format=%(refname)"]);
    let mut refs: Vec<&str> = refs.lines().collect();
    refs.sort();
    assert_eq!(refs, ["refs/heads/main", "refs/notes/kommit"]);
}

#[test]
fn fetch_and_read_through_git_daemon() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML), ("apps/a.yaml", APP)], "one");
    let d = GitDaemon::start(f.dir.path());
    let m = f.mirror(&d.url("remote.git"));
    assert_eq!(m.fetch().expect("fetch").head, Some(oid(&c1)));
    let c2 = f.commit(&[("apps/b.yaml", &config_map("b"))], "two");
    assert_eq!(m.fetch().expect("fetch").head, Some(oid(&c2)));
    let repo = m.repo().expect("repo");
    let loaded = read::load_commit(&repo, oid(&c2), &Limits::default()).expect("valid");
    assert_eq!(loaded.commit, oid(&c2));
    let head = heads::detect(&repo, Some(oid(&c1)), oid(&c2))
        .expect("detect")
        .expect("new");
    assert!(head.fast_forward);
    assert_eq!(head.commits, vec![oid(&c2)]);
}

#[test]
fn new_heads_list_commits_between_and_detect_fast_forward() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let c2 = f.commit(&[("apps/a.yaml", APP)], "two");
    let c3 = f.commit(&[("apps/b.yaml", APP)], "three");
    let m = f.mirror(&f.url());
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    assert_eq!(
        heads::detect(&repo, Some(oid(&c3)), oid(&c3)).expect("detect"),
        None
    );
    let h = heads::detect(&repo, Some(oid(&c1)), oid(&c3))
        .expect("detect")
        .expect("new");
    assert_eq!(h.commits, vec![oid(&c3), oid(&c2)]);
    assert!(h.fast_forward);
    let first = heads::detect(&repo, None, oid(&c3))
        .expect("detect")
        .expect("new");
    assert_eq!(first.commits.len(), 3);
    assert!(first.fast_forward);
}

/// A force push is refused unless the adopted kommit.yaml allows rewrites.
#[test]
fn force_push_refused_and_allowed_by_config() {
    for (config, allowed) in [(KOMMIT_YAML, false), (KOMMIT_YAML_REWRITES, true)] {
        let f = Fixture::new();
        let c1 = f.commit(&[("kommit.yaml", config)], "one");
        let adopted = f.commit(&[("apps/a.yaml", APP)], "two");
        let m = f.mirror(&f.url());
        assert_eq!(m.fetch().expect("fetch").head, Some(oid(&adopted)));
        let rewritten = f.force_push_on(&c1, &[("apps/b.yaml", APP)], "rewritten");
        assert_eq!(m.fetch().expect("fetch").head, Some(oid(&rewritten)));
        let repo = m.repo().expect("repo");
        let h = heads::detect(&repo, Some(oid(&adopted)), oid(&rewritten))
            .expect("detect")
            .expect("new head");
        assert!(!h.fast_forward);
        assert_eq!(h.commits, vec![oid(&rewritten)]);
        // The permission comes from the adopted commit's kommit.yaml.
        let current = read::load_commit(&repo, oid(&adopted), &Limits::default()).expect("valid");
        let decision = heads::decide(&h, current.desired.config.allow_history_rewrite);
        match decision {
            Decision::Consider => assert!(allowed, "rewrite considered without permission"),
            Decision::Refuse { reason } => {
                assert!(!allowed, "rewrite refused despite permission");
                assert!(reason.contains("not a fast-forward"), "{reason}");
                assert!(reason.contains(&adopted), "{reason}");
            }
        }
    }
}

#[test]
fn symlink_submodule_and_oversized_blob_are_reported_with_paths() {
    let f = Fixture::new();
    let big = "x".repeat(2 << 20);
    f.commit(
        &[("kommit.yaml", KOMMIT_YAML), ("apps/big.yaml", &big)],
        "big",
    );
    std::os::unix::fs::symlink("../kommit.yaml", f.work.join("apps/link.yaml")).expect("symlink");
    let some_commit = f.head();
    git(&f.work, &["add", "-A"]);
    git(
        &f.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{some_commit},vendor/sub"),
        ],
    );
    git(&f.work, &["commit", "-q", "-m", "bad entries"]);
    git(&f.work, &["push", "-q", "origin", "main"]);
    let bad = f.head();
    let m = f.mirror(&f.url());
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    let limits = Limits::default();
    let tree = read::commit_tree(&repo, oid(&bad)).expect("tree");
    let (source, _) = read::read_tree(&repo, tree, &limits).expect("read");
    let by_path = |p: &str| {
        source
            .files
            .iter()
            .find(|f| f.path == p)
            .map(|f| f.content.clone())
    };
    assert_eq!(
        by_path("apps/big.yaml"),
        Some(SourceContent::TooLarge { size: 2 << 20 })
    );
    assert_eq!(
        by_path("apps/link.yaml"),
        Some(SourceContent::Symlink {
            target: "../kommit.yaml".into()
        })
    );
    assert_eq!(by_path("vendor/sub"), Some(SourceContent::Submodule));
    match read::load_commit(&repo, oid(&bad), &limits) {
        Err(LoadError::Invalid(diags)) => {
            let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
            for p in ["apps/big.yaml", "apps/link.yaml", "vendor/sub"] {
                assert!(paths.contains(&p), "{p} missing from {diags:?}");
            }
        }
        other => panic!("expected diagnostics, got {other:?}"),
    }
}

#[test]
fn reading_stops_just_past_the_limits_and_the_loader_reports_them() {
    let f = Fixture::new();
    let files: Vec<(String, String)> = (0..12)
        .map(|i| {
            (
                format!("apps/f{i:02}.yaml"),
                config_map(&format!("f{i:02}")),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let c = f.commit(&refs, "many");
    let m = f.mirror(&f.url());
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    let tree = read::commit_tree(&repo, oid(&c)).expect("tree");
    let one = config_map("f00").len() as u64;
    for (limits, read_files, message) in [
        (
            Limits {
                max_files: 5,
                ..Limits::default()
            },
            6,
            "too many manifest files",
        ),
        (
            Limits {
                max_total_bytes: one * 3,
                ..Limits::default()
            },
            4,
            "total more than",
        ),
    ] {
        let (source, diags) = read::read_tree(&repo, tree, &limits).expect("read");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(source.files.len(), read_files, "{message}");
        match read::load_commit(&repo, oid(&c), &limits) {
            Err(LoadError::Invalid(d)) => {
                assert!(d.iter().any(|d| d.message.contains(message)), "{d:?}")
            }
            other => panic!("expected {message:?}, got {other:?}"),
        }
    }
}

/// The one call the leader makes per fetched head: adopt, refuse (rewrite or invalid, with
/// the note to write), or nothing.
#[test]
fn evaluate_adopts_refuses_or_ignores_a_head() {
    use kommit_daemon::git::heads::Verdict;
    use kommit_daemon::git::note::CommitState;
    use kommit_daemon::git::time::Timestamp;
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML), ("apps/a.yaml", APP)], "one");
    let c2 = f.commit(&[("apps/b.yaml", &config_map("b"))], "two");
    let bad = f.commit(
        &[("apps/c.yaml", "apiVersion: v1\nkind: ConfigMap\n")],
        "no name",
    );
    let m = f.mirror(&f.url());
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    let limits = Limits::default();
    let at = Timestamp(1_795_303_800);
    let eval = |adopted: Option<(&str, bool)>, head: &str| {
        heads::evaluate(
            &repo,
            adopted.map(|(c, a)| (oid(c), a)),
            oid(head),
            &limits,
            at,
        )
        .expect("evaluate")
    };
    assert!(matches!(eval(Some((&c2, false)), &c2), Verdict::Unchanged));
    match eval(Some((&c1, false)), &c2) {
        Verdict::Adopt { head, loaded } => {
            assert_eq!(loaded.commit, oid(&c2));
            assert_eq!(head.commits, vec![oid(&c2)]);
            assert!(head.fast_forward);
        }
        other => panic!("expected adopt, got {other:?}"),
    }
    match eval(Some((&c2, false)), &bad) {
        Verdict::Refuse { note, .. } => {
            assert_eq!(note.state, CommitState::Refused);
            assert_eq!(note.commit, bad);
            assert!(
                note.diagnostics
                    .iter()
                    .any(|d| d.starts_with("apps/c.yaml:")),
                "{:?}",
                note.diagnostics
            );
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let rewritten = f.force_push_on(&c1, &[("apps/d.yaml", &config_map("d"))], "rewrite");
    m.fetch().expect("fetch");
    let repo = m.repo().expect("repo");
    let verdict = heads::evaluate(&repo, Some((oid(&c2), false)), oid(&rewritten), &limits, at)
        .expect("evaluate");
    match verdict {
        Verdict::Refuse { head, note } => {
            assert!(!head.fast_forward);
            assert!(
                note.reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("history rewrite"),
                "{note:?}"
            );
            assert!(note.diagnostics.is_empty());
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let verdict = heads::evaluate(&repo, Some((oid(&c2), true)), oid(&rewritten), &limits, at)
        .expect("evaluate");
    assert!(matches!(verdict, Verdict::Adopt { .. }), "{verdict:?}");
}
