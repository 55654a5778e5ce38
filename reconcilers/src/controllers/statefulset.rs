//! The StatefulSet controller, after Kubernetes' `stateful_set_control.go`.
//!
//! - Pods are `<set>-<ordinal>` for ordinals `0..replicas`, each with `hostname` = its name
//!   and `subdomain` = `serviceName` (its DNS name under the headless Service), the labels
//!   `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//!   `controller-revision-hash`, and one claim per `volumeClaimTemplates` entry,
//!   `<template>-<set>-<ordinal>`, made with the first pod of that ordinal and kept across
//!   its restarts (the claim's volume pins later incarnations to its node, see
//!   [`super::volumes`]).
//! - OrderedReady (default): a missing pod is created only once every lower ordinal is
//!   Running, Ready and available (`minReadySeconds`); surplus pods go highest ordinal
//!   first, one per pass, only while every other pod is healthy. Parallel: all at once.
//! - RollingUpdate (default): once every ordinal has a pod, pods at or above `partition`
//!   that do not run the update revision are replaced highest ordinal first, while fewer
//!   than `maxUnavailable` (default 1) pods are unavailable; ordinals below the partition
//!   are recreated with the current revision. OnDelete: a pod is replaced only when it is
//!   gone (deleted, failed, evicted), with the update revision.
//! - When every pod runs the update revision it becomes the current one.
//! - `persistentVolumeClaimRetentionPolicy`: claims are kept (Retain, the default) or
//!   deleted when the set is deleted (`whenDeleted`) or an ordinal is scaled away
//!   (`whenScaled`).

use super::common::{available, new_pod, remove_pods_of, resolve};
use crate::ids;
use crate::records::{ClaimRecord, StatefulSetRecord};
use crate::state::ClusterState;
use crate::tracker::Target;
use crate::types::{Millis, Owner, PodPhase, PodRecord};
use kommit_schemas::model::meta::{IntOrString, Label, Name};
use kommit_schemas::model::pod::PodTemplateSpec;
use kommit_schemas::model::volume::{PvcSource, Volume};
use kommit_schemas::model::workloads::{
    DaemonSetStrategyType, PodManagementPolicy, RetentionPolicyType, StatefulSet,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The label naming a StatefulSet pod's revision (`<set>-<hash>`).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label carrying a StatefulSet pod's own name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Syncs the StatefulSets `keys`; a full pass also removes deleted sets, their pods, and
/// their claims when the set asked for it.
pub(crate) fn reconcile(state: &mut ClusterState, keys: &[String], full: bool) {
    if full {
        prune(state);
    }
    // Syncs never read the desired state, so it is lent out rather than cloned.
    let sets = std::mem::take(&mut state.desired.stateful_sets);
    for key in keys {
        let Some(ss) = sets.get(key) else {
            continue;
        };
        let pods = state.pods.owned_keys(&Owner::StatefulSet(key.clone()));
        let next = sync(state, key, ss, pods);
        state.tracker.wake(Target::StatefulSet(key.clone()), next);
    }
    state.desired.stateful_sets = sets;
}

/// Pods of deleted sets go, and their claims when the set asked for it.
fn prune(state: &mut ClusterState) {
    remove_pods_of(
        state,
        |s, o| matches!(o, Owner::StatefulSet(k) if !s.desired.stateful_sets.contains_key(k)),
    );
    let gone: Vec<(String, bool)> = state
        .stateful_sets
        .iter()
        .filter(|(k, _)| !state.desired.stateful_sets.contains_key(*k))
        .map(|(k, r)| (k.clone(), r.delete_claims_with_set))
        .collect();
    for (k, delete_claims) in gone {
        state.stateful_sets.remove(&k);
        if delete_claims {
            let mine: Vec<String> = state
                .claims
                .iter()
                .filter(|(_, c)| c.stateful_set.as_deref() == Some(k.as_str()))
                .map(|(ck, _)| ck.clone())
                .collect();
            for ck in mine {
                super::volumes::release_claim(state, &ck);
            }
        }
    }
}

/// What one sync needs to know about the set, resolved once.
struct Plan<'a> {
    key: &'a str,
    ns: &'a str,
    name: &'a str,
    ss: &'a StatefulSet,
    min_ready: u32,
    parallel: bool,
    /// None for OnDelete; Some((partition, maxUnavailable)) for RollingUpdate.
    rolling: Option<(u32, u32)>,
}

fn retention(ss: &StatefulSet) -> (bool, bool) {
    let p = ss
        .spec
        .persistent_volume_claim_retention_policy
        .clone()
        .unwrap_or_default();
    (
        p.when_deleted == Some(RetentionPolicyType::Delete),
        p.when_scaled == Some(RetentionPolicyType::Delete),
    )
}

/// Returns when time alone next changes the set's sync (a ready pod becoming available).
fn sync(
    state: &mut ClusterState,
    key: &str,
    ss: &StatefulSet,
    keys: Vec<String>,
) -> Option<Millis> {
    let (ns, name) = key.split_once('/')?;
    let replicas = ss.spec.replicas.unwrap_or(1);
    let strategy = ss.spec.update_strategy.clone().unwrap_or_default();
    let rolling = (strategy.kind != Some(DaemonSetStrategyType::OnDelete)).then(|| {
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        let max_unavailable = ru
            .max_unavailable
            .map(|v| resolve(&v, replicas, false))
            .unwrap_or_else(|| resolve(&IntOrString::Int(1), replicas, false))
            .max(1);
        (ru.partition.unwrap_or(0), max_unavailable)
    });
    let plan = Plan {
        key,
        ns,
        name,
        ss,
        min_ready: ss.spec.min_ready_seconds.unwrap_or(0),
        parallel: ss.spec.pod_management_policy == Some(PodManagementPolicy::Parallel),
        rolling,
    };
    let (delete_with_set, delete_when_scaled) = retention(ss);
    let update_rev = ids::template_hash(&ss.spec.template);
    let rec = state
        .stateful_sets
        .entry(key.to_owned())
        .or_insert_with(|| StatefulSetRecord {
            current_revision: update_rev.clone(),
            update_revision: update_rev.clone(),
            current_template: None,
            template: ss.spec.template.clone(),
            delete_claims_with_set: false,
            next_serial: 0,
            replicas: 0,
            ready: 0,
            available: 0,
            current: 0,
            updated: 0,
        });
    rec.delete_claims_with_set = delete_with_set;
    if rec.update_revision != update_rev {
        // The revision every pod ran stays current until every pod runs the new one.
        if rec.current_revision == rec.update_revision {
            rec.current_template = Some(std::mem::replace(
                &mut rec.template,
                ss.spec.template.clone(),
            ));
        } else {
            rec.template = ss.spec.template.clone();
        }
        rec.update_revision = update_rev.clone();
        if rec.current_revision == update_rev {
            rec.current_template = None;
        }
    }

    // Pods by ordinal; a pod whose name carries no ordinal of this set is not its own.
    let prefix = format!("{name}-");
    let mut by_ord: BTreeMap<u32, String> = BTreeMap::new();
    for k in keys {
        let ord = state.pods[&k]
            .name
            .strip_prefix(&prefix)
            .and_then(|o| o.parse::<u32>().ok())
            .filter(|o| o.to_string().len() + prefix.len() == state.pods[&k].name.len());
        match ord {
            Some(o) if !by_ord.contains_key(&o) => {
                by_ord.insert(o, k);
            }
            _ => {
                state.pods.remove(&k);
            }
        }
    }
    let now = state.now;
    let healthy = |p: &PodRecord| {
        p.phase == PodPhase::Running && p.ready && available(p, plan.min_ready, now)
    };

    // Rolling update first, so a replaced pod comes back in the same pass.
    if let Some((partition, max_unavailable)) = plan.rolling {
        let complete = (0..replicas).all(|o| by_ord.contains_key(&o));
        if complete {
            let mut unavailable = (0..replicas)
                .filter(|o| !healthy(&state.pods[&by_ord[o]]))
                .count() as u32;
            for ord in (partition..replicas).rev() {
                if unavailable >= max_unavailable {
                    break;
                }
                let k = &by_ord[&ord];
                if state.pods[k].template_hash == update_rev {
                    continue;
                }
                if healthy(&state.pods[k]) {
                    unavailable += 1;
                }
                state.pods.remove(k);
                by_ord.remove(&ord);
            }
        }
    }

    // Missing ordinals below replicas.
    let mut created = Vec::new();
    for ord in 0..replicas {
        match by_ord.get(&ord) {
            Some(k) => {
                if !plan.parallel && !healthy(&state.pods[k]) {
                    break;
                }
            }
            None => {
                let pod_key = format!("{ns}/{name}-{ord}");
                // The name belongs to another owner's pod: leave it to that owner.
                if state.pods.contains_key(&pod_key) {
                    break;
                }
                let pod = make_pod(state, &plan, ord);
                by_ord.insert(ord, pod_key.clone());
                created.push(pod);
                if !plan.parallel {
                    break;
                }
            }
        }
    }
    for p in created {
        state.pods.insert(p.key(), p);
    }

    // Surplus ordinals, highest first.
    let surplus: Vec<u32> = by_ord.range(replicas..).map(|(o, _)| *o).rev().collect();
    if !surplus.is_empty() {
        let others_healthy = by_ord
            .range(..replicas)
            .all(|(_, k)| healthy(&state.pods[k]));
        let n = if plan.parallel {
            surplus.len()
        } else if others_healthy || replicas == 0 {
            1
        } else {
            0
        };
        for ord in surplus.into_iter().take(n) {
            if let Some(k) = by_ord.remove(&ord) {
                state.pods.remove(&k);
            }
            if delete_when_scaled {
                for t in &ss.spec.volume_claim_templates {
                    if let Some(tn) = &t.metadata.name {
                        let ck = format!("{ns}/{}-{name}-{ord}", tn.as_str());
                        super::volumes::release_claim(state, &ck);
                    }
                }
            }
        }
    }

    // Status; the update revision becomes current once every pod runs it.
    let pods: Vec<&PodRecord> = by_ord.values().map(|k| &state.pods[k]).collect();
    let count = |f: &dyn Fn(&PodRecord) -> bool| pods.iter().filter(|p| f(p)).count() as u32;
    let n = pods.len() as u32;
    let ready = count(&|p| p.ready);
    let avail = count(&|p| p.ready && available(p, plan.min_ready, now));
    let updated = count(&|p| p.template_hash == update_rev);
    let min_ready = u64::from(plan.min_ready) * 1000;
    let wake = pods
        .iter()
        .filter(|p| p.ready && min_ready > 0)
        .filter_map(|p| p.ready_since)
        .map(|t| t.saturating_add(min_ready))
        .filter(|t| *t > now)
        .min();
    let Some(rec) = state.stateful_sets.get_mut(key) else {
        return wake;
    };
    if updated == replicas && n == replicas {
        rec.current_revision = update_rev.clone();
        rec.current_template = None;
    }
    let current_rev = rec.current_revision.clone();
    rec.replicas = n;
    rec.ready = ready;
    rec.available = avail;
    rec.updated = updated;
    rec.current = pods
        .iter()
        .filter(|p| p.template_hash == current_rev)
        .count() as u32;
    wake
}

/// The pod of one ordinal, with the revision the update strategy gives it, and its claims
/// made if they do not exist yet.
fn make_pod(state: &mut ClusterState, plan: &Plan, ord: u32) -> PodRecord {
    let rec = &state.stateful_sets[plan.key];
    let below_partition = plan.rolling.is_some_and(|(partition, _)| ord < partition);
    let (rev, template): (String, &PodTemplateSpec) = match &rec.current_template {
        Some(t) if below_partition => (rec.current_revision.clone(), t),
        _ => (rec.update_revision.clone(), &plan.ss.spec.template),
    };
    let pod_name = format!("{}-{ord}", plan.name);
    let mut labels = template.metadata.labels.clone();
    labels.insert(REVISION_LABEL.into(), format!("{}-{rev}", plan.name));
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
    let mut spec = template.spec.clone();
    spec.hostname = Label::new(pod_name.clone()).ok();
    spec.subdomain = plan
        .ss
        .spec
        .service_name
        .as_ref()
        .and_then(|s| Label::new(s.clone()).ok());
    let mut claims = Vec::new();
    for t in &plan.ss.spec.volume_claim_templates {
        let Some(tn) = &t.metadata.name else { continue };
        let claim = format!("{}-{}-{ord}", tn.as_str(), plan.name);
        let (Ok(vol_name), Ok(claim_name)) = (Label::new(tn.as_str()), Name::new(claim.clone()))
        else {
            continue;
        };
        spec.volumes.retain(|v| v.name != vol_name);
        spec.volumes.push(Volume {
            name: vol_name,
            empty_dir: None,
            host_path: None,
            config_map: None,
            secret: None,
            persistent_volume_claim: Some(PvcSource {
                claim_name,
                read_only: None,
            }),
        });
        claims.push((claim, t.spec.clone()));
    }
    let serial = rec.next_serial;
    let now = state.now;
    let pod = new_pod(
        plan.ns,
        pod_name,
        Owner::StatefulSet(plan.key.to_owned()),
        &rev,
        labels,
        &Arc::new(spec),
        serial,
        now,
    );
    if let Some(r) = state.stateful_sets.get_mut(plan.key) {
        r.next_serial += 1;
    }
    for (claim, spec) in claims {
        state
            .claims
            .entry(format!("{}/{claim}", plan.ns))
            .or_insert_with(|| ClaimRecord {
                namespace: plan.ns.to_owned(),
                name: claim,
                stateful_set: Some(plan.key.to_owned()),
                spec,
                node: None,
                volume: None,
                created_at: now,
                pre_provisioned: false,
            });
    }
    pod
}
