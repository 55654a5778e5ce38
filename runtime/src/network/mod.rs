//! The pod network: a node bridge owning the pod CIDR, a veth per pod (`eth0` inside), the
//! IPs the replicated state assigned recorded in a persisted allocation, masquerade and
//! hostPorts in an nftables table of our own.
//!
//! The bridge takes the first host address of the CIDR the pods are attached in (the
//! gateway). All attached pods share one CIDR: an address in another is refused while any pod
//! is attached, and the bridge is re-addressed when the first pod of a new CIDR arrives.
//!
//! Links and addresses go through rtnetlink. Configuring the pod's side happens on a
//! dedicated OS thread that `setns`es into the pod's network namespace (network namespaces
//! are per thread), never on a tokio worker of the caller. nftables is programmed by
//! replacing the whole `ip <table>` atomically with `nft -f`, rebuilt from the allocation
//! file, so the rules always match the persisted state. The script depends only on the CIDR
//! and the hostPorts, so an attach or detach that leaves it as this process last applied it
//! runs no `nft` (most pods have no hostPorts).

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::spec::PortMapping;
use crate::traits::{PodAddress, PodNetwork, Result, RuntimeError};

mod addr;
mod host;
mod routes;
pub use addr::{check_assignment, gateway, ipam_pick, nft_script, veth_name};
use host::forwarding_sysctls;
pub use host::node_addresses;
pub use routes::{sync_pod_routes, RouteChanges, ROUTE_PROTOCOL};

/// Network errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Netlink failure.
    #[error("netlink: {0}")]
    Netlink(String),
    /// nft failure.
    #[error("nft: {0}")]
    Nft(String),
    /// No free address.
    #[error("no free IP left in {0}")]
    Exhausted(Ipv4Net),
    /// State file failure.
    #[error("{path}: {msg}")]
    State {
        /// Path.
        path: PathBuf,
        /// Message.
        msg: String,
    },
    /// Bad configuration.
    #[error("invalid network config: {0}")]
    Config(String),
}

/// Configuration of the node's pod network. The pod CIDR is not here: it comes with each
/// [`PodAddress`].
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Bridge name (`kommit0`).
    pub bridge: String,
    /// nftables table name (`kommit`).
    pub nft_table: String,
    /// Where the allocation file lives.
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Alloc {
    ip: Option<Ipv4Addr>,
    veth: String,
    #[serde(default)]
    ports: Vec<PortMapping>,
    /// The CIDR the pod was attached in (absent in files written before addresses were
    /// assigned by the caller).
    #[serde(default)]
    cidr: Option<Ipv4Net>,
}

/// The Linux pod network.
pub struct LinuxNetwork {
    cfg: NetConfig,
    /// Held while the allocation file, the bridge or the nft table change (not while a pod's
    /// veth is wired, so pods attach in parallel).
    lock: Mutex<Memo>,
}

/// What this process knows it already did, so repeated work is skipped.
#[derive(Default)]
struct Memo {
    /// The nft script last applied: a pod without hostPorts (which leaves the script
    /// unchanged) costs no `nft` run.
    script: Option<String>,
    /// The bridge's index and the CIDR it was addressed for.
    bridge: Option<(Ipv4Net, u32)>,
    /// The cluster's pod CIDR (traffic to it is not masqueraded).
    cluster: Option<Ipv4Net>,
}

fn nerr(e: impl std::fmt::Display) -> NetError {
    NetError::Netlink(e.to_string())
}

async fn link_index(
    h: &rtnetlink::Handle,
    name: &str,
) -> std::result::Result<Option<u32>, NetError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nerr(e)),
    }
}

fn block_on<F: std::future::Future>(f: F) -> std::result::Result<F::Output, NetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(nerr)?;
    Ok(rt.block_on(f))
}

/// The pod's interface, inside its network namespace.
const POD_IFACE: &str = "eth0";

/// Run `f` with a netlink handle in the current thread's network namespace.
fn with_netlink<T, F, Fut>(f: F) -> std::result::Result<T, NetError>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, NetError>>,
{
    block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(nerr)?;
        let task = tokio::spawn(conn);
        let r = f(handle).await;
        task.abort();
        r
    })?
}

impl LinuxNetwork {
    /// A network with `cfg`; nothing is created until the first attach.
    pub fn new(cfg: NetConfig) -> std::result::Result<Self, NetError> {
        if cfg.bridge.is_empty() || cfg.bridge.len() > 15 {
            return Err(NetError::Config(format!(
                "bridge name {:?} must be 1-15 bytes",
                cfg.bridge
            )));
        }
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| NetError::State {
            path: cfg.state_dir.clone(),
            msg: e.to_string(),
        })?;
        Ok(LinuxNetwork {
            cfg,
            lock: Mutex::new(Memo::default()),
        })
    }

    fn state_path(&self) -> PathBuf {
        self.cfg
            .state_dir
            .join(format!("ipam-{}.json", self.cfg.bridge))
    }

    fn load(&self) -> std::result::Result<BTreeMap<String, Alloc>, NetError> {
        let p = self.state_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetError::State {
                path: p,
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(NetError::State {
                path: p,
                msg: e.to_string(),
            }),
        }
    }

    fn save(&self, m: &BTreeMap<String, Alloc>) -> std::result::Result<(), NetError> {
        let p = self.state_path();
        let tmp = p.with_extension("tmp");
        let b = serde_json::to_vec_pretty(m).map_err(|e| NetError::State {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        std::fs::write(&tmp, b).map_err(|e| NetError::State {
            path: tmp.clone(),
            msg: e.to_string(),
        })?;
        std::fs::rename(&tmp, &p).map_err(|e| NetError::State {
            path: p,
            msg: e.to_string(),
        })
    }

    fn program_nft(
        &self,
        memo: &mut Memo,
        m: &BTreeMap<String, Alloc>,
    ) -> std::result::Result<(), NetError> {
        let last = &mut memo.script;
        use std::io::Write;
        let pods: BTreeMap<String, (Ipv4Addr, Vec<PortMapping>)> = m
            .iter()
            .filter_map(|(k, a)| a.ip.map(|ip| (k.clone(), (ip, a.ports.clone()))))
            .collect();
        // The CIDR in use: every allocation with one names the same (see check_assignment).
        let cidr = m.values().find_map(|a| a.cidr);
        let script = if let Some(cidr) = cidr.filter(|_| !m.is_empty()) {
            nft_script(&self.cfg.nft_table, &cidr, memo.cluster.as_ref(), &pods)
        } else {
            format!(
                "table ip {t} {{}}\ndelete table ip {t}\n",
                t = self.cfg.nft_table
            )
        };
        if last.as_deref() == Some(script.as_str()) {
            return Ok(());
        }
        // Forget the script first: if this run fails, the next one must not be skipped.
        *last = None;
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                NetError::Nft(format!("running nft (apt-get install -y nftables): {e}"))
            })?;
        child
            .stdin
            .take()
            .ok_or_else(|| NetError::Nft("no stdin".into()))?
            .write_all(script.as_bytes())
            .map_err(|e| NetError::Nft(e.to_string()))?;
        let out = child
            .wait_with_output()
            .map_err(|e| NetError::Nft(e.to_string()))?;
        if !out.status.success() {
            return Err(NetError::Nft(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        *last = Some(script);
        Ok(())
    }

    /// Create the bridge if missing and give it exactly the gateway address of `cidr`
    /// (re-addressing a bridge left in another CIDR; the caller has checked no pod is
    /// attached there).
    fn ensure_bridge(&self, cidr: &Ipv4Net) -> std::result::Result<u32, NetError> {
        use rtnetlink::packet_route::address::AddressAttribute;
        forwarding_sysctls()?;
        let br = self.cfg.bridge.clone();
        let gw =
            gateway(cidr).ok_or_else(|| NetError::Config(format!("CIDR {cidr} has no hosts")))?;
        let prefix = cidr.prefix_len();
        with_netlink(|h| async move {
            let idx = match link_index(&h, &br).await? {
                Some(i) => i,
                None => {
                    h.link()
                        .add(
                            rtnetlink::LinkBridge::new(&br)
                                .address(host::bridge_mac(&br))
                                .build(),
                        )
                        .execute()
                        .await
                        .map_err(nerr)?;
                    link_index(&h, &br)
                        .await?
                        .ok_or_else(|| nerr(format!("bridge {br} vanished")))?
                }
            };
            let mut have = false;
            let mut stale = Vec::new();
            let mut addrs = h.address().get().set_link_index_filter(idx).execute();
            while let Some(msg) = addrs.try_next().await.map_err(nerr)? {
                let v4 = msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(std::net::IpAddr::V4(a)) => Some(*a),
                    _ => None,
                });
                match v4 {
                    Some(a) if a == gw && msg.header.prefix_len == prefix => have = true,
                    Some(_) => stale.push(msg),
                    None => {}
                }
            }
            for msg in stale {
                h.address().del(msg).execute().await.map_err(nerr)?;
            }
            if !have {
                h.address()
                    .add(idx, std::net::IpAddr::V4(gw), prefix)
                    .execute()
                    .await
                    .map_err(nerr)?;
            }
            h.link()
                .set(rtnetlink::LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(nerr)?;
            Ok(idx)
        })
    }

    fn delete_link(name: &str) -> std::result::Result<(), NetError> {
        let name = name.to_string();
        with_netlink(|h| async move {
            if let Some(i) = link_index(&h, &name).await? {
                h.link().del(i).execute().await.map_err(nerr)?;
            }
            Ok(())
        })
    }

    fn wire(
        &self,
        pod: &str,
        netns: &Path,
        addr: PodAddress,
        veth: &str,
        br_idx: u32,
    ) -> std::result::Result<(), NetError> {
        let ip = addr.ip;
        let ns = std::fs::File::open(netns)
            .map_err(|e| nerr(format!("open {}: {e}", netns.display())))?;
        use std::os::fd::AsRawFd;
        let nsfd = ns.as_raw_fd();
        let veth_s = veth.to_string();
        with_netlink(|h| async move {
            if let Some(i) = link_index(&h, &veth_s).await? {
                h.link().del(i).execute().await.map_err(nerr)?;
            }
            // The pair in one message, as `ip link add V master BR up type veth peer name
            // eth0 netns POD`: the host end on the bridge and up, the pod end made inside the
            // pod's namespace as `eth0` (link names are per namespace).
            use rtnetlink::packet_route::link::{InfoData, InfoVeth};
            let pod_end = rtnetlink::LinkMessageBuilder::<rtnetlink::LinkUnspec>::new()
                .name(POD_IFACE.to_string())
                .setns_by_fd(nsfd)
                .build();
            h.link()
                .add(
                    rtnetlink::LinkVeth::new(&veth_s, POD_IFACE)
                        .set_info_data(InfoData::Veth(InfoVeth::Peer(pod_end)))
                        .controller(br_idx)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(nerr)?;
            let vi = link_index(&h, &veth_s)
                .await?
                .ok_or_else(|| nerr("veth vanished"))?;
            // Hairpin: a pod's packet to its own Service, DNATed back to itself, leaves by
            // the bridge port it came in on (the kubelet's hairpin-veth mode).
            h.link()
                .set(rtnetlink::LinkBridgePort::new(vi).hairpin(true).build())
                .execute()
                .await
                .map_err(nerr)?;
            host::forget_neighbour(&h, br_idx, ip).await?;
            Ok(())
        })?;
        // Configure the pod side from a thread that lives in the pod's network namespace (its
        // loopback is up already: the shim brings it up).
        let gw = gateway(&addr.cidr)
            .ok_or_else(|| NetError::Config(format!("CIDR {} has no hosts", addr.cidr)))?;
        let prefix = addr.cidr.prefix_len();
        let pod_s = pod.to_string();
        let t = std::thread::spawn(move || -> std::result::Result<(), NetError> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| nerr(format!("setns into pod {pod_s}: {e}")))?;
            with_netlink(|h| async move {
                let pi = link_index(&h, POD_IFACE)
                    .await?
                    .ok_or_else(|| nerr("eth0 not in the pod's namespace"))?;
                h.address()
                    .add(pi, std::net::IpAddr::V4(ip), prefix)
                    .execute()
                    .await
                    .map_err(nerr)?;
                h.link()
                    .set(rtnetlink::LinkUnspec::new_with_index(pi).up().build())
                    .execute()
                    .await
                    .map_err(nerr)?;
                let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(pi)
                    .build();
                h.route().add(route).execute().await.map_err(nerr)?;
                Ok(())
            })
        });
        t.join().map_err(|_| nerr("pod network thread panicked"))?
    }
}

impl PodNetwork for LinuxNetwork {
    fn attach(
        &self,
        pod: &str,
        netns: &Path,
        addr: PodAddress,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr> {
        crate::spec::validate_name("pod", pod).map_err(RuntimeError::InvalidSpec)?;
        let ip = addr.ip;
        let veth = veth_name(&self.cfg.bridge, pod);
        let br_idx = {
            let mut memo = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut m = self.load()?;
            let allocs = m
                .iter()
                .filter_map(|(k, a)| a.ip.map(|ip| (k.clone(), (ip, a.cidr))))
                .collect();
            if check_assignment(pod, addr, &allocs)? {
                return Ok(addr.ip);
            }
            // Persist first: a crash after this never hands the IP out twice. From here the
            // allocation is taken, so no detach removes the bridge while this pod is wired.
            m.insert(
                pod.to_string(),
                Alloc {
                    ip: Some(ip),
                    veth: veth.clone(),
                    ports: ports.to_vec(),
                    cidr: Some(addr.cidr),
                },
            );
            self.save(&m)?;
            let bridge = match memo.bridge {
                Some((cidr, idx)) if cidr == addr.cidr => Ok(idx),
                _ => self.ensure_bridge(&addr.cidr),
            };
            match bridge {
                Ok(idx) => {
                    memo.bridge = Some((addr.cidr, idx));
                    idx
                }
                Err(e) => {
                    memo.bridge = None;
                    m.remove(pod);
                    let _ = self.save(&m);
                    return Err(e.into());
                }
            }
        };
        let wired = self.wire(pod, netns, addr, &veth, br_idx);
        let mut memo = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let res = wired.and_then(|_| {
            let m = self.load()?;
            self.program_nft(&mut memo, &m)
        });
        if let Err(e) = res {
            // The bridge may be what failed (removed behind our back): look at it again next
            // time.
            memo.bridge = None;
            let _ = Self::delete_link(&veth);
            if let Ok(mut m) = self.load() {
                m.remove(pod);
                let _ = self.save(&m);
            }
            return Err(e.into());
        }
        Ok(ip)
    }

    fn detach(&self, pod: &str) -> Result<()> {
        let mut memo = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = self.load()?;
        let veth = m
            .get(pod)
            .map(|a| a.veth.clone())
            .unwrap_or_else(|| veth_name(&self.cfg.bridge, pod));
        Self::delete_link(&veth)?;
        let had = m.remove(pod).is_some();
        self.save(&m)?;
        if had || m.is_empty() {
            self.program_nft(&mut memo, &m)?;
        }
        if m.is_empty() {
            memo.bridge = None;
            Self::delete_link(&self.cfg.bridge)?;
        }
        Ok(())
    }

    fn ip_of(&self, pod: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self.load()?.get(pod).and_then(|a| a.ip))
    }

    fn set_cluster_cidr(&self, cidr: Option<Ipv4Net>) -> Result<()> {
        let mut memo = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if memo.cluster == cidr {
            return Ok(());
        }
        memo.cluster = cidr;
        let m = self.load()?;
        if !m.is_empty() {
            self.program_nft(&mut memo, &m)?;
        }
        Ok(())
    }
}
