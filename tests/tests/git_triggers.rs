//! Issue 4: fetch triggers. A signed webhook fetches within 100 ms, a bad signature is
//! refused with 401, and a local push is seen through the notify watch without polling.

mod git_common;

use std::time::{Duration, Instant};

use git_common::*;
use hmac::{Hmac, Mac};
use kommit_daemon::git::triggers::{self, FetchState, FetchTrigger, WebhookConfig};
use sha2::Sha256;
use tokio::sync::watch;

const HOUR: Duration = Duration::from_secs(3600);

async fn wait_for(
    rx: &mut watch::Receiver<FetchState>,
    limit: Duration,
    pred: impl Fn(&FetchState) -> bool,
) -> Option<FetchState> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        {
            let s = rx.borrow_and_update();
            if pred(&s) {
                return Some(s.clone());
            }
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return None;
        }
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_fetches_within_100ms_and_bad_signature_is_401() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let trigger = FetchTrigger::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Poll once an hour: only the webhook can cause the second fetch.
    let (task, mut rx) =
        triggers::spawn_fetcher(f.mirror(&f.url()), HOUR, trigger.clone(), stop_rx);
    let first = wait_for(&mut rx, Duration::from_secs(10), |s| s.fetches >= 1)
        .await
        .expect("first fetch");
    assert_eq!(first.head, Some(oid(&c1)));

    let app = axum::Router::new().nest(
        "/hooks/git",
        triggers::webhook_router(
            WebhookConfig {
                secret: Some("s3cret".into()),
                branch: "main".into(),
            },
            trigger.clone(),
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/hooks/git");
    kommit_runtime::tls::install_crypto_provider();
    let client = reqwest::Client::new();

    let c2 = f.commit(&[("apps/a.yaml", "x: 1\n")], "two");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{c2}"}}"#);

    // Refused: wrong signature, missing signature, wrong GitLab token.
    for headers in [
        vec![
            ("X-GitHub-Event", "push".to_owned()),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", sign("wrong", body.as_bytes())),
            ),
        ],
        vec![("X-GitHub-Event", "push".to_owned())],
        vec![
            ("X-Gitlab-Event", "Push Hook".to_owned()),
            ("X-Gitlab-Token", "nope".to_owned()),
        ],
    ] {
        let mut req = client.post(&url).body(body.clone());
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), 401, "{headers:?}");
    }
    assert!(
        wait_for(&mut rx, Duration::from_millis(300), |s| s.fetches > 1)
            .await
            .is_none(),
        "a refused webhook must not trigger a fetch"
    );

    // Accepted: GitHub-style signed push event; the new head is fetched within 100 ms.
    let start = Instant::now();
    let resp = client
        .post(&url)
        .header("X-GitHub-Event", "push")
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", sign("s3cret", body.as_bytes())),
        )
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 202);
    let seen = wait_for(&mut rx, Duration::from_secs(5), |s| {
        s.head == Some(oid(&c2))
    })
    .await;
    let elapsed = start.elapsed();
    eprintln!("webhook -> fetched head in {elapsed:?}");
    assert!(seen.is_some(), "signed webhook did not cause a fetch");
    assert!(
        elapsed < Duration::from_millis(100),
        "fetch took {elapsed:?} after the webhook"
    );

    // Gitea and GitLab styles, and a push to another branch (accepted, no fetch).
    let c3 = f.commit(&[("apps/b.yaml", "x: 2\n")], "three");
    let body3 = format!(r#"{{"ref":"refs/heads/main","after":"{c3}"}}"#);
    let resp = client
        .post(&url)
        .header("X-Gitea-Event", "push")
        .header("X-Gitea-Signature", sign("s3cret", body3.as_bytes()))
        .body(body3.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 202);
    assert!(wait_for(&mut rx, Duration::from_secs(5), |s| s.head
        == Some(oid(&c3)))
    .await
    .is_some());
    let before = rx.borrow().fetches;
    let resp = client
        .post(&url)
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "s3cret")
        .body(r#"{"ref":"refs/heads/feature"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 202);
    assert!(
        wait_for(&mut rx, Duration::from_millis(300), |s| s.fetches > before)
            .await
            .is_none()
    );
    let resp = client
        .post(&url)
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "s3cret")
        .body(body3)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 202);
    assert!(
        wait_for(&mut rx, Duration::from_secs(5), |s| s.fetches > before)
            .await
            .is_some()
    );

    stop_tx.send(true).expect("stop");
    task.await.expect("fetcher ends");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_plain_post_triggers_when_no_secret() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let trigger = FetchTrigger::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (task, mut rx) =
        triggers::spawn_fetcher(f.mirror(&f.url()), HOUR, trigger.clone(), stop_rx);
    assert!(wait_for(&mut rx, Duration::from_secs(10), |s| s.head
        == Some(oid(&c1)))
    .await
    .is_some());
    let app = triggers::webhook_router(
        WebhookConfig {
            secret: None,
            branch: "main".into(),
        },
        trigger,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let c2 = f.commit(&[("apps/a.yaml", "x: 1\n")], "two");
    kommit_runtime::tls::install_crypto_provider();
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 202);
    assert!(wait_for(&mut rx, Duration::from_secs(5), |s| s.head
        == Some(oid(&c2)))
    .await
    .is_some());
    stop_tx.send(true).expect("stop");
    task.await.expect("fetcher ends");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_push_is_seen_through_the_notify_watch() {
    let f = Fixture::new();
    let c1 = f.commit(&[("kommit.yaml", KOMMIT_YAML)], "one");
    let trigger = FetchTrigger::default();
    let _watcher = triggers::watch_local_remote(&f.url(), trigger.clone()).expect("watch");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (task, mut rx) = triggers::spawn_fetcher(f.mirror(&f.url()), HOUR, trigger, stop_rx);
    assert!(wait_for(&mut rx, Duration::from_secs(10), |s| s.head
        == Some(oid(&c1)))
    .await
    .is_some());
    let c2 = f.commit(&[("apps/a.yaml", "x: 1\n")], "two");
    let seen = wait_for(&mut rx, Duration::from_secs(5), |s| {
        s.head == Some(oid(&c2))
    })
    .await;
    assert!(
        seen.is_some(),
        "the local push was not seen without polling"
    );
    stop_tx.send(true).expect("stop");
    task.await.expect("fetcher ends");
}

#[test]
fn a_remote_url_is_not_watchable() {
    assert!(
        triggers::watch_local_remote("git://127.0.0.1:1/x.git", FetchTrigger::default()).is_err()
    );
}
