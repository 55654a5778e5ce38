//! Checks of one Service, with Kubernetes' rules (`ValidateService`) where kommit follows
//! them: what each type allows (ExternalName: `externalName`, no selector, no ClusterIP, no
//! IP families; `externalTrafficPolicy` only on NodePort and LoadBalancer; the LoadBalancer
//! fields only on LoadBalancer), ports (names, duplicates, `targetPort`), and NodePorts in
//! the cluster's range and unique across the tree.

use super::*;
use crate::model::core::{Service, ServiceType, SessionAffinity};
use crate::model::meta::is_dns1123_subdomain;
use crate::model::pod::Protocol;

/// A NodePort some Service of the tree already claimed.
pub(super) struct NodePortClaim {
    service: String,
    protocol: Protocol,
    at: String,
}

/// NodePorts claimed so far, by number.
pub(super) type NodePorts = BTreeMap<u16, Vec<NodePortClaim>>;

fn type_name(t: ServiceType) -> &'static str {
    match t {
        ServiceType::ClusterIp => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
        ServiceType::ExternalName => "ExternalName",
    }
}

pub(super) fn service(
    l: &Loaded,
    s: &Service,
    settings: &ClusterSettings,
    node_ports: &mut NodePorts,
    diags: &mut Vec<Diagnostic>,
) {
    let spec = &s.spec;
    let ty = spec.service_type();
    if !is_dns1123_label(&l.name) {
        diags.push(l.at(
            "/metadata/name",
            format!(
                "Service name `{}` must be a DNS-1123 label (no dots, at most 63 characters)",
                l.name
            ),
        ));
    }
    cluster_ip(l, s, settings, diags);
    let only = |field: &str, allowed: &str| {
        l.at(
            &format!("/spec/{field}"),
            format!("`spec.{field}` may only be set when `type` is {allowed}"),
        )
    };
    // ExternalName: a DNS alias, nothing else.
    if ty == ServiceType::ExternalName {
        external_name(l, s, diags);
    } else if spec.external_name.is_some() {
        diags.push(only("externalName", "ExternalName"));
    }
    if spec.external_traffic_policy.is_some() && !spec.is_external() {
        diags.push(only("externalTrafficPolicy", "NodePort or LoadBalancer"));
    }
    if spec.session_affinity_config.is_some()
        && spec.session_affinity != Some(SessionAffinity::ClientIp)
    {
        diags.push(l.at(
            "/spec/sessionAffinityConfig",
            "`spec.sessionAffinityConfig` must not be set unless `sessionAffinity` is ClientIP",
        ));
    }
    if let Some(class) = &spec.load_balancer_class {
        if ty != ServiceType::LoadBalancer {
            diags.push(only("loadBalancerClass", "LoadBalancer"));
        } else if !is_qualified_name(class) {
            diags.push(l.at(
                "/spec/loadBalancerClass",
                format!("`spec.loadBalancerClass` \"{class}\" must be a qualified name such as example.com/lb (an optional DNS subdomain and `/`, then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"),
            ));
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && ty != ServiceType::LoadBalancer {
        diags.push(only("allocateLoadBalancerNodePorts", "LoadBalancer"));
    }
    for (i, f) in spec.ip_families.iter().enumerate() {
        if spec.ip_families[..i].contains(f) {
            diags.push(l.at(
                &format!("/spec/ipFamilies/{i}"),
                format!("`spec.ipFamilies[{i}]`: IPv4 is listed twice"),
            ));
        }
    }
    ports(l, s, settings, node_ports, diags);
}

fn cluster_ip(l: &Loaded, s: &Service, settings: &ClusterSettings, diags: &mut Vec<Diagnostic>) {
    let ty = s.spec.service_type();
    match s.spec.cluster_ip.as_deref() {
        None | Some("") => {}
        Some(_) if ty == ServiceType::ExternalName => diags.push(l.at(
            "/spec/clusterIP",
            "`spec.clusterIP` may not be set for ExternalName services: they have no virtual IP",
        )),
        Some("None") if matches!(ty, ServiceType::NodePort | ServiceType::LoadBalancer) => {
            diags.push(l.at(
                "/spec/clusterIP",
                format!(
                    "`spec.clusterIP` may not be \"None\" for {} services: a headless Service has no virtual IP to expose",
                    type_name(ty)
                ),
            ))
        }
        Some("None") => {}
        Some(ip) => match ip.parse::<std::net::Ipv4Addr>() {
            Ok(a) if settings.service_cidr.contains(&a) => {}
            Ok(_) => diags.push(l.at(
                "/spec/clusterIP",
                format!(
                    "clusterIP {ip} is outside the service CIDR {}",
                    settings.service_cidr
                ),
            )),
            Err(_) => diags.push(l.at(
                "/spec/clusterIP",
                format!("clusterIP \"{ip}\" is not an IPv4 address or \"None\""),
            )),
        },
    }
}

fn external_name(l: &Loaded, s: &Service, diags: &mut Vec<Diagnostic>) {
    let spec = &s.spec;
    match spec.external_name.as_deref() {
        None | Some("") | Some(".") => diags.push(l.at(
            "/spec/type",
            "`spec.externalName` is required for ExternalName services: the DNS name this Service is an alias for",
        )),
        Some(n) if !is_dns1123_subdomain(n.strip_suffix('.').unwrap_or(n)) => diags.push(l.at(
            "/spec/externalName",
            format!("`spec.externalName` \"{n}\" must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters), optionally ending with '.'"),
        )),
        Some(_) => {}
    }
    let forbidden = |field: &str, why: &str| {
        l.at(
            &format!("/spec/{field}"),
            format!("`spec.{field}` may not be set for ExternalName services{why}"),
        )
    };
    if !spec.selector.is_empty() {
        diags.push(forbidden(
            "selector",
            ": the name is an alias (CNAME) for `spec.externalName` and has no endpoints",
        ));
    }
    if !spec.ip_families.is_empty() {
        diags.push(forbidden("ipFamilies", ""));
    }
    if spec.ip_family_policy.is_some() {
        diags.push(forbidden("ipFamilyPolicy", ""));
    }
}

fn ports(
    l: &Loaded,
    s: &Service,
    settings: &ClusterSettings,
    node_ports: &mut NodePorts,
    diags: &mut Vec<Diagnostic>,
) {
    let spec = &s.spec;
    let ty = spec.service_type();
    let range = settings.service_node_port_range;
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen: BTreeMap<(Protocol, u16), usize> = BTreeMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let pp = format!("/spec/ports/{i}");
        match &p.name {
            None if spec.ports.len() > 1 => diags.push(l.at(
                &pp,
                format!("`spec.ports[{i}].name` is required when a Service has several ports"),
            )),
            None => {}
            Some(n) => {
                if let Some(first) = names.get(n.as_str()) {
                    diags.push(l.at(
                        &format!("{pp}/name"),
                        format!("`spec.ports[{i}].name`: `{n}` is already the name of `spec.ports[{first}]`"),
                    ));
                } else {
                    names.insert(n.as_str(), i);
                }
            }
        }
        let key = (p.protocol(), p.number());
        if let Some(first) = seen.get(&key) {
            diags.push(l.at(
                &format!("{pp}/port"),
                format!(
                    "`spec.ports[{i}]`: port {}/{} is already defined by `spec.ports[{first}]`",
                    key.1,
                    protocol_name(key.0)
                ),
            ));
        } else {
            seen.insert(key, i);
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => diags.push(l.at(
                &format!("{pp}/targetPort"),
                format!("`spec.ports[{i}].targetPort`: {n} is out of range 1..=65535"),
            )),
            Some(IntOrString::String(n)) if !is_port_name(n) => diags.push(l.at(
                &format!("{pp}/targetPort"),
                format!("`spec.ports[{i}].targetPort`: \"{n}\" must be a port number or a container port name (at most 15 lowercase letters, digits and '-', with at least one letter)"),
            )),
            _ => {}
        }
        let Some(np) = p.explicit_node_port() else {
            continue;
        };
        let ptr = format!("{pp}/nodePort");
        if !spec.is_external() {
            diags.push(l.at(
                &ptr,
                format!(
                    "`nodePort` is only allowed on a Service of type NodePort or LoadBalancer, not {}",
                    type_name(ty)
                ),
            ));
            continue;
        }
        if !range.contains(np) {
            diags.push(l.at(
                &ptr,
                format!("nodePort {np} is outside the NodePort range {range} (kommit.yaml `spec.serviceNodePortRange`)"),
            ));
            continue;
        }
        let claims = node_ports.entry(np).or_default();
        let me = l.display();
        // One Service may use a number once per protocol; another Service not at all.
        if let Some(c) = claims
            .iter()
            .find(|c| c.service != me || c.protocol == p.protocol())
        {
            diags.push(l.at(
                &ptr,
                format!("nodePort {np} is already used by {} at {}", c.service, c.at),
            ));
            continue;
        }
        let pos = l.spans.value_pos(&ptr);
        claims.push(NodePortClaim {
            service: me,
            protocol: p.protocol(),
            at: format!("{}:{}:{}", l.path, pos.line, pos.col),
        });
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Kubernetes' `IsValidPortName` (an IANA service name): 1 to 15 lowercase letters, digits
/// and '-', at least one letter, no '-' at either end and no "--".
pub(crate) fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.bytes().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Kubernetes' `IsQualifiedName`: an optional DNS-1123 subdomain prefix and `/`, then a name
/// of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
pub(crate) fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let b = name.as_bytes();
    prefix.is_none_or(is_dns1123_subdomain)
        && (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_qualified_names() {
        for (n, ok) in [
            ("http", true),
            ("http-alt", true),
            ("h2", true),
            ("8080", false),
            ("-http", false),
            ("http--x", false),
            ("Http", false),
            ("a-very-long-port-name", false),
            ("", false),
        ] {
            assert_eq!(is_port_name(n), ok, "{n}");
        }
        for (n, ok) in [
            ("example.com/lb", true),
            ("lb", true),
            ("io.cilium/bgp-control-plane", true),
            ("Example.com/lb", false),
            ("example.com/", false),
            ("/lb", false),
            ("a/b/c", false),
            ("-lb", false),
        ] {
            assert_eq!(is_qualified_name(n), ok, "{n}");
        }
    }
}
