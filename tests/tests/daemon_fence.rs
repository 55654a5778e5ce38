//! Self-fencing end to end, through the `kommit` binary: a daemon whose lease expires stops
//! the StatefulSet pods in its data dir's container runtime, and only those.
//!
//! A child `kommit daemon --bootstrap` shares its data dir with a Linux runtime that runs two
//! pods: one labelled as a StatefulSet pod, one not. An in-process node joins, so the cluster
//! has two voters. While both run, the child's lease is renewed and nothing is stopped. When
//! the in-process node shuts down, the child loses its quorum, its lease expires, and its
//! fence hook stops the StatefulSet pod's container; the other keeps running.
//!
//! Root; skipped only with KOMMIT_SKIP_PRIVILEGED=1. Needs the daemon binary (built with the
//! workspace's tests).

use kommit_daemon::consensus::liveness::LogFence;
use kommit_daemon::consensus::node::{Node, NodeConfig};
use kommit_daemon::consensus::node_id_for;
use kommit_daemon::fence::OWNER_KIND_LABEL;
use kommit_reconcilers::ClusterState;
use kommit_runtime::spec::{ContainerSpec, ContainerState, PodSpec};
use kommit_runtime::ContainerRuntime;
use kommit_tests::fixtures::{create_token, free_port, kommit_bin};
use kommit_tests::runtime_support::{unique, LinuxHarness, TEST_IMAGE};
use kommit_tests::sim::cluster::wait_until;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child daemon however the test ends.
struct Daemon(Child);

/// The daemon's pod bridge: its own, so the Service proxy table its node programs (even with
/// no Service) is this test's to remove.
const BRIDGE: &str = "ktfence0";

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Err(e) = kommit_daemon::node_services::remove_proxy_rules(BRIDGE) {
            eprintln!("teardown: the daemon's proxy rules: {e:#}");
        }
    }
}

fn run_pod(rt: &dyn ContainerRuntime, id: &str, labels: &[(&str, &str)]) {
    rt.create_pod(&PodSpec::new(id).with_labels(labels.iter().copied()))
        .expect("create_pod");
    let c = ContainerSpec::new("c", TEST_IMAGE, &["sleep", "1000"]);
    rt.create_container(id, &c).expect("create_container");
    rt.start_container(id, "c").expect("start_container");
}

fn state(rt: &dyn ContainerRuntime, id: &str) -> ContainerState {
    rt.inspect(id, "c").expect("inspect").state
}

/// The harness lives outside the tokio runtime: its teardown blocks on netlink.
#[test]
fn a_daemon_that_loses_its_quorum_stops_its_statefulset_pods() {
    let Some(h) = LinuxHarness::new(Path::new(env!("CARGO_BIN_EXE_kommit-runtime-helper"))) else {
        return;
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio.block_on(fence_through_the_daemon(&h));
}

async fn fence_through_the_daemon(h: &LinuxHarness) {
    let data = h.dir.path().join("data");
    let (db, web) = (unique("fence-db-"), unique("fence-web-"));
    run_pod(&h.rt, &db, &[(OWNER_KIND_LABEL, "StatefulSet")]);
    run_pod(&h.rt, &web, &[(OWNER_KIND_LABEL, "ReplicaSet")]);

    let bin = kommit_bin();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = h.dir.path().join("daemon.log");
    let _daemon = Daemon(
        Command::new(&bin)
            .arg("daemon")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &listen, "--node-name", "f0", "--bootstrap"])
            .args(["--pod-bridge", BRIDGE])
            .args(["--heartbeat-ms", "200", "--lease-ms", "1000"])
            .args(["--down-after-ms", "1600"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("spawn kommit daemon"),
    );
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || data
            .join("kommit.sock")
            .exists())
        .await,
        "daemon came up: {}",
        daemon_log()
    );
    let token = create_token(&data);

    let mut cfg = NodeConfig::new(
        "f1",
        h.dir.path().join("f1"),
        "127.0.0.2:0".parse().expect("addr"),
    );
    cfg.liveness.heartbeat_ms = 200;
    cfg.liveness.lease_ms = 1000;
    cfg.liveness.down_after_ms = 1600;
    let peer = Node::<ClusterState>::join(cfg, &listen, &token, Box::new(LogFence))
        .await
        .expect("join the daemon's cluster");
    let want: BTreeSet<u64> = ["f0", "f1"].iter().map(|n| node_id_for(n)).collect();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let m = peer.raft().metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            mem.get_joint_config().len() == 1 && mem.voter_ids().collect::<BTreeSet<_>>() == want
        })
        .await,
        "two voters: {}",
        daemon_log()
    );

    // With its quorum, the daemon keeps renewing its lease: three lease periods, no fence.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        state(&h.rt, &db),
        ContainerState::Running,
        "{}",
        daemon_log()
    );
    assert_eq!(state(&h.rt, &web), ContainerState::Running);

    // Without it, the lease expires and the fence stops the StatefulSet pod.
    peer.shutdown().await;
    assert!(
        wait_until(Duration::from_secs(15), || state(&h.rt, &db)
            == ContainerState::Exited)
        .await,
        "StatefulSet pod fenced: {}",
        daemon_log()
    );
    let st = h.rt.inspect(&db, "c").expect("inspect db");
    assert_eq!(st.reason.as_deref(), Some("Killed"), "{st:?}");
    let text = daemon_log();
    assert!(text.contains("fenced: container stopped"), "{text}");
    assert!(!text.contains("fence failed"), "{text}");
    assert_eq!(state(&h.rt, &web), ContainerState::Running);
}
