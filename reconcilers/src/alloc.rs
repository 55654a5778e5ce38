//! Address allocation: node pod CIDRs, pod IPs inside a node's CIDR, service ClusterIPs and
//! NodePorts.
//! Every choice is the lowest free slot or a hash-probed slot, so it is the same on every
//! node and never depends on map iteration order.

use crate::ids::fnv64;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Most subnets or addresses ever scanned for one allocation.
const MAX_SCAN: u64 = 1 << 20;

/// The lowest `mask`-sized subnet of `cluster` not in `used`, if any.
pub fn node_cidr(cluster: Ipv4Net, mask: u8, used: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
    // Walk the subnets and the (sorted) used set together: the first subnet the set skips
    // is free. Linear in the nodes, where a lookup per subnet would add a log factor.
    let mut taken = used
        .range(Ipv4Net::new(cluster.network(), mask).ok()?..)
        .peekable();
    cluster
        .subnets(mask)
        .ok()?
        .take(MAX_SCAN as usize)
        .find(|s| {
            while taken.next_if(|t| *t < s).is_some() {}
            taken.next_if_eq(&s).is_none()
        })
}

/// How many pod IPs a node CIDR holds: all but network, gateway (.1) and broadcast.
pub fn pod_capacity(cidr: Ipv4Net) -> u32 {
    let size = 1u64 << (32 - u32::from(cidr.prefix_len()));
    u32::try_from(size.saturating_sub(3).min(u64::from(u32::MAX))).expect("clamped to u32")
}

/// The lowest free pod IP of `cidr` (offsets from 2 up, skipping broadcast).
pub fn pod_ip(cidr: Ipv4Net, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    pod_ip_from(cidr, used, 0).map(|(ip, _)| ip)
}

/// [`pod_ip`] for callers that allocate several IPs in a row from a growing `used`: the
/// search starts at slot `from` (every lower slot must be taken) and also returns the slot
/// to start the next search at.
pub fn pod_ip_from(cidr: Ipv4Net, used: &BTreeSet<Ipv4Addr>, from: u64) -> Option<(Ipv4Addr, u64)> {
    let base = u32::from(cidr.network());
    let cap = u64::from(pod_capacity(cidr));
    (from..cap.min(MAX_SCAN))
        .map(|i| {
            let ip = Ipv4Addr::from(base + 2 + u32::try_from(i).expect("bounded by MAX_SCAN"));
            (ip, i + 1)
        })
        .find(|(ip, _)| !used.contains(ip))
}

/// The gateway (bridge) address of a node CIDR: its first host.
pub fn gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// A ClusterIP for `service` (`namespace/name`): the one it asks for when that is inside the
/// range and free, otherwise a slot chosen by hashing the name and probing upward. Offsets 0
/// (network), 1 (reserved, as Kubernetes reserves it) and the broadcast are never handed out.
pub fn service_ip(
    range: Ipv4Net,
    service: &str,
    requested: Option<Ipv4Addr>,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let base = u32::from(range.network());
    let size = 1u64 << (32 - u32::from(range.prefix_len()));
    if size < 4 {
        return None;
    }
    let usable = size - 3;
    if let Some(ip) = requested {
        let off = u64::from(u32::from(ip).wrapping_sub(base));
        if range.contains(&ip) && (2..size - 1).contains(&off) && !used.contains(&ip) {
            return Some(ip);
        }
    }
    let start = fnv64(service.as_bytes()) % usable;
    (0..usable.min(MAX_SCAN))
        .map(|i| {
            let off = 2 + (start + i) % usable;
            Ipv4Addr::from(base + u32::try_from(off).expect("offset inside a /0 at most"))
        })
        .find(|ip| !used.contains(ip))
}

/// A NodePort for one service port, `key` naming it (`namespace/name/protocol/port`): a slot
/// of `range` chosen by hashing the key and probing upward past `used`. The same key and
/// `used` always give the same port; None when the range is full.
pub fn node_port(
    range: kommit_schemas::model::config::NodePortRange,
    key: &str,
    used: &BTreeSet<u16>,
) -> Option<u16> {
    let size = u64::from(range.len());
    let start = fnv64(key.as_bytes()) % size;
    (0..size)
        .map(|i| {
            let off = (start + i) % size;
            u16::try_from(u64::from(range.first) + off).expect("inside a u16 range")
        })
        .find(|p| !used.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn node_cidrs_take_the_lowest_free_subnet() {
        let mut used = BTreeSet::new();
        let a = node_cidr(net("10.244.0.0/16"), 24, &used).expect("free");
        assert_eq!(a, net("10.244.0.0/24"));
        used.insert(a);
        used.insert(net("10.244.2.0/24"));
        assert_eq!(
            node_cidr(net("10.244.0.0/16"), 24, &used),
            Some(net("10.244.1.0/24"))
        );
        let full: BTreeSet<_> = net("10.0.0.0/30").subnets(31).expect("ok").collect();
        assert_eq!(node_cidr(net("10.0.0.0/30"), 31, &full), None);
    }

    #[test]
    fn pod_ips_skip_network_gateway_and_broadcast() {
        let c = net("10.244.3.0/29");
        assert_eq!(pod_capacity(c), 5);
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(ip) = pod_ip(c, &used) {
            used.insert(ip);
            got.push(ip.to_string());
        }
        assert_eq!(
            got,
            [
                "10.244.3.2",
                "10.244.3.3",
                "10.244.3.4",
                "10.244.3.5",
                "10.244.3.6"
            ]
        );
        assert_eq!(gateway(c).to_string(), "10.244.3.1");
    }

    #[test]
    fn resumed_pod_ip_searches_match_fresh_ones() {
        let c = net("10.244.7.0/26");
        // Some slots taken up front, with gaps.
        let mut used: BTreeSet<Ipv4Addr> = [2u32, 3, 5, 9, 10, 40]
            .iter()
            .map(|o| Ipv4Addr::from(u32::from(c.network()) + o))
            .collect();
        let mut fresh = used.clone();
        let mut slot = 0;
        loop {
            let want = pod_ip(c, &fresh);
            let got = pod_ip_from(c, &used, slot);
            assert_eq!(got.map(|(ip, _)| ip), want);
            let Some((ip, next)) = got else { break };
            used.insert(ip);
            fresh.insert(ip);
            slot = next;
        }
        assert_eq!(used.len() as u32, pod_capacity(c));
    }

    #[test]
    fn node_ports_hash_probe_inside_the_range() {
        use kommit_schemas::model::config::NodePortRange;
        let r = NodePortRange {
            first: 30000,
            last: 30003,
        };
        let mut used = BTreeSet::new();
        let a = node_port(r, "default/web/TCP/80", &used).expect("free");
        assert_eq!(node_port(r, "default/web/TCP/80", &used), Some(a));
        let mut got = BTreeSet::new();
        while let Some(p) = node_port(r, "default/web/TCP/80", &used) {
            assert!(r.contains(p));
            used.insert(p);
            got.insert(p);
        }
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn service_ips_honour_requests_and_probe_deterministically() {
        let r = net("10.96.0.0/24");
        let used = BTreeSet::new();
        let want: Ipv4Addr = "10.96.0.10".parse().expect("ip");
        assert_eq!(service_ip(r, "default/dns", Some(want), &used), Some(want));
        let a = service_ip(r, "default/web", None, &used).expect("free");
        assert_eq!(service_ip(r, "default/web", None, &used), Some(a));
        let mut used2 = BTreeSet::new();
        used2.insert(a);
        let b = service_ip(r, "default/web", None, &used2).expect("free");
        assert_ne!(a, b);
        // Outside the range or reserved: allocated instead.
        let out: Ipv4Addr = "10.1.0.1".parse().expect("ip");
        assert!(r.contains(&service_ip(r, "x/y", Some(out), &used).expect("free")));
        let reserved: Ipv4Addr = "10.96.0.1".parse().expect("ip");
        assert_ne!(service_ip(r, "x/y", Some(reserved), &used), Some(reserved));
    }
}
