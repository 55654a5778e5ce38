//! The Service proxy: its conformance suite on the fake and on Linux (root; skipped only
//! with KOMMIT_SKIP_PRIVILEGED=1), and what only the kernel can show: an endpoint change
//! rewrites one map element and leaves every other rule as it was.

mod fake {
    use kommit_tests::proxy_support::FakeProxyHarness;
    kommit_runtime::proxy_conformance_suite!(FakeProxyHarness::new());
}

mod linux {
    use kommit_tests::proxy_support::LinuxProxyHarness;
    kommit_runtime::proxy_conformance_suite!(LinuxProxyHarness::new());
}

mod kernel {
    use kommit_runtime::proxy::{Endpoint, Protocol, Service, ServicePort, ServiceTable};
    use kommit_runtime::ServiceProxy;
    use kommit_tests::proxy_support::LinuxProxyHarness;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn service(vip: Ipv4Addr, eps: &[Ipv4Addr]) -> Service {
        Service {
            cluster_ip: Some(vip),
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: None,
            }],
            endpoints: eps
                .iter()
                .map(|ip| Endpoint {
                    ip: *ip,
                    ready: true,
                    terminating: false,
                    local: true,
                    ports: BTreeMap::from([("http".to_string(), 8080)]),
                })
                .collect(),
            ..Service::default()
        }
    }

    /// Every rule with its handle: the kernel gives a rewritten rule a new one.
    fn handles(h: &LinuxProxyHarness) -> Vec<String> {
        let out = h
            .node
            .nft(&["-a", "list", "table", "ip", h.proxy.table()])
            .expect("listing the table");
        let mut chain = String::new();
        let mut v = Vec::new();
        for line in out.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("chain ") {
                chain = rest.split_whitespace().next().unwrap_or("").to_string();
            } else if line.contains("# handle") && !line.starts_with("chain") {
                v.push(format!("{chain}: {line}"));
            }
        }
        v
    }

    #[test]
    fn an_endpoint_change_rewrites_one_element_in_the_kernel() {
        let Some(h) = LinuxProxyHarness::new() else {
            return;
        };
        let t = &h.node.topology;
        let e = &t.endpoints;
        let vip = |n: u8| Ipv4Addr::new(10, 96, 0, n);
        let table = |b: Ipv4Addr| ServiceTable {
            node: t.node.clone(),
            services: BTreeMap::from([
                ("default/a".to_string(), service(vip(1), &[e[0], e[1]])),
                ("default/b".to_string(), service(vip(2), &[e[1], b])),
                ("default/c".to_string(), service(vip(3), &[e[3]])),
            ]),
        };
        h.proxy.sync(&table(e[2])).expect("first sync");
        let before = handles(&h);
        assert!(before.len() > 10, "too few rules listed: {before:?}");
        let (script, report) = h.proxy.plan(&table(e[4])).expect("plan");
        assert_eq!(
            script,
            "delete element ip kommit-x eps-tcp { 10.96.0.2 . 80 . 1 }\n\
             delete element ip kommit-x hairpin { 10.240.0.12 . 10.240.0.12 }\n\
             add element ip kommit-x eps-tcp { 10.96.0.2 . 80 . 1 : 10.240.0.14 . 8080 }\n\
             add element ip kommit-x hairpin { 10.240.0.14 . 10.240.0.14 }\n"
                .replace("kommit-x", h.proxy.table()),
        );
        assert_eq!(report.changed, vec!["default/b/tcp/80"]);
        h.proxy.sync(&table(e[4])).expect("endpoint change");
        assert_eq!(before, handles(&h), "an endpoint change rewrote rules");
        let map = h
            .node
            .nft(&["list", "map", "ip", h.proxy.table(), "eps-tcp"])
            .expect("listing the map");
        assert!(
            map.contains("10.96.0.2 . 80 . 1 : 10.240.0.14 . 8080"),
            "{map}"
        );
        assert!(!map.contains("10.240.0.12"), "{map}");
        h.proxy.clear().expect("clear");
        let tables = h.node.nft(&["list", "tables"]).expect("listing tables");
        assert!(!tables.contains(h.proxy.table()), "clear left {tables}");
    }

    /// A table removed behind the proxy's back: the next incremental sync fails with nft's
    /// own words, and the one after it rebuilds the table whole.
    #[test]
    fn a_failed_sync_is_followed_by_a_rebuild() {
        let Some(h) = LinuxProxyHarness::new() else {
            return;
        };
        let t = &h.node.topology;
        let e = &t.endpoints;
        let table = |ep: Ipv4Addr| ServiceTable {
            node: t.node.clone(),
            services: BTreeMap::from([(
                "default/a".to_string(),
                service(Ipv4Addr::new(10, 96, 0, 1), &[ep]),
            )]),
        };
        h.proxy.sync(&table(e[0])).expect("first sync");
        h.node
            .nft(&["delete", "table", "ip", h.proxy.table()])
            .expect("deleting the table");
        let err = h
            .proxy
            .sync(&table(e[1]))
            .expect_err("an incremental sync into a missing table")
            .to_string();
        assert!(err.contains(h.proxy.table()), "{err}");
        let r = h
            .proxy
            .sync(&table(e[1]))
            .expect("the sync after a failure");
        assert!(r.rebuilt, "{r:?}");
        let map = h
            .node
            .nft(&["list", "map", "ip", h.proxy.table(), "eps-tcp"])
            .expect("listing the map");
        assert!(
            map.contains("10.96.0.1 . 80 . 0 : 10.240.0.11 . 8080"),
            "{map}"
        );
        h.proxy.clear().expect("clear");
    }
}
