//! The Deployment and ReplicaSet controllers, following Kubernetes' `deployment` and
//! `replicaset` controllers: one ReplicaSet per pod-template hash, named
//! `<deployment>-<hash>`; RollingUpdate bounded by maxSurge (rounded up) and maxUnavailable
//! (rounded down), advancing only as pods report ready; Recreate; progressDeadlineSeconds
//! measured with entry timestamps; revisionHistoryLimit.

pub use super::common::resolve;
use super::common::{available, remove_pods_of};
use super::{deletion_order, new_pod};
use crate::ids;
use crate::state::ClusterState;
use crate::tracker::{Pass, Target};
use crate::types::{DeploymentStatus, Effects, Millis, Owner, ReplicaSetRecord, RolloutPhase};
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::workloads::{Deployment, DeploymentStrategyType};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The label carrying a pod's template hash.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// (maxSurge, maxUnavailable) for a Deployment with `replicas`, defaults 25%/25%; when both
/// resolve to 0, maxUnavailable is 1 so the rollout can move.
pub fn surge_and_unavailable(d: &Deployment, replicas: u32) -> (u32, u32) {
    let ru = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let pct = IntOrString::String("25%".into());
    let surge = resolve(ru.max_surge.as_ref().unwrap_or(&pct), replicas, true);
    let unavailable = resolve(ru.max_unavailable.as_ref().unwrap_or(&pct), replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(replicas))
    }
}

struct RsCounts {
    pods: u32,
    available: u32,
}

/// One round over the Deployments `keys` (every one in a full pass); returns whether any
/// ReplicaSet came, went or changed replicas. `recreating` holds Deployments whose old pods
/// were stopped in this entry by Recreate: their new pods wait for a later entry. A
/// Deployment whose ReplicaSets changed is left unsettled: the next entry syncs it again.
pub(crate) fn reconcile(
    state: &mut ClusterState,
    fx: &mut Effects,
    recreating: &mut BTreeSet<String>,
    keys: &[String],
    pass: &mut Pass,
) -> bool {
    let mut changed = false;
    if pass.full {
        // ReplicaSets of deleted Deployments go, and their pods with them.
        let orphans: Vec<String> = state
            .replica_sets
            .iter()
            .filter(|(_, rs)| {
                !rs.standalone && !state.desired.deployments.contains_key(&rs.deployment)
            })
            .map(|(k, _)| k.clone())
            .collect();
        changed = !orphans.is_empty();
        for k in orphans {
            state.replica_sets.remove(&k);
        }
        state
            .deployments
            .retain(|k, _| state.desired.deployments.contains_key(k));
        remove_pods_of(
            state,
            |s, o| matches!(o, Owner::ReplicaSet(rs) if !s.replica_sets.contains_key(rs)),
        );
    }
    // Syncs never read the desired state, so it is lent out rather than cloned.
    let deployments = std::mem::take(&mut state.desired.deployments);
    for key in keys {
        let Some(d) = deployments.get(key) else {
            continue;
        };
        let before = replicas_of(state, key);
        let mine = replica_sets_of(state, key);
        sync_deployment(state, key, d, mine, fx, recreating);
        if replicas_of(state, key) != before {
            changed = true;
            pass.unsettled.insert(Target::Deployment(key.clone()));
        }
        let next = wake(state, key, d);
        state.tracker.wake(Target::Deployment(key.clone()), next);
    }
    state.desired.deployments = deployments;
    changed
}

/// A Deployment's ReplicaSets (`namespace/<deployment>-<hash>`), in key order.
pub(crate) fn replica_sets_of(state: &ClusterState, deployment: &str) -> Vec<String> {
    let prefix = format!("{deployment}-");
    state
        .replica_sets
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, rs)| !rs.standalone && rs.deployment == deployment)
        .map(|(k, _)| k.clone())
        .collect()
}

fn replicas_of(state: &ClusterState, deployment: &str) -> Vec<(String, u32)> {
    replica_sets_of(state, deployment)
        .into_iter()
        .map(|k| {
            let n = state.replica_sets[&k].replicas;
            (k, n)
        })
        .collect()
}

/// When time alone next changes the Deployment's sync: a ready pod becoming available
/// (`minReadySeconds`), or a rollout passing its progress deadline.
fn wake(state: &ClusterState, key: &str, d: &Deployment) -> Option<Millis> {
    let now = state.now;
    let min_ready = u64::from(d.spec.min_ready_seconds.unwrap_or(0)) * 1000;
    let mut next: Option<Millis> = None;
    let mut at = |t: Millis| {
        if t > now {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    };
    if min_ready > 0 {
        for rs in replica_sets_of(state, key) {
            for k in state.pods.owned(&Owner::ReplicaSet(rs)) {
                let p = &state.pods[k];
                if let (true, Some(t)) = (p.ready, p.ready_since) {
                    at(t.saturating_add(min_ready));
                }
            }
        }
    }
    if let Some(st) = state.deployments.get(key) {
        if st.phase == RolloutPhase::Progressing {
            let deadline_ms = u64::from(d.spec.progress_deadline_seconds.unwrap_or(600)) * 1000;
            at(st
                .last_progress_at
                .saturating_add(deadline_ms)
                .saturating_add(1));
        }
    }
    next
}

fn counts(state: &ClusterState, rs: &str, min_ready: u32) -> RsCounts {
    let owner = Owner::ReplicaSet(rs.to_owned());
    let pods = state.pods.owned_len(&owner);
    let available_n = state
        .pods
        .owned(&owner)
        .filter(|k| available(&state.pods[*k], min_ready, state.now))
        .count();
    RsCounts {
        pods: u32::try_from(pods).unwrap_or(u32::MAX),
        available: u32::try_from(available_n).unwrap_or(u32::MAX),
    }
}

fn sync_deployment(
    state: &mut ClusterState,
    key: &str,
    d: &Deployment,
    mut mine: Vec<String>,
    fx: &mut Effects,
    recreating: &mut BTreeSet<String>,
) {
    let Some((ns, name)) = key.split_once('/') else {
        return;
    };
    let replicas = d.spec.replicas.unwrap_or(1);
    let min_ready = d.spec.min_ready_seconds.unwrap_or(0);
    let paused = d.spec.paused.unwrap_or(false);
    let hash = ids::template_hash(&d.spec.template);
    let rs_name = format!("{name}-{hash}");
    let new_key = format!("{ns}/{rs_name}");

    let max_rev = mine
        .iter()
        .map(|k| state.replica_sets[k].revision)
        .max()
        .unwrap_or(0);
    if !paused || mine.is_empty() {
        match state.replica_sets.get_mut(&new_key) {
            Some(rs) if rs.revision < max_rev => rs.revision = max_rev + 1,
            Some(_) => {}
            None => {
                let mut template = d.spec.template.clone();
                template
                    .metadata
                    .labels
                    .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
                state.replica_sets.insert(
                    new_key.clone(),
                    ReplicaSetRecord {
                        namespace: ns.to_owned(),
                        name: rs_name.clone(),
                        deployment: key.to_owned(),
                        template_hash: hash.clone(),
                        template,
                        replicas: 0,
                        revision: max_rev + 1,
                        next_serial: 0,
                        standalone: false,
                    },
                );
                mine.push(new_key.clone());
            }
        }
    }
    // The current RS is the one with the highest revision (the template's, unless paused).
    mine.sort_by_key(|k| state.replica_sets[k].revision);
    let Some(current) = mine.last().cloned() else {
        return;
    };
    let olds: Vec<String> = mine[..mine.len() - 1].to_vec();

    if !paused {
        let strategy = d
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.kind)
            .unwrap_or(DeploymentStrategyType::RollingUpdate);
        match strategy {
            DeploymentStrategyType::Recreate => {
                let old_pods: u32 = olds.iter().map(|k| counts(state, k, min_ready).pods).sum();
                for k in &olds {
                    set_replicas(state, k, 0);
                }
                // New pods start only once the old ones are gone from the state: they are
                // deleted in this pass and the next entry (the agents' reports) scales up.
                if old_pods > 0 {
                    recreating.insert(key.to_owned());
                } else if !recreating.contains(key) {
                    set_replicas(state, &current, replicas);
                }
            }
            DeploymentStrategyType::RollingUpdate => {
                rolling_update(state, d, replicas, min_ready, &current, &olds);
            }
        }
    }
    for k in &mine {
        sync_replica_set(state, k);
    }

    // Status, progress deadline, history.
    let new_c = counts(state, &current, min_ready);
    let old_pods: u32 = olds.iter().map(|k| counts(state, k, min_ready).pods).sum();
    let available_total: u32 = mine
        .iter()
        .map(|k| counts(state, k, min_ready).available)
        .sum();
    let new_replicas = state.replica_sets[&current].replicas;
    let mark = (new_replicas, new_c.available, old_pods);
    let now = state.now;
    let deadline_ms = u64::from(d.spec.progress_deadline_seconds.unwrap_or(600)) * 1000;
    let st = state
        .deployments
        .entry(key.to_owned())
        .or_insert_with(|| DeploymentStatus {
            current_rs: current.clone(),
            phase: RolloutPhase::Progressing,
            last_progress_at: now,
            progress_mark: mark,
            updated: 0,
            available: 0,
        });
    if st.progress_mark != mark || st.current_rs != current {
        st.progress_mark = mark;
        st.last_progress_at = now;
    }
    st.current_rs = current.clone();
    st.updated = new_c.pods;
    st.available = available_total;
    let phase = if paused {
        RolloutPhase::Paused
    } else if new_replicas == replicas && new_c.available == replicas && old_pods == 0 {
        RolloutPhase::Complete
    } else if now.saturating_sub(st.last_progress_at) > deadline_ms {
        // ProgressDeadlineExceeded; progress (a new mark) moves it back to Progressing.
        RolloutPhase::DeadlineExceeded
    } else {
        RolloutPhase::Progressing
    };
    if st.phase != phase {
        st.phase = phase;
        fx.rollouts.insert(key.to_owned(), phase);
    }

    let limit = d.spec.revision_history_limit.unwrap_or(10) as usize;
    let mut idle: Vec<String> = olds
        .iter()
        .filter(|k| {
            state.replica_sets[*k].replicas == 0
                && state.pods.owned_len(&Owner::ReplicaSet((*k).clone())) == 0
        })
        .cloned()
        .collect();
    // Newest revisions are kept.
    idle.sort_by_key(|k| std::cmp::Reverse(state.replica_sets[k].revision));
    for k in idle.into_iter().skip(limit) {
        state.replica_sets.remove(&k);
    }
}

fn set_replicas(state: &mut ClusterState, rs: &str, n: u32) {
    if let Some(r) = state.replica_sets.get_mut(rs) {
        r.replicas = n;
    }
}

fn rolling_update(
    state: &mut ClusterState,
    d: &Deployment,
    replicas: u32,
    min_ready: u32,
    current: &str,
    olds: &[String],
) {
    let (max_surge, max_unavailable) = surge_and_unavailable(d, replicas);
    // Scale the new ReplicaSet up within the surge budget (or down to replicas).
    let new_rs = state.replica_sets[current].replicas;
    if new_rs > replicas {
        set_replicas(state, current, replicas);
    } else if new_rs < replicas {
        let total: u32 = olds
            .iter()
            .chain(std::iter::once(&current.to_owned()))
            .map(|k| state.replica_sets[k].replicas)
            .sum();
        let max_total = replicas + max_surge;
        if total < max_total {
            set_replicas(state, current, (new_rs + (max_total - total)).min(replicas));
        }
    }
    // Scale old ReplicaSets down, never below replicas - maxUnavailable available.
    let min_available = i64::from(replicas) - i64::from(max_unavailable);
    let new_c = counts(state, current, min_ready);
    let new_replicas = state.replica_sets[current].replicas;
    let new_unavailable = i64::from(new_replicas.saturating_sub(new_c.available));
    let all_pods: i64 = olds
        .iter()
        .map(|k| i64::from(counts(state, k, min_ready).pods))
        .sum::<i64>()
        + i64::from(new_c.pods);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return;
    }
    // First the unhealthy old pods (oldest ReplicaSet first).
    let mut cleaned = 0i64;
    for k in olds {
        if cleaned >= max_scaled_down {
            break;
        }
        let c = counts(state, k, min_ready);
        let rs_replicas = state.replica_sets[k].replicas;
        let unhealthy = i64::from(rs_replicas.saturating_sub(c.available));
        let n = unhealthy.min(max_scaled_down - cleaned);
        if n > 0 {
            set_replicas(state, k, rs_replicas - u32::try_from(n).unwrap_or(0));
            cleaned += n;
        }
    }
    // Then available ones, down to the availability floor.
    let available_total: i64 = olds
        .iter()
        .chain(std::iter::once(&current.to_owned()))
        .map(|k| i64::from(counts(state, k, min_ready).available))
        .sum();
    let mut budget = available_total - min_available;
    for k in olds {
        if budget <= 0 {
            break;
        }
        let rs_replicas = state.replica_sets[k].replicas;
        let n = i64::from(rs_replicas).min(budget);
        if n > 0 {
            set_replicas(state, k, rs_replicas - u32::try_from(n).unwrap_or(0));
            budget -= n;
        }
    }
}

/// Creates or deletes pods so the ReplicaSet has exactly `replicas`.
pub(crate) fn sync_replica_set(state: &mut ClusterState, rs_key: &str) {
    let owner = Owner::ReplicaSet(rs_key.to_owned());
    let mut have = state.pods.owned_len(&owner);
    let Some(rs) = state.replica_sets.get(rs_key) else {
        return;
    };
    let want = rs.replicas as usize;
    if have > want {
        let mut keys = state.pods.owned_keys(&owner);
        deletion_order(state, &mut keys);
        for k in keys.drain(..have - want) {
            state.pods.remove(&k);
        }
    } else if have < want {
        let rs = rs.clone();
        let spec = Arc::new(rs.template.spec.clone());
        let mut serial = rs.next_serial;
        let now = state.now;
        let mut guard = 0;
        while have < want && guard < want * 4 + 16 {
            guard += 1;
            let suffix = ids::safe_suffix(
                &[
                    rs_key.as_bytes(),
                    rs.template_hash.as_bytes(),
                    &serial.to_be_bytes(),
                ],
                5,
            );
            let name = format!("{}-{suffix}", rs.name);
            let key = format!("{}/{name}", rs.namespace);
            serial += 1;
            if state.pods.contains_key(&key) {
                continue;
            }
            let pod = new_pod(
                &rs.namespace,
                name,
                owner.clone(),
                &rs.template_hash,
                rs.template.metadata.labels.clone(),
                &spec,
                serial - 1,
                now,
            );
            state.pods.insert(key, pod);
            have += 1;
        }
        if let Some(r) = state.replica_sets.get_mut(rs_key) {
            r.next_serial = serial;
        }
    }
}
