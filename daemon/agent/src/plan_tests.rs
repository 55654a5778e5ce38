use super::*;
use crate::translate::{ContainerPlan, PodPlan, Probes, LABEL_UID};
use kommit_runtime::spec::{ContainerSpec, PodSpec as Sandbox};
use kommit_schemas::model::pod::PullPolicy;

fn container(name: &str) -> ContainerPlan {
    ContainerPlan {
        spec: ContainerSpec::new(name, "busybox:1.36", &["true"]),
        pull: PullPolicy::IfNotPresent,
        probes: Probes::default(),
        mounts: vec![],
        post_start: None,
        pre_stop: None,
    }
}

fn pod(init: &[&str], containers: &[&str], policy: RestartPolicy) -> PodPlan {
    PodPlan {
        key: "default/web".into(),
        uid: "u1".into(),
        sandbox: Sandbox::new("default_web_u1").with_labels([(LABEL_UID, "u1")]),
        address: None,
        ports: vec![],
        init: init.iter().map(|n| container(n)).collect(),
        containers: containers.iter().map(|n| container(n)).collect(),
        restart_policy: policy,
        grace_ms: 30_000,
        volumes: BTreeMap::new(),
        config_error: None,
        pull_credentials: BTreeMap::new(),
    }
}

/// A runtime container: `name.attempt`, state, exit code, started and finished (seconds).
fn rc(rname: &str, state: ContainerState, code: Option<i32>, times: (u64, u64)) -> RtContainer {
    RtContainer {
        name: rname.into(),
        pod: "default_web_u1".into(),
        image: "busybox:1.36".into(),
        state,
        pid: None,
        exit_code: code,
        reason: None,
        started_at_ms: Some(times.0 * 1000),
        finished_at_ms: (state == ContainerState::Exited).then_some(times.1 * 1000),
    }
}

fn observed(containers: Vec<RtContainer>) -> Observed {
    let mut o = Observed::default();
    o.pods.insert(
        "default_web_u1".into(),
        RtPod {
            id: "default_web_u1".into(),
            ready: true,
            shim_pid: Some(1),
            containers,
            labels: BTreeMap::from([(LABEL_UID.to_string(), "u1".to_string())]),
        },
    );
    o
}

fn start(c: &str, attempt: u32) -> Action {
    Action::StartContainer {
        key: "default/web".into(),
        container: c.into(),
        attempt,
    }
}

use ContainerState::{Created, Exited, Running};

#[test]
fn a_new_pod_gets_a_sandbox_then_its_containers() {
    let p = pod(&[], &["a", "b"], RestartPolicy::Always);
    let got = plan(&[p], &Observed::default(), 0);
    assert_eq!(
        got.actions,
        vec![
            Action::CreatePod {
                key: "default/web".into()
            },
            start("a", 0),
            start("b", 0)
        ]
    );
}

#[test]
fn init_containers_run_one_at_a_time_in_order() {
    let p = pod(&["i1", "i2"], &["app"], RestartPolicy::Always);
    // (runtime containers, what starts next)
    let rows: Vec<(Vec<RtContainer>, Vec<Action>)> = vec![
        (vec![], vec![start("i1", 0)]),
        (vec![rc("i1.0", Running, None, (1, 0))], vec![]),
        (
            vec![rc("i1.0", Exited, Some(0), (1, 2))],
            vec![start("i2", 0)],
        ),
        (
            vec![
                rc("i1.0", Exited, Some(0), (1, 2)),
                rc("i2.0", Exited, Some(0), (2, 3)),
            ],
            vec![start("app", 0)],
        ),
        // A failed init container retries with back-off (10 s after it ended).
        (vec![rc("i1.0", Exited, Some(1), (1, 2))], vec![]),
    ];
    for (i, (cs, want)) in rows.into_iter().enumerate() {
        let got = plan(std::slice::from_ref(&p), &observed(cs), 5_000);
        assert_eq!(got.actions, want, "row {i}");
    }
    let failed = observed(vec![rc("i1.0", Exited, Some(1), (1, 2))]);
    assert_eq!(
        plan(std::slice::from_ref(&p), &failed, 12_000).actions,
        vec![start("i1", 1)]
    );
    let never = pod(&["i1"], &["app"], RestartPolicy::Never);
    assert_eq!(plan(&[never], &failed, 100_000).actions, vec![]);
}

#[test]
fn restart_policies_decide_what_restarts() {
    // (policy, exit code, restarts?)
    let rows = [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::Always, 1, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 137, true),
        (RestartPolicy::Never, 0, false),
        (RestartPolicy::Never, 1, false),
    ];
    for (policy, code, again) in rows {
        let p = pod(&[], &["app"], policy);
        let o = observed(vec![rc("app.0", Exited, Some(code), (0, 1))]);
        let got = plan(&[p], &o, 1_000_000).actions;
        let want = if again { vec![start("app", 1)] } else { vec![] };
        assert_eq!(got, want, "{policy:?} exit {code}");
    }
}

#[test]
fn back_off_doubles_from_10s_to_a_5min_cap_and_resets_after_10min() {
    assert_eq!(
        (0..7).map(backoff_ms).collect::<Vec<_>>(),
        vec![10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]
    );
    // (streak in memory, ran for s, seconds after the exit, restarts now?, wake at s)
    let rows = [
        (0, 1, 9, false, Some(10)),
        (0, 1, 10, true, None),
        (1, 1, 19, false, Some(20)),
        (1, 1, 20, true, None),
        (2, 1, 39, false, Some(40)),
        (8, 1, 299, false, Some(300)),
        (8, 1, 300, true, None),
        // A 10-minute clean run resets the back-off.
        (8, 600, 10, true, None),
    ];
    for (streak, ran, after, again, wake) in rows {
        let p = pod(&[], &["app"], RestartPolicy::Always);
        let mut o = observed(vec![rc("app.3", Exited, Some(1), (0, ran))]);
        o.memory.insert(
            "default_web_u1".into(),
            PodMemory {
                containers: BTreeMap::from([(
                    "app".to_string(),
                    ContainerMemory {
                        streak,
                        ..Default::default()
                    },
                )]),
                ..Default::default()
            },
        );
        let got = plan(&[p], &o, (ran + after) * 1000);
        let want = if again { vec![start("app", 4)] } else { vec![] };
        assert_eq!(got.actions, want, "streak {streak} ran {ran} after {after}");
        assert_eq!(
            got.wake_at,
            wake.map(|w| (ran + w) * 1000),
            "wake, streak {streak}"
        );
    }
}

#[test]
fn an_unhealthy_container_is_killed_and_a_made_one_is_made_again() {
    let p = pod(&[], &["app"], RestartPolicy::Always);
    let mut o = observed(vec![rc("app.2", Running, None, (1, 0))]);
    o.memory.insert(
        "default_web_u1".into(),
        PodMemory {
            containers: BTreeMap::from([(
                "app".to_string(),
                ContainerMemory {
                    unhealthy: true,
                    ..Default::default()
                },
            )]),
            ..Default::default()
        },
    );
    let got = plan(std::slice::from_ref(&p), &o, 5_000).actions;
    assert!(
        matches!(&got[..], [Action::KillContainer { runtime_name, .. }] if runtime_name == "app.2"),
        "{got:?}"
    );
    let o = observed(vec![rc("app.1", Created, None, (1, 0))]);
    let got = plan(&[p], &o, 5_000).actions;
    assert_eq!(
        got,
        vec![
            Action::RemoveContainer {
                sandbox: "default_web_u1".into(),
                runtime_name: "app.1".into()
            },
            start("app", 1)
        ]
    );
}

#[test]
fn old_attempts_and_unbound_pods_are_removed_foreign_pods_are_not() {
    let p = pod(&[], &["app"], RestartPolicy::Always);
    let mut o = observed(vec![
        rc("app.0", Exited, Some(1), (0, 1)),
        rc("app.1", Exited, Some(1), (2, 3)),
        rc("app.2", Running, None, (4, 0)),
    ]);
    o.pods.insert(
        "default_old_u0".into(),
        RtPod {
            id: "default_old_u0".into(),
            ready: true,
            shim_pid: None,
            containers: vec![],
            labels: BTreeMap::from([(LABEL_UID.to_string(), "u0".to_string())]),
        },
    );
    o.pods.insert(
        "ctr-pod".into(),
        RtPod {
            id: "ctr-pod".into(),
            ready: true,
            shim_pid: None,
            containers: vec![],
            labels: BTreeMap::new(),
        },
    );
    let got = plan(&[p], &o, 10_000).actions;
    assert_eq!(
        got,
        vec![
            Action::RemovePod {
                sandbox: "default_old_u0".into(),
                grace_ms: 30_000,
                reason: "no longer bound to this node".into()
            },
            Action::RemoveContainer {
                sandbox: "default_web_u1".into(),
                runtime_name: "app.0".into()
            },
        ]
    );
}

#[test]
fn a_steady_pod_needs_nothing_and_pull_failures_back_off() {
    let p = pod(&[], &["app"], RestartPolicy::Always);
    let o = observed(vec![rc("app.0", Running, None, (1, 0))]);
    assert_eq!(plan(std::slice::from_ref(&p), &o, 5_000), Plan::default());
    let mut o = Observed::default();
    o.memory.insert(
        "default_web_u1".into(),
        PodMemory {
            containers: BTreeMap::from([(
                "app".to_string(),
                ContainerMemory {
                    pull_error: Some((1_000, 2, "unreachable".into())),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        },
    );
    let got = plan(std::slice::from_ref(&p), &o, 5_000);
    assert_eq!(
        got.actions,
        vec![Action::CreatePod {
            key: "default/web".into()
        }]
    );
    assert_eq!(got.wake_at, Some(21_000));
    let got = plan(&[p], &o, 21_000);
    assert_eq!(got.actions.last(), Some(&start("app", 0)));
}

#[test]
fn runtime_names_round_trip() {
    assert_eq!(runtime_name("web", 3), "web.3");
    assert_eq!(parse_runtime_name("web.3"), Some(("web", 3)));
    assert_eq!(parse_runtime_name("web"), None);
    assert_eq!(parse_runtime_name("a.b"), None);
}

#[test]
fn a_sandbox_that_could_not_be_made_is_retried_with_back_off() {
    let p = pod(&[], &["app"], RestartPolicy::Always);
    // (failures so far, ms since the last one, retried now?)
    let rows = [
        (1, 499, false),
        (1, 500, true),
        (2, 999, false),
        (2, 1000, true),
        (9, 29_999, false),
        (9, 30_000, true),
    ];
    for (n, since, again) in rows {
        let mut o = Observed::default();
        o.memory.insert(
            "default_web_u1".into(),
            PodMemory {
                sandbox_error: Some((1_000, n, "IP held".into())),
                ..Default::default()
            },
        );
        let got = plan(std::slice::from_ref(&p), &o, 1_000 + since);
        assert_eq!(
            got.actions.first()
                == Some(&Action::CreatePod {
                    key: "default/web".into()
                }),
            again,
            "{n} failures, {since} ms: {got:?}"
        );
    }
}
