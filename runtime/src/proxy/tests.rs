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
    // internalTrafficPolicy: Local: the ClusterIP spreads over this node's endpoints alone,
    // and drops when there are endpoints but none here.
    s.endpoints[0].local = true;
    s.internal_traffic_policy = TrafficPolicy::Local;
    let (out, _) = plan(None, &table(vec![("default/lb", s.clone())]));
    for want in [
        "add element ip kt service-ips { 10.96.0.10 . udp . 80 : goto int-default/lb/udp/80",
        "add rule ip kt int-default/lb/udp/80 meta l4proto udp dnat ip addr . port to numgen random mod 1 map @ieps-default/lb/udp/80",
        "add element ip kt ieps-default/lb/udp/80 { 0 : 10.244.1.2 . 8080 }",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    s.endpoints[0].local = false;
    let (out, _) = plan(None, &table(vec![("default/lb", s.clone())]));
    assert!(
        out.contains("add element ip kt no-endpoint-services { 10.96.0.10 . udp . 80 : drop }"),
        "{out}"
    );
    s.internal_traffic_policy = TrafficPolicy::Cluster;
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

/// A small deterministic generator (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A random table over a few addresses, so that changes collide and share objects.
fn random_table(rng: &mut Lcg, extra_address: bool) -> ServiceTable {
    let mut t = table(vec![]);
    if extra_address {
        t.node.addresses.push(ip("192.168.7.2"));
    }
    let mut next_np = 30001;
    for i in 0..rng.next(8) {
        let eps = (0..rng.next(5))
            .map(|k| {
                let mut e = ep(
                    &format!("10.244.{}.{}", 1 + rng.next(2), 2 + k),
                    rng.next(4) > 0,
                    rng.next(2) == 0,
                );
                e.terminating = rng.next(6) == 0;
                e
            })
            .collect();
        // Now and then a Service claims what another may have: a VIP, a NodePort, a
        // LoadBalancer port that is another's NodePort.
        let vip = if rng.next(12) == 0 {
            10 + rng.next(8)
        } else {
            10 + i
        };
        let mut s = svc(&format!("10.96.0.{vip}"), eps);
        s.publish_not_ready = rng.next(8) == 0;
        if rng.next(4) == 0 {
            s.affinity_timeout = Some(60 + rng.next(2) as u32);
        }
        match rng.next(4) {
            0 => {
                s.service_type = ServiceType::NodePort;
                s.ports[0].node_port = Some(if rng.next(12) == 0 { 30000 } else { next_np });
                next_np += 1;
            }
            1 => {
                s.service_type = ServiceType::LoadBalancer;
                s.ports[0].node_port = Some(next_np);
                s.ports[0].port = if rng.next(12) == 0 {
                    30000
                } else {
                    8000 + i as u16
                };
                next_np += 1;
            }
            _ => {}
        }
        if rng.next(3) == 0 {
            s.external_traffic_policy = TrafficPolicy::Local;
        }
        if rng.next(6) == 0 {
            s.internal_traffic_policy = TrafficPolicy::Local;
        }
        if rng.next(5) == 0 {
            s.ports.push(ServicePort {
                name: "udp".into(),
                protocol: Protocol::Udp,
                port: 53,
                node_port: None,
            });
            for e in &mut s.endpoints {
                e.ports.insert("udp".into(), 5353);
            }
        }
        if rng.next(10) == 0 {
            s.cluster_ip = None;
        }
        t.services.insert(format!("ns/s{}", rng.next(10)), s);
    }
    t
}

#[test]
fn the_incremental_state_makes_the_same_transactions_as_whole_renders() {
    use super::script::diff_rulesets;
    use super::state::State;
    let mut rng = Lcg(7);
    let (mut checked, mut invalid) = (0, 0);
    for round in 0..800 {
        let mut a = random_table(&mut rng, false);
        let b = random_table(&mut rng, round % 10 == 0);
        if round % 3 == 0 {
            // Mostly small changes: keep a's Services but one.
            for (k, s) in &b.services {
                if rng.next(4) == 0 {
                    a.services.insert(k.clone(), s.clone());
                }
            }
        }
        if validate(&a).is_err() {
            continue;
        }
        let first = State::build(&a, 0x4000).expect("a valid table");
        let (whole, report) = diff_rulesets(None, &render(&a.node, &a.services, 0x4000));
        assert_eq!(first.tx, whole, "round {round}: the builds differ");
        assert_eq!(first.report, report);
        let st = State::commit(None, first).expect("a built state");
        // Checking only what changed refuses what checking everything refuses.
        if let Err(e) = validate(&b) {
            // (Not always with the same words: the conflict is seen from the other side.)
            let refused = st.step(&b).map(|_| ());
            assert!(refused.is_err(), "round {round}: {e} but accepted {b:#?}");
            invalid += 1;
            continue;
        }
        let step = st.step(&b).expect("a valid table");
        let (want, report) = diff_rulesets(
            Some(&render(&a.node, &a.services, 0x4000)),
            &render(&b.node, &b.services, 0x4000),
        );
        assert_eq!(
            step.tx.script("kt"),
            want.script("kt"),
            "round {round}: from {a:#?}\nto {b:#?}"
        );
        assert_eq!(step.report, report, "round {round}");
        // The state after the step is the state of b: stepping back gives the reverse.
        let st = State::commit(Some(st), step).expect("a state");
        let back = st.step(&a).expect("a valid table");
        let (want, _) = diff_rulesets(
            Some(&render(&b.node, &b.services, 0x4000)),
            &render(&a.node, &a.services, 0x4000),
        );
        assert_eq!(
            back.tx.script("kt"),
            want.script("kt"),
            "round {round}: back"
        );
        let same = st.step(&b).expect("a valid table");
        assert!(same.tx.is_empty() && same.report.changed.is_empty());
        checked += 1;
    }
    assert!(
        checked > 100 && invalid > 10,
        "{checked} steps, {invalid} invalid"
    );
}

#[test]
fn an_unchanged_service_is_compared_not_rendered() {
    use super::state::State;
    let db = svc("10.96.0.11", vec![ep("10.244.1.9", true, true)]);
    let a = table(vec![
        (
            "default/web",
            svc("10.96.0.10", vec![ep("10.244.1.2", true, true)]),
        ),
        ("default/db", db.clone()),
    ]);
    let b = table(vec![
        (
            "default/web",
            svc("10.96.0.10", vec![ep("10.244.1.3", true, true)]),
        ),
        ("default/db", db),
    ]);
    let st = State::commit(None, State::build(&a, 0x4000).expect("valid")).expect("state");
    let step = st.step(&b).expect("step");
    assert_eq!(step.report.changed, vec!["default/web/tcp/80"]);
    assert_eq!(
        step.tx.script("kt"),
        "delete element ip kt eps-tcp { 10.96.0.10 . 80 . 0 }\n\
         delete element ip kt hairpin { 10.244.1.2 . 10.244.1.2 }\n\
         add element ip kt eps-tcp { 10.96.0.10 . 80 . 0 : 10.244.1.3 . 8080 }\n\
         add element ip kt hairpin { 10.244.1.3 . 10.244.1.3 }\n"
    );
    // Other node facts: every Service is rendered again, and the base diffed.
    let mut c = b.clone();
    c.node.addresses.push(ip("192.168.7.2"));
    let st = State::commit(Some(st), step).expect("state");
    let step = st.step(&c).expect("step");
    assert!(!step.report.rebuilt);
    assert_eq!(
        step.tx.script("kt"),
        "add element ip kt node-ips { 192.168.7.2 }\n"
    );
}

#[test]
fn a_refresh_empties_and_refills_everything_but_affinity_entries() {
    use super::state::State;
    let mut web = svc("10.96.0.10", vec![ep("10.244.1.2", true, true)]);
    web.affinity_timeout = Some(60);
    let t = table(vec![
        ("default/web", web),
        (
            "default/db",
            svc("10.96.0.11", vec![ep("10.244.1.9", true, true)]),
        ),
    ]);
    let st = State::commit(None, State::build(&t, 0x4000).expect("valid")).expect("state");
    let s = st.refresh().script("kt");
    assert!(s.starts_with("add table ip kt\n"), "{s}");
    for want in [
        "add map ip kt service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }\nflush map ip kt service-ips\n",
        "add chain ip kt services\nflush chain ip kt services\n",
        "add chain ip kt nat-prerouting { type nat hook prerouting priority dstnat ; policy accept ; }\nflush chain ip kt nat-prerouting\n",
        "add rule ip kt services ip daddr . meta l4proto . th dport vmap @service-ips\n",
        "add element ip kt eps-tcp { 10.96.0.11 . 80 . 0 : 10.244.1.9 . 8080 }\n",
        "add set ip kt aff-default/web/tcp/80/10-244-1-2/60 { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }\n",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert!(
        !s.contains("flush set ip kt aff-"),
        "affinity entries are kept: {s}"
    );
    assert!(!s.contains("delete "), "a refresh deletes nothing: {s}");
}
