//! Cross-node reach (issues 13 and 14): on a three-node cluster of real daemons, each a host
//! of its own in a network namespace, a client pod on n1 fetches from a web pod on n3 by the
//! pod's IP and by its Service's name (resolved by n1's cluster DNS, reached through n1's
//! Service proxy); the web pod sees the client's own pod address (no masquerade inside the
//! pod network). Then n3 is lost and removed (`kommit node remove`): its pod-CIDR route goes
//! from the other nodes.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::PodPhase;
use kommit_tests::cluster::Cluster;
use kommit_tests::runtime_support::skip_privileged;
use std::time::{Duration, Instant};

const APPS: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {node: n3}
  containers:
  - name: web
    image: busybox:1.36
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -v -p 8080 -h /www"]
    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      tcpSocket: {port: http}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {node: n1}
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
"#;

/// Fetches `/` from `target` (`ip port`) in the client pod with busybox `nc` (busybox's
/// static `wget` crashes in glibc's NSS); the response's last line.
fn fetch(c: &Cluster, target: &str) -> (bool, String) {
    c.node(1).exec_in(
        "client",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} | tail -n 1"),
    )
}

#[test]
fn a_pod_on_n1_reaches_a_pod_on_n3_by_ip_and_service_name_until_n3_is_removed() {
    if skip_privileged("cluster cross-node reach") {
        return;
    }
    let mut c = Cluster::new(3);
    let names = c.names();
    c.start();
    std::fs::remove_dir_all(c.work.join("apps/hello")).unwrap();
    c.write("apps/reach/reach.yaml", APPS);
    let commit = c.push("web on n3, client on n1");
    let t = Instant::now();
    c.wait_state(
        Duration::from_secs(90),
        "web ready on n3, client running on n1",
        |s| {
            s.commit.as_deref() == Some(commit.as_str())
                && s.pods.get("default/web").is_some_and(|p| {
                    p.node.as_deref() == Some("n3") && p.phase == PodPhase::Running && p.ready
                })
                && s.pods.get("default/client").is_some_and(|p| {
                    p.node.as_deref() == Some("n1") && p.phase == PodPhase::Running
                })
        },
    );
    println!("TIMING push_to_pods_running_ms={}", t.elapsed().as_millis());
    let s = c.node(1).state();
    let web_ip = s.pods["default/web"].pod_ip.unwrap();
    let client_ip = s.pods["default/client"].pod_ip.unwrap();
    let vip = s.service_ips["default/web"];
    let n3_cidr = s.nodes["n3"].pod_cidr.unwrap();
    assert!(n3_cidr.contains(&web_ip), "{web_ip} in n3's {n3_cidr}");

    // By pod IP, across the nodes (routes may still be on their way when the pods run).
    let t = Instant::now();
    let mut last = (false, String::new());
    let reached = kommit_tests::agent_support::wait_for(Duration::from_secs(20), || {
        last = fetch(&c, &format!("{web_ip} 8080"));
        last.0 && last.1.trim() == "web"
    });
    assert!(
        reached,
        "client -> {web_ip}:8080: {last:?}\nn1 routes:\n{}\n{}",
        c.node(1).net.routes(),
        c.logs(30)
    );
    println!("TIMING pod_ip_reach_ms={}", t.elapsed().as_millis());

    // The web pod saw the client's own address: no masquerade between pod CIDRs.
    let (ok, log, err) = c.node(3).kommit(&["logs", "web", "--tail", "1"]);
    assert!(ok, "{err}");
    assert!(
        log.contains(&format!("{client_ip}]:")) || log.contains(&format!("{client_ip}:")),
        "web's last client: {log}"
    );

    // By Service name: n1's cluster DNS answers the ClusterIP, n1's proxy leads to n3.
    let (ok, out) = c
        .node(1)
        .exec_in("client", "nslookup web.default.svc.cluster.local");
    assert!(
        ok && out.contains(&format!("Address: {vip}")),
        "nslookup: {out}"
    );
    let t = Instant::now();
    let by_name =
        "$(nslookup web.default.svc.cluster.local | awk '/^Address: / { a = $2 } END { print a }') 80";
    let reached = kommit_tests::agent_support::wait_for(Duration::from_secs(10), || {
        last = fetch(&c, by_name);
        last.0 && last.1.trim() == "web"
    });
    assert!(
        reached,
        "client -> web.default.svc.cluster.local:80: {last:?}"
    );
    println!("TIMING service_name_reach_ms={}", t.elapsed().as_millis());

    // n3 is lost, then removed: its route goes from n1 and n2.
    let route = format!("{n3_cidr} via {} ", c.node(3).net.addr);
    for i in [1, 2] {
        assert!(c.node(i).net.routes().contains(&route), "n{i} has {route}");
    }
    c.node_mut(3).power_off();
    let (ok, out, err) = c.node(1).kommit(&["node", "remove", "n3"]);
    assert!(ok, "kommit node remove n3: {out}{err}");
    let t = Instant::now();
    c.wait(
        Duration::from_secs(20),
        "n3's route gone from n1 and n2",
        |c| {
            [1, 2]
                .iter()
                .all(|&i| !c.node(i).net.routes().contains(&route))
        },
    );
    println!(
        "TIMING node_remove_to_route_gone_ms={}",
        t.elapsed().as_millis()
    );
    let s = c.node(1).state();
    assert!(!s.nodes.contains_key("n3"), "n3 left the state");
    let (ok, out) = fetch(&c, &format!("{web_ip} 8080"));
    assert!(
        !(ok && out.trim() == "web"),
        "web on the removed n3 still answers: {out}"
    );

    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
