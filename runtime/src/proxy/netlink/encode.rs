//! The encoding: [`Transaction`]s as nf_tables netlink messages, the way nft 1.0 writes
//! the same script (checked against `nft -f` by a kernel test).

use std::fmt::Write as _;

use super::super::nft::{Element, Key, Name, Rule, SetDecl, Value};
use super::super::script::Transaction;
use super::abi::*;
use super::buf::{
    key_bytes, udata, Buf, ANON_VMAP, MAX_ELEMS_BYTES, UDATA_ADDRS, UDATA_ADDR_PAIRS,
    UDATA_ANON_VMAP, UDATA_ENDPOINTS_BY_DEST, UDATA_ENDPOINTS_BY_INDEX, UDATA_VERDICT_MAP,
};

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
