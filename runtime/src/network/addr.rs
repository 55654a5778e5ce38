//! The pure parts of the pod network: address checks and picks, veth names, the nft script.

use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::spec::PortMapping;
use crate::traits::{PodAddress, Result, RuntimeError};

/// Check an assigned address against the current allocations (`pod -> (ip, cidr)`): Ok(true)
/// when `pod` already holds exactly this address (attach is then a no-op), Ok(false) when it
/// may be wired. Refuses a CIDR that is not a network address or is smaller than a /30, an IP
/// that is not a host address of the CIDR or is its gateway, an IP held by another pod, a
/// second address for the same pod, and a CIDR other than the one attached pods are in.
pub fn check_assignment(
    pod: &str,
    addr: PodAddress,
    allocs: &BTreeMap<String, (Ipv4Addr, Option<Ipv4Net>)>,
) -> Result<bool> {
    let PodAddress { ip, cidr } = addr;
    if cidr.trunc() != cidr || cidr.prefix_len() > 30 {
        return Err(RuntimeError::InvalidSpec(format!(
            "pod {pod}: pod CIDR {cidr} must be a network address with a prefix of at most /30"
        )));
    }
    if !cidr.hosts().any(|h| h == ip) {
        return Err(RuntimeError::InvalidSpec(format!(
            "pod {pod}: IP {ip} is not a host address of {cidr}"
        )));
    }
    if gateway(&cidr) == Some(ip) {
        return Err(RuntimeError::InvalidSpec(format!(
            "pod {pod}: IP {ip} is the gateway of {cidr}"
        )));
    }
    if let Some((have, c)) = allocs.get(pod) {
        if *have == ip && c.is_none_or(|c| c == cidr) {
            return Ok(true);
        }
        return Err(RuntimeError::InvalidState(format!(
            "pod {pod} is attached with IP {have}, not {ip}; detach it first"
        )));
    }
    for (other, (oip, ocidr)) in allocs {
        if *oip == ip {
            return Err(RuntimeError::InvalidState(format!(
                "pod {pod}: IP {ip} is allocated to pod {other}"
            )));
        }
        if let Some(oc) = ocidr.filter(|oc| *oc != cidr) {
            return Err(RuntimeError::InvalidState(format!(
                "pod {pod}: the pod network is in {oc} (pod {other} is attached), not {cidr}"
            )));
        }
    }
    Ok(false)
}

/// First free host address of `cidr` after the gateway (first host), or None.
pub fn ipam_pick(cidr: &Ipv4Net, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    cidr.hosts().skip(1).find(|ip| !used.contains(ip))
}

/// The gateway (bridge) address of `cidr`.
pub fn gateway(cidr: &Ipv4Net) -> Option<Ipv4Addr> {
    cidr.hosts().next()
}

/// Host-side veth name for a pod: stable, at most 15 bytes.
pub fn veth_name(bridge: &str, pod: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{bridge}/{pod}").as_bytes());
    format!("vk{}", &hex::encode(h)[..10])
}

/// The nft script for a table: masquerade pod traffic of the node's `cidr` leaving the
/// cluster's pod network (`cluster`, when it holds `cidr`; else the node's CIDR alone), so
/// traffic to pods on other nodes keeps its pod source address; DNAT hostPorts.
pub fn nft_script(
    table: &str,
    cidr: &Ipv4Net,
    cluster: Option<&Ipv4Net>,
    pods: &BTreeMap<String, (Ipv4Addr, Vec<PortMapping>)>,
) -> String {
    let inside = cluster.filter(|c| c.contains(cidr)).unwrap_or(cidr);
    let mut dnat = String::new();
    for (pod, (ip, ports)) in pods {
        for p in ports {
            dnat.push_str(&format!(
                "    {} dport {} dnat to {}:{} comment \"{}\"\n",
                p.protocol, p.host_port, ip, p.container_port, pod
            ));
        }
    }
    format!(
        "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {cidr} ip daddr != {inside} masquerade\n  }}\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump hostports\n  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump hostports\n  }}\n  chain hostports {{\n{dnat}  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, cidr: &str) -> PodAddress {
        PodAddress {
            ip: ip.parse().expect("ip"),
            cidr: cidr.parse().expect("cidr"),
        }
    }

    #[test]
    fn assignments_are_checked() {
        let mut allocs = BTreeMap::new();
        let a = addr("10.244.1.2", "10.244.1.0/24");
        assert!(!check_assignment("a", a, &allocs).expect("fresh"));
        allocs.insert("a".to_string(), (a.ip, Some(a.cidr)));
        assert!(check_assignment("a", a, &allocs).expect("same pod, same IP"));
        let spec = |ip, cidr| {
            matches!(
                check_assignment("b", addr(ip, cidr), &allocs),
                Err(RuntimeError::InvalidSpec(_))
            )
        };
        let state = |pod, ip, cidr| {
            matches!(
                check_assignment(pod, addr(ip, cidr), &allocs),
                Err(RuntimeError::InvalidState(_))
            )
        };
        assert!(spec("10.244.1.1", "10.244.1.0/24"), "gateway");
        assert!(spec("10.244.1.0", "10.244.1.0/24"), "network address");
        assert!(spec("10.244.1.255", "10.244.1.0/24"), "broadcast");
        assert!(spec("10.244.2.5", "10.244.1.0/24"), "outside");
        assert!(spec("10.244.1.5", "10.244.1.4/23"), "host bits in the CIDR");
        assert!(spec("10.244.1.2", "10.244.1.0/31"), "too small");
        assert!(state("b", "10.244.1.2", "10.244.1.0/24"), "taken");
        assert!(state("a", "10.244.1.3", "10.244.1.0/24"), "second IP");
        assert!(state("b", "10.9.0.2", "10.9.0.0/24"), "second CIDR");
        assert!(!check_assignment("b", addr("10.244.1.3", "10.244.1.0/24"), &allocs).expect("ok"));
        // Allocations from before addresses were assigned carry no CIDR.
        allocs.insert("old".to_string(), ("10.9.0.7".parse().expect("ip"), None));
        assert!(!check_assignment("b", addr("10.244.1.3", "10.244.1.0/24"), &allocs).expect("ok"));
    }

    #[test]
    fn ipam_skips_gateway_and_used() {
        let cidr: Ipv4Net = "10.244.1.0/29".parse().expect("cidr");
        assert_eq!(gateway(&cidr), Some(Ipv4Addr::new(10, 244, 1, 1)));
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(ip) = ipam_pick(&cidr, &used) {
            used.insert(ip);
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, vec![2, 3, 4, 5, 6]);
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let a = veth_name("kommit0", "default_web-0_abcdef");
        assert!(a.len() <= 15);
        assert_ne!(a, veth_name("kommit0", "other"));
        assert_eq!(a, veth_name("kommit0", "default_web-0_abcdef"));
    }

    #[test]
    fn nft_script_has_masquerade_and_dnat() {
        let cidr: Ipv4Net = "10.244.1.0/24".parse().expect("cidr");
        let mut pods = BTreeMap::new();
        pods.insert(
            "web".to_string(),
            (
                Ipv4Addr::new(10, 244, 1, 2),
                vec![PortMapping {
                    protocol: "tcp".into(),
                    host_port: 8080,
                    container_port: 80,
                }],
            ),
        );
        let s = nft_script("kommit", &cidr, None, &pods);
        assert!(
            s.contains("ip saddr 10.244.1.0/24 ip daddr != 10.244.1.0/24 masquerade"),
            "{s}"
        );
        // Pods on other nodes of the cluster's pod network are reached unmasqueraded.
        let cluster: Ipv4Net = "10.244.0.0/16".parse().expect("cidr");
        let s = nft_script("kommit", &cidr, Some(&cluster), &pods);
        assert!(
            s.contains("ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 masquerade"),
            "{s}"
        );
        // A cluster range that does not hold the node's CIDR is ignored.
        let other: Ipv4Net = "10.9.0.0/16".parse().expect("cidr");
        let s = nft_script("kommit", &cidr, Some(&other), &pods);
        assert!(
            s.contains("ip saddr 10.244.1.0/24 ip daddr != 10.244.1.0/24 masquerade"),
            "{s}"
        );
        assert!(
            s.contains("tcp dport 8080 dnat to 10.244.1.2:80 comment \"web\""),
            "{s}"
        );
        assert!(s.starts_with("table ip kommit {}\ndelete table ip kommit\n"));
    }
}
