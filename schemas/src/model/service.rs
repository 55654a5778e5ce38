//! The v1 Service spec: types, ports, traffic policies, affinity and IP families.
//!
//! Field names and defaults are Kubernetes' own. What a schema cannot say (ExternalName
//! needs `externalName` and takes no selector, `externalTrafficPolicy` only on NodePort and
//! LoadBalancer, NodePorts unique in the range) is checked in `checks::service`. The
//! accessors on [`ServiceSpec`] resolve Kubernetes' defaults, so consumers (the replicated
//! state, the node agent, DNS) never spell a default twice.

use super::meta::{Bounded, IntOrString, Label, Port};
use super::pod::Protocol;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds` (three hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;
/// The longest `ClientIP` affinity Kubernetes allows (one day), in seconds.
pub const MAX_AFFINITY_TIMEOUT_SECONDS: u32 = 86_400;

/// A Service's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// ClusterIP (default), NodePort, LoadBalancer or ExternalName.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceType>,
    /// Pods whose labels match are endpoints. Without a selector the service has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// The ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// "None" for a headless service; otherwise allocated by kommit when absent.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// None (default) or ClientIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// The ClientIP affinity's timeout (default 10800 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// Publish endpoints of pods that are not ready (StatefulSet peer discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<bool>,
    /// For type ExternalName: the DNS name this Service's name is an alias (CNAME) for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// Which endpoints NodePort and LoadBalancer traffic reaches: Cluster (default, the
    /// client address is masqueraded) or Local (this node's endpoints, the client address
    /// kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// Which endpoints traffic from pods to the ClusterIP reaches: Cluster (default) or Local
    /// (endpoints on the client's node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<TrafficPolicy>,
    /// For type LoadBalancer: the load balancer implementation that serves it. kommit's own
    /// (ServiceLB, on the node addresses) serves Services without a class; a Service with a
    /// class is left to that implementation: it still gets its ClusterIP and NodePorts, but
    /// kommit opens no load-balancer port for it and reports no ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// For type LoadBalancer: whether NodePorts are allocated (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<bool>,
    /// The IP families (kommit clusters are IPv4 single-stack: at most `[IPv4]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<IpFamily>,
    /// SingleStack (default) or PreferDualStack, which is single-stack IPv4 on kommit, as on
    /// any single-stack Kubernetes cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<IpFamilyPolicy>,
}

/// Service types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// A virtual IP inside the cluster.
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    /// A virtual IP plus a port on every node.
    NodePort,
    /// A NodePort Service whose ports are also served on the node addresses, as k3s's
    /// ServiceLB does on bare metal.
    LoadBalancer,
    /// A DNS alias (CNAME) for `externalName`: no virtual IP, no endpoints.
    ExternalName,
}

/// Session affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionAffinity {
    /// Balance every connection.
    None,
    /// Keep a client on one endpoint.
    #[serde(rename = "ClientIP")]
    ClientIp,
}

/// `sessionAffinityConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinityConfig {
    /// The ClientIP affinity's settings.
    #[serde(default, rename = "clientIP", skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

/// `sessionAffinityConfig.clientIP`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIpConfig {
    /// How long a client sticks to its endpoint after its last packet, 1 to 86400 seconds
    /// (default 10800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<Bounded<1, 86_400>>,
}

/// `externalTrafficPolicy` and `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    #[default]
    Cluster,
    /// Only endpoints on the node the traffic arrives at (or comes from).
    Local,
}

/// IP families. kommit clusters are IPv4 only.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum IpFamily {
    /// IPv4.
    #[serde(rename = "IPv4")]
    Ipv4,
}

/// IP family policies kommit accepts (RequireDualStack is refused: the cluster is IPv4
/// single-stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IpFamilyPolicy {
    /// One family.
    SingleStack,
    /// Two families where the cluster has them; one (IPv4) on kommit.
    PreferDualStack,
}

/// One service port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Required when there are several ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Label>,
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The application protocol (`http`, `kubernetes.io/h2c`, ...); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// The service port.
    pub port: Port,
    /// The pods' port, by number or container port name (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// The node port for NodePort and LoadBalancer services (allocated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<Port>,
}

impl ServicePort {
    /// The protocol, TCP when absent.
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Tcp)
    }

    /// The port number.
    pub fn number(&self) -> u16 {
        u16::try_from(self.port.get()).expect("a Port is 1..=65535")
    }

    /// The explicit `nodePort`, if any.
    pub fn explicit_node_port(&self) -> Option<u16> {
        self.node_port
            .map(|p| u16::try_from(p.get()).expect("a Port is 1..=65535"))
    }
}

impl ServiceSpec {
    /// The type, ClusterIP when absent.
    pub fn service_type(&self) -> ServiceType {
        self.kind.unwrap_or(ServiceType::ClusterIp)
    }

    /// Whether this is a headless Service (`clusterIP: None`): DNS only, no virtual IP.
    pub fn is_headless(&self) -> bool {
        self.cluster_ip.as_deref() == Some("None")
    }

    /// Whether the Service gets a ClusterIP: not headless, not ExternalName.
    pub fn has_cluster_ip(&self) -> bool {
        !self.is_headless() && self.service_type() != ServiceType::ExternalName
    }

    /// Whether the Service is reachable from outside the cluster on the nodes (NodePort or
    /// LoadBalancer): `externalTrafficPolicy` applies to it.
    pub fn is_external(&self) -> bool {
        matches!(
            self.service_type(),
            ServiceType::NodePort | ServiceType::LoadBalancer
        )
    }

    /// Whether ports without an explicit `nodePort` get one allocated: NodePort Services,
    /// and LoadBalancer Services unless `allocateLoadBalancerNodePorts: false`.
    pub fn allocates_node_ports(&self) -> bool {
        match self.service_type() {
            ServiceType::NodePort => true,
            ServiceType::LoadBalancer => self.allocate_load_balancer_node_ports.unwrap_or(true),
            ServiceType::ClusterIp | ServiceType::ExternalName => false,
        }
    }

    /// Whether kommit's own load balancer (ServiceLB) serves this Service: type
    /// LoadBalancer without a `loadBalancerClass`.
    pub fn uses_kommit_load_balancer(&self) -> bool {
        self.service_type() == ServiceType::LoadBalancer && self.load_balancer_class.is_none()
    }

    /// `externalTrafficPolicy` for NodePort and LoadBalancer Services (Cluster when
    /// absent); None for the other types, where it does not apply.
    pub fn external_traffic_policy(&self) -> Option<TrafficPolicy> {
        self.is_external()
            .then(|| self.external_traffic_policy.unwrap_or_default())
    }

    /// `internalTrafficPolicy`, Cluster when absent.
    pub fn internal_traffic_policy(&self) -> TrafficPolicy {
        self.internal_traffic_policy.unwrap_or_default()
    }

    /// The ClientIP affinity's timeout in seconds (default 10800) when `sessionAffinity` is
    /// ClientIP; None without affinity.
    pub fn affinity_timeout_seconds(&self) -> Option<u32> {
        if self.session_affinity != Some(SessionAffinity::ClientIp) {
            return None;
        }
        let t = self
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .map_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS, |t| {
                u32::try_from(t.get()).expect("bounded to 1..=86400")
            });
        Some(t)
    }

    /// The ExternalName target without a trailing dot, for type ExternalName.
    pub fn external_name(&self) -> Option<&str> {
        if self.service_type() != ServiceType::ExternalName {
            return None;
        }
        let n = self.external_name.as_deref()?;
        Some(n.strip_suffix('.').unwrap_or(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> ServiceSpec {
        serde_json::from_value(v).expect("valid spec")
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let s = spec(serde_json::json!({"ports": [{"port": 80}]}));
        assert_eq!(s.service_type(), ServiceType::ClusterIp);
        assert!(s.has_cluster_ip() && !s.is_headless() && !s.allocates_node_ports());
        assert_eq!(s.external_traffic_policy(), None);
        assert_eq!(s.internal_traffic_policy(), TrafficPolicy::Cluster);
        assert_eq!(s.affinity_timeout_seconds(), None);
        assert_eq!(s.ports[0].protocol(), Protocol::Tcp);

        let lb = spec(serde_json::json!({"type": "LoadBalancer", "sessionAffinity": "ClientIP"}));
        assert!(lb.allocates_node_ports() && lb.uses_kommit_load_balancer());
        assert_eq!(lb.external_traffic_policy(), Some(TrafficPolicy::Cluster));
        assert_eq!(lb.affinity_timeout_seconds(), Some(10_800));

        let lb = spec(serde_json::json!({
            "type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
            "loadBalancerClass": "example.com/lb", "externalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}));
        assert!(!lb.allocates_node_ports() && !lb.uses_kommit_load_balancer());
        assert_eq!(lb.external_traffic_policy(), Some(TrafficPolicy::Local));
        assert_eq!(lb.affinity_timeout_seconds(), Some(60));

        let ext =
            spec(serde_json::json!({"type": "ExternalName", "externalName": "db.example.com."}));
        assert!(!ext.has_cluster_ip());
        assert_eq!(ext.external_name(), Some("db.example.com"));
        let headless = spec(serde_json::json!({"clusterIP": "None"}));
        assert!(headless.is_headless() && !headless.has_cluster_ip());
    }
}
