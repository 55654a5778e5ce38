//! What the cluster state looks like on the `kommit/status` branch: one file per node and one
//! per workload. Pure: the state and the leader's timestamp in, files out.
//!
//! Health follows what Argo CD users expect: a Deployment is `progressing` while a rollout
//! runs, `healthy` once it completed with every replica ready, `degraded` when it completed
//! but fewer replicas are ready, `failed` past its progress deadline. A StatefulSet is
//! `healthy` with every ordinal available on the update revision; a Job `healthy` once
//! Complete, `failed` once Failed, with its counts; a claim `healthy` once Bound, naming its
//! volume and node; a CronJob `healthy` with its active runs and last and next times, or
//! `degraded` when it cannot run (an unknown time zone).

use crate::git::note::Health;
use crate::git::status::{NodeStatus, ObjectStatus, STATUS_VERSION};
use crate::git::time::Timestamp;
use kommit_reconcilers::{ClusterState, JobOutcome, Owner, PodPhase, PodRecord, RolloutPhase};
use std::collections::BTreeMap;

/// Status files by node name and by `namespace/Kind/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `nodes/<node>.yaml`.
    pub nodes: BTreeMap<String, NodeStatus>,
    /// `objects/<namespace>/<Kind>/<name>.yaml`.
    pub objects: BTreeMap<String, ObjectStatus>,
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

fn object(key: &str, kind: &str, at: Timestamp, health: Health) -> ObjectStatus {
    let (namespace, name) = split(key);
    ObjectStatus {
        version: STATUS_VERSION,
        namespace: namespace.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        at,
        health,
        replicas: None,
        ready_replicas: None,
        message: None,
    }
}

/// The first unschedulable reason among `pods`, as a message.
fn pending_reason<'a>(pods: impl Iterator<Item = &'a PodRecord>) -> Option<String> {
    pods.filter(|p| p.node.is_none()).find_map(|p| {
        p.reason
            .as_ref()
            .map(|r| format!("pod {} is pending: {r}", p.name))
    })
}

/// Builds the status files of `state` at leader time `at`.
pub fn report(state: &ClusterState, at: Timestamp) -> Report {
    let mut out = Report::default();
    for (name, n) in &state.nodes {
        let pods = state.pods_on_node(name).count();
        out.nodes.insert(
            name.clone(),
            NodeStatus {
                version: STATUS_VERSION,
                node: name.clone(),
                at,
                ready: n.ready,
                commit: n.acked.clone(),
                pods: u32::try_from(pods).unwrap_or(u32::MAX),
                message: n.drained.then(|| "drained: no new pods".to_string()),
            },
        );
    }

    let mut by_owner: BTreeMap<&Owner, Vec<&PodRecord>> = BTreeMap::new();
    for p in state.pods.values() {
        by_owner.entry(&p.owner).or_default().push(p);
    }
    let ready = |pods: &[&PodRecord]| pods.iter().filter(|p| p.ready).count() as u32;

    for (key, d) in &state.desired.deployments {
        let want = d.spec.replicas.unwrap_or(1);
        let pods: Vec<&PodRecord> = state
            .replica_sets
            .iter()
            .filter(|(_, rs)| &rs.deployment == key)
            .flat_map(|(rs_key, _)| {
                by_owner
                    .get(&Owner::ReplicaSet(rs_key.clone()))
                    .into_iter()
                    .flatten()
                    .copied()
            })
            .collect();
        let got = ready(&pods);
        let (health, message) = match state.deployments.get(key).map(|s| s.phase) {
            Some(RolloutPhase::Complete) if got >= want => (Health::Healthy, None),
            Some(RolloutPhase::Complete) => (
                Health::Degraded,
                Some(format!("{got} of {want} replicas ready")),
            ),
            Some(RolloutPhase::DeadlineExceeded) => (
                Health::Failed,
                Some("ProgressDeadlineExceeded: the rollout made no progress in time".into()),
            ),
            Some(RolloutPhase::Paused) => (Health::Progressing, Some("rollout paused".into())),
            Some(RolloutPhase::Progressing) | None => (Health::Progressing, None),
        };
        let mut o = object(key, "Deployment", at, health);
        o.replicas = Some(want);
        o.ready_replicas = Some(got);
        o.message = pending_reason(pods.iter().copied()).or(message);
        out.objects
            .insert(format!("{}/Deployment/{}", split(key).0, split(key).1), o);
    }

    for key in state.desired.daemon_sets.keys() {
        let pods: Vec<&PodRecord> = by_owner
            .get(&Owner::DaemonSet(key.clone()))
            .cloned()
            .unwrap_or_default();
        let want = pods.len() as u32;
        let got = ready(&pods);
        let health = if got >= want {
            Health::Healthy
        } else {
            Health::Progressing
        };
        let mut o = object(key, "DaemonSet", at, health);
        o.replicas = Some(want);
        o.ready_replicas = Some(got);
        o.message = pending_reason(pods.iter().copied());
        out.objects
            .insert(format!("{}/DaemonSet/{}", split(key).0, split(key).1), o);
    }

    for key in state.desired.pods.keys() {
        let pods: Vec<&PodRecord> = by_owner
            .get(&Owner::Pod(key.clone()))
            .cloned()
            .unwrap_or_default();
        let (health, message) = match pods.first() {
            None => (Health::Unknown, None),
            Some(p) if p.node.is_none() => (
                Health::Progressing,
                p.reason.as_ref().map(|r| format!("pending: {r}")),
            ),
            Some(p) => match p.phase {
                PodPhase::Running if p.ready => (Health::Healthy, None),
                PodPhase::Succeeded => (Health::Healthy, Some("succeeded".into())),
                PodPhase::Failed => (Health::Failed, Some("failed".into())),
                PodPhase::Unknown => (Health::Unknown, Some("node stopped reporting".into())),
                PodPhase::Running | PodPhase::Pending => (Health::Progressing, None),
            },
        };
        let mut o = object(key, "Pod", at, health);
        o.message = message;
        out.objects
            .insert(format!("{}/Pod/{}", split(key).0, split(key).1), o);
    }

    for (key, ss) in &state.desired.stateful_sets {
        let want = ss.spec.replicas.unwrap_or(1);
        let pods: Vec<&PodRecord> = by_owner
            .get(&Owner::StatefulSet(key.clone()))
            .cloned()
            .unwrap_or_default();
        let got = ready(&pods);
        let (health, message) = match state.stateful_sets.get(key) {
            Some(r) if r.available >= want && r.replicas == want && r.updated == want => {
                (Health::Healthy, None)
            }
            Some(r) => (
                Health::Progressing,
                Some(format!(
                    "{} of {want} pods available; {} on the update revision {}, current revision {}",
                    r.available, r.updated, r.update_revision, r.current_revision
                )),
            ),
            None => (Health::Progressing, None),
        };
        let mut o = object(key, "StatefulSet", at, health);
        o.replicas = Some(want);
        o.ready_replicas = Some(got);
        o.message = pending_reason(pods.iter().copied()).or(message);
        out.objects
            .insert(format!("{}/StatefulSet/{}", split(key).0, split(key).1), o);
    }

    for key in state.desired.jobs.keys() {
        let Some(r) = state.jobs.get(key) else {
            continue;
        };
        let counts = format!(
            "{} active, {} succeeded, {} failed",
            r.active, r.succeeded, r.failed
        );
        let (health, message) = match &r.outcome {
            Some(JobOutcome::Complete) => (Health::Healthy, format!("Complete: {counts}")),
            Some(JobOutcome::Failed { reason, message }) => (
                Health::Failed,
                format!("Failed ({reason}: {message}): {counts}"),
            ),
            None => (Health::Progressing, counts),
        };
        let pods: Vec<&PodRecord> = by_owner
            .get(&Owner::Job(key.clone()))
            .cloned()
            .unwrap_or_default();
        let mut o = object(key, "Job", at, health);
        o.message = pending_reason(pods.iter().copied()).or(Some(message));
        out.objects
            .insert(format!("{}/Job/{}", split(key).0, split(key).1), o);
    }

    for (key, c) in &state.claims {
        let (health, message) = match (&c.volume, &c.node) {
            (Some(v), Some(n)) => (Health::Healthy, format!("Bound: volume {v} on node {n}")),
            _ => (
                Health::Progressing,
                "Pending: waiting for first consumer to be scheduled".to_string(),
            ),
        };
        let mut o = object(key, "PersistentVolumeClaim", at, health);
        o.message = Some(message);
        out.objects.insert(
            format!("{}/PersistentVolumeClaim/{}", split(key).0, split(key).1),
            o,
        );
    }

    for key in state.desired.cron_jobs.keys() {
        let r = state.cron_jobs.get(key);
        let (health, message) = match r.and_then(|r| r.message.clone()) {
            Some(why) => (Health::Degraded, why),
            None => (
                Health::Healthy,
                format!(
                    "{} active; last scheduled {}; next {}",
                    r.map_or(0, |r| r.active.len()),
                    r.and_then(|r| r.last_schedule)
                        .map_or("never".into(), crate::cli::kube::time),
                    r.and_then(|r| r.next_at)
                        .map_or("none".into(), crate::cli::kube::time),
                ),
            ),
        };
        let mut o = object(key, "CronJob", at, health);
        o.message = Some(message);
        out.objects
            .insert(format!("{}/CronJob/{}", split(key).0, split(key).1), o);
    }
    out
}

/// What changed between two reports, ignoring the timestamps: files to write (`Some`) and
/// to delete (`None`). Empty when nothing but time moved.
pub fn diff(
    old: &Report,
    new: &Report,
) -> (
    BTreeMap<String, Option<NodeStatus>>,
    BTreeMap<String, Option<ObjectStatus>>,
) {
    fn changed<T: Clone + PartialEq>(
        old: &BTreeMap<String, T>,
        new: &BTreeMap<String, T>,
        same: impl Fn(&T, &T) -> bool,
    ) -> BTreeMap<String, Option<T>> {
        let mut out = BTreeMap::new();
        for (k, v) in new {
            if !old.get(k).is_some_and(|o| same(o, v)) {
                out.insert(k.clone(), Some(v.clone()));
            }
        }
        for k in old.keys() {
            if !new.contains_key(k) {
                out.insert(k.clone(), None);
            }
        }
        out
    }
    let nodes = changed(&old.nodes, &new.nodes, |a, b| {
        NodeStatus {
            at: b.at,
            ..a.clone()
        } == *b
    });
    let objects = changed(&old.objects, &new.objects, |a, b| {
        ObjectStatus {
            at: b.at,
            ..a.clone()
        } == *b
    });
    (nodes, objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kommit_reconcilers::{Entry, PodStatusChange};

    fn state() -> ClusterState {
        use crate::testutil::{node, template_state};
        template_state(&[node("a", 4000, 8 << 30), node("b", 4000, 8 << 30)], 'c')
    }

    #[test]
    fn a_fresh_rollout_is_progressing_then_healthy_once_pods_report_ready() {
        let mut s = state();
        let at = Timestamp(1);
        let r = report(&s, at);
        let d = &r.objects["default/Deployment/hello"];
        assert_eq!(d.health, Health::Progressing);
        assert_eq!((d.replicas, d.ready_replicas), (Some(2), Some(0)));
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(r.nodes.values().map(|n| n.pods).sum::<u32>(), 2);

        // Both pods report ready: the rollout completes.
        let mut by_node: BTreeMap<String, Vec<PodStatusChange>> = BTreeMap::new();
        for (k, p) in &s.pods {
            by_node
                .entry(p.node.clone().unwrap())
                .or_default()
                .push(PodStatusChange {
                    pod: k.clone(),
                    uid: p.uid.clone(),
                    phase: PodPhase::Running,
                    ready: true,
                    containers: vec![],
                    pod_ip: p.pod_ip,
                    ..Default::default()
                });
        }
        for (node, changes) in by_node {
            s.apply(&Entry::PodStatus { node, changes }, 3000);
        }
        s.apply(&Entry::Tick, 400_000);
        let r2 = report(&s, Timestamp(2));
        let d = &r2.objects["default/Deployment/hello"];
        assert_eq!(d.health, Health::Healthy, "{d:?}");
        assert_eq!(d.ready_replicas, Some(2));

        // Only the Deployment changed; a report that differs only in time is no change.
        let (nodes, objects) = diff(&r, &r2);
        assert!(nodes.is_empty(), "{nodes:?}");
        assert_eq!(
            objects.keys().collect::<Vec<_>>(),
            ["default/Deployment/hello"]
        );
        let (nodes, objects) = diff(&r2, &report(&s, Timestamp(99)));
        assert!(nodes.is_empty() && objects.is_empty());
    }

    #[test]
    fn static_pods_count_as_pods_of_their_node_and_add_no_object() {
        let mut s = state();
        let before = report(&s, Timestamp(1));
        let mut tree = kommit_schemas::SourceTree::default();
        tree.add(
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: s\nspec:\n  containers:\n    - name: c\n      image: x\n",
        );
        let pods = kommit_schemas::validate(&tree, &kommit_schemas::Limits::default())
            .expect("valid")
            .pods
            .into_values()
            .collect();
        s.apply(
            &Entry::StaticPods {
                node: "a".into(),
                pods,
            },
            5,
        );
        let r = report(&s, Timestamp(1));
        assert_eq!(r.nodes["a"].pods, before.nodes["a"].pods + 1);
        assert_eq!(r.objects, before.objects);
    }

    #[test]
    fn removed_objects_and_nodes_are_deleted() {
        let s = state();
        let r = report(&s, Timestamp(1));
        let (nodes, objects) = diff(&r, &Report::default());
        assert!(nodes.values().all(Option::is_none) && nodes.len() == 2);
        assert!(objects.values().all(Option::is_none) && !objects.is_empty());
    }
}
