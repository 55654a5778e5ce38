//! In-process clusters of real nodes: redb on disk, HTTPS with mutual TLS on 127.0.0.x.

use kommit_daemon::consensus::kv::KvEntry;
use kommit_daemon::consensus::membership::VoterPolicy;
use kommit_daemon::consensus::node_id_for;
use kommit_tests::sim::cluster::{name, wait_until, Options, TestCluster};
use std::time::{Duration, Instant};

fn put(k: &str, v: &str) -> KvEntry {
    KvEntry::Put {
        key: k.into(),
        value: v.into(),
    }
}

async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in fs {
        set.push(f);
    }
    let mut out = Vec::new();
    // Poll all futures concurrently.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = set.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for d in done {
        out.push(d.expect("every future completed"));
    }
    out
}

const SETTLE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_bootstrap_join_over_mtls_and_replicate() {
    let c = TestCluster::start(3, Options::default())
        .await
        .expect("start cluster");
    let all: std::collections::BTreeSet<u64> = (0..3).map(|i| node_id_for(&name(i))).collect();
    assert!(
        wait_until(SETTLE, || c.voters(&name(0)) == all).await,
        "3 voters expected, got {:?}",
        c.voters(&name(0))
    );
    // A follower's proposal is forwarded to the leader.
    let leader = c.leader().expect("leader");
    let follower = (0..3).map(name).find(|n| *n != leader).expect("a follower");
    let idx = c
        .node(&follower)
        .propose(&put("a", "1"))
        .await
        .expect("propose via follower");
    assert!(idx > 0);
    // A linearizable read on a follower sees it.
    let v = c
        .node(&follower)
        .read_linearizable(|app| app.kv.get("a").cloned())
        .await
        .expect("linearizable read");
    assert_eq!(v.as_deref(), Some("1"));
    // Liveness recorded every node as up, with its facts.
    assert!(
        wait_until(SETTLE, || c.node(&leader).read_local(|a| {
            a.nodes.len() == 3 && a.nodes.values().all(|n| n.up && n.facts.pods == 110)
        }))
        .await,
        "every node up in the replicated node table"
    );
    c.converged(SETTLE).await.expect("digests converge");
    // Concurrent proposals are batched: 200 writes take far fewer log entries.
    let before = c.node(&leader).applied_index();
    let entries: Vec<KvEntry> = (0..200).map(|i| put(&format!("b{i}"), "x")).collect();
    let writes = entries.iter().map(|e| c.node(&follower).propose(e));
    for r in futures_join_all(writes).await {
        r.expect("batched proposal");
    }
    let used = c.node(&leader).applied_index() - before;
    assert!(
        used < 100,
        "200 concurrent proposals used {used} log entries"
    );
    assert!(
        wait_until(SETTLE, || c.node(&follower).read_local(|a| a.kv.len())
            == 201)
        .await,
        "follower applied every batched write"
    );
    // Key files are private.
    use std::os::unix::fs::PermissionsExt;
    for i in 0..3 {
        let dir = &c.cfgs[&name(i)].data_dir;
        let mode = std::fs::metadata(dir)
            .expect("data dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{} mode", dir.display());
    }
    for f in ["tls/node.key", "tls/ca.key", "tls/node.pem"] {
        let p = c.cfgs[&name(0)].data_dir.join(f);
        let mode = std::fs::metadata(&p)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} mode", p.display());
    }
    // Joining gives no CA key; the leader hands it to voters (all three here) afterwards,
    // also 0600.
    assert!(
        wait_until(SETTLE, || c.holds_ca_key(&name(1))
            && c.holds_ca_key(&name(2)))
        .await,
        "voters receive the CA key"
    );
    let mode = std::fs::metadata(c.cfgs[&name(2)].data_dir.join("tls/ca.key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_keep_three_voters_and_promote_a_learner_when_a_voter_dies() {
    let opts = Options {
        voters: VoterPolicy {
            small: 3,
            large: 3,
            large_from: 5,
        },
        ..Options::default()
    };
    let mut c = TestCluster::start(5, opts).await.expect("start cluster");
    assert!(
        wait_until(SETTLE, || c.voters(&name(0)).len() == 3
            && c.members(&name(0)).len() == 5)
        .await,
        "3 voters of 5 members, got {:?} of {:?}",
        c.voters(&name(0)),
        c.members(&name(0))
    );
    let leader = c.leader().expect("leader");
    assert!(
        wait_until(SETTLE, || c.node(&leader).read_local(|a| a
            .nodes
            .values()
            .filter(|n| n.up)
            .count()
            == 5))
        .await,
        "all 5 nodes up: {:?}",
        c.node(&leader)
            .read_local(|a| a.nodes.keys().cloned().collect::<Vec<_>>())
    );
    let voters = c.voters(&leader);
    // Voters, and only voters, receive the CA key (so any of them can admit nodes).
    let is_voter = |n: &str| voters.contains(&node_id_for(n));
    assert!(
        wait_until(SETTLE, || (0..5)
            .map(name)
            .all(|n| c.holds_ca_key(&n) == is_voter(&n)))
        .await,
        "CA key on voters only: {:?}",
        (0..5)
            .map(name)
            .map(|n| (c.holds_ca_key(&n), is_voter(&n)))
            .collect::<Vec<_>>()
    );
    let victim = (0..5)
        .map(name)
        .find(|n| *n != leader && voters.contains(&node_id_for(n)))
        .expect("a non-leader voter");
    c.stop(&victim).await;
    let victim_id = node_id_for(&victim);
    let ok = wait_until(SETTLE, || {
        let v = c.voters(&leader);
        v.len() == 3 && !v.contains(&victim_id)
    })
    .await;
    assert!(
        ok,
        "a learner replaced {victim}: voters {:?}",
        c.voters(&leader)
    );
    let promoted: Vec<_> = c.voters(&leader).difference(&voters).copied().collect();
    assert_eq!(promoted.len(), 1, "exactly one learner promoted");
    let promoted_name = (0..5)
        .map(name)
        .find(|n| node_id_for(n) == promoted[0])
        .expect("promoted node");
    assert!(
        wait_until(SETTLE, || c.holds_ca_key(&promoted_name)).await,
        "the promoted learner received the CA key"
    );
    assert!(
        c.members(&leader).contains(&victim_id),
        "the lost voter stays a learner"
    );
    // The leader declared the dead node down.
    assert!(
        wait_until(SETTLE, || c.node(&leader).read_local(|a| a
            .nodes
            .get(&victim)
            .map(|n| !n.up)
            .unwrap_or(false)))
        .await,
        "{victim} recorded down: {:?}",
        c.node(&leader).read_local(|a| a.nodes.clone())
    );
    c.node(&leader)
        .propose(&put("after", "promotion"))
        .await
        .expect("writes still commit");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_elects_a_new_leader_within_two_seconds() {
    let mut c = TestCluster::start(3, Options::default())
        .await
        .expect("start cluster");
    assert!(wait_until(SETTLE, || c.voters(&name(0)).len() == 3).await);
    c.converged(SETTLE).await.expect("settled");
    let old = c.leader().expect("leader");
    let old_id = node_id_for(&old);
    let killed = Instant::now();
    c.stop(&old).await;
    let ok = wait_until(Duration::from_secs(10), || {
        c.running().all(|(_, n)| {
            let m = n.raft().metrics();
            let l = m.borrow().current_leader;
            l.is_some() && l != Some(old_id)
        })
    })
    .await;
    let took = killed.elapsed();
    if !ok {
        for (k, n) in c.running() {
            let m = n.raft().metrics();
            let m = m.borrow();
            eprintln!(
                "{k}: {:?} term {} leader {:?} voters {:?}",
                m.state,
                m.current_term,
                m.current_leader,
                m.membership_config.membership()
            );
        }
    }
    assert!(ok, "no new leader");
    // The bound the issue names: a new leader in under 2 s with default election timing.
    assert!(took < Duration::from_secs(2), "new leader after {took:?}");
    let new = c.leader().expect("new leader");
    c.node(&new)
        .propose(&put("k", "v"))
        .await
        .expect("new leader commits");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_node_is_caught_up_by_snapshot() {
    let opts = Options {
        snapshot_every: 20,
        ..Options::default()
    };
    let mut c = TestCluster::start(3, opts).await.expect("start cluster");
    assert!(wait_until(SETTLE, || c.voters(&name(0)).len() == 3).await);
    let lag = name(2);
    c.stop(&lag).await;
    let leader = c.leader().expect("leader");
    for i in 0..120 {
        c.node(&leader)
            .propose(&put(&format!("k{i}"), "v"))
            .await
            .expect("propose");
    }
    // The leader snapshotted and purged its log past what the lagging node has.
    assert!(c.purged(&leader, SETTLE).await, "leader purged its log");
    c.restart(&lag).await.expect("restart lagging node");
    let digest = c.converged(SETTLE).await.expect("lagging node caught up");
    assert!(c.has_snapshot(&lag), "lagging node installed a snapshot");
    assert!(c.node(&lag).read_local(|a| a.kv.len()) >= 120);
    assert_eq!(c.node(&lag).digest(), digest);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_restarts_from_disk_with_equal_digests() {
    let opts = Options {
        snapshot_every: 25,
        ..Options::default()
    };
    let mut c = TestCluster::start(3, opts).await.expect("start cluster");
    assert!(wait_until(SETTLE, || c.voters(&name(0)).len() == 3).await);
    let leader = c.leader().expect("leader");
    for i in 0..60 {
        c.node(&leader)
            .propose(&put(&format!("k{i}"), &i.to_string()))
            .await
            .expect("propose");
    }
    let before = c.converged(SETTLE).await.expect("converged before");
    let kv_before = c.node(&leader).read_local(|a| a.kv.clone());
    for i in 0..3 {
        c.stop(&name(i)).await;
    }
    for i in 0..3 {
        c.restart(&name(i)).await.expect("restart from disk");
    }
    assert!(
        wait_until(SETTLE, || c.leader().is_some()).await,
        "leader after restart"
    );
    // Same key-value contents on every node as before the restart.
    assert!(
        wait_until(SETTLE, || c
            .running()
            .all(|(_, n)| n.read_local(|a| a.kv == kv_before)))
        .await,
        "state restored from disk"
    );
    let leader = c.leader().expect("leader");
    c.node(&leader)
        .propose(&put("after", "restart"))
        .await
        .expect("propose after restart");
    let after = c.converged(SETTLE).await.expect("converged after restart");
    assert_ne!(before, after);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_without_certificate_is_refused_at_the_tls_layer() {
    let c = TestCluster::start(1, Options::default())
        .await
        .expect("start cluster");
    let addr = c.cfgs[&name(0)].listen;
    // Trusts the cluster CA but presents no certificate.
    let cfg = kommit_daemon::consensus::tls::join_client_config(
        &kommit_daemon::consensus::tls::ca_hash(&c.ca_pem).expect("hash"),
    )
    .expect("client config");
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .expect("client");
    let r = client
        .get(format!("https://{addr}/cluster/status"))
        .send()
        .await;
    assert!(
        r.is_err(),
        "request without client certificate must fail, got {r:?}"
    );
    // A certificate from another CA is refused too.
    let other = kommit_daemon::consensus::tls::ClusterCa::generate("other").expect("ca");
    let id = other
        .issue("intruder", std::time::Duration::from_secs(3600))
        .expect("cert");
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(id.client_config().expect("cfg"))
        .build()
        .expect("client");
    let r = client
        .get(format!("https://{addr}/cluster/status"))
        .send()
        .await;
    assert!(r.is_err(), "foreign certificate must fail, got {r:?}");
    // The same endpoint with a cluster certificate works (the refusal above is the TLS layer).
    let tls = c.cfgs[&name(0)].data_dir.join("tls");
    let own = kommit_daemon::consensus::tls::NodeIdentity::load(&tls).expect("identity");
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(own.client_config().expect("cfg"))
        .build()
        .expect("client");
    let r = client
        .get(format!("https://{addr}/cluster/status"))
        .send()
        .await
        .expect("status with a valid certificate");
    assert!(r.status().is_success());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_join_tokens_are_refused_with_clear_errors() {
    use kommit_daemon::consensus::kv::KvApp;
    use kommit_daemon::consensus::liveness::LogFence;
    use kommit_daemon::consensus::node::{Node, NodeConfig};
    let c = TestCluster::start(1, Options::default())
        .await
        .expect("start cluster");
    let addr = c.cfgs[&name(0)].listen.to_string();
    let good = c.token().await;
    let parts: Vec<&str> = good.split('.').collect();
    let wrong_secret = format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], "0".repeat(32));
    let unknown_id = format!("{}.{}.{}.{}", parts[0], parts[1], "a".repeat(12), parts[3]);
    let wrong_ca = format!("{}.{}.{}.{}", parts[0], "b".repeat(64), parts[2], parts[3]);
    let cases = [
        (wrong_secret.as_str(), "wrong secret"),
        (unknown_id.as_str(), "unknown join token id"),
        (wrong_ca.as_str(), "does not match the join token's CA hash"),
        ("not-a-token", "malformed token"),
    ];
    for (i, (token, want)) in cases.iter().enumerate() {
        let dir = c.root.path().join(format!("bad{i}"));
        let cfg = NodeConfig::new(
            &format!("bad{i}"),
            dir.clone(),
            "127.0.0.9:0".parse().expect("addr"),
        );
        let err = match Node::<KvApp>::join(cfg, &addr, token, Box::new(LogFence)).await {
            Ok(_) => panic!("join with {token} succeeded"),
            Err(e) => format!("{e}"),
        };
        assert!(err.contains(want), "join with {token}: {err}");
        assert!(
            !dir.join("tls/node.pem").exists(),
            "no identity stored after refusal"
        );
    }
    let m = c.node(&name(0)).raft().metrics().borrow().clone();
    for i in 0..cases.len() {
        let id = node_id_for(&format!("bad{i}"));
        assert!(
            !c.members(&name(0)).contains(&id),
            "bad{i} was added: {m:?}"
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_node_fences_itself_before_it_is_declared_down() {
    let mut c = TestCluster::start(3, Options::default())
        .await
        .expect("start cluster");
    assert!(wait_until(SETTLE, || c.voters(&name(0)).len() == 3).await);
    c.converged(SETTLE).await.expect("settled");
    let leader = c.leader().expect("leader");
    let others: Vec<String> = (0..3).map(name).filter(|n| *n != leader).collect();
    // Cut the leader off from its quorum: it can no longer renew anybody's lease.
    for o in &others {
        c.stop(o).await;
    }
    let fence = c.fences[&leader].clone();
    assert!(
        wait_until(Duration::from_secs(5), || fence
            .fenced
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0)
        .await,
        "isolated leader fenced itself"
    );
    for o in &others {
        c.restart(o).await.expect("restart");
    }
    assert!(
        wait_until(SETTLE, || fence
            .unfenced
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0)
        .await,
        "lease renewed after heal"
    );
    c.shutdown().await;
}
