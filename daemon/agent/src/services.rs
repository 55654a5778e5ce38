//! What the node's Service proxy and routes program, from the replicated state. Pure: the state, the
//! node's name and its addresses in, the runtime's [`ServiceTable`] out; the daemon syncs it
//! into nftables after applied entries (see `daemon/src/node_services.rs`).
//!
//! Every node computes the table for the whole cluster, as kube-proxy does: a ClusterIP must
//! answer on every node, whichever node its endpoints run on. What differs per node is
//! which endpoints are local (for the Local traffic policies) and the node's addresses
//! (where NodePorts and LoadBalancer ports answer).

use ipnet::Ipv4Net;
use kommit_reconcilers::ClusterState;
use kommit_runtime::proxy::{
    Endpoint, NodeConfig, Protocol, Service, ServicePort, ServiceTable, ServiceType, TrafficPolicy,
};
use kommit_schemas::model::core as model;
use kommit_schemas::model::pod::Protocol as ModelProtocol;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

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

/// One Service as the proxy sees it; `None` for one the proxy has nothing to do with
/// (headless and ExternalName Services are DNS only).
fn service(state: &ClusterState, node: &str, key: &str, svc: &model::Service) -> Option<Service> {
    let spec = &svc.spec;
    let service_type = match spec.service_type() {
        model::ServiceType::ExternalName => return None,
        model::ServiceType::ClusterIp => ServiceType::ClusterIp,
        model::ServiceType::NodePort => ServiceType::NodePort,
        // Served like k3s's ServiceLB on the nodes that serve load balancers; elsewhere, and
        // for another `loadBalancerClass`, its NodePorts still answer.
        model::ServiceType::LoadBalancer
            if spec.uses_kommit_load_balancer()
                && kommit_reconcilers::services::serves_load_balancers(state, node) =>
        {
            ServiceType::LoadBalancer
        }
        model::ServiceType::LoadBalancer => ServiceType::NodePort,
    };
    let cluster_ip = state.service_ips.get(key).copied();
    if cluster_ip.is_none() && service_type == ServiceType::ClusterIp {
        return None;
    }
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| ServicePort {
            name: p
                .name
                .as_ref()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            protocol: match p.protocol() {
                ModelProtocol::Udp => Protocol::Udp,
                ModelProtocol::Tcp => Protocol::Tcp,
            },
            port: p.number(),
            node_port: kommit_reconcilers::services::node_port(state, key, i),
        })
        .collect();
    let endpoints = state
        .endpoints
        .get(key)
        .into_iter()
        .flatten()
        .map(|ep| Endpoint {
            ip: ep.ip,
            ready: ep.ready,
            terminating: false,
            local: ep.node == node,
            ports: state
                .pods
                .get(&ep.pod)
                .map(|p| kommit_reconcilers::services::endpoint_ports(spec, &p.spec))
                .unwrap_or_default(),
        })
        .collect();
    Some(Service {
        cluster_ip,
        service_type,
        ports,
        endpoints,
        external_traffic_policy: match spec.external_traffic_policy() {
            Some(model::TrafficPolicy::Local) => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        },
        internal_traffic_policy: match spec.internal_traffic_policy() {
            model::TrafficPolicy::Local => TrafficPolicy::Local,
            model::TrafficPolicy::Cluster => TrafficPolicy::Cluster,
        },
        affinity_timeout: spec.affinity_timeout_seconds(),
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests;
