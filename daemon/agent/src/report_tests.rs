use super::*;
use crate::plan::{ContainerMemory, PodMemory};
use crate::probe::Verdicts;
use crate::translate::{ContainerPlan, PodPlan, Probes};
use kommit_runtime::spec::{ContainerSpec, PodSpec as Sandbox};
use kommit_schemas::model::pod::PullPolicy;

fn plan(init: &[&str], containers: &[&str], policy: RestartPolicy) -> PodPlan {
    let c = |n: &&str| ContainerPlan {
        spec: ContainerSpec::new(n, "busybox:1.36", &["true"]),
        pull: PullPolicy::IfNotPresent,
        probes: Probes::default(),
        mounts: vec![],
        post_start: None,
        pre_stop: None,
    };
    PodPlan {
        key: "default/web".into(),
        uid: "u1".into(),
        sandbox: Sandbox::new("s"),
        address: None,
        ports: vec![],
        init: init.iter().map(c).collect(),
        containers: containers.iter().map(c).collect(),
        restart_policy: policy,
        grace_ms: 1000,
        volumes: BTreeMap::new(),
        config_error: None,
        pull_credentials: BTreeMap::new(),
    }
}

fn rc(rname: &str, state: ContainerState, code: Option<i32>) -> RtContainer {
    RtContainer {
        name: rname.into(),
        pod: "s".into(),
        image: "busybox:1.36".into(),
        state,
        pid: None,
        exit_code: code,
        reason: None,
        started_at_ms: Some(1_000),
        finished_at_ms: (state == ContainerState::Exited).then_some(2_000),
    }
}

fn rt(cs: Vec<RtContainer>) -> RtPod {
    RtPod {
        id: "s".into(),
        ready: true,
        shim_pid: None,
        containers: cs,
        labels: BTreeMap::new(),
    }
}

use ContainerState::{Exited, Running};

#[test]
fn phases_and_readiness_follow_kubernetes() {
    let ready = |_: &str| {
        Some(Verdicts {
            started: true,
            ready: true,
            ..Default::default()
        })
    };
    let unready = |_: &str| Some(Verdicts::default());
    type V<'a> = &'a dyn Fn(&str) -> Option<Verdicts>;
    // (init, containers, policy, runtime containers, verdicts, phase, ready)
    type Row<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        RestartPolicy,
        Option<Vec<RtContainer>>,
        V<'a>,
        PodPhase,
        bool,
    );
    let rows: Vec<Row> = vec![
        (
            &[],
            &["a"],
            RestartPolicy::Always,
            None,
            &ready,
            PodPhase::Pending,
            false,
        ),
        (
            &[],
            &["a"],
            RestartPolicy::Always,
            Some(vec![rc("a.0", Running, None)]),
            &ready,
            PodPhase::Running,
            true,
        ),
        (
            &[],
            &["a"],
            RestartPolicy::Always,
            Some(vec![rc("a.0", Running, None)]),
            &unready,
            PodPhase::Running,
            false,
        ),
        (
            &[],
            &["a", "b"],
            RestartPolicy::Always,
            Some(vec![rc("a.0", Running, None)]),
            &ready,
            PodPhase::Running,
            false,
        ),
        (
            &["i"],
            &["a"],
            RestartPolicy::Always,
            Some(vec![rc("i.0", Running, None)]),
            &ready,
            PodPhase::Pending,
            false,
        ),
        (
            &["i"],
            &["a"],
            RestartPolicy::Never,
            Some(vec![rc("i.0", Exited, Some(2))]),
            &ready,
            PodPhase::Failed,
            false,
        ),
        (
            &[],
            &["a"],
            RestartPolicy::Never,
            Some(vec![rc("a.0", Exited, Some(0))]),
            &ready,
            PodPhase::Succeeded,
            false,
        ),
        (
            &[],
            &["a"],
            RestartPolicy::Never,
            Some(vec![rc("a.0", Exited, Some(1))]),
            &ready,
            PodPhase::Failed,
            false,
        ),
        (
            &[],
            &["a"],
            RestartPolicy::OnFailure,
            Some(vec![rc("a.0", Exited, Some(0))]),
            &ready,
            PodPhase::Succeeded,
            false,
        ),
        // Crash-looping under Always: Running (waiting to restart), not ready.
        (
            &[],
            &["a"],
            RestartPolicy::Always,
            Some(vec![rc("a.0", Exited, Some(1))]),
            &ready,
            PodPhase::Running,
            false,
        ),
    ];
    for (i, (init, cs, policy, runtime, v, phase, want_ready)) in rows.into_iter().enumerate() {
        let p = plan(init, cs, policy);
        let r = runtime.map(rt);
        let s = pod_status(&p, r.as_ref(), None, v, None, 5_000);
        assert_eq!((s.phase, s.ready), (phase, want_ready), "row {i}: {s:?}");
    }
}

#[test]
fn container_states_speak_kubernetes() {
    let p = plan(&[], &["a"], RestartPolicy::Always);
    let r = rt(vec![
        rc("a.0", Exited, Some(1)),
        rc("a.1", Exited, Some(137)),
    ]);
    let mem = PodMemory {
        containers: BTreeMap::from([(
            "a".to_string(),
            ContainerMemory {
                streak: 1,
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    let none = |_: &str| None;
    let s = pod_status(&p, Some(&r), Some(&mem), &none, None, 5_000);
    let c = &s.containers[0];
    assert_eq!(c.restarts, 1);
    assert!(
        matches!(&c.state, Some(KState::Waiting { reason, .. }) if reason == "CrashLoopBackOff"),
        "{c:?}"
    );
    assert!(
        matches!(
            &c.last_state,
            Some(KState::Terminated { exit_code: 137, .. })
        ),
        "{c:?}"
    );
    // Past the back-off it shows as terminated until the restart happens.
    let s = pod_status(&p, Some(&r), Some(&mem), &none, None, 100_000);
    assert!(
        matches!(&s.containers[0].state, Some(KState::Terminated { reason, .. }) if reason == "Error")
    );
    // A pull failure shows as ErrImagePull, then ImagePullBackOff.
    let mem = PodMemory {
        containers: BTreeMap::from([(
            "a".to_string(),
            ContainerMemory {
                pull_error: Some((1_000, 2, "no route".into())),
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    let s = pod_status(&p, None, Some(&mem), &none, None, 5_000);
    assert!(
        matches!(&s.containers[0].state, Some(KState::Waiting { reason, .. }) if reason == "ImagePullBackOff")
    );
}

#[test]
fn the_coalescer_sends_changes_at_a_bounded_rate() {
    let a = PodStatusChange {
        pod: "default/a".into(),
        uid: "u".into(),
        ..Default::default()
    };
    let mut c = Coalescer::default();
    let now = 10_000;
    let first = c.due(std::slice::from_ref(&a), now).expect("first report");
    c.sent(&first, &["default/a".into()], now);
    assert_eq!(
        c.due(std::slice::from_ref(&a), now + 1000),
        None,
        "unchanged"
    );
    let mut b = a.clone();
    b.phase = PodPhase::Running;
    assert_eq!(c.due(std::slice::from_ref(&b), now + 100), None, "too soon");
    assert!(c.due(std::slice::from_ref(&b), now + 200).is_some());
}
