//! Proposals: the batcher that folds concurrent entries into one Raft proposal, forwarding to
//! the leader, and linearizable read indexes.

use super::node::{NodeError, Pending, Shared};
use super::{now_ms, App, Proposal};
use openraft::error::{ClientWriteError, RaftError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most items in one proposal batch.
pub const MAX_BATCH_ITEMS: usize = 512;
/// How long a proposal may wait for a leader before it fails.
pub(crate) const PROPOSE_DEADLINE: Duration = Duration::from_secs(10);

/// Proposes one entry through the node's batcher.
pub async fn propose<A: App>(shared: &Shared<A>, entry: &A::Entry) -> Result<u64, NodeError> {
    let item = serde_json::to_value(entry).map_err(|e| NodeError::Propose(e.to_string()))?;
    let (tx, rx) = oneshot::channel();
    shared
        .batch_tx
        .send(Pending {
            items: vec![item],
            reply: tx,
        })
        .await
        .map_err(|_| NodeError::Propose("node is shutting down".into()))?;
    rx.await
        .map_err(|_| NodeError::Propose("node is shutting down".into()))?
        .map_err(NodeError::Propose)
}

/// Waits until this node has applied `index` (at most [`PROPOSE_DEADLINE`]).
pub async fn wait_applied<A: App>(shared: &Shared<A>, index: u64) -> Result<(), NodeError> {
    let mut w = shared.sm.applied_watch();
    tokio::time::timeout(PROPOSE_DEADLINE, w.wait_for(|a| *a >= index))
        .await
        .map_err(|_| NodeError::Propose(format!("apply did not reach {index}")))?
        .map_err(|e| NodeError::Propose(e.to_string()))?;
    Ok(())
}

/// Proposes `entry` and waits until this node has applied it, so a read of the local state
/// that follows sees its outcome.
pub async fn propose_applied<A: App>(
    shared: &Shared<A>,
    entry: &A::Entry,
) -> Result<u64, NodeError> {
    let index = propose(shared, entry).await?;
    wait_applied(shared, index).await?;
    Ok(index)
}

/// Waits until this node has applied everything the leader had committed when asked: a
/// local read after it is linearizable.
pub async fn catch_up<A: App>(shared: &Shared<A>) -> Result<(), NodeError> {
    let index = read_index(shared).await?;
    wait_applied(shared, index).await
}

pub(crate) async fn batcher<A: App>(shared: Arc<Shared<A>>, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut count = first.items.len();
        let mut batch = vec![first];
        while count < MAX_BATCH_ITEMS {
            match rx.try_recv() {
                Ok(p) => {
                    count += p.items.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let items: Vec<serde_json::Value> =
            batch.iter().flat_map(|p| p.items.iter().cloned()).collect();
        let result = submit(&shared, items).await;
        for p in batch {
            let _ = p.reply.send(result.clone());
        }
    }
}

/// Commits `items` as one proposal: locally when leader, else forwarded to the leader.
async fn submit<A: App>(shared: &Shared<A>, items: Vec<serde_json::Value>) -> Result<u64, String> {
    let deadline = Instant::now() + PROPOSE_DEADLINE;
    let mut last_err = String::from("no leader");
    while Instant::now() < deadline {
        match shared
            .raft
            .client_write(Proposal {
                at_ms: now_ms(),
                items: items.clone(),
            })
            .await
        {
            Ok(r) => return Ok(r.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                if let Some(node) = f.leader_node {
                    match forward(shared, &node.addr, &items).await {
                        Ok(i) => return Ok(i),
                        Err(e) => last_err = e,
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no leader committed the proposal in time: {last_err}"
    ))
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ProposeRequest {
    pub items: Vec<serde_json::Value>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ProposeResponse {
    pub index: Option<u64>,
    pub error: Option<String>,
}

async fn forward<A: App>(
    shared: &Shared<A>,
    leader: &str,
    items: &[serde_json::Value],
) -> Result<u64, String> {
    let url = format!("https://{leader}/cluster/propose");
    let resp: ProposeResponse = shared
        .client
        .post(&url)
        .timeout(PROPOSE_DEADLINE)
        .json(&ProposeRequest {
            items: items.to_vec(),
        })
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    match (resp.index, resp.error) {
        (Some(i), _) => Ok(i),
        (None, e) => Err(e.unwrap_or_else(|| "leader gave no index".into())),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ReadIndexResponse {
    pub index: Option<u64>,
    pub error: Option<String>,
}

pub(crate) async fn read_index<A: App>(shared: &Shared<A>) -> Result<u64, NodeError> {
    let deadline = Instant::now() + PROPOSE_DEADLINE;
    loop {
        match shared.raft.ensure_linearizable().await {
            Ok(l) => return Ok(l.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                if let Some(node) = f.leader_node {
                    let url = format!("https://{}/cluster/read_index", node.addr);
                    let r = shared.client.post(&url).send().await;
                    if let Ok(resp) = r {
                        if let Ok(ReadIndexResponse { index: Some(i), .. }) = resp.json().await {
                            return Ok(i);
                        }
                    }
                }
            }
            Err(e) => return Err(NodeError::Raft(e.to_string())),
        }
        if Instant::now() >= deadline {
            return Err(NodeError::Propose(
                "no leader for a linearizable read".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
