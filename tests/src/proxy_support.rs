//! Harnesses of the Service proxy conformance suite, and the test node the `services`
//! benchmark uses.
//!
//! The Linux node lives in network namespaces of its own, so nothing touches the host's
//! network and parallel tests cannot collide (addresses repeat across nodes, but never meet):
//!
//! ```text
//!  endpoint pods 10.240.0.10-14, client pod 10.240.0.50        (each a netns, eth0 on a veth)
//!        |                                                                   
//!  [node netns] kpbr0 10.240.0.1/24 (pod CIDR)   lan0 10.241.0.1/24 (node address)
//!                                                 |               |
//!                                      external host 10.241.0.2   remote pod 10.241.0.3
//! ```
//!
//! The node forwards, routes by default to the external host (so a stray Service address
//! never leaves the namespaces), and runs the proxy's nft table.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use kommit_runtime::conformance::{Client, ProxyHarness, ProxyTopology};
use kommit_runtime::fake::{FakeProxy, Verdict};
use kommit_runtime::proxy::testnet::{connect, Connect, Netns, NetnsThread, WhoServer};
use kommit_runtime::proxy::{LinuxProxy, NodeConfig, Protocol, ProxyConfig};
use kommit_runtime::ServiceProxy;

use crate::runtime_support::{skip_privileged, unique};

/// How long one test connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn addr(s: &str) -> Ipv4Addr {
    s.parse().expect("a literal address")
}

/// The addresses of every test node (each in its own namespaces).
pub fn topology() -> ProxyTopology {
    ProxyTopology {
        node: NodeConfig {
            addresses: vec![addr("10.241.0.1")],
            pod_cidr: "10.240.0.0/24".parse().expect("cidr"),
            service_cidr: Some("10.96.0.0/16".parse().expect("cidr")),
        },
        gateway: addr("10.240.0.1"),
        endpoints: (10..15).map(|i| Ipv4Addr::new(10, 240, 0, i)).collect(),
        remote_endpoint: addr("10.241.0.3"),
        pod_client: addr("10.240.0.50"),
        external_client: addr("10.241.0.2"),
    }
}

/// A node in network namespaces (see the module docs), torn down when dropped.
pub struct TestNode {
    // Fields drop in order: servers and threads leave the namespaces before they go.
    servers: Vec<WhoServer>,
    threads: Vec<(Ipv4Addr, NetnsThread)>,
    node_thread: NetnsThread,
    /// Pods and hosts by address.
    hosts: Vec<(Ipv4Addr, Netns)>,
    /// The node's namespace.
    pub node: Netns,
    /// The addresses.
    pub topology: ProxyTopology,
}

impl TestNode {
    /// Build the namespaces, links and routes.
    pub fn new() -> Result<Self, String> {
        let t = topology();
        let base = unique("kommit-px");
        let node = Netns::create(&format!("{base}-n"))?;
        node.sysctl("ipv4/ip_forward", "1")?;
        node.sysctl("bridge/bridge-nf-call-iptables", "1")?;
        for (br, cidr) in [("kpbr0", "10.240.0.1/24"), ("lan0", "10.241.0.1/24")] {
            node.ip(&["link", "add", br, "type", "bridge"])?;
            node.ip(&["addr", "add", cidr, "dev", br])?;
            node.ip(&["link", "set", br, "up"])?;
        }
        let mut hosts = Vec::new();
        let mut pods: Vec<(Ipv4Addr, &str, &str)> = t
            .endpoints
            .iter()
            .chain([&t.pod_client])
            .map(|ip| (*ip, "kpbr0", "10.240.0.1"))
            .collect();
        pods.push((t.external_client, "lan0", "10.241.0.1"));
        pods.push((t.remote_endpoint, "lan0", "10.241.0.1"));
        for (i, (ip, bridge, gw)) in pods.into_iter().enumerate() {
            let ns = Netns::create(&format!("{base}-h{i}"))?;
            let veth = format!("veth{i}");
            node.ip(&[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])?;
            node.ip(&["link", "set", &veth, "master", bridge, "up"])?;
            // With br_netfilter a pod's packet DNATed back to itself is bridged out of the
            // port it came in on: the kubelet's hairpin-veth mode.
            node.ip(&[
                "link",
                "set",
                &veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ])?;
            let cidr = format!("{ip}/24");
            ns.ip(&["addr", "add", &cidr, "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            ns.ip(&["route", "add", "default", "via", gw])?;
            hosts.push((ip, ns));
        }
        node.ip(&[
            "route",
            "add",
            "default",
            "via",
            &t.external_client.to_string(),
        ])?;
        let mut threads = Vec::new();
        for (ip, ns) in &hosts {
            threads.push((*ip, NetnsThread::spawn(&ns.path())?));
        }
        let node_thread = NetnsThread::spawn(&node.path())?;
        Ok(TestNode {
            servers: Vec::new(),
            threads,
            node_thread,
            hosts,
            node,
            topology: t,
        })
    }

    /// The path of the node's namespace.
    pub fn node_netns(&self) -> PathBuf {
        self.node.path()
    }

    /// Start a server at `at` (a pod's address).
    pub fn serve(&mut self, at: SocketAddrV4) -> Result<(), String> {
        let ns = self
            .hosts
            .iter()
            .find(|(ip, _)| ip == at.ip())
            .map(|(_, ns)| ns.path())
            .ok_or_else(|| format!("no pod has address {}", at.ip()))?;
        self.servers.push(WhoServer::start(&ns, at)?);
        Ok(())
    }

    /// The thread that connects as `from`.
    fn thread(&self, from: Client) -> Option<&NetnsThread> {
        let ip = match from {
            Client::Node => return Some(&self.node_thread),
            Client::Pod(ip) => ip,
            Client::External => self.topology.external_client,
        };
        self.threads.iter().find(|(a, _)| *a == ip).map(|(_, t)| t)
    }

    /// `n` connections from `from` to `to`, each timed.
    pub fn connect_many(
        &self,
        from: Client,
        to: SocketAddrV4,
        n: usize,
    ) -> Vec<(Connect, Duration)> {
        match self.thread(from) {
            None => vec![
                (
                    Connect::Failed(format!("no client {from:?}")),
                    Duration::ZERO
                );
                n
            ],
            Some(t) => t.run(move || {
                (0..n)
                    .map(|_| {
                        let start = std::time::Instant::now();
                        let c = connect(to, CONNECT_TIMEOUT);
                        (c, start.elapsed())
                    })
                    .collect()
            }),
        }
    }

    /// Run `nft ARGS` in the node's namespace and return its output.
    pub fn nft(&self, args: &[&str]) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.node_thread.run(move || {
            let out = std::process::Command::new("nft")
                .args(&args)
                .output()
                .map_err(|e| format!("nft: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "nft {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })
    }
}

/// The Linux proxy on a [`TestNode`].
pub struct LinuxProxyHarness {
    /// The proxy (table `kommit-px...` in the node's namespace).
    pub proxy: LinuxProxy,
    /// The node.
    pub node: TestNode,
}

impl LinuxProxyHarness {
    /// A fresh node and proxy; `None` when privileged tests are skipped
    /// (KOMMIT_SKIP_PRIVILEGED=1).
    pub fn new() -> Option<Self> {
        if skip_privileged("proxy conformance on Linux") {
            return None;
        }
        let node = TestNode::new().unwrap_or_else(|e| panic!("building the test node: {e}"));
        let mut cfg = ProxyConfig::new(&unique("kommit-proxy-"));
        cfg.netns = Some(node.node_netns());
        let proxy = LinuxProxy::new(cfg).expect("proxy config");
        Some(LinuxProxyHarness { proxy, node })
    }
}

impl ProxyHarness for LinuxProxyHarness {
    fn proxy(&self) -> &dyn ServiceProxy {
        &self.proxy
    }
    fn topology(&self) -> &ProxyTopology {
        &self.node.topology
    }
    fn serve(&mut self, at: SocketAddrV4) -> Result<(), String> {
        self.node.serve(at)
    }
    fn connect(&self, from: Client, to: SocketAddrV4) -> Connect {
        self.node
            .connect_many(from, to, 1)
            .pop()
            .map(|(c, _)| c)
            .unwrap_or_else(|| Connect::Failed("no result".into()))
    }
}

/// The fake proxy, with the same addresses as the Linux node.
pub struct FakeProxyHarness {
    proxy: FakeProxy,
    topology: ProxyTopology,
    served: BTreeSet<SocketAddrV4>,
}

impl FakeProxyHarness {
    /// A fresh fake.
    pub fn new() -> Option<Self> {
        Some(FakeProxyHarness {
            proxy: FakeProxy::new(),
            topology: topology(),
            served: BTreeSet::new(),
        })
    }
}

impl ProxyHarness for FakeProxyHarness {
    fn proxy(&self) -> &dyn ServiceProxy {
        &self.proxy
    }
    fn topology(&self) -> &ProxyTopology {
        &self.topology
    }
    fn serve(&mut self, at: SocketAddrV4) -> Result<(), String> {
        self.served.insert(at);
        Ok(())
    }
    fn connect(&self, from: Client, to: SocketAddrV4) -> Connect {
        let t = &self.topology;
        let node_ip = t.node.addresses[0];
        let (client, from_node) = match from {
            Client::Pod(ip) => (ip, false),
            Client::Node => (node_ip, true),
            Client::External => (t.external_client, false),
        };
        match self
            .proxy
            .resolve(client, from_node, *to.ip(), Protocol::Tcp, to.port())
        {
            Verdict::Dnat {
                endpoint,
                masquerade,
            } if self.served.contains(&endpoint) => {
                // Masquerade takes the address of the interface towards the endpoint.
                let peer = match masquerade {
                    false => client,
                    true if t.node.pod_cidr.contains(endpoint.ip()) => t.gateway,
                    true => node_ip,
                };
                Connect::Answered {
                    server: endpoint,
                    peer,
                }
            }
            Verdict::Dnat { .. } | Verdict::Reject => Connect::Refused,
            Verdict::Drop | Verdict::Pass => Connect::TimedOut,
        }
    }
}
