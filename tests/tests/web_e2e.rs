//! The web page end to end, as root, in a real browser: one real `kommit daemon` (the agent
//! harness, a bare repository as its remote) serving `--http-listen` on loopback and on the
//! address of a bridge this test makes, and Debian's headless `chromium` driven through
//! `chromedriver` (WebDriver). The overview shows the adopted commit and the template's
//! pods Running; a broken commit shows as refused on the open history page, with its
//! `file:line:col`, within a second of the state recording it and without a reload; a
//! scale-up reaches the open rollout timeline and the open pod list live; a Secret's value
//! appears in no page and no event stream; the non-loopback listener answers 401 without
//! the token. Screenshots of each page go to `target/web-screenshots/`.
//!
//! Skipped only with KOMMIT_SKIP_PRIVILEGED=1 or KOMMIT_SKIP_BROWSER=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::{ClusterState, CommitOutcome, PodPhase};
use kommit_tests::agent_support::{tail, wait_for, AgentNode};
use kommit_tests::browser::{screenshot_dir, skip_browser, Browser};
use kommit_tests::cluster::net::Lan;
use kommit_tests::fixtures::free_port;
use kommit_tests::runtime_support::skip_privileged;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "web-e2e-secret-value-5d1f0c9a";
const TOKEN: &str = "web-e2e-token-3b8e1f7a2c6d";

/// One HTTP/1.0 GET: (status, body).
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Reads the event stream of `path` until `stop`; returns everything it carried.
fn capture(addr: SocketAddr, path: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<String> {
    let path = path.to_string();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 16384];
        while !stop.load(Ordering::SeqCst) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(_) => continue,
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

fn hello_running(s: &ClusterState) -> usize {
    s.pods
        .values()
        .filter(|p| p.name.starts_with("hello-") && p.phase == PodPhase::Running && p.ready)
        .count()
}

fn refused_at(s: &ClusterState, commit: &str) -> Option<Vec<String>> {
    match &s.history.get(commit)?.outcome {
        CommitOutcome::Refused { diagnostics, .. } => Some(diagnostics.clone()),
        CommitOutcome::Adopted { .. } => None,
    }
}

/// The template with a clear-text Secret its Deployment reads.
fn add_secret(n: &AgentNode) {
    n.write(
        "apps/hello/secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hello-db\nstringData:\n  password: {SECRET}\n"
        ),
    );
    let dep = n.work.join("apps/hello/deployment.yaml");
    let text = std::fs::read_to_string(&dep).unwrap();
    let with = text.replacen(
        "        env:\n",
        "        env:\n        - name: DB_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: hello-db\n              key: password\n",
        1,
    );
    assert_ne!(text, with, "the Deployment has an env list");
    std::fs::write(&dep, with).unwrap();
}

fn edit(n: &AgentNode, from: &str, to: &str) {
    let dep = n.work.join("apps/hello/deployment.yaml");
    let text = std::fs::read_to_string(&dep).unwrap();
    assert!(text.contains(from), "{from:?} in the Deployment");
    std::fs::write(&dep, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_page_follows_the_cluster_live_in_a_browser() {
    if skip_privileged("web end to end") || skip_browser("web end to end") {
        return;
    }
    // A bridge and a client namespace this test makes: the non-loopback listener's address.
    let lan = Lan::create();
    let client = lan.attach(1);
    let mut n = AgentNode::new("web", 219);
    add_secret(&n);
    let token_file = n.dir.path().join("http.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let local = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let remote = SocketAddr::from((lan.host_address(), free_port()));
    n.extra_args = vec![
        "--http-listen".into(),
        local.to_string(),
        "--http-listen".into(),
        remote.to_string(),
        "--http-token-file".into(),
        token_file.display().to_string(),
    ];
    let c1 = n.push("the template, with a Secret");
    n.start();
    n.wait_state(Duration::from_secs(90), "2 hello pods ready", |s| {
        s.commit.as_deref() == Some(c1.as_str()) && hello_running(s) == 2
    });
    assert!(
        serde_json::to_string(&n.state().desired.secrets)
            .unwrap()
            .contains(SECRET),
        "the state the page renders from holds the Secret's value, so its absence means something"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = [
        "/events",
        "/events/history",
        "/events/pods",
        "/events/workloads",
    ]
    .iter()
    .map(|p| (*p, capture(local, p, stop.clone())))
    .collect();

    let b = Browser::start();
    let base = format!("http://{local}");
    let _ = std::fs::remove_dir_all(screenshot_dir());

    // 1. The overview: the adopted commit, the template's pods Running.
    b.goto(&format!("{base}/"));
    let commit_sel = format!("#commit [data-commit=\"{c1}\"]");
    assert!(
        b.wait(Duration::from_secs(10), |b| b.count(&commit_sel) == 1)
            .is_some(),
        "overview names {c1}: {}",
        b.source()
    );
    assert!(
        b.wait(Duration::from_secs(5), |b| b.text("#live-state").as_deref()
            == Some("live"))
            .is_some(),
        "the overview's event stream is connected"
    );
    let row = b
        .text("tr[data-object=\"default/Deployment/hello\"]")
        .expect("the hello Deployment's row");
    assert!(row.contains("2/2"), "{row}");
    let subject = b.text("#commit").unwrap_or_default();
    assert!(subject.contains("the template, with a Secret"), "{subject}");
    b.screenshot("overview");
    b.goto(&format!("{base}/pods?ns=default&label=app%3Dhello"));
    assert_eq!(
        b.count("tr[data-pod^=\"default/hello-\"][data-phase=\"Running\"]"),
        2,
        "{}",
        b.source()
    );
    b.screenshot("pods");
    let pod = n.pods("hello-").remove(0);
    b.goto(&format!("{base}/pods/default/{}", pod.name));
    let containers = b.text("#containers").unwrap_or_default();
    assert!(containers.contains("busybox:1.36"), "{containers}");
    b.screenshot("pod");
    b.goto(&format!("{base}/nodes"));
    assert_eq!(b.count("tr[data-node=\"e2e\"]"), 1);
    b.screenshot("nodes");

    // 2. A broken commit, watched from the open history page.
    b.goto(&format!("{base}/history"));
    assert!(
        b.wait(Duration::from_secs(5), |b| b.text("#live-state").as_deref()
            == Some("live"))
            .is_some(),
        "the history's event stream is connected"
    );
    b.mark_document();
    let before = b.updates();
    edit(&n, "replicas: 2", "replicas: two");
    let pushed = Instant::now();
    let broken = n.push("a broken replica count");
    let recorded = {
        let (data, broken) = (n.data.clone(), broken.clone());
        std::thread::spawn(move || {
            let mut index = 0;
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end {
                if let Ok((i, s)) = kommit_daemon::cli::get::fetch_state_after(
                    &data,
                    index,
                    Duration::from_millis(500),
                ) {
                    if let Some(d) = refused_at(&s, &broken) {
                        return Some((Instant::now(), d));
                    }
                    index = i;
                }
            }
            None
        })
    };
    let sel = format!("li[data-commit=\"{broken}\"][data-state=\"refused\"]");
    let shown = b.wait(Duration::from_secs(60), |b| b.count(&sel) == 1);
    let seen = Instant::now();
    assert!(
        shown.is_some(),
        "history shows {broken} refused: {}",
        tail(&n.log(), 40)
    );
    let (in_state, diagnostics) = recorded
        .join()
        .unwrap()
        .expect("the state records the refusal");
    let lag = seen.saturating_duration_since(in_state);
    eprintln!(
        "refusal: in the page {lag:?} after the state recorded it ({:?} after the push)",
        seen - pushed
    );
    assert!(
        lag <= Duration::from_secs(1),
        "the page lagged the state by {lag:?}"
    );
    assert!(b.same_document(), "no reload");
    assert!(
        b.updates() > before,
        "the event stream swapped the fragment in"
    );
    let text = b.text(&sel).unwrap();
    assert!(!diagnostics.is_empty());
    for d in &diagnostics {
        assert!(text.contains(d.as_str()), "{d:?} in {text}");
    }
    let loc = regex_free_location(&text).expect("a file:line:col");
    assert!(loc.starts_with("apps/hello/deployment.yaml:"), "{loc}");
    b.screenshot("history-refused");
    edit(&n, "replicas: two", "replicas: 2");

    // 3. A scale-up, watched from the open rollout timeline (tab 1) and pod list (tab 2).
    b.goto(&format!("{base}/workloads/default/Deployment/hello"));
    b.mark_document();
    let (rollout_tab, _) = b.new_tab();
    b.goto(&format!("{base}/pods?ns=default"));
    b.mark_document();
    edit(&n, "replicas: 2", "replicas: 3");
    let scale = n.push("scale hello to 3");
    let three = b.wait(Duration::from_secs(90), |b| {
        b.count("tr[data-pod^=\"default/hello-\"][data-phase=\"Running\"]") == 3
    });
    assert!(
        three.is_some(),
        "the pod list shows 3 Running: {}",
        tail(&n.log(), 40)
    );
    assert!(b.same_document(), "the pod list was not reloaded");
    b.screenshot("pods-scaled");
    b.switch(&rollout_tab);
    let row = format!("#rollout-commits tr[data-commit=\"{scale}\"]");
    let gained = b.wait(Duration::from_secs(30), |b| {
        b.text(&row)
            .is_some_and(|t| t.split_whitespace().nth(4) == Some("3"))
    });
    assert!(
        gained.is_some(),
        "the timeline gains {scale} with 3 ready: {}",
        b.source()
    );
    assert_eq!(
        b.count(&format!("svg.chart text[data-commit=\"{scale}\"]")),
        1
    );
    assert!(b.same_document(), "the rollout page was not reloaded");
    b.screenshot("rollout");

    // 4. The Secret's value: in no page, no event stream.
    for path in [
        "/",
        "/history",
        "/workloads",
        "/pods",
        "/nodes",
        "/workloads/default/Deployment/hello",
    ]
    .iter()
    .map(|p| p.to_string())
    .chain(
        n.pods("hello-")
            .iter()
            .map(|p| format!("/pods/default/{}", p.name)),
    ) {
        b.goto(&format!("{base}{path}"));
        assert!(
            !b.source().contains(SECRET),
            "{path} in the browser shows the Secret"
        );
        let (status, body) = get(local, &path, None);
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains(SECRET), "{path} serves the Secret");
    }
    stop.store(true, Ordering::SeqCst);
    for (path, h) in streams {
        let carried = h.join().unwrap();
        assert!(
            carried.contains("event: main"),
            "{path} streamed: {carried:.300}"
        );
        assert!(
            !carried.contains(SECRET),
            "{path}'s stream carries the Secret"
        );
        if path == "/events/history" {
            assert!(
                carried.contains(&broken),
                "the history stream carried the refusal"
            );
        }
    }

    // 5. Beyond loopback: 401 without the token, from here and from a namespace of its own.
    let (status, _) = get(remote, "/", None);
    assert_eq!(status, 401);
    assert_eq!(get(remote, "/events/history", None).0, 401);
    assert_eq!(get(remote, "/", Some("wrong-token-0123456789")).0, 401);
    let (status, body) = get(remote, "/", Some(TOKEN));
    assert_eq!(status, 200);
    assert!(body.contains(&scale));
    let url = format!("http://{remote}/");
    let (ok, out) = client.exec("busybox", &["wget", "-q", "-O", "-", &url]);
    assert!(
        !ok && out.contains("401"),
        "wget from the client namespace: {out}"
    );
    eprintln!("screenshots in {}", screenshot_dir().display());
    assert!(wait_for(Duration::from_secs(1), || screenshot_dir()
        .join("rollout.png")
        .exists()));
}

/// The first `path:line:col` in `text` (a path with a `.yaml` suffix, two numbers).
fn regex_free_location(text: &str) -> Option<String> {
    text.split_whitespace().find_map(|w| {
        let mut parts = w.trim_end_matches(':').rsplitn(3, ':');
        let col = parts.next()?;
        let line = parts.next()?;
        let path = parts.next()?;
        (path.ends_with(".yaml")
            && !line.is_empty()
            && line.bytes().all(|c| c.is_ascii_digit())
            && !col.is_empty()
            && col.bytes().all(|c| c.is_ascii_digit()))
        .then(|| format!("{path}:{line}:{col}"))
    })
}
