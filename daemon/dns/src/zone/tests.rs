use super::*;
use crate::respond::{respond, Outcome, Transport};
use crate::synthetic::Synth;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use serde_json::json;

/// Asks `zone` over TCP (no truncation) and renders the answer: the response code, the
/// answers as `TYPE data` sorted, and the authority section's types.
fn ask(zone: &Zone, name: &str, qtype: u16) -> (ResponseCode, Vec<String>, Vec<String>) {
    let mut p = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&wire::encode_name(name).unwrap());
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    let mut out = Vec::new();
    match respond(zone, &p, Transport::Tcp, &mut out) {
        Outcome::Reply => {}
        other => panic!("{name}: {other:?}"),
    }
    let m = Message::from_vec(&out).unwrap();
    let render = |d: &RData| match d {
        RData::A(a) => format!("A {a}"),
        RData::CNAME(c) => format!("CNAME {}", c.0),
        RData::PTR(p) => format!("PTR {}", p.0),
        RData::SRV(s) => format!("SRV {} {} {} {}", s.priority, s.weight, s.port, s.target),
        RData::SOA(s) => format!("SOA {} {}", s.mname, s.minimum),
        other => format!("{other:?}"),
    };
    let mut answers: Vec<String> = m.answers.iter().map(|r| render(&r.data)).collect();
    answers.sort();
    for r in m.answers.iter().chain(&m.authorities) {
        assert_eq!(r.ttl, TTL, "{name}");
    }
    let auth = m.authorities.iter().map(|r| render(&r.data)).collect();
    (m.metadata.response_code, answers, auth)
}

fn cluster() -> Synth {
    let mut s = Synth::new();
    let ports = [
        (Some("http"), "TCP", 80, Some(json!("web"))),
        (Some("dns"), "UDP", 53, None),
        (None, "TCP", 9000, None),
    ];
    s.service(
        "default",
        "web",
        Some([10, 96, 0, 10].into()),
        &ports,
        false,
    )
    .unwrap();
    s.service(
        "shop",
        "db",
        None,
        &[(Some("pg"), "TCP", 5432, Some(json!("pg")))],
        false,
    )
    .unwrap();
    s.service(
        "shop",
        "peers",
        None,
        &[(Some("gossip"), "TCP", 7000, Some(json!(7001)))],
        true,
    )
    .unwrap();
    s.pod(
        "default",
        "web-1",
        [10, 244, 0, 5].into(),
        None,
        None,
        &[("web", 8080)],
    )
    .unwrap();
    s.pod(
        "shop",
        "db-0",
        [10, 244, 1, 2].into(),
        Some("db-0"),
        Some("db"),
        &[("pg", 5432)],
    )
    .unwrap();
    s.pod(
        "shop",
        "db-1",
        [10, 244, 1, 3].into(),
        Some("db-1"),
        Some("db"),
        &[("pg", 5433)],
    )
    .unwrap();
    s.pod(
        "shop",
        "db-2",
        [10, 244, 1, 4].into(),
        Some("db-2"),
        Some("db"),
        &[],
    )
    .unwrap();
    s.pod(
        "shop",
        "stray",
        [10, 244, 1, 9].into(),
        Some("stray"),
        Some("other"),
        &[],
    )
    .unwrap();
    s.endpoint("default", "web", "web-1", true);
    s.endpoint("shop", "db", "db-0", true);
    s.endpoint("shop", "db", "db-1", true);
    s.endpoint("shop", "db", "db-2", false);
    s.endpoint("shop", "peers", "db-2", false);
    s.endpoint("shop", "peers", "stray", true);
    s
}

const NX: ResponseCode = ResponseCode::NXDomain;
const OK: ResponseCode = ResponseCode::NoError;

#[test]
fn answers_from_the_state() {
    use rtype::*;
    let zone = from_state(&cluster().state, "cluster.local").unwrap();
    let soa = vec!["SOA ns.dns.cluster.local. 5".to_string()];
    let cases: Vec<(&str, u16, ResponseCode, Vec<&str>)> = vec![
        // ClusterIP Service, any case.
        ("web.default.svc.cluster.local", A, OK, vec!["A 10.96.0.10"]),
        (
            "WEB.Default.Svc.Cluster.Local.",
            A,
            OK,
            vec!["A 10.96.0.10"],
        ),
        (
            "_http._tcp.web.default.svc.cluster.local",
            SRV,
            OK,
            vec!["SRV 0 100 80 web.default.svc.cluster.local."],
        ),
        (
            "_dns._udp.web.default.svc.cluster.local",
            SRV,
            OK,
            vec!["SRV 0 100 53 web.default.svc.cluster.local."],
        ),
        ("_http._udp.web.default.svc.cluster.local", SRV, NX, vec![]),
        (
            "10.0.96.10.in-addr.arpa",
            PTR,
            OK,
            vec!["PTR web.default.svc.cluster.local."],
        ),
        // Headless: ready endpoints only, per-pod names from hostname + subdomain.
        (
            "db.shop.svc.cluster.local",
            A,
            OK,
            vec!["A 10.244.1.2", "A 10.244.1.3"],
        ),
        (
            "db-0.db.shop.svc.cluster.local",
            A,
            OK,
            vec!["A 10.244.1.2"],
        ),
        ("db-2.db.shop.svc.cluster.local", A, NX, vec![]),
        (
            "_pg._tcp.db.shop.svc.cluster.local",
            SRV,
            OK,
            vec![
                "SRV 0 50 5432 db-0.db.shop.svc.cluster.local.",
                "SRV 0 50 5433 db-1.db.shop.svc.cluster.local.",
            ],
        ),
        (
            "2.1.244.10.in-addr.arpa",
            PTR,
            OK,
            vec!["PTR db-0.db.shop.svc.cluster.local."],
        ),
        // publishNotReadyAddresses; a pod whose subdomain names another Service gets a dashed name.
        (
            "peers.shop.svc.cluster.local",
            A,
            OK,
            vec!["A 10.244.1.4", "A 10.244.1.9"],
        ),
        (
            "10-244-1-9.peers.shop.svc.cluster.local",
            A,
            OK,
            vec!["A 10.244.1.9"],
        ),
        ("stray.peers.shop.svc.cluster.local", A, NX, vec![]),
        (
            "_gossip._tcp.peers.shop.svc.cluster.local",
            SRV,
            OK,
            vec![
                "SRV 0 50 7001 10-244-1-9.peers.shop.svc.cluster.local.",
                "SRV 0 50 7001 10-244-1-4.peers.shop.svc.cluster.local.",
            ],
        ),
        // Pods.
        (
            "10-244-0-5.default.pod.cluster.local",
            A,
            OK,
            vec!["A 10.244.0.5"],
        ),
        ("10-244-0-5.shop.pod.cluster.local", A, NX, vec![]),
        ("10-244-0-6.default.pod.cluster.local", A, NX, vec![]),
        (
            "5.0.244.10.in-addr.arpa",
            PTR,
            OK,
            vec!["PTR 10-244-0-5.default.pod.cluster.local."],
        ),
        (
            "9.1.244.10.in-addr.arpa",
            PTR,
            OK,
            vec!["PTR 10-244-1-9.peers.shop.svc.cluster.local."],
        ),
        // NODATA: names that exist without that type, and empty non-terminals.
        ("web.default.svc.cluster.local", AAAA, OK, vec![]),
        ("web.default.svc.cluster.local", SRV, OK, vec![]),
        ("_tcp.web.default.svc.cluster.local", SRV, OK, vec![]),
        ("default.svc.cluster.local", A, OK, vec![]),
        ("svc.cluster.local", A, OK, vec![]),
        ("pod.cluster.local", A, OK, vec![]),
        ("1.244.10.in-addr.arpa", PTR, OK, vec![]),
        // NXDOMAIN inside the zone and its reverse ranges.
        ("nope.default.svc.cluster.local", A, NX, vec![]),
        ("web.nope.svc.cluster.local", A, NX, vec![]),
        ("x.cluster.local", A, NX, vec![]),
        ("99.0.96.10.in-addr.arpa", PTR, NX, vec![]),
        ("99.9.244.10.in-addr.arpa", PTR, NX, vec![]),
        // The apex.
        (
            "cluster.local",
            SOA,
            OK,
            vec!["SOA ns.dns.cluster.local. 5"],
        ),
    ];
    for (name, t, rc, want) in cases {
        let (got_rc, got, auth) = ask(&zone, name, t);
        let mut want: Vec<String> = want.into_iter().map(String::from).collect();
        want.sort();
        assert_eq!((got_rc, &got), (rc, &want), "{name} type {t}");
        if got.is_empty() {
            assert_eq!(auth, soa, "{name}: negative answers carry the SOA");
        }
    }
    // ANY has every record of the name.
    let (_, any, _) = ask(&zone, "web.default.svc.cluster.local", ANY);
    assert_eq!(any, ["A 10.96.0.10"]);
}

#[test]
fn srv_answers_carry_the_targets_addresses() {
    let zone = from_state(&cluster().state, "cluster.local").unwrap();
    let mut p = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&wire::encode_name("_pg._tcp.db.shop.svc.cluster.local").unwrap());
    p.extend_from_slice(&[0, 33, 0, 1]);
    let mut out = Vec::new();
    respond(&zone, &p, Transport::Udp, &mut out);
    let m = Message::from_vec(&out).unwrap();
    let extra: Vec<String> = m
        .additionals
        .iter()
        .map(|r| format!("{} {:?}", r.name, r.data))
        .collect();
    assert_eq!(extra.len(), 2, "{extra:?}");
    assert!(extra[0].starts_with("db-0.db.shop.svc.cluster.local."));
}

#[test]
fn names_outside_are_not_ours() {
    let zone = from_state(&cluster().state, "cluster.local").unwrap();
    for name in [
        "example.com",
        "local",
        "cluster.local.example.com",
        "xcluster.local",
        "1.1.1.1.in-addr.arpa",
        "10.in-addr.arpa",
        "x.0.96.10.in-addr.arpa",
        "01.0.96.10.in-addr.arpa",
        "1.1.0.96.10.in-addr.arpa",
        "",
    ] {
        let q = wire::read_question(&{
            let mut p = vec![0; 12];
            p.extend_from_slice(&wire::encode_name(name).unwrap());
            p.extend_from_slice(&[0, 1, 0, 1]);
            p
        })
        .unwrap();
        assert_eq!(zone.lookup(&q), Lookup::NotOurs, "{name}");
    }
}

#[test]
fn external_name_is_a_cname() {
    let mut b = ZoneBuilder::new("cluster.local", &[], 1).unwrap();
    external_name(&mut b, "default", "search", "search.example.com.");
    external_name(&mut b, "default", "bad", "a..b");
    let zone = b.build();
    for t in [rtype::A, rtype::CNAME, rtype::SRV] {
        let (rc, got, _) = ask(&zone, "search.default.svc.cluster.local", t);
        assert_eq!(
            (rc, got),
            (OK, vec!["CNAME search.example.com.".to_string()]),
            "type {t}"
        );
    }
    assert_eq!(ask(&zone, "bad.default.svc.cluster.local", rtype::A).0, NX);
}

#[test]
fn external_name_services_of_the_state_are_cnames() {
    let mut s = cluster();
    let svc: kommit_schemas::model::core::Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "search", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "search.example.com."},
    }))
    .unwrap();
    s.state
        .desired
        .services
        .insert("default/search".into(), svc);
    let zone = from_state(&s.state, "cluster.local").unwrap();
    let (rc, got, _) = ask(&zone, "search.default.svc.cluster.local", rtype::A);
    assert_eq!(
        (rc, got),
        (OK, vec!["CNAME search.example.com.".to_string()])
    );
}

#[test]
fn a_pruned_service_disappears() {
    let mut s = cluster();
    let before = from_state(&s.state, "cluster.local").unwrap();
    assert_eq!(
        ask(&before, "web.default.svc.cluster.local", rtype::A).0,
        OK
    );
    s.remove_service("default", "web");
    let after = from_state(&s.state, "cluster.local").unwrap();
    assert_eq!(ask(&after, "web.default.svc.cluster.local", rtype::A).0, NX);
    assert_eq!(
        ask(
            &after,
            "_http._tcp.web.default.svc.cluster.local",
            rtype::SRV
        )
        .0,
        NX
    );
    assert_eq!(ask(&after, "10.0.96.10.in-addr.arpa", rtype::PTR).0, NX);
    // The pod stays.
    assert_eq!(
        ask(&after, "10-244-0-5.default.pod.cluster.local", rtype::A).0,
        OK
    );
    let handle = ZoneHandle::new(before);
    handle.store(after);
    assert_eq!(
        ask(&handle.load(), "web.default.svc.cluster.local", rtype::A).0,
        NX
    );
}

#[test]
fn other_domains_and_bad_input() {
    let zone = from_state(&cluster().state, "Kommit.Internal.").unwrap();
    assert_eq!(zone.domain(), "kommit.internal.");
    let (rc, got, _) = ask(&zone, "web.default.svc.kommit.internal", rtype::A);
    assert_eq!((rc, got), (OK, vec!["A 10.96.0.10".to_string()]));
    for bad in ["", ".", "a..b", &"x".repeat(64)] {
        assert!(from_state(&cluster().state, bad).is_err(), "{bad:?}");
    }
    // A domain so long that service names do not fit: no panic, the names are skipped.
    let long = vec!["d".repeat(60); 4].join(".");
    let zone = from_state(&cluster().state, &long).unwrap();
    assert!(zone.names() >= 1);
}

#[test]
fn huge_rrsets_are_cut_to_fit_tcp() {
    let mut b = ZoneBuilder::new("cluster.local", &[], 1).unwrap();
    let name = b.name(&["big", "ns", "svc"]).unwrap();
    for i in 0..5000u32 {
        b.add_a(name.clone(), Ipv4Addr::from(0x0a00_0000 + i));
    }
    let zone = b.build();
    let (rc, got, _) = ask(&zone, "big.ns.svc.cluster.local", rtype::A);
    assert_eq!(rc, OK);
    assert!(got.len() > 3000 && got.len() < 5000, "{}", got.len());
}

#[test]
fn the_same_state_gives_the_same_zone() {
    let a = from_state(&cluster().state, "cluster.local").unwrap();
    let b = from_state(&cluster().state, "cluster.local").unwrap();
    assert_eq!(a.names(), b.names());
    assert_eq!(a.records(), b.records());
    for (k, v) in &a.names {
        assert_eq!(b.names.get(k).map(|n| &n.rrsets), Some(&v.rrsets));
    }
}

#[test]
fn which_effects_rebuild_the_zone() {
    use kommit_reconcilers::{Effects, IpChange, PodRef};
    assert!(!affects_zone(&Effects::default()));
    let mut rollouts = Effects::default();
    rollouts
        .unschedulable
        .insert("default/x".into(), "no node".into());
    assert!(!affects_zone(&rollouts));
    let cases: Vec<Effects> = vec![
        Effects {
            adopted: Some("c1".into()),
            ..Effects::default()
        },
        Effects {
            endpoints_changed: vec!["default/web".into()],
            ..Effects::default()
        },
        Effects {
            ips: vec![IpChange::Pod {
                pod: "default/x".into(),
                ip: [10, 244, 0, 9].into(),
            }],
            ..Effects::default()
        },
        Effects {
            stop: [(
                "n1".to_string(),
                vec![PodRef {
                    pod: "default/x".into(),
                    uid: "u".into(),
                }],
            )]
            .into(),
            ..Effects::default()
        },
    ];
    for fx in cases {
        assert!(affects_zone(&fx), "{fx:?}");
    }
}
