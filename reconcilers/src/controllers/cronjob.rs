//! The CronJob controller, after Kubernetes' `cronjob_controllerv2.go`.
//!
//! On every entry, for each CronJob: the most recent scheduled time at or before the
//! entry's time that is later than the last one handled (or than when the CronJob was
//! first adopted) is due. Older missed times are not made up, as in Kubernetes.
//! - `suspend: true`: nothing starts (Jobs already running go on).
//! - `startingDeadlineSeconds`: a due time older than that is missed (recorded, not run).
//! - `concurrencyPolicy`: Allow runs it; Forbid waits while a Job of the CronJob is active
//!   (the due time stays due, and runs once the active Job ends if still within the
//!   starting deadline); Replace removes the active Jobs first.
//! - The Job is `<cronjob>-<scheduled time in minutes since the epoch>`, from the
//!   `jobTemplate` as it was at that moment; a scheduled time whose Job exists is done, so
//!   one scheduled time never makes two Jobs, whichever node leads.
//! - Finished Jobs beyond `successfulJobsHistoryLimit` (3) and `failedJobsHistoryLimit` (1)
//!   are removed, oldest first; so are Jobs whose TTL ran out.
//!
//! The CronJob's next scheduled time is kept, so [`next_deadline`] can tell the leader when
//! to propose a `Tick`.

use crate::cron::{zone, Schedule};
use crate::records::{CronJobRecord, JobOutcome, SpawnedJob};
use crate::state::ClusterState;
use crate::types::Millis;
use kommit_schemas::model::meta::{Label, Name, ObjectMeta};
use kommit_schemas::model::workloads::{ConcurrencyPolicy, CronJob, Job};

/// The label naming the CronJob that made a Job.
pub const CRONJOB_LABEL: &str = "kommit.dev/cronjob";

pub(crate) fn reconcile(state: &mut ClusterState) {
    state
        .cron_jobs
        .retain(|k, _| state.desired.cron_jobs.contains_key(k));
    state
        .cron_spawned
        .retain(|_, s| state.desired.cron_jobs.contains_key(&s.cron));
    let crons = std::mem::take(&mut state.desired.cron_jobs);
    for (key, cj) in &crons {
        sync(state, key, cj);
    }
    state.desired.cron_jobs = crons;
}

fn sync(state: &mut ClusterState, key: &str, cj: &CronJob) {
    let Some((ns, name)) = key.split_once('/') else {
        return;
    };
    let now = state.now;
    let rec = state
        .cron_jobs
        .entry(key.to_owned())
        .or_insert_with(|| CronJobRecord {
            since: now,
            ..CronJobRecord::default()
        });
    let parsed = Schedule::parse(&cj.spec.schedule)
        .and_then(|s| zone(cj.spec.time_zone.as_deref()).map(|z| (s, z)));
    let (sched, tz) = match parsed {
        Ok(v) => v,
        Err(e) => {
            rec.message = Some(e);
            rec.next_at = None;
            return;
        }
    };
    rec.message = None;

    // This CronJob's Jobs: finished or active.
    let mut mine: Vec<(Millis, String, Option<bool>)> = state
        .cron_spawned
        .iter()
        .filter(|(_, s)| s.cron == key)
        .map(|(k, s)| {
            let done = state
                .jobs
                .get(k)
                .and_then(|r| match (&r.outcome, r.expired) {
                    (_, true) => Some(None),
                    (Some(JobOutcome::Complete), _) => Some(Some(true)),
                    (Some(JobOutcome::Failed { .. }), _) => Some(Some(false)),
                    (None, _) => None,
                });
            (s.scheduled, k.clone(), done.map(|d| d.unwrap_or(true)))
        })
        .collect();
    mine.sort();
    let active: Vec<String> = mine
        .iter()
        .filter(|(_, _, d)| d.is_none())
        .map(|(_, k, _)| k.clone())
        .collect();

    let rec = state.cron_jobs.get_mut(key).expect("inserted above");
    let handled = rec
        .last_schedule
        .unwrap_or(rec.since)
        .max(rec.last_missed.unwrap_or(0));
    let due = sched.last_at_or_before(now, &tz).filter(|t| *t > handled);
    let mut created: Option<(String, SpawnedJob)> = None;
    let mut replace: Vec<String> = Vec::new();
    if let (Some(t), false) = (due, cj.spec.suspend.unwrap_or(false)) {
        let job_name = format!("{name}-{}", t / 60_000);
        let job_key = format!("{ns}/{job_name}");
        let too_late = cj
            .spec
            .starting_deadline_seconds
            .is_some_and(|d| t.saturating_add(d.saturating_mul(1000)) < now);
        let policy = cj
            .spec
            .concurrency_policy
            .unwrap_or(ConcurrencyPolicy::Allow);
        if state.cron_spawned.contains_key(&job_key) || state.desired.jobs.contains_key(&job_key) {
            rec.last_schedule = Some(t);
        } else if too_late {
            rec.last_missed = Some(t);
        } else if policy == ConcurrencyPolicy::Forbid && !active.is_empty() {
            // Waits: the time stays due.
        } else {
            if policy == ConcurrencyPolicy::Replace {
                replace = active.clone();
            }
            if let Some(job) = make_job(cj, ns, &job_name, key) {
                created = Some((
                    job_key,
                    SpawnedJob {
                        cron: key.to_owned(),
                        scheduled: t,
                        job,
                    },
                ));
            }
            rec.last_schedule = Some(t);
        }
    }
    rec.next_at = if cj.spec.suspend.unwrap_or(false) {
        None
    } else {
        sched.next_after(now, &tz)
    };
    for k in &replace {
        state.cron_spawned.remove(k);
    }
    let mut remove: Vec<String> = Vec::new();
    // History: newest finished Jobs kept per outcome; expired ones go.
    let ok_limit = cj.spec.successful_jobs_history_limit.unwrap_or(3) as usize;
    let failed_limit = cj.spec.failed_jobs_history_limit.unwrap_or(1) as usize;
    let (mut ok, mut failed) = (0usize, 0usize);
    for (_, k, done) in mine.iter().rev() {
        let expired = state.jobs.get(k).is_some_and(|r| r.expired);
        match done {
            _ if expired => remove.push(k.clone()),
            Some(true) => {
                ok += 1;
                if ok > ok_limit {
                    remove.push(k.clone());
                }
            }
            Some(false) => {
                failed += 1;
                if failed > failed_limit {
                    remove.push(k.clone());
                }
            }
            None => {}
        }
    }
    for k in remove {
        state.cron_spawned.remove(&k);
    }
    if let Some((k, s)) = created {
        state.cron_spawned.insert(k, s);
    }
    // Status.
    let rec = state.cron_jobs.get_mut(key).expect("inserted above");
    rec.active = state
        .cron_spawned
        .iter()
        .filter(|(k, s)| s.cron == key && state.jobs.get(*k).is_none_or(|r| r.outcome.is_none()))
        .map(|(k, _)| k.clone())
        .collect();
    if let Some(t) = mine
        .iter()
        .filter(|(_, _, d)| *d == Some(true))
        .filter_map(|(_, k, _)| state.jobs.get(k).and_then(|r| r.completion_time))
        .max()
    {
        rec.last_successful = Some(t);
    }
}

/// The Job a CronJob makes for one scheduled time.
fn make_job(cj: &CronJob, ns: &str, job_name: &str, cron_key: &str) -> Option<Job> {
    let mut labels = cj.spec.job_template.metadata.labels.clone();
    labels.insert(
        CRONJOB_LABEL.into(),
        cron_key
            .split_once('/')
            .map_or(cron_key, |(_, n)| n)
            .to_owned(),
    );
    Some(Job {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        metadata: ObjectMeta {
            name: Name::new(job_name).ok()?,
            namespace: Label::new(ns).ok(),
            labels,
            annotations: cj.spec.job_template.metadata.annotations.clone(),
        },
        spec: cj.spec.job_template.spec.clone(),
    })
}

/// The earliest next scheduled time of any CronJob after the state's time.
pub fn next_deadline(state: &ClusterState) -> Option<Millis> {
    state
        .cron_jobs
        .values()
        .filter_map(|r| r.next_at)
        .filter(|t| *t > state.now)
        .min()
}
