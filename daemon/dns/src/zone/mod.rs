//! The cluster's zone: every name the replicated state gives, with its answers encoded once
//! when the zone is built, so answering a query is a hash lookup and a copy.
//!
//! A [`Zone`] is immutable. The server holds the current one behind a [`ZoneHandle`]
//! (an `ArcSwap`), and the daemon builds a new zone from each applied state and swaps it
//! in: a name is in the zone exactly while the state that made it is.
//!
//! The zone is authoritative for the cluster domain and for the reverse names of the pod and
//! service ranges. Under those it answers NXDOMAIN for a name it does not hold and NODATA
//! (NOERROR, no answer) for a name it holds without records of the asked type; both carry
//! the apex's SOA in the authority section. Every other name is not the zone's
//! ([`Lookup::NotOurs`]) and goes to the forwarder.

mod build;
mod builder;

pub use build::{affects_zone, external_name, from_state};
pub use builder::ZoneBuilder;

use crate::wire::{self, rcode, rtype, Question};
use arc_swap::ArcSwap;
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// TTL of every record the zone serves, and of its negative answers (the SOA minimum): the
/// default of CoreDNS's kubernetes plugin.
pub const TTL: u32 = 5;

/// Largest body (records after the question) of one answer. Beyond it an RRset is cut, so
/// every answer fits a TCP message with room for the question and OPT.
pub const MAX_BODY: usize = 64_000;

/// Errors building a zone.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The cluster domain is not a valid DNS name.
    #[error("cluster domain `{0}` is not a valid DNS name")]
    BadDomain(String),
}

/// One encoded answer: the header counts, the response code and the records after the
/// question. Answer records are owned by the question's name through a compression pointer,
/// so the same bytes answer whatever case the query used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The response code.
    pub rcode: u8,
    /// Answer records.
    pub an: u16,
    /// Authority records.
    pub ns: u16,
    /// Additional records (the OPT record is not among them).
    pub ar: u16,
    /// The encoded records.
    pub body: Box<[u8]>,
    /// Where the additional records start in `body`: when the whole body is too large for
    /// UDP but this much fits, the answer goes without its additionals (RFC 2181 §9: no TC).
    pub additional_at: usize,
}

/// A name in the zone: its answers by type, and what the types it lacks get.
#[derive(Debug, Default)]
struct Node {
    /// (type, answer), types ascending; `ANY` holds every record.
    rrsets: Vec<(u16, Prepared)>,
    /// A CNAME answers every type but CNAME's own too.
    cname: bool,
}

/// An apex the zone is authoritative for: its negative answers (NODATA and NXDOMAIN share
/// the SOA body, with their own response codes).
#[derive(Debug)]
struct Apex {
    nodata: Prepared,
    nxdomain: Prepared,
}

/// What the zone says about a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// An authoritative answer: positive, NODATA or NXDOMAIN.
    Answer(&'a Prepared),
    /// The name is under the zone but the class is not IN.
    Refused,
    /// Not under the cluster domain or the reverse ranges: forward it.
    NotOurs,
}

/// The cluster's names and their pre-encoded answers. Cheap to share (`Arc`) and to swap.
#[derive(Debug)]
pub struct Zone {
    names: HashMap<Box<[u8]>, Node>,
    domain: Box<[u8]>,
    domain_labels: usize,
    /// The cluster domain's apex is first; then one per reverse range.
    apexes: Vec<Apex>,
    reverse: Vec<Ipv4Net>,
    records: usize,
}

impl Zone {
    /// An empty zone for `cluster_domain` (only its apex and SOA), authoritative for the
    /// reverse names of `reverse_ranges`.
    pub fn empty(cluster_domain: &str, reverse_ranges: &[Ipv4Net]) -> Result<Zone, ZoneError> {
        Ok(ZoneBuilder::new(cluster_domain, reverse_ranges, 0)?.build())
    }

    /// How many names the zone holds (empty non-terminals included).
    pub fn names(&self) -> usize {
        self.names.len()
    }

    /// How many records the zone holds (each once, however many answers carry it).
    pub fn records(&self) -> usize {
        self.records
    }

    /// The cluster domain, dotted.
    pub fn domain(&self) -> String {
        wire::display_name(&self.domain)
    }

    /// Answers a question from the zone.
    pub fn lookup(&self, q: &Question) -> Lookup<'_> {
        let Some(apex) = self.authority(q) else {
            return Lookup::NotOurs;
        };
        if q.qclass != wire::CLASS_IN && q.qclass != rtype::ANY {
            return Lookup::Refused;
        }
        let apex = &self.apexes[apex];
        let Some(node) = self.names.get(q.wire_name()) else {
            return Lookup::Answer(&apex.nxdomain);
        };
        if let Some(p) = find(&node.rrsets, q.qtype) {
            return Lookup::Answer(p);
        }
        if node.cname {
            if let Some(p) = find(&node.rrsets, rtype::CNAME) {
                return Lookup::Answer(p);
            }
        }
        Lookup::Answer(&apex.nodata)
    }

    /// Which apex (index) a question's name falls under, if any.
    fn authority(&self, q: &Question) -> Option<usize> {
        let n = q.label_count();
        if n >= self.domain_labels && q.suffix(n - self.domain_labels) == &*self.domain {
            return Some(0);
        }
        let (prefix, len) = reverse_prefix(q)?;
        self.reverse
            .iter()
            .position(|r| r.prefix_len() <= len && r.contains(&prefix))
            .map(|i| i + 1)
    }
}

fn find(rrsets: &[(u16, Prepared)], t: u16) -> Option<&Prepared> {
    rrsets.iter().find(|(k, _)| *k == t).map(|(_, p)| p)
}

/// The network a name under `in-addr.arpa` names: `4.3.2.1.in-addr.arpa` is 1.2.3.4/32,
/// `2.1.in-addr.arpa` is 1.2.0.0/16. `None` for anything else.
fn reverse_prefix(q: &Question) -> Option<(Ipv4Addr, u8)> {
    let n = q.label_count();
    if !(3..=6).contains(&n) {
        return None;
    }
    let mut labels = q.labels();
    let octets: Vec<&[u8]> = labels.by_ref().take(n - 2).collect();
    if labels.next()? != b"in-addr" || labels.next()? != b"arpa" {
        return None;
    }
    let mut ip = [0u8; 4];
    for (i, label) in octets.iter().rev().enumerate() {
        ip[i] = parse_octet(label)?;
    }
    Some((Ipv4Addr::from(ip), 8 * octets.len() as u8))
}

/// A decimal octet as reverse names write it: 1 to 3 digits, no leading zero, at most 255.
fn parse_octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
        return None;
    }
    let mut v: u16 = 0;
    for &b in label {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u16::from(b - b'0');
    }
    u8::try_from(v).ok()
}

/// The reverse name of an address: `d.c.b.a.in-addr.arpa`, in wire form.
pub fn reverse_name(ip: Ipv4Addr) -> Vec<u8> {
    let [a, b, c, d] = ip.octets();
    let mut out = Vec::with_capacity(30);
    for o in [d, c, b, a] {
        let s = o.to_string();
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(b"\x07in-addr\x04arpa\x00");
    out
}

/// The apex name of a reverse range: its octet-aligned enclosing network, e.g. `10.in-addr.arpa`
/// for 10.96.0.0/12 and `244.10.in-addr.arpa` for 10.244.0.0/16.
fn reverse_apex(range: &Ipv4Net) -> Vec<u8> {
    let octets = range.network().octets();
    let keep = (range.prefix_len() / 8) as usize;
    let mut out = Vec::new();
    for o in octets[..keep].iter().rev() {
        let s = o.to_string();
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(b"\x07in-addr\x04arpa\x00");
    out
}

/// The current zone, shared by the server's tasks and swapped by the daemon.
#[derive(Clone, Debug)]
pub struct ZoneHandle(Arc<ArcSwap<Zone>>);

impl ZoneHandle {
    /// A handle holding `zone`.
    pub fn new(zone: Zone) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(zone)))
    }

    /// Replaces the zone; queries already being answered finish with the old one.
    pub fn store(&self, zone: Zone) {
        self.0.store(Arc::new(zone));
    }

    /// The current zone.
    pub fn load(&self) -> Arc<Zone> {
        self.0.load_full()
    }

    /// A cheap guard on the current zone, for the hot path.
    pub fn guard(&self) -> arc_swap::Guard<Arc<Zone>> {
        self.0.load()
    }
}

/// The status of the answer (for tests and logs).
pub fn rcode_name(rc: u8) -> &'static str {
    match rc {
        rcode::NOERROR => "NOERROR",
        rcode::FORMERR => "FORMERR",
        rcode::SERVFAIL => "SERVFAIL",
        rcode::NXDOMAIN => "NXDOMAIN",
        rcode::NOTIMP => "NOTIMP",
        rcode::REFUSED => "REFUSED",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests;
