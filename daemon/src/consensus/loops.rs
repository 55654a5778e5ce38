//! The node's two control loops: heartbeats with lease renewal (every node), and the
//! leader's liveness and membership loop (NodeUp/NodeDown proposals, voter count).

use super::node::{propose, Shared};
use super::{liveness, membership, node_id_for, App, NodeFacts, NodeId};
use openraft::ServerState;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Heartbeat {
    pub id: NodeId,
    pub facts: NodeFacts,
}

/// Sends heartbeats with this node's facts to the leader and keeps the lease.
pub(crate) async fn heartbeat_loop<A: App>(shared: Arc<Shared<A>>) {
    let every = Duration::from_millis(shared.cfg.liveness.heartbeat_ms);
    let mut facts = shared.cfg.facts.clone();
    facts.name = shared.name.clone();
    facts.address = shared.addr.clone();
    loop {
        let sent = Instant::now();
        let leader = {
            let m = shared.raft.metrics();
            let m = m.borrow();
            m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| (l, n.addr.clone()))
            })
        };
        let acked = match leader {
            Some((l, _)) if l == shared.id => {
                let confirmed = shared
                    .confirmer
                    .confirm(|| async { shared.raft.ensure_linearizable().await.is_ok() })
                    .await;
                if confirmed {
                    shared
                        .tracker
                        .seen(shared.id, facts.clone(), Instant::now());
                    true
                } else {
                    false
                }
            }
            Some((_, addr)) => {
                let url = format!("https://{addr}/cluster/heartbeat");
                matches!(
                    shared
                        .client
                        .post(&url)
                        .timeout(every * 2)
                        .json(&Heartbeat {
                            id: shared.id,
                            facts: facts.clone(),
                        })
                        .send()
                        .await,
                    Ok(r) if r.status().is_success()
                )
            }
            None => false,
        };
        if acked {
            shared.lease.renew(sent);
        }
        shared.lease.check(Instant::now());
        tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
    }
}

/// As leader: propose NodeUp/NodeDown and keep the voter set.
pub(crate) async fn leader_loop<A: App>(shared: Arc<Shared<A>>) {
    let every = Duration::from_millis(shared.cfg.liveness.heartbeat_ms);
    let down_after = Duration::from_millis(shared.cfg.liveness.down_after_ms);
    let tick_every = Duration::from_millis(shared.cfg.tick_ms);
    let mut last_tick = Instant::now();
    // Voters known to hold the CA key (for the current term), and when each was last tried.
    let has_ca: Arc<std::sync::Mutex<(u64, BTreeSet<NodeId>)>> = Arc::default();
    let mut ca_tried: std::collections::BTreeMap<NodeId, Instant> = Default::default();
    loop {
        tokio::time::sleep(every).await;
        let (state, term, voters, all, unfinished) = {
            let m = shared.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            let joint = mem.get_joint_config().len() > 1;
            let unfinished: Option<BTreeSet<NodeId>> = joint
                .then(|| mem.get_joint_config().last().cloned())
                .flatten();
            let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
            let all: BTreeSet<NodeId> = mem.nodes().map(|(id, _)| *id).collect();
            (
                m.state,
                m.current_term,
                (!joint).then_some(voters),
                all,
                unfinished,
            )
        };
        if state != ServerState::Leader {
            shared.tracker.follow();
            continue;
        }
        let now = Instant::now();
        shared.tracker.lead(term, now);

        // Liveness decisions, level-triggered from the replicated state.
        let mut fresh = shared.tracker.fresh(now, down_after);
        // A node removed from the membership is not brought back by stale sightings.
        fresh.retain(|name, _| all.contains(&node_id_for(name)));
        let grace_over = shared.tracker.grace_over(now, down_after);
        let decisions = shared
            .sm
            .read(|app| liveness::decide(app, &fresh, grace_over));
        for d in decisions {
            let entry = match &d {
                liveness::Decision::Up(f) => match A::node_up(f.clone()) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!("not recording node {}: {e}", f.name);
                        continue;
                    }
                },
                liveness::Decision::Down(n) => A::node_down(n),
            };
            if let Err(e) = propose(&shared, &entry).await {
                tracing::warn!("liveness proposal {d:?} failed: {e}");
            }
        }

        // Time-driven work only advances when an entry carries a newer leader time.
        if last_tick.elapsed() >= tick_every {
            last_tick = now;
            if let Some(tick) = shared.sm.read(|app| app.tick()) {
                if let Err(e) = propose(&shared, &tick).await {
                    tracing::warn!("tick proposal failed: {e}");
                }
            }
        }

        // Every voter holds the CA key, so joins survive the loss of any node.
        // Hand-overs run as their own tasks so a dead voter never stalls this loop.
        if let (Some(ca), Some(voters)) = (shared.ca(), voters.as_ref()) {
            let holders = {
                let mut h = has_ca.lock().unwrap_or_else(|p| p.into_inner());
                if h.0 != term {
                    *h = (term, BTreeSet::from([shared.id]));
                }
                h.1.clone()
            };
            for &v in voters.difference(&holders) {
                if ca_tried
                    .get(&v)
                    .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(2))
                {
                    continue;
                }
                ca_tried.insert(v, now);
                let (shared, ca, has_ca) = (shared.clone(), ca.clone(), has_ca.clone());
                tokio::spawn(async move {
                    if hand_over_ca(&shared, v, &ca).await {
                        let mut h = has_ca.lock().unwrap_or_else(|p| p.into_inner());
                        if h.0 == term {
                            h.1.insert(v);
                        }
                    }
                });
            }
        }

        // A change left half-done (joint config) by a failed call or a leader change is
        // finished first.
        if let Some(target) = unfinished {
            if let Err(e) = shared.raft.change_membership(target, true).await {
                tracing::warn!("finishing membership change failed: {e}");
            }
            continue;
        }
        // Voter set.
        if let Some(voters) = voters {
            let plan = membership::plan_voters(&shared.cfg.voters, &voters, &all, |id| {
                id == shared.id || shared.tracker.alive(id, now, down_after)
            });
            if let Some(new) = plan {
                tracing::info!(?voters, ?new, "changing voters");
                if let Err(e) = shared.raft.change_membership(new, true).await {
                    tracing::warn!("change_membership failed: {e}");
                }
            }
        }
    }
}

/// Sends the CA to voter `id` over mTLS; true once it holds it.
async fn hand_over_ca<A: App>(shared: &Shared<A>, id: NodeId, ca: &super::tls::ClusterCa) -> bool {
    let addr = {
        let m = shared.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    };
    let Some(addr) = addr else { return false };
    let body = super::api::CaHandoff {
        cert_pem: ca.cert_pem.clone(),
        key_pem: ca.key_pem.clone(),
    };
    match shared
        .client
        .post(format!("https://{addr}/cluster/ca"))
        .timeout(Duration::from_secs(2))
        .json(&body)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            tracing::warn!(voter = id, status = %r.status(), "CA hand-over refused");
            false
        }
        Err(e) => {
            tracing::debug!(voter = id, "CA hand-over failed: {e}");
            false
        }
    }
}
