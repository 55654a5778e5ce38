//! Table tests of each scheduler filter and score, through `scheduler::schedule`.
#![allow(clippy::unwrap_used)]

use kommit_reconcilers::scheduler::{schedule, Decision, NodeView, PodView};
use kommit_reconcilers::Taint;
use kommit_schemas::model::pod::{PodSpec, TaintEffect};
use serde_json::json;
use std::collections::BTreeMap;

const GI: u64 = 1 << 30;

struct N {
    name: String,
    ready: bool,
    cordoned: bool,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    cpu: u64,
    mem: u64,
    pods: u32,
}

fn n(name: &str) -> N {
    N {
        name: name.into(),
        ready: true,
        cordoned: false,
        labels: BTreeMap::new(),
        taints: vec![],
        cpu: 4000,
        mem: 8 * GI,
        pods: 110,
    }
}

struct P {
    key: String,
    owner: String,
    labels: BTreeMap<String, String>,
    spec: PodSpec,
    pinned: Option<String>,
}

fn spec(v: serde_json::Value) -> PodSpec {
    let mut base = json!({"containers": [{"name": "c", "image": "i"}]});
    for (k, val) in v.as_object().unwrap() {
        if k == "requests" {
            base["containers"][0]["resources"] = json!({"requests": val});
        } else if k == "hostPort" {
            base["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": val}]);
        } else {
            base[k] = val.clone();
        }
    }
    serde_json::from_value(base).unwrap()
}

fn p(key: &str, owner: &str, s: serde_json::Value) -> P {
    P {
        key: key.into(),
        owner: owner.into(),
        labels: [("app".to_string(), owner.to_string())].into(),
        spec: spec(s),
        pinned: None,
    }
}

fn run(nodes: &[N], pending: &[P], bound: &[(P, &str)]) -> BTreeMap<String, Decision> {
    let nv: Vec<NodeView> = nodes
        .iter()
        .map(|n| NodeView {
            name: &n.name,
            ready: n.ready,
            cordoned: n.cordoned,
            labels: &n.labels,
            taints: &n.taints,
            cpu_millis: n.cpu,
            memory_bytes: n.mem,
            max_pods: n.pods,
        })
        .collect();
    fn view(p: &P) -> PodView<'_> {
        PodView {
            key: &p.key,
            uid: &p.key,
            namespace: "default",
            owner: &p.owner,
            template_hash: &p.key,
            labels: &p.labels,
            spec: &p.spec,
            pinned_node: p.pinned.as_deref(),
        }
    }
    let pv: Vec<PodView> = pending.iter().map(view).collect();
    let bv: Vec<(PodView, &str)> = bound.iter().map(|(p, n)| (view(p), *n)).collect();
    // Shuffled inputs must not change the answer.
    let mut nv_rev = nv.clone();
    nv_rev.reverse();
    let mut pv_rev = pv.clone();
    pv_rev.reverse();
    let a = schedule(&pv, &nv, &bv);
    let b = schedule(&pv_rev, &nv_rev, &bv);
    assert_eq!(a, b, "input order changed the result");
    a
}

fn bind(d: &BTreeMap<String, Decision>, k: &str) -> String {
    match &d[k] {
        Decision::Bind(n) => n.clone(),
        Decision::Unschedulable(r) => panic!("{k} unschedulable: {r}"),
    }
}

fn reason(d: &BTreeMap<String, Decision>, k: &str) -> String {
    match &d[k] {
        Decision::Bind(n) => panic!("{k} bound to {n}"),
        Decision::Unschedulable(r) => r.clone(),
    }
}

#[test]
fn each_filter_rejects_with_kubernetes_wording() {
    // (case, node tweak, pod spec, bound-on-node pod, expected reason)
    type Tweak = fn(&mut N);
    let cases: Vec<(&str, Tweak, serde_json::Value, Option<serde_json::Value>, &str)> = vec![
        ("not ready", |n| n.ready = false, json!({}), None,
         "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."),
        ("cordoned", |n| n.cordoned = true, json!({}), None,
         "0/1 nodes are available: 1 node(s) were unschedulable."),
        ("nodeSelector", |_| {}, json!({"nodeSelector": {"disk": "ssd"}}), None,
         "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."),
        ("required node affinity", |_| {},
         json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}),
         None, "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."),
        ("cpu", |n| n.cpu = 500, json!({"requests": {"cpu": "600m"}}), None,
         "0/1 nodes are available: 1 Insufficient cpu."),
        ("memory", |n| n.mem = GI, json!({"requests": {"memory": "2Gi"}}), None,
         "0/1 nodes are available: 1 Insufficient memory."),
        ("cpu and memory", |n| { n.mem = GI; n.cpu = 100 }, json!({"requests": {"memory": "2Gi", "cpu": "1"}}), None,
         "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."),
        ("pods", |n| n.pods = 1, json!({}), Some(json!({})),
         "0/1 nodes are available: 1 Too many pods."),
        ("requests add up", |n| n.cpu = 1000, json!({"requests": {"cpu": "600m"}}), Some(json!({"requests": {"cpu": "500m"}})),
         "0/1 nodes are available: 1 Insufficient cpu."),
        ("host port", |_| {}, json!({"hostPort": 8080}), Some(json!({"hostPort": 8080})),
         "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."),
        ("anti-affinity", |_| {},
         json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
         Some(json!({})), "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."),
    ];
    for (case, tweak, pod, existing, want) in cases {
        let mut node = n("a");
        tweak(&mut node);
        let bound: Vec<(P, &str)> = existing
            .into_iter()
            .map(|s| (p("default/old", "web", s), "a"))
            .collect();
        let d = run(&[node], &[p("default/new", "web", pod)], &bound);
        assert_eq!(reason(&d, "default/new"), want, "case {case}");
    }
}

#[test]
fn taints_and_tolerations() {
    let taint = |k: &str, e| Taint {
        key: k.into(),
        value: Some("x".into()),
        effect: e,
    };
    let tol_exists = json!({"tolerations": [{"key": "k", "operator": "Exists"}]});
    let tol_equal_wrong = json!({"tolerations": [{"key": "k", "value": "y"}]});
    let tol_effect = json!({"tolerations": [{"key": "k", "value": "x", "effect": "NoSchedule"}]});
    let tol_all = json!({"tolerations": [{"operator": "Exists"}]});
    // (taint effect, pod tolerations, schedulable?)
    let table = [
        (TaintEffect::NoSchedule, json!({}), false),
        (TaintEffect::NoExecute, json!({}), false),
        (TaintEffect::PreferNoSchedule, json!({}), true),
        (TaintEffect::NoSchedule, tol_exists.clone(), true),
        (TaintEffect::NoExecute, tol_exists, true),
        (TaintEffect::NoSchedule, tol_equal_wrong, false),
        (TaintEffect::NoSchedule, tol_effect.clone(), true),
        (TaintEffect::NoExecute, tol_effect, false),
        (TaintEffect::NoExecute, tol_all, true),
    ];
    for (i, (effect, tol, ok)) in table.into_iter().enumerate() {
        let mut node = n("a");
        node.taints.push(taint("k", effect));
        let d = run(&[node], &[p("default/x", "x", tol)], &[]);
        match &d["default/x"] {
            Decision::Bind(_) => assert!(ok, "row {i} should not schedule"),
            Decision::Unschedulable(r) => {
                assert!(!ok, "row {i}: {r}");
                assert_eq!(
                    r,
                    "0/1 nodes are available: 1 node(s) had untolerated taint {k: x}."
                );
            }
        }
    }
}

#[test]
fn mixed_reasons_form_one_histogram() {
    let mut nodes: Vec<N> = (0..5).map(|i| n(&format!("n{i}"))).collect();
    for node in &mut nodes[..3] {
        node.mem = GI;
        node.labels.insert("disk".into(), "ssd".into());
    }
    let d = run(
        &nodes,
        &[p(
            "default/big",
            "big",
            json!({"nodeSelector": {"disk": "ssd"}, "requests": {"memory": "4Gi"}}),
        )],
        &[],
    );
    assert_eq!(
        reason(&d, "default/big"),
        "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 3 Insufficient memory."
    );
    let d = run(&[], &[p("default/x", "x", json!({}))], &[]);
    assert_eq!(
        reason(&d, "default/x"),
        "0/0 nodes are available: no nodes available to schedule pods."
    );
}

#[test]
fn selectors_and_affinity_pick_matching_nodes() {
    let mut a = n("a");
    a.labels.insert("zone".into(), "z1".into());
    a.labels.insert("gen".into(), "5".into());
    let mut b = n("b");
    b.labels.insert("zone".into(), "z2".into());
    b.labels.insert("gen".into(), "3".into());
    let nodes = [a, b];
    let aff = |op: &str, vals: serde_json::Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": if op == "Gt" || op == "Lt" { "gen" } else { "zone" }, "operator": op, "values": vals}]}]}}}});
    let table = [
        (json!({"nodeSelector": {"zone": "z2"}}), "b"),
        (
            json!({"nodeSelector": {"kubernetes.io/hostname": "a"}}),
            "a",
        ),
        (aff("In", json!(["z1"])), "a"),
        (aff("NotIn", json!(["z1"])), "b"),
        (aff("Gt", json!(["4"])), "a"),
        (aff("Lt", json!(["4"])), "b"),
    ];
    for (i, (s, want)) in table.into_iter().enumerate() {
        let d = run(&nodes, &[p("default/x", "x", s)], &[]);
        assert_eq!(bind(&d, "default/x"), want, "row {i}");
    }
}

#[test]
fn pinned_pods_only_go_to_their_node() {
    let mut pod = p("default/ds-a", "ds", json!({}));
    pod.pinned = Some("b".into());
    let d = run(&[n("a"), n("b"), n("c")], &[pod], &[]);
    assert_eq!(bind(&d, "default/ds-a"), "b");
    let mut pod = p("default/ds-a", "ds", json!({"requests": {"cpu": "10"}}));
    pod.pinned = Some("b".into());
    let d = run(&[n("a"), n("b"), n("c")], &[pod], &[]);
    assert_eq!(
        reason(&d, "default/ds-a"),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
    );
}

#[test]
fn spread_beats_least_allocated_and_least_allocated_beats_hash() {
    // Node a is emptier, but already runs a pod of the same owner: spread wins.
    let mut a = n("a");
    a.cpu = 8000;
    let b = n("b");
    let d = run(
        &[a, b],
        &[p("default/w2", "web", json!({}))],
        &[(p("default/w1", "web", json!({})), "a")],
    );
    assert_eq!(bind(&d, "default/w2"), "b");
    // Equal spread: the least allocated node wins.
    let d = run(
        &[n("a"), n("b")],
        &[p("default/x", "x", json!({"requests": {"cpu": "1"}}))],
        &[(p("default/y", "y", json!({"requests": {"cpu": "2"}})), "a")],
    );
    assert_eq!(bind(&d, "default/x"), "b");
    // Full tie: the rendezvous hash decides, stably, and different pods spread over nodes.
    let nodes: Vec<N> = (0..8).map(|i| n(&format!("n{i}"))).collect();
    let pods: Vec<P> = (0..8)
        .map(|i| p(&format!("default/p{i}"), &format!("o{i}"), json!({})))
        .collect();
    let d1 = run(&nodes, &pods, &[]);
    let d2 = run(&nodes, &pods, &[]);
    assert_eq!(d1, d2);
    let used: std::collections::BTreeSet<String> = (0..8)
        .map(|i| bind(&d1, &format!("default/p{i}")))
        .collect();
    assert!(used.len() > 1, "tie-break put every pod on one node");
}

#[test]
fn replicas_with_anti_affinity_land_on_distinct_nodes_until_none_is_left() {
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let pods: Vec<P> = (0..4)
        .map(|i| p(&format!("default/db-{i}"), "db", anti.clone()))
        .collect();
    let d = run(&[n("a"), n("b"), n("c")], &pods, &[]);
    let placed: std::collections::BTreeSet<String> = d
        .values()
        .filter_map(|x| match x {
            Decision::Bind(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(placed.len(), 3);
    assert_eq!(
        reason(&d, "default/db-3"),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
    // Symmetry: an incoming pod matched by a running pod's anti-affinity is kept away too.
    let d = run(
        &[n("a"), n("b")],
        &[p("default/db-new", "db", json!({}))],
        &[(p("default/db-0", "other", anti.clone()), "a")],
    );
    // The running pod's labels are app=other; its term selects app=db, so a is excluded.
    assert_eq!(bind(&d, "default/db-new"), "b");
}
