//! Checks of a [`ServiceTable`] before anything is rendered: names that are safe in nft
//! identifiers, bounded sizes, and no two ports claiming the same address, protocol and port.
//!
//! The checks of one Service ([`check_service`]) are apart from those between Services
//! ([`Claims`], the index of who claims which address, protocol and port), so that a sync
//! checks only the Services that changed against the claims of the others
//! ([`Claims::check_changes`]); [`validate`] checks a whole table.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{
    NodeConfig, Protocol, ProxyError, Service, ServicePort, ServiceTable, ServiceType,
    MAX_AFFINITY_SECONDS, MAX_ENDPOINTS, MAX_NODE_ADDRESSES, MAX_PORTS, MAX_SERVICES,
    MAX_TOTAL_ENDPOINTS,
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
    claims(t).map(|_| ())
}

/// [`validate`], keeping the claims for [`Claims::check_changes`].
pub fn claims(t: &ServiceTable) -> Result<Claims, ProxyError> {
    check_counts(t)?;
    let mut c = Claims::default();
    for (key, s) in &t.services {
        check_service(key, s)?;
        c.add(None, &t.node, key, s)?;
    }
    Ok(c)
}

/// The bounds on the table as a whole.
pub fn check_counts(t: &ServiceTable) -> Result<(), ProxyError> {
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
    Ok(())
}

/// The checks of one Service on its own.
pub fn check_service(key: &str, s: &Service) -> Result<(), ProxyError> {
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
    if let Some(secs) = s.affinity_timeout {
        if secs == 0 || secs > MAX_AFFINITY_SECONDS {
            return Err(invalid(format!(
                "service {key}: affinity timeout {secs} s is not within 1..={MAX_AFFINITY_SECONDS}"
            )));
        }
    }
    let mut ips: Vec<Ipv4Addr> = s.endpoints.iter().map(|e| e.ip).collect();
    ips.sort_unstable();
    if let Some(w) = ips.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(format!("service {key}: endpoint {} twice", w[0])));
    }
    for e in &s.endpoints {
        if let Some((name, _)) = e.ports.iter().find(|(_, p)| **p == 0) {
            return Err(invalid(format!(
                "service {key}: endpoint {} has target port 0 for {name:?}",
                e.ip
            )));
        }
    }
    for (i, p) in s.ports.iter().enumerate() {
        let earlier = &s.ports[..i];
        if !(p.name.is_empty() || dns_label(&p.name)) {
            return Err(invalid(format!(
                "service {key}: port name {:?} is not a DNS label",
                p.name
            )));
        }
        if earlier.iter().any(|q| q.name == p.name) {
            return Err(invalid(format!(
                "service {key}: port name {:?} twice",
                p.name
            )));
        }
        if p.port == 0
            || earlier
                .iter()
                .any(|q| (q.protocol, q.port) == (p.protocol, p.port))
        {
            return Err(invalid(format!(
                "service {key}: port {} is 0 or repeated",
                super::port_key(key, p)
            )));
        }
        match (p.node_port, s.service_type) {
            (Some(_), ServiceType::ClusterIp) => {
                return Err(invalid(format!(
                    "service {key}: a ClusterIP service has no NodePort ({})",
                    super::port_key(key, p)
                )))
            }
            (Some(0), _) => {
                return Err(invalid(format!("{}: NodePort 0", super::port_key(key, p))))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The (service port, endpoint) pairs of a Service.
fn pairs(s: &Service) -> usize {
    s.ports.len().saturating_mul(s.endpoints.len())
}

/// The Service of a port key (`namespace/name/protocol/port`).
fn service_of(port_key: &str) -> &str {
    port_key.rsplitn(3, '/').nth(2).unwrap_or(port_key)
}

/// Who claims what: each (address, protocol, port) of a ClusterIP or of a LoadBalancer port
/// on a node address, and each (protocol, NodePort), by port key; and the number of
/// (service port, endpoint) pairs.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    addrs: BTreeMap<(Ipv4Addr, Protocol, u16), Arc<str>>,
    node_ports: BTreeMap<(Protocol, u16), Arc<str>>,
    pairs: usize,
}

/// The claims of one Service: addresses (with what claims them) and NodePorts.
type ServiceClaims = (
    Vec<((Ipv4Addr, Protocol, u16), &'static str)>,
    Vec<(Protocol, u16)>,
);

fn claims_of(node: &NodeConfig, p: &ServicePort, s: &Service) -> ServiceClaims {
    let mut addrs = Vec::new();
    if let Some(vip) = s.cluster_ip {
        addrs.push(((vip, p.protocol, p.port), "ClusterIP"));
    }
    if s.service_type == ServiceType::LoadBalancer {
        for a in &node.addresses {
            addrs.push((
                (*a, p.protocol, p.port),
                "LoadBalancer port on node address",
            ));
        }
    }
    let node_ports = p.node_port.map(|np| (p.protocol, np)).into_iter().collect();
    (addrs, node_ports)
}

impl Claims {
    /// The owner of an address claim, in `self` or else in `base` unless its Service is
    /// among those `base` loses.
    fn addr<'a>(
        &'a self,
        base: Option<(&'a Claims, &BTreeSet<&str>)>,
        k: &(Ipv4Addr, Protocol, u16),
    ) -> Option<&'a str> {
        self.addrs.get(k).map(|o| &**o).or_else(|| {
            let (b, gone) = base?;
            b.addrs
                .get(k)
                .map(|o| &**o)
                .filter(|o| !gone.contains(service_of(o)))
        })
    }

    fn node_port<'a>(
        &'a self,
        base: Option<(&'a Claims, &BTreeSet<&str>)>,
        k: &(Protocol, u16),
    ) -> Option<&'a str> {
        self.node_ports.get(k).map(|o| &**o).or_else(|| {
            let (b, gone) = base?;
            b.node_ports
                .get(k)
                .map(|o| &**o)
                .filter(|o| !gone.contains(service_of(o)))
        })
    }

    /// Claim the ports of Service `key` (already through [`check_service`]), refusing a
    /// claim held in `self`, or in `base` by a Service other than those it loses.
    fn add(
        &mut self,
        base: Option<(&Claims, &BTreeSet<&str>)>,
        node: &NodeConfig,
        key: &str,
        s: &Service,
    ) -> Result<(), ProxyError> {
        self.pairs = self.pairs.saturating_add(pairs(s));
        if self.pairs > MAX_TOTAL_ENDPOINTS {
            return Err(invalid(format!(
                "more than {MAX_TOTAL_ENDPOINTS} (service port, endpoint) pairs"
            )));
        }
        for p in &s.ports {
            let pk: Arc<str> = super::port_key(key, p).into();
            let (addrs, node_ports) = claims_of(node, p, s);
            for (k @ (ip, proto, port), what) in addrs {
                if let Some(other) = self.addr(base, &k) {
                    return Err(invalid(format!(
                        "{what} {ip}:{port}/{} of {pk} is already {other}",
                        proto.nft()
                    )));
                }
                // A LoadBalancer port on a node address must not be a NodePort there.
                if node.addresses.contains(&ip) {
                    if let Some(other) = self.node_port(base, &(proto, port)) {
                        return Err(invalid(format!(
                            "NodePort {port}/{} of {other} is also {pk} on node address {ip}",
                            proto.nft()
                        )));
                    }
                }
                self.addrs.insert(k, pk.clone());
            }
            for k @ (proto, np) in node_ports {
                if let Some(other) = self.node_port(base, &k) {
                    return Err(invalid(format!(
                        "NodePort {np}/{} of {pk} is already {other}",
                        proto.nft()
                    )));
                }
                for a in &node.addresses {
                    if let Some(other) = self.addr(base, &(*a, proto, np)) {
                        return Err(invalid(format!(
                            "NodePort {np}/{} of {pk} is also {other} on node address {a}",
                            proto.nft()
                        )));
                    }
                }
                self.node_ports.insert(k, pk.clone());
            }
        }
        Ok(())
    }

    /// Check that the Services `removed` (their previous values) can give way to `added`
    /// (their new values, each already through [`check_service`]) on the same node: every
    /// claim of `added` is free once `removed` let theirs go, and the pairs stay bounded.
    pub fn check_changes(
        &self,
        node: &NodeConfig,
        removed: &[(&str, &Service)],
        added: &[(&str, &Service)],
    ) -> Result<(), ProxyError> {
        let gone: BTreeSet<&str> = removed.iter().map(|(k, _)| *k).collect();
        let mut new = Claims {
            pairs: removed
                .iter()
                .fold(self.pairs, |n, (_, s)| n.saturating_sub(pairs(s))),
            ..Claims::default()
        };
        for (key, s) in added {
            new.add(Some((self, &gone)), node, key, s)?;
        }
        Ok(())
    }

    /// Take the changes [`Claims::check_changes`] accepted.
    pub fn apply_changes(
        &mut self,
        node: &NodeConfig,
        removed: &[(&str, &Service)],
        added: &[(&str, &Service)],
    ) {
        for (key, s) in removed {
            self.pairs = self.pairs.saturating_sub(pairs(s));
            for p in &s.ports {
                let (addrs, node_ports) = claims_of(node, p, s);
                for (k, _) in addrs {
                    if self.addrs.get(&k).is_some_and(|o| service_of(o) == *key) {
                        self.addrs.remove(&k);
                    }
                }
                for k in node_ports {
                    if self
                        .node_ports
                        .get(&k)
                        .is_some_and(|o| service_of(o) == *key)
                    {
                        self.node_ports.remove(&k);
                    }
                }
            }
        }
        for (key, s) in added {
            self.pairs = self.pairs.saturating_add(pairs(s));
            for p in &s.ports {
                let pk: Arc<str> = super::port_key(key, p).into();
                let (addrs, node_ports) = claims_of(node, p, s);
                for (k, _) in addrs {
                    self.addrs.insert(k, pk.clone());
                }
                for k in node_ports {
                    self.node_ports.insert(k, pk.clone());
                }
            }
        }
    }
}
