//! CronJob rules, one table test each: runs on schedule from entries' times only, one Job
//! per scheduled time, a missed window beyond startingDeadlineSeconds, Forbid with a run
//! still active, Replace, suspend, history limits, a time zone across a DST change, and the
//! deadline the leader ticks at.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, Entry, PodPhase, PodStatusChange};

/// 2026-03-02T00:00:00Z, a Monday.
const T0: u64 = 1_772_409_600_000;
const MIN: u64 = 60_000;

fn cron_yaml(schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"{schedule}\"\n{extra}  jobTemplate:\n    spec:\n      backoffLimit: 0\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n            - name: main\n              image: busybox\n"
    )
}

struct C {
    s: ClusterState,
    commit: u32,
}

impl C {
    fn new(at: u64) -> Self {
        let mut s = ClusterState::new();
        s.apply(
            &Entry::NodeUp {
                info: node("n1", 8000, 16 * GI, 100),
            },
            at,
        );
        C { s, commit: 0 }
    }
    fn push(&mut self, y: &str, at: u64) {
        let d = desired(&[("kommit.yaml", KOMMIT_YAML), ("cron.yaml", y)]);
        let parent = (self.commit > 0).then(|| format!("c{}", self.commit));
        self.commit += 1;
        let fx = self.s.apply(
            &adopt_entry(&format!("c{}", self.commit), parent.as_deref(), &d),
            at,
        );
        assert!(fx.rejected.is_none());
    }
    fn tick(&mut self, at: u64) {
        self.s.apply(&Entry::Tick, at);
    }
    fn jobs(&self) -> Vec<String> {
        self.s.cron_spawned.keys().cloned().collect()
    }
    fn finish_all(&mut self, at: u64, phase: PodPhase) {
        let changes: Vec<PodStatusChange> = self
            .s
            .pods
            .values()
            .filter(|p| {
                p.node.is_some() && p.phase != PodPhase::Succeeded && p.phase != PodPhase::Failed
            })
            .map(|p| PodStatusChange {
                pod: p.key(),
                uid: p.uid.clone(),
                phase,
                ..Default::default()
            })
            .collect();
        self.s.apply(
            &Entry::PodStatus {
                node: "n1".into(),
                changes,
            },
            at,
        );
    }
}

fn job_name(at: u64) -> String {
    format!("default/tick-{}", at / MIN)
}

#[test]
fn runs_on_schedule_once_per_time() {
    let mut c = C::new(T0);
    c.push(&cron_yaml("*/5 * * * *", ""), T0 + 1000);
    assert!(c.jobs().is_empty(), "nothing before the first time");
    assert_eq!(c.s.next_deadline(), Some(T0 + 5 * MIN));
    c.tick(T0 + 5 * MIN);
    assert_eq!(c.jobs(), vec![job_name(T0 + 5 * MIN)]);
    let pods: Vec<String> = c.s.pods.keys().cloned().collect();
    assert_eq!(pods.len(), 1, "the Job runs a pod");
    assert!(pods[0].starts_with("default/tick-"));
    // Another entry at the same or a later time within the window: no second Job.
    c.tick(T0 + 5 * MIN + 30_000);
    c.tick(T0 + 9 * MIN);
    assert_eq!(c.jobs().len(), 1);
    assert_eq!(
        c.s.cron_jobs["default/tick"].last_schedule,
        Some(T0 + 5 * MIN)
    );
    // A tick long after: only the latest missed time runs (Kubernetes does not make up).
    c.tick(T0 + 31 * MIN);
    assert_eq!(
        c.jobs(),
        vec![job_name(T0 + 5 * MIN), job_name(T0 + 30 * MIN)]
    );
}

#[test]
fn a_missed_window_beyond_the_starting_deadline_does_not_run() {
    let mut c = C::new(T0);
    c.push(
        &cron_yaml("0 * * * *", "  startingDeadlineSeconds: 120\n"),
        T0 + 1000,
    );
    c.tick(T0 + 60 * MIN + 3 * MIN);
    assert!(c.jobs().is_empty(), "3 min late with a 2 min deadline");
    assert_eq!(
        c.s.cron_jobs["default/tick"].last_missed,
        Some(T0 + 60 * MIN)
    );
    c.tick(T0 + 120 * MIN + MIN);
    assert_eq!(
        c.jobs(),
        vec![job_name(T0 + 120 * MIN)],
        "within the window"
    );
}

#[test]
fn forbid_waits_while_a_run_is_active() {
    let mut c = C::new(T0);
    c.push(
        &cron_yaml(
            "* * * * *",
            "  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: 30\n",
        ),
        T0 + 1000,
    );
    c.tick(T0 + MIN);
    assert_eq!(c.jobs().len(), 1);
    c.tick(T0 + 2 * MIN);
    assert_eq!(c.jobs().len(), 1, "the first is still active: skipped");
    // The first ends after the second's window: the 2-minute run never happens.
    c.finish_all(T0 + 2 * MIN + 40_000, PodPhase::Succeeded);
    assert_eq!(c.jobs().len(), 1);
    c.tick(T0 + 3 * MIN);
    assert_eq!(c.jobs(), vec![job_name(T0 + MIN), job_name(T0 + 3 * MIN)]);
}

#[test]
fn replace_removes_the_active_run() {
    let mut c = C::new(T0);
    c.push(
        &cron_yaml("* * * * *", "  concurrencyPolicy: Replace\n"),
        T0 + 1000,
    );
    c.tick(T0 + MIN);
    let first_pods: Vec<String> = c.s.pods.keys().cloned().collect();
    c.tick(T0 + 2 * MIN);
    assert_eq!(c.jobs(), vec![job_name(T0 + 2 * MIN)]);
    assert!(
        first_pods.iter().all(|p| !c.s.pods.contains_key(p)),
        "its pods went"
    );
    assert_eq!(c.s.pods.len(), 1);
}

#[test]
fn allow_overlaps_and_history_limits_keep_the_newest() {
    let mut c = C::new(T0);
    let extra = "  successfulJobsHistoryLimit: 2\n  failedJobsHistoryLimit: 1\n";
    c.push(&cron_yaml("* * * * *", extra), T0 + 1000);
    c.tick(T0 + MIN);
    c.tick(T0 + 2 * MIN);
    assert_eq!(c.jobs().len(), 2, "Allow: both run");
    c.finish_all(T0 + 2 * MIN + 1000, PodPhase::Succeeded);
    for i in 3..=5 {
        c.tick(T0 + i * MIN);
        c.finish_all(T0 + i * MIN + 1000, PodPhase::Succeeded);
    }
    c.tick(T0 + 6 * MIN);
    c.finish_all(T0 + 6 * MIN + 1000, PodPhase::Failed);
    c.tick(T0 + 7 * MIN);
    c.finish_all(T0 + 7 * MIN + 1000, PodPhase::Failed);
    c.tick(T0 + 7 * MIN + 2000);
    assert_eq!(
        c.jobs(),
        vec![
            job_name(T0 + 4 * MIN),
            job_name(T0 + 5 * MIN),
            job_name(T0 + 7 * MIN)
        ],
        "2 successful and 1 failed kept"
    );
}

#[test]
fn suspend_starts_nothing() {
    let mut c = C::new(T0);
    c.push(&cron_yaml("* * * * *", "  suspend: true\n"), T0 + 1000);
    c.tick(T0 + 5 * MIN);
    assert!(c.jobs().is_empty());
    assert_eq!(c.s.next_deadline(), None);
}

#[test]
fn a_time_zone_follows_daylight_saving() {
    // 2026-03-08 in New York: 02:00 EST becomes 03:00 EDT.
    let start = 1_772_928_000_000; // 2026-03-08T00:00:00Z
    let mut c = C::new(start);
    c.push(
        &cron_yaml("30 2 * * *", "  timeZone: America/New_York\n"),
        start + 1000,
    );
    // 02:30 does not exist that day: it runs at 03:30 EDT = 07:30Z.
    let due = start + (7 * 60 + 30) * MIN;
    assert_eq!(c.s.next_deadline(), Some(due));
    c.tick(due - 1000);
    assert!(c.jobs().is_empty());
    c.tick(due);
    assert_eq!(c.jobs(), vec![job_name(due)]);
    // The next day, 02:30 EDT = 06:30Z.
    assert_eq!(c.s.next_deadline(), Some(due + 23 * 60 * MIN));
}

#[test]
fn month_ends_skip_short_months() {
    let jan31 = 1_769_817_600_000; // 2026-01-31T00:00:00Z
    let mut c = C::new(jan31 - MIN);
    c.push(&cron_yaml("0 0 31 * *", ""), jan31 - 1000);
    c.tick(jan31);
    assert_eq!(c.jobs().len(), 1);
    let mar31 = jan31 + 59 * 24 * 60 * MIN;
    assert_eq!(
        c.s.next_deadline(),
        Some(mar31),
        "February and its 28 days skipped"
    );
}

#[test]
fn an_unknown_time_zone_runs_nothing_and_says_why() {
    let mut c = C::new(T0);
    c.push(
        &cron_yaml("* * * * *", "  timeZone: Mars/Olympus\n"),
        T0 + 1000,
    );
    c.tick(T0 + 5 * MIN);
    assert!(c.jobs().is_empty());
    let msg = c.s.cron_jobs["default/tick"].message.clone().unwrap();
    assert!(msg.contains("Mars/Olympus"), "{msg}");
}

#[test]
fn deleting_the_cronjob_removes_its_jobs_and_pods() {
    let mut c = C::new(T0);
    c.push(&cron_yaml("* * * * *", ""), T0 + 1000);
    c.tick(T0 + MIN);
    assert_eq!(c.s.pods.len(), 1);
    let d = desired(&[("kommit.yaml", KOMMIT_YAML)]);
    c.s.apply(&adopt_entry("c9", Some("c1"), &d), T0 + MIN + 1000);
    assert!(c.jobs().is_empty() && c.s.pods.is_empty() && c.s.jobs.is_empty());
}
