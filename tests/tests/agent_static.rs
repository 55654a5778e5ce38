//! Static pods end to end, as root: a real `kommit daemon --static-pods DIR` with its agent.
//! A pod manifest dropped into the directory runs on this node within a second, is listed by
//! `kommit get pods` as the mirror pod `<name>-<node>` owned by the node, an edit replaces it
//! with a new incarnation, deleting the file removes the pod and its container, a daemon
//! restart restarts nothing, and a restart without the flag removes the node's static pods.
//!
//! Skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::{ClusterState, ContainerState, Owner, PodPhase, PodRecord};
use kommit_tests::agent_support::AgentNode;
use kommit_tests::runtime_support::skip_privileged;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KEY: &str = "default/web-e2e";

fn manifest(greeting: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: static-web
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: httpd
      image: busybox:1.36
      command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
      env:
        - name: GREETING
          value: {greeting}
"#
    )
}

fn web(s: &ClusterState) -> Option<&PodRecord> {
    s.pods.get(KEY)
}

fn running(s: &ClusterState, not_uid: Option<&str>) -> bool {
    web(s).is_some_and(|p| p.phase == PodPhase::Running && Some(p.uid.as_str()) != not_uid)
}

/// Polls the state as fast as it answers until `f` holds; the time it took from `t0`.
fn time_until(
    n: &AgentNode,
    t0: Instant,
    limit: Duration,
    f: impl Fn(&ClusterState) -> bool,
) -> Duration {
    loop {
        if n.try_state().is_some_and(|s| f(&s)) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?}\n--- daemon log (tail) ---\n{}",
            kommit_tests::agent_support::tail(&n.log(), 60)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An HTTP GET from the host; the body of a 200 answer (busybox httpd answers HTTP/1.1).
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// Sandboxes of the static pod in the node's runtime, with their labels.
fn sandboxes(n: &AgentNode) -> Vec<kommit_runtime::spec::PodStatus> {
    n.runtimes()
        .containers
        .list()
        .unwrap()
        .into_iter()
        .filter(|p| p.id.starts_with("default_web-e2e_"))
        .collect()
}

#[test]
fn a_static_pod_file_runs_on_its_node_within_a_second() {
    if skip_privileged("static pods end to end") {
        return;
    }
    let mut n = AgentNode::new("stat", 219);
    let dir = n.dir.path().join("static");
    std::fs::create_dir_all(&dir).unwrap();
    n.extra_args = vec!["--static-pods".into(), dir.display().to_string()];
    let c1 = n.push("the template");
    n.start();
    n.wait_state(Duration::from_secs(60), "the template running", |s| {
        s.commit.as_deref() == Some(c1.as_str())
            && s.pods
                .values()
                .filter(|p| p.name.starts_with("hello-"))
                .all(|p| p.ready)
    });
    assert!(web(&n.state()).is_none());

    // 1. A file dropped into the directory: Running within a second of the write.
    let file = dir.join("web.yaml");
    let t0 = Instant::now();
    std::fs::write(&file, manifest("one")).unwrap();
    let took = time_until(&n, t0, Duration::from_secs(30), |s| running(s, None));
    eprintln!("static pod Running {took:?} after the file was written");
    assert!(took < Duration::from_secs(1), "Running after {took:?}");
    let s = n.state();
    let p = web(&s).unwrap().clone();
    assert_eq!(p.owner, Owner::Static("e2e".into()));
    assert_eq!(p.node.as_deref(), Some("e2e"));
    assert_eq!(p.pinned_node.as_deref(), Some("e2e"));
    let ip = p.pod_ip.expect("a pod IP");
    assert!(ip.to_string().starts_with("10.219."), "{ip}");
    // It serves: httpd over the pod's /etc, whose hostname file is the pod's name.
    let addr = SocketAddr::from((ip, 8080));
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(5), || get(addr, "/hostname")
            .is_some_and(|b| b.trim() == "web-e2e")),
        "GET /hostname from {addr}: {:?}",
        get(addr, "/hostname")
    );
    // The sandbox carries the static label and the owner kind Node.
    let sb = sandboxes(&n);
    assert_eq!(sb.len(), 1, "{sb:?}");
    assert_eq!(
        sb[0].labels.get("kommit.dev/static").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        sb[0]
            .labels
            .get("kommit.dev/owner-kind")
            .map(String::as_str),
        Some("Node")
    );

    // 2. `kommit get pods -A -o wide` lists it on the node; JSON names the node as owner.
    let (ok, out, err) = n.kommit(&["get", "pods", "-A", "-o", "wide"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("web-e2e"))
        .unwrap_or_else(|| panic!("web-e2e in:\n{out}"));
    assert!(line.starts_with("default "), "{line}");
    assert!(line.contains("Running") && line.contains(" e2e"), "{line}");
    assert!(line.contains(&ip.to_string()), "{line}");
    let (ok, out, err) = n.kommit(&["get", "pods", "-o", "json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "web-e2e")
        .expect("web-e2e in the JSON list");
    assert_eq!(item["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(item["metadata"]["ownerReferences"][0]["name"], "e2e");

    // 3. An invalid file is skipped (logged with its location) and never stops the valid one.
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers: 3\n",
    )
    .unwrap();
    let bad = dir.join("bad.yaml").display().to_string();
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(10), || n
            .log()
            .lines()
            .any(|l| l.contains(&format!("{bad}:6:")) && l.contains(": error: "))),
        "the invalid file was not reported:\n{}",
        kommit_tests::agent_support::tail(&n.log(), 30)
    );
    assert_eq!(web(&n.state()).map(|p| p.uid.clone()), Some(p.uid.clone()));
    std::fs::remove_file(dir.join("bad.yaml")).unwrap();

    // 4. An edit: a new incarnation replaces the old one.
    let t0 = Instant::now();
    std::fs::write(&file, manifest("two")).unwrap();
    let took = time_until(&n, t0, Duration::from_secs(30), |s| {
        running(s, Some(p.uid.as_str()))
    });
    eprintln!("edited static pod Running {took:?} after the write");
    let s = n.state();
    let p2 = web(&s).unwrap().clone();
    assert_ne!(p2.uid, p.uid);
    let env = &p2.spec.containers[0].env;
    assert!(format!("{env:?}").contains("two"), "{env:?}");
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(15), || {
            let sb = sandboxes(&n);
            sb.len() == 1 && sb[0].labels.get("kommit.dev/uid") == Some(&p2.uid)
        }),
        "the old incarnation's sandbox is gone: {:?}",
        sandboxes(&n)
    );

    // 5. The file deleted: the pod and its container are gone.
    let t0 = Instant::now();
    std::fs::remove_file(&file).unwrap();
    let took = time_until(&n, t0, Duration::from_secs(30), |s| web(s).is_none());
    eprintln!("static pod gone from the state {took:?} after the delete");
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(15), || sandboxes(&n).is_empty()),
        "the sandbox is gone: {:?}",
        sandboxes(&n)
    );
    eprintln!(
        "static pod's sandbox removed {:?} after the delete",
        t0.elapsed()
    );
    assert!(n.state().static_pods.is_empty());

    // 6. Back, then a daemon restart with the flag: the same incarnation, not restarted.
    std::fs::write(&file, manifest("three")).unwrap();
    time_until(&n, Instant::now(), Duration::from_secs(30), |s| {
        web(s).is_some_and(|p| p.ready)
    });
    let started = |s: &ClusterState| {
        web(s).and_then(|p| match &p.containers.first()?.state {
            Some(ContainerState::Running { started_at }) => Some((p.uid.clone(), *started_at)),
            _ => None,
        })
    };
    let before = started(&n.state()).expect("running");
    n.kill9();
    n.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(started(&n.state()), Some(before), "after a restart");
    assert_eq!(sandboxes(&n).len(), 1);

    // 7. A restart without --static-pods: the node has none any more.
    n.kill9();
    n.extra_args.clear();
    n.start();
    let t0 = Instant::now();
    time_until(&n, t0, Duration::from_secs(30), |s| web(s).is_none());
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(15), || sandboxes(&n).is_empty()),
        "the sandbox is gone after a restart without the flag: {:?}",
        sandboxes(&n)
    );
    eprintln!(
        "without the flag, gone {:?} after the restart",
        t0.elapsed()
    );
}
