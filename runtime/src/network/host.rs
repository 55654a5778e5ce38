//! The host side of the pod network: the kernel settings a node needs, and the node's own
//! addresses (where NodePorts answer).

use std::net::Ipv4Addr;

use futures::TryStreamExt;

use super::{link_index, nerr, with_netlink, NetError};

/// What a node with a pod bridge needs of its network namespace's kernel settings (as
/// kube-proxy and the bridge CNI plugin set them): IPv4 forwarding, and bridged packets
/// passed through the IP hooks so the Service proxy's DNAT is undone on replies between two
/// pods of one bridge. `/proc/sys/net` is per network namespace.
pub(super) fn forwarding_sysctls() -> std::result::Result<(), NetError> {
    let write = |path: &str| {
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
            return Ok(());
        }
        std::fs::write(path, "1").map_err(|e| NetError::Config(format!("cannot set {path}: {e}")))
    };
    write("/proc/sys/net/ipv4/ip_forward")?;
    let bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if std::path::Path::new(bridge_nf).exists() {
        write(bridge_nf)?;
    } else {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "the br_netfilter module is not loaded (no {bridge_nf}): a pod reaching a Service \
                 whose endpoint is on the same node gets no reply; run `modprobe br_netfilter`"
            );
        });
    }
    Ok(())
}

/// The node's IPv4 addresses in the calling thread's network namespace, sorted: every
/// address of every interface except loopback ones and those of the interfaces named in
/// `exclude` (the pod bridge). These are where NodePorts and LoadBalancer ports answer, as
/// kube-proxy's default (all local addresses but loopback).
pub fn node_addresses(exclude: &[&str]) -> Result<Vec<Ipv4Addr>, NetError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
    with_netlink(|h| async move {
        let mut skip = Vec::new();
        for name in &exclude {
            if let Some(i) = link_index(&h, name).await? {
                skip.push(i);
            }
        }
        let mut out = Vec::new();
        let mut addrs = h.address().get().execute();
        while let Some(msg) = addrs.try_next().await.map_err(nerr)? {
            if skip.contains(&msg.header.index) {
                continue;
            }
            for a in &msg.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V4(ip)) = a {
                    if !ip.is_loopback() && !out.contains(ip) {
                        out.push(*ip);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    })
}

/// Forgets the host's neighbour (ARP) entries for `ip` on link `link_idx`. A pod IP is handed
/// to a new pod as soon as the old one is gone; an entry the host still holds for the old
/// pod's MAC would black-hole the new pod for up to a minute, until the kernel re-resolves
/// it (the CNI bridge plugin sends gratuitous ARPs for the same reason).
pub(super) async fn forget_neighbour(
    h: &rtnetlink::Handle,
    link_idx: u32,
    ip: Ipv4Addr,
) -> Result<(), NetError> {
    use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
    let mut stale = Vec::new();
    let mut all = h
        .neighbours()
        .get()
        .set_address_family(rtnetlink::packet_route::AddressFamily::Inet)
        .execute();
    while let Some(msg) = all.try_next().await.map_err(nerr)? {
        let hit = msg.header.ifindex == link_idx
            && msg.attributes.iter().any(|a| {
                matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) if *d == ip)
            });
        if hit {
            stale.push(msg);
        }
    }
    for msg in stale {
        match h.neighbours().del(msg).execute().await {
            Ok(()) => {}
            // Gone meanwhile.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => {}
            Err(e) => return Err(nerr(e)),
        }
    }
    Ok(())
}

/// The bridge's own MAC address: fixed (locally administered, from its name), so it does
/// not follow the lowest MAC of its ports. A bridge whose address changes as pods come and
/// go makes every pod's ARP entry for its gateway stale and flushes the host's neighbour
/// table.
pub(super) fn bridge_mac(bridge: &str) -> Vec<u8> {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("kommit-bridge/{bridge}").as_bytes());
    let mut mac = h[..6].to_vec();
    mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
    mac
}
