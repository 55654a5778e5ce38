//! `kommit-bench services` (root): the Service proxy on a test node in network namespaces.
//! Programs 1,000 Services of 10 endpoints each in one sync, changes one endpoint, and times
//! TCP connects from a pod through a ClusterIP with 1 and with 1,000 Services installed.
//! Ends with `RESULT services full_sync_ms=<x> endpoint_update_ms=<y>
//! connect_ratio_1000_vs_1=<z>` (medians). Goals: < 200 ms, < 10 ms, < 1.2.

use anyhow::{bail, Context};
use kommit_runtime::conformance::Client;
use kommit_runtime::proxy::testnet::Connect;
use kommit_runtime::proxy::{
    Endpoint, LinuxProxy, Protocol, ProxyConfig, Service, ServicePort, ServiceTable,
};
use kommit_runtime::ServiceProxy;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::proxy_support::TestNode;

struct Opts {
    services: usize,
    endpoints: usize,
    connects: usize,
    rounds: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        services: 1000,
        endpoints: 10,
        connects: 200,
        rounds: 4,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> anyhow::Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .with_context(|| format!("{what} needs a positive number"))
        };
        match a.as_str() {
            "--services" => o.services = num("--services")?,
            "--endpoints" => o.endpoints = num("--endpoints")?,
            "--connects" => o.connects = num("--connects")?,
            "--rounds" => o.rounds = num("--rounds")?,
            other => bail!(
                "unknown option {other} (known: --services N --endpoints N --connects N --rounds N)"
            ),
        }
    }
    if o.endpoints > 250 {
        bail!("--endpoints at most 250");
    }
    Ok(o)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn service(vip: Ipv4Addr, eps: Vec<(Ipv4Addr, bool)>) -> Service {
    Service {
        cluster_ip: Some(vip),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        endpoints: eps
            .into_iter()
            .map(|(ip, local)| Endpoint {
                ip,
                ready: true,
                terminating: false,
                local,
                ports: BTreeMap::from([("http".to_string(), 8080)]),
            })
            .collect(),
        ..Service::default()
    }
}

/// `n` Services: `bench/target` on 10.96.0.10 over the node's real endpoints, and `n - 1`
/// fillers of `eps` endpoints each on addresses of other nodes (every tenth one local).
fn table(node: &TestNode, n: usize, eps: usize, bump: u8) -> ServiceTable {
    let t = &node.topology;
    let mut services = BTreeMap::new();
    services.insert(
        "bench/target".to_string(),
        service(
            Ipv4Addr::new(10, 96, 0, 10),
            t.endpoints[..3].iter().map(|ip| (*ip, true)).collect(),
        ),
    );
    for i in 1..n {
        let vip = Ipv4Addr::new(10, 96, 1 + (i / 250) as u8, (i % 250) as u8 + 1);
        let ep = |k: usize| {
            // Endpoint `k` of filler `i` on node `i % 200`; the first filler's first
            // endpoint moves with `bump`.
            let last = if i == 1 && k == 0 {
                100 + bump
            } else {
                2 + k as u8
            };
            (
                Ipv4Addr::new(10, 244, (i % 200) as u8, last),
                k == 0 && i % 10 == 0,
            )
        };
        services.insert(
            format!("bench/s{i}"),
            service(vip, (0..eps).map(ep).collect()),
        );
    }
    ServiceTable {
        node: t.node.clone(),
        services,
    }
}

fn connects(node: &TestNode, n: usize) -> anyhow::Result<Vec<f64>> {
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80);
    let from = Client::Pod(node.topology.pod_client);
    let mut out = Vec::with_capacity(n);
    for (c, took) in node.connect_many(from, to, n) {
        match c {
            Connect::Answered { .. } => out.push(took.as_secs_f64() * 1e6),
            other => bail!("connect through {to}: {other:?}"),
        }
    }
    Ok(out)
}

/// Entry point.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let mut node = TestNode::new().map_err(anyhow::Error::msg)?;
    let eps = node.topology.endpoints.clone();
    for ip in &eps[..3] {
        node.serve(SocketAddrV4::new(*ip, 8080))
            .map_err(anyhow::Error::msg)?;
    }
    let mut cfg = ProxyConfig::new("kommit-bench-services");
    cfg.netns = Some(node.node_netns());
    let proxy = LinuxProxy::new(cfg)?;
    let small = table(&node, 1, o.endpoints, 0);
    let big = table(&node, o.services, o.endpoints, 0);
    println!(
        "services: {} services x {} endpoints, {} connects x {} rounds per table",
        o.services, o.endpoints, o.connects, o.rounds
    );

    let mut full = Vec::new();
    for _ in 0..3 {
        proxy.clear()?;
        let start = Instant::now();
        let r = proxy.sync(&big)?;
        full.push(ms(start.elapsed()));
        if !r.rebuilt {
            bail!("a sync after clear did not rebuild");
        }
    }
    println!("full sync (ms): {full:.1?}");

    let mut update = Vec::new();
    for k in 1..=20u8 {
        let next = table(&node, o.services, o.endpoints, k);
        let start = Instant::now();
        let r = proxy.sync(&next)?;
        update.push(ms(start.elapsed()));
        if r.rebuilt || r.changed != ["bench/s1/tcp/80"] {
            bail!("an endpoint change reported {r:?}");
        }
    }
    println!("endpoint update (ms): {update:.1?}");
    // The same table again: one comparison per Service and one question to the kernel (is
    // the table still there?), but no transaction.
    let same = table(&node, o.services, o.endpoints, 20);
    let mut noop = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let r = proxy.sync(&same)?;
        noop.push(ms(start.elapsed()));
        if !r.changed.is_empty() {
            bail!("an unchanged table reported {r:?}");
        }
    }
    println!("no-op sync, no transaction (ms): {noop:.1?}");

    let (mut one, mut many) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        proxy.sync(&small)?;
        connects(&node, 20)?;
        one.extend(connects(&node, o.connects)?);
        proxy.sync(&big)?;
        connects(&node, 20)?;
        many.extend(connects(&node, o.connects)?);
    }
    proxy.clear()?;
    let (m1, m1000) = (median(&mut one), median(&mut many));
    println!(
        "connect median (us): {m1:.1} with 1 service, {m1000:.1} with {} services",
        o.services
    );
    println!(
        "RESULT services full_sync_ms={:.1} endpoint_update_ms={:.2} connect_ratio_1000_vs_1={:.3}",
        median(&mut full),
        median(&mut update),
        m1000 / m1
    );
    Ok(())
}
