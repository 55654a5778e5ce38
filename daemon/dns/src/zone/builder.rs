//! [`ZoneBuilder`]: records in, a [`Zone`] with every answer encoded out. It knows DNS, not
//! Kubernetes; `build.rs` maps the cluster state onto it.

use super::{reverse_apex, reverse_name, Apex, Node, Prepared, Zone, ZoneError, MAX_BODY, TTL};
use crate::wire::{self, encode_name, prepend_label, push_record, rcode, rtype, QNAME_POINTER};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// One record's data. Ordered, so a zone's answers do not depend on insertion order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Data {
    A(Ipv4Addr),
    Cname(Vec<u8>),
    Ptr(Vec<u8>),
    Srv { port: u16, target: Vec<u8> },
    Soa,
}

impl Data {
    fn rtype(&self) -> u16 {
        match self {
            Data::A(_) => rtype::A,
            Data::Cname(_) => rtype::CNAME,
            Data::Ptr(_) => rtype::PTR,
            Data::Srv { .. } => rtype::SRV,
            Data::Soa => rtype::SOA,
        }
    }
}

/// Collects records under one cluster domain and reverse ranges, then encodes the zone.
/// Names are wire-form (see [`ZoneBuilder::name`]); a record outside the zone's authority is
/// dropped, since the zone could never serve it.
#[derive(Debug, Clone)]
pub struct ZoneBuilder {
    domain: Vec<u8>,
    reverse: Vec<Ipv4Net>,
    serial: u32,
    records: BTreeMap<Vec<u8>, BTreeSet<Data>>,
}

impl ZoneBuilder {
    /// A builder for `cluster_domain` (e.g. `cluster.local`), authoritative for the reverse
    /// names of `reverse_ranges` (the pod and service ranges); `serial` goes in the SOA.
    pub fn new(
        cluster_domain: &str,
        reverse_ranges: &[Ipv4Net],
        serial: u32,
    ) -> Result<Self, ZoneError> {
        let domain = encode_name(cluster_domain)
            .filter(|d| d.len() > 1)
            .ok_or_else(|| ZoneError::BadDomain(cluster_domain.to_string()))?;
        let mut reverse: Vec<Ipv4Net> = reverse_ranges.iter().map(|r| r.trunc()).collect();
        reverse.sort();
        reverse.dedup();
        Ok(Self {
            domain,
            reverse,
            serial,
            records: BTreeMap::new(),
        })
    }

    /// The wire name of `labels` (leftmost first) under the cluster domain: `["web",
    /// "default", "svc"]` is `web.default.svc.<domain>`. `None` if a label is empty, longer
    /// than 63 bytes or holds a dot, or the name is longer than 255 bytes.
    pub fn name(&self, labels: &[&str]) -> Option<Vec<u8>> {
        let mut out = self.domain.clone();
        for l in labels.iter().rev() {
            if l.contains('.') {
                return None;
            }
            out = prepend_label(l, &out)?;
        }
        Some(out)
    }

    fn under_domain(&self, name: &[u8]) -> bool {
        name.len() >= self.domain.len() && name.ends_with(&self.domain) && {
            // The suffix must start at a label boundary.
            let mut at = 0;
            while at < name.len() - self.domain.len() {
                at += 1 + name[at] as usize;
            }
            at == name.len() - self.domain.len()
        }
    }

    fn add(&mut self, name: Vec<u8>, data: Data) {
        if self.under_domain(&name) {
            self.records.entry(name).or_default().insert(data);
        } else {
            tracing::debug!(name = %wire::display_name(&name), "record outside the cluster domain dropped");
        }
    }

    /// An A record.
    pub fn add_a(&mut self, name: Vec<u8>, ip: Ipv4Addr) {
        self.add(name, Data::A(ip));
    }

    /// A CNAME to `target` (a dotted name, e.g. an ExternalName). A name with a CNAME holds
    /// nothing else; an invalid target is dropped.
    pub fn add_cname(&mut self, name: Vec<u8>, target: &str) {
        match encode_name(target).filter(|t| t.len() > 1) {
            Some(t) => self.add(name, Data::Cname(t)),
            None => tracing::debug!(target, "invalid CNAME target dropped"),
        }
    }

    /// An SRV record (priority 0; the weight is split evenly over the set when built).
    pub fn add_srv(&mut self, name: Vec<u8>, port: u16, target: Vec<u8>) {
        self.add(name, Data::Srv { port, target });
    }

    /// A PTR record for `ip`, if `ip` is in one of the reverse ranges.
    pub fn add_ptr(&mut self, ip: Ipv4Addr, target: Vec<u8>) {
        if self.reverse.iter().any(|r| r.contains(&ip)) {
            self.records
                .entry(reverse_name(ip))
                .or_default()
                .insert(Data::Ptr(target));
        } else {
            tracing::debug!(%ip, "PTR outside the reverse ranges dropped");
        }
    }

    /// Encodes every answer.
    pub fn build(mut self) -> Zone {
        let mut apex_names = vec![self.domain.clone()];
        apex_names.extend(self.reverse.iter().map(reverse_apex));
        for a in &apex_names {
            self.records.entry(a.clone()).or_default().insert(Data::Soa);
        }
        let soa_rdata = soa_rdata(&self.domain, self.serial);
        let mut names: HashMap<Box<[u8]>, Node> = HashMap::new();
        let mut records = 0;
        for (name, data) in &self.records {
            let data: Vec<&Data> = match data.iter().find(|d| matches!(d, Data::Cname(_))) {
                // RFC 1034 §3.6.2: a CNAME and other data never share a name.
                Some(c) if !data.iter().any(|d| matches!(d, Data::Soa)) => vec![c],
                _ => data
                    .iter()
                    .filter(|d| !matches!(d, Data::Cname(_)))
                    .collect(),
            };
            records += data.len();
            let node = Node {
                rrsets: self.encode_node(name, &data, &soa_rdata),
                cname: data.iter().any(|d| matches!(d, Data::Cname(_))),
            };
            names.insert(name.clone().into_boxed_slice(), node);
        }
        // Empty non-terminals: every ancestor of a name down to its apex exists (NODATA,
        // not NXDOMAIN: RFC 8020).
        let owners: Vec<Vec<u8>> = self.records.keys().cloned().collect();
        for name in owners {
            let Some(apex) = apex_names.iter().find(|a| name.ends_with(a)) else {
                continue;
            };
            let mut at = 0;
            while name.len() - at > apex.len() {
                at += 1 + name[at] as usize;
                names.entry(name[at..].into()).or_default();
            }
        }
        let apexes = apex_names
            .iter()
            .map(|a| {
                let mut body = Vec::new();
                push_record(&mut body, a, rtype::SOA, TTL, &soa_rdata);
                let negative = |rc| Prepared {
                    rcode: rc,
                    an: 0,
                    ns: 1,
                    ar: 0,
                    additional_at: body.len(),
                    body: body.clone().into_boxed_slice(),
                };
                Apex {
                    nodata: negative(rcode::NOERROR),
                    nxdomain: negative(rcode::NXDOMAIN),
                }
            })
            .collect();
        let domain_labels = count_labels(&self.domain);
        Zone {
            names,
            domain: self.domain.into_boxed_slice(),
            domain_labels,
            apexes,
            reverse: self.reverse,
            records,
        }
    }

    /// The answers of one name: one per type it holds, and `ANY` with all of them.
    fn encode_node(&self, name: &[u8], data: &[&Data], soa: &[u8]) -> Vec<(u16, Prepared)> {
        let mut by_type: BTreeMap<u16, Vec<&Data>> = BTreeMap::new();
        for d in data {
            by_type.entry(d.rtype()).or_default().push(d);
        }
        let mut out: Vec<(u16, Prepared)> = by_type
            .iter()
            .map(|(t, set)| (*t, self.encode_set(name, set, soa)))
            .collect();
        if !data.is_empty() {
            out.push((rtype::ANY, self.encode_set(name, data, soa)));
        }
        out
    }

    /// One answer: `set` as answer records owned by the question's name, SRV targets' A
    /// records as additionals, cut at [`MAX_BODY`].
    fn encode_set(&self, name: &[u8], set: &[&Data], soa: &[u8]) -> Prepared {
        let srv_count = set.iter().filter(|d| matches!(d, Data::Srv { .. })).count();
        let weight = 100usize
            .checked_div(srv_count)
            .map_or(0, |w| w.max(1) as u16);
        let mut body = Vec::new();
        let mut an = 0u16;
        let mut rdata = Vec::with_capacity(64);
        for d in set {
            rdata.clear();
            match d {
                Data::A(ip) => rdata.extend_from_slice(&ip.octets()),
                Data::Cname(t) | Data::Ptr(t) => rdata.extend_from_slice(t),
                Data::Srv { port, target } => {
                    rdata.extend_from_slice(&0u16.to_be_bytes());
                    rdata.extend_from_slice(&weight.to_be_bytes());
                    rdata.extend_from_slice(&port.to_be_bytes());
                    rdata.extend_from_slice(target);
                }
                Data::Soa => rdata.extend_from_slice(soa),
            }
            if body.len() + 12 + rdata.len() > MAX_BODY {
                tracing::debug!(name = %wire::display_name(name), "answer cut at {MAX_BODY} bytes");
                break;
            }
            push_record(&mut body, &QNAME_POINTER, d.rtype(), TTL, &rdata);
            an += 1;
        }
        let additional_at = body.len();
        let mut ar = 0u16;
        let mut seen = BTreeSet::new();
        for d in set {
            let Data::Srv { target, .. } = d else {
                continue;
            };
            if !seen.insert(target) {
                continue;
            }
            for extra in self.records.get(target).into_iter().flatten() {
                if let Data::A(ip) = extra {
                    if body.len() + target.len() + 14 > MAX_BODY {
                        break;
                    }
                    push_record(&mut body, target, rtype::A, TTL, &ip.octets());
                    ar += 1;
                }
            }
        }
        Prepared {
            rcode: rcode::NOERROR,
            an,
            ns: 0,
            ar,
            body: body.into_boxed_slice(),
            additional_at,
        }
    }
}

fn count_labels(wire: &[u8]) -> usize {
    let (mut at, mut n) = (0, 0);
    while at < wire.len() && wire[at] != 0 {
        at += 1 + wire[at] as usize;
        n += 1;
    }
    n
}

/// The SOA data: `ns.dns.<domain> hostmaster.<domain> serial 7200 1800 86400 TTL`.
fn soa_rdata(domain: &[u8], serial: u32) -> Vec<u8> {
    let ns = prepend_label("dns", domain)
        .and_then(|d| prepend_label("ns", &d))
        .unwrap_or_else(|| domain.to_vec());
    let mbox = prepend_label("hostmaster", domain).unwrap_or_else(|| domain.to_vec());
    let mut out = Vec::with_capacity(ns.len() + mbox.len() + 20);
    out.extend_from_slice(&ns);
    out.extend_from_slice(&mbox);
    for v in [serial, 7200, 1800, 86400, TTL] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}
