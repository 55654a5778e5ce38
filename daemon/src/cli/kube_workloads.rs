//! StatefulSets, Jobs, CronJobs, PersistentVolumeClaims, PersistentVolumes and
//! PodDisruptionBudgets as Kubernetes objects (`apps/v1`, `batch/v1`, `v1`, `policy/v1`)
//! with the status the replicated state holds, and their `kommit get` rows in
//! `kubectl get`'s columns.

use super::kube::time;
use kommit_reconcilers::{ClusterState, JobOutcome, Owner};
use serde_json::{json, Value};

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

/// A StatefulSet with its status (replicas, ready, available, current and updated pods,
/// the current and update revisions as `<name>-<hash>`).
pub fn stateful_set(state: &ClusterState, key: &str) -> Option<Value> {
    let s = state.desired.stateful_sets.get(key)?;
    let r = state.stateful_sets.get(key);
    let (ns, name) = split(key);
    let rev = |h: &str| format!("{name}-{h}");
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "labels": s.metadata.labels},
        "spec": {
            "replicas": s.spec.replicas.unwrap_or(1),
            "serviceName": s.spec.service_name,
            "selector": s.spec.selector,
            "podManagementPolicy": s.spec.pod_management_policy,
        },
        "status": {
            "replicas": r.map_or(0, |r| r.replicas),
            "readyReplicas": r.map_or(0, |r| r.ready),
            "availableReplicas": r.map_or(0, |r| r.available),
            "currentReplicas": r.map_or(0, |r| r.current),
            "updatedReplicas": r.map_or(0, |r| r.updated),
            "currentRevision": r.map(|r| rev(&r.current_revision)),
            "updateRevision": r.map(|r| rev(&r.update_revision)),
        },
    }))
}

/// Indexes as Kubernetes' `completedIndexes`: ascending ranges, `0-2,4`.
fn ranges(ix: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ix.len() {
        let start = ix[i];
        let mut end = start;
        while i + 1 < ix.len() && ix[i + 1] == end + 1 {
            i += 1;
            end = ix[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// A Job with its status: counts, start and completion times, the Complete or Failed
/// condition, and `completedIndexes` for Indexed Jobs.
pub fn job(state: &ClusterState, key: &str) -> Option<Value> {
    let j = state.desired.jobs.get(key)?;
    let r = state.jobs.get(key);
    let (ns, name) = split(key);
    let mut status = json!({
        "active": r.map_or(0, |r| r.active),
        "ready": r.map_or(0, |r| r.ready),
        "succeeded": r.map_or(0, |r| r.succeeded),
        "failed": r.map_or(0, |r| r.failed),
    });
    if let Some(r) = r {
        if let Some(t) = r.start_time {
            status["startTime"] = json!(time(t));
        }
        if !r.completed_indexes.is_empty() {
            status["completedIndexes"] = json!(ranges(&r.completed_indexes));
        }
        let at = r.completion_time.map(time);
        match &r.outcome {
            Some(JobOutcome::Complete) => {
                status["completionTime"] = json!(at);
                status["conditions"] =
                    json!([{"type": "Complete", "status": "True", "lastTransitionTime": at}]);
            }
            Some(JobOutcome::Failed { reason, message }) => {
                status["conditions"] = json!([{"type": "Failed", "status": "True", "reason": reason, "message": message, "lastTransitionTime": at}]);
            }
            None => {}
        }
    }
    Some(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": j.metadata.labels},
        "spec": {
            "completions": j.spec.completions,
            "parallelism": j.spec.parallelism.unwrap_or(1),
            "backoffLimit": j.spec.backoff_limit.unwrap_or(6),
            "completionMode": j.spec.completion_mode,
            "suspend": j.spec.suspend.unwrap_or(false),
        },
        "status": status,
    }))
}

/// A CronJob with its status: active Jobs, last schedule and last successful times.
pub fn cron_job(state: &ClusterState, key: &str) -> Option<Value> {
    let c = state.desired.cron_jobs.get(key)?;
    let r = state.cron_jobs.get(key);
    let (ns, name) = split(key);
    let active: Vec<Value> = r
        .map(|r| r.active.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|k| json!({"kind": "Job", "apiVersion": "batch/v1", "namespace": split(k).0, "name": split(k).1}))
        .collect();
    let mut status = json!({"active": active});
    if let Some(t) = r.and_then(|r| r.last_schedule) {
        status["lastScheduleTime"] = json!(time(t));
    }
    if let Some(t) = r.and_then(|r| r.last_successful) {
        status["lastSuccessfulTime"] = json!(time(t));
    }
    Some(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns, "labels": c.metadata.labels},
        "spec": {
            "schedule": &*c.spec.schedule,
            "timeZone": c.spec.time_zone,
            "concurrencyPolicy": c.spec.concurrency_policy,
            "suspend": c.spec.suspend.unwrap_or(false),
        },
        "status": status,
    }))
}

/// A claim with its phase, bound volume and the node its volume is on.
pub fn claim(state: &ClusterState, key: &str) -> Option<Value> {
    let c = state.claims.get(key)?;
    let mut annotations = serde_json::Map::new();
    if let Some(n) = &c.node {
        annotations.insert("volume.kubernetes.io/selected-node".into(), json!(n));
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": c.name, "namespace": c.namespace, "annotations": annotations},
        "spec": {
            "accessModes": c.spec.access_modes,
            "resources": c.spec.resources,
            "storageClassName": c.class(),
            "volumeName": c.volume,
        },
        "status": {
            "phase": c.phase(),
            "accessModes": c.spec.access_modes,
            "capacity": c.spec.resources.requests,
        },
    }))
}

/// A PersistentVolume from Git with its phase and the claim it is bound to.
pub fn persistent_volume(state: &ClusterState, name: &str) -> Option<Value> {
    let pv = state.desired.persistent_volumes.get(name)?;
    let st = kommit_reconcilers::controllers::volume_status(state, name)?;
    let mut v = serde_json::to_value(pv).ok()?;
    if let Some((ns, n)) = st.claim.as_deref().and_then(|c| c.split_once('/')) {
        v["spec"]["claimRef"] =
            json!({"kind": "PersistentVolumeClaim", "namespace": ns, "name": n});
    }
    v["status"] = json!({"phase": st.phase});
    Some(v)
}

/// A PodDisruptionBudget from Git with the status the disruption controller would report.
pub fn disruption_budget(state: &ClusterState, key: &str) -> Option<Value> {
    let pdb = state.desired.pod_disruption_budgets.get(key)?;
    let st = kommit_reconcilers::controllers::disruption_status(state, key)?;
    let mut v = serde_json::to_value(pdb).ok()?;
    v["status"] = json!({
        "currentHealthy": st.current_healthy,
        "desiredHealthy": st.desired_healthy,
        "disruptionsAllowed": st.disruptions_allowed,
        "expectedPods": st.expected_pods,
    });
    Some(v)
}

/// `kubectl`'s short names of access modes, comma-separated.
fn access_modes(modes: &[kommit_schemas::model::core::AccessMode]) -> String {
    use kommit_schemas::model::core::AccessMode as M;
    let short: Vec<&str> = modes
        .iter()
        .map(|m| match m {
            M::ReadWriteOnce => "RWO",
            M::ReadOnlyMany => "ROX",
            M::ReadWriteMany => "RWX",
            M::ReadWriteOncePod => "RWOP",
        })
        .collect();
    short.join(",")
}

/// Table rows (without the namespace column) for `kommit get statefulsets|jobs|pvc`: the
/// header, then (namespace, name, object, row) per object.
pub fn header(kind: &str) -> &'static [&'static str] {
    match kind {
        "StatefulSet" => &["NAME", "READY", "AGE"],
        "Job" => &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "CronJob" => &[
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
        ],
        "PersistentVolume" => &[
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
        ],
        "PodDisruptionBudget" => &[
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
        ],
        _ => &[
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "NODE",
        ],
    }
}

/// One row per object of `kind` (`StatefulSet`, `Job`, `PersistentVolumeClaim`), with its
/// object, as (namespace, name, object, cells after NAME). `age` formats an age.
pub fn rows(
    state: &ClusterState,
    kind: &str,
    age: &dyn Fn(u64) -> String,
) -> Vec<(String, String, Value, Vec<String>)> {
    let mut out = Vec::new();
    match kind {
        "StatefulSet" => {
            for (key, s) in &state.desired.stateful_sets {
                let Some(v) = stateful_set(state, key) else {
                    continue;
                };
                let ready = state.stateful_sets.get(key).map_or(0, |r| r.ready);
                let created = first_pod_created(state, &Owner::StatefulSet(key.clone()));
                let cells = vec![
                    format!("{ready}/{}", s.spec.replicas.unwrap_or(1)),
                    created.map_or("<none>".into(), age),
                ];
                let (ns, n) = split(key);
                out.push((ns.to_string(), n.to_string(), v, cells));
            }
        }
        "Job" => {
            for (key, j) in &state.desired.jobs {
                let Some(v) = job(state, key) else { continue };
                let r = state.jobs.get(key);
                let status = match r.and_then(|r| r.outcome.as_ref()) {
                    Some(JobOutcome::Complete) => "Complete",
                    Some(JobOutcome::Failed { .. }) => "Failed",
                    None if j.spec.suspend.unwrap_or(false) => "Suspended",
                    None => "Running",
                };
                let completions = j.spec.completions.map_or("1".into(), |c| c.to_string());
                let duration = r
                    .and_then(|r| {
                        Some(
                            r.completion_time
                                .unwrap_or(state.now)
                                .saturating_sub(r.start_time?),
                        )
                    })
                    .map_or(String::new(), |d| format!("{}s", d / 1000));
                let cells = vec![
                    status.to_string(),
                    format!("{}/{completions}", r.map_or(0, |r| r.succeeded)),
                    duration,
                    r.and_then(|r| r.start_time).map_or("<none>".into(), age),
                ];
                let (ns, n) = split(key);
                out.push((ns.to_string(), n.to_string(), v, cells));
            }
        }
        "CronJob" => {
            for (key, cj) in &state.desired.cron_jobs {
                let Some(v) = cron_job(state, key) else {
                    continue;
                };
                let r = state.cron_jobs.get(key);
                let cells = vec![
                    cj.spec.schedule.to_string(),
                    cj.spec.time_zone.clone().unwrap_or_else(|| "<none>".into()),
                    cj.spec.suspend.unwrap_or(false).to_string(),
                    r.map_or(0, |r| r.active.len()).to_string(),
                    r.and_then(|r| r.last_schedule).map_or("<none>".into(), age),
                ];
                let (ns, n) = split(key);
                out.push((ns.to_string(), n.to_string(), v, cells));
            }
        }
        "PersistentVolume" => {
            for (name, pv) in &state.desired.persistent_volumes {
                let Some(v) = persistent_volume(state, name) else {
                    continue;
                };
                let policy = pv.spec.persistent_volume_reclaim_policy.as_ref().map_or(
                    "Retain",
                    |p| match p {
                        kommit_schemas::model::storage::ReclaimPolicy::Retain => "Retain",
                        kommit_schemas::model::storage::ReclaimPolicy::Delete => "Delete",
                    },
                );
                let cells = vec![
                    v["spec"]["capacity"]["storage"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    access_modes(&pv.spec.access_modes),
                    policy.to_string(),
                    v["status"]["phase"].as_str().unwrap_or("").to_string(),
                    v["spec"]["claimRef"]["name"]
                        .as_str()
                        .map(|n| {
                            format!(
                                "{}/{n}",
                                v["spec"]["claimRef"]["namespace"].as_str().unwrap_or("")
                            )
                        })
                        .unwrap_or_default(),
                    pv.spec.storage_class_name.clone().unwrap_or_default(),
                ];
                // Cluster-scoped: no namespace.
                out.push((String::new(), name.clone(), v, cells));
            }
        }
        "PodDisruptionBudget" => {
            for (key, pdb) in &state.desired.pod_disruption_budgets {
                let Some(v) = disruption_budget(state, key) else {
                    continue;
                };
                let show = |x: &Option<kommit_schemas::model::meta::IntOrString>| {
                    x.as_ref().map_or("N/A".to_string(), |x| match x {
                        kommit_schemas::model::meta::IntOrString::Int(n) => n.to_string(),
                        kommit_schemas::model::meta::IntOrString::String(s) => s.clone(),
                    })
                };
                let cells = vec![
                    show(&pdb.spec.min_available),
                    show(&pdb.spec.max_unavailable),
                    v["status"]["disruptionsAllowed"].to_string(),
                ];
                let (ns, n) = split(key);
                out.push((ns.to_string(), n.to_string(), v, cells));
            }
        }
        _ => {
            for (key, c) in &state.claims {
                let Some(v) = claim(state, key) else { continue };
                let cap = v["status"]["capacity"]["storage"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let cells = vec![
                    c.phase().to_string(),
                    c.volume.clone().unwrap_or_default(),
                    cap,
                    access_modes(&c.spec.access_modes),
                    c.class().to_string(),
                    c.node.clone().unwrap_or_else(|| "<none>".into()),
                ];
                out.push((c.namespace.clone(), c.name.clone(), v, cells));
            }
        }
    }
    out
}

fn first_pod_created(state: &ClusterState, owner: &Owner) -> Option<u64> {
    state
        .pods
        .values()
        .filter(|p| &p.owner == owner)
        .map(|p| p.created_at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn completed_indexes_read_as_ranges() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[0, 1, 2, 4, 6, 7]), "0-2,4,6-7");
        assert_eq!(ranges(&[5]), "5");
    }
}
