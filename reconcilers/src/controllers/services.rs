//! Services' addresses in the state: ClusterIPs and NodePorts.
//!
//! ClusterIPs: every Service that has one (not headless, not ExternalName) gets the IP it
//! asks for, else a hash-probed one, and keeps it while it exists.
//!
//! NodePorts ([`ClusterState::node_ports`]): NodePort and LoadBalancer Services get one
//! number per `spec.ports` element, in spec order, 0 meaning none. The rules, in order:
//! 1. an explicit `nodePort` is used as written (validation keeps them in the range and
//!    unique across the tree), and wins over a number another port was given before;
//! 2. a port keeps its number while its Service keeps the port: a commit that changes the
//!    Service is matched port by port on (protocol, port) ([`carry_node_ports`], at adoption),
//!    so reordering, renaming or adding other ports moves nothing;
//! 3. a port that needs one (any NodePort port; a LoadBalancer port unless
//!    `allocateLoadBalancerNodePorts: false`) and has none gets a slot hashed from
//!    `namespace/name/protocol/port`, probing upward past every number in use
//!    ([`crate::alloc::node_port`]);
//! 4. a number outside the range in force (the range changed) is given up and reallocated;
//!    a Service that goes, or stops being NodePort or LoadBalancer, frees its numbers, and
//!    so does a LoadBalancer Service that turns `allocateLoadBalancerNodePorts` to false
//!    (Kubernetes keeps such numbers until the object drops them; in kommit the manifest,
//!    which never holds allocated numbers, is the whole truth).
//!
//! Every change is reported as [`IpChange::NodePort`] or [`IpChange::NodePortFreed`], like
//! ClusterIPs' `Service` and `ServiceFreed`.

use crate::alloc;
use crate::state::ClusterState;
use crate::types::{Effects, IpChange};
use kommit_schemas::model::core::Service;
use kommit_schemas::model::pod::Protocol;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// ClusterIPs, then NodePorts.
pub fn reconcile(state: &mut ClusterState, fx: &mut Effects) {
    cluster_ips(state, fx);
    node_ports(state, fx);
}

fn cluster_ips(state: &mut ClusterState, fx: &mut Effects) {
    let gone: Vec<String> = state
        .service_ips
        .keys()
        .filter(|k| {
            state
                .desired
                .services
                .get(*k)
                .is_none_or(|s| !s.spec.has_cluster_ip())
        })
        .cloned()
        .collect();
    for k in gone {
        if let Some(ip) = state.service_ips.remove(&k) {
            fx.ips.push(IpChange::ServiceFreed { service: k, ip });
        }
    }
    let range = state.desired.config.service_cidr;
    let mut used: BTreeSet<Ipv4Addr> = state.service_ips.values().copied().collect();
    // Services asking for a fixed IP go first, so a hashed pick never takes it.
    let mut order: Vec<(&String, Option<Ipv4Addr>)> = state
        .desired
        .services
        .iter()
        .filter(|(k, s)| s.spec.has_cluster_ip() && !state.service_ips.contains_key(*k))
        .map(|(k, s)| {
            (
                k,
                s.spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()),
            )
        })
        .collect();
    order.sort_by_key(|(k, ip)| (ip.is_none(), (*k).clone()));
    let mut new = Vec::new();
    for (k, requested) in order {
        if let Some(ip) = alloc::service_ip(range, k, requested, &used) {
            used.insert(ip);
            new.push((k.clone(), ip));
        }
    }
    for (k, ip) in new {
        fx.ips.push(IpChange::Service {
            service: k.clone(),
            ip,
        });
        state.service_ips.insert(k, ip);
    }
}

/// Realigns the NodePorts of each Service with a new commit's spec, before it replaces the
/// old one: a port of the new spec takes the number of the old port with the same protocol
/// and port number, a new port starts with 0 (none yet). Numbers of ports that went away
/// are freed. Services absent from the new commit are left to [`reconcile`], which frees
/// their numbers.
pub fn carry_node_ports(
    old: &BTreeMap<String, Service>,
    new: &BTreeMap<String, Service>,
    node_ports: &mut BTreeMap<String, Vec<u16>>,
    fx: &mut Effects,
) {
    for (key, numbers) in node_ports.iter_mut() {
        let (Some(before), Some(after)) = (old.get(key), new.get(key)) else {
            continue;
        };
        if before.spec.ports == after.spec.ports {
            continue;
        }
        let by_port: BTreeMap<(Protocol, u16), u16> = before
            .spec
            .ports
            .iter()
            .zip(numbers.iter())
            .map(|(p, n)| ((p.protocol(), p.number()), *n))
            .collect();
        let carried: Vec<u16> = after
            .spec
            .ports
            .iter()
            .map(|p| {
                by_port
                    .get(&(p.protocol(), p.number()))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        for n in numbers.iter() {
            if *n != 0 && !carried.contains(n) {
                fx.ips.push(IpChange::NodePortFreed {
                    service: key.clone(),
                    node_port: *n,
                });
            }
        }
        *numbers = carried;
    }
}

fn node_ports(state: &mut ClusterState, fx: &mut Effects) {
    let services = &state.desired.services;
    let range = state.desired.config.service_node_port_range;
    // Services that lost their need for NodePorts.
    let gone: Vec<String> = state
        .node_ports
        .keys()
        .filter(|k| services.get(*k).is_none_or(|s| !s.spec.is_external()))
        .cloned()
        .collect();
    for k in gone {
        for n in state.node_ports.remove(&k).into_iter().flatten() {
            if n != 0 {
                fx.ips.push(IpChange::NodePortFreed {
                    service: k.clone(),
                    node_port: n,
                });
            }
        }
    }
    let external: Vec<(&String, &Service)> = services
        .iter()
        .filter(|(_, s)| s.spec.is_external())
        .collect();
    if external.is_empty() {
        return;
    }
    // Explicit numbers first: they win over anything given out before.
    let mut used: BTreeSet<u16> = external
        .iter()
        .flat_map(|(_, s)| s.spec.ports.iter().filter_map(|p| p.explicit_node_port()))
        .collect();
    // Then numbers kept from before, then new ones; `None` marks a port still to allocate.
    let mut wanted: Vec<Vec<Option<u16>>> = Vec::with_capacity(external.len());
    for (key, s) in &external {
        let before = state.node_ports.get(*key);
        let row = s
            .spec
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if let Some(n) = p.explicit_node_port() {
                    return Some(n);
                }
                if !s.spec.allocates_node_ports() {
                    return Some(0);
                }
                let kept = before.and_then(|b| b.get(i)).copied().unwrap_or(0);
                if kept != 0 && range.contains(kept) && used.insert(kept) {
                    Some(kept)
                } else {
                    None
                }
            })
            .collect();
        wanted.push(row);
    }
    for ((key, s), row) in external.iter().zip(wanted) {
        let numbers: Vec<u16> = row
            .into_iter()
            .zip(&s.spec.ports)
            .map(|(n, p)| {
                n.unwrap_or_else(|| {
                    let proto = match p.protocol() {
                        Protocol::Tcp => "TCP",
                        Protocol::Udp => "UDP",
                    };
                    let slot = format!("{key}/{proto}/{}", p.number());
                    // A full range leaves the port without one (0), like a LoadBalancer's
                    // port without allocation; validation bounds explicit ones.
                    let n = alloc::node_port(range, &slot, &used).unwrap_or(0);
                    used.insert(n);
                    n
                })
            })
            .collect();
        let before = state.node_ports.get(*key).map(Vec::as_slice).unwrap_or(&[]);
        if before == numbers.as_slice() {
            continue;
        }
        for n in before {
            if *n != 0 && !numbers.contains(n) {
                fx.ips.push(IpChange::NodePortFreed {
                    service: (*key).clone(),
                    node_port: *n,
                });
            }
        }
        for (i, (n, p)) in numbers.iter().zip(&s.spec.ports).enumerate() {
            if *n != 0 && before.get(i) != Some(n) {
                fx.ips.push(IpChange::NodePort {
                    service: (*key).clone(),
                    protocol: p.protocol(),
                    port: p.number(),
                    node_port: *n,
                });
            }
        }
        state.node_ports.insert((*key).clone(), numbers);
    }
}
