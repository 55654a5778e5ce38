//! The Job controller, after Kubernetes' `job_controller.go`.
//!
//! - Up to `parallelism` (default 1) pods run at once, and no more than the completions
//!   still missing; with `completions` unset (a work queue) the Job is complete once a pod
//!   succeeded and none is active, and no pod starts after the first success.
//! - `completionMode: Indexed`: one successful pod per index `0..completions`; each pod
//!   carries its index in `JOB_COMPLETION_INDEX`, the label
//!   `batch.kubernetes.io/job-completion-index` and the hostname `<job>-<index>`; the
//!   lowest indexes neither done nor running start first.
//! - Failed pods count against `backoffLimit` (default 6; with `restartPolicy: OnFailure`,
//!   container restarts count too); more failures than the limit fail the Job
//!   (`BackoffLimitExceeded`). A replacement for a failed pod waits 10 s doubling per
//!   failure, at most 6 min, from the last failure.
//! - `activeDeadlineSeconds` from the Job's start fails it (`DeadlineExceeded`).
//! - A finished Job's active pods are stopped; its finished pods stay (status, logs) until
//!   `ttlSecondsAfterFinished` runs out, which removes them and keeps the Job from running
//!   again while its spec is unchanged (Kubernetes deletes the object; here Git holds it).
//! - `suspend: true` stops its active pods and starts none; resuming restarts the
//!   deadline's clock.
//! - A Job whose spec changes is a new Job: the old one's pods go, counts start over.
//!
//! Time comes only from entries: [`next_deadline`] tells the leader when the next
//! back-off, deadline or TTL falls, so it can propose a `Tick` then.

use super::common::{deletion_order, new_pod, remove_pods_of};
use crate::ids;
use crate::records::{JobOutcome, JobRecord};
use crate::state::ClusterState;
use crate::tracker::{Pass, Target};
use crate::types::{Millis, Owner, PodPhase};
use kommit_schemas::model::meta::Label;
use kommit_schemas::model::pod::{EnvVar, PodSpec, RestartPolicy};
use kommit_schemas::model::workloads::{CompletionMode, Job};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The label naming a Job pod's Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The label carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_LABEL: &str = "batch.kubernetes.io/job-completion-index";
/// The variable carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// First back-off after a failed pod, doubled per failure.
const BACKOFF_BASE_MS: Millis = 10_000;
/// Longest back-off.
const BACKOFF_MAX_MS: Millis = 360_000;

/// The back-off before a replacement after `failed` failures.
pub fn backoff(failed: u32) -> Millis {
    if failed == 0 {
        return 0;
    }
    let shift = (failed - 1).min(16);
    (BACKOFF_BASE_MS << shift).min(BACKOFF_MAX_MS)
}

/// Syncs the Jobs `keys` (None: every Job, and the pods and records of Jobs gone from Git
/// or from the CronJobs go). A Job whose new pod found its name taken is left unsettled.
pub(crate) fn reconcile(
    state: &mut ClusterState,
    keys: Option<&BTreeSet<String>>,
    pass: &mut Pass,
) {
    // Git's Jobs and those CronJobs made (a Git Job wins a name both hold).
    let jobs = std::mem::take(&mut state.desired.jobs);
    let spawned = std::mem::take(&mut state.cron_spawned);
    let mut all: BTreeMap<&String, &Job> = spawned.iter().map(|(k, s)| (k, &s.job)).collect();
    all.extend(jobs.iter());
    if keys.is_none() {
        remove_pods_of(
            state,
            |_, o| matches!(o, Owner::Job(k) if !all.contains_key(k)),
        );
        state.jobs.retain(|k, _| all.contains_key(k));
    }
    let selected: Vec<(&String, &Job)> = match keys {
        None => all.iter().map(|(k, j)| (*k, *j)).collect(),
        Some(keys) => keys
            .iter()
            .filter_map(|k| all.get(k).map(|j| (k, *j)))
            .collect(),
    };
    for (key, job) in selected {
        let pods = state.pods.owned_keys(&Owner::Job(key.clone()));
        if !sync(state, key.as_str(), job, pods) {
            pass.unsettled.insert(Target::Job(key.clone()));
        }
        let next = state.jobs.get(key).and_then(|r| wake(r, job, state.now));
        state.tracker.wake(Target::Job(key.clone()), next);
    }
    drop(all);
    state.desired.jobs = jobs;
    state.cron_spawned = spawned;
}

/// The completion index of a pod of an Indexed Job.
fn completion_index(state: &ClusterState, pod: &str) -> Option<u32> {
    state.pods[pod]
        .labels
        .get(COMPLETION_INDEX_LABEL)
        .and_then(|i| i.parse().ok())
}

/// Returns false when a pod could not be made because another pod holds its name.
fn sync(state: &mut ClusterState, key: &str, job: &Job, mut keys: Vec<String>) -> bool {
    let Some((ns, name)) = key.split_once('/') else {
        return true;
    };
    let hash = ids::template_hash(&job.spec);
    let now = state.now;
    let rec = state.jobs.entry(key.to_owned()).or_default();
    if rec.spec_hash != hash {
        *rec = JobRecord {
            spec_hash: hash.clone(),
            ..JobRecord::default()
        };
        for k in keys.drain(..) {
            state.pods.remove(&k);
        }
    }
    if state.jobs[key].expired {
        return true;
    }
    let spec = &job.spec;
    let indexed = spec.completion_mode == Some(CompletionMode::Indexed);
    let parallelism = spec.parallelism.unwrap_or(1);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let on_failure = spec.template.spec.restart_policy == Some(RestartPolicy::OnFailure);

    // Tally the pods.
    let mut active: Vec<String> = Vec::new();
    let (mut succeeded, mut failed_pods, mut restarts, mut ready) = (0u32, 0u32, 0u32, 0u32);
    let mut done: BTreeSet<u32> = BTreeSet::new();
    let mut running_idx: BTreeSet<u32> = BTreeSet::new();
    for k in &keys {
        let p = &state.pods[k];
        match p.phase {
            PodPhase::Succeeded => {
                succeeded += 1;
                if let Some(i) = completion_index(state, k).filter(|_| indexed) {
                    done.insert(i);
                }
            }
            PodPhase::Failed => failed_pods += 1,
            _ => {
                if p.ready {
                    ready += 1;
                }
                if on_failure {
                    restarts = restarts.saturating_add(p.restarts);
                }
                if let Some(i) = completion_index(state, k).filter(|_| indexed) {
                    running_idx.insert(i);
                }
                active.push(k.clone());
            }
        }
    }
    let failed = failed_pods.saturating_add(restarts);
    let completed = if indexed {
        done.len() as u32
    } else {
        succeeded
    };
    let rec = state.jobs.get_mut(key).expect("inserted above");
    if failed > rec.failed && failed_pods > 0 {
        rec.backoff_until = Some(now.saturating_add(backoff(failed_pods)));
    }

    if rec.outcome.is_none() && !spec.suspend.unwrap_or(false) {
        let complete = match spec.completions {
            Some(c) => completed >= c,
            None => succeeded >= 1 && active.is_empty(),
        };
        let deadline = spec.active_deadline_seconds.and_then(|d| {
            rec.start_time
                .map(|s| s.saturating_add(d.get().saturating_mul(1000)))
        });
        if complete {
            rec.outcome = Some(JobOutcome::Complete);
        } else if failed > backoff_limit {
            rec.outcome = Some(JobOutcome::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            });
        } else if deadline.is_some_and(|d| now >= d) {
            rec.outcome = Some(JobOutcome::Failed {
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into(),
            });
        }
        if rec.outcome.is_some() {
            rec.completion_time = Some(now);
        }
    }

    let mut remove: Vec<String> = Vec::new();
    let mut create: Vec<Option<u32>> = Vec::new();
    if rec.outcome.is_some() {
        remove.append(&mut active);
        let ttl_end = spec.ttl_seconds_after_finished.and_then(|t| {
            rec.completion_time
                .map(|c| c.saturating_add(u64::from(t) * 1000))
        });
        if ttl_end.is_some_and(|t| now >= t) {
            rec.expired = true;
            remove.extend(keys.iter().cloned());
        }
    } else if spec.suspend.unwrap_or(false) {
        remove.append(&mut active);
        rec.start_time = None;
    } else {
        if rec.start_time.is_none() {
            rec.start_time = Some(now);
        }
        let want = match spec.completions {
            Some(c) => parallelism.min(c.saturating_sub(completed)),
            // A work queue: after the first success the others finish, none start.
            None if succeeded > 0 => active.len() as u32,
            None => parallelism,
        } as usize;
        let backing_off = rec.backoff_until.is_some_and(|t| now < t);
        if active.len() > want {
            deletion_order(state, &mut active);
            remove.extend(active.drain(..active.len() - want));
        } else if active.len() < want && !backing_off {
            let n = want - active.len();
            if indexed {
                let c = spec.completions.unwrap_or(0);
                create.extend(
                    (0..c)
                        .filter(|i| !done.contains(i) && !running_idx.contains(i))
                        .take(n)
                        .map(Some),
                );
            } else {
                create.extend(std::iter::repeat_n(None, n));
            }
        }
    }
    let rec = state.jobs.get_mut(key).expect("inserted above");
    rec.active = (active.len() + create.len()) as u32;
    rec.ready = ready;
    rec.succeeded = succeeded;
    rec.failed = failed;
    rec.completed_indexes = done.into_iter().collect();
    for k in &remove {
        state.pods.remove(k);
    }
    if create.is_empty() {
        return true;
    }
    let mut labels = job.spec.template.metadata.labels.clone();
    labels.insert(JOB_NAME_LABEL.into(), name.to_owned());
    labels.insert("job-name".into(), name.to_owned());
    let shared = Arc::new(job.spec.template.spec.clone());
    let mut settled = true;
    for idx in create {
        let rec = state.jobs.get_mut(key).expect("inserted above");
        let serial = rec.next_serial;
        rec.next_serial += 1;
        let suffix = ids::safe_suffix(&[key.as_bytes(), hash.as_bytes(), &serial.to_be_bytes()], 5);
        let (pod_name, pod_labels, pod_spec) = match idx {
            None => (
                format!("{name}-{suffix}"),
                labels.clone(),
                Arc::clone(&shared),
            ),
            Some(i) => {
                let mut l = labels.clone();
                l.insert(COMPLETION_INDEX_LABEL.into(), i.to_string());
                (
                    format!("{name}-{i}-{suffix}"),
                    l,
                    Arc::new(indexed_spec(&job.spec.template.spec, name, i)),
                )
            }
        };
        let pod = new_pod(
            ns,
            pod_name,
            Owner::Job(key.to_owned()),
            &hash,
            pod_labels,
            &pod_spec,
            serial,
            now,
        );
        settled &= state.pods.insert_new(pod);
    }
    settled
}

/// An Indexed Job pod's spec: `JOB_COMPLETION_INDEX` in every container and the hostname
/// `<job>-<index>`.
fn indexed_spec(template: &PodSpec, job: &str, i: u32) -> PodSpec {
    let mut spec = template.clone();
    let var = EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: Some(i.to_string()),
        value_from: None,
    };
    for c in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        c.env.retain(|e| e.name != COMPLETION_INDEX_ENV);
        c.env.push(var.clone());
    }
    if spec.hostname.is_none() {
        spec.hostname = Label::new(format!("{job}-{i}")).ok();
    }
    spec
}

/// The earliest time after `now` at which a Job's state changes by time alone: the end of
/// a back-off, an active deadline, a TTL. The leader proposes a `Tick` then.
pub fn next_deadline(state: &ClusterState) -> Option<Millis> {
    state
        .jobs
        .iter()
        .filter_map(|(key, rec)| {
            let job = state
                .desired
                .jobs
                .get(key)
                .or_else(|| state.cron_spawned.get(key).map(|s| &s.job))?;
            wake(rec, job, state.now)
        })
        .min()
}

/// When time alone next changes one Job (after `now`).
fn wake(rec: &JobRecord, job: &Job, now: Millis) -> Option<Millis> {
    if rec.expired || job.spec.suspend.unwrap_or(false) {
        return None;
    }
    let mut times = Vec::new();
    match rec.outcome {
        Some(_) => {
            if let (Some(t), Some(c)) = (job.spec.ttl_seconds_after_finished, rec.completion_time) {
                times.push(c.saturating_add(u64::from(t) * 1000));
            }
        }
        None => {
            if let (Some(d), Some(s)) = (job.spec.active_deadline_seconds, rec.start_time) {
                times.push(s.saturating_add(d.get().saturating_mul(1000)));
            }
            times.extend(rec.backoff_until);
        }
    }
    times.into_iter().filter(|t| *t > now).min()
}
