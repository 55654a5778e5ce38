//! Pod network extras beyond the conformance suite: limits in cgroup files, hostPort DNAT
//! from the node, IP allocation persisted across a restart of the network driver, and an IP
//! handed from a removed pod to the next one reachable at once (no stale neighbour entry).
use kommit_runtime::network::{gateway, LinuxNetwork, NetConfig};
use kommit_runtime::spec::{ContainerSpec, PodSpec, PortMapping};
use kommit_runtime::{ContainerRuntime, PodNetwork};
use kommit_tests::runtime_support::{LinuxHarness, TEST_IMAGE};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn limits_land_in_cgroup_files() {
    let Some(h) = LinuxHarness::new(Path::new(env!("CARGO_BIN_EXE_kommit-runtime-helper"))) else {
        return;
    };
    h.rt.create_pod(&PodSpec::new("lim")).expect("pod");
    let mut c = ContainerSpec::new("c", TEST_IMAGE, &["sleep", "1000"]);
    c.resources.memory_limit = Some(48 << 20);
    c.resources.cpu_limit_millis = Some(500);
    c.resources.cpu_request_millis = Some(250);
    c.resources.pids_max = Some(40);
    h.rt.create_container("lim", &c).expect("create");
    let rel = format!("{}/lim/c", h.parent);
    let read = |ctrl: &str, v1: &str| -> String {
        for d in h.rt.layout().dirs(&rel) {
            let p = d.join(v1);
            if d.to_string_lossy().contains(ctrl) && p.exists() {
                return std::fs::read_to_string(p).expect("read").trim().to_string();
            }
        }
        panic!("{v1} not found for {rel}");
    };
    if !h.rt.layout().is_v2() {
        assert_eq!(
            read("memory", "memory.limit_in_bytes"),
            (48u64 << 20).to_string()
        );
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.shares"), "256");
        assert_eq!(read("pids", "pids.max"), "40");
    }
    h.rt.start_container("lim", "c").expect("start");
    let st = h.rt.stats("lim", "c").expect("stats");
    assert!(st.memory_bytes > 0 && st.pids == 1, "{st:?}");
    h.rt.remove_pod("lim").expect("remove");
}

#[test]
fn host_port_and_persisted_ipam() {
    let Some(h) = LinuxHarness::new(Path::new(env!("CARGO_BIN_EXE_kommit-runtime-helper"))) else {
        return;
    };
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    h.rt.create_pod(&PodSpec::new("web")).expect("pod");
    let ns = h.rt.pod_netns("web").expect("netns");
    let ports = [PortMapping {
        protocol: "tcp".into(),
        host_port,
        container_port: 8080,
    }];
    let addr = h.address(0);
    let ip = h.net.attach("web", &ns, addr, &ports).expect("attach");
    assert_eq!(ip, addr.ip);
    let srv = [
        "sh",
        "-c",
        "mkdir -p /www && echo via-hostport > /www/index.html && exec httpd -f -p 8080 -h /www",
    ];
    h.rt.create_container("web", &ContainerSpec::new("c", TEST_IMAGE, &srv))
        .expect("create");
    h.rt.start_container("web", "c").expect("start");
    let rules = std::process::Command::new("nft")
        .args(["list", "table", "ip", &h.table])
        .output()
        .expect("nft");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(&format!("dnat to {ip}:8080"))
            && rules.contains(&format!("ip saddr {} ", h.cidrs[0]))
            && rules.contains("masquerade"),
        "{rules}"
    );

    // From the node, the bridge address (a local address) on hostPort reaches the pod.
    let cidr_gw = {
        let a = ip.octets();
        std::net::Ipv4Addr::new(a[0], a[1], a[2], 1)
    };
    let t0 = Instant::now();
    let body = loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &(cidr_gw, host_port).into(),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(b) if b.contains("via-hostport") => break b,
            other => assert!(
                t0.elapsed() < Duration::from_secs(20),
                "hostPort never answered: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.starts_with("HTTP/1."));

    // A restarted network driver (same state dir) refuses an IP still allocated to a pod.
    let again = LinuxNetwork::new(NetConfig {
        bridge: h.bridge.clone(),
        nft_table: h.table.clone(),
        state_dir: h.dir.path().join("data/net"),
    })
    .expect("network");
    assert_eq!(again.ip_of("web").expect("ip_of"), Some(ip));
    assert_eq!(
        gateway(
            &format!("{cidr_gw}/24")
                .parse::<ipnet::Ipv4Net>()
                .expect("cidr")
                .trunc()
        ),
        Some(cidr_gw)
    );
    h.rt.create_pod(&PodSpec::new("other")).expect("pod");
    let ns2 = h.rt.pod_netns("other").expect("netns");
    let taken = again.attach("other", &ns2, addr, &[]);
    assert!(
        matches!(&taken, Err(e) if e.to_string().contains("allocated to pod web")),
        "{taken:?}"
    );
    let ip2 = again
        .attach("other", &ns2, h.address(1), &[])
        .expect("attach");
    assert_ne!(ip2, ip);
    again.detach("other").expect("detach");
    h.rt.remove_pod("other").expect("remove");
    h.net.detach("web").expect("detach");
    assert_eq!(h.net.ip_of("web").expect("ip_of"), None);
    h.rt.remove_pod("web").expect("remove");
}

/// The MAC of `eth0` inside a pod.
fn pod_mac(h: &LinuxHarness, pod: &str) -> String {
    let out =
        h.rt.exec(
            pod,
            "c",
            &["cat".into(), "/sys/class/net/eth0/address".into()],
            Duration::from_secs(10),
        )
        .expect("exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The host's neighbour entry for `ip` on the bridge, as `ip neigh` prints it.
fn host_neighbour(h: &LinuxHarness, ip: std::net::Ipv4Addr) -> String {
    let out = std::process::Command::new("ip")
        .args(["neigh", "show", &ip.to_string(), "dev", &h.bridge])
        .output()
        .expect("ip neigh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_reused_ip_gets_no_stale_neighbour_entry() {
    let Some(h) = LinuxHarness::new(Path::new(env!("CARGO_BIN_EXE_kommit-runtime-helper"))) else {
        return;
    };
    let addr = h.address(3);
    let start = |pod: &str| {
        h.rt.create_pod(&PodSpec::new(pod)).expect("pod");
        let ns = h.rt.pod_netns(pod).expect("netns");
        h.net.attach(pod, &ns, addr, &[]).expect("attach");
        let c = ContainerSpec::new("c", TEST_IMAGE, &["httpd", "-f", "-p", "8080"]);
        h.rt.create_container(pod, &c).expect("create");
        h.rt.start_container(pod, "c").expect("start");
    };
    // Another pod keeps the bridge (and its neighbour table) alive, as on a busy node.
    h.rt.create_pod(&PodSpec::new("keeper")).expect("pod");
    let keeper_ns = h.rt.pod_netns("keeper").expect("netns");
    h.net
        .attach("keeper", &keeper_ns, h.address(4), &[])
        .expect("attach");
    start("old");
    let old_mac = pod_mac(&h, "old");
    // The host talks to the old pod: its neighbour entry becomes reachable.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&(addr.ip, 8080).into(), Duration::from_secs(1))
        .is_err()
    {
        assert!(Instant::now() < deadline, "old pod never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        host_neighbour(&h, addr.ip).contains(&old_mac),
        "the host learnt the old pod's MAC: {}",
        host_neighbour(&h, addr.ip)
    );
    h.net.detach("old").expect("detach");
    h.rt.remove_pod("old").expect("remove");
    // The next pod gets the same IP at once, as the replicated state hands it out.
    start("new");
    let new_mac = pod_mac(&h, "new");
    assert_ne!(old_mac, new_mac);
    assert!(
        !host_neighbour(&h, addr.ip).contains(&old_mac),
        "stale entry: {}",
        host_neighbour(&h, addr.ip)
    );
    std::net::TcpStream::connect_timeout(&(addr.ip, 8080).into(), Duration::from_secs(2))
        .expect("the new pod answers at once");
    h.net.detach("new").expect("detach");
    h.rt.remove_pod("new").expect("remove");
    h.net.detach("keeper").expect("detach");
    h.rt.remove_pod("keeper").expect("remove");
}

/// Host-gw routes: `sync_pod_routes` makes kommit's routes (and only them) what it is given,
/// in a network namespace of the test's own.
#[test]
fn pod_routes_follow_the_nodes() {
    if kommit_tests::runtime_support::skip_privileged("pod routes") {
        return;
    }
    use kommit_runtime::network::{sync_pod_routes, ROUTE_PROTOCOL};
    use kommit_runtime::proxy::testnet::{Netns, NetnsThread};
    use std::collections::BTreeMap;
    let ns = Netns::create(&kommit_tests::runtime_support::unique("kommit-rt")).expect("netns");
    // A link to the other nodes, and a route of someone else's that must survive.
    ns.ip(&["link", "add", "lan0", "type", "bridge"]).unwrap();
    ns.ip(&["addr", "add", "10.250.0.1/24", "dev", "lan0"])
        .unwrap();
    ns.ip(&["link", "set", "lan0", "up"]).unwrap();
    ns.ip(&["route", "add", "10.99.0.0/16", "via", "10.250.0.9"])
        .unwrap();
    let t = NetnsThread::spawn(&ns.path()).expect("thread in the namespace");
    let routes = |ns: &Netns| -> String {
        let o = Command::new("ip")
            .args(["-n", ns.name(), "-4", "route", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
    let want = BTreeMap::from([
        (net("10.244.1.0/24"), Ipv4Addr::new(10, 250, 0, 2)),
        (net("10.244.2.0/24"), Ipv4Addr::new(10, 250, 0, 3)),
    ]);
    let w = want.clone();
    let c = t.run(move || sync_pod_routes(&w)).expect("sync");
    assert_eq!(c.added.len(), 2);
    let r = routes(&ns);
    assert!(
        r.contains(&format!(
            "10.244.1.0/24 via 10.250.0.2 dev lan0 proto {ROUTE_PROTOCOL}"
        )),
        "{r}"
    );
    assert!(r.contains("10.244.2.0/24 via 10.250.0.3 dev lan0"), "{r}");
    // Unchanged: nothing to do.
    let w = want.clone();
    let c = t.run(move || sync_pod_routes(&w)).expect("sync");
    assert!(c.added.is_empty() && c.removed.is_empty(), "{c:?}");
    // A node moved to another address and another removed.
    let moved = BTreeMap::from([(net("10.244.1.0/24"), Ipv4Addr::new(10, 250, 0, 7))]);
    let c = t.run(move || sync_pod_routes(&moved)).expect("sync");
    assert_eq!(c.removed, vec![net("10.244.2.0/24")]);
    assert_eq!(c.added, vec![net("10.244.1.0/24")]);
    let r = routes(&ns);
    assert!(r.contains("10.244.1.0/24 via 10.250.0.7"), "{r}");
    assert!(!r.contains("10.244.2.0/24"), "{r}");
    assert!(
        r.contains("10.99.0.0/16 via 10.250.0.9"),
        "another's route stays: {r}"
    );
    t.run(move || sync_pod_routes(&BTreeMap::new()))
        .expect("sync");
    let r = routes(&ns);
    assert!(!r.contains("10.244."), "{r}");
    assert!(r.contains("10.99.0.0/16"), "{r}");
}
