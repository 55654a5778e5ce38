//! Services in the replicated state: NodePorts (explicit, allocated, stable across commits,
//! freed), ExternalName without a ClusterIP, LoadBalancer ingress (k3s ServiceLB's rule),
//! `targetPort` resolution, and older snapshots still loading.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::services::{
    endpoint_ports, load_balancer_ingress, node_port, serves_load_balancers, target_port,
    ENABLE_LB_LABEL,
};
use kommit_reconcilers::{ClusterState, Entry, IpChange};
use kommit_schemas::model::core::ServiceSpec;
use kommit_schemas::model::pod::{PodSpec, Protocol};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

fn svc(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// A state with nodes `a` (10.0.0.1), `b` (10.0.0.2), `c` (10.0.0.3) that adopted `files`.
fn state_with(files: &[(&str, &str)]) -> ClusterState {
    let mut s = ClusterState::new();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let mut info = node(n, 4000, 8 * GI, 50);
        info.address = format!("10.0.0.{}:7443", i + 1);
        s.apply(&Entry::NodeUp { info }, 1);
    }
    s.apply(&adopt_entry("c1", None, &desired(files)), 2);
    s
}

fn readopt(
    s: &mut ClusterState,
    commit: &str,
    files: &[(&str, &str)],
) -> kommit_reconcilers::Effects {
    let parent = s.commit.clone();
    s.apply(&adopt_entry(commit, parent.as_deref(), &desired(files)), 3)
}

const LB: &str = "  type: LoadBalancer\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n  - {name: https, port: 443}\n";

#[test]
fn node_ports_explicit_allocated_and_in_range() {
    let np = svc(
        "np",
        "  type: NodePort\n  ports:\n  - {name: a, port: 80, nodePort: 30080}\n  - {name: b, port: 81}\n",
    );
    let lb = svc("lb", LB);
    let no_alloc = svc(
        "lb-bare",
        "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 81, nodePort: 30081}\n",
    );
    let cip = svc("cip", "  ports:\n  - {port: 80}\n");
    let s = state_with(&[
        ("np.yaml", &np),
        ("lb.yaml", &lb),
        ("bare.yaml", &no_alloc),
        ("cip.yaml", &cip),
    ]);
    let np = &s.node_ports["default/np"];
    assert_eq!(np[0], 30080);
    assert!((30000..=32767).contains(&np[1]) && np[1] != 30080);
    let lb = &s.node_ports["default/lb"];
    assert!(lb.iter().all(|n| (30000..=32767).contains(n)));
    assert_ne!(lb[0], lb[1]);
    // allocateLoadBalancerNodePorts: false: 0 for "none", explicit ones honoured.
    assert_eq!(s.node_ports["default/lb-bare"], [0, 30081]);
    assert_eq!(node_port(&s, "default/lb-bare", 0), None);
    assert_eq!(node_port(&s, "default/lb-bare", 1), Some(30081));
    assert!(!s.node_ports.contains_key("default/cip"));
    // Every number is distinct across the cluster.
    let mut all: Vec<u16> = s
        .node_ports
        .values()
        .flatten()
        .copied()
        .filter(|n| *n != 0)
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}

#[test]
fn node_ports_are_stable_across_unrelated_edits_and_freed() {
    let lb = svc("lb", LB);
    let other = svc("other", "  type: NodePort\n  ports:\n  - {port: 9000}\n");
    let mut s = state_with(&[("lb.yaml", &lb), ("other.yaml", &other)]);
    let before = s.node_ports["default/lb"].clone();
    let other_before = s.node_ports["default/other"].clone();
    // Reorder the ports, rename one, add one, change the selector: numbers follow the ports.
    let edited = svc(
        "lb",
        "  type: LoadBalancer\n  selector: {app: web2}\n  ports:\n  - {name: tls, port: 443}\n  - {name: alt, port: 8080}\n  - {name: web, port: 80}\n",
    );
    let fx = readopt(
        &mut s,
        "c2",
        &[("lb.yaml", &edited), ("other.yaml", &other)],
    );
    let after = s.node_ports["default/lb"].clone();
    assert_eq!(after[0], before[1]);
    assert_eq!(after[2], before[0]);
    assert!(!before.contains(&after[1]));
    assert_eq!(s.node_ports["default/other"], other_before);
    let added: Vec<_> = fx
        .ips
        .iter()
        .filter(|c| matches!(c, IpChange::NodePort { .. }))
        .collect();
    assert_eq!(
        added,
        [&IpChange::NodePort {
            service: "default/lb".into(),
            protocol: Protocol::Tcp,
            port: 8080,
            node_port: after[1],
        }]
    );
    // Drop port 443: its number is freed, the others stay.
    let fewer = svc(
        "lb",
        "  type: LoadBalancer\n  ports:\n  - {name: alt, port: 8080}\n  - {name: web, port: 80}\n",
    );
    let fx = readopt(&mut s, "c3", &[("lb.yaml", &fewer), ("other.yaml", &other)]);
    assert_eq!(s.node_ports["default/lb"], [after[1], after[2]]);
    assert!(fx.ips.contains(&IpChange::NodePortFreed {
        service: "default/lb".into(),
        node_port: before[1],
    }));
    // Back to ClusterIP: everything freed; removing the other Service frees its port too.
    let cip = svc("lb", "  ports:\n  - {port: 80}\n");
    let fx = readopt(&mut s, "c4", &[("lb.yaml", &cip)]);
    assert!(s.node_ports.is_empty());
    let freed = fx
        .ips
        .iter()
        .filter(|c| matches!(c, IpChange::NodePortFreed { .. }))
        .count();
    assert_eq!(freed, 3, "{:?}", fx.ips);
}

#[test]
fn new_services_never_move_existing_numbers() {
    // A tiny range: the newcomers' hashed slots collide with the existing ports' numbers.
    let cfg = format!("{KOMMIT_YAML}spec:\n  serviceNodePortRange: 30000-30009\n");
    let first = svc("first", "  type: NodePort\n  ports:\n  - {port: 80}\n");
    let mut s = state_with(&[("kommit.yaml", &cfg), ("first.yaml", &first)]);
    let mine = s.node_ports["default/first"].clone();
    let others: Vec<(String, String)> = (0..9)
        .map(|i| {
            (
                format!("s{i}.yaml"),
                svc(
                    &format!("a{i}"),
                    "  type: NodePort\n  ports:\n  - {port: 80}\n",
                ),
            )
        })
        .collect();
    let mut files: Vec<(&str, &str)> = others
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    files.push(("kommit.yaml", &cfg));
    files.push(("first.yaml", &first));
    readopt(&mut s, "c2", &files);
    assert_eq!(s.node_ports["default/first"], mine);
    let mut all: Vec<u16> = s.node_ports.values().flatten().copied().collect();
    all.sort();
    assert_eq!(all, (30000..=30009).collect::<Vec<_>>());
}

#[test]
fn an_explicit_node_port_takes_over_an_allocated_one() {
    let lb = svc("lb", "  type: NodePort\n  ports:\n  - {port: 80}\n");
    let mut s = state_with(&[("lb.yaml", &lb)]);
    let taken = s.node_ports["default/lb"][0];
    let claim = svc(
        "claim",
        &format!("  type: NodePort\n  ports:\n  - {{port: 81, nodePort: {taken}}}\n"),
    );
    readopt(&mut s, "c2", &[("lb.yaml", &lb), ("claim.yaml", &claim)]);
    assert_eq!(s.node_ports["default/claim"], [taken]);
    let moved = s.node_ports["default/lb"][0];
    assert_ne!(moved, taken);
    assert!((30000..=32767).contains(&moved));
}

#[test]
fn turning_allocation_off_frees_the_allocated_ports_only() {
    let on = svc("lb", "  type: LoadBalancer\n  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 81, nodePort: 30081}\n");
    let mut s = state_with(&[("lb.yaml", &on)]);
    let allocated = s.node_ports["default/lb"][0];
    let off = on.replace(
        "  ports:",
        "  allocateLoadBalancerNodePorts: false\n  ports:",
    );
    let fx = readopt(&mut s, "c2", &[("lb.yaml", &off)]);
    assert_eq!(s.node_ports["default/lb"], [0, 30081]);
    assert_eq!(
        fx.ips,
        [IpChange::NodePortFreed {
            service: "default/lb".into(),
            node_port: allocated,
        }]
    );
}

#[test]
fn the_configured_range_is_used_and_a_narrowed_range_reallocates() {
    let cfg = |range: &str| format!("{KOMMIT_YAML}spec:\n  serviceNodePortRange: {range}\n");
    let np = svc("np", "  type: NodePort\n  ports:\n  - {port: 80}\n");
    let wide = cfg("31000-31999");
    let mut s = state_with(&[("kommit.yaml", &wide), ("np.yaml", &np)]);
    let first = s.node_ports["default/np"][0];
    assert!((31000..=31999).contains(&first));
    let narrow = cfg(&format!("{}-{}", first + 1, first + 1));
    readopt(&mut s, "c2", &[("kommit.yaml", &narrow), ("np.yaml", &np)]);
    assert_eq!(s.node_ports["default/np"], [first + 1]);
}

#[test]
fn allocation_is_the_same_on_every_node() {
    let files: Vec<(String, String)> = (0..40)
        .map(|i| (format!("s{i}.yaml"), svc(&format!("s{i}"), LB)))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let a = state_with(&refs);
    let mut reversed = refs.clone();
    reversed.reverse();
    let b = state_with(&reversed);
    assert_eq!(a.node_ports, b.node_ports);
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn external_name_and_headless_services_get_no_cluster_ip() {
    let ext = svc(
        "ext",
        "  type: ExternalName\n  externalName: db.example.com\n",
    );
    let headless = svc(
        "hl",
        "  clusterIP: None\n  selector: {app: x}\n  ports:\n  - {port: 80}\n",
    );
    let plain = svc("plain", "  ports:\n  - {port: 80}\n");
    let s = state_with(&[("e.yaml", &ext), ("h.yaml", &headless), ("p.yaml", &plain)]);
    assert_eq!(s.service_ips.keys().collect::<Vec<_>>(), ["default/plain"]);
    assert!(!s.endpoints.contains_key("default/ext"));
    assert_eq!(
        s.desired.services["default/ext"].spec.external_name(),
        Some("db.example.com")
    );
}

fn ips(v: &[&str]) -> Vec<Ipv4Addr> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn load_balancer_ingress_follows_ready_nodes_and_the_enablelb_label() {
    let lb = svc("lb", LB);
    let classy = svc(
        "classy",
        "  type: LoadBalancer\n  loadBalancerClass: example.com/lb\n  ports:\n  - {port: 80}\n",
    );
    let np = svc("np", "  type: NodePort\n  ports:\n  - {port: 80}\n");
    let mut s = state_with(&[("lb.yaml", &lb), ("c.yaml", &classy), ("np.yaml", &np)]);
    assert_eq!(
        load_balancer_ingress(&s, "default/lb"),
        ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    );
    assert!(load_balancer_ingress(&s, "default/classy").is_empty());
    assert!(load_balancer_ingress(&s, "default/np").is_empty());
    assert!(load_balancer_ingress(&s, "default/missing").is_empty());
    assert!(["a", "b", "c"].iter().all(|n| serves_load_balancers(&s, n)));
    // A down node leaves the ingress (it still programs its own rules).
    s.apply(&Entry::NodeDown { node: "b".into() }, 5);
    assert_eq!(
        load_balancer_ingress(&s, "default/lb"),
        ips(&["10.0.0.1", "10.0.0.3"])
    );
    // Once a node carries enablelb=true, only such nodes serve load balancers.
    let mut c = s.nodes["c"].info.clone();
    c.labels.insert(ENABLE_LB_LABEL.into(), "true".into());
    s.apply(&Entry::NodeUp { info: c }, 6);
    assert_eq!(load_balancer_ingress(&s, "default/lb"), ips(&["10.0.0.3"]));
    assert!(serves_load_balancers(&s, "c") && !serves_load_balancers(&s, "a"));
    assert!(!serves_load_balancers(&s, "nope"));
}

fn pod_spec(v: serde_json::Value) -> PodSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn target_ports_resolve_like_kubernetes() {
    let pod = pod_spec(serde_json::json!({
        "initContainers": [{"name": "i", "image": "x", "ports": [{"name": "init", "containerPort": 7000}]}],
        "containers": [
            {"name": "a", "image": "x", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]},
            {"name": "b", "image": "x", "ports": [{"name": "metrics", "containerPort": 9090}]}]
    }));
    // (service port, want)
    let table: &[(serde_json::Value, Option<u16>)] = &[
        (serde_json::json!({"port": 80}), Some(80)),
        (
            serde_json::json!({"port": 80, "targetPort": 8000}),
            Some(8000),
        ),
        (
            serde_json::json!({"port": 80, "targetPort": "http"}),
            Some(8080),
        ),
        (
            serde_json::json!({"port": 9, "targetPort": "metrics"}),
            Some(9090),
        ),
        (
            serde_json::json!({"port": 53, "protocol": "UDP", "targetPort": "dns"}),
            Some(5353),
        ),
        // The name with another protocol, a name no container has, an init container's.
        (serde_json::json!({"port": 53, "targetPort": "dns"}), None),
        (
            serde_json::json!({"port": 80, "protocol": "UDP", "targetPort": "http"}),
            None,
        ),
        (serde_json::json!({"port": 80, "targetPort": "nope"}), None),
        (serde_json::json!({"port": 80, "targetPort": "init"}), None),
    ];
    for (port, want) in table {
        let p = serde_json::from_value(port.clone()).unwrap();
        assert_eq!(target_port(&p, &pod), *want, "{port}");
    }
    let spec: ServiceSpec = serde_json::from_value(serde_json::json!({"ports": [
        {"name": "web", "port": 80, "targetPort": "http"},
        {"name": "gone", "port": 81, "targetPort": "nope"},
        {"name": "raw", "port": 82}]}))
    .unwrap();
    let want: BTreeMap<String, u16> = [("web".into(), 8080), ("raw".into(), 82)].into();
    assert_eq!(endpoint_ports(&spec, &pod), want);
    let single: ServiceSpec =
        serde_json::from_value(serde_json::json!({"ports": [{"port": 80}]})).unwrap();
    assert_eq!(endpoint_ports(&single, &pod), [(String::new(), 80)].into());
}

#[test]
fn older_snapshots_load_and_write_unchanged() {
    // A state with only ClusterIP Services writes no `node_ports`, and bytes without it read.
    let plain = svc("plain", "  ports:\n  - {port: 80}\n");
    let s = state_with(&[("p.yaml", &plain)]);
    let bytes = s.canonical_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains("node_ports") && !text.contains("service_node_port_range"));
    let back = ClusterState::from_canonical_bytes(&bytes).unwrap();
    assert_eq!(back, s);
    // With NodePorts, the snapshot carries them.
    let s = state_with(&[("lb.yaml", &svc("lb", LB))]);
    let back = ClusterState::from_canonical_bytes(&s.canonical_bytes()).unwrap();
    assert_eq!(back.node_ports, s.node_ports);
}
