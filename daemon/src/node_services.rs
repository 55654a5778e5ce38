//! The daemon's side of Services, cluster DNS and pod routes on this node: after applied
//! entries it syncs the node's Service table (`kommit_agent::services::service_table`) into
//! the nftables proxy (`kommit_runtime::proxy`) and its routes to the other nodes' pod CIDRs
//! (`pod_routes`, host-gw) into the kernel, and serves the cluster zone (`kommit_dns`) on the pod
//! bridge's gateway, where every pod's resolv.conf points. Glue only: what the table and the
//! zone hold are pure functions of the replicated state, tested in their crates.
//!
//! Both are level-triggered, like the agent: each wake-up rebuilds from the state as it is,
//! several entries applied meanwhile collapse into one rebuild, and a periodic resync repairs
//! what changed behind the daemon's back (an nft table deleted by hand, an address added to
//! the node). Rules stay in the kernel when the daemon stops, so a restart does not
//! interrupt Service traffic (kube-proxy does the same).

use crate::consensus::node::Shared;
use kommit_reconcilers::ClusterState;
use kommit_runtime::proxy::{LinuxProxy, ProxyConfig, ServiceTable};
use kommit_runtime::ServiceProxy;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the proxy is synced in full even when the state did not change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// The longest wait after a failed sync before the next attempt.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The shortest time between two rebuilds of the DNS zone.
const ZONE_MIN_INTERVAL: Duration = Duration::from_millis(20);

/// The nft table of the Service proxy for a pod bridge: `kommit_svc` for the default bridge.
pub fn proxy_table(bridge: &str) -> String {
    format!("{}_svc", kommit_agent::node::nft_table(bridge))
}

/// Removes the Service proxy's rules of `bridge`'s node (`kommit up --down`, tests).
pub fn remove_proxy_rules(bridge: &str) -> anyhow::Result<()> {
    LinuxProxy::new(ProxyConfig::new(&proxy_table(bridge)))?.clear()?;
    Ok(())
}

/// Running Services and DNS: stopped by [`NodeServices::stop`].
pub struct NodeServices {
    stop: Arc<AtomicBool>,
    kick: SyncSender<()>,
    proxy: Option<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NodeServices {
    /// Stops syncing and serving (the nft rules stay).
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.kick.try_send(());
        for t in &self.tasks {
            t.abort();
        }
        if let Some(t) = self.proxy.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// How the node serves Services and DNS.
#[derive(Clone, Debug)]
pub struct Options {
    /// The pod bridge.
    pub bridge: String,
    /// The node's resolv.conf: DNS forwards names outside the cluster to its nameservers.
    pub host_resolv_conf: String,
    /// NodePorts answer on the node's addresses inside these (all of them when empty).
    pub nodeport_addresses: Vec<ipnet::Ipv4Net>,
}

/// Starts the proxy thread and the DNS task for the node of `shared`.
pub fn start(shared: Arc<Shared<ClusterState>>, opts: Options) -> anyhow::Result<NodeServices> {
    let proxy = LinuxProxy::new(ProxyConfig::new(&proxy_table(&opts.bridge)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (kick, kicked) = std::sync::mpsc::sync_channel(1);
    let thread = {
        let (shared, stop, opts) = (shared.clone(), stop.clone(), opts.clone());
        std::thread::Builder::new()
            .name("kommit-proxy".into())
            .spawn(move || proxy_loop(&proxy, &shared, &opts, &kicked, &stop))?
    };
    let (zone_tx, zone_rx) = tokio::sync::watch::channel(());
    let mut applied = shared.sm.applied_watch();
    let watcher = {
        let kick = kick.clone();
        tokio::spawn(async move {
            while applied.changed().await.is_ok() {
                let _ = kick.try_send(());
                zone_tx.send_replace(());
            }
        })
    };
    let dns = tokio::spawn(dns_loop(shared, opts.host_resolv_conf, zone_rx));
    Ok(NodeServices {
        stop,
        kick,
        proxy: Some(thread),
        tasks: vec![watcher, dns],
    })
}

/// Syncs the proxy whenever the table changes, every [`RESYNC`], and after a failure with
/// a doubling back-off.
fn proxy_loop(
    proxy: &LinuxProxy,
    shared: &Shared<ClusterState>,
    opts: &Options,
    kicked: &Receiver<()>,
    stop: &AtomicBool,
) {
    let mut last: Option<ServiceTable> = None;
    let mut last_routes: Option<std::collections::BTreeMap<ipnet::Ipv4Net, Ipv4Addr>> = None;
    let mut last_sync = Instant::now();
    let mut retry: Option<Duration> = None;
    let mut last_error = String::new();
    let mut addresses: Vec<Ipv4Addr> = Vec::new();
    let mut wait = Duration::ZERO;
    loop {
        match kicked.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let resync = last_sync.elapsed() >= RESYNC;
        if resync || addresses.is_empty() {
            match kommit_runtime::network::node_addresses(&[&opts.bridge]) {
                Ok(mut a) => {
                    if !opts.nodeport_addresses.is_empty() {
                        a.retain(|ip| opts.nodeport_addresses.iter().any(|n| n.contains(ip)));
                    }
                    addresses = a;
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the node's addresses"),
            }
        }
        let (table, routes) = shared.sm.read(|s| {
            (
                kommit_agent::services::service_table(s, &shared.name, &addresses),
                kommit_agent::services::pod_routes(s, &shared.name),
            )
        });
        if resync || last_routes.as_ref() != Some(&routes) {
            match kommit_runtime::network::sync_pod_routes(&routes) {
                Ok(c) => {
                    if !c.added.is_empty() || !c.removed.is_empty() {
                        tracing::info!(added = ?c.added, removed = ?c.removed, "pod routes to other nodes");
                    }
                    last_routes = Some(routes);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the routes to other nodes' pods");
                    last_routes = None;
                    retry.get_or_insert(Duration::from_secs(1));
                }
            }
        }
        wait = retry.unwrap_or(RESYNC);
        let Some(table) = table else {
            continue;
        };
        if retry.is_none() && !resync && last.as_ref() == Some(&table) {
            wait = RESYNC.saturating_sub(last_sync.elapsed());
            continue;
        }
        let started = Instant::now();
        match proxy.sync(&table) {
            Ok(report) => {
                if report.rebuilt || !report.changed.is_empty() {
                    tracing::debug!(
                        services = table.services.len(),
                        rebuilt = report.rebuilt,
                        changed = report.changed.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "service proxy synced"
                    );
                }
                if retry.is_some() {
                    tracing::info!("service proxy synced again");
                }
                retry = None;
                last_error.clear();
                last = Some(table);
                last_sync = Instant::now();
                wait = RESYNC;
            }
            Err(e) => {
                let next = retry.map_or(Duration::from_secs(1), |r| (r * 2).min(MAX_RETRY));
                let msg = e.to_string();
                if msg != last_error {
                    tracing::warn!(error = %msg, retry_in_s = next.as_secs(), "service proxy sync failed");
                    last_error = msg;
                }
                retry = Some(next);
                last = None;
                wait = next;
            }
        }
    }
}

/// Serves the cluster zone on the gateway of this node's pod CIDR once the node has one,
/// rebuilding the zone after applied entries and moving the server when the CIDR changes.
async fn dns_loop(
    shared: Arc<Shared<ClusterState>>,
    host_resolv_conf: String,
    mut changed: tokio::sync::watch::Receiver<()>,
) {
    let mut server: Option<(Ipv4Addr, kommit_dns::DnsServer)> = None;
    let mut failed_on: Option<Ipv4Addr> = None;
    loop {
        let (gateway, zone) = shared.sm.read(|s| {
            let gw = s
                .nodes
                .get(&shared.name)
                .and_then(|n| n.pod_cidr)
                .and_then(|c| kommit_runtime::network::gateway(&c));
            (
                gw,
                kommit_dns::from_state(s, &s.desired.config.cluster_domain),
            )
        });
        let zone = match zone {
            Ok(z) => Some(z),
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the cluster DNS zone; serving the last one");
                None
            }
        };
        if server.as_ref().map(|(ip, _)| *ip) != gateway {
            if let Some((_, old)) = server.take() {
                old.shutdown().await;
            }
            if let (Some(ip), Some(zone)) = (gateway, zone) {
                match serve(ip, &host_resolv_conf, zone).await {
                    Ok(s) => {
                        tracing::info!(address = %s.local_addr(), "cluster DNS serving");
                        server = Some((ip, s));
                        failed_on = None;
                    }
                    Err(e) if failed_on != Some(ip) => {
                        tracing::error!(error = %e, "cluster DNS cannot serve pods");
                        failed_on = Some(ip);
                    }
                    Err(_) => {}
                }
            }
        } else if let (Some((_, s)), Some(zone)) = (&server, zone) {
            s.zone().store(zone);
        }
        tokio::time::sleep(ZONE_MIN_INTERVAL).await;
        let wait = if server.is_none() && failed_on.is_some() {
            RESYNC
        } else {
            Duration::from_secs(86_400)
        };
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(wait) => failed_on = None,
        }
    }
    if let Some((_, s)) = server {
        s.shutdown().await;
    }
}

async fn serve(
    ip: Ipv4Addr,
    host_resolv_conf: &str,
    zone: kommit_dns::Zone,
) -> Result<kommit_dns::DnsServer, kommit_dns::ServerError> {
    let mut cfg = kommit_dns::ServerConfig::new(SocketAddr::new(IpAddr::V4(ip), 53));
    cfg.freebind = true;
    cfg.forward.upstreams = kommit_dns::upstreams(host_resolv_conf, IpAddr::V4(ip));
    kommit_dns::DnsServer::start(cfg, kommit_dns::ZoneHandle::new(zone)).await
}
