//! The fake Service proxy: the table in memory, and [`FakeProxy::resolve`] answering where
//! a packet would go, with the Linux proxy's semantics (endpoint selection shared through
//! [`crate::proxy::port_endpoints`], masquerade, hairpin, policies, affinity, rejects).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::proxy::{
    port_endpoints, port_key, validate, PortEndpoints, Protocol, ServiceTable, ServiceType,
    SyncReport, TrafficPolicy,
};
use crate::traits::{Result, RuntimeError, ServiceProxy};

/// Where a packet goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Translated to an endpoint; `masquerade` when the endpoint sees the node's address
    /// instead of the client's.
    Dnat {
        /// The endpoint and target port.
        endpoint: SocketAddrV4,
        /// Whether the client's address is replaced.
        masquerade: bool,
    },
    /// Refused at once (a Service port without endpoints, or an unknown Service address).
    Reject,
    /// Silently dropped (a Local policy without local endpoints).
    Drop,
    /// Not a Service: routed as usual.
    Pass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PortModel {
    vip: Option<Ipv4Addr>,
    protocol: Protocol,
    port: u16,
    node_port: Option<u16>,
    load_balancer: bool,
    external: bool,
    policy: TrafficPolicy,
    internal_policy: TrafficPolicy,
    affinity: Option<u32>,
    eps: PortEndpoints,
}

#[derive(Default)]
struct State {
    table: Option<ServiceTable>,
    ports: BTreeMap<String, PortModel>,
    turn: BTreeMap<String, usize>,
    sticky: BTreeMap<(String, Ipv4Addr), (SocketAddrV4, Instant)>,
    fail_next: usize,
    /// The last sync failed: like the kernel after a refused transaction, the old rules
    /// stand, and the next sync rebuilds.
    rebuild: bool,
}

/// The fake Service proxy.
#[derive(Default)]
pub struct FakeProxy {
    state: Mutex<State>,
}

fn models(t: &ServiceTable) -> BTreeMap<String, PortModel> {
    let mut out = BTreeMap::new();
    for (key, s) in &t.services {
        for p in &s.ports {
            let lb = s.service_type == ServiceType::LoadBalancer;
            out.insert(
                port_key(key, p),
                PortModel {
                    vip: s.cluster_ip,
                    protocol: p.protocol,
                    port: p.port,
                    node_port: p.node_port,
                    load_balancer: lb,
                    external: s.service_type != ServiceType::ClusterIp
                        && (lb || p.node_port.is_some()),
                    policy: s.external_traffic_policy,
                    internal_policy: s.internal_traffic_policy,
                    affinity: s.affinity_timeout,
                    eps: port_endpoints(s, p),
                },
            );
        }
    }
    out
}

impl FakeProxy {
    /// An empty proxy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the next `n` syncs fail (nothing is applied; the next good sync rebuilds).
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a new connection from `client` to `daddr:dport` goes. `from_node` says the
    /// client is the node itself (its own addresses are local).
    pub fn resolve(
        &self,
        client: Ipv4Addr,
        from_node: bool,
        daddr: Ipv4Addr,
        protocol: Protocol,
        dport: u16,
    ) -> Verdict {
        let mut g = self.lock();
        let Some(node) = g.table.as_ref().map(|t| t.node.clone()) else {
            return Verdict::Pass;
        };
        let on_node_ip = node.addresses.contains(&daddr);
        let hit = g.ports.iter().find_map(|(k, m)| {
            if m.protocol != protocol {
                return None;
            }
            if m.vip == Some(daddr) && m.port == dport {
                return Some((k.clone(), false));
            }
            let ext = m.external
                && on_node_ip
                && (m.node_port == Some(dport) || (m.load_balancer && m.port == dport));
            ext.then(|| (k.clone(), true))
        });
        let Some((key, external)) = hit else {
            return match node.service_cidr {
                Some(c) if c.contains(&daddr) => Verdict::Reject,
                _ => Verdict::Pass,
            };
        };
        let m = g.ports[&key].clone();
        if m.eps.cluster.is_empty() {
            return Verdict::Reject;
        }
        let in_pods = node.pod_cidr.contains(&client) && !from_node;
        let (eps, mut masquerade) = match (external, m.policy) {
            (false, _) if m.internal_policy == TrafficPolicy::Local => (&m.eps.local, !in_pods),
            (false, _) => (&m.eps.cluster, !in_pods),
            (true, TrafficPolicy::Cluster) => (&m.eps.cluster, true),
            (true, TrafficPolicy::Local) if from_node => (&m.eps.cluster, true),
            (true, TrafficPolicy::Local) if in_pods => (&m.eps.cluster, false),
            (true, TrafficPolicy::Local) => (&m.eps.local, false),
        };
        if eps.is_empty() {
            return Verdict::Drop;
        }
        let now = Instant::now();
        let sticky = m.affinity.and_then(|_| {
            g.sticky
                .get(&(key.clone(), client))
                .filter(|(ep, until)| *until > now && eps.contains(&(*ep.ip(), ep.port())))
                .map(|(ep, _)| *ep)
        });
        let endpoint = sticky.unwrap_or_else(|| {
            let turn = g.turn.entry(key.clone()).or_default();
            let (ip, port) = eps[*turn % eps.len()];
            *turn += 1;
            SocketAddrV4::new(ip, port)
        });
        if let Some(secs) = m.affinity {
            g.sticky.insert(
                (key, client),
                (endpoint, now + Duration::from_secs(secs.into())),
            );
        }
        if *endpoint.ip() == client {
            masquerade = true;
        }
        Verdict::Dnat {
            endpoint,
            masquerade,
        }
    }
}

impl ServiceProxy for FakeProxy {
    fn sync(&self, table: &ServiceTable) -> Result<SyncReport> {
        validate(table)?;
        let mut g = self.lock();
        if g.fail_next > 0 {
            g.fail_next -= 1;
            g.rebuild = true;
            return Err(RuntimeError::Injected("sync".into()));
        }
        let new = models(table);
        let rebuilt = g.table.is_none() || g.rebuild;
        g.rebuild = false;
        let changed = if rebuilt {
            new.keys().cloned().collect()
        } else {
            let mut c: Vec<String> = new
                .iter()
                .filter(|(k, m)| g.ports.get(*k) != Some(m))
                .map(|(k, _)| k.clone())
                .chain(g.ports.keys().filter(|k| !new.contains_key(*k)).cloned())
                .collect();
            c.sort();
            c
        };
        g.sticky.retain(|(k, _), _| new.contains_key(k));
        g.table = Some(table.clone());
        g.ports = new;
        Ok(SyncReport { rebuilt, changed })
    }

    fn clear(&self) -> Result<()> {
        let mut g = self.lock();
        g.table = None;
        g.ports.clear();
        g.sticky.clear();
        Ok(())
    }
}
