//! Pure: a [`ServiceTable`] becomes a [`Ruleset`]: a base fragment (hook chains, the verdict
//! maps, node addresses, and the shared chains and hairpin elements the ports need) and one
//! [`Fragment`] per service port (its chains, its endpoint maps, and the elements it adds to
//! the shared maps). The diff in [`super::script`] works fragment by fragment, so an
//! unchanged service port costs one comparison.
//!
//! Most service ports are "simple" (no affinity, no Local traffic policy): they
//! own only elements, of `@eps-<proto>` (`daddr . dport . index : endpoint . port`) and the
//! verdict maps, which jump to the chains shared per endpoint count, `spread-<proto>-<N>`
//! and `ext-spread-<proto>-<N>` (external traffic, masqueraded), kept in the base fragment.
//! The others have chains named from the port key `namespace/name/protocol/port`:
//! `svc-<key>` with its endpoint map `eps-<key>`, `ext-<key>` and `leps-<key>` (the local
//! endpoints under `externalTrafficPolicy: Local`), `int-<key>` and `ieps-<key>` (the ClusterIP
//! under `internalTrafficPolicy: Local`: this node's endpoints only), and with `ClientIP` affinity
//! `ep-<key>/<ip>` and `aff-<key>/<ip>/<timeout>` per endpoint (the timeout is in the name,
//! so a set's definition never changes under the same name).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, LazyLock};

use super::base::{base, names};
use super::nft::{Key, Name, Rule, SetDecl, Value, Verdict};
use super::{port_key, NodeConfig, Protocol, Service, ServicePort, ServiceType, TrafficPolicy};

pub use super::nft::Hook;

/// One chain: its hook (base chains only) and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// The hook of a base chain.
    pub hook: Option<Hook>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// Objects that appear and disappear together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    /// Chains by name.
    pub chains: BTreeMap<Name, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<Name, SetDecl>,
    /// Elements by (set, key), with their value.
    pub elements: BTreeMap<(Name, Key), Value>,
    /// What it needs of the base: local endpoints that may hairpin, and the shared spread
    /// chains it jumps to.
    pub needs: Needs,
}

/// A chain shared by the simple service ports with the same protocol and endpoint count:
/// `spread-<proto>-<n>`, or `ext-spread-<proto>-<n>` (external traffic, which jumps to the
/// former).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spread {
    /// The protocol.
    pub proto: Protocol,
    /// The endpoint count.
    pub n: usize,
    /// The `ext-` chain.
    pub external: bool,
}

/// What a port fragment needs of the base fragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needs {
    /// Local endpoints it sends to (each gets a `hairpin` element).
    pub hairpin: BTreeSet<Ipv4Addr>,
    /// Shared chains it jumps to.
    pub spreads: BTreeSet<Spread>,
}

/// A whole table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// What every table has, plus the shared chains and hairpin elements the ports need.
    pub base: Fragment,
    /// One fragment per service port key.
    pub ports: BTreeMap<String, Arc<Fragment>>,
}

/// The endpoints one service port uses, each with its target port, sorted by address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortEndpoints {
    /// For ClusterIP traffic (and external traffic under the Cluster policy).
    pub cluster: Vec<(Ipv4Addr, u16)>,
    /// This node's endpoints, for external traffic under the Local policy.
    pub local: Vec<(Ipv4Addr, u16)>,
}

/// Which endpoints serve `port`: those with a target port for it that are ready and not
/// terminating; if there are none, the ready terminating ones (Kubernetes' fallback); with
/// `publishNotReadyAddresses`, all of them. The local list applies the same rule to this
/// node's endpoints alone.
pub fn port_endpoints(svc: &Service, port: &ServicePort) -> PortEndpoints {
    let pick = |local_only: bool| -> Vec<(Ipv4Addr, u16)> {
        let with_port: Vec<_> = svc
            .endpoints
            .iter()
            .filter(|e| !local_only || e.local)
            .filter_map(|e| e.ports.get(&port.name).map(|p| (e, *p)))
            .collect();
        let chosen: BTreeSet<(Ipv4Addr, u16)> = if svc.publish_not_ready {
            with_port.iter().map(|(e, p)| (e.ip, *p)).collect()
        } else {
            let ready: BTreeSet<_> = with_port
                .iter()
                .filter(|(e, _)| e.ready && !e.terminating)
                .map(|(e, p)| (e.ip, *p))
                .collect();
            if ready.is_empty() {
                with_port
                    .iter()
                    .filter(|(e, _)| e.ready && e.terminating)
                    .map(|(e, p)| (e.ip, *p))
                    .collect()
            } else {
                ready
            }
        };
        chosen.into_iter().collect()
    };
    PortEndpoints {
        cluster: pick(false),
        local: pick(true),
    }
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn name(s: String) -> Name {
    Name::from(s)
}

/// The table for `services` on `node`, masquerading with `mark`.
pub fn render(node: &NodeConfig, services: &BTreeMap<String, Service>, mark: u32) -> Ruleset {
    let mut rs = Ruleset {
        base: base(node, mark),
        ports: BTreeMap::new(),
    };
    let mut needs = Needs::default();
    for (key, svc) in services {
        for (pk, frag) in service_fragments(node, key, svc) {
            needs.hairpin.extend(&frag.needs.hairpin);
            needs.spreads.extend(&frag.needs.spreads);
            rs.ports.insert(pk, frag);
        }
    }
    for s in needs.spreads {
        shared_spread(&mut rs.base, node, s);
    }
    for ip in needs.hairpin {
        hairpin(&mut rs.base, ip);
    }
    rs
}

/// The fragments of one Service, by port key.
pub fn service_fragments(
    node: &NodeConfig,
    key: &str,
    svc: &Service,
) -> Vec<(String, Arc<Fragment>)> {
    svc.ports
        .iter()
        .map(|p| {
            let eps = port_endpoints(svc, p);
            (
                port_key(key, p),
                Arc::new(port_fragment(node, key, svc, p, &eps)),
            )
        })
        .collect()
}

/// The `hairpin` element of local endpoint `ip`, added to `f`.
pub fn hairpin(f: &mut Fragment, ip: Ipv4Addr) {
    f.elements.insert(
        (names().hairpin.clone(), Key::AddrPair(ip, ip)),
        Value::None,
    );
}

static SPREAD_NAMES: LazyLock<BTreeMap<Spread, Name>> = LazyLock::new(|| {
    // The common endpoint counts, named once: most Services share them.
    let mut m = BTreeMap::new();
    for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        for n in 1..=64 {
            for external in [false, true] {
                let s = Spread { proto, n, external };
                m.insert(s, name(spread_name(s)));
            }
        }
    }
    m
});

fn spread_name(s: Spread) -> String {
    let ext = if s.external { "ext-" } else { "" };
    format!("{ext}spread-{}-{}", s.proto.nft(), s.n)
}

/// The name of a shared spread chain.
pub fn spread_chain(s: Spread) -> Name {
    SPREAD_NAMES
        .get(&s)
        .cloned()
        .unwrap_or_else(|| name(spread_name(s)))
}

/// The chain shared by every simple service port with the same protocol and endpoint count,
/// added to `f`: `spread-<proto>-<n>` DNATs through `@eps-<proto>`, keyed by the packet's own
/// destination and a random index; `ext-spread-<proto>-<n>` first asks for masquerade
/// (external traffic, Cluster policy).
pub fn shared_spread(f: &mut Fragment, node: &NodeConfig, s: Spread) {
    let nm = names();
    let rules = if s.external {
        vec![
            Rule::Verdict(Verdict::Jump(nm.mark_for_masquerade.clone())),
            Rule::Verdict(Verdict::Goto(spread_chain(Spread {
                external: false,
                ..s
            }))),
        ]
    } else {
        vec![
            Rule::Saddr {
                cidr: node.pod_cidr,
                negate: true,
                verdict: Verdict::Jump(nm.mark_for_masquerade.clone()),
            },
            Rule::DnatByDest {
                proto: s.proto,
                n: s.n as u32,
                map: nm.eps(s.proto).clone(),
            },
        ]
    };
    f.chains
        .insert(spread_chain(s), Chain { hook: None, rules });
}

/// The rules that spread over `eps` (non-empty), with `map` as the endpoint map (no
/// affinity) or per-endpoint chains (affinity).
fn spread(
    f: &mut Fragment,
    key: &str,
    p: &ServicePort,
    affinity: Option<u32>,
    map: Name,
    eps: &[(Ipv4Addr, u16)],
) -> Vec<Rule> {
    let n = eps.len();
    match affinity {
        None => {
            f.sets
                .insert(map.clone(), SetDecl::EndpointsByIndex(p.protocol));
            for (i, (ip, port)) in eps.iter().enumerate() {
                f.elements.insert(
                    (map.clone(), Key::Index(i as u32)),
                    Value::Endpoint(*ip, *port),
                );
            }
            vec![Rule::DnatByIndex {
                proto: p.protocol,
                n: n as u32,
                map,
            }]
        }
        Some(secs) => {
            let mut rules = Vec::new();
            let mut vmap = Vec::new();
            for (ip, port) in eps {
                let ep = name(format!("ep-{key}/{}", dashed(*ip)));
                let aff = name(format!("aff-{key}/{}/{secs}", dashed(*ip)));
                f.sets.insert(aff.clone(), SetDecl::Affinity(secs));
                f.chains.insert(
                    ep.clone(),
                    Chain {
                        hook: None,
                        rules: vec![
                            Rule::UpdateSaddr(aff.clone()),
                            Rule::DnatTo {
                                proto: p.protocol,
                                addr: *ip,
                                port: *port,
                            },
                        ],
                    },
                );
                rules.push(Rule::SaddrIn(aff, Verdict::Goto(ep.clone())));
                vmap.push(Verdict::Goto(ep));
            }
            rules.push(Rule::NumgenVmap(vmap));
            rules
        }
    }
}

/// A service port without affinity and without a Local traffic policy: no
/// chain of its own, only elements. Its endpoints go into `@eps-<proto>` under each
/// destination it answers on (ClusterIP and port, node address and NodePort, node address
/// and LoadBalancer port), and the verdict maps send it to the shared chains for its
/// endpoint count.
fn simple_fragment(
    node: &NodeConfig,
    svc: &Service,
    p: &ServicePort,
    eps: &[(Ipv4Addr, u16)],
    external: bool,
) -> Fragment {
    let nm = names();
    let proto = p.protocol;
    let n = eps.len();
    let mut f = Fragment::default();
    let mut dests = Vec::new();
    let lb = svc.service_type == ServiceType::LoadBalancer;
    let internal = Spread {
        proto,
        n,
        external: false,
    };
    let ext = Spread {
        external: true,
        ..internal
    };
    if let Some(vip) = svc.cluster_ip {
        dests.push((vip, p.port));
        let (map, verdict) = if n > 0 {
            (&nm.service_ips, Verdict::Goto(spread_chain(internal)))
        } else {
            (
                &nm.no_endpoint_services,
                Verdict::Goto(nm.reject_chain.clone()),
            )
        };
        f.elements.insert(
            (map.clone(), Key::Dest(vip, proto, p.port)),
            Value::Verdict(verdict),
        );
    }
    if external {
        let (ips_map, ports_map, verdict) = if n > 0 {
            (
                &nm.service_ips,
                &nm.service_nodeports,
                Verdict::Goto(spread_chain(ext)),
            )
        } else {
            (
                &nm.no_endpoint_services,
                &nm.no_endpoint_nodeports,
                Verdict::Goto(nm.reject_chain.clone()),
            )
        };
        if let Some(np) = p.node_port {
            f.elements.insert(
                (ports_map.clone(), Key::Port(proto, np)),
                Value::Verdict(verdict.clone()),
            );
            dests.extend(node.addresses.iter().map(|a| (*a, np)));
        }
        if lb {
            for a in &node.addresses {
                f.elements.insert(
                    (ips_map.clone(), Key::Dest(*a, proto, p.port)),
                    Value::Verdict(verdict.clone()),
                );
                dests.push((*a, p.port));
            }
        }
    }
    if n > 0 {
        f.needs.spreads.insert(internal);
        if external {
            f.needs.spreads.insert(ext);
        }
        let map = nm.eps(proto);
        for (daddr, dport) in dests {
            for (i, (ip, port)) in eps.iter().enumerate() {
                f.elements.insert(
                    (map.clone(), Key::DestIndex(daddr, dport, i as u32)),
                    Value::Endpoint(*ip, *port),
                );
            }
        }
    }
    f
}

fn port_fragment(
    node: &NodeConfig,
    svc_key: &str,
    svc: &Service,
    p: &ServicePort,
    eps: &PortEndpoints,
) -> Fragment {
    let nm = names();
    let key = port_key(svc_key, p);
    let proto = p.protocol;
    let mut f = Fragment::default();
    let has_eps = !eps.cluster.is_empty();
    let lb = svc.service_type == ServiceType::LoadBalancer;
    let external = svc.service_type != ServiceType::ClusterIp && (p.node_port.is_some() || lb);
    if svc.cluster_ip.is_none() && !external {
        // Headless: DNS only.
        return f;
    }
    let local_external = external && svc.external_traffic_policy == TrafficPolicy::Local;
    let local_internal =
        svc.cluster_ip.is_some() && svc.internal_traffic_policy == TrafficPolicy::Local;
    let locals: BTreeSet<Ipv4Addr> = svc
        .endpoints
        .iter()
        .filter(|e| e.local)
        .map(|e| e.ip)
        .collect();
    let hairpin: BTreeSet<Ipv4Addr> = eps
        .cluster
        .iter()
        .chain(&eps.local)
        .map(|(ip, _)| *ip)
        .filter(|ip| locals.contains(ip))
        .collect();
    if svc.affinity_timeout.is_none() && !local_external && !local_internal {
        let mut f = simple_fragment(node, svc, p, &eps.cluster, external);
        f.needs.hairpin = hairpin;
        return f;
    }
    f.needs.hairpin = hairpin;
    let svc_chain = name(format!("svc-{key}"));
    let ext_chain = name(format!("ext-{key}"));
    let reject = Verdict::Goto(nm.reject_chain.clone());
    let masquerade = || Verdict::Jump(nm.mark_for_masquerade.clone());
    // An internal chain: traffic from outside the pod network is masqueraded, then spread
    // over `eps` through `map`.
    let internal = |f: &mut Fragment, chain: &Name, map: String, eps: &[(Ipv4Addr, u16)]| {
        let mut rules = vec![Rule::Saddr {
            cidr: node.pod_cidr,
            negate: true,
            verdict: masquerade(),
        }];
        rules.extend(spread(f, &key, p, svc.affinity_timeout, name(map), eps));
        f.chains.insert(chain.clone(), Chain { hook: None, rules });
    };
    if has_eps {
        internal(&mut f, &svc_chain, format!("eps-{key}"), &eps.cluster);
    }
    if let Some(vip) = svc.cluster_ip {
        let (map, verdict) = if !has_eps {
            (&nm.no_endpoint_services, reject.clone())
        } else if !local_internal {
            (&nm.service_ips, Verdict::Goto(svc_chain.clone()))
        } else if eps.local.is_empty() {
            // `internalTrafficPolicy: Local` without an endpoint on this node: dropped, as
            // kube-proxy does (there are endpoints, just none here).
            (&nm.no_endpoint_services, Verdict::Drop)
        } else {
            let int_chain = name(format!("int-{key}"));
            internal(&mut f, &int_chain, format!("ieps-{key}"), &eps.local);
            (&nm.service_ips, Verdict::Goto(int_chain))
        };
        f.elements.insert(
            (map.clone(), Key::Dest(vip, proto, p.port)),
            Value::Verdict(verdict),
        );
    }
    if !external {
        return f;
    }
    if has_eps {
        let rules = match svc.external_traffic_policy {
            TrafficPolicy::Cluster => vec![
                Rule::Verdict(masquerade()),
                Rule::Verdict(Verdict::Goto(svc_chain.clone())),
            ],
            TrafficPolicy::Local => {
                let mut r = vec![
                    // The node itself and its pods are not external clients: they use
                    // every endpoint, as for the ClusterIP.
                    Rule::FibSaddrLocal(masquerade()),
                    Rule::FibSaddrLocal(Verdict::Goto(svc_chain.clone())),
                    Rule::Saddr {
                        cidr: node.pod_cidr,
                        negate: false,
                        verdict: Verdict::Goto(svc_chain.clone()),
                    },
                ];
                if eps.local.is_empty() {
                    r.push(Rule::Verdict(Verdict::Drop));
                } else {
                    r.extend(spread(
                        &mut f,
                        &key,
                        p,
                        svc.affinity_timeout,
                        name(format!("leps-{key}")),
                        &eps.local,
                    ));
                }
                r
            }
        };
        f.chains
            .insert(ext_chain.clone(), Chain { hook: None, rules });
    }
    let (ips_map, ports_map, verdict) = if has_eps {
        (
            &nm.service_ips,
            &nm.service_nodeports,
            Verdict::Goto(ext_chain),
        )
    } else {
        (&nm.no_endpoint_services, &nm.no_endpoint_nodeports, reject)
    };
    if let Some(np) = p.node_port {
        f.elements.insert(
            (ports_map.clone(), Key::Port(proto, np)),
            Value::Verdict(verdict.clone()),
        );
    }
    if lb {
        for a in &node.addresses {
            f.elements.insert(
                (ips_map.clone(), Key::Dest(*a, proto, p.port)),
                Value::Verdict(verdict.clone()),
            );
        }
    }
    f
}
