//! What the node's Service proxy and routes program, from the replicated state. Pure: the state, the
//! node's name and its addresses in, the runtime's [`ServiceTable`] out; the daemon syncs it
//! into nftables after applied entries (see `daemon/src/node_services.rs`).
//!
//! Every node computes the table for the whole cluster, as kube-proxy does: a ClusterIP must
//! answer on every node, whichever node its endpoints run on. What differs per node is
//! which endpoints are local (for `externalTrafficPolicy: Local`) and the node's addresses
//! (where NodePorts and LoadBalancer ports answer).

use ipnet::Ipv4Net;
use kommit_reconcilers::{ClusterState, PodRecord};
use kommit_runtime::proxy::{
    Endpoint, NodeConfig, Protocol, Service, ServicePort, ServiceTable, ServiceType, TrafficPolicy,
};
use kommit_schemas::model::core::{self as model, SessionAffinity};
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::pod::Protocol as ModelProtocol;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// `sessionAffinity: ClientIP`'s timeout when the Service gives none (Kubernetes' default,
/// three hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// The Service table of `node` (known to the state, with a pod CIDR), answering NodePorts on
/// `addresses`; `None` until the node has a pod CIDR.
pub fn service_table(
    state: &ClusterState,
    node: &str,
    addresses: &[Ipv4Addr],
) -> Option<ServiceTable> {
    let pod_cidr = state.nodes.get(node)?.pod_cidr?;
    let services = state
        .desired
        .services
        .iter()
        .filter_map(|(key, svc)| Some((key.clone(), service(state, node, key, svc)?)))
        .collect();
    Some(ServiceTable {
        node: NodeConfig {
            addresses: addresses.to_vec(),
            pod_cidr,
            service_cidr: Some(state.desired.config.service_cidr),
        },
        services,
    })
}

/// The routes this node needs to the other nodes' pod CIDRs (host-gw): each through the
/// node's address (the host part of its advertised `host:port`). Nodes without a CIDR, or
/// whose address is not an IPv4 address other than loopback (nodes sharing one host, as in
/// the tests), get none. A route stays while its node is known, up or down, and goes with
/// `NodeRemove`.
pub fn pod_routes(state: &ClusterState, node: &str) -> BTreeMap<Ipv4Net, Ipv4Addr> {
    state
        .nodes
        .iter()
        .filter(|(name, _)| name.as_str() != node)
        .filter_map(|(_, n)| {
            let cidr = n.pod_cidr?;
            let host = n
                .info
                .address
                .rsplit_once(':')
                .map_or(n.info.address.as_str(), |(h, _)| h);
            let ip: Ipv4Addr = host.parse().ok()?;
            (!ip.is_loopback() && !ip.is_unspecified()).then_some((cidr, ip))
        })
        .collect()
}

fn protocol(p: Option<ModelProtocol>) -> Protocol {
    match p {
        Some(ModelProtocol::Udp) => Protocol::Udp,
        _ => Protocol::Tcp,
    }
}

/// One Service as the proxy sees it; `None` for one the proxy has nothing to do with.
fn service(state: &ClusterState, node: &str, key: &str, svc: &model::Service) -> Option<Service> {
    let spec = &svc.spec;
    let service_type = match spec.kind {
        Some(model::ServiceType::NodePort) => ServiceType::NodePort,
        _ => ServiceType::ClusterIp,
    };
    let cluster_ip = state.service_ips.get(key).copied();
    if cluster_ip.is_none() && service_type == ServiceType::ClusterIp {
        // Headless: DNS only.
        return None;
    }
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .map(|p| ServicePort {
            name: port_name(p),
            protocol: protocol(p.protocol),
            port: p.port.get() as u16,
            node_port: p.node_port.map(|n| n.get() as u16),
        })
        .collect();
    let endpoints = state
        .endpoints
        .get(key)
        .into_iter()
        .flatten()
        .map(|ep| {
            let pod = state.pods.get(&ep.pod);
            let ports = spec
                .ports
                .iter()
                .filter_map(|p| Some((port_name(p), target_port(p, pod?)?)))
                .collect();
            Endpoint {
                ip: ep.ip,
                ready: ep.ready,
                terminating: false,
                local: ep.node == node,
                ports,
            }
        })
        .collect();
    Some(Service {
        cluster_ip,
        service_type,
        ports,
        endpoints,
        external_traffic_policy: TrafficPolicy::Cluster,
        affinity_timeout: match spec.session_affinity {
            Some(SessionAffinity::ClientIp) => Some(DEFAULT_AFFINITY_SECONDS),
            _ => None,
        },
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

/// The name endpoints give a port's target under: the port's name, or empty for an unnamed
/// (single) port.
fn port_name(p: &model::ServicePort) -> String {
    p.name
        .as_ref()
        .map(|n| n.as_str().to_string())
        .unwrap_or_default()
}

/// Where a Service port goes on one pod: `targetPort` by number, or by the name of one of the
/// pod's container ports with the same protocol (a pod without that name is no endpoint of
/// the port, as in Kubernetes); without `targetPort`, the Service port itself.
fn target_port(p: &model::ServicePort, pod: &PodRecord) -> Option<u16> {
    match &p.target_port {
        None => Some(p.port.get() as u16),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n > 0),
        Some(IntOrString::String(s)) => match s.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => pod
                .spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|cp| {
                    cp.name.as_ref().is_some_and(|n| n.as_str() == s)
                        && protocol(cp.protocol) == protocol(p.protocol)
                })
                .map(|cp| cp.container_port.get() as u16),
        },
    }
}

#[cfg(test)]
mod tests;
