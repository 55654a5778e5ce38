//! The daemon's real application over real consensus: `ClusterState` replicated by in-process
//! nodes (redb on disk, HTTPS with mutual TLS on 127.0.0.x). Nodes register themselves through
//! liveness, a commit of repo-template is adopted through a follower, placements agree on every
//! node and with the offline `kommit plan` computation, a lost node's pods move, a drained
//! node empties, and a lagging node catches up from a `ClusterState` snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_daemon::consensus::App;
use kommit_reconcilers::{ClusterState, Entry, NodeInfo};
use kommit_schemas::DesiredState;
use kommit_tests::fixtures::repo_template;
use kommit_tests::sim::cluster::{name, wait_until, Cluster, Options};
use std::collections::BTreeMap;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(20);
const COMMIT: &str = "1111111111111111111111111111111111111111";

fn adopt(desired: &DesiredState) -> Entry {
    Entry::Adopt {
        commit: COMMIT.into(),
        parent: None,
        desired: desired.clone(),
        digest: desired.digest(),
        by: None,
    }
}

/// Pod -> node on node `n`.
fn placements(c: &Cluster<ClusterState>, n: &str) -> BTreeMap<String, Option<String>> {
    c.node(n).read_local(|s| s.placements())
}

fn ready_nodes(c: &Cluster<ClusterState>, n: &str) -> usize {
    c.node(n)
        .read_local(|s| s.nodes.values().filter(|r| r.ready).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_state_is_replicated_placed_identically_and_follows_node_loss() {
    let mut c = Cluster::<ClusterState>::start(3, Options::default())
        .await
        .expect("start cluster");
    // Every node registers itself through heartbeats: NodeUp entries proposed by the leader.
    assert!(
        wait_until(SETTLE, || c.running().all(|(k, _)| ready_nodes(&c, k) == 3)).await,
        "every node sees three ready nodes"
    );

    // A follower forwards the Adopt to the leader.
    let desired = repo_template();
    let leader = c.leader().expect("leader");
    let follower = (0..3).map(name).find(|n| *n != leader).expect("a follower");
    c.node(&follower)
        .propose(&adopt(&desired))
        .await
        .expect("adopt through a follower");
    let digest = c.converged(SETTLE).await.expect("converged after adopt");
    for (k, n) in c.running() {
        assert_eq!(
            n.read_local(|s| s.commit.clone()).as_deref(),
            Some(COMMIT),
            "{k}"
        );
        assert_eq!(n.digest(), digest, "{k}");
    }
    let placed = placements(&c, &leader);
    assert!(!placed.is_empty(), "repo-template makes pods");
    assert!(
        placed.values().all(Option::is_some),
        "every pod is placed: {placed:?}"
    );

    // The placement is what an auditor recomputes offline from the same commit and nodes.
    let infos: Vec<NodeInfo> = c
        .node(&leader)
        .read_local(|s| s.nodes.values().map(|n| n.info.clone()).collect());
    let offline = kommit_daemon::cli::plan::plan(&desired, &infos);
    let offline: BTreeMap<String, Option<String>> =
        offline.pods.into_iter().map(|p| (p.pod, p.node)).collect();
    assert_eq!(placed, offline, "live placement equals `kommit plan`");

    // Losing a node with pods: the leader declares it down and its pods move.
    let victim = placed
        .values()
        .flatten()
        .find(|n| **n != leader)
        .cloned()
        .unwrap_or_else(|| leader.clone());
    c.stop(&victim).await;
    let survivor = (0..3).map(name).find(|n| *n != victim).expect("a survivor");
    assert!(
        wait_until(SETTLE, || {
            c.leader().is_some() && {
                let p = placements(&c, &survivor);
                !p.is_empty()
                    && p.values()
                        .all(|n| n.is_some() && n.as_deref() != Some(&victim))
            }
        })
        .await,
        "pods left the lost node {victim}: {:?}",
        placements(&c, &survivor)
    );
    assert!(!c.node(&survivor).read_local(|s| s.nodes[&victim].ready));

    // It comes back: NodeUp again, and every node agrees.
    c.restart(&victim).await.expect("restart");
    assert!(
        wait_until(SETTLE, || c.running().all(|(k, _)| ready_nodes(&c, k) == 3)).await,
        "the node is up again"
    );
    c.converged(SETTLE).await.expect("converged after return");

    // An operator drains a node: its pods leave it, through the same log.
    let leader = c.leader().expect("leader");
    let drained = placements(&c, &leader)
        .values()
        .flatten()
        .next()
        .cloned()
        .expect("a node with pods");
    c.node(&leader)
        .propose(&<ClusterState as App>::node_drain(&drained))
        .await
        .expect("drain");
    assert!(
        wait_until(SETTLE, || placements(&c, &leader)
            .values()
            .all(|n| n.is_some() && n.as_deref() != Some(&drained)))
        .await,
        "drained node {drained} emptied"
    );
    c.converged(SETTLE).await.expect("converged after drain");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_node_installs_a_cluster_state_snapshot() {
    let opts = Options {
        snapshot_every: 20,
        ..Options::default()
    };
    let mut c = Cluster::<ClusterState>::start(3, opts)
        .await
        .expect("start cluster");
    assert!(wait_until(SETTLE, || c.voters(&name(0)).len() == 3).await);
    let lag = name(2);
    c.stop(&lag).await;
    let leader = c.leader().expect("leader");
    let desired = repo_template();
    c.node(&leader)
        .propose(&adopt(&desired))
        .await
        .expect("adopt");
    for _ in 0..60 {
        c.node(&leader).propose(&Entry::Tick).await.expect("tick");
    }
    assert!(c.purged(&leader, SETTLE).await, "leader purged its log");
    c.restart(&lag).await.expect("restart lagging node");
    let digest = c.converged(SETTLE).await.expect("lagging node caught up");
    assert!(c.has_snapshot(&lag), "lagging node installed a snapshot");
    assert_eq!(c.node(&lag).digest(), digest);
    assert_eq!(
        c.node(&lag).read_local(|s| s.commit.clone()).as_deref(),
        Some(COMMIT)
    );
    assert_eq!(placements(&c, &lag), placements(&c, &leader));
    c.shutdown().await;
}
