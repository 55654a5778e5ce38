//! The Service proxy: a node's Services (ClusterIP, NodePort, LoadBalancer) as nftables
//! rules, after the design of kube-proxy's nftables mode.
//!
//! The input is the complete desired [`ServiceTable`] for this node: every Service with its
//! ports and endpoints, already resolved (target ports per endpoint, readiness, which
//! endpoints run on this node), plus the node's addresses and pod CIDR. The runtime knows
//! nothing of manifests or the replicated state; the caller builds the table.
//!
//! Why this shape:
//! - Per-packet cost must not grow with the number of Services. Every packet is classified by
//!   one lookup in a verdict map keyed by `ip daddr . meta l4proto . th dport` (and
//!   `meta l4proto . th dport` for NodePorts on the node's addresses), which jumps to a chain
//!   of two rules that DNATs through `numgen random mod N` into a map of endpoints. A packet
//!   walks a constant number of rules whatever the table holds.
//! - An endpoint change must cost what it changes, not what the table holds. The pure
//!   [`render`] turns each Service into per-service-port fragments (chains, maps, elements,
//!   as the typed objects of [`nft`]); [`state`] keeps the applied fragments per Service, so
//!   a sync compares each Service once and renders and diffs only the changed ones; and
//!   [`script`] turns the difference into one [`script::Transaction`]: an endpoint replaced
//!   is one map element deleted and one added. The first sync (or one after a failure, or
//!   after the table was removed behind the proxy's back) deletes and rebuilds the table in
//!   one transaction, so the kernel never shows half a table.
//! - A full sync of thousands of Services must be quick, and the kernel's cost of committing
//!   a chain is far above that of a map element (and grows faster than linearly in chains).
//!   So, unlike kube-proxy, a service port without session affinity and without the Local
//!   policy has no chain at all: its endpoints are elements of one map per protocol,
//!   `eps-<proto>`, keyed by destination address, port and index, and its verdict-map
//!   entry jumps to a chain shared by every port with the same endpoint count
//!   (`spread-<proto>-<N>`). Ports with `ClientIP` affinity (per-endpoint timed sets and
//!   chains, as kube-proxy) or the Local policy (separate local endpoints) get chains of
//!   their own.
//! - A sync must not start a process or parse text: [`netlink`] encodes the transaction as
//!   one nf_tables netlink batch (the bytes `nft -f` would send for the same script) over a
//!   socket the proxy keeps. nft's own parser costs some 20 µs per map element, which alone
//!   would exceed the budget of a full sync of 1,000 Services.
//!
//! [`linux::LinuxProxy`] applies transactions over netlink; [`crate::fake::FakeProxy`]
//! models the same semantics (which endpoint a packet reaches) for the agent's tests, and
//! [`crate::conformance`] holds both to one suite.

use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

mod base;
pub mod linux;
pub mod netlink;
pub mod nft;
pub mod render;
pub mod script;
pub mod state;
pub mod testnet;
mod validate;

#[cfg(test)]
mod tests;

pub use linux::{LinuxProxy, ProxyConfig};
pub use render::{port_endpoints, PortEndpoints};
pub use validate::validate;

/// At most this many Services in one table.
pub const MAX_SERVICES: usize = 20_000;
/// At most this many ports per Service.
pub const MAX_PORTS: usize = 100;
/// At most this many endpoints per Service.
pub const MAX_ENDPOINTS: usize = 5_000;
/// At most this many (service port, endpoint) pairs in one table.
pub const MAX_TOTAL_ENDPOINTS: usize = 500_000;
/// At most this many node addresses.
pub const MAX_NODE_ADDRESSES: usize = 64;
/// The longest `ClientIP` affinity timeout Kubernetes allows (one day), in seconds.
pub const MAX_AFFINITY_SECONDS: u32 = 86_400;

/// Proxy errors.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The table is invalid or too large.
    #[error("invalid service table: {0}")]
    Invalid(String),
    /// `nft` failed or could not be run.
    #[error("nft (table {table}): {msg}")]
    Nft {
        /// The nft table.
        table: String,
        /// What went wrong (nft's own message).
        msg: String,
    },
    /// Bad configuration of the proxy itself.
    #[error("invalid proxy config: {0}")]
    Config(String),
}

/// A transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// nftables' name of the protocol.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// How a Service is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    /// The ClusterIP only.
    #[default]
    ClusterIp,
    /// The ClusterIP and a NodePort on every node address.
    NodePort,
    /// Like k3s's ServiceLB: a NodePort, plus the service port itself on every node address.
    LoadBalancer,
}

/// Which endpoints external traffic (NodePort, LoadBalancer) may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    /// Any ready endpoint; the client address is masqueraded.
    #[default]
    Cluster,
    /// Only this node's endpoints; the client address is kept (nothing answers when this
    /// node has none: packets are dropped, as kube-proxy does).
    Local,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (may be empty for a single-port Service); endpoints give their target
    /// port under this name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The port on the ClusterIP (and, for LoadBalancer, on the node addresses).
    pub port: u16,
    /// The NodePort, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
}

/// One endpoint (a pod address) of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's IP.
    pub ip: Ipv4Addr,
    /// Ready (EndpointSlice `serving`).
    pub ready: bool,
    /// The pod is terminating. A ready, terminating endpoint is used only when no endpoint
    /// is ready and not terminating (Kubernetes' graceful termination fallback).
    pub terminating: bool,
    /// The pod runs on this node (`externalTrafficPolicy: Local` uses only these).
    pub local: bool,
    /// Target port per service port name (the Service's `targetPort`, by number or resolved
    /// from the pod's named container port). A service port missing here is not served by
    /// this endpoint.
    pub ports: BTreeMap<String, u16>,
}

/// One Service as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// The ClusterIP; `None` for a headless Service (no VIP).
    pub cluster_ip: Option<Ipv4Addr>,
    /// How it is exposed.
    pub service_type: ServiceType,
    /// Its ports (at least one for anything to be programmed).
    pub ports: Vec<ServicePort>,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// `externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `internalTrafficPolicy`: under Local, ClusterIP traffic goes only to this node's
    /// endpoints, and is dropped when there are endpoints but none here.
    pub internal_traffic_policy: TrafficPolicy,
    /// `sessionAffinity: ClientIP` with its timeout in seconds (1 to one day); `None` for no
    /// affinity.
    pub affinity_timeout: Option<u32>,
    /// `publishNotReadyAddresses`: every endpoint is used, ready or not.
    pub publish_not_ready: bool,
}

/// Facts about this node the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's addresses: NodePorts and LoadBalancer ports answer on these only.
    pub addresses: Vec<Ipv4Addr>,
    /// The pod CIDR: traffic from outside it to a ClusterIP is masqueraded.
    pub pod_cidr: Ipv4Net,
    /// The Service CIDR, if known: traffic to an address in it that is no Service's port is
    /// rejected rather than routed out of the node.
    pub service_cidr: Option<Ipv4Net>,
}

/// The complete desired Services of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTable {
    /// The node.
    pub node: NodeConfig,
    /// Services by `namespace/name`.
    pub services: BTreeMap<String, Service>,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// The whole table was rebuilt (first sync, or after a failed one).
    pub rebuilt: bool,
    /// The service ports whose rules were added, rewritten or removed, as
    /// `namespace/name/protocol/port` (e.g. `default/web/tcp/80`), sorted.
    pub changed: Vec<String>,
}

/// The key of one service port: `namespace/name/protocol/port`.
pub fn port_key(service: &str, port: &ServicePort) -> String {
    format!("{service}/{}/{}", port.protocol.nft(), port.port)
}
