//! resolv.conf, both ways: reading the node's (for the forwarder's upstreams and for pods
//! with `dnsPolicy: Default`) and writing a pod's, merged the way the kubelet does
//! (`pkg/kubelet/network/dns`). Pure: the node's file comes in as text.

use std::net::{IpAddr, SocketAddr};

/// Most nameservers a resolver uses (glibc's MAXNS); more are dropped.
pub const MAX_NAMESERVERS: usize = 3;
/// Most search domains (the kubelet's `MaxDNSSearchPaths`).
pub const MAX_SEARCHES: usize = 32;
/// Longest search line, domains joined by spaces (the kubelet's `MaxDNSSearchListChars`).
pub const MAX_SEARCH_CHARS: usize = 2048;

/// A pod's DNS policy (`spec.dnsPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsPolicy {
    /// The cluster's DNS, unless the pod uses the host's network (then as `Default`).
    #[default]
    ClusterFirst,
    /// The cluster's DNS, even on the host's network.
    ClusterFirstWithHostNet,
    /// The node's resolv.conf.
    Default,
    /// Only the pod's `dnsConfig`.
    None,
}

impl From<kommit_schemas::model::pod::DnsPolicy> for DnsPolicy {
    fn from(p: kommit_schemas::model::pod::DnsPolicy) -> Self {
        match p {
            kommit_schemas::model::pod::DnsPolicy::ClusterFirst => DnsPolicy::ClusterFirst,
            kommit_schemas::model::pod::DnsPolicy::ClusterFirstWithHostNet => {
                DnsPolicy::ClusterFirstWithHostNet
            }
            kommit_schemas::model::pod::DnsPolicy::Default => DnsPolicy::Default,
            kommit_schemas::model::pod::DnsPolicy::None => DnsPolicy::None,
        }
    }
}

/// One resolver option: `ndots:5` is name `ndots`, value `5`; `rotate` has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOption {
    /// The option's name.
    pub name: String,
    /// Its value, if any.
    pub value: Option<String>,
}

impl DnsOption {
    /// Reads `name` or `name:value`.
    pub fn parse(s: &str) -> DnsOption {
        match s.split_once(':') {
            Some((n, v)) => DnsOption {
                name: n.to_string(),
                value: Some(v.to_string()),
            },
            None => DnsOption {
                name: s.to_string(),
                value: None,
            },
        }
    }

    fn render(&self) -> String {
        match &self.value {
            Some(v) => format!("{}:{v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A pod's `dnsConfig`, or what a resolv.conf holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    /// Nameserver addresses.
    pub nameservers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// Options.
    pub options: Vec<DnsOption>,
}

impl From<&kommit_schemas::model::pod::PodDnsConfig> for DnsConfig {
    fn from(c: &kommit_schemas::model::pod::PodDnsConfig) -> Self {
        DnsConfig {
            nameservers: c.nameservers.clone(),
            searches: c.searches.clone(),
            options: c
                .options
                .iter()
                .map(|o| DnsOption {
                    name: o.name.clone(),
                    value: o.value.clone(),
                })
                .collect(),
        }
    }
}

/// Reads a resolv.conf the way the kubelet does: `nameserver` lines in order, the last
/// `search` (or `domain`) line's domains without trailing dots and without `.`, every
/// `options` line's options; comments (`#`, `;`) and unknown lines ignored.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut c = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(ns) = fields.next() {
                    c.nameservers.push(ns.to_string());
                }
            }
            Some("search") | Some("domain") => {
                c.searches = fields
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            Some("options") => c.options.extend(fields.map(DnsOption::parse)),
            _ => {}
        }
    }
    c
}

/// The forwarder's upstreams from the node's resolv.conf: its first [`MAX_NAMESERVERS`]
/// IP nameservers, port 53, except `own` (the cluster DNS server's own address, which would
/// forward to itself). Loopback resolvers such as systemd-resolved's 127.0.0.53 are kept:
/// the server runs in the node's network namespace, where they answer. (Pods cannot reach
/// them; see [`pod_resolv_conf`] for `dnsPolicy: Default`.) Scoped IPv6 (`fe80::1%eth0`) is
/// skipped.
pub fn upstreams(host_resolv_conf: &str, own: IpAddr) -> Vec<SocketAddr> {
    parse_resolv_conf(host_resolv_conf)
        .nameservers
        .iter()
        .filter_map(|ns| ns.parse::<IpAddr>().ok())
        .filter(|ip| *ip != own)
        .take(MAX_NAMESERVERS)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// What a pod's resolv.conf is made from.
#[derive(Debug, Clone, Copy)]
pub struct PodDns<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// `spec.dnsPolicy`.
    pub policy: DnsPolicy,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `spec.dnsConfig`.
    pub config: Option<&'a DnsConfig>,
    /// The cluster DNS server's address, as pods reach it.
    pub cluster_dns: IpAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub cluster_domain: &'a str,
    /// The node's resolv.conf, as text.
    pub host_resolv_conf: &'a str,
}

/// A pod's resolv.conf and what was dropped to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodResolvConf {
    /// The file's content.
    pub text: String,
    /// What did not fit or was not valid, one line each (for a pod event).
    pub warnings: Vec<String>,
}

/// A pod's resolv.conf, as the kubelet makes it:
/// - `ClusterFirst` (without host network) and `ClusterFirstWithHostNet`: `nameserver
///   <cluster DNS>`, `search <ns>.svc.<domain> svc.<domain> <domain>` then the node's search
///   domains, `options ndots:5`;
/// - `Default` (and `ClusterFirst` on the host network): the node's nameservers, searches and
///   options. A loopback nameserver of the node (systemd-resolved's 127.0.0.53) is not
///   reachable from a pod's network namespace, so it becomes the cluster DNS address, which
///   forwards to it;
/// - `None`: nothing but `dnsConfig`.
///
/// Then `dnsConfig` is merged in: its nameservers and searches appended without duplicates,
/// its options replacing same-named ones. Finally at most 3 nameservers and 32 search domains
/// in 2048 characters are kept; what is dropped is in the warnings.
pub fn pod_resolv_conf(p: &PodDns<'_>) -> PodResolvConf {
    let mut warnings = Vec::new();
    let host = parse_resolv_conf(p.host_resolv_conf);
    let cluster = match p.policy {
        DnsPolicy::None => None,
        DnsPolicy::ClusterFirstWithHostNet => Some(true),
        DnsPolicy::ClusterFirst => Some(!p.host_network),
        DnsPolicy::Default => Some(false),
    };
    let domain = p.cluster_domain.trim_end_matches('.');
    let mut c = match cluster {
        None => DnsConfig::default(),
        Some(true) => DnsConfig {
            nameservers: vec![p.cluster_dns.to_string()],
            searches: [
                format!("{}.svc.{domain}", p.namespace),
                format!("svc.{domain}"),
                domain.to_string(),
            ]
            .into_iter()
            .chain(host.searches.iter().cloned())
            .collect(),
            options: vec![DnsOption::parse("ndots:5")],
        },
        Some(false) => {
            let mut h = host.clone();
            for ns in &mut h.nameservers {
                if ns.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
                    warnings.push(format!(
                        "the node's nameserver {ns} is loopback, unreachable from a pod: using the cluster DNS {} instead",
                        p.cluster_dns
                    ));
                    *ns = p.cluster_dns.to_string();
                }
            }
            h
        }
    };
    if let Some(extra) = p.config {
        c.nameservers.extend(extra.nameservers.iter().cloned());
        c.searches.extend(extra.searches.iter().cloned());
        for o in &extra.options {
            match c.options.iter_mut().find(|e| e.name == o.name) {
                Some(e) => e.value = o.value.clone(),
                None => c.options.push(o.clone()),
            }
        }
    }
    let mut nameservers: Vec<String> = Vec::new();
    for ns in c.nameservers {
        if ns.parse::<IpAddr>().is_err() {
            warnings.push(format!("nameserver `{ns}` is not an IP address: dropped"));
        } else if !nameservers.contains(&ns) {
            nameservers.push(ns);
        }
    }
    if nameservers.len() > MAX_NAMESERVERS {
        warnings.push(format!(
            "{} nameservers, only the first {MAX_NAMESERVERS} kept: dropped {}",
            nameservers.len(),
            nameservers[MAX_NAMESERVERS..].join(" ")
        ));
        nameservers.truncate(MAX_NAMESERVERS);
    }
    let mut searches: Vec<String> = Vec::new();
    for s in c.searches {
        let s = s.trim_end_matches('.').to_string();
        if !s.is_empty() && !s.contains(char::is_whitespace) && !searches.contains(&s) {
            searches.push(s);
        }
    }
    if searches.len() > MAX_SEARCHES {
        warnings.push(format!(
            "{} search domains, only the first {MAX_SEARCHES} kept",
            searches.len()
        ));
        searches.truncate(MAX_SEARCHES);
    }
    while searches
        .iter()
        .map(|s| s.len() + 1)
        .sum::<usize>()
        .saturating_sub(1)
        > MAX_SEARCH_CHARS
    {
        if let Some(s) = searches.pop() {
            warnings.push(format!(
                "search line longer than {MAX_SEARCH_CHARS} characters: dropped {s}"
            ));
        }
    }
    let mut text = String::new();
    for ns in &nameservers {
        text.push_str(&format!("nameserver {ns}\n"));
    }
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !c.options.is_empty() {
        let opts: Vec<String> = c.options.iter().map(DnsOption::render).collect();
        text.push_str(&format!("options {}\n", opts.join(" ")));
    }
    if nameservers.is_empty() {
        warnings.push("no nameserver: the pod's resolver will try 127.0.0.1".into());
    }
    PodResolvConf { text, warnings }
}

#[cfg(test)]
mod tests;
