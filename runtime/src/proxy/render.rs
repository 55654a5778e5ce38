//! Pure: a [`ServiceTable`] becomes a [`Ruleset`]: a base fragment (hook chains, the verdict
//! maps, node addresses) and one [`Fragment`] per service port (its chains, its endpoint
//! maps, and the elements it adds to the shared maps). The diff in [`super::script`] works
//! fragment by fragment, so an unchanged service port costs one comparison.
//!
//! Most service ports are "simple" (no affinity, no Local policy on external traffic): they
//! own only elements, of `@eps-<proto>` (`daddr . dport . index : endpoint . port`) and the
//! verdict maps, which jump to the chains shared per endpoint count, `spread-<proto>-<N>`
//! and `ext-spread-<proto>-<N>` (external traffic, masqueraded), kept in the base fragment.
//! The others have chains named from the port key `namespace/name/protocol/port`:
//! `svc-<key>` with its endpoint map `eps-<key>`, `ext-<key>` and `leps-<key>` (the local
//! endpoints under `externalTrafficPolicy: Local`), and with `ClientIP` affinity
//! `ep-<key>/<ip>` and `aff-<key>/<ip>/<timeout>` per endpoint (the timeout is in the name,
//! so a set's definition never changes under the same name).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::base::base;
use super::{port_key, NodeConfig, Protocol, Service, ServicePort, ServiceType, TrafficPolicy};

/// One chain: its hook declaration (base chains only) and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// `type nat hook prerouting priority dstnat ; policy accept ;` for base chains.
    pub hook: Option<String>,
    /// The rules, in order.
    pub rules: Vec<String>,
}

/// A set or map declaration: `("map", "{ type ... ; }")`.
pub type SetDecl = (&'static str, String);

/// Objects that appear and disappear together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, SetDecl>,
    /// Elements by (set, key), with their value (empty for a plain set).
    pub elements: BTreeMap<(String, String), String>,
    /// What it needs of the base: local endpoints that may hairpin, and the shared spread
    /// chains it jumps to (protocol, endpoint count, external).
    pub needs: Needs,
}

/// What a port fragment needs of the base fragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needs {
    /// Local endpoints it sends to (each gets a `hairpin` element).
    pub hairpin: BTreeSet<Ipv4Addr>,
    /// Shared chains it jumps to: (protocol, endpoint count, external).
    pub spreads: BTreeSet<(Protocol, usize, bool)>,
}

/// A whole table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// What every table has.
    pub base: Fragment,
    /// One fragment per service port key, shared with the previous ruleset when its
    /// Service did not change.
    pub ports: BTreeMap<String, Arc<Fragment>>,
}

/// What the previous sync applied, for [`render_reusing`].
pub struct Previous<'a> {
    /// Its node facts.
    pub node: &'a NodeConfig,
    /// Its Services (moved into the result when unchanged).
    pub services: BTreeMap<String, Service>,
    /// Its rules.
    pub rules: &'a Ruleset,
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

/// The table for `services` on `node`, masquerading with `mark`.
pub fn render(node: &NodeConfig, services: &BTreeMap<String, Service>, mark: u32) -> Ruleset {
    render_reusing(node, services, mark, None).0
}

/// Like [`render`], but the fragments of every Service equal to the previous sync's are
/// taken from `prev` (shared, not rebuilt), so a sync costs what changed plus one comparison
/// per Service. Also returns the Services to remember for the next sync.
pub fn render_reusing(
    node: &NodeConfig,
    services: &BTreeMap<String, Service>,
    mark: u32,
    prev: Option<Previous<'_>>,
) -> (Ruleset, BTreeMap<String, Service>) {
    let mut rs = Ruleset {
        base: base(node, mark),
        ports: BTreeMap::new(),
    };
    let (mut old_services, old_rules) = match prev {
        Some(p) if p.node == node => (p.services, Some(p.rules)),
        _ => (BTreeMap::new(), None),
    };
    let mut kept = BTreeMap::new();
    for (key, svc) in services {
        let reused = old_rules
            .filter(|_| old_services.get(key) == Some(svc))
            .and_then(|old| {
                svc.ports
                    .iter()
                    .map(|p| {
                        let pk = port_key(key, p);
                        old.ports.get(&pk).map(|f| (pk, f.clone()))
                    })
                    .collect::<Option<Vec<_>>>()
            });
        match reused {
            Some(frags) => {
                rs.ports.extend(frags);
                if let Some(s) = old_services.remove(key) {
                    kept.insert(key.clone(), s);
                }
            }
            None => {
                for p in &svc.ports {
                    let eps = port_endpoints(svc, p);
                    let frag = port_fragment(node, key, svc, p, &eps);
                    rs.ports.insert(port_key(key, p), Arc::new(frag));
                }
                kept.insert(key.clone(), svc.clone());
            }
        }
    }
    let mut needs = Needs::default();
    for f in rs.ports.values() {
        needs.hairpin.extend(&f.needs.hairpin);
        needs.spreads.extend(&f.needs.spreads);
    }
    for (proto, n, external) in needs.spreads {
        shared_spread(&mut rs.base, node, proto, n, external);
    }
    for ip in needs.hairpin {
        rs.base
            .elements
            .insert(("hairpin".into(), format!("{ip} . {ip}")), String::new());
    }
    (rs, kept)
}

/// The rules that spread over `eps` (non-empty) from chain `chain_name`, with `map` as the
/// endpoint map (no affinity) or per-endpoint chains (affinity).
fn spread(
    f: &mut Fragment,
    key: &str,
    p: &ServicePort,
    affinity: Option<u32>,
    map: &str,
    eps: &[(Ipv4Addr, u16)],
) -> Vec<String> {
    let proto = p.protocol.nft();
    let n = eps.len();
    match affinity {
        None => {
            f.sets.insert(
                map.into(),
                (
                    "map",
                    // The data's protocol must be the rule's own: nft checks it against
                    // `meta l4proto` when it reads the map back from the kernel.
                    format!("{{ typeof numgen random mod 1 : ip daddr . {proto} dport ; }}"),
                ),
            );
            for (i, (ip, port)) in eps.iter().enumerate() {
                f.elements
                    .insert((map.into(), i.to_string()), format!("{ip} . {port}"));
            }
            vec![format!(
                "meta l4proto {proto} dnat ip addr . port to numgen random mod {n} map @{map}"
            )]
        }
        Some(secs) => {
            let mut rules = Vec::new();
            let mut vmap = Vec::new();
            for (i, (ip, port)) in eps.iter().enumerate() {
                let ep = format!("ep-{key}/{}", dashed(*ip));
                let aff = format!("aff-{key}/{}/{secs}", dashed(*ip));
                f.sets.insert(
                    aff.clone(),
                    (
                        "set",
                        format!("{{ type ipv4_addr ; flags dynamic,timeout ; timeout {secs}s ; }}"),
                    ),
                );
                f.chains.insert(
                    ep.clone(),
                    Chain {
                        hook: None,
                        rules: vec![
                            format!("update @{aff} {{ ip saddr }}"),
                            format!("meta l4proto {proto} dnat to {ip}:{port}"),
                        ],
                    },
                );
                rules.push(format!("ip saddr @{aff} goto {ep}"));
                vmap.push(format!("{i} : goto {ep}"));
            }
            rules.push(format!(
                "numgen random mod {n} vmap {{ {} }}",
                vmap.join(", ")
            ));
            rules
        }
    }
}

/// The chains every simple service port with `n` endpoints shares: `spread-<proto>-<n>`
/// DNATs through `@eps-<proto>`, keyed by the packet's own destination and a random index;
/// `ext-spread-<proto>-<n>` first asks for masquerade (external traffic, Cluster policy).
fn shared_spread(f: &mut Fragment, node: &NodeConfig, proto: Protocol, n: usize, external: bool) {
    let p = proto.nft();
    f.chains.insert(
        format!("spread-{p}-{n}"),
        Chain {
            hook: None,
            rules: vec![
                format!("ip saddr != {} jump mark-for-masquerade", node.pod_cidr),
                format!(
                    "meta l4proto {p} dnat ip addr . port to ip daddr . {p} dport . numgen random mod {n} map @eps-{p}"
                ),
            ],
        },
    );
    if external {
        f.chains.insert(
            format!("ext-spread-{p}-{n}"),
            Chain {
                hook: None,
                rules: vec![
                    "jump mark-for-masquerade".into(),
                    format!("goto spread-{p}-{n}"),
                ],
            },
        );
    }
}

/// A service port without affinity and without the Local policy on external traffic: no
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
    let proto = p.protocol.nft();
    let n = eps.len();
    let mut f = Fragment::default();
    let mut dests = Vec::new();
    let lb = svc.service_type == ServiceType::LoadBalancer;
    if let Some(vip) = svc.cluster_ip {
        dests.push((vip, p.port));
        let (map, verdict) = if n > 0 {
            ("service-ips", format!("goto spread-{proto}-{n}"))
        } else {
            ("no-endpoint-services", "goto reject-chain".into())
        };
        f.elements.insert(
            (map.into(), format!("{vip} . {proto} . {}", p.port)),
            verdict,
        );
    }
    if external {
        let verdict = if n > 0 {
            format!("goto ext-spread-{proto}-{n}")
        } else {
            "goto reject-chain".into()
        };
        let (ips_map, ports_map) = if n > 0 {
            ("service-ips", "service-nodeports")
        } else {
            ("no-endpoint-services", "no-endpoint-nodeports")
        };
        if let Some(np) = p.node_port {
            f.elements.insert(
                (ports_map.into(), format!("{proto} . {np}")),
                verdict.clone(),
            );
            dests.extend(node.addresses.iter().map(|a| (*a, np)));
        }
        if lb {
            for a in &node.addresses {
                f.elements.insert(
                    (ips_map.into(), format!("{a} . {proto} . {}", p.port)),
                    verdict.clone(),
                );
                dests.push((*a, p.port));
            }
        }
    }
    if n > 0 {
        f.needs.spreads.insert((p.protocol, n, external));
        if external {
            f.needs.spreads.insert((p.protocol, n, false));
        }
        for (daddr, dport) in dests {
            for (i, (ip, port)) in eps.iter().enumerate() {
                f.elements.insert(
                    (format!("eps-{proto}"), format!("{daddr} . {dport} . {i}")),
                    format!("{ip} . {port}"),
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
    let key = port_key(svc_key, p);
    let proto = p.protocol.nft();
    let mut f = Fragment::default();
    let svc_chain = format!("svc-{key}");
    let ext_chain = format!("ext-{key}");
    let reject = "goto reject-chain".to_string();
    let has_eps = !eps.cluster.is_empty();
    let lb = svc.service_type == ServiceType::LoadBalancer;
    let external = svc.service_type != ServiceType::ClusterIp && (p.node_port.is_some() || lb);
    if svc.cluster_ip.is_none() && !external {
        // Headless: DNS only.
        return f;
    }
    let local_external = external && svc.external_traffic_policy == TrafficPolicy::Local;
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
    if svc.affinity_timeout.is_none() && !local_external {
        let mut f = simple_fragment(node, svc, p, &eps.cluster, external);
        f.needs.hairpin = hairpin;
        return f;
    }
    f.needs.hairpin = hairpin;
    if has_eps {
        let mut rules = vec![format!(
            "ip saddr != {} jump mark-for-masquerade",
            node.pod_cidr
        )];
        rules.extend(spread(
            &mut f,
            &key,
            p,
            svc.affinity_timeout,
            &format!("eps-{key}"),
            &eps.cluster,
        ));
        f.chains
            .insert(svc_chain.clone(), Chain { hook: None, rules });
    }
    if let Some(vip) = svc.cluster_ip {
        let (map, verdict) = if has_eps {
            ("service-ips", format!("goto {svc_chain}"))
        } else {
            ("no-endpoint-services", reject.clone())
        };
        f.elements.insert(
            (map.into(), format!("{vip} . {proto} . {}", p.port)),
            verdict,
        );
    }
    if !external {
        return f;
    }
    if has_eps {
        let rules = match svc.external_traffic_policy {
            TrafficPolicy::Cluster => vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {svc_chain}"),
            ],
            TrafficPolicy::Local => {
                let mut r = vec![
                    // The node itself and its pods are not external clients: they use
                    // every endpoint, as for the ClusterIP.
                    "fib saddr type local jump mark-for-masquerade".to_string(),
                    format!("fib saddr type local goto {svc_chain}"),
                    format!("ip saddr {} goto {svc_chain}", node.pod_cidr),
                ];
                if eps.local.is_empty() {
                    r.push("drop".into());
                } else {
                    r.extend(spread(
                        &mut f,
                        &key,
                        p,
                        svc.affinity_timeout,
                        &format!("leps-{key}"),
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
            "service-ips",
            "service-nodeports",
            format!("goto {ext_chain}"),
        )
    } else {
        ("no-endpoint-services", "no-endpoint-nodeports", reject)
    };
    if let Some(np) = p.node_port {
        f.elements.insert(
            (ports_map.into(), format!("{proto} . {np}")),
            verdict.clone(),
        );
    }
    if lb {
        for a in &node.addresses {
            f.elements.insert(
                (ips_map.into(), format!("{a} . {proto} . {}", p.port)),
                verdict.clone(),
            );
        }
    }
    f
}
