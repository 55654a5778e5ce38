use super::*;
use crate::translate::{ContainerPlan, PodPlan, Probes, LABEL_UID};
use kommit_runtime::fake::FakeNode;
use kommit_runtime::spec::{ContainerSpec, PodSpec as Sandbox};
use kommit_runtime::traits::PodAddress;
use kommit_schemas::model::pod::RestartPolicy;

fn pod(i: usize) -> PodPlan {
    let uid = format!("u{i}");
    PodPlan {
        key: format!("default/web-{i}"),
        uid: uid.clone(),
        sandbox: Sandbox::new(&format!("default_web-{i}_{uid}")).with_labels([(LABEL_UID, &*uid)]),
        address: Some(PodAddress {
            ip: std::net::Ipv4Addr::new(10, 88, 0, 10 + i as u8),
            cidr: "10.88.0.0/24".parse().expect("cidr"),
        }),
        ports: vec![],
        init: vec![],
        containers: vec![ContainerPlan {
            spec: ContainerSpec::new("app", "busybox:1.36", &["sleep", "3600"]),
            pull: PullPolicy::IfNotPresent,
            probes: Probes::default(),
            mounts: vec![],
            post_start: None,
            pre_stop: None,
        }],
        restart_policy: RestartPolicy::Always,
        grace_ms: 1_000,
        volumes: BTreeMap::new(),
        config_error: None,
        pull_credentials: BTreeMap::new(),
    }
}

fn executor(node: &FakeNode) -> Executor {
    let rt = Runtimes {
        containers: Arc::new(node.runtime()),
        images: Arc::new(node.images()),
        network: Arc::new(node.network()),
        volumes: Arc::new(node.volumes()),
    };
    Executor::new(rt, Arc::new(|_: &str| None), Arc::new(|| {}))
}

fn count(calls: &[String], op: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.starts_with(&format!("{op}(")))
        .count()
}

#[test]
fn pods_run_in_parallel_and_a_failed_pod_stops_only_its_own_steps() {
    let node = FakeNode::new("10.88.0.0/24".parse().expect("cidr"));
    node.add_image("docker.io/library/busybox:1.36");
    let exec = executor(&node);
    let plans: Vec<PodPlan> = (0..9).map(pod).collect();
    let by_key: BTreeMap<String, &PodPlan> = plans.iter().map(|p| (p.key.clone(), p)).collect();
    let mut actions = Vec::new();
    for p in &plans {
        actions.push(Action::CreatePod { key: p.key.clone() });
        actions.push(Action::StartContainer {
            key: p.key.clone(),
            container: "app".into(),
            attempt: 0,
        });
    }
    // Whichever pod's sandbox is made first fails.
    node.fail_next("create_pod", 1);
    exec.run(actions, &by_key);
    let calls = node.calls();
    assert_eq!(count(&calls, "create_pod"), 9, "{calls:#?}");
    assert_eq!(
        count(&calls, "create_container"),
        8,
        "the failed pod's container is not started: {calls:#?}"
    );
    let listed = node.runtime().list().expect("list");
    assert_eq!(listed.len(), 8, "8 sandboxes exist");
    let failed: Vec<&PodPlan> = plans
        .iter()
        .filter(|p| !listed.iter().any(|l| l.id == p.id()))
        .collect();
    assert_eq!(failed.len(), 1);
    let id = failed[0].id();
    let memory = exec.memory();
    assert!(
        memory[id].sandbox_error.is_some(),
        "the failure is remembered for back-off"
    );
    let events = exec.take_events(id);
    assert!(
        events.iter().any(|e| e.reason == "FailedCreatePodSandBox"),
        "{events:?}"
    );
    for p in plans.iter().filter(|p| p.id() != id) {
        let l = listed.iter().find(|l| l.id == p.id()).expect("listed");
        assert_eq!(l.containers.len(), 1, "{} has its container", p.id());
    }
}
