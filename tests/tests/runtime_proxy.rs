//! The Service proxy: its conformance suite on the fake and on Linux (root; skipped only
//! with KOMMIT_SKIP_PRIVILEGED=1), and what only the kernel can show: an endpoint change
//! rewrites one map element and leaves every other rule as it was; the proxy's netlink
//! transactions build the same table as `nft -f` of the same script; a table removed
//! behind the proxy's back is rebuilt by the next sync; a refused transaction changes
//! nothing and the next sync rebuilds.

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

    /// A table removed behind the proxy's back (`nft delete table`, or `nft flush ruleset`
    /// as a firewall reload does): the next sync notices and rebuilds it whole.
    #[test]
    fn a_table_removed_behind_the_proxys_back_is_rebuilt_by_the_next_sync() {
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
        let eps = || {
            h.node
                .nft(&["list", "map", "ip", h.proxy.table(), "eps-tcp"])
                .expect("listing the map")
        };
        for removal in [
            vec!["delete", "table", "ip", h.proxy.table()],
            vec!["flush", "ruleset"],
        ] {
            h.node.nft(&removal).expect("removing the table");
            // Even a sync with nothing new repairs it.
            let r = h
                .proxy
                .sync(&table(e[0]))
                .expect("the sync after the removal");
            assert!(r.rebuilt, "after {removal:?}: {r:?}");
            assert!(
                eps().contains("10.96.0.1 . 80 . 0 : 10.240.0.10 . 8080"),
                "after {removal:?}: {}",
                eps()
            );
            let r = h.proxy.sync(&table(e[1])).expect("an endpoint change");
            assert!(!r.rebuilt, "{r:?}");
            assert!(
                eps().contains("10.96.0.1 . 80 . 0 : 10.240.0.11 . 8080"),
                "{}",
                eps()
            );
            h.proxy.sync(&table(e[0])).expect("and back");
        }
        h.proxy.clear().expect("clear");
    }

    /// An element removed behind the proxy's back (the table is still the one it built):
    /// the next transaction that deletes it is refused. A refused transaction changes
    /// nothing (the Service added in the same sync is not there either), the error names
    /// the table and what was refused, and the sync after it rebuilds the table.
    #[test]
    fn a_refused_transaction_changes_nothing_and_the_next_sync_rebuilds() {
        let Some(h) = LinuxProxyHarness::new() else {
            return;
        };
        let t = &h.node.topology;
        let e = &t.endpoints;
        let vip = |n: u8| Ipv4Addr::new(10, 96, 0, n);
        let one = ServiceTable {
            node: t.node.clone(),
            services: BTreeMap::from([("default/a".to_string(), service(vip(1), &[e[0]]))]),
        };
        let mut two = one.clone();
        two.services
            .insert("default/a".to_string(), service(vip(1), &[e[1]]));
        two.services
            .insert("default/b".to_string(), service(vip(2), &[e[2]]));
        h.proxy.sync(&one).expect("first sync");
        h.node
            .nft(&[
                "delete",
                "element",
                "ip",
                h.proxy.table(),
                "eps-tcp",
                "{ 10.96.0.1 . 80 . 0 }",
            ])
            .expect("deleting an element");
        let before = h
            .node
            .nft(&["list", "table", "ip", h.proxy.table()])
            .expect("listing");
        let err = h
            .proxy
            .sync(&two)
            .expect_err("deleting an element that is gone")
            .to_string();
        assert!(err.contains(h.proxy.table()), "{err}");
        assert!(
            err.contains("delete element") && err.contains("No such file"),
            "{err}"
        );
        let after = h
            .node
            .nft(&["list", "table", "ip", h.proxy.table()])
            .expect("listing");
        assert_eq!(before, after, "a refused transaction changed the table");
        let r = h.proxy.sync(&two).expect("the sync after a failure");
        assert!(r.rebuilt, "{r:?}");
        let map = h
            .node
            .nft(&["list", "map", "ip", h.proxy.table(), "eps-tcp"])
            .expect("listing the map");
        assert!(
            map.contains("10.96.0.1 . 80 . 0 : 10.240.0.11 . 8080"),
            "{map}"
        );
        assert!(
            map.contains("10.96.0.2 . 80 . 0 : 10.240.0.12 . 8080"),
            "{map}"
        );
        h.proxy.clear().expect("clear");
    }

    /// Two listings are the same; if not, show the lines only one has.
    fn assert_same(a: &[String], b: &[String], what: &str) {
        let only = |x: &[String], y: &[String]| -> Vec<String> {
            x.iter().filter(|l| !y.contains(l)).cloned().collect()
        };
        assert!(
            a == b,
            "{what}\nonly on the left: {:#?}\nonly on the right: {:#?}",
            only(a, b),
            only(b, a)
        );
    }

    /// Sets' elements sorted, wherever they are (the kernel lists a hash set in its own
    /// order), and handles dropped.
    fn normalize(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                o.remove("handle");
                // The time an affinity entry has left.
                o.remove("expires");
                for (k, inner) in o.iter_mut() {
                    normalize(inner);
                    if let (true, Some(a)) = (k == "elem" || k == "set", inner.as_array_mut()) {
                        a.sort_by_key(|e| e.to_string());
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(normalize),
            _ => {}
        }
    }

    /// Changes inside the table behind the proxy's back (an element deleted, one added, a
    /// chain flushed): the handle check cannot see them, the periodic full sync repairs them
    /// without deleting the table, and keeps the kernel's affinity entries.
    #[test]
    fn the_periodic_full_sync_repairs_changes_inside_the_table() {
        use kommit_runtime::proxy::{LinuxProxy, ProxyConfig};
        use std::time::{Duration, Instant};
        let Some(h) = LinuxProxyHarness::new() else {
            return;
        };
        let t = &h.node.topology;
        let e = &t.endpoints;
        let period = Duration::from_secs(3);
        let mut cfg = ProxyConfig::new(&format!("{}-p", h.proxy.table()));
        cfg.netns = Some(h.node.node_netns());
        cfg.full_sync_period = Some(period);
        let proxy = LinuxProxy::new(cfg).expect("proxy config");
        let name = proxy.table().to_string();
        let mut sticky = service(Ipv4Addr::new(10, 96, 0, 2), &e[..2]);
        sticky.affinity_timeout = Some(600);
        let table = ServiceTable {
            node: t.node.clone(),
            services: BTreeMap::from([
                (
                    "default/a".to_string(),
                    service(Ipv4Addr::new(10, 96, 0, 1), &e[..2]),
                ),
                ("default/sticky".to_string(), sticky),
            ]),
        };
        let built = Instant::now();
        proxy.sync(&table).expect("first sync");
        let before = listing(&h, &name);
        let aff = "aff-default/sticky/tcp/80/10-240-0-10/600";
        for change in [
            "delete element ip T eps-tcp { 10.96.0.1 . 80 . 0 }",
            "add element ip T service-ips { 10.96.0.77 . tcp . 80 : goto reject-chain }",
            "flush chain ip T spread-tcp-2",
            "add element ip T AFF { 10.240.0.50 }",
        ] {
            let cmd = change
                .replace(" T ", &format!(" {name} "))
                .replace("AFF", aff);
            h.node
                .nft(&cmd.split(' ').collect::<Vec<_>>())
                .expect("changing the table");
        }
        let changed = listing(&h, &name);
        assert_ne!(before, changed);
        let r = proxy.sync(&table).expect("a sync with nothing new");
        assert!(r.changed.is_empty() && !r.rebuilt, "{r:?}");
        if built.elapsed() < period {
            assert_same(&listing(&h, &name), &changed, "repaired before the period");
        }
        std::thread::sleep(period.saturating_sub(built.elapsed()) + Duration::from_millis(100));
        let r = proxy.sync(&table).expect("the sync after the period");
        assert!(r.changed.is_empty() && !r.rebuilt, "{r:?}");
        let set = h
            .node
            .nft(&["list", "set", "ip", &name, aff])
            .expect("listing the affinity set");
        assert!(
            set.contains("10.240.0.50"),
            "the affinity entry is gone: {set}"
        );
        h.node
            .nft(&["delete", "element", "ip", &name, aff, "{ 10.240.0.50 }"])
            .expect("deleting the affinity entry");
        assert_same(&listing(&h, &name), &before, "not repaired");
        proxy.clear().expect("clear");
    }

    /// `nft list table`, for comparing two tables: without the table's name, handles or the
    /// order of elements.
    fn listing(h: &LinuxProxyHarness, table: &str) -> Vec<String> {
        let json = h
            .node
            .nft(&["-j", "list", "table", "ip", table])
            .expect("listing as json");
        let v: serde_json::Value = serde_json::from_str(&json).expect("nft's json");
        let mut out = Vec::new();
        for item in v["nftables"].as_array().expect("an array") {
            let mut item = item.clone();
            if item.get("metainfo").is_some() || item.get("table").is_some() {
                continue;
            }
            if let Some(o) = item.as_object_mut() {
                for inner in o.values_mut().filter_map(|i| i.as_object_mut()) {
                    inner.remove("table");
                }
            }
            normalize(&mut item);
            out.push(item.to_string());
        }
        // The text listing too, for what only it shows (`typeof`), without the elements.
        let text = h
            .node
            .nft(&["list", "table", "ip", table])
            .expect("listing");
        let mut in_elements = false;
        for line in text.lines() {
            if line.contains("elements = {") {
                in_elements = true;
            }
            if !in_elements && !line.starts_with("table ") {
                // An anonymous map's elements are listed in the kernel's order too.
                let line = match (line.find("vmap { "), line.rfind(" }")) {
                    (Some(a), Some(z)) if z > a + 7 => {
                        let mut items: Vec<&str> = line[a + 7..z].split(", ").collect();
                        items.sort();
                        format!("{}{}{}", &line[..a + 7], items.join(", "), &line[z..])
                    }
                    _ => line.to_string(),
                };
                out.push(line);
            }
            if in_elements && line.trim_end().ends_with('}') {
                in_elements = false;
            }
        }
        out
    }

    /// The proxy's netlink encoding against nft's own: the same transactions, sent as
    /// netlink by the proxy to its table and as `nft -f` scripts to another, make tables
    /// that nft lists the same, rule for rule and element for element. The tables cover
    /// every rule shape, declaration and element key the proxy writes, and the changes
    /// every kind of operation (elements and chains added and deleted, chains flushed,
    /// sets deleted).
    #[test]
    fn netlink_and_nft_scripts_make_the_same_tables() {
        use kommit_runtime::proxy::state::State;
        use kommit_runtime::proxy::{Protocol, ServiceType, TrafficPolicy};
        let Some(h) = LinuxProxyHarness::new() else {
            return;
        };
        let t = &h.node.topology;
        let e = &t.endpoints;
        let vip = |n: u8| Ipv4Addr::new(10, 96, 0, n);
        let mut node = t.node.clone();
        node.addresses.push(Ipv4Addr::new(10, 241, 0, 9));
        let rich = |k: usize| {
            let mut services = BTreeMap::new();
            services.insert("default/simple".to_string(), service(vip(1), &e[k..k + 3]));
            let mut aff = service(vip(2), &e[k..k + 2]);
            aff.affinity_timeout = Some(10800);
            services.insert("default/affinity".to_string(), aff);
            let mut np = service(vip(3), &e[..2]);
            np.service_type = ServiceType::NodePort;
            np.ports[0].node_port = Some(30080);
            np.ports[0].protocol = Protocol::Udp;
            services.insert("default/nodeport".to_string(), np);
            let mut lb = service(vip(4), &e[k..k + 1]);
            lb.service_type = ServiceType::LoadBalancer;
            lb.ports[0].node_port = Some(30081);
            lb.ports[0].port = 8443;
            lb.ports[0].protocol = Protocol::Sctp;
            lb.external_traffic_policy = TrafficPolicy::Local;
            lb.endpoints[0].local = k == 0;
            services.insert("default/lb-local".to_string(), lb);
            let mut lba = service(vip(5), &e[1..3]);
            lba.service_type = ServiceType::LoadBalancer;
            lba.ports[0].node_port = Some(30082);
            lba.ports[0].port = 9000;
            lba.external_traffic_policy = TrafficPolicy::Local;
            lba.affinity_timeout = Some(60);
            services.insert("default/lb-affinity".to_string(), lba);
            services.insert("default/empty".to_string(), service(vip(6), &[]));
            let mut headless = service(vip(7), &e[..1]);
            headless.cluster_ip = None;
            services.insert("default/headless".to_string(), headless);
            if k == 1 {
                services.remove("default/affinity");
                services.insert("default/late".to_string(), service(vip(8), &e[..4]));
            }
            ServiceTable {
                node: node.clone(),
                services,
            }
        };
        let other = format!("{}-text", h.proxy.table());
        let dir = tempfile::tempdir().expect("a temp dir");
        let nft_f = |script: &str| {
            let path = dir.path().join("script.nft");
            std::fs::write(&path, script).expect("writing the script");
            h.node
                .nft(&["-f", path.to_str().expect("a utf-8 path")])
                .unwrap_or_else(|e| panic!("{e}\n{script}"));
        };
        let mut state: Option<State> = None;
        for (step, k) in [0, 1, 0, 0].into_iter().enumerate() {
            let want = rich(k);
            let next = match &state {
                None => State::build(&want, 0x4000).expect("a valid table"),
                Some(st) => st.step(&want).expect("a valid table"),
            };
            nft_f(&next.tx.script(&other));
            let r = h.proxy.sync(&want).expect("sync");
            assert_eq!(r, next.report, "step {step}");
            state = State::commit(state, next);
            let (a, b) = (listing(&h, h.proxy.table()), listing(&h, &other));
            assert!(a.len() > 20, "step {step}: too little listed: {a:#?}");
            assert_same(
                &a,
                &b,
                &format!("step {step}: netlink (left) and nft -f (right) differ"),
            );
        }
        nft_f(&format!("delete table ip {other}\n"));
        h.proxy.clear().expect("clear");
    }
}
