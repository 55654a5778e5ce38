//! Checks of a [`ServiceTable`] before anything is rendered: names that are safe in nft
//! identifiers, bounded sizes, and no two ports claiming the same address, protocol and port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{
    Protocol, ProxyError, ServiceTable, ServiceType, MAX_AFFINITY_SECONDS, MAX_ENDPOINTS,
    MAX_NODE_ADDRESSES, MAX_PORTS, MAX_SERVICES, MAX_TOTAL_ENDPOINTS,
};

fn invalid(msg: String) -> ProxyError {
    ProxyError::Invalid(msg)
}

/// A DNS label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes), as Kubernetes requires of
/// namespaces and Service names; it is also a safe piece of an nft identifier.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Check the table: `namespace/name` keys of DNS labels; at most [`MAX_SERVICES`] Services,
/// [`MAX_PORTS`] ports and [`MAX_ENDPOINTS`] endpoints each, [`MAX_TOTAL_ENDPOINTS`] (port,
/// endpoint) pairs and [`MAX_NODE_ADDRESSES`] node addresses; unique port names and
/// (protocol, port) pairs within a Service; non-zero ports; NodePorts only on NodePort and
/// LoadBalancer Services; affinity timeouts of 1 s to a day; and no two service ports on the
/// same (address, protocol, port): ClusterIPs, LoadBalancer ports on the node addresses and
/// NodePorts are each claimed once.
pub fn validate(t: &ServiceTable) -> Result<(), ProxyError> {
    if t.services.len() > MAX_SERVICES {
        return Err(invalid(format!(
            "{} services, at most {MAX_SERVICES}",
            t.services.len()
        )));
    }
    if t.node.addresses.len() > MAX_NODE_ADDRESSES {
        return Err(invalid(format!(
            "{} node addresses, at most {MAX_NODE_ADDRESSES}",
            t.node.addresses.len()
        )));
    }
    let mut claims: BTreeMap<(Ipv4Addr, Protocol, u16), String> = BTreeMap::new();
    let mut node_ports: BTreeMap<(Protocol, u16), String> = BTreeMap::new();
    let mut total = 0usize;
    for (key, s) in &t.services {
        let ok = key
            .split_once('/')
            .is_some_and(|(ns, name)| dns_label(ns) && dns_label(name));
        if !ok {
            return Err(invalid(format!(
                "service key {key:?} is not namespace/name of DNS labels"
            )));
        }
        if s.ports.len() > MAX_PORTS {
            return Err(invalid(format!(
                "service {key}: {} ports, at most {MAX_PORTS}",
                s.ports.len()
            )));
        }
        if s.endpoints.len() > MAX_ENDPOINTS {
            return Err(invalid(format!(
                "service {key}: {} endpoints, at most {MAX_ENDPOINTS}",
                s.endpoints.len()
            )));
        }
        total = total.saturating_add(s.ports.len().saturating_mul(s.endpoints.len()));
        if total > MAX_TOTAL_ENDPOINTS {
            return Err(invalid(format!(
                "more than {MAX_TOTAL_ENDPOINTS} (service port, endpoint) pairs"
            )));
        }
        if let Some(secs) = s.affinity_timeout {
            if secs == 0 || secs > MAX_AFFINITY_SECONDS {
                return Err(invalid(format!(
                    "service {key}: affinity timeout {secs} s is not within 1..={MAX_AFFINITY_SECONDS}"
                )));
            }
        }
        let mut names = BTreeSet::new();
        let mut pairs = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for e in &s.endpoints {
            if !ips.insert(e.ip) {
                return Err(invalid(format!("service {key}: endpoint {} twice", e.ip)));
            }
            if let Some((name, _)) = e.ports.iter().find(|(_, p)| **p == 0) {
                return Err(invalid(format!(
                    "service {key}: endpoint {} has target port 0 for {name:?}",
                    e.ip
                )));
            }
        }
        for p in &s.ports {
            let pk = super::port_key(key, p);
            if !(p.name.is_empty() || dns_label(&p.name)) {
                return Err(invalid(format!(
                    "service {key}: port name {:?} is not a DNS label",
                    p.name
                )));
            }
            if !names.insert(p.name.as_str()) {
                return Err(invalid(format!(
                    "service {key}: port name {:?} twice",
                    p.name
                )));
            }
            if p.port == 0 || !pairs.insert((p.protocol, p.port)) {
                return Err(invalid(format!(
                    "service {key}: port {pk} is 0 or repeated"
                )));
            }
            let mut claim = |ip: Ipv4Addr, what: &str| -> Result<(), ProxyError> {
                if let Some(other) = claims.insert((ip, p.protocol, p.port), pk.clone()) {
                    return Err(invalid(format!(
                        "{what} {ip}:{}/{} of {pk} is already {other}",
                        p.port,
                        p.protocol.nft()
                    )));
                }
                Ok(())
            };
            if let Some(vip) = s.cluster_ip {
                claim(vip, "ClusterIP")?;
            }
            if s.service_type == ServiceType::LoadBalancer {
                for a in &t.node.addresses {
                    claim(*a, "LoadBalancer port on node address")?;
                }
            }
            match (p.node_port, s.service_type) {
                (Some(_), ServiceType::ClusterIp) => {
                    return Err(invalid(format!(
                        "service {key}: a ClusterIP service has no NodePort ({pk})"
                    )))
                }
                (Some(0), _) => return Err(invalid(format!("{pk}: NodePort 0"))),
                (Some(np), _) => {
                    if let Some(other) = node_ports.insert((p.protocol, np), pk.clone()) {
                        return Err(invalid(format!(
                            "NodePort {np}/{} of {pk} is already {other}",
                            p.protocol.nft()
                        )));
                    }
                }
                (None, _) => {}
            }
        }
    }
    // A NodePort and a LoadBalancer port on the node addresses must not collide either.
    for ((proto, np), pk) in &node_ports {
        for a in &t.node.addresses {
            if let Some(other) = claims.get(&(*a, *proto, *np)) {
                return Err(invalid(format!(
                    "NodePort {np}/{} of {pk} is also {other} on node address {a}",
                    proto.nft()
                )));
            }
        }
    }
    Ok(())
}
