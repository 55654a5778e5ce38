//! Issue 4: the async writer loop keeps writes while the remote is down, backs off, and
//! delivers them once it is back, without a restart.

mod git_common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use git_common::*;
use kommit_daemon::git::note::{CommitState, StatusNote};
use kommit_daemon::git::queue::Outbox;
use kommit_daemon::git::status::Identity;
use kommit_daemon::git::time::Timestamp;
use kommit_daemon::git::writer::{StatusWriter, WriterConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_loop_backs_off_while_remote_is_down_then_delivers() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let mirror = f.mirror(&f.url());
    mirror.fetch().expect("fetch");
    let outbox = Outbox::open(f.dir.path().join("data/outbox.redb"), 100).expect("outbox");
    let w = StatusWriter::new(
        mirror,
        outbox,
        Identity::node("n1"),
        WriterConfig {
            interval: Duration::from_millis(20),
            retry_min: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
            max_batch: 100,
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(w.clone().run(stop_rx));

    // Remote down: the repository disappears.
    let away = f.dir.path().join("remote-away.git");
    std::fs::rename(&f.remote, &away).expect("take the remote away");
    w.note(StatusNote::new(
        oid(&c1),
        CommitState::Adopted,
        Timestamp(1_795_303_800),
    ))
    .expect("queued");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.stats().failures.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < deadline, "the writer did not retry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.outbox().len().expect("len"), 1, "the write stays queued");
    assert_eq!(w.stats().pushes.load(Ordering::Relaxed), 0);

    // Remote back: the loop delivers on its own.
    std::fs::rename(&away, &f.remote).expect("bring the remote back");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.outbox().len().expect("len") > 0 {
        assert!(
            Instant::now() < deadline,
            "the write was not delivered after the remote came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).expect("stop");
    task.await.expect("loop ends");
    let text = git(&f.remote, &["notes", "--ref=kommit", "show", &c1]);
    assert!(text.contains("state: adopted"), "{text}");
    assert_eq!(
        git(&f.remote, &["notes", "--ref=kommit", "list"])
            .lines()
            .count(),
        1
    );
}
