//! Pure reads of the state's Services for the node agent, DNS and the CLI: NodePorts, which
//! nodes serve LoadBalancer Services and the ingress they report, and `targetPort`
//! resolution for one pod.
//!
//! LoadBalancer Services are served the way k3s's ServiceLB does on bare metal: every node
//! that serves load balancers opens the Service's ports on its own address (besides the
//! NodePorts), and the Service's ingress is those nodes' addresses. Which nodes: all of
//! them, unless some node carries the label [`ENABLE_LB_LABEL`]`=true`, then only those.
//! A Service with a `loadBalancerClass` belongs to another implementation: kommit serves
//! none of its load-balancer ports and reports no ingress (its ClusterIP and NodePorts
//! work as for any NodePort Service).

use crate::state::ClusterState;
use kommit_schemas::model::core::{ServicePort, ServiceSpec};
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::pod::{PodSpec, Protocol};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The node label that, once any node carries it with value `true`, limits LoadBalancer
/// Services to the nodes carrying it (k3s's ServiceLB label).
pub const ENABLE_LB_LABEL: &str = "svccontroller.k3s.cattle.io/enablelb";

/// The NodePort of `spec.ports[index]` of a Service (`namespace/name`), None when it has
/// none (not a NodePort or LoadBalancer Service, or a LoadBalancer port without one).
pub fn node_port(state: &ClusterState, service: &str, index: usize) -> Option<u16> {
    state
        .node_ports
        .get(service)
        .and_then(|p| p.get(index))
        .copied()
        .filter(|n| *n != 0)
}

/// Whether `node` serves LoadBalancer ports: every node, unless some node of the state
/// carries [`ENABLE_LB_LABEL`]`=true`, then only those. Readiness does not matter here (a
/// node programs its own rules whatever the state thinks of it); the ingress lists only
/// ready nodes.
pub fn serves_load_balancers(state: &ClusterState, node: &str) -> bool {
    let Some(n) = state.nodes.get(node) else {
        return false;
    };
    !lb_label_in_use(state) || has_lb_label(&n.info.labels)
}

fn has_lb_label(labels: &BTreeMap<String, String>) -> bool {
    labels.get(ENABLE_LB_LABEL).map(String::as_str) == Some("true")
}

fn lb_label_in_use(state: &ClusterState) -> bool {
    state.nodes.values().any(|n| has_lb_label(&n.info.labels))
}

/// The ingress of a LoadBalancer Service (`namespace/name`), as Kubernetes'
/// `status.loadBalancer.ingress[].ip`: the addresses (host part of [`NodeInfo::address`])
/// of the ready nodes that serve load balancers (see [`serves_load_balancers`]), sorted and
/// without duplicates. Empty for any other Service, for a LoadBalancer Service with a
/// `loadBalancerClass`, and while no such node is ready (Kubernetes shows `<pending>`).
///
/// [`NodeInfo::address`]: crate::NodeInfo::address
pub fn load_balancer_ingress(state: &ClusterState, service: &str) -> Vec<Ipv4Addr> {
    let Some(s) = state.desired.services.get(service) else {
        return Vec::new();
    };
    if !s.spec.uses_kommit_load_balancer() {
        return Vec::new();
    }
    let labelled = lb_label_in_use(state);
    let mut ips: Vec<Ipv4Addr> = state
        .nodes
        .values()
        .filter(|n| n.ready && (!labelled || has_lb_label(&n.info.labels)))
        .filter_map(|n| n.info.ip())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The port a pod serves one service port on, as Kubernetes' `FindPort`:
/// - `targetPort` a number: that number;
/// - `targetPort` a name: the `containerPort` of the pod's (regular) container port with
///   that name and the service port's protocol; None when the pod has none, and then the
///   pod is no endpoint for this port (Kubernetes leaves it out of the port's endpoints);
/// - no `targetPort`: the service `port`.
pub fn target_port(port: &ServicePort, pod: &PodSpec) -> Option<u16> {
    match &port.target_port {
        None => Some(port.number()),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n != 0),
        Some(IntOrString::String(name)) => pod
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|cp| {
                cp.name.as_ref().is_some_and(|n| n.as_str() == name)
                    && cp.protocol.unwrap_or(Protocol::Tcp) == port.protocol()
            })
            .and_then(|cp| u16::try_from(cp.container_port.get()).ok()),
    }
}

/// One pod's target port for each port of a Service, by service port name ("" for an
/// unnamed single port): the runtime proxy's `Endpoint::ports`. A port the pod does not
/// serve ([`target_port`] is None) is absent.
pub fn endpoint_ports(spec: &ServiceSpec, pod: &PodSpec) -> BTreeMap<String, u16> {
    spec.ports
        .iter()
        .filter_map(|p| {
            let name = p.name.as_ref().map_or("", |n| n.as_str());
            Some((name.to_string(), target_port(p, pod)?))
        })
        .collect()
}
