//! The cluster state as DNS records, the way CoreDNS's kubernetes plugin names things:
//!
//! - `<svc>.<ns>.svc.<domain>` A: the ClusterIP; for a headless Service (`clusterIP:
//!   None`) the ready endpoints' IPs (all of them with `publishNotReadyAddresses`).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for each named port: to the Service's
//!   name and port for a ClusterIP Service; for a headless one, one record per endpoint, to
//!   the endpoint's own name and its target port.
//! - `<host>.<svc>.<ns>.svc.<domain>` A for each endpoint of a headless Service, where
//!   `<host>` is the pod's `hostname` when its `subdomain` names this Service (StatefulSets'
//!   stable names), else the IP with dashes (`10-244-1-5`). Like Kubernetes, these names come
//!   from the Service's endpoints, so the pod must be selected by the Service (and be ready,
//!   unless `publishNotReadyAddresses`).
//! - `<a-b-c-d>.<ns>.pod.<domain>` A for every pod with an IP (CoreDNS's `pods verified`).
//! - PTR for each ClusterIP (to the Service's name) and each pod IP (to its headless name
//!   when it has one, else its `.pod` name), under the pod and service ranges.
//! - An ExternalName Service (`type: ExternalName`) is a CNAME to its `externalName`, for
//!   every query type, as CoreDNS answers it.

use super::{Zone, ZoneBuilder, ZoneError};
use kommit_reconcilers::{ClusterState, Effects, Endpoint, PodRecord};
use kommit_schemas::model::core::{Service, ServicePort};
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::pod::Protocol;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Builds the zone of `state` under `cluster_domain` (the daemon passes the adopted
/// `kommit.yaml`'s `clusterDomain`, `state.desired.config.cluster_domain`). Pure: the same
/// state gives the same answers. The SOA serial is the state's time in seconds.
pub fn from_state(state: &ClusterState, cluster_domain: &str) -> Result<Zone, ZoneError> {
    let cfg = &state.desired.config;
    let mut ranges = vec![cfg.pod_cidr, cfg.service_cidr];
    ranges.extend(state.nodes.values().filter_map(|n| n.pod_cidr));
    let serial = (state.now / 1000) as u32;
    let mut b = ZoneBuilder::new(cluster_domain, &ranges, serial)?;
    // Pod IP -> its name under a headless Service, preferred for its PTR.
    let mut headless_names: BTreeMap<Ipv4Addr, Vec<u8>> = BTreeMap::new();
    for (key, svc) in &state.desired.services {
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        let Some(svc_name) = b.name(&[name, ns, "svc"]) else {
            tracing::debug!(service = key, "service name does not fit DNS");
            continue;
        };
        if let Some(target) = svc.spec.external_name() {
            b.add_cname(svc_name, target);
        } else if svc.spec.cluster_ip.as_deref() == Some("None") {
            let endpoints = state.endpoints.get(key).map(Vec::as_slice).unwrap_or(&[]);
            headless(
                &mut b,
                state,
                svc,
                ns,
                name,
                &svc_name,
                endpoints,
                &mut headless_names,
            );
        } else if let Some(&ip) = state.service_ips.get(key) {
            b.add_a(svc_name.clone(), ip);
            b.add_ptr(ip, svc_name.clone());
            for port in &svc.spec.ports {
                if let Some(srv) = srv_name(&b, port, name, ns) {
                    b.add_srv(srv, port.port.get() as u16, svc_name.clone());
                }
            }
        }
    }
    for pod in state.pods.values() {
        let Some(ip) = pod.pod_ip else { continue };
        let Some(pod_name) = b.name(&[&dashed(ip), &pod.namespace, "pod"]) else {
            continue;
        };
        b.add_a(pod_name.clone(), ip);
        let ptr = headless_names.remove(&ip).unwrap_or(pod_name);
        b.add_ptr(ip, ptr);
    }
    Ok(b.build())
}

/// Whether an applied entry's effects can change the zone, so the daemon rebuilds it only
/// then (a build of 1,000 Services and 10,000 pods takes about 0.1 s): a new commit (Services
/// added or pruned), endpoints or readiness, addresses (pod IPs, ClusterIPs, node ranges), or
/// pods started or stopped (hostnames).
pub fn affects_zone(fx: &Effects) -> bool {
    fx.adopted.is_some()
        || !fx.endpoints_changed.is_empty()
        || !fx.ips.is_empty()
        || !fx.start.is_empty()
        || !fx.stop.is_empty()
}

/// The records of a headless Service: its endpoints' IPs, per-endpoint names and SRVs.
#[allow(clippy::too_many_arguments)]
fn headless(
    b: &mut ZoneBuilder,
    state: &ClusterState,
    svc: &Service,
    ns: &str,
    name: &str,
    svc_name: &[u8],
    endpoints: &[Endpoint],
    headless_names: &mut BTreeMap<Ipv4Addr, Vec<u8>>,
) {
    let publish = svc.spec.publish_not_ready_addresses.unwrap_or(false);
    for ep in endpoints.iter().filter(|e| e.ready || publish) {
        b.add_a(svc_name.to_vec(), ep.ip);
        let pod = state.pods.get(&ep.pod);
        let host = pod
            .filter(|p| p.spec.subdomain.as_ref().map(|s| s.as_str()) == Some(name))
            .and_then(|p| p.spec.hostname.as_ref())
            .map(|h| h.as_str().to_string())
            .unwrap_or_else(|| dashed(ep.ip));
        let Some(host_name) = b.name(&[&host, name, ns, "svc"]) else {
            continue;
        };
        b.add_a(host_name.clone(), ep.ip);
        headless_names
            .entry(ep.ip)
            .or_insert_with(|| host_name.clone());
        for port in &svc.spec.ports {
            let Some(srv) = srv_name(b, port, name, ns) else {
                continue;
            };
            if let Some(target_port) = pod.and_then(|p| target_port(port, p)) {
                b.add_srv(srv, target_port, host_name.clone());
            }
        }
    }
}

/// `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for a named port.
fn srv_name(b: &ZoneBuilder, port: &ServicePort, svc: &str, ns: &str) -> Option<Vec<u8>> {
    let port_name = port.name.as_ref()?;
    let proto = match port.protocol.unwrap_or(Protocol::Tcp) {
        Protocol::Tcp => "_tcp",
        Protocol::Udp => "_udp",
    };
    b.name(&[&format!("_{}", port_name.as_str()), proto, svc, ns, "svc"])
}

/// The port an endpoint serves a Service port on: `targetPort` by number, or the pod's
/// container port of that name and protocol; `port` without a `targetPort`.
fn target_port(port: &ServicePort, pod: &PodRecord) -> Option<u16> {
    match &port.target_port {
        None => Some(port.port.get() as u16),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|p| *p > 0),
        Some(IntOrString::String(s)) => {
            let proto = port.protocol.unwrap_or(Protocol::Tcp);
            pod.spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| {
                    p.name.as_ref().map(|n| n.as_str()) == Some(s.as_str())
                        && p.protocol.unwrap_or(Protocol::Tcp) == proto
                })
                .map(|p| p.container_port.get() as u16)
        }
    }
}

/// `10-244-1-5` for 10.244.1.5.
fn dashed(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{a}-{b}-{c}-{d}")
}

/// Adds an ExternalName Service `<name>.<ns>.svc.<domain>` as a CNAME to `target` (what
/// [`from_state`] does for each Service of `type: ExternalName`).
pub fn external_name(b: &mut ZoneBuilder, ns: &str, name: &str, target: &str) {
    if let Some(n) = b.name(&[name, ns, "svc"]) {
        b.add_cname(n, target);
    }
}
