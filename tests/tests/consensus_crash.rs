//! Crash test: a node runs as a child process (the `kommit` binary, replicating the real
//! `ClusterState`) and is SIGKILLed in the middle of a stream of acknowledged writes, 20 times.
//! After every restart no acknowledged entry is lost and its digest matches the two in-process
//! nodes.
//!
//! The writes are a chain of `Adopt` entries: commit `n` names commit `n - 1` as its parent,
//! and the state adopts a commit only when its parent is the adopted one. So a state whose
//! commit is at sequence `k` has applied every acknowledged write up to `k`, in order; an
//! acknowledged write at sequence `j > k` would prove a loss.
//!
//! Needs the daemon binary: `cargo build -p kommit-daemon --bin kommit` before the tests.

use kommit_daemon::consensus::liveness::LogFence;
use kommit_daemon::consensus::node::{Node, NodeConfig};
use kommit_daemon::consensus::{node_id_for, App};
use kommit_reconcilers::{ClusterState, Entry};
use kommit_tests::fixtures::{create_token, free_port, kommit_bin, kommit_ok};
use kommit_tests::sim::cluster::wait_until;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct ChildNode {
    child: Option<Child>,
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(bin: &Path, dir: &Path, listen: &str, bootstrap: bool) -> Child {
    let mut cmd = Command::new(bin);
    cmd.arg("daemon")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", listen, "--node-name", "c0"])
        .args([
            "--heartbeat-ms",
            "200",
            "--lease-ms",
            "1000",
            "--down-after-ms",
            "1600",
        ])
        .args(["--snapshot-every", "40"])
        // Consensus only: an agent would open the node's default pod bridge and Service
        // proxy table, which a SIGKILLed process cannot remove.
        .arg("--no-agent")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if bootstrap {
        cmd.arg("--bootstrap");
    }
    cmd.spawn().expect("spawn kommit daemon")
}

#[derive(serde::Deserialize)]
struct Status {
    applied: u64,
    digest: String,
}

async fn status(client: &reqwest::Client) -> Option<Status> {
    client
        .get("http://localhost/status")
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The `n`-th commit of the write chain, as a 40-digit hex SHA.
fn commit(seq: u64) -> String {
    format!("{seq:040x}")
}

fn adopt(seq: u64, parent: Option<u64>) -> Entry {
    let desired = kommit_schemas::DesiredState::default();
    Entry::Adopt {
        commit: commit(seq),
        parent: parent.map(commit),
        digest: desired.digest(),
        desired,
        by: None,
    }
}

/// Sequence number of the adopted commit.
fn adopted_seq(s: &ClusterState) -> Option<u64> {
    s.commit
        .as_deref()
        .map(|c| u64::from_str_radix(c, 16).expect("a chain commit"))
}

async fn fetch_state(client: &reqwest::Client) -> ClusterState {
    let bytes = client
        .get("http://localhost/state")
        .send()
        .await
        .expect("state")
        .bytes()
        .await
        .expect("state body");
    <ClusterState as App>::restore(&bytes).expect("cluster state")
}

fn local(dir: &Path) -> reqwest::Client {
    kommit_daemon::consensus::local::local_client(dir).expect("local client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_write_stream_twenty_times_loses_no_acked_entry() {
    let bin = kommit_bin();
    let root = tempfile::tempdir().expect("temp dir");
    let cdir = root.path().join("c0");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = ChildNode {
        child: Some(spawn(&bin, &cdir, &listen, true)),
    };
    assert!(
        wait_until(Duration::from_secs(20), || cdir
            .join("kommit.sock")
            .exists())
        .await,
        "child daemon came up"
    );
    let token = create_token(&cdir);

    let mut nodes = Vec::new();
    for (i, ip) in [(1, "127.0.0.2"), (2, "127.0.0.3")] {
        let mut cfg = NodeConfig::new(
            &format!("p{i}"),
            root.path().join(format!("p{i}")),
            format!("{ip}:0").parse().expect("addr"),
        );
        cfg.snapshot_every = 40;
        cfg.liveness.heartbeat_ms = 200;
        cfg.liveness.lease_ms = 1000;
        cfg.liveness.down_after_ms = 1600;
        nodes.push(
            Node::<ClusterState>::join(cfg, &listen, &token, Box::new(LogFence))
                .await
                .expect("join child's cluster"),
        );
    }
    let want: std::collections::BTreeSet<u64> =
        ["c0", "p1", "p2"].iter().map(|n| node_id_for(n)).collect();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let m = nodes[0].raft().metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            mem.get_joint_config().len() == 1
                && mem.voter_ids().collect::<std::collections::BTreeSet<_>>() == want
        })
        .await,
        "3 voters"
    );

    // Highest acknowledged sequence number of the Adopt chain.
    let acked: Arc<Mutex<Option<u64>>> = Arc::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    for round in 0..20 {
        let client = local(&cdir);
        let start = adopted_seq(&fetch_state(&client).await);
        let acked2 = acked.clone();
        let writer = tokio::spawn(async move {
            let mut parent = start;
            loop {
                let seq = parent.map_or(0, |p| p + 1);
                let r = client
                    .post("http://localhost/propose")
                    .timeout(Duration::from_secs(5))
                    .json(&adopt(seq, parent))
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        *acked2.lock().expect("acked lock") = Some(seq);
                        parent = Some(seq);
                    }
                    _ => break,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..450))).await;
        if let Some(mut c) = child.child.take() {
            c.kill().expect("SIGKILL child");
            c.wait().expect("reap child");
        }
        let _ = writer.await;
        child.child = Some(spawn(&bin, &cdir, &listen, false));
        let client = local(&cdir);
        // Converged: the child's applied index and digest equal both in-process nodes'.
        let mut last = String::new();
        let mut ok = false;
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(s) = status(&client).await {
                let others: Vec<(u64, String)> = nodes
                    .iter()
                    .map(|n| (n.applied_index(), n.digest()))
                    .collect();
                last = format!("child ({}, {}) others {others:?}", s.applied, s.digest);
                if others.iter().all(|o| o.0 == s.applied && o.1 == s.digest) {
                    ok = true;
                    break;
                }
            }
        }
        assert!(ok, "round {round}: child did not converge: {last}");
        let state = fetch_state(&client).await;
        let acked = acked
            .lock()
            .expect("acked lock")
            .expect("some write was acknowledged");
        let on_child = adopted_seq(&state);
        assert!(
            on_child >= Some(acked),
            "round {round}: acknowledged commit {acked} lost on the child (it has {on_child:?})"
        );
        // (A write forwarded by the child just before its death may still commit after the
        // convergence check, so the nodes are compared against the acknowledged floor.)
        let on_p1 = nodes[0].read_local(adopted_seq);
        assert!(
            on_p1 >= Some(acked),
            "round {round}: acknowledged commit {acked} lost on p1 (it has {on_p1:?})"
        );
    }
    // The operator commands go through the local socket and become entries everywhere.
    kommit_ok(&["node", "drain", "p1"], &cdir);
    assert!(
        wait_until(Duration::from_secs(10), || nodes[1].read_local(|a| a
            .nodes
            .get("p1")
            .map(|n| n.drained)
            .unwrap_or(false)))
        .await,
        "p1 drained on p2"
    );
    let out = Command::new(&bin)
        .args(["node", "drain", "nosuch", "--data-dir"])
        .arg(&cdir)
        .output()
        .expect("node drain");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown node nosuch"));
    kommit_ok(&["node", "remove", "p2"], &cdir);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = nodes[0].raft().metrics();
            let gone = !m
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .any(|(id, _)| *id == node_id_for("p2"));
            gone && nodes[0].read_local(|a| !a.nodes.contains_key("p2"))
        })
        .await,
        "p2 removed from membership and node table"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

/// `/state?index=N` is a blocking query (as Nomad's): it answers once an entry after `N` is
/// applied, with the applied index in a header, or when its wait runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_state_queries_answer_with_the_next_entry() {
    let bin = kommit_bin();
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("b0");
    let listen = format!("127.0.0.1:{}", free_port());
    let _child = ChildNode {
        child: Some(spawn(&bin, &dir, &listen, true)),
    };
    assert!(
        wait_until(Duration::from_secs(20), || dir.join("kommit.sock").exists()).await,
        "daemon came up"
    );
    let query = |index: u64, wait: Duration| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            kommit_daemon::cli::get::fetch_state_after(&dir, index, wait).expect("state query")
        })
    };
    let (now, _) = query(0, Duration::ZERO).await.expect("query");
    assert!(now > 0, "the bootstrap applied entries");
    // An index not yet reached: the query answers when its wait runs out.
    let started = std::time::Instant::now();
    let (at, _) = query(u64::MAX - 1, Duration::from_millis(300))
        .await
        .expect("query");
    assert!(at < u64::MAX - 1);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered before its wait: {:?}",
        started.elapsed()
    );
    // An entry applied while queries wait: followed from index to index, each query waiting
    // up to 30 s, the state shows the entry long before any wait could run out.
    let client = local(&dir);
    let proposer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .post("http://localhost/propose")
            .json(&adopt(0, None))
            .send()
            .await
            .map(|r| r.status())
    });
    let follow = async {
        let mut index = now;
        loop {
            let (i, state) = query(index, Duration::from_secs(30)).await.expect("query");
            assert!(i >= index, "index went back: {i} after {index}");
            if adopted_seq(&state) == Some(0) {
                return i;
            }
            index = i;
        }
    };
    let at = tokio::time::timeout(Duration::from_secs(10), follow)
        .await
        .expect("the blocking queries answered with the entry, not after their 30 s wait");
    assert!(at > now, "index {at} after {now}");
    let status = proposer.await.expect("proposer").expect("propose");
    assert!(status.is_success(), "{status}");
}
