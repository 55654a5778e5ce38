//! The encoding: [`Transaction`]s as nf_tables netlink messages, the way nft 1.0 writes
//! the same script (checked against `nft -f` by a kernel test).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::super::nft::{Element, Key, Name, Rule, SetDecl, Value, Verdict};
use super::super::script::Transaction;
use super::super::Protocol;

pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(super) const NFT_MSG_NEWTABLE: u16 = 0;
pub(super) const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NFPROTO_IPV4: u8 = 2;
/// `SOL_NETLINK` option: errors carry only the request's header, not all of it.
pub(super) const NETLINK_CAP_ACK: libc::c_int = 10;

// Attributes (linux/netfilter/nf_tables.h).
const NFTA_LIST_ELEM: u16 = 1;
pub(super) const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
pub(super) const NFTA_TABLE_HANDLE: u16 = 4;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_SIZE: u16 = 1;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFT_SET_CONSTANT: u32 = 0x2;
const NFT_SET_MAP: u32 = 0x8;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
/// nft's datatype ids, and its concatenations of them (6 bits each).
const TYPE_VERDICT: u32 = 0xffff_ff00;
const TYPE_INTEGER: u32 = 4;
const TYPE_IPADDR: u32 = 7;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const fn concat(a: u32, b: u32) -> u32 {
    (a << 6) | b
}

const NF_ACCEPT: u32 = 1;
const NF_DROP: u32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
/// The 32-bit registers after `NFT_REG_1`'s first word (nft numbers them 9, 10, ...).
const NFT_REG32_01: u32 = 9;
const NFT_REG32_02: u32 = 10;

const NFT_PAYLOAD_NETWORK: u32 = 1;
const NFT_PAYLOAD_TRANSPORT: u32 = 2;
const NFT_META_MARK: u32 = 3;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;
const NFT_REJECT_ICMP_UNREACH: u32 = 0;
const NFT_REJECT_TCP_RST: u32 = 1;
const ICMP_PORT_UNREACH: u8 = 3;
const NFT_NG_RANDOM: u32 = 1;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFTA_FIB_F_SADDR: u32 = 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const RTN_LOCAL: u32 = 2;
const IP_CT_DNAT: u32 = 0x20;
const CT_STATE_NEW: u32 = 0x08;

/// The largest element list in one message (an attribute's length is 16 bits).
const MAX_ELEMS_BYTES: usize = 48 * 1024;

/// The metadata nft 1.0 stores with a set (`NFTA_SET_USERDATA`) so that `nft list` prints
/// its `type`/`typeof`; the kernel does not read it. Hex, with `PP` for the transport
/// protocol's id in nft's payload descriptions. (Host byte order: these are the bytes of a
/// little-endian host, the only kind kommit runs on.)
const UDATA_VERDICT_MAP: &str = "000400000000010400000000030800040d0000000100060400000000";
const UDATA_ENDPOINTS_BY_DEST: &str = "000400000000010400000000035000040d00000001480014000407000000010c00040c00000001040c0000000114000407000000010c0004PP000000010402000000021a0004170000000112000401000000010401000000020400000000043400040d000000012c0014000407000000010c00040c00000001040c0000000114000407000000010c0004PP000000010402000000060400000000";
const UDATA_ENDPOINTS_BY_INDEX: &str = "000401000000010400000000031a0004170000000112000401000000010401000000020400000000043400040d000000012c0014000407000000010c00040c00000001040c0000000114000407000000010c0004PP000000010402000000060400000000";
const UDATA_ADDRS: &str = "000402000000";
const UDATA_ADDR_PAIRS: &str = "000400000000030800040d0000000100";
const UDATA_ANON_VMAP: &str = "00040100000001040000000004080004010000000100060400000000";

fn udata(template: &str, proto: Option<Protocol>) -> Vec<u8> {
    let id = match proto {
        Some(Protocol::Tcp) => "08",
        Some(Protocol::Udp) => "06",
        Some(Protocol::Sctp) => "0a",
        None => "PP",
    };
    let hex = template.replace("PP", id);
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// A netlink message buffer.
#[derive(Default)]
pub(super) struct Buf {
    pub(super) b: Vec<u8>,
}

impl Buf {
    fn pad(&mut self) {
        self.b.resize(self.b.len().next_multiple_of(4), 0);
    }

    /// Start a message; returns its offset for [`Buf::end`].
    pub(super) fn begin(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> usize {
        let at = self.b.len();
        self.b.extend_from_slice(&0u32.to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(&flags.to_ne_bytes());
        self.b.extend_from_slice(&seq.to_ne_bytes());
        self.b.extend_from_slice(&0u32.to_ne_bytes());
        self.b.push(family);
        self.b.push(0);
        self.b.extend_from_slice(&res_id.to_be_bytes());
        at
    }

    pub(super) fn end(&mut self, at: usize) {
        let len = (self.b.len() - at) as u32;
        self.b[at..at + 4].copy_from_slice(&len.to_ne_bytes());
        self.pad();
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.b.extend_from_slice(&len.to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(data);
        self.pad();
    }

    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    pub(super) fn str(&mut self, ty: u16, s: &str) {
        let len = (4 + s.len() + 1) as u16;
        self.b.extend_from_slice(&len.to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(s.as_bytes());
        self.b.push(0);
        self.pad();
    }

    fn nest(&mut self, ty: u16) -> usize {
        let at = self.b.len();
        self.b.extend_from_slice(&0u16.to_ne_bytes());
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn nest_end(&mut self, at: usize) {
        let len = (self.b.len() - at) as u16;
        self.b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// `NFTA_DATA_VALUE` inside attribute `ty`.
    fn value(&mut self, ty: u16, data: &[u8]) {
        let n = self.nest(ty);
        self.attr(NFTA_DATA_VALUE, data);
        self.nest_end(n);
    }

    /// `NFTA_DATA_VERDICT` inside attribute `ty`.
    fn verdict(&mut self, ty: u16, v: &Verdict) {
        let n = self.nest(ty);
        let d = self.nest(NFTA_DATA_VERDICT);
        let (code, chain) = match v {
            Verdict::Jump(c) => (NFT_JUMP as u32, Some(c)),
            Verdict::Goto(c) => (NFT_GOTO as u32, Some(c)),
            Verdict::Drop => (NF_DROP, None),
            Verdict::Return => (NFT_RETURN as u32, None),
        };
        self.u32(NFTA_VERDICT_CODE, code);
        if let Some(c) = chain {
            self.str(NFTA_VERDICT_CHAIN, c);
        }
        self.nest_end(d);
        self.nest_end(n);
    }

    /// One expression: `name` with its attributes written by `body`.
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Buf)) {
        let e = self.nest(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, name);
        let d = self.nest(NFTA_EXPR_DATA);
        body(self);
        self.nest_end(d);
        self.nest_end(e);
    }

    fn payload(&mut self, dreg: u32, base: u32, offset: u32, len: u32) {
        self.expr("payload", |b| {
            b.u32(1, dreg);
            b.u32(2, base);
            b.u32(3, offset);
            b.u32(4, len);
        });
    }

    fn meta_load(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |b| {
            b.u32(2, key);
            b.u32(1, dreg);
        });
    }

    fn meta_set(&mut self, key: u32, sreg: u32) {
        self.expr("meta", |b| {
            b.u32(2, key);
            b.u32(3, sreg);
        });
    }

    fn ct_load(&mut self, key: u32, dreg: u32) {
        self.expr("ct", |b| {
            b.u32(2, key);
            b.u32(1, dreg);
        });
    }

    fn cmp(&mut self, sreg: u32, op: u32, data: &[u8]) {
        self.expr("cmp", |b| {
            b.u32(1, sreg);
            b.u32(2, op);
            b.value(3, data);
        });
    }

    /// `reg = (reg & mask) ^ xor` on 4 bytes.
    fn bitwise(&mut self, reg: u32, mask: &[u8], xor: &[u8]) {
        self.expr("bitwise", |b| {
            b.u32(1, reg);
            b.u32(2, reg);
            b.u32(3, mask.len() as u32);
            b.value(4, mask);
            b.value(5, xor);
        });
    }

    fn lookup(&mut self, set: &str, set_id: Option<u32>, sreg: u32, dreg: Option<u32>) {
        self.expr("lookup", |b| {
            b.u32(2, sreg);
            if let Some(d) = dreg {
                b.u32(3, d);
            }
            b.str(1, set);
            if let Some(id) = set_id {
                b.u32(4, id);
            }
        });
    }

    fn immediate_verdict(&mut self, v: &Verdict) {
        self.expr("immediate", |b| {
            b.u32(1, NFT_REG_VERDICT);
            b.verdict(2, v);
        });
    }

    fn immediate(&mut self, dreg: u32, data: &[u8]) {
        self.expr("immediate", |b| {
            b.u32(1, dreg);
            b.value(2, data);
        });
    }

    fn dnat(&mut self, addr_reg: u32, proto_reg: u32, flags: Option<u32>) {
        self.expr("nat", |b| {
            b.u32(1, NFT_NAT_DNAT);
            b.u32(2, u32::from(NFPROTO_IPV4));
            b.u32(3, addr_reg);
            b.u32(5, proto_reg);
            if let Some(f) = flags {
                b.u32(7, f);
            }
        });
    }

    fn numgen(&mut self, dreg: u32, modulus: u32) {
        self.expr("numgen", |b| {
            b.u32(1, dreg);
            b.u32(2, modulus);
            b.u32(3, NFT_NG_RANDOM);
            b.u32(4, 0);
        });
    }

    fn l4proto_is(&mut self, p: Protocol) {
        self.meta_load(NFT_META_L4PROTO, NFT_REG_1);
        self.cmp(NFT_REG_1, NFT_CMP_EQ, &[proto_number(p)]);
    }

    fn ct_state_new(&mut self) {
        self.ct_load(NFT_CT_STATE, NFT_REG_1);
        self.bitwise(NFT_REG_1, &CT_STATE_NEW.to_ne_bytes(), &[0; 4]);
        self.cmp(NFT_REG_1, NFT_CMP_NEQ, &[0; 4]);
    }

    /// `ip saddr|daddr [!=] CIDR`, as nft writes it: a whole-byte prefix compares that many
    /// bytes; any other is masked first.
    fn addr_in(&mut self, offset: u32, cidr: ipnet::Ipv4Net, negate: bool) {
        let op = if negate { NFT_CMP_NEQ } else { NFT_CMP_EQ };
        let addr = cidr.network().octets();
        let len = u32::from(cidr.prefix_len());
        if len > 0 && len % 8 == 0 {
            let n = (len / 8) as usize;
            self.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK, offset, n as u32);
            self.cmp(NFT_REG_1, op, &addr[..n]);
        } else {
            self.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK, offset, 4);
            self.bitwise(NFT_REG_1, &cidr.netmask().octets(), &[0; 4]);
            self.cmp(NFT_REG_1, op, &addr);
        }
    }

    fn saddr(&mut self, dreg: u32) {
        self.payload(dreg, NFT_PAYLOAD_NETWORK, 12, 4);
    }

    fn daddr(&mut self, dreg: u32) {
        self.payload(dreg, NFT_PAYLOAD_NETWORK, 16, 4);
    }

    fn dport(&mut self, dreg: u32) {
        self.payload(dreg, NFT_PAYLOAD_TRANSPORT, 2, 2);
    }

    /// The expressions of `rule`; `anon` is the set id of its anonymous verdict map, if it
    /// has one (already added to the batch).
    fn rule(&mut self, rule: &Rule, anon: Option<u32>) {
        match rule {
            Rule::RejectTcpReset => {
                self.l4proto_is(Protocol::Tcp);
                self.expr("reject", |b| {
                    b.u32(1, NFT_REJECT_TCP_RST);
                    b.attr(2, &[0]);
                });
            }
            Rule::Reject => self.expr("reject", |b| {
                b.u32(1, NFT_REJECT_ICMP_UNREACH);
                b.attr(2, &[ICMP_PORT_UNREACH]);
            }),
            Rule::SetMark(m) => {
                self.meta_load(NFT_META_MARK, NFT_REG_1);
                self.bitwise(NFT_REG_1, &(!m).to_ne_bytes(), &m.to_ne_bytes());
                self.meta_set(NFT_META_MARK, NFT_REG_1);
            }
            Rule::FlipMark(m) => {
                self.meta_load(NFT_META_MARK, NFT_REG_1);
                self.bitwise(NFT_REG_1, &u32::MAX.to_ne_bytes(), &m.to_ne_bytes());
                self.meta_set(NFT_META_MARK, NFT_REG_1);
            }
            Rule::ReturnUnmarked(m) => {
                self.meta_load(NFT_META_MARK, NFT_REG_1);
                self.bitwise(NFT_REG_1, &m.to_ne_bytes(), &[0; 4]);
                self.cmp(NFT_REG_1, NFT_CMP_EQ, &[0; 4]);
                self.immediate_verdict(&Verdict::Return);
            }
            Rule::HairpinMasquerade(set) => {
                self.ct_load(NFT_CT_STATUS, NFT_REG_1);
                self.bitwise(NFT_REG_1, &IP_CT_DNAT.to_ne_bytes(), &[0; 4]);
                self.cmp(NFT_REG_1, NFT_CMP_NEQ, &[0; 4]);
                self.saddr(NFT_REG_1);
                self.daddr(NFT_REG32_01);
                self.lookup(set, None, NFT_REG_1, None);
                self.expr("masq", |_| {});
            }
            Rule::Masquerade => self.expr("masq", |b| b.u32(1, NF_NAT_RANGE_PROTO_RANDOM_FULLY)),
            Rule::DestVmap(map) => {
                self.daddr(NFT_REG_1);
                self.meta_load(NFT_META_L4PROTO, NFT_REG32_01);
                self.dport(NFT_REG32_02);
                self.lookup(map, None, NFT_REG_1, Some(NFT_REG_VERDICT));
            }
            Rule::NodePortVmap { addrs, map } => {
                self.daddr(NFT_REG_1);
                self.lookup(addrs, None, NFT_REG_1, None);
                self.meta_load(NFT_META_L4PROTO, NFT_REG_1);
                self.dport(NFT_REG32_01);
                self.lookup(map, None, NFT_REG_1, Some(NFT_REG_VERDICT));
            }
            Rule::Verdict(v) => self.immediate_verdict(v),
            Rule::CtNew(v) => {
                self.ct_state_new();
                self.immediate_verdict(v);
            }
            Rule::CtNewDaddr(cidr, v) => {
                self.ct_state_new();
                self.addr_in(16, *cidr, false);
                self.immediate_verdict(v);
            }
            Rule::Saddr {
                cidr,
                negate,
                verdict,
            } => {
                self.addr_in(12, *cidr, *negate);
                self.immediate_verdict(verdict);
            }
            Rule::SaddrIn(set, v) => {
                self.saddr(NFT_REG_1);
                self.lookup(set, None, NFT_REG_1, None);
                self.immediate_verdict(v);
            }
            Rule::FibSaddrLocal(v) => {
                self.expr("fib", |b| {
                    b.u32(3, NFTA_FIB_F_SADDR);
                    b.u32(2, NFT_FIB_RESULT_ADDRTYPE);
                    b.u32(1, NFT_REG_1);
                });
                self.cmp(NFT_REG_1, NFT_CMP_EQ, &RTN_LOCAL.to_ne_bytes());
                self.immediate_verdict(v);
            }
            Rule::DnatByDest { proto, n, map } => {
                self.l4proto_is(*proto);
                self.daddr(NFT_REG_1);
                self.dport(NFT_REG32_01);
                self.numgen(NFT_REG32_02, *n);
                self.lookup(map, None, NFT_REG_1, Some(NFT_REG_1));
                self.dnat(NFT_REG_1, NFT_REG32_01, None);
            }
            Rule::DnatByIndex { proto, n, map } => {
                self.l4proto_is(*proto);
                self.numgen(NFT_REG_1, *n);
                self.lookup(map, None, NFT_REG_1, Some(NFT_REG_1));
                self.dnat(NFT_REG_1, NFT_REG32_01, None);
            }
            Rule::DnatTo { proto, addr, port } => {
                self.l4proto_is(*proto);
                self.immediate(NFT_REG_1, &addr.octets());
                self.immediate(NFT_REG_2, &port.to_be_bytes());
                self.dnat(NFT_REG_1, NFT_REG_2, Some(NF_NAT_RANGE_PROTO_SPECIFIED));
            }
            Rule::UpdateSaddr(set) => {
                self.saddr(NFT_REG_1);
                self.expr("dynset", |b| {
                    b.u32(4, NFT_REG_1);
                    b.u32(3, NFT_DYNSET_OP_UPDATE);
                    b.str(1, set);
                });
            }
            Rule::NumgenVmap(vs) => {
                self.numgen(NFT_REG_1, vs.len() as u32);
                self.lookup(ANON_VMAP, anon, NFT_REG_1, Some(NFT_REG_VERDICT));
            }
        }
    }
}

/// The name nft gives an anonymous set; the kernel fills in the number.
const ANON_VMAP: &str = "__map%d";

fn key_bytes(k: &Key, out: &mut Vec<u8>) {
    out.clear();
    let port = |out: &mut Vec<u8>, p: u16| {
        out.extend_from_slice(&p.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    };
    let proto = |out: &mut Vec<u8>, p: Protocol| out.extend_from_slice(&[proto_number(p), 0, 0, 0]);
    let addr = |out: &mut Vec<u8>, a: Ipv4Addr| out.extend_from_slice(&a.octets());
    match k {
        Key::Dest(a, p, n) => {
            addr(out, *a);
            proto(out, *p);
            port(out, *n);
        }
        Key::Port(p, n) => {
            proto(out, *p);
            port(out, *n);
        }
        Key::DestIndex(a, n, i) => {
            addr(out, *a);
            port(out, *n);
            out.extend_from_slice(&i.to_ne_bytes());
        }
        Key::Index(i) => out.extend_from_slice(&i.to_ne_bytes()),
        Key::Addr(a) => addr(out, *a),
        Key::AddrPair(a, b) => {
            addr(out, *a);
            addr(out, *b);
        }
    }
}

/// What one message of a batch does, to name it in an error.
#[derive(Debug, Clone)]
enum Op {
    Table(&'static str),
    AddSet(usize),
    AddChain(usize),
    DelElems(Name, usize, usize),
    Flush(usize),
    AnonSet(usize),
    Rule(usize),
    AddElems(Name, usize, usize),
    DelChain(usize),
    DelSet(usize),
}

/// One encoded transaction.
pub struct Batch {
    buf: Buf,
    pub(super) first_seq: u32,
    pub(super) last_seq: u32,
    ops: Vec<(u32, Op)>,
}

impl Batch {
    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf.b
    }

    /// Encode `tx` for table `ip <table>`, numbering messages from `seq`.
    pub fn encode(tx: &Transaction, table: &str, seq: u32) -> Batch {
        let mut batch = Batch {
            buf: Buf::default(),
            first_seq: seq,
            last_seq: seq,
            ops: Vec::new(),
        };
        let b = &mut batch;
        let begin = b.buf.begin(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        b.buf.end(begin);
        if tx.rebuild {
            b.table(table, NFT_MSG_NEWTABLE, "table");
            b.table(table, NFT_MSG_DELTABLE, "delete table");
            b.table(table, NFT_MSG_NEWTABLE, "add table");
        }
        if tx.refresh {
            b.table(table, NFT_MSG_NEWTABLE, "add table");
        }
        let mut set_id = 0u32;
        for (i, (name, decl)) in tx.add_sets.iter().enumerate() {
            set_id += 1;
            b.msg(NFT_MSG_NEWSET, NLM_F_CREATE, Op::AddSet(i), |m| {
                m.str(NFTA_SET_TABLE, table);
                m.str(NFTA_SET_NAME, name);
                set_decl(m, *decl, set_id);
            });
            if tx.refresh && decl.flushed_on_refresh() {
                // An element list left out flushes the set.
                b.msg(NFT_MSG_DELSETELEM, 0, Op::AddSet(i), |m| {
                    m.str(NFTA_SET_ELEM_LIST_TABLE, table);
                    m.str(NFTA_SET_ELEM_LIST_SET, name);
                });
            }
        }
        for (i, (name, hook)) in tx.add_chains.iter().enumerate() {
            b.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, Op::AddChain(i), |m| {
                m.str(NFTA_CHAIN_TABLE, table);
                m.str(NFTA_CHAIN_NAME, name);
                if let Some(h) = hook {
                    m.str(NFTA_CHAIN_TYPE, if h.nat { "nat" } else { "filter" });
                    m.u32(NFTA_CHAIN_POLICY, NF_ACCEPT);
                    let n = m.nest(NFTA_CHAIN_HOOK);
                    m.u32(NFTA_HOOK_HOOKNUM, h.point.number());
                    m.u32(NFTA_HOOK_PRIORITY, h.priority as u32);
                    m.nest_end(n);
                }
            });
            if tx.refresh {
                b.msg(NFT_MSG_DELRULE, 0, Op::AddChain(i), |m| {
                    m.str(NFTA_RULE_TABLE, table);
                    m.str(NFTA_RULE_CHAIN, name);
                });
            }
        }
        for (set, keys) in &tx.del_elems {
            let elems: Vec<(Key, Value)> = keys.iter().map(|k| (*k, Value::None)).collect();
            b.elements(NFT_MSG_DELSETELEM, table, set, None, &elems, |s, a, z| {
                Op::DelElems(s, a, z)
            });
        }
        for (i, c) in tx.flush.iter().enumerate() {
            b.msg(NFT_MSG_DELRULE, 0, Op::Flush(i), |m| {
                m.str(NFTA_RULE_TABLE, table);
                m.str(NFTA_RULE_CHAIN, c);
            });
        }
        for (i, (chain, rule)) in tx.rules.iter().enumerate() {
            let anon = match rule {
                Rule::NumgenVmap(vs) => {
                    set_id += 1;
                    let id = set_id;
                    b.msg(NFT_MSG_NEWSET, NLM_F_CREATE, Op::AnonSet(i), |m| {
                        m.str(NFTA_SET_TABLE, table);
                        m.str(NFTA_SET_NAME, ANON_VMAP);
                        m.u32(
                            NFTA_SET_FLAGS,
                            NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP,
                        );
                        m.u32(NFTA_SET_KEY_TYPE, TYPE_INTEGER);
                        m.u32(NFTA_SET_KEY_LEN, 4);
                        m.u32(NFTA_SET_DATA_TYPE, TYPE_VERDICT);
                        m.u32(NFTA_SET_DATA_LEN, 0);
                        m.u32(NFTA_SET_ID, id);
                        let d = m.nest(NFTA_SET_DESC);
                        m.u32(NFTA_SET_DESC_SIZE, vs.len() as u32);
                        m.nest_end(d);
                        m.attr(NFTA_SET_USERDATA, &udata(UDATA_ANON_VMAP, None));
                    });
                    let elems: Vec<(Key, Value)> = vs
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (Key::Index(j as u32), Value::Verdict(v.clone())))
                        .collect();
                    let anon_name: Name = ANON_VMAP.into();
                    b.elements(
                        NFT_MSG_NEWSETELEM,
                        table,
                        &anon_name,
                        Some(id),
                        &elems,
                        |_, _, _| Op::AnonSet(i),
                    );
                    Some(id)
                }
                _ => None,
            };
            b.msg(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                Op::Rule(i),
                |m| {
                    m.str(NFTA_RULE_TABLE, table);
                    m.str(NFTA_RULE_CHAIN, chain);
                    let e = m.nest(NFTA_RULE_EXPRESSIONS);
                    m.rule(rule, anon);
                    m.nest_end(e);
                },
            );
        }
        for (set, elems) in &tx.add_elems {
            b.elements(NFT_MSG_NEWSETELEM, table, set, None, elems, |s, a, z| {
                Op::AddElems(s, a, z)
            });
        }
        for (i, c) in tx.del_chains.iter().enumerate() {
            b.msg(NFT_MSG_DELCHAIN, 0, Op::DelChain(i), |m| {
                m.str(NFTA_CHAIN_TABLE, table);
                m.str(NFTA_CHAIN_NAME, c);
            });
        }
        for (i, (name, _)) in tx.del_sets.iter().enumerate() {
            b.msg(NFT_MSG_DELSET, 0, Op::DelSet(i), |m| {
                m.str(NFTA_SET_TABLE, table);
                m.str(NFTA_SET_NAME, name);
            });
        }
        b.last_seq += 1;
        let end = b.buf.begin(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            b.last_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        b.buf.end(end);
        batch
    }

    /// A batch that deletes table `ip <table>` if it exists.
    pub(super) fn delete_table(table: &str, seq: u32) -> Batch {
        let mut b = Batch {
            buf: Buf::default(),
            first_seq: seq,
            last_seq: seq,
            ops: Vec::new(),
        };
        let begin = b.buf.begin(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        b.buf.end(begin);
        b.table(table, NFT_MSG_NEWTABLE, "table");
        b.table(table, NFT_MSG_DELTABLE, "delete table");
        b.last_seq += 1;
        let end = b.buf.begin(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            b.last_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        b.buf.end(end);
        b
    }

    fn msg(&mut self, ty: u16, flags: u16, op: Op, body: impl FnOnce(&mut Buf)) {
        self.last_seq += 1;
        let at = self.buf.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | flags,
            self.last_seq,
            NFPROTO_IPV4,
            0,
        );
        body(&mut self.buf);
        self.buf.end(at);
        self.ops.push((self.last_seq, op));
    }

    fn table(&mut self, table: &str, ty: u16, what: &'static str) {
        self.msg(ty, 0, Op::Table(what), |m| {
            m.str(NFTA_TABLE_NAME, table);
            if ty == NFT_MSG_NEWTABLE {
                m.u32(NFTA_TABLE_FLAGS, 0);
            }
        });
    }

    /// `elems` of `set`, in as many messages as their size needs.
    #[allow(clippy::too_many_arguments)]
    fn elements(
        &mut self,
        ty: u16,
        table: &str,
        set: &Name,
        set_id: Option<u32>,
        elems: &[(Key, Value)],
        op: impl Fn(Name, usize, usize) -> Op,
    ) {
        let flags = if ty == NFT_MSG_NEWSETELEM {
            NLM_F_CREATE
        } else {
            0
        };
        let mut key = Vec::with_capacity(16);
        let mut start = 0;
        while start < elems.len() {
            self.last_seq += 1;
            let seq = self.last_seq;
            let b = &mut self.buf;
            let at = b.begin(
                (NFNL_SUBSYS_NFTABLES << 8) | ty,
                NLM_F_REQUEST | flags,
                seq,
                NFPROTO_IPV4,
                0,
            );
            b.str(NFTA_SET_ELEM_LIST_TABLE, table);
            b.str(NFTA_SET_ELEM_LIST_SET, set);
            if let Some(id) = set_id {
                b.u32(NFTA_SET_ELEM_LIST_SET_ID, id);
            }
            let list = b.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            let mut end = start;
            while end < elems.len() && b.b.len() - list < MAX_ELEMS_BYTES {
                let (k, v) = &elems[end];
                let e = b.nest(NFTA_LIST_ELEM);
                key_bytes(k, &mut key);
                b.value(NFTA_SET_ELEM_KEY, &key);
                match v {
                    Value::None => {}
                    Value::Verdict(v) => b.verdict(NFTA_SET_ELEM_DATA, v),
                    Value::Endpoint(a, p) => {
                        let mut d = [0u8; 8];
                        d[..4].copy_from_slice(&a.octets());
                        d[4..6].copy_from_slice(&p.to_be_bytes());
                        b.value(NFTA_SET_ELEM_DATA, &d);
                    }
                }
                b.nest_end(e);
                end += 1;
            }
            b.nest_end(list);
            b.end(at);
            self.ops.push((seq, op(set.clone(), start, end)));
            start = end;
        }
    }

    /// The nft text of the message numbered `seq`, for an error.
    pub(super) fn describe(&self, seq: u32, tx: &Transaction, table: &str) -> String {
        let t = format!("ip {table}");
        let Some((_, op)) = self.ops.iter().find(|(s, _)| *s == seq) else {
            return if seq == self.first_seq {
                "the transaction".to_string()
            } else {
                format!("message {seq}")
            };
        };
        let elems = |verb: &str, set: &Name, items: Vec<String>| {
            let mut s = format!("{verb} element {t} {set} {{ ");
            for (i, e) in items.iter().take(3).enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(s, "{sep}{e}");
            }
            if items.len() > 3 {
                let _ = write!(s, ", ... ({} elements)", items.len());
            }
            s.push_str(" }");
            s
        };
        match op {
            Op::Table(what) => format!("{what} {t}"),
            Op::AddSet(i) => {
                let (n, d) = &tx.add_sets[*i];
                format!("add {} {t} {n} {d}", d.kind())
            }
            Op::AddChain(i) => format!("add chain {t} {}", tx.add_chains[*i].0),
            Op::DelElems(set, a, z) => {
                let keys = tx
                    .del_elems
                    .get(set)
                    .map(|k| &k[*a..*z])
                    .unwrap_or_default();
                elems("delete", set, keys.iter().map(Key::to_string).collect())
            }
            Op::Flush(i) => format!("flush chain {t} {}", tx.flush[*i]),
            Op::AnonSet(i) | Op::Rule(i) => {
                let (c, r) = &tx.rules[*i];
                format!("add rule {t} {c} {r}")
            }
            Op::AddElems(set, a, z) => {
                let items = tx
                    .add_elems
                    .get(set)
                    .map(|e| &e[*a..*z])
                    .unwrap_or_default();
                elems(
                    "add",
                    set,
                    items
                        .iter()
                        .map(|(k, v)| Element(k, v).to_string())
                        .collect(),
                )
            }
            Op::DelChain(i) => format!("delete chain {t} {}", tx.del_chains[*i]),
            Op::DelSet(i) => {
                let (n, d) = &tx.del_sets[*i];
                format!("delete {} {t} {n}", d.kind())
            }
        }
    }
}

fn set_decl(m: &mut Buf, decl: SetDecl, id: u32) {
    let ip_port = concat(TYPE_IPADDR, TYPE_INET_SERVICE);
    let (flags, key_type, key_len, data, udata_bytes) = match decl {
        SetDecl::VerdictByDest => (
            NFT_SET_MAP,
            concat(concat(TYPE_IPADDR, TYPE_INET_PROTO), TYPE_INET_SERVICE),
            12,
            Some((TYPE_VERDICT, 0)),
            udata(UDATA_VERDICT_MAP, None),
        ),
        SetDecl::VerdictByPort => (
            NFT_SET_MAP,
            concat(TYPE_INET_PROTO, TYPE_INET_SERVICE),
            8,
            Some((TYPE_VERDICT, 0)),
            udata(UDATA_VERDICT_MAP, None),
        ),
        SetDecl::EndpointsByDest(p) => (
            NFT_SET_MAP,
            concat(ip_port, TYPE_INTEGER),
            12,
            Some((ip_port, 8)),
            udata(UDATA_ENDPOINTS_BY_DEST, Some(p)),
        ),
        SetDecl::EndpointsByIndex(p) => (
            NFT_SET_MAP,
            TYPE_INTEGER,
            4,
            Some((ip_port, 8)),
            udata(UDATA_ENDPOINTS_BY_INDEX, Some(p)),
        ),
        SetDecl::Addrs => (0, TYPE_IPADDR, 4, None, udata(UDATA_ADDRS, None)),
        SetDecl::AddrPairs => (
            0,
            concat(TYPE_IPADDR, TYPE_IPADDR),
            8,
            None,
            udata(UDATA_ADDR_PAIRS, None),
        ),
        SetDecl::Affinity(_) => (
            NFT_SET_TIMEOUT | NFT_SET_EVAL,
            TYPE_IPADDR,
            4,
            None,
            udata(UDATA_ADDRS, None),
        ),
    };
    m.u32(NFTA_SET_FLAGS, flags);
    m.u32(NFTA_SET_KEY_TYPE, key_type);
    m.u32(NFTA_SET_KEY_LEN, key_len);
    if let Some((ty, len)) = data {
        m.u32(NFTA_SET_DATA_TYPE, ty);
        m.u32(NFTA_SET_DATA_LEN, len);
    }
    if let SetDecl::Affinity(secs) = decl {
        m.attr(NFTA_SET_TIMEOUT, &(u64::from(secs) * 1000).to_be_bytes());
    }
    m.u32(NFTA_SET_ID, id);
    m.attr(NFTA_SET_USERDATA, &udata_bytes);
}
