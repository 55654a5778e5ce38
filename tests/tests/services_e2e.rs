//! Services and cluster DNS end to end, as root, from inside real pods: one `kommit daemon`
//! runs three `who` web pods (each answers with its own name), a client pod, and a
//! ClusterIP, a NodePort and a headless Service over them. The client resolves names through
//! the daemon's DNS on its bridge gateway (busybox `nslookup`) and fetches through the VIPs
//! (busybox `nc`); the host fetches through the NodePort on an address the test gives the
//! node on a link of its own, and a client in a network namespace behind that link through a
//! LoadBalancer port. Names outside the cluster go to the upstream resolver of the node's
//! `--resolv-conf`, a fake answering on a loopback address of the test's own.
//!
//! Skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::{ClusterState, PodPhase, PodRecord};
use kommit_runtime::proxy::testnet::{Netns, NetnsThread};
use kommit_tests::agent_support::{tail, wait_for, AgentNode};
use kommit_tests::runtime_support::{skip_privileged, unique};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

const WHO: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: who}
spec:
  replicas: 3
  selector: {matchLabels: {app: who}}
  template:
    metadata: {labels: {app: who}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:1.36
        command: ["sh", "-c", "hostname > /www/index.html && touch /www/ready && exec httpd -f -v -p 8080 -h /www"]
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
          failureThreshold: 1
        volumeMounts:
        - {name: www, mountPath: /www}
      volumes:
      - {name: www, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: who}
spec:
  selector: {app: who}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: who-np}
spec:
  type: NodePort
  selector: {app: who}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: v1
kind: Service
metadata: {name: who-lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: who}
  ports:
  - {port: 8088, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: who-headless}
spec:
  clusterIP: None
  selector: {app: who}
  ports:
  - {name: http, port: 8080}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
"#;

/// The node addresses NodePorts answer on: on a link the test makes (and removes).
const NODE_ADDRESS: &str = "10.215.250.1";
const SECOND_ADDRESS: &str = "10.215.251.1";
const DUMMY: &str = "ktsvcd0";

/// An external client: a network namespace of the test's own at 10.215.250.2, linked to the
/// node's `NODE_ADDRESS` by a veth pair (both removed when dropped).
struct Dummy {
    ns: Netns,
}

impl Dummy {
    fn new() -> Dummy {
        let _ = Command::new("ip").args(["link", "del", DUMMY]).output();
        let ns = Netns::create(&unique("kommit-svc-ext")).expect("netns");
        let node_cidr = format!("{NODE_ADDRESS}/24");
        let second = format!("{SECOND_ADDRESS}/32");
        for args in [
            vec![
                "link", "add", DUMMY, "type", "veth", "peer", "name", "ktsvcd1",
            ],
            vec!["link", "set", "ktsvcd1", "netns", ns.name()],
            vec!["addr", "add", &node_cidr, "dev", DUMMY],
            vec!["addr", "add", &second, "dev", DUMMY],
            vec!["link", "set", DUMMY, "up"],
        ] {
            let o = Command::new("ip").args(&args).output().expect("ip");
            assert!(o.status.success(), "ip {args:?}: {o:?}");
        }
        ns.ip(&["addr", "add", "10.215.250.2/24", "dev", "ktsvcd1"])
            .unwrap();
        ns.ip(&["link", "set", "ktsvcd1", "up"]).unwrap();
        Dummy { ns }
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", DUMMY]).output();
    }
}

fn who(s: &ClusterState) -> Vec<&PodRecord> {
    s.pods
        .values()
        .filter(|p| p.name.starts_with("who-"))
        .collect()
}

fn ready_who(s: &ClusterState) -> usize {
    who(s)
        .iter()
        .filter(|p| p.ready && p.phase == PodPhase::Running)
        .count()
}

/// Runs `script` with `sh -c` in the client pod; (success, stdout + stderr).
fn in_client(n: &AgentNode, script: &str) -> (bool, String) {
    let (ok, out, err) = n.kommit(&["exec", "client", "--", "sh", "-c", script]);
    (ok, format!("{out}{err}"))
}

/// The pod names `count` fetches of `/` on `ip:port` from the client answered with (the
/// last line of each response), with busybox `nc`. (Busybox's `wget` is static and crashes
/// in glibc's NSS, even on an address.)
fn fetch_names(n: &AgentNode, target: &str, count: usize) -> Vec<String> {
    let (ip, port) = target.split_once(':').expect("ip:port");
    let (_, out) = in_client(
        n,
        &format!(
            "for i in $(seq 1 {count}); do printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 {ip} {port} | tail -n 1 || echo FAILED; echo; done"
        ),
    );
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The node's upstream resolver: `OUTSIDE_NAME` is `OUTSIDE_ADDRESS` (a documentation
/// address, only ever an answer), every other name NXDOMAIN. Keeps the names it is asked.
const UPSTREAM: &str = "127.0.215.53";
const OUTSIDE_NAME: &str = "outside.example.";
const OUTSIDE_ADDRESS: [u8; 4] = [192, 0, 2, 10];

struct Upstream {
    questions: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
        use hickory_proto::rr::{rdata::A, RData, Record};
        use std::sync::atomic::Ordering;
        let sock = std::net::UdpSocket::bind((UPSTREAM, 53)).expect("bind the fake upstream");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let questions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (q, st) = (questions.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
                m.metadata.recursion_desired = req.metadata.recursion_desired;
                m.metadata.recursion_available = true;
                for query in req.queries.iter() {
                    q.lock()
                        .unwrap()
                        .push(query.name().to_ascii().to_lowercase());
                    m.add_query(query.clone());
                    if query.name().to_ascii().eq_ignore_ascii_case(OUTSIDE_NAME) {
                        let [a, b, c, d] = OUTSIDE_ADDRESS;
                        m.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::A(A::new(a, b, c, d)),
                        ));
                    } else {
                        m.metadata.response_code = ResponseCode::NXDomain;
                    }
                }
                if let Ok(bytes) = m.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        Upstream {
            questions,
            stop,
            thread: Some(thread),
        }
    }

    fn questions(&self) -> Vec<String> {
        self.questions.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `kommit` command whose stdout is read line by line; killed on drop.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    fn start(n: &AgentNode, args: &[&str]) -> Watch {
        let mut child = Command::new(kommit_tests::fixtures::kommit_bin())
            .args(&args[..1])
            .arg("--data-dir")
            .arg(&n.data)
            .args(&args[1..])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn kommit");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The lines so far, up to and including the first that `stop` accepts (or all that
    /// came within `timeout`).
    fn lines_until(&self, timeout: Duration, stop: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while let Ok(l) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let done = stop(&l);
            got.push(l);
            if done {
                break;
            }
        }
        got
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pods_reach_services_by_name_and_vip() {
    if skip_privileged("services end to end") {
        return;
    }
    let external = Dummy::new();
    let mut n = AgentNode::new("svc", 214);
    std::fs::remove_dir_all(n.work.join("apps/hello")).unwrap();
    n.write("apps/who/who.yaml", WHO);
    let upstream = Upstream::start();
    let resolv = n.dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {UPSTREAM}\nsearch example.org\n"),
    )
    .unwrap();
    n.extra_args = vec![
        "--nodeport-addresses".into(),
        format!("{NODE_ADDRESS}/32,{SECOND_ADDRESS}/32"),
        "--resolv-conf".into(),
        resolv.display().to_string(),
    ];
    let c1 = n.push("who and a client");
    n.start();
    n.wait_state(
        Duration::from_secs(90),
        "3 who pods ready, client running",
        |s| {
            s.commit.as_deref() == Some(c1.as_str())
                && ready_who(s) == 3
                && s.pods
                    .get("default/client")
                    .is_some_and(|p| p.phase == PodPhase::Running)
        },
    );
    let s = n.state();
    let vip = s.service_ips["default/who"];
    let names: BTreeSet<String> = who(&s).iter().map(|p| p.name.clone()).collect();
    let ips: Vec<String> = who(&s)
        .iter()
        .map(|p| p.pod_ip.unwrap().to_string())
        .collect();

    // 1. The pod's resolv.conf points at the cluster DNS, which answers the Service's name
    //    with its ClusterIP.
    let (ok, resolv) = in_client(&n, "cat /etc/resolv.conf");
    assert!(ok, "{resolv}");
    assert!(resolv.contains("nameserver 10.214.0.1\n"), "{resolv}");
    // The node's own search domains follow the cluster's, as the kubelet writes them.
    assert!(
        resolv.contains(
            "search default.svc.cluster.local svc.cluster.local cluster.local example.org\n"
        ),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let (ok, out) = in_client(&n, "nslookup who.default.svc.cluster.local");
    assert!(
        ok && out.contains(&vip.to_string()),
        "{out}\n{}",
        tail(&n.log(), 40)
    );

    // 2. The short name resolves through the search path; through the VIP every ready
    //    endpoint answers. (Busybox's static wget cannot resolve names itself: glibc's NSS
    //    does not load in a static binary, so it is given the address.)
    // (Busybox's nslookup asks every search domain and fails when any says NXDOMAIN.)
    let (_, out) = in_client(&n, "nslookup who");
    assert!(
        out.contains(&format!(
            "Name:\twho.default.svc.cluster.local\nAddress: {vip}"
        )),
        "{out}"
    );
    let url = format!("{vip}:80");
    let got: BTreeSet<String> = fetch_names(&n, &url, 40).into_iter().collect();
    assert_eq!(got, names, "40 fetches through {url} reach every pod");

    // 3. Headless: the endpoint IPs; SRV for its named port; NXDOMAIN for what is not there.
    let (ok, out) = in_client(&n, "nslookup who-headless.default.svc.cluster.local");
    assert!(ok, "{out}");
    for ip in &ips {
        assert!(
            out.contains(ip.as_str()),
            "headless answer lacks {ip}: {out}"
        );
    }
    assert!(!out.contains(&vip.to_string()), "{out}");
    let (ok, out) = in_client(
        &n,
        "nslookup -type=SRV _http._tcp.who-headless.default.svc.cluster.local",
    );
    assert!(ok && out.contains("8080"), "SRV: {out}");
    let (ok, out) = in_client(&n, "nslookup nosuch.default.svc.cluster.local");
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");
    // A name outside the cluster is forwarded to the node's upstream resolver; the cluster's
    // own names never are.
    let (_, out) = in_client(&n, &format!("nslookup {OUTSIDE_NAME}"));
    let [a, b, c, d] = OUTSIDE_ADDRESS;
    assert!(
        out.contains(&format!("Address: {a}.{b}.{c}.{d}")),
        "{OUTSIDE_NAME} through the cluster DNS: {out}\n{}",
        tail(&n.log(), 20)
    );
    let asked = upstream.questions();
    assert!(asked.iter().any(|q| q == OUTSIDE_NAME), "{asked:?}");
    assert!(
        !asked.iter().any(|q| q.ends_with("cluster.local.")),
        "cluster names reached the upstream: {asked:?}"
    );

    // 4. A pod whose readiness fails stops getting traffic once its status is applied, and
    //    gets it back when it recovers.
    let victim = who(&s)[0].name.clone();
    // `kommit get pods -w` (as kubectl's) watches it happen.
    let watch = Watch::start(&n, &["get", "pods", "-w", "-l", "app=who"]);
    let (ok, out, err) = n.kommit(&["exec", &victim, "--", "rm", "/www/ready"]);
    assert!(ok, "{out}{err}");
    assert!(
        wait_for(Duration::from_secs(20), || n
            .try_state()
            .is_some_and(|s| !s.pods[&format!("default/{victim}")].ready)),
        "{victim} reported not ready"
    );
    let applied = Instant::now();
    let lines = watch.lines_until(Duration::from_secs(10), |l| {
        l.starts_with(&victim) && l.contains(" 0/1 ")
    });
    assert!(
        lines.first().is_some_and(|h| h.starts_with("NAME ")),
        "watch output: {lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("who-")).count(),
        4,
        "three pods listed, then the one that changed: {lines:?}"
    );
    drop(watch);
    std::thread::sleep(Duration::from_secs(1).saturating_sub(applied.elapsed()));
    let got = fetch_names(&n, &url, 30);
    assert!(
        !got.contains(&victim) && got.iter().all(|g| names.contains(g)),
        "1 s after {victim} was not ready: {got:?}"
    );
    let (ok, out, err) = n.kommit(&["exec", &victim, "--", "touch", "/www/ready"]);
    assert!(ok, "{out}{err}");
    assert!(
        wait_for(Duration::from_secs(20), || fetch_names(&n, &url, 10)
            .contains(&victim)),
        "{victim} gets traffic again"
    );

    // 5. The node itself reaches the ClusterIP too (`curl` on a kommit node works as on a
    //    Kubernetes one).
    let body = kommit_tests::agent_support::http_get((vip, 80).into(), "/index.html");
    assert!(
        body.as_ref().is_some_and(|b| names.contains(b.trim())),
        "ClusterIP {vip} from the host: {body:?}"
    );

    // 6. The NodePort and the LoadBalancer's port answer on every node address, from the
    //    host.
    for a in [SECOND_ADDRESS, NODE_ADDRESS] {
        for port in [30080, 8088] {
            let addr: std::net::SocketAddr = format!("{a}:{port}").parse().unwrap();
            let body = kommit_tests::agent_support::http_get(addr, "/index.html");
            assert!(
                body.as_ref().is_some_and(|b| names.contains(b.trim())),
                "{addr}: {body:?}"
            );
        }
    }
    let addr: std::net::SocketAddr = format!("{NODE_ADDRESS}:30080").parse().unwrap();
    let body = kommit_tests::agent_support::http_get(addr, "/index.html");
    assert!(
        body.as_ref().is_some_and(|b| names.contains(b.trim())),
        "NodePort {addr}: {body:?}"
    );
    // Under the Cluster policy the client is masqueraded: the pod's log (httpd -v logs each
    // client) shows the node's bridge address.
    let served = body.unwrap().trim().to_string();
    let last_client = |pod: &str| -> String {
        let (_, log, _) = n.kommit(&["logs", pod, "--tail", "1"]);
        log.trim().to_string()
    };
    let seen = last_client(&served);
    assert!(
        seen.contains("10.214.0.1]:"),
        "NodePort client in {served}'s log: {seen}"
    );

    // 7. A LoadBalancer answers on its own port on the node's address, and reports that
    //    address as its ingress; `externalTrafficPolicy: Local` keeps the client's address.
    let lb: std::net::SocketAddr = format!("{NODE_ADDRESS}:8088").parse().unwrap();
    let client = NetnsThread::spawn(&external.ns.path()).expect("a thread in the client's netns");
    let body = client.run(move || kommit_tests::agent_support::http_get(lb, "/index.html"));
    let served = body
        .as_deref()
        .map(str::trim)
        .filter(|b| names.contains(*b))
        .unwrap_or_else(|| panic!("LoadBalancer {lb}: {body:?}"))
        .to_string();
    let seen = last_client(&served);
    assert!(
        seen.contains("10.215.250.2]:"),
        "LoadBalancer client kept in {served}'s log: {seen}"
    );
    let (ok, out, err) = n.kommit(&["get", "services", "who-lb", "-o", "json"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"loadBalancer\""), "{out}");
}
