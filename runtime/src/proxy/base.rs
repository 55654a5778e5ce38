//! Pure: the base fragment every table has: the verdict maps and sets, the endpoint maps
//! per protocol, masquerade by mark, the reject chain, the hook chains, and the checks that
//! reject a Service port without endpoints (and, with a Service CIDR, any other address in
//! it) before the packet could leave the node.

use std::sync::LazyLock;

use super::nft::{Hook, HookPoint, Key, Name, Rule, SetDecl, Value, Verdict};
use super::nft::{PRIORITY_DSTNAT, PRIORITY_SRCNAT};
use super::render::{Chain, Fragment};
use super::{NodeConfig, Protocol};

/// Priority of the filter chains: before DNAT (`dstnat` is -100), as kube-proxy.
const HOOK_PRIORITY_FILTER: i32 = -110;

/// The names of the base objects, made once.
pub struct Names {
    /// `service-ips`: ClusterIPs and LoadBalancer ports with endpoints.
    pub service_ips: Name,
    /// `no-endpoint-services`: the same without endpoints (rejected).
    pub no_endpoint_services: Name,
    /// `service-nodeports`: NodePorts with endpoints.
    pub service_nodeports: Name,
    /// `no-endpoint-nodeports`: NodePorts without endpoints (rejected).
    pub no_endpoint_nodeports: Name,
    /// `eps-tcp`, `eps-udp`, `eps-sctp`.
    eps: [Name; 3],
    /// `node-ips`.
    pub node_ips: Name,
    /// `hairpin`.
    pub hairpin: Name,
    /// `reject-chain`.
    pub reject_chain: Name,
    /// `mark-for-masquerade`.
    pub mark_for_masquerade: Name,
}

impl Names {
    /// `eps-<proto>`.
    pub fn eps(&self, p: Protocol) -> &Name {
        match p {
            Protocol::Tcp => &self.eps[0],
            Protocol::Udp => &self.eps[1],
            Protocol::Sctp => &self.eps[2],
        }
    }
}

static NAMES: LazyLock<Names> = LazyLock::new(|| Names {
    service_ips: "service-ips".into(),
    no_endpoint_services: "no-endpoint-services".into(),
    service_nodeports: "service-nodeports".into(),
    no_endpoint_nodeports: "no-endpoint-nodeports".into(),
    eps: ["eps-tcp".into(), "eps-udp".into(), "eps-sctp".into()],
    node_ips: "node-ips".into(),
    hairpin: "hairpin".into(),
    reject_chain: "reject-chain".into(),
    mark_for_masquerade: "mark-for-masquerade".into(),
});

/// The base objects' names.
pub fn names() -> &'static Names {
    &NAMES
}

/// The base fragment for `node`, masquerading with `mark` (without the shared spread chains
/// and hairpin elements, which follow the ports).
pub(super) fn base(node: &NodeConfig, mark: u32) -> Fragment {
    let nm = names();
    let mut f = Fragment::default();
    for (n, decl) in [
        (&nm.service_ips, SetDecl::VerdictByDest),
        (&nm.no_endpoint_services, SetDecl::VerdictByDest),
        (&nm.service_nodeports, SetDecl::VerdictByPort),
        (&nm.no_endpoint_nodeports, SetDecl::VerdictByPort),
        (&nm.node_ips, SetDecl::Addrs),
        (&nm.hairpin, SetDecl::AddrPairs),
    ] {
        f.sets.insert(n.clone(), decl);
    }
    for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        f.sets
            .insert(nm.eps(proto).clone(), SetDecl::EndpointsByDest(proto));
    }
    for a in &node.addresses {
        f.elements
            .insert((nm.node_ips.clone(), Key::Addr(*a)), Value::None);
    }
    let mut chain = |name: &str, hook: Option<Hook>, rules: Vec<Rule>| {
        f.chains.insert(name.into(), Chain { hook, rules });
    };
    let hook = |nat: bool, point: HookPoint, priority: i32| {
        Some(Hook {
            nat,
            point,
            priority,
        })
    };
    let jump = |c: &str| Verdict::Jump(c.into());
    let reject = || Verdict::Goto(nm.reject_chain.clone());
    chain(
        "reject-chain",
        None,
        vec![Rule::RejectTcpReset, Rule::Reject],
    );
    chain("mark-for-masquerade", None, vec![Rule::SetMark(mark)]);
    chain(
        "masquerading",
        None,
        vec![
            Rule::HairpinMasquerade(nm.hairpin.clone()),
            Rule::ReturnUnmarked(mark),
            Rule::FlipMark(mark),
            Rule::Masquerade,
        ],
    );
    chain(
        "services",
        None,
        vec![
            Rule::DestVmap(nm.service_ips.clone()),
            Rule::NodePortVmap {
                addrs: nm.node_ips.clone(),
                map: nm.service_nodeports.clone(),
            },
        ],
    );
    chain(
        "endpoints-check",
        None,
        vec![
            Rule::DestVmap(nm.no_endpoint_services.clone()),
            Rule::NodePortVmap {
                addrs: nm.node_ips.clone(),
                map: nm.no_endpoint_nodeports.clone(),
            },
        ],
    );
    let jump_services = || vec![Rule::Verdict(jump("services"))];
    chain(
        "nat-prerouting",
        hook(true, HookPoint::Prerouting, PRIORITY_DSTNAT),
        jump_services(),
    );
    chain(
        "nat-output",
        hook(true, HookPoint::Output, -100),
        jump_services(),
    );
    chain(
        "nat-postrouting",
        hook(true, HookPoint::Postrouting, PRIORITY_SRCNAT),
        vec![Rule::Verdict(jump("masquerading"))],
    );
    let check = || Rule::CtNew(jump("endpoints-check"));
    chain(
        "filter-input",
        hook(false, HookPoint::Input, HOOK_PRIORITY_FILTER),
        vec![check()],
    );
    let mut forward = vec![check()];
    if let Some(cidr) = node.service_cidr {
        // Forwarded packets were DNATed in prerouting already; what still heads for the
        // Service CIDR matched no service port.
        forward.push(Rule::CtNewDaddr(cidr, reject()));
        chain(
            "filter-output-post-dnat",
            hook(false, HookPoint::Output, -90),
            vec![Rule::CtNewDaddr(cidr, reject())],
        );
    }
    chain(
        "filter-forward",
        hook(false, HookPoint::Forward, HOOK_PRIORITY_FILTER),
        forward,
    );
    chain(
        "filter-output",
        hook(false, HookPoint::Output, HOOK_PRIORITY_FILTER),
        vec![check()],
    );
    f
}
