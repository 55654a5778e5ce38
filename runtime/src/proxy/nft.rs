//! Pure: the nft objects the proxy programs, as data. Each has two faces that must say the
//! same thing: its nft text ([`std::fmt::Display`], what [`super::LinuxProxy::plan`] shows and
//! what `nft list` prints back), and its netlink form ([`super::netlink`], what the kernel
//! receives). The vocabulary is closed on purpose: a handful of set declarations, element
//! keys and rule shapes, each encoded exactly as nft 1.0 encodes its text, which a kernel
//! test checks by loading both into two tables and comparing `nft list` of each.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::Protocol;

/// The name of a chain or a set (shared, so cloning one for every element is cheap).
pub type Name = Arc<str>;

/// A set or map declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetDecl {
    /// `map { type ipv4_addr . inet_proto . inet_service : verdict ; }`
    VerdictByDest,
    /// `map { type inet_proto . inet_service : verdict ; }`
    VerdictByPort,
    /// `map { typeof ip daddr . P dport . numgen random mod 1 : ip daddr . P dport ; }`: the
    /// endpoints of every simple service port, by destination and index.
    EndpointsByDest(Protocol),
    /// `map { typeof numgen random mod 1 : ip daddr . P dport ; }`: one port's endpoints by
    /// index. (The data's protocol must be the rule's own: nft checks it against
    /// `meta l4proto` when it reads the map back from the kernel.)
    EndpointsByIndex(Protocol),
    /// `set { type ipv4_addr ; }`
    Addrs,
    /// `set { type ipv4_addr . ipv4_addr ; }`
    AddrPairs,
    /// `set { type ipv4_addr ; flags dynamic,timeout ; timeout Ns ; }`: ClientIP affinity.
    Affinity(u32),
}

impl SetDecl {
    /// Whether a refresh empties it before filling it again: all but the affinity sets,
    /// whose entries the kernel adds.
    pub fn flushed_on_refresh(self) -> bool {
        !matches!(self, SetDecl::Affinity(_))
    }

    /// `set` or `map`.
    pub fn kind(self) -> &'static str {
        match self {
            SetDecl::Addrs | SetDecl::AddrPairs | SetDecl::Affinity(_) => "set",
            _ => "map",
        }
    }
}

impl fmt::Display for SetDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetDecl::VerdictByDest => {
                f.write_str("{ type ipv4_addr . inet_proto . inet_service : verdict ; }")
            }
            SetDecl::VerdictByPort => f.write_str("{ type inet_proto . inet_service : verdict ; }"),
            SetDecl::EndpointsByDest(p) => {
                let p = p.nft();
                write!(
                    f,
                    "{{ typeof ip daddr . {p} dport . numgen random mod 1 : ip daddr . {p} dport ; }}"
                )
            }
            SetDecl::EndpointsByIndex(p) => write!(
                f,
                "{{ typeof numgen random mod 1 : ip daddr . {} dport ; }}",
                p.nft()
            ),
            SetDecl::Addrs => f.write_str("{ type ipv4_addr ; }"),
            SetDecl::AddrPairs => f.write_str("{ type ipv4_addr . ipv4_addr ; }"),
            SetDecl::Affinity(secs) => write!(
                f,
                "{{ type ipv4_addr ; flags dynamic,timeout ; timeout {secs}s ; }}"
            ),
        }
    }
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `jump C`
    Jump(Name),
    /// `goto C`
    Goto(Name),
    /// `drop`
    Drop,
    /// `return`
    Return,
}

impl Verdict {
    /// The chain it names, if any.
    pub fn chain(&self) -> Option<&Name> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            Verdict::Drop | Verdict::Return => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
        }
    }
}

/// The key of a set or map element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `ADDR . PROTO . PORT` ([`SetDecl::VerdictByDest`])
    Dest(Ipv4Addr, Protocol, u16),
    /// `PROTO . PORT` ([`SetDecl::VerdictByPort`])
    Port(Protocol, u16),
    /// `ADDR . PORT . INDEX` ([`SetDecl::EndpointsByDest`])
    DestIndex(Ipv4Addr, u16, u32),
    /// `INDEX` ([`SetDecl::EndpointsByIndex`])
    Index(u32),
    /// `ADDR` ([`SetDecl::Addrs`])
    Addr(Ipv4Addr),
    /// `ADDR . ADDR` ([`SetDecl::AddrPairs`])
    AddrPair(Ipv4Addr, Ipv4Addr),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Dest(a, p, port) => write!(f, "{a} . {} . {port}", p.nft()),
            Key::Port(p, port) => write!(f, "{} . {port}", p.nft()),
            Key::DestIndex(a, port, i) => write!(f, "{a} . {port} . {i}"),
            Key::Index(i) => write!(f, "{i}"),
            Key::Addr(a) => write!(f, "{a}"),
            Key::AddrPair(a, b) => write!(f, "{a} . {b}"),
        }
    }
}

/// The value of an element: nothing (a set), a verdict, or an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// A set element.
    None,
    /// A verdict map's.
    Verdict(Verdict),
    /// `ADDR . PORT`, an endpoint map's.
    Endpoint(Ipv4Addr, u16),
}

/// One element as nft writes it: `KEY` or `KEY : VALUE`.
pub struct Element<'a>(pub &'a Key, pub &'a Value);

impl fmt::Display for Element<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Value::None => write!(f, "{}", self.0),
            Value::Verdict(v) => write!(f, "{} : {v}", self.0),
            Value::Endpoint(a, p) => write!(f, "{} : {a} . {p}", self.0),
        }
    }
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// `nat` or `filter`.
    pub nat: bool,
    /// Where.
    pub point: HookPoint,
    /// Its priority.
    pub priority: i32,
}

/// A netfilter hook of the `ip` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// `prerouting`
    Prerouting,
    /// `input`
    Input,
    /// `forward`
    Forward,
    /// `output`
    Output,
    /// `postrouting`
    Postrouting,
}

impl HookPoint {
    /// nft's name.
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::Prerouting => "prerouting",
            HookPoint::Input => "input",
            HookPoint::Forward => "forward",
            HookPoint::Output => "output",
            HookPoint::Postrouting => "postrouting",
        }
    }

    /// The kernel's number (`NF_INET_*`).
    pub fn number(self) -> u32 {
        match self {
            HookPoint::Prerouting => 0,
            HookPoint::Input => 1,
            HookPoint::Forward => 2,
            HookPoint::Output => 3,
            HookPoint::Postrouting => 4,
        }
    }
}

/// nft's `dstnat` priority.
pub const PRIORITY_DSTNAT: i32 = -100;
/// nft's `srcnat` priority.
pub const PRIORITY_SRCNAT: i32 = 100;

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = if self.nat { "nat" } else { "filter" };
        let prio = match (self.nat, self.point, self.priority) {
            (true, HookPoint::Prerouting, PRIORITY_DSTNAT) => "dstnat".to_string(),
            (true, HookPoint::Postrouting, PRIORITY_SRCNAT) => "srcnat".to_string(),
            (_, _, p) => p.to_string(),
        };
        write!(
            f,
            "{{ type {ty} hook {} priority {prio} ; policy accept ; }}",
            self.point.name()
        )
    }
}

/// One rule. Each shape is one the proxy uses; the text is nft's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `meta l4proto tcp reject with tcp reset`
    RejectTcpReset,
    /// `reject` (ICMP port unreachable)
    Reject,
    /// `meta mark set meta mark | MARK`
    SetMark(u32),
    /// `meta mark set meta mark ^ MARK`
    FlipMark(u32),
    /// `meta mark & MARK == 0 return`
    ReturnUnmarked(u32),
    /// `ct status dnat ip saddr . ip daddr @SET masquerade`
    HairpinMasquerade(Name),
    /// `masquerade fully-random`
    Masquerade,
    /// `ip daddr . meta l4proto . th dport vmap @MAP`
    DestVmap(Name),
    /// `ip daddr @ADDRS meta l4proto . th dport vmap @MAP`
    NodePortVmap {
        /// The node's addresses.
        addrs: Name,
        /// The verdict map.
        map: Name,
    },
    /// A bare verdict.
    Verdict(Verdict),
    /// `ct state new VERDICT`
    CtNew(Verdict),
    /// `ct state new ip daddr CIDR VERDICT`
    CtNewDaddr(Ipv4Net, Verdict),
    /// `ip saddr CIDR VERDICT`, or `ip saddr != CIDR VERDICT`
    Saddr {
        /// The prefix.
        cidr: Ipv4Net,
        /// `!=`.
        negate: bool,
        /// What to do.
        verdict: Verdict,
    },
    /// `ip saddr @SET VERDICT`
    SaddrIn(Name, Verdict),
    /// `fib saddr type local VERDICT`
    FibSaddrLocal(Verdict),
    /// `meta l4proto P dnat ip addr . port to ip daddr . P dport . numgen random mod N map @MAP`
    DnatByDest {
        /// The protocol.
        proto: Protocol,
        /// The modulus (endpoint count).
        n: u32,
        /// The endpoint map.
        map: Name,
    },
    /// `meta l4proto P dnat ip addr . port to numgen random mod N map @MAP`
    DnatByIndex {
        /// The protocol.
        proto: Protocol,
        /// The modulus (endpoint count).
        n: u32,
        /// The endpoint map.
        map: Name,
    },
    /// `meta l4proto P dnat to ADDR:PORT`
    DnatTo {
        /// The protocol.
        proto: Protocol,
        /// The endpoint.
        addr: Ipv4Addr,
        /// Its port.
        port: u16,
    },
    /// `update @SET { ip saddr }`
    UpdateSaddr(Name),
    /// `numgen random mod N vmap { 0 : V0, 1 : V1, ... }` (N = the number of verdicts)
    NumgenVmap(Vec<Verdict>),
}

impl Rule {
    /// The chains it jumps or goes to.
    pub fn targets(&self) -> Vec<&Name> {
        match self {
            Rule::Verdict(v)
            | Rule::CtNew(v)
            | Rule::CtNewDaddr(_, v)
            | Rule::Saddr { verdict: v, .. }
            | Rule::SaddrIn(_, v)
            | Rule::FibSaddrLocal(v) => v.chain().into_iter().collect(),
            Rule::NumgenVmap(vs) => vs.iter().filter_map(Verdict::chain).collect(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::RejectTcpReset => f.write_str("meta l4proto tcp reject with tcp reset"),
            Rule::Reject => f.write_str("reject"),
            Rule::SetMark(m) => write!(f, "meta mark set meta mark | {m:#x}"),
            Rule::FlipMark(m) => write!(f, "meta mark set meta mark ^ {m:#x}"),
            Rule::ReturnUnmarked(m) => write!(f, "meta mark & {m:#x} == 0 return"),
            Rule::HairpinMasquerade(s) => {
                write!(f, "ct status dnat ip saddr . ip daddr @{s} masquerade")
            }
            Rule::Masquerade => f.write_str("masquerade fully-random"),
            Rule::DestVmap(m) => write!(f, "ip daddr . meta l4proto . th dport vmap @{m}"),
            Rule::NodePortVmap { addrs, map } => {
                write!(f, "ip daddr @{addrs} meta l4proto . th dport vmap @{map}")
            }
            Rule::Verdict(v) => write!(f, "{v}"),
            Rule::CtNew(v) => write!(f, "ct state new {v}"),
            Rule::CtNewDaddr(c, v) => write!(f, "ct state new ip daddr {c} {v}"),
            Rule::Saddr {
                cidr,
                negate,
                verdict,
            } => {
                let op = if *negate { "!= " } else { "" };
                write!(f, "ip saddr {op}{cidr} {verdict}")
            }
            Rule::SaddrIn(s, v) => write!(f, "ip saddr @{s} {v}"),
            Rule::FibSaddrLocal(v) => write!(f, "fib saddr type local {v}"),
            Rule::DnatByDest { proto, n, map } => {
                let p = proto.nft();
                write!(
                    f,
                    "meta l4proto {p} dnat ip addr . port to ip daddr . {p} dport . numgen random mod {n} map @{map}"
                )
            }
            Rule::DnatByIndex { proto, n, map } => write!(
                f,
                "meta l4proto {} dnat ip addr . port to numgen random mod {n} map @{map}",
                proto.nft()
            ),
            Rule::DnatTo { proto, addr, port } => {
                write!(f, "meta l4proto {} dnat to {addr}:{port}", proto.nft())
            }
            Rule::UpdateSaddr(s) => write!(f, "update @{s} {{ ip saddr }}"),
            Rule::NumgenVmap(vs) => {
                write!(f, "numgen random mod {} vmap {{ ", vs.len())?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{i} : {v}")?;
                }
                f.write_str(" }")
            }
        }
    }
}
