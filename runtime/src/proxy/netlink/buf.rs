//! A netlink message buffer, its attributes, and the nf_tables expressions the proxy's
//! rules are made of, each encoded as nft 1.0 encodes its text.

use std::net::Ipv4Addr;

use super::super::nft::{Key, Rule, Verdict};
use super::super::Protocol;
use super::abi::*;

/// The largest element list in one message (an attribute's length is 16 bits).
pub(super) const MAX_ELEMS_BYTES: usize = 48 * 1024;

/// The metadata nft 1.0 stores with a set (`NFTA_SET_USERDATA`) so that `nft list` prints
/// its `type`/`typeof`; the kernel does not read it. Hex, with `PP` for the transport
/// protocol's id in nft's payload descriptions. (Host byte order: these are the bytes of a
/// little-endian host, the only kind kommit runs on.)
pub(super) const UDATA_VERDICT_MAP: &str =
    "000400000000010400000000030800040d0000000100060400000000";
pub(super) const UDATA_ENDPOINTS_BY_DEST: &str = "000400000000010400000000035000040d00000001480014000407000000010c00040c00000001040c0000000114000407000000010c0004PP000000010402000000021a0004170000000112000401000000010401000000020400000000043400040d000000012c0014000407000000010c00040c00000001040c0000000114000407000000010c0004PP000000010402000000060400000000";
pub(super) const UDATA_ENDPOINTS_BY_INDEX: &str = "000401000000010400000000031a0004170000000112000401000000010401000000020400000000043400040d000000012c0014000407000000010c00040c00000001040c0000000114000407000000010c0004PP000000010402000000060400000000";
pub(super) const UDATA_ADDRS: &str = "000402000000";
pub(super) const UDATA_ADDR_PAIRS: &str = "000400000000030800040d0000000100";
pub(super) const UDATA_ANON_VMAP: &str = "00040100000001040000000004080004010000000100060400000000";

pub(super) fn udata(template: &str, proto: Option<Protocol>) -> Vec<u8> {
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

pub(super) fn proto_number(p: Protocol) -> u8 {
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
    pub(super) fn pad(&mut self) {
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

    pub(super) fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.b.extend_from_slice(&len.to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(data);
        self.pad();
    }

    pub(super) fn u32(&mut self, ty: u16, v: u32) {
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

    pub(super) fn nest(&mut self, ty: u16) -> usize {
        let at = self.b.len();
        self.b.extend_from_slice(&0u16.to_ne_bytes());
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub(super) fn nest_end(&mut self, at: usize) {
        let len = (self.b.len() - at) as u16;
        self.b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// `NFTA_DATA_VALUE` inside attribute `ty`.
    pub(super) fn value(&mut self, ty: u16, data: &[u8]) {
        let n = self.nest(ty);
        self.attr(NFTA_DATA_VALUE, data);
        self.nest_end(n);
    }

    /// `NFTA_DATA_VERDICT` inside attribute `ty`.
    pub(super) fn verdict(&mut self, ty: u16, v: &Verdict) {
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
    pub(super) fn expr(&mut self, name: &str, body: impl FnOnce(&mut Buf)) {
        let e = self.nest(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, name);
        let d = self.nest(NFTA_EXPR_DATA);
        body(self);
        self.nest_end(d);
        self.nest_end(e);
    }

    pub(super) fn payload(&mut self, dreg: u32, base: u32, offset: u32, len: u32) {
        self.expr("payload", |b| {
            b.u32(1, dreg);
            b.u32(2, base);
            b.u32(3, offset);
            b.u32(4, len);
        });
    }

    pub(super) fn meta_load(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |b| {
            b.u32(2, key);
            b.u32(1, dreg);
        });
    }

    pub(super) fn meta_set(&mut self, key: u32, sreg: u32) {
        self.expr("meta", |b| {
            b.u32(2, key);
            b.u32(3, sreg);
        });
    }

    pub(super) fn ct_load(&mut self, key: u32, dreg: u32) {
        self.expr("ct", |b| {
            b.u32(2, key);
            b.u32(1, dreg);
        });
    }

    pub(super) fn cmp(&mut self, sreg: u32, op: u32, data: &[u8]) {
        self.expr("cmp", |b| {
            b.u32(1, sreg);
            b.u32(2, op);
            b.value(3, data);
        });
    }

    /// `reg = (reg & mask) ^ xor` on 4 bytes.
    pub(super) fn bitwise(&mut self, reg: u32, mask: &[u8], xor: &[u8]) {
        self.expr("bitwise", |b| {
            b.u32(1, reg);
            b.u32(2, reg);
            b.u32(3, mask.len() as u32);
            b.value(4, mask);
            b.value(5, xor);
        });
    }

    pub(super) fn lookup(&mut self, set: &str, set_id: Option<u32>, sreg: u32, dreg: Option<u32>) {
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

    pub(super) fn immediate_verdict(&mut self, v: &Verdict) {
        self.expr("immediate", |b| {
            b.u32(1, NFT_REG_VERDICT);
            b.verdict(2, v);
        });
    }

    pub(super) fn immediate(&mut self, dreg: u32, data: &[u8]) {
        self.expr("immediate", |b| {
            b.u32(1, dreg);
            b.value(2, data);
        });
    }

    pub(super) fn dnat(&mut self, addr_reg: u32, proto_reg: u32, flags: Option<u32>) {
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

    pub(super) fn numgen(&mut self, dreg: u32, modulus: u32) {
        self.expr("numgen", |b| {
            b.u32(1, dreg);
            b.u32(2, modulus);
            b.u32(3, NFT_NG_RANDOM);
            b.u32(4, 0);
        });
    }

    pub(super) fn l4proto_is(&mut self, p: Protocol) {
        self.meta_load(NFT_META_L4PROTO, NFT_REG_1);
        self.cmp(NFT_REG_1, NFT_CMP_EQ, &[proto_number(p)]);
    }

    pub(super) fn ct_state_new(&mut self) {
        self.ct_load(NFT_CT_STATE, NFT_REG_1);
        self.bitwise(NFT_REG_1, &CT_STATE_NEW.to_ne_bytes(), &[0; 4]);
        self.cmp(NFT_REG_1, NFT_CMP_NEQ, &[0; 4]);
    }

    /// `ip saddr|daddr [!=] CIDR`, as nft writes it: a whole-byte prefix compares that many
    /// bytes; any other is masked first.
    pub(super) fn addr_in(&mut self, offset: u32, cidr: ipnet::Ipv4Net, negate: bool) {
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

    pub(super) fn saddr(&mut self, dreg: u32) {
        self.payload(dreg, NFT_PAYLOAD_NETWORK, 12, 4);
    }

    pub(super) fn daddr(&mut self, dreg: u32) {
        self.payload(dreg, NFT_PAYLOAD_NETWORK, 16, 4);
    }

    pub(super) fn dport(&mut self, dreg: u32) {
        self.payload(dreg, NFT_PAYLOAD_TRANSPORT, 2, 2);
    }

    /// The expressions of `rule`; `anon` is the set id of its anonymous verdict map, if it
    /// has one (already added to the batch).
    pub(super) fn rule(&mut self, rule: &Rule, anon: Option<u32>) {
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
pub(super) const ANON_VMAP: &str = "__map%d";

pub(super) fn key_bytes(k: &Key, out: &mut Vec<u8>) {
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
