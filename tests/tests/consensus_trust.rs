//! Issue 16 items 4 and 5, on in-process nodes over real mTLS on loopback: join tokens live
//! in the replicated state (a token outlives the voter that made it; single use holds
//! cluster-wide; expiry holds), a removed node's certificate is refused by the remaining
//! nodes' cluster port, and certificates are renewed by their holders before they expire
//! while an expired one is refused.

use kommit_daemon::consensus::kv::{KvApp, KvEntry};
use kommit_daemon::consensus::liveness::LogFence;
use kommit_daemon::consensus::local::remove_node;
use kommit_daemon::consensus::membership::VoterPolicy;
use kommit_daemon::consensus::node::{Node, NodeConfig};
use kommit_daemon::consensus::node_id_for;
use kommit_daemon::consensus::tls::NodeIdentity;
use kommit_tests::fixtures::tls_alert;
use kommit_tests::sim::cluster::{name, wait_until, Options, TestCluster};
use std::path::Path;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(20);

/// Logs to stderr when RUST_LOG is set (to see the nodes' renewals and refusals).
fn log() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

fn put(k: &str, v: &str) -> KvEntry {
    KvEntry::Put {
        key: k.into(),
        value: v.into(),
    }
}

/// A client presenting the identity stored under `data_dir/tls`.
fn client_for(data_dir: &Path) -> reqwest::Client {
    let id = NodeIdentity::load(&data_dir.join("tls")).expect("identity");
    client_with(&id)
}

fn client_with(id: &NodeIdentity) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(id.client_config().expect("client config"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The status code of `GET /cluster/status` on `addr`, or the error text.
async fn status_on(client: &reqwest::Client, addr: &str) -> Result<u16, String> {
    client
        .get(format!("https://{addr}/cluster/status"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

async fn join_err(c: &TestCluster, i: usize, via: &str, token: &str) -> String {
    let cfg = NodeConfig::new(
        &name(i),
        c.root.path().join(name(i)),
        "127.0.0.9:0".parse().expect("addr"),
    );
    let addr = c.cfgs[via].listen.to_string();
    match Node::<KvApp>::join(cfg, &addr, token, Box::new(LogFence)).await {
        Ok(n) => {
            n.shutdown().await;
            panic!("join of {} with {token} through {via} succeeded", name(i))
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_made_on_a_voter_that_is_then_killed_still_admits_a_new_node() {
    let mut c = TestCluster::start(3, Options::default())
        .await
        .expect("start cluster");
    assert!(wait_until(SETTLE, || c.voters(&name(0)).len() == 3).await);
    assert!(
        wait_until(SETTLE, || c.holds_ca_key(&name(1))
            && c.holds_ca_key(&name(2)))
        .await,
        "every voter holds the CA key"
    );
    // Made through n2, which is then killed: the token is in the replicated state, not on
    // n2's disk, so n1 admits n3 with it.
    let made_on_n2 = c.token_on(&name(2)).await;
    let single = c
        .token_with(&name(2), Duration::from_secs(600), Some(1))
        .await;
    let short = c
        .token_with(&name(2), Duration::from_millis(1500), None)
        .await;
    assert!(
        !c.cfgs[&name(2)].data_dir.join("tokens").exists(),
        "no token is kept on the maker's disk"
    );
    c.stop(&name(2)).await;
    c.join_with_token(3, Options::default(), &name(1), &made_on_n2)
        .await
        .expect("join through a surviving voter with a token made on the lost voter");
    let n3 = node_id_for(&name(3));
    assert!(
        wait_until(SETTLE, || c.members(&name(1)).contains(&n3)).await,
        "n3 is a member"
    );

    // A single-use token admits one node, through whichever voter, and then no other.
    c.join_with_token(4, Options::default(), &name(0), &single)
        .await
        .expect("single-use token, first use");
    let err = join_err(&c, 5, &name(1), &single).await;
    assert!(
        err.contains("is used up"),
        "second use of a single-use token: {err}"
    );

    // An expired token, a wrong secret and an unknown id are refused with their reasons.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let err = join_err(&c, 6, &name(1), &short).await;
    assert!(
        err.contains("expired") || err.contains("unknown join token id"),
        "expired token: {err}"
    );
    let parts: Vec<&str> = made_on_n2.split('.').collect();
    let wrong_secret = format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], "0".repeat(32));
    let unknown_id = format!("{}.{}.{}.{}", parts[0], parts[1], "c".repeat(12), parts[3]);
    let err = join_err(&c, 7, &name(1), &wrong_secret).await;
    assert!(err.contains("wrong secret"), "{err}");
    let err = join_err(&c, 8, &name(1), &unknown_id).await;
    assert!(err.contains("unknown join token id"), "{err}");

    // The tokens are in the state of every running node alike, only as hashes.
    let state = c.node(&name(1)).read_local(|a| a.trust.clone());
    let id = parts[2];
    let secret = parts[3];
    assert!(state.tokens.contains_key(id));
    let json = serde_json::to_string(&state).expect("json");
    assert!(!json.contains(secret), "the state holds no token secret");
    let leader = c.leader().expect("leader");
    c.node(&leader)
        .propose(&put("after", "join"))
        .await
        .expect("propose");
    c.converged(SETTLE).await.expect("converged");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_nodes_certificate_is_refused_by_the_remaining_nodes() {
    let c = TestCluster::start(4, Options::default())
        .await
        .expect("start cluster");
    log();
    assert!(wait_until(SETTLE, || c.voters(&name(0)).len() == 3).await);
    let n3 = name(3);
    assert!(
        wait_until(SETTLE, || c
            .node(&name(1))
            .read_local(|a| a.nodes.contains_key(&n3)))
        .await,
        "n3 is up in the state"
    );
    let n3_dir = c.cfgs[&n3].data_dir.clone();
    let n3_serial = c.node(&n3).shared().cert.info().expect("cert").serial;
    // The cluster records every node's certificate (joins record it; each node registers the
    // one it runs with), which is what removal revokes.
    assert!(
        wait_until(SETTLE, || c.running().all(
            |(_, n)| n.read_local(|a| a.trust.certs.contains_key(&n3_serial))
        ))
        .await,
        "n3's certificate is recorded everywhere"
    );
    let addrs: Vec<String> = (0..3)
        .map(|i| c.cfgs[&name(i)].listen.to_string())
        .collect();
    // A connection n3 opened before its removal.
    let old_conn = client_for(&n3_dir);
    for a in &addrs {
        assert_eq!(
            status_on(&old_conn, a).await,
            Ok(200),
            "before removal, {a}"
        );
    }

    remove_node(&c.node(&name(1)).shared(), &n3)
        .await
        .expect("remove n3");
    assert!(
        wait_until(SETTLE, || (0..3).all(|i| c
            .node(&name(i))
            .shared()
            .revocations
            .revoked(&n3_serial)
            .is_some()))
        .await,
        "every remaining node revoked n3's serial"
    );
    for a in &addrs {
        // A new connection with n3's certificate fails in the handshake...
        let fresh = client_for(&n3_dir);
        let r = status_on(&fresh, a).await;
        assert!(
            r.is_err(),
            "a new connection with the removed certificate to {a}: {r:?}"
        );
        let n3_id = NodeIdentity::load(&n3_dir.join("tls")).expect("identity");
        let alert = tls_alert(&n3_id, a).await;
        assert!(
            alert.contains("CertificateRevoked"),
            "the server's alert: {alert}"
        );
        // ... a connection opened before the removal gets 403 (or is dropped) ...
        let r = status_on(&old_conn, a).await;
        assert!(
            r != Ok(200),
            "an old connection of the removed node to {a}: {r:?}"
        );
        // ... and a remaining node's certificate still works.
        let other = client_for(&c.cfgs[&name(2)].data_dir);
        assert_eq!(
            status_on(&other, a).await,
            Ok(200),
            "n2's certificate on {a}"
        );
    }
    let leader = c.leader().expect("leader");
    c.node(&leader)
        .propose(&put("after", "remove"))
        .await
        .expect("propose");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_are_renewed_before_they_expire_and_an_expired_one_is_refused() {
    // One voter (n0, which holds the CA key and renews its own) and two learners, which
    // renew through n0's /cluster/renew with their current certificate.
    let opts = Options {
        voters: VoterPolicy {
            small: 1,
            large: 1,
            large_from: 5,
        },
        cert_lifetime: Duration::from_secs(6),
        ..Options::default()
    };
    log();
    let c = TestCluster::start(3, opts).await.expect("start cluster");
    let first: Vec<NodeIdentity> = (0..3)
        .map(|i| NodeIdentity::load(&c.cfgs[&name(i)].data_dir.join("tls")).expect("identity"))
        .collect();
    let serial = |i: usize| c.node(&name(i)).shared().cert.info().expect("cert").serial;
    let first_serials: Vec<String> = (0..3).map(serial).collect();
    // Well past the first certificates' expiry (6 s), every node has renewed (at least twice:
    // renewal is due at two thirds of 6.6 s) and the cluster still replicates.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (i, first_serial) in first_serials.iter().enumerate() {
        let now = serial(i);
        assert_ne!(&now, first_serial, "{} renewed its certificate", name(i));
        // A certificate is recorded before it is used, so the one in use is in the state.
        assert!(
            c.node(&name(0))
                .read_local(|a| a.trust.certs.contains_key(&now)),
            "{}'s certificate in use is recorded in the state",
            name(i)
        );
        let on_disk = NodeIdentity::load(&c.cfgs[&name(i)].data_dir.join("tls")).expect("id");
        let disk =
            kommit_daemon::consensus::certs::pem_cert_info(&on_disk.cert_pem).expect("cert info");
        assert_eq!(disk.node, name(i));
        let life = disk.not_after_ms - disk.not_before_ms;
        assert!(life <= 7_000, "a bounded lifetime: {life} ms");
    }
    let leader = c.leader().expect("leader");
    c.node(&leader)
        .propose(&put("after", "renewal"))
        .await
        .expect("propose after every first certificate expired");
    c.converged(SETTLE).await.expect("converged");
    // The first certificate of n1 has expired: refused; its current one works.
    let addr = c.cfgs[&name(0)].listen.to_string();
    let r = status_on(&client_with(&first[1]), &addr).await;
    assert!(r.is_err(), "an expired certificate: {r:?}");
    let alert = tls_alert(&first[1], &addr).await;
    assert!(
        alert.contains("CertificateExpired"),
        "the server's alert: {alert}"
    );
    let current = client_for(&c.cfgs[&name(1)].data_dir);
    assert_eq!(status_on(&current, &addr).await, Ok(200));
    c.shutdown().await;
}
