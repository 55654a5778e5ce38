use super::*;
use crate::synthetic::{self, sha, SECRET_VALUE};
use crate::{ClusterFacts, CommitFacts, Decision};
use axum::body::Body;
use futures::StreamExt;
use std::sync::Mutex;
use tower::ServiceExt;

/// A source over a state the test changes.
struct Fake {
    state: Mutex<ClusterState>,
    tx: watch::Sender<u64>,
}

impl Source for Fake {
    fn with_state(&self, f: &mut dyn FnMut(&ClusterState)) {
        f(&self.state.lock().expect("lock"));
    }
    fn with_facts(&self, timeline: &Timeline, f: &mut dyn FnMut(&Facts<'_>)) {
        let s = self.state.lock().expect("lock");
        let cluster = ClusterFacts {
            node: "node0".into(),
            ..Default::default()
        };
        let commits: Vec<CommitFacts> = s
            .history
            .records()
            .iter()
            .rev()
            .map(|r| CommitFacts {
                commit: r.commit.clone(),
                decision: match r.outcome {
                    kommit_reconcilers::CommitOutcome::Refused { .. } => Decision::Refused,
                    _ => Decision::Adopted,
                },
                at: 0,
                by: None,
                superseded_by: None,
                reason: None,
                diagnostics: vec![],
                acks: BTreeMap::new(),
                meta: None,
            })
            .collect();
        f(&Facts {
            state: &s,
            cluster: &cluster,
            commits: &commits,
            objects: &BTreeMap::new(),
            timeline,
            forge: None,
        });
    }
    fn pod_logs(&self, _: &str, _: &str) -> PodLogs {
        PodLogs::new()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

fn fake() -> Arc<Fake> {
    Arc::new(Fake {
        state: Mutex::new(synthetic::state(2, 2, 2)),
        tx: watch::channel(1).0,
    })
}

fn get(path: &str) -> Request {
    Request::builder()
        .uri(path)
        .body(Body::empty())
        .expect("request")
}

async fn body(resp: Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 8 << 20)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf8")
}

fn open_gate() -> Gate {
    Gate::for_listener("127.0.0.1:1".parse().expect("addr"), None).expect("gate")
}

#[tokio::test]
async fn pages_answer_html_with_a_strict_policy_and_only_to_reads() {
    let app = router(Web::new(fake()), open_gate());
    let resp = app.clone().oneshot(get("/history")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = body(resp).await;
    assert!(html.contains(&sha('c')), "{html}");
    assert!(!html.contains(SECRET_VALUE));

    let post = Request::builder()
        .method(Method::POST)
        .uri("/")
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(post).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = app.clone().oneshot(get("/secrets")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = app
        .clone()
        .oneshot(get("/pods/default/none"))
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = app.oneshot(get("/pods?label=%3Dx")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(resp).await, "label selector term \"=x\" has no key\n");
}

#[tokio::test]
async fn beyond_loopback_a_request_without_the_token_is_401() {
    let token = "a-test-token-0123456789";
    let gate = Gate::for_listener("10.9.9.9:80".parse().expect("addr"), Some(token)).expect("gate");
    let app = router(Web::new(fake()), gate);
    let resp = app.clone().oneshot(get("/")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    let resp = app.clone().oneshot(get("/events")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "the stream too");
    let with = Request::builder()
        .uri("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.oneshot(with).await.expect("answer").status(),
        StatusCode::OK
    );
}

async fn next_frame(frames: &mut axum::body::BodyDataStream) -> String {
    let bytes = tokio::time::timeout(Duration::from_secs(5), frames.next())
        .await
        .expect("a frame within 5 s")
        .expect("stream open")
        .expect("bytes");
    String::from_utf8(bytes.to_vec()).expect("utf8")
}

#[tokio::test]
async fn the_stream_sends_the_fragment_again_when_the_state_changes() {
    let src = fake();
    let web = Web::new(src.clone());
    let app = router(web, open_gate());
    // What the overview's script asks for (`/events` + `/`), then the history's.
    let overview = app.clone().oneshot(get("/events/")).await.expect("answer");
    assert_eq!(overview.status(), StatusCode::OK);
    let resp = app.oneshot(get("/events/history")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut frames = resp.into_body().into_data_stream();
    let first = next_frame(&mut frames).await;
    assert!(first.starts_with("event: main\n"), "{first}");
    assert!(!first.contains(&sha('e')));
    {
        let mut s = src.state.lock().expect("lock");
        let at = s.now + 1000;
        s.apply(
            &kommit_reconcilers::Entry::Refuse {
                commit: sha('e'),
                reason: None,
                diagnostics: vec!["a.yaml:1:2: error: <b>bad</b>".into()],
                by: None,
            },
            at,
        );
    }
    src.tx.send_modify(|i| *i += 1);
    let second = next_frame(&mut frames).await;
    assert!(second.contains(&sha('e')), "{second}");
    assert!(!second.contains(SECRET_VALUE));
}
