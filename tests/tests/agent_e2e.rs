//! The node agent end to end, as root: one real `kommit daemon` with a bare repository as
//! its remote. A team's pushes become running containers, rolling updates keep their
//! availability, bad commits leave the running pods alone, ConfigMap edits reach mounted
//! files without a restart, a SIGKILLed daemon restarts no container, crash loops back off
//! 10, 20, 40 s, and a failing liveness probe restarts its container with an event.
//!
//! Skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_reconcilers::{ClusterState, ContainerState, PodPhase, PodRecord};
use kommit_tests::agent_support::{http_get, tail, AgentNode};
use kommit_tests::runtime_support::skip_privileged;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn hello(s: &ClusterState) -> Vec<&PodRecord> {
    s.pods
        .values()
        .filter(|p| p.name.starts_with("hello-"))
        .collect()
}

fn ready_hello(s: &ClusterState) -> usize {
    hello(s)
        .iter()
        .filter(|p| p.ready && p.phase == PodPhase::Running)
        .count()
}

/// (pod, container start time) of every hello container.
fn starts(s: &ClusterState) -> BTreeMap<String, Option<u64>> {
    hello(s)
        .iter()
        .map(|p| {
            let t = p.containers.first().and_then(|c| match &c.state {
                Some(ContainerState::Running { started_at }) => Some(*started_at),
                _ => None,
            });
            (p.name.clone(), t)
        })
        .collect()
}

/// One line per hello pod: what the rollout assertion shows at its low point.
fn pod_table(s: &ClusterState) -> String {
    hello(s)
        .iter()
        .map(|p| {
            format!(
                "{} {:?} ready={} since={:?} image={} ip={:?} containers={:?}",
                p.name,
                p.phase,
                p.ready,
                p.ready_since,
                p.spec.containers[0].image,
                p.pod_ip,
                p.containers
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn page(p: &PodRecord) -> Option<String> {
    http_get(SocketAddr::from((p.pod_ip?, 8080)), "/index.html")
}

#[test]
fn pushes_become_running_pods() {
    if skip_privileged("agent end to end") {
        return;
    }
    let mut n = AgentNode::new("e2e", 213);
    let t0 = Instant::now();
    let c1 = n.push("the template");
    n.start();

    // 1. The template: both pods Running and Ready, the page served from a pod IP.
    n.wait_state(Duration::from_secs(60), "2 hello pods ready", |s| {
        s.commit.as_deref() == Some(c1.as_str()) && ready_hello(s) == 2
    });
    eprintln!("template ready after {:?}", t0.elapsed());
    let s = n.state();
    for p in hello(&s) {
        let body =
            page(p).unwrap_or_else(|| panic!("page from {:?}: {}", p.pod_ip, tail(&n.log(), 40)));
        assert!(body.contains("hello from kommit"), "{body}");
        assert!(n.pod_cidr.starts_with("10.213."), "test CIDR");
        assert_eq!(p.node.as_deref(), Some("e2e"));
    }
    // The node acknowledged the commit once its pods converged.
    n.wait_state(Duration::from_secs(20), "ack of the template", |s| {
        s.nodes.get("e2e").and_then(|r| r.acked.as_deref()) == Some(c1.as_str())
    });
    // ...and the commit's note carries that ack, written by the leader from the state.
    let note = |c: &str| {
        std::process::Command::new("git")
            .args([
                "--git-dir",
                n.origin.to_str().unwrap(),
                "notes",
                "--ref=kommit",
                "show",
                c,
            ])
            .output()
            .ok()
            .and_then(|o| {
                kommit_daemon::git::note::StatusNote::from_yaml(
                    c,
                    &String::from_utf8_lossy(&o.stdout),
                )
                .ok()
            })
    };
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(30), || note(&c1)
            .is_some_and(|n| n.acks.contains_key("e2e"))),
        "the note of {c1} carries the node's ack: {:?}",
        note(&c1)
    );
    // kubectl-shaped output.
    let (ok, out, err) = n.kommit(&["get", "pods", "-o", "json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["kind"], "List");
    let item = &list["items"][0];
    assert_eq!(item["status"]["phase"], "Running");
    assert_eq!(item["spec"]["nodeName"], "e2e");
    assert_eq!(item["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(item["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(item["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());
    let ip = item["status"]["podIP"].as_str().unwrap().to_string();
    let (ok, exec_out, err) = n.kommit(&[
        "exec",
        item["metadata"]["name"].as_str().unwrap(),
        "--",
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(ok, "{err}");
    assert!(
        exec_out.contains(&format!("inet {ip}/")),
        "the pod's IP in get pods is the IP inside the pod: {exec_out}"
    );

    // 2. Scale up, then a new image tag: a rolling update that keeps 3 ready (maxUnavailable 0).
    let dep = n.work.join("apps/hello/deployment.yaml");
    let text = std::fs::read_to_string(&dep).unwrap();
    std::fs::write(&dep, text.replace("replicas: 2", "replicas: 3")).unwrap();
    let scale = n.push("scale to 3");
    n.wait_state(Duration::from_secs(60), "3 hello pods ready", |s| {
        s.commit.as_deref() == Some(scale.as_str()) && ready_hello(s) == 3
    });
    let text = std::fs::read_to_string(&dep).unwrap();
    std::fs::write(&dep, text.replace("busybox:1.36", "busybox:1.37")).unwrap();
    let update = n.push("busybox 1.37");
    let mut min_ready = usize::MAX;
    let mut low_point = String::new();
    let mut samples = 0;
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = n.try_state() {
            samples += 1;
            if s.commit.as_deref() == Some(update.as_str()) {
                if ready_hello(&s) < min_ready {
                    min_ready = ready_hello(&s);
                    low_point = pod_table(&s);
                }
                let done = hello(&s).len() == 3
                    && ready_hello(&s) == 3
                    && hello(&s)
                        .iter()
                        .all(|p| p.spec.containers[0].image.as_str() == "busybox:1.37");
                if done {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < end,
            "rolling update did not finish: {}",
            tail(&n.log(), 60)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        min_ready >= 3,
        "ready dropped to {min_ready} during the rollout ({samples} samples):\n{low_point}\n{}",
        tail(&n.log(), 80)
    );
    eprintln!("rolling update: {samples} samples, never below {min_ready} ready");

    // 3. A broken manifest: refused, the running pods untouched.
    let before = starts(&n.state());
    n.write(
        "apps/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let broken = n.push("broken");
    let notes = || {
        std::process::Command::new("git")
            .args([
                "--git-dir",
                n.origin.to_str().unwrap(),
                "notes",
                "--ref=kommit",
                "show",
                &broken,
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    assert!(
        kommit_tests::agent_support::wait_for(Duration::from_secs(30), || notes()
            .contains("refused")),
        "refused note: {}",
        tail(&n.log(), 30)
    );
    assert!(
        notes().contains("apps/broken.yaml:4"),
        "note names file:line: {}",
        notes()
    );
    let s = n.state();
    assert_eq!(s.commit.as_deref(), Some(update.as_str()));
    assert_eq!(starts(&s), before, "old pods untouched");
    std::fs::remove_file(n.work.join("apps/broken.yaml")).unwrap();
    n.push("fix");

    // 4. Revert the scale-up: the cluster follows.
    kommit_tests::agent_support::git(&n.work, &["revert", "--no-edit", &scale]);
    kommit_tests::agent_support::git(&n.work, &["push", "--quiet", "origin", "HEAD:main"]);
    n.wait_state(Duration::from_secs(60), "back to 2 pods", |s| {
        hello(s).len() == 2 && ready_hello(s) == 2
    });

    // 5. A ConfigMap edit reaches the mounted file in the running pods, without a restart.
    let before = starts(&n.state());
    let cm = n.work.join("apps/hello/configmap.yaml");
    let text = std::fs::read_to_string(&cm).unwrap();
    std::fs::write(
        &cm,
        text.replace("served by a Deployment", "served, edited, by a Deployment"),
    )
    .unwrap();
    n.push("edit the page");
    let edited = kommit_tests::agent_support::wait_for(Duration::from_secs(30), || {
        n.try_state().is_some_and(|s| {
            hello(&s)
                .iter()
                .all(|p| page(p).is_some_and(|b| b.contains("served, edited, by")))
        })
    });
    assert!(edited, "edited page served: {}", tail(&n.log(), 30));
    let s = n.state();
    assert_eq!(
        starts(&s),
        before,
        "no container restarted for a ConfigMap edit"
    );
    assert!(hello(&s).iter().all(|p| p.restarts == 0));

    // 6. SIGKILL and restart the daemon: no container restarts, same start times.
    n.kill9();
    let runtimes = n.runtimes();
    let running_before: Vec<_> = runtimes.containers.list().unwrap();
    n.start();
    std::thread::sleep(Duration::from_secs(3));
    let s = n.state();
    assert_eq!(starts(&s), before, "start times after a daemon restart");
    assert!(hello(&s).iter().all(|p| p.restarts == 0 && p.ready));
    let running_after: Vec<_> = runtimes.containers.list().unwrap();
    let pids = |l: &[kommit_runtime::spec::PodStatus]| -> Vec<Option<u32>> {
        l.iter()
            .flat_map(|p| p.containers.iter().map(|c| c.pid))
            .collect()
    };
    assert_eq!(
        pids(&running_before),
        pids(&running_after),
        "same container processes"
    );

    // 7. A crash loop backs off 10 s, then 20 s (the whole series to the 5-minute cap is
    // `plan::backoff_ms`'s unit test; here the real agent shows the doubling); a failing
    // liveness probe restarts with an event.
    n.write(
        "apps/faulty.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "exit 3"]
---
apiVersion: v1
kind: Pod
metadata:
  name: sick
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/alive"]}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    n.push("faulty pods");
    n.wait_state(Duration::from_secs(40), "the sick pod restarted", |s| {
        s.pods.get("default/sick").is_some_and(|p| p.restarts >= 1)
    });
    let (ok, describe, err) = n.kommit(&["describe", "pod", "sick"]);
    assert!(ok, "{err}");
    assert!(
        describe.contains("Unhealthy") && describe.contains("Liveness probe failed"),
        "{describe}"
    );
    assert!(describe.contains("Killing"), "{describe}");
    // Start times of the crasher's runs, from the runtime's own records.
    let rt = n.runtimes();
    let mut starts_ms: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let ok = kommit_tests::agent_support::wait_for(Duration::from_secs(120), || {
        for p in rt.containers.list().unwrap_or_default() {
            if !p.id.starts_with("default_crasher_") {
                continue;
            }
            for c in p.containers {
                if let (Some((_, a)), Some(s), Some(f)) = (
                    kommit_agent::plan::parse_runtime_name(&c.name),
                    c.started_at_ms,
                    c.finished_at_ms,
                ) {
                    starts_ms.insert(a, (s, f));
                }
            }
        }
        starts_ms.contains_key(&2)
    });
    assert!(
        ok,
        "the crasher ran 3 times: {starts_ms:?}\n{}",
        tail(&n.log(), 40)
    );
    for (a, want) in [(1u32, 10_000u64), (2, 20_000)] {
        let gap = starts_ms[&a].0 - starts_ms[&(a - 1)].1;
        assert!(
            gap.abs_diff(want) <= want / 10,
            "restart {a} after {gap} ms, want {want} ms ±10%: {starts_ms:?}"
        );
    }
    let s = n.state();
    let crasher = &s.pods["default/crasher"];
    assert!(crasher.restarts >= 2);

    // 8. A file deleted: its objects are pruned and their containers gone.
    std::fs::remove_file(n.work.join("apps/faulty.yaml")).unwrap();
    n.push("remove the faulty pods");
    let gone = kommit_tests::agent_support::wait_for(Duration::from_secs(60), || {
        rt.containers.list().is_ok_and(|l| {
            !l.iter()
                .any(|p| p.id.starts_with("default_crasher_") || p.id.starts_with("default_sick_"))
        })
    });
    assert!(
        gone,
        "pruned pods removed from the runtime: {}",
        tail(&n.log(), 30)
    );
    eprintln!("end to end in {:?}", t0.elapsed());
}
