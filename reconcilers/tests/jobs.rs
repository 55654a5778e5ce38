//! Job rules, one table test each: completions and parallelism, backoffLimit with the
//! replacement back-off, Indexed completions, activeDeadlineSeconds, suspend,
//! ttlSecondsAfterFinished, a changed spec, and the deadline the leader ticks at.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::controllers::job::{backoff, next_deadline};
use kommit_reconcilers::{ClusterState, Entry, JobOutcome, PodPhase, PodStatusChange};

fn job_yaml(extra: &str, restart: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: work\nspec:\n{extra}  template:\n    spec:\n      restartPolicy: {restart}\n      containers:\n        - name: main\n          image: busybox\n"
    )
}

struct C {
    s: ClusterState,
    t: u64,
    commit: u32,
}

impl C {
    fn new() -> Self {
        let mut s = ClusterState::new();
        for n in ["n1", "n2"] {
            s.apply(
                &Entry::NodeUp {
                    info: node(n, 8000, 16 * GI, 50),
                },
                1,
            );
        }
        C {
            s,
            t: 10_000,
            commit: 0,
        }
    }
    fn push(&mut self, job: &str) {
        let d = desired(&[("kommit.yaml", KOMMIT_YAML), ("job.yaml", job)]);
        let parent = (self.commit > 0).then(|| format!("c{}", self.commit));
        self.commit += 1;
        self.t += 1000;
        let fx = self.s.apply(
            &adopt_entry(&format!("c{}", self.commit), parent.as_deref(), &d),
            self.t,
        );
        assert!(fx.rejected.is_none());
    }
    fn tick(&mut self, ms: u64) {
        self.t += ms;
        self.s.apply(&Entry::Tick, self.t);
    }
    fn active(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .s
            .pods
            .values()
            .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
            .map(|p| p.key())
            .collect();
        v.sort();
        v
    }
    /// Reports every active pod finished with `phase`.
    fn finish_all(&mut self, phase: PodPhase) {
        for k in self.active() {
            self.finish(&k, phase);
        }
    }
    fn finish(&mut self, k: &str, phase: PodPhase) {
        let p = &self.s.pods[k];
        let e = Entry::PodStatus {
            node: p.node.clone().unwrap(),
            changes: vec![PodStatusChange {
                pod: k.into(),
                uid: p.uid.clone(),
                phase,
                ..Default::default()
            }],
        };
        self.t += 1000;
        self.s.apply(&e, self.t);
    }
    fn rec(&self) -> &kommit_reconcilers::JobRecord {
        &self.s.jobs["default/work"]
    }
}

#[test]
fn completions_with_bounded_parallelism() {
    let mut c = C::new();
    c.push(&job_yaml("  completions: 5\n  parallelism: 2\n", "Never"));
    let mut most = 0;
    for _ in 0..10 {
        let a = c.active();
        most = most.max(a.len());
        if a.is_empty() {
            break;
        }
        assert!(c.s.pods[&a[0]].node.is_some(), "scheduled");
        c.finish(&a[0], PodPhase::Succeeded);
    }
    assert_eq!(most, 2);
    let r = c.rec();
    assert_eq!(r.outcome, Some(JobOutcome::Complete));
    assert_eq!((r.succeeded, r.failed, r.active), (5, 0, 0));
    assert!(r.completion_time.is_some());
    // Finished pods stay, with their phase, and no more start.
    assert_eq!(c.s.pods.len(), 5);
    c.tick(1000);
    assert!(c.active().is_empty());
}

#[test]
fn backoff_limit_stops_the_job_and_replacements_back_off() {
    let mut c = C::new();
    c.push(&job_yaml("  backoffLimit: 2\n", "Never"));
    assert_eq!(c.active().len(), 1);
    c.finish_all(PodPhase::Failed);
    assert_eq!(c.active().len(), 0, "the replacement backs off 10 s");
    assert_eq!(next_deadline(&c.s), Some(c.t + backoff(1)));
    c.tick(backoff(1));
    assert_eq!(c.active().len(), 1);
    c.finish_all(PodPhase::Failed);
    c.tick(backoff(2) - 1000);
    assert_eq!(c.active().len(), 0, "20 s after the second failure");
    c.tick(1000);
    assert_eq!(c.active().len(), 1);
    c.finish_all(PodPhase::Failed);
    let r = c.rec();
    assert_eq!(r.failed, 3);
    assert!(
        matches!(&r.outcome, Some(JobOutcome::Failed { reason, .. }) if reason == "BackoffLimitExceeded")
    );
    c.tick(600_000);
    assert!(c.active().is_empty(), "no pod after the limit");
    assert_eq!(backoff(6), 320_000);
    assert_eq!(backoff(7), 360_000, "capped at 6 min");
}

#[test]
fn on_failure_restarts_count_against_the_limit() {
    let mut c = C::new();
    c.push(&job_yaml("  backoffLimit: 1\n", "OnFailure"));
    let k = c.active()[0].clone();
    let p = &c.s.pods[&k];
    let e = Entry::PodStatus {
        node: p.node.clone().unwrap(),
        changes: vec![PodStatusChange {
            pod: k.clone(),
            uid: p.uid.clone(),
            phase: PodPhase::Running,
            containers: vec![kommit_reconcilers::ContainerStatus {
                name: "main".into(),
                restarts: 2,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    c.s.apply(&e, c.t + 1);
    assert!(matches!(&c.rec().outcome, Some(JobOutcome::Failed { .. })));
    assert!(c.active().is_empty(), "its active pod is stopped");
}

#[test]
fn indexed_completions_one_per_index() {
    let mut c = C::new();
    c.push(&job_yaml(
        "  completions: 3\n  parallelism: 2\n  completionMode: Indexed\n",
        "Never",
    ));
    let a = c.active();
    let idx: Vec<String> = a
        .iter()
        .map(|k| c.s.pods[k].labels["batch.kubernetes.io/job-completion-index"].clone())
        .collect();
    assert_eq!(idx, vec!["0", "1"]);
    let p = &c.s.pods[&a[1]];
    let env = &p.spec.containers[0].env;
    assert!(env
        .iter()
        .any(|e| e.name == "JOB_COMPLETION_INDEX" && e.value.as_deref() == Some("1")));
    assert_eq!(p.spec.hostname.as_ref().unwrap().as_str(), "work-1");
    assert!(p.name.starts_with("work-1-"));
    // Index 1 fails: it is retried (after the back-off) while index 2 starts.
    c.finish(&a[1], PodPhase::Failed);
    c.finish(&a[0], PodPhase::Succeeded);
    let idx: Vec<String> = c
        .active()
        .iter()
        .map(|k| c.s.pods[k].labels["batch.kubernetes.io/job-completion-index"].clone())
        .collect();
    assert_eq!(idx, Vec::<String>::new(), "backing off");
    c.tick(backoff(1));
    let idx: Vec<String> = c
        .active()
        .iter()
        .map(|k| c.s.pods[k].labels["batch.kubernetes.io/job-completion-index"].clone())
        .collect();
    assert_eq!(idx, vec!["1", "2"]);
    c.finish_all(PodPhase::Succeeded);
    let r = c.rec();
    assert_eq!(r.completed_indexes, vec![0, 1, 2]);
    assert_eq!(r.outcome, Some(JobOutcome::Complete));
    assert_eq!((r.succeeded, r.failed), (3, 1));
}

#[test]
fn active_deadline_fails_the_job() {
    let mut c = C::new();
    c.push(&job_yaml(
        "  activeDeadlineSeconds: 30\n  parallelism: 2\n  completions: 4\n",
        "Never",
    ));
    let start = c.t;
    assert_eq!(next_deadline(&c.s), Some(start + 30_000));
    c.tick(29_000);
    assert_eq!(c.active().len(), 2);
    c.tick(1000);
    assert!(
        matches!(&c.rec().outcome, Some(JobOutcome::Failed { reason, .. }) if reason == "DeadlineExceeded")
    );
    assert!(c.active().is_empty());
}

#[test]
fn suspend_stops_and_resume_restarts_the_clock() {
    let mut c = C::new();
    c.push(&job_yaml(
        "  suspend: true\n  activeDeadlineSeconds: 30\n",
        "Never",
    ));
    assert!(c.active().is_empty());
    assert_eq!(c.rec().start_time, None);
    c.push(&job_yaml(
        "  suspend: false\n  activeDeadlineSeconds: 30\n",
        "Never",
    ));
    // A changed spec is a new Job; the suspended one had no pods.
    assert_eq!(c.active().len(), 1);
    assert_eq!(c.rec().start_time, Some(c.t));
}

#[test]
fn ttl_after_finished_removes_the_pods_for_good() {
    let mut c = C::new();
    c.push(&job_yaml("  ttlSecondsAfterFinished: 60\n", "Never"));
    c.finish_all(PodPhase::Succeeded);
    let done = c.t;
    assert_eq!(next_deadline(&c.s), Some(done + 60_000));
    c.tick(59_000);
    assert_eq!(c.s.pods.len(), 1);
    c.tick(1000);
    assert!(c.s.pods.is_empty());
    assert!(c.rec().expired);
    c.tick(1000);
    assert!(c.s.pods.is_empty(), "not run again");
    assert_eq!(next_deadline(&c.s), None);
}

#[test]
fn a_job_deleted_from_git_takes_its_pods() {
    let mut c = C::new();
    c.push(&job_yaml("  parallelism: 3\n  completions: 3\n", "Never"));
    assert_eq!(c.active().len(), 3);
    let d = desired(&[("kommit.yaml", KOMMIT_YAML)]);
    c.commit += 1;
    c.s.apply(
        &adopt_entry("c9", Some(&format!("c{}", c.commit - 1)), &d),
        c.t + 1,
    );
    assert!(c.s.pods.is_empty() && c.s.jobs.is_empty());
}

#[test]
fn work_queue_completes_on_first_success_once_others_end() {
    let mut c = C::new();
    c.push(&job_yaml("  parallelism: 2\n", "Never"));
    let a = c.active();
    assert_eq!(a.len(), 2);
    c.finish(&a[0], PodPhase::Succeeded);
    assert_eq!(c.active(), vec![a[1].clone()], "no new pod after a success");
    assert!(c.rec().outcome.is_none());
    c.finish(&a[1], PodPhase::Succeeded);
    assert_eq!(c.rec().outcome, Some(JobOutcome::Complete));
}

#[test]
fn a_lost_node_keeps_finished_pods_and_reruns_only_the_active_one() {
    let mut c = C::new();
    c.push(&job_yaml("  completions: 3\n  parallelism: 1\n", "Never"));
    let first = c.active()[0].clone();
    c.finish(&first, PodPhase::Succeeded);
    let second = c.active()[0].clone();
    let node = c.s.pods[&second].node.clone().unwrap();
    let first_node = c.s.pods[&first].node.clone().unwrap();
    c.s.apply(&Entry::NodeDown { node: node.clone() }, c.t + 1);
    c.s.apply(&Entry::NodeDown { node: first_node }, c.t + 2);
    assert!(c.s.pods.contains_key(&first), "the completion is kept");
    assert_eq!(c.rec().succeeded, 1);
    assert!(
        !c.s.pods.contains_key(&second),
        "the active pod was evicted"
    );
}
