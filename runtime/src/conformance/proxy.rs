//! The Service proxy suite: one set of cases for every [`ServiceProxy`], observed only through
//! TCP connections: who answered, which client address it saw, and whether a connection was
//! refused at once. The Linux harness sends real packets between network namespaces; the
//! fake's harness asks [`crate::fake::FakeProxy::resolve`].
//!
//! An implementation joins by providing a [`ProxyHarness`] and invoking
//! [`proxy_conformance_suite!`](crate::proxy_conformance_suite).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::CaseResult;
use crate::proxy::testnet::Connect;
use crate::proxy::{
    Endpoint, NodeConfig, Protocol, Service, ServicePort, ServiceTable, ServiceType, TrafficPolicy,
};
use crate::traits::ServiceProxy;

/// Who opens a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A pod on this node (one of [`ProxyTopology::endpoints`] or the client pod).
    Pod(Ipv4Addr),
    /// The node itself.
    Node,
    /// A host outside the node, reaching it on its address.
    External,
}

/// The addresses a harness offers.
#[derive(Debug, Clone)]
pub struct ProxyTopology {
    /// The node: its address(es), pod CIDR and Service CIDR.
    pub node: NodeConfig,
    /// The source address endpoints see for masqueraded traffic.
    pub gateway: Ipv4Addr,
    /// Pods on this node that can serve (at least 4).
    pub endpoints: Vec<Ipv4Addr>,
    /// A pod on another node that can serve (reached by routing).
    pub remote_endpoint: Ipv4Addr,
    /// A pod on this node that only connects.
    pub pod_client: Ipv4Addr,
    /// The external host's address.
    pub external_client: Ipv4Addr,
}

/// What an implementation provides to the suite.
pub trait ProxyHarness {
    /// The proxy under test.
    fn proxy(&self) -> &dyn ServiceProxy;
    /// The addresses.
    fn topology(&self) -> &ProxyTopology;
    /// Start a server at `at` (an endpoint address) answering `"<at> <peer>"`.
    fn serve(&mut self, at: SocketAddrV4) -> Result<(), String>;
    /// Open one TCP connection.
    fn connect(&self, from: Client, to: SocketAddrV4) -> Connect;
}

/// One proxy case.
pub type ProxyCase = fn(&mut dyn ProxyHarness) -> CaseResult;

/// Every proxy case, by name.
pub const PROXY_CASES: [(&str, ProxyCase); 8] = [
    (
        "proxy_spreads_over_ready_endpoints",
        proxy_spreads_over_ready_endpoints,
    ),
    (
        "proxy_rejects_without_endpoints",
        proxy_rejects_without_endpoints,
    ),
    (
        "proxy_node_ports_and_policies",
        proxy_node_ports_and_policies,
    ),
    (
        "proxy_internal_traffic_policy",
        proxy_internal_traffic_policy,
    ),
    ("proxy_hairpin", proxy_hairpin),
    ("proxy_session_affinity", proxy_session_affinity),
    ("proxy_incremental_updates", proxy_incremental_updates),
    ("proxy_refuses_invalid_tables", proxy_refuses_invalid_tables),
];

/// Run one case on a fresh harness; panic with its message on failure.
pub fn run_proxy_case<H: ProxyHarness>(mut h: H, case: ProxyCase) {
    let res = case(&mut h);
    let cleared = h.proxy().clear();
    if let Err(e) = res {
        panic!("proxy conformance case failed: {e}");
    }
    cleared.expect("clear after the case");
}

/// Generate one `#[test]` per proxy case. `$make` returns `Option<impl ProxyHarness>`;
/// `None` means skipped (allowed only when the environment says so).
#[macro_export]
macro_rules! proxy_conformance_suite {
    ($make:expr) => {
        $crate::proxy_conformance_suite!(@case $make, proxy_spreads_over_ready_endpoints);
        $crate::proxy_conformance_suite!(@case $make, proxy_rejects_without_endpoints);
        $crate::proxy_conformance_suite!(@case $make, proxy_node_ports_and_policies);
        $crate::proxy_conformance_suite!(@case $make, proxy_internal_traffic_policy);
        $crate::proxy_conformance_suite!(@case $make, proxy_hairpin);
        $crate::proxy_conformance_suite!(@case $make, proxy_session_affinity);
        $crate::proxy_conformance_suite!(@case $make, proxy_incremental_updates);
        $crate::proxy_conformance_suite!(@case $make, proxy_refuses_invalid_tables);
    };
    (@case $make:expr, $name:ident) => {
        #[test]
        fn $name() {
            if let Some(h) = $make {
                $crate::conformance::run_proxy_case(h, $crate::conformance::$name);
            }
        }
    };
}

const TARGET: u16 = 8080;
const PORT: u16 = 80;
const NODE_PORT: u16 = 30080;

fn vip(t: &ProxyTopology, n: u8) -> Result<Ipv4Addr, String> {
    let c = t
        .node
        .service_cidr
        .ok_or("the harness has no service CIDR")?;
    c.hosts()
        .nth(usize::from(n) + 10)
        .ok_or_else(|| format!("service CIDR {c} too small"))
}

fn endpoint(ip: Ipv4Addr, ready: bool, local: bool) -> Endpoint {
    Endpoint {
        ip,
        ready,
        terminating: false,
        local,
        ports: BTreeMap::from([("http".to_string(), TARGET)]),
    }
}

fn service(vip: Option<Ipv4Addr>, endpoints: Vec<Endpoint>) -> Service {
    Service {
        cluster_ip: vip,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: PORT,
            node_port: None,
        }],
        endpoints,
        ..Service::default()
    }
}

fn table(t: &ProxyTopology, services: Vec<(&str, Service)>) -> ServiceTable {
    ServiceTable {
        node: t.node.clone(),
        services: services
            .into_iter()
            .map(|(k, s)| (k.to_string(), s))
            .collect(),
    }
}

fn sync(h: &dyn ProxyHarness, t: &ServiceTable) -> Result<crate::proxy::SyncReport, String> {
    h.proxy().sync(t).map_err(|e| format!("sync: {e}"))
}

fn serve_all(h: &mut dyn ProxyHarness, ips: &[Ipv4Addr]) -> CaseResult {
    for ip in ips {
        h.serve(SocketAddrV4::new(*ip, TARGET))?;
    }
    Ok(())
}

/// `n` connections from `from` to `to`: the servers that answered (with how often) and
/// the peers they saw; anything but an answer is an error.
fn answers(
    h: &dyn ProxyHarness,
    from: Client,
    to: SocketAddrV4,
    n: usize,
) -> Result<(BTreeMap<Ipv4Addr, usize>, BTreeSet<Ipv4Addr>), String> {
    let mut servers = BTreeMap::new();
    let mut peers = BTreeSet::new();
    for i in 0..n {
        match h.connect(from, to) {
            Connect::Answered { server, peer } => {
                *servers.entry(*server.ip()).or_insert(0) += 1;
                peers.insert(peer);
            }
            other => return Err(format!("connection {i} from {from:?} to {to}: {other:?}")),
        }
    }
    Ok((servers, peers))
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> CaseResult {
    if ok {
        Ok(())
    } else {
        Err(msg())
    }
}

fn refused_at_once(h: &dyn ProxyHarness, from: Client, to: SocketAddrV4) -> CaseResult {
    let start = Instant::now();
    let got = h.connect(from, to);
    let took = start.elapsed();
    check(
        got == Connect::Refused && took < Duration::from_secs(1),
        || format!("{from:?} -> {to}: want refused at once, got {got:?} after {took:?}"),
    )
}

/// A ClusterIP spreads over every ready endpoint and never reaches a not-ready one; a pod's
/// address is kept, the node's own connections are masqueraded.
pub fn proxy_spreads_over_ready_endpoints(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    serve_all(h, &t.endpoints[..4])?;
    let v = vip(&t, 1)?;
    let eps = vec![
        endpoint(t.endpoints[0], true, true),
        endpoint(t.endpoints[1], true, true),
        endpoint(t.endpoints[2], true, true),
        endpoint(t.endpoints[3], false, true),
    ];
    let r = sync(h, &table(&t, vec![("default/web", service(Some(v), eps))]))?;
    check(r.rebuilt && r.changed == ["default/web/tcp/80"], || {
        format!("first sync reported {r:?}")
    })?;
    let to = SocketAddrV4::new(v, PORT);
    let (servers, peers) = answers(h, Client::Pod(t.pod_client), to, 60)?;
    let want: BTreeSet<_> = t.endpoints[..3].iter().copied().collect();
    check(
        servers.keys().copied().collect::<BTreeSet<_>>() == want,
        || {
            format!("60 connections reached {servers:?}, want each of {want:?} and never the not-ready one")
        },
    )?;
    check(peers == BTreeSet::from([t.pod_client]), || {
        format!(
            "endpoints saw {peers:?}, want the pod's own address {}",
            t.pod_client
        )
    })?;
    let (servers, peers) = answers(h, Client::Node, to, 30)?;
    check(servers.keys().all(|s| want.contains(s)), || {
        format!("the node reached {servers:?}")
    })?;
    check(peers == BTreeSet::from([t.gateway]), || {
        format!(
            "the node's connections arrived from {peers:?}, want masquerade to {}",
            t.gateway
        )
    })
}

/// A ClusterIP without ready endpoints refuses at once; `publishNotReadyAddresses` serves
/// the not-ready ones; an unknown port of the Service CIDR is refused too.
pub fn proxy_rejects_without_endpoints(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    serve_all(h, &t.endpoints[..1])?;
    let v = vip(&t, 2)?;
    let mut s = service(Some(v), vec![endpoint(t.endpoints[0], false, true)]);
    sync(h, &table(&t, vec![("default/idle", s.clone())]))?;
    let to = SocketAddrV4::new(v, PORT);
    refused_at_once(h, Client::Pod(t.pod_client), to)?;
    refused_at_once(h, Client::Node, to)?;
    refused_at_once(h, Client::Pod(t.pod_client), SocketAddrV4::new(v, PORT + 1))?;
    s.publish_not_ready = true;
    sync(h, &table(&t, vec![("default/idle", s)]))?;
    let (servers, _) = answers(h, Client::Pod(t.pod_client), to, 3)?;
    check(servers.keys().eq([&t.endpoints[0]]), || {
        format!("with publishNotReadyAddresses reached {servers:?}")
    })
}

/// NodePort and LoadBalancer ports answer on the node address; the Cluster policy spreads
/// over every endpoint and masquerades, the Local policy uses this node's endpoints only and
/// keeps the client's address.
pub fn proxy_node_ports_and_policies(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    let node_ip = *t.node.addresses.first().ok_or("no node address")?;
    serve_all(h, &[t.endpoints[0], t.endpoints[1], t.remote_endpoint])?;
    let mut s = service(
        Some(vip(&t, 3)?),
        vec![
            endpoint(t.endpoints[0], true, true),
            endpoint(t.endpoints[1], true, true),
            endpoint(t.remote_endpoint, true, false),
        ],
    );
    s.service_type = ServiceType::LoadBalancer;
    s.ports[0].node_port = Some(NODE_PORT);
    sync(h, &table(&t, vec![("default/lb", s.clone())]))?;
    let all: BTreeSet<_> = [t.endpoints[0], t.endpoints[1], t.remote_endpoint].into();
    for port in [NODE_PORT, PORT] {
        let to = SocketAddrV4::new(node_ip, port);
        let (servers, peers) = answers(h, Client::External, to, 45)?;
        check(
            servers.keys().copied().collect::<BTreeSet<_>>() == all,
            || format!("Cluster policy on {to} reached {servers:?}, want all of {all:?}"),
        )?;
        check(!peers.contains(&t.external_client), || {
            format!("Cluster policy on {to} kept the client address: {peers:?}")
        })?;
        let (servers, _) = answers(h, Client::Node, to, 5)?;
        check(servers.keys().all(|s| all.contains(s)), || {
            format!("the node on {to} reached {servers:?}")
        })?;
    }
    s.external_traffic_policy = TrafficPolicy::Local;
    let r = sync(h, &table(&t, vec![("default/lb", s.clone())]))?;
    check(!r.rebuilt && r.changed == ["default/lb/tcp/80"], || {
        format!("switching the policy reported {r:?}")
    })?;
    let local: BTreeSet<_> = [t.endpoints[0], t.endpoints[1]].into();
    for port in [NODE_PORT, PORT] {
        let to = SocketAddrV4::new(node_ip, port);
        let (servers, peers) = answers(h, Client::External, to, 30)?;
        check(
            servers.keys().copied().collect::<BTreeSet<_>>() == local,
            || format!("Local policy on {to} reached {servers:?}, want only {local:?}"),
        )?;
        check(peers == BTreeSet::from([t.external_client]), || {
            format!(
                "Local policy on {to}: endpoints saw {peers:?}, want the client {}",
                t.external_client
            )
        })?;
    }
    // Without endpoints the NodePort refuses at once.
    s.endpoints.clear();
    sync(h, &table(&t, vec![("default/lb", s)]))?;
    refused_at_once(h, Client::External, SocketAddrV4::new(node_ip, NODE_PORT))
}

/// `internalTrafficPolicy: Local`: the ClusterIP reaches only this node's endpoints, from a
/// pod (whose address is kept) and from the node; with endpoints on other nodes only, its
/// connections are dropped (not refused: the Service has endpoints, just none here).
pub fn proxy_internal_traffic_policy(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    serve_all(h, &[t.endpoints[0], t.endpoints[1], t.remote_endpoint])?;
    let to = SocketAddrV4::new(vip(&t, 9)?, PORT);
    let mut s = service(
        Some(*to.ip()),
        vec![
            endpoint(t.endpoints[0], true, true),
            endpoint(t.endpoints[1], true, true),
            endpoint(t.remote_endpoint, true, false),
        ],
    );
    s.internal_traffic_policy = TrafficPolicy::Local;
    sync(h, &table(&t, vec![("default/near", s.clone())]))?;
    let local: BTreeSet<_> = [t.endpoints[0], t.endpoints[1]].into();
    let (servers, peers) = answers(h, Client::Pod(t.pod_client), to, 30)?;
    check(
        servers.keys().copied().collect::<BTreeSet<_>>() == local,
        || format!("internal Local policy from a pod reached {servers:?}, want only {local:?}"),
    )?;
    check(peers == BTreeSet::from([t.pod_client]), || {
        format!("a pod's address was not kept: {peers:?}")
    })?;
    let (servers, _) = answers(h, Client::Node, to, 10)?;
    check(servers.keys().all(|s| local.contains(s)), || {
        format!("internal Local policy from the node reached {servers:?}")
    })?;
    s.endpoints = vec![endpoint(t.remote_endpoint, true, false)];
    sync(h, &table(&t, vec![("default/near", s.clone())]))?;
    let got = h.connect(Client::Pod(t.pod_client), to);
    check(got == Connect::TimedOut, || {
        format!("no endpoint on this node: want the connection dropped, got {got:?}")
    })?;
    s.internal_traffic_policy = TrafficPolicy::Cluster;
    sync(h, &table(&t, vec![("default/near", s)]))?;
    let (servers, _) = answers(h, Client::Pod(t.pod_client), to, 3)?;
    check(servers.keys().eq([&t.remote_endpoint]), || {
        format!("back under the Cluster policy: reached {servers:?}")
    })
}

/// A pod reaching itself through its Service's ClusterIP is answered (by itself, seeing the
/// masquerade address).
pub fn proxy_hairpin(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    let me = t.endpoints[0];
    serve_all(h, &[me])?;
    let v = vip(&t, 4)?;
    sync(
        h,
        &table(
            &t,
            vec![(
                "default/self",
                service(Some(v), vec![endpoint(me, true, true)]),
            )],
        ),
    )?;
    let (servers, peers) = answers(h, Client::Pod(me), SocketAddrV4::new(v, PORT), 3)?;
    check(servers.keys().eq([&me]), || {
        format!("hairpin reached {servers:?}")
    })?;
    check(peers == BTreeSet::from([t.gateway]), || {
        format!(
            "hairpin connections arrived from {peers:?}, want {}",
            t.gateway
        )
    })
}

/// `sessionAffinity: ClientIP` sends every connection of a client to one endpoint.
pub fn proxy_session_affinity(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    serve_all(h, &t.endpoints[..3])?;
    let v = vip(&t, 5)?;
    let mut s = service(
        Some(v),
        t.endpoints[..3]
            .iter()
            .map(|ip| endpoint(*ip, true, true))
            .collect(),
    );
    s.affinity_timeout = Some(600);
    sync(h, &table(&t, vec![("default/sticky", s)]))?;
    for from in [Client::Pod(t.pod_client), Client::Node] {
        let (servers, _) = answers(h, from, SocketAddrV4::new(v, PORT), 20)?;
        check(servers.len() == 1, || {
            format!("with ClientIP affinity {from:?} reached {servers:?}")
        })?;
    }
    Ok(())
}

/// An endpoint change rewrites only its service port; a removed Service stops answering; a
/// cleared proxy rebuilds on the next sync.
pub fn proxy_incremental_updates(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    serve_all(h, &t.endpoints[..4])?;
    let e = &t.endpoints;
    let (va, vb, vc) = (vip(&t, 6)?, vip(&t, 7)?, vip(&t, 8)?);
    let build = |b_ep: Ipv4Addr, with_c: bool| {
        let mut v = vec![
            (
                "default/a",
                service(Some(va), vec![endpoint(e[0], true, true)]),
            ),
            (
                "default/b",
                service(Some(vb), vec![endpoint(b_ep, true, true)]),
            ),
        ];
        if with_c {
            v.push((
                "default/c",
                service(Some(vc), vec![endpoint(e[3], true, true)]),
            ));
        }
        table(&t, v)
    };
    sync(h, &build(e[1], true))?;
    let only = |to: Ipv4Addr, want: Ipv4Addr| -> CaseResult {
        let (servers, _) = answers(h, Client::Pod(t.pod_client), SocketAddrV4::new(to, PORT), 3)?;
        check(servers.keys().eq([&want]), || {
            format!("{to} reached {servers:?}, want {want}")
        })
    };
    only(vb, e[1])?;
    let r = sync(h, &build(e[2], true))?;
    check(!r.rebuilt && r.changed == ["default/b/tcp/80"], || {
        format!("an endpoint change reported {r:?}")
    })?;
    only(vb, e[2])?;
    only(va, e[0])?;
    let r = sync(h, &build(e[2], false))?;
    check(!r.rebuilt && r.changed == ["default/c/tcp/80"], || {
        format!("removing a service reported {r:?}")
    })?;
    refused_at_once(h, Client::Pod(t.pod_client), SocketAddrV4::new(vc, PORT))?;
    let r = sync(h, &build(e[2], false))?;
    check(r == crate::proxy::SyncReport::default(), || {
        format!("an unchanged sync reported {r:?}")
    })?;
    h.proxy().clear().map_err(|e| format!("clear: {e}"))?;
    let r = sync(h, &build(e[2], false))?;
    check(r.rebuilt, || format!("the sync after clear reported {r:?}"))?;
    only(va, e[0])
}

/// A table with two Services on one ClusterIP port is refused whole, and what was applied
/// before keeps working.
pub fn proxy_refuses_invalid_tables(h: &mut dyn ProxyHarness) -> CaseResult {
    let t = h.topology().clone();
    serve_all(h, &t.endpoints[..1])?;
    let v = vip(&t, 9)?;
    let good = service(Some(v), vec![endpoint(t.endpoints[0], true, true)]);
    sync(h, &table(&t, vec![("default/one", good.clone())]))?;
    let clash = table(
        &t,
        vec![("default/one", good.clone()), ("default/two", good)],
    );
    match h.proxy().sync(&clash) {
        Err(e) if e.to_string().contains("already default/one/tcp/80") => {}
        other => {
            return Err(format!(
                "a duplicate ClusterIP port was not refused: {other:?}"
            ))
        }
    }
    let (servers, _) = answers(h, Client::Pod(t.pod_client), SocketAddrV4::new(v, PORT), 3)?;
    check(servers.keys().eq([&t.endpoints[0]]), || {
        format!("after a refused sync the service reached {servers:?}")
    })
}
