//! Unit tests of the pure parts: endpoint selection, validation, rendering and the diff.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::render::render;
use super::script::script;
use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn ep(addr: &str, ready: bool, local: bool) -> Endpoint {
    Endpoint {
        ip: ip(addr),
        ready,
        terminating: false,
        local,
        ports: BTreeMap::from([("http".to_string(), 8080)]),
    }
}

fn svc(vip: &str, eps: Vec<Endpoint>) -> Service {
    Service {
        cluster_ip: Some(ip(vip)),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        endpoints: eps,
        ..Service::default()
    }
}

fn table(services: Vec<(&str, Service)>) -> ServiceTable {
    ServiceTable {
        node: NodeConfig {
            addresses: vec![ip("192.168.7.1")],
            pod_cidr: "10.244.1.0/24".parse().expect("cidr"),
            service_cidr: Some("10.96.0.0/16".parse().expect("cidr")),
        },
        services: services
            .into_iter()
            .map(|(k, s)| (k.to_string(), s))
            .collect(),
    }
}

fn plan(old: Option<&ServiceTable>, new: &ServiceTable) -> (String, SyncReport) {
    let r = |t: &ServiceTable| render(&t.node, &t.services, 0x4000);
    let old = old.map(r);
    script("kt", old.as_ref(), &r(new))
}

#[test]
fn endpoint_selection_follows_readiness() {
    let mut s = svc(
        "10.96.0.10",
        vec![ep("10.244.1.2", true, true), ep("10.244.1.3", false, true)],
    );
    let p = s.ports[0].clone();
    let got = port_endpoints(&s, &p);
    assert_eq!(got.cluster, vec![(ip("10.244.1.2"), 8080)]);
    s.publish_not_ready = true;
    assert_eq!(port_endpoints(&s, &p).cluster.len(), 2);
    s.publish_not_ready = false;
    // Only terminating ready endpoints left: they serve (graceful termination).
    s.endpoints = vec![
        Endpoint {
            terminating: true,
            ..ep("10.244.1.4", true, false)
        },
        ep("10.244.1.5", false, true),
    ];
    let got = port_endpoints(&s, &p);
    assert_eq!(got.cluster, vec![(ip("10.244.1.4"), 8080)]);
    assert!(got.local.is_empty());
    // An endpoint without the port's name is not used for it.
    s.endpoints = vec![Endpoint {
        ports: BTreeMap::from([("other".to_string(), 9)]),
        ..ep("10.244.1.6", true, true)
    }];
    assert!(port_endpoints(&s, &p).cluster.is_empty());
}

#[test]
fn validation_refuses_conflicts_and_oversize() {
    let ok = table(vec![("a/x", svc("10.96.0.1", vec![]))]);
    assert!(validate(&ok).is_ok());
    let bad = |t: ServiceTable, what: &str| {
        let e = validate(&t).expect_err(what).to_string();
        assert!(e.contains(what), "{e} should mention {what}");
    };
    bad(
        table(vec![
            ("a/x", svc("10.96.0.1", vec![])),
            ("a/y", svc("10.96.0.1", vec![])),
        ]),
        "already a/x/tcp/80",
    );
    bad(
        table(vec![("A/x", svc("10.96.0.1", vec![]))]),
        "not namespace/name",
    );
    bad(
        table(vec![("a/x.y", svc("10.96.0.1", vec![]))]),
        "not namespace/name",
    );
    let mut s = svc(
        "10.96.0.1",
        vec![ep("10.244.1.2", true, true), ep("10.244.1.2", true, true)],
    );
    bad(table(vec![("a/x", s.clone())]), "endpoint 10.244.1.2 twice");
    s.endpoints.pop();
    s.ports[0].node_port = Some(30000);
    bad(table(vec![("a/x", s.clone())]), "has no NodePort");
    s.service_type = ServiceType::NodePort;
    let mut t = svc("10.96.0.2", vec![]);
    t.service_type = ServiceType::NodePort;
    t.ports[0].node_port = Some(30000);
    bad(
        table(vec![("a/x", s.clone()), ("a/y", t)]),
        "NodePort 30000/tcp",
    );
    s.affinity_timeout = Some(0);
    bad(table(vec![("a/x", s)]), "affinity timeout");
    let many: Vec<(String, Service)> = (0..=MAX_SERVICES)
        .map(|i| (format!("a/s{i}"), Service::default()))
        .collect();
    let mut t = table(vec![]);
    t.services = many.into_iter().collect();
    bad(t, "services, at most");
}

#[test]
fn first_sync_rebuilds_the_table_in_one_transaction() {
    let t = table(vec![(
        "default/web",
        svc("10.96.0.10", vec![ep("10.244.1.2", true, true)]),
    )]);
    let (s, r) = plan(None, &t);
    assert!(r.rebuilt);
    assert_eq!(r.changed, vec!["default/web/tcp/80"]);
    assert!(
        s.starts_with("table ip kt {}\ndelete table ip kt\nadd table ip kt\n"),
        "{s}"
    );
    for want in [
        "add chain ip kt nat-prerouting { type nat hook prerouting priority dstnat ; policy accept ; }",
        "add rule ip kt services ip daddr . meta l4proto . th dport vmap @service-ips",
        "add map ip kt eps-tcp { typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport ; }",
        "add rule ip kt spread-tcp-1 ip saddr != 10.244.1.0/24 jump mark-for-masquerade",
        "add rule ip kt spread-tcp-1 meta l4proto tcp dnat ip addr . port to ip daddr . tcp dport . numgen random mod 1 map @eps-tcp",
        "add element ip kt eps-tcp { 10.96.0.10 . 80 . 0 : 10.244.1.2 . 8080 }",
        "add element ip kt service-ips { 10.96.0.10 . tcp . 80 : goto spread-tcp-1 }",
        "add element ip kt hairpin { 10.244.1.2 . 10.244.1.2 }",
        "add element ip kt node-ips { 192.168.7.1 }",
        "add rule ip kt filter-forward ct state new ip daddr 10.96.0.0/16 goto reject-chain",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    // Unchanged: nothing to send.
    let (again, r) = plan(Some(&t), &t);
    assert_eq!(again, "");
    assert!(!r.rebuilt && r.changed.is_empty());
}

#[test]
fn an_endpoint_change_rewrites_one_element() {
    let eps = |last: &str| {
        vec![
            ep("10.244.1.2", true, true),
            ep("10.244.1.3", true, true),
            ep(last, true, false),
        ]
    };
    let other = svc("10.96.0.11", vec![ep("10.244.1.9", true, true)]);
    let old = table(vec![
        ("default/web", svc("10.96.0.10", eps("10.244.2.4"))),
        ("default/db", other.clone()),
    ]);
    let new = table(vec![
        ("default/web", svc("10.96.0.10", eps("10.244.2.5"))),
        ("default/db", other),
    ]);
    let (s, r) = plan(Some(&old), &new);
    assert!(!r.rebuilt);
    assert_eq!(r.changed, vec!["default/web/tcp/80"]);
    assert_eq!(
        s,
        "delete element ip kt eps-tcp { 10.96.0.10 . 80 . 2 }\n\
         add element ip kt eps-tcp { 10.96.0.10 . 80 . 2 : 10.244.2.5 . 8080 }\n"
    );
}

#[test]
fn endpoints_coming_and_going() {
    let one = table(vec![(
        "default/web",
        svc("10.96.0.10", vec![ep("10.244.1.2", true, true)]),
    )]);
    let none = table(vec![(
        "default/web",
        svc("10.96.0.10", vec![ep("10.244.1.2", false, true)]),
    )]);
    // Losing the last ready endpoint: the VIP moves to the reject map, and the shared chain
    // nobody uses any more goes after the element that jumped to it.
    let (s, _) = plan(Some(&one), &none);
    assert_eq!(
        s,
        "delete element ip kt eps-tcp { 10.96.0.10 . 80 . 0 }\n\
         delete element ip kt hairpin { 10.244.1.2 . 10.244.1.2 }\n\
         delete element ip kt service-ips { 10.96.0.10 . tcp . 80 }\n\
         flush chain ip kt spread-tcp-1\n\
         add element ip kt no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }\n\
         delete chain ip kt spread-tcp-1\n"
    );
    // And back: the chain before the element that jumps to it.
    let (s, _) = plan(Some(&none), &one);
    let pos = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle} in {s}"));
    assert!(pos("add chain ip kt spread-tcp-1") < pos("add element ip kt service-ips"));
    assert!(
        pos("delete element ip kt no-endpoint-services") < pos("add element ip kt service-ips")
    );
    // A growing endpoint count moves the VIP to the next shared chain and adds one element.
    let two = table(vec![(
        "default/web",
        svc(
            "10.96.0.10",
            vec![ep("10.244.1.2", true, true), ep("10.244.1.3", true, true)],
        ),
    )]);
    let (s, _) = plan(Some(&one), &two);
    assert!(
        s.contains("add element ip kt service-ips { 10.96.0.10 . tcp . 80 : goto spread-tcp-2 }"),
        "{s}"
    );
    assert!(
        s.contains("add element ip kt eps-tcp { 10.96.0.10 . 80 . 1 : 10.244.1.3 . 8080 }"),
        "{s}"
    );
    assert!(!s.contains("delete element ip kt eps-"), "{s}");
}

#[test]
fn node_ports_policies_and_load_balancers() {
    let mut s = svc(
        "10.96.0.10",
        vec![ep("10.244.1.2", true, true), ep("10.244.2.2", true, false)],
    );
    s.service_type = ServiceType::LoadBalancer;
    s.ports[0].node_port = Some(30080);
    s.ports[0].protocol = Protocol::Udp;
    let t = table(vec![("default/lb", s.clone())]);
    let (out, _) = plan(None, &t);
    for want in [
        "add element ip kt service-nodeports { udp . 30080 : goto ext-spread-udp-2 }",
        "add element ip kt service-ips { 10.96.0.10 . udp . 80 : goto spread-udp-2, 192.168.7.1 . udp . 80 : goto ext-spread-udp-2 }",
        "add rule ip kt ext-spread-udp-2 jump mark-for-masquerade",
        "add rule ip kt ext-spread-udp-2 goto spread-udp-2",
        "192.168.7.1 . 30080 . 1 : 10.244.2.2 . 8080",
        "192.168.7.1 . 80 . 0 : 10.244.1.2 . 8080",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    s.external_traffic_policy = TrafficPolicy::Local;
    let (out, r) = plan(Some(&t), &table(vec![("default/lb", s.clone())]));
    assert_eq!(r.changed, vec!["default/lb/udp/80"]);
    for want in [
        "add chain ip kt ext-default/lb/udp/80",
        "add rule ip kt ext-default/lb/udp/80 fib saddr type local jump mark-for-masquerade",
        "add rule ip kt ext-default/lb/udp/80 ip saddr 10.244.1.0/24 goto svc-default/lb/udp/80",
        "add rule ip kt ext-default/lb/udp/80 meta l4proto udp dnat ip addr . port to numgen random mod 1 map @leps-default/lb/udp/80",
        "add element ip kt leps-default/lb/udp/80 { 0 : 10.244.1.2 . 8080 }",
        "add rule ip kt svc-default/lb/udp/80 meta l4proto udp dnat ip addr . port to numgen random mod 2 map @eps-default/lb/udp/80",
        "delete chain ip kt ext-spread-udp-2",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // No local endpoint: external traffic is dropped, the node and pods still get through.
    s.endpoints[0].local = false;
    let (out, _) = plan(None, &table(vec![("default/lb", s.clone())]));
    assert!(
        out.contains("add rule ip kt ext-default/lb/udp/80 drop"),
        "{out}"
    );
    // No endpoint at all: NodePort and LB ports are rejected.
    for policy in [TrafficPolicy::Local, TrafficPolicy::Cluster] {
        s.endpoints.clear();
        s.external_traffic_policy = policy;
        let (out, _) = plan(None, &table(vec![("default/lb", s.clone())]));
        assert!(
            out.contains(
                "add element ip kt no-endpoint-nodeports { udp . 30080 : goto reject-chain }"
            ),
            "{out}"
        );
        assert!(
            out.contains("192.168.7.1 . udp . 80 : goto reject-chain"),
            "{out}"
        );
    }
}

#[test]
fn affinity_uses_endpoint_chains_and_timed_sets() {
    let mut s = svc(
        "10.96.0.10",
        vec![ep("10.244.1.2", true, true), ep("10.244.1.3", true, true)],
    );
    s.affinity_timeout = Some(10800);
    let (out, _) = plan(None, &table(vec![("default/web", s)]));
    for want in [
        "add set ip kt aff-default/web/tcp/80/10-244-1-2/10800 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }",
        "add rule ip kt ep-default/web/tcp/80/10-244-1-2 update @aff-default/web/tcp/80/10-244-1-2/10800 { ip saddr }",
        "add rule ip kt ep-default/web/tcp/80/10-244-1-2 meta l4proto tcp dnat to 10.244.1.2:8080",
        "add rule ip kt svc-default/web/tcp/80 ip saddr @aff-default/web/tcp/80/10-244-1-3/10800 goto ep-default/web/tcp/80/10-244-1-3",
        "add rule ip kt svc-default/web/tcp/80 numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/80/10-244-1-2, 1 : goto ep-default/web/tcp/80/10-244-1-3 }",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
}

#[test]
fn headless_and_removed_services() {
    let mut headless = svc("10.96.0.1", vec![ep("10.244.1.2", true, false)]);
    headless.cluster_ip = None;
    let t = table(vec![("default/h", headless)]);
    let (out, _) = plan(None, &t);
    assert!(
        !out.contains("add element ip kt service-ips"),
        "a headless service has no VIP: {out}"
    );
    assert!(
        !out.contains("add element ip kt eps-tcp"),
        "nor endpoints: {out}"
    );
    let mut s = svc("10.96.0.1", vec![ep("10.244.1.2", true, false)]);
    s.affinity_timeout = Some(60);
    let t = table(vec![("default/s", s)]);
    let (out, r) = plan(Some(&t), &table(vec![]));
    assert_eq!(r.changed, vec!["default/s/tcp/80"]);
    assert!(
        out.contains("delete chain ip kt svc-default/s/tcp/80"),
        "{out}"
    );
    assert!(
        out.contains("delete chain ip kt ep-default/s/tcp/80/10-244-1-2"),
        "{out}"
    );
    assert!(
        out.contains("delete set ip kt aff-default/s/tcp/80/10-244-1-2/60"),
        "{out}"
    );
    assert!(
        !out.contains("delete element ip kt aff-"),
        "the set goes whole: {out}"
    );
}

#[test]
fn a_changed_base_declaration_forces_a_rebuild() {
    use super::nft::{Hook, HookPoint};
    let t = table(vec![]);
    let mut old = render(&t.node, &t.services, 0x4000);
    old.base
        .chains
        .get_mut("nat-output")
        .expect("base chain")
        .hook = Some(Hook {
        nat: true,
        point: HookPoint::Output,
        priority: 0,
    });
    let new = render(&t.node, &t.services, 0x4000);
    let (s, r) = script("kt", Some(&old), &new);
    assert!(r.rebuilt);
    assert!(s.starts_with("table ip kt {}\ndelete table ip kt\n"), "{s}");
}
