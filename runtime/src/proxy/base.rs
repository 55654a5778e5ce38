//! Pure: the base fragment every table has: the verdict maps and sets, the endpoint maps
//! per protocol, masquerade by mark, the reject chain, the hook chains, and the checks that
//! reject a Service port without endpoints (and, with a Service CIDR, any other address in
//! it) before the packet could leave the node.

use super::render::{Chain, Fragment};
use super::{NodeConfig, Protocol};

/// Priority of the filter chains: before DNAT (`dstnat` is -100), as kube-proxy.
const HOOK_PRIORITY_FILTER: i32 = -110;

/// The base fragment for `node`, masquerading with `mark`.
pub(super) fn base(node: &NodeConfig, mark: u32) -> Fragment {
    let mut f = Fragment::default();
    let vmap3 = "{ type ipv4_addr . inet_proto . inet_service : verdict ; }";
    let vmap2 = "{ type inet_proto . inet_service : verdict ; }";
    for (name, body) in [
        ("service-ips", vmap3),
        ("no-endpoint-services", vmap3),
        ("service-nodeports", vmap2),
        ("no-endpoint-nodeports", vmap2),
    ] {
        f.sets.insert(name.into(), ("map", body.into()));
    }
    for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        let p = proto.nft();
        f.sets.insert(
            format!("eps-{p}"),
            (
                "map",
                format!("{{ typeof ip daddr . {p} dport . numgen random mod 1 : ip daddr . {p} dport ; }}"),
            ),
        );
    }
    f.sets
        .insert("node-ips".into(), ("set", "{ type ipv4_addr ; }".into()));
    f.sets.insert(
        "hairpin".into(),
        ("set", "{ type ipv4_addr . ipv4_addr ; }".into()),
    );
    for a in &node.addresses {
        f.elements
            .insert(("node-ips".into(), a.to_string()), String::new());
    }
    let mut chain = |name: &str, hook: Option<String>, rules: &[String]| {
        f.chains.insert(
            name.into(),
            Chain {
                hook,
                rules: rules.to_vec(),
            },
        );
    };
    let hook = |ty: &str, hook: &str, prio: &str| {
        Some(format!(
            "{{ type {ty} hook {hook} priority {prio} ; policy accept ; }}"
        ))
    };
    let filt = HOOK_PRIORITY_FILTER.to_string();
    chain(
        "reject-chain",
        None,
        &[
            "meta l4proto tcp reject with tcp reset".into(),
            "reject".into(),
        ],
    );
    chain(
        "mark-for-masquerade",
        None,
        &[format!("meta mark set meta mark | {mark:#x}")],
    );
    chain(
        "masquerading",
        None,
        &[
            "ct status dnat ip saddr . ip daddr @hairpin masquerade".into(),
            format!("meta mark & {mark:#x} == 0 return"),
            format!("meta mark set meta mark ^ {mark:#x}"),
            "masquerade fully-random".into(),
        ],
    );
    chain(
        "services",
        None,
        &[
            "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
            "ip daddr @node-ips meta l4proto . th dport vmap @service-nodeports".into(),
        ],
    );
    chain(
        "endpoints-check",
        None,
        &[
            "ip daddr . meta l4proto . th dport vmap @no-endpoint-services".into(),
            "ip daddr @node-ips meta l4proto . th dport vmap @no-endpoint-nodeports".into(),
        ],
    );
    let jump_services = ["jump services".to_string()];
    chain(
        "nat-prerouting",
        hook("nat", "prerouting", "dstnat"),
        &jump_services,
    );
    chain("nat-output", hook("nat", "output", "-100"), &jump_services);
    chain(
        "nat-postrouting",
        hook("nat", "postrouting", "srcnat"),
        &["jump masquerading".into()],
    );
    let check = "ct state new jump endpoints-check".to_string();
    chain(
        "filter-input",
        hook("filter", "input", &filt),
        std::slice::from_ref(&check),
    );
    let mut forward = vec![check.clone()];
    if let Some(cidr) = node.service_cidr {
        // Forwarded packets were DNATed in prerouting already; what still heads for the
        // Service CIDR matched no service port.
        forward.push(format!("ct state new ip daddr {cidr} goto reject-chain"));
        chain(
            "filter-output-post-dnat",
            hook("filter", "output", "-90"),
            &[format!("ct state new ip daddr {cidr} goto reject-chain")],
        );
    }
    chain("filter-forward", hook("filter", "forward", &filt), &forward);
    chain("filter-output", hook("filter", "output", &filt), &[check]);
    f
}
