//! One query in, one decision out: a reply written into the caller's buffer, a forward, or
//! nothing. The same function serves UDP and TCP; only the size limit differs.
//!
//! Answers from the zone are copies of pre-encoded bytes: the header, the query's own
//! question bytes (so the case it used comes back), the prepared records, and an OPT record
//! when the query had one. Nothing here allocates once `out` has grown to its working size.

use crate::wire::{self, rcode, rtype, Edns, Header, Question, WireError};
use crate::zone::{Lookup, Zone};

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: answers are limited to the requester's payload size, else truncated (TC).
    Udp,
    /// TCP: answers up to 65,535 bytes.
    Tcp,
}

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// Send `out`.
    Reply,
    /// Not the zone's name: forward it upstream (boxed: the common outcome stays small).
    Forward(Box<ForwardRequest>),
    /// Send nothing (not a query, or too short to answer).
    Drop,
}

/// A query to forward, already read.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// The query's header.
    pub header: Header,
    /// Its question, name lowercased.
    pub question: Question,
    /// Its OPT record.
    pub edns: Option<Edns>,
}

/// Decides on `packet` and, for [`Outcome::Reply`], writes the response into `out`.
pub fn respond(zone: &Zone, packet: &[u8], transport: Transport, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    let h = match wire::read_header(packet) {
        Ok(h) => h,
        Err(WireError::Short(_) | WireError::NotQuery | WireError::Malformed(_)) => {
            return Outcome::Drop
        }
    };
    if h.opcode != 0 {
        wire::write_header(out, &h, false, false, rcode::NOTIMP, 0, 0, 0, 0);
        return Outcome::Reply;
    }
    if h.qdcount != 1 {
        wire::write_header(out, &h, false, false, rcode::FORMERR, 0, 0, 0, 0);
        return Outcome::Reply;
    }
    let Ok(q) = wire::read_question(packet) else {
        wire::write_header(out, &h, false, false, rcode::FORMERR, 0, 0, 0, 0);
        return Outcome::Reply;
    };
    let edns = match wire::read_edns(packet, &h, q.end) {
        Ok(e) => e,
        Err(_) => {
            error_reply(out, &h, packet, &q, None, rcode::FORMERR);
            return Outcome::Reply;
        }
    };
    if matches!(q.qtype, rtype::OPT | 251 | 252) {
        // OPT is no question; IXFR and AXFR: the zone is not transferred.
        error_reply(out, &h, packet, &q, edns, rcode::REFUSED);
        return Outcome::Reply;
    }
    match zone.lookup(&q) {
        Lookup::Answer(p) => {
            let limit = match transport {
                Transport::Udp => wire::udp_limit(edns),
                Transport::Tcp => u16::MAX as usize,
            };
            let opt = edns.is_some();
            let ar = u16::from(opt);
            let fits = |body: usize| q.end + body + 11 * usize::from(opt) <= limit;
            let question = &packet[wire::HEADER_LEN..q.end];
            if fits(p.body.len()) {
                wire::write_header(out, &h, true, false, p.rcode, 1, p.an, p.ns, p.ar + ar);
                out.extend_from_slice(question);
                out.extend_from_slice(&p.body);
            } else if fits(p.additional_at) {
                wire::write_header(out, &h, true, false, p.rcode, 1, p.an, p.ns, ar);
                out.extend_from_slice(question);
                out.extend_from_slice(&p.body[..p.additional_at]);
            } else {
                wire::write_header(out, &h, true, true, p.rcode, 1, 0, 0, ar);
                out.extend_from_slice(question);
            }
            if opt {
                wire::push_opt(out);
            }
            Outcome::Reply
        }
        Lookup::Refused => {
            error_reply(out, &h, packet, &q, edns, rcode::REFUSED);
            Outcome::Reply
        }
        Lookup::NotOurs if !h.rd => {
            // Not authoritative and asked not to recurse: nothing useful to say.
            error_reply(out, &h, packet, &q, edns, rcode::REFUSED);
            Outcome::Reply
        }
        Lookup::NotOurs => Outcome::Forward(Box::new(ForwardRequest {
            header: h,
            question: q,
            edns,
        })),
    }
}

/// A response with the query's question and no records.
pub fn error_reply(
    out: &mut Vec<u8>,
    h: &Header,
    packet: &[u8],
    q: &Question,
    edns: Option<Edns>,
    rc: u8,
) {
    out.clear();
    wire::write_header(out, h, false, false, rc, 1, 0, 0, u16::from(edns.is_some()));
    out.extend_from_slice(&packet[wire::HEADER_LEN..q.end]);
    if edns.is_some() {
        wire::push_opt(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::ZoneBuilder;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RData;

    fn zone() -> Zone {
        let mut b = ZoneBuilder::new("cluster.local", &[], 1).unwrap();
        let web = b.name(&["web", "default", "svc"]).unwrap();
        b.add_a(web.clone(), "10.96.0.10".parse().unwrap());
        let big = b.name(&["big", "default", "svc"]).unwrap();
        for i in 0..100u8 {
            b.add_a(big.clone(), [10, 244, 0, i].into());
        }
        let srv = b
            .name(&["_http", "_tcp", "many", "default", "svc"])
            .unwrap();
        for i in 0..8u8 {
            let target = b
                .name(&[&format!("t{i}"), "many", "default", "svc"])
                .unwrap();
            b.add_a(target.clone(), [10, 244, 3, i].into());
            b.add_srv(srv.clone(), 80, target);
        }
        let mid = b.name(&["mid", "default", "svc"]).unwrap();
        for i in 0..50u8 {
            b.add_a(mid.clone(), [10, 244, 1, i].into());
        }
        b.build()
    }

    fn query(name: &str, qtype: u16, edns: bool, rd: bool) -> Vec<u8> {
        let mut p = vec![
            0xab,
            0xcd,
            if rd { 1 } else { 0 },
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns),
        ];
        p.extend_from_slice(&wire::encode_name(name).unwrap());
        // Upper-case the first letter to see the question's case echoed.
        p[13] = p[13].to_ascii_uppercase();
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            wire::push_opt(&mut p);
        }
        p
    }

    fn answer(packet: &[u8], t: Transport) -> Message {
        let mut out = Vec::new();
        assert!(matches!(
            respond(&zone(), packet, t, &mut out),
            Outcome::Reply
        ));
        Message::from_vec(&out).unwrap()
    }

    #[test]
    fn answers_with_the_question_as_asked() {
        let m = answer(
            &query("web.default.svc.cluster.local", rtype::A, false, true),
            Transport::Udp,
        );
        assert_eq!(m.metadata.id, 0xabcd);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(
            m.queries[0].name().to_string(),
            "Web.default.svc.cluster.local."
        );
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            m.answers[0].name.to_string(),
            "Web.default.svc.cluster.local."
        );
        assert_eq!(m.answers[0].data, RData::A("10.96.0.10".parse().unwrap()));
        assert!(m.edns.is_none());
        let m = answer(
            &query("web.default.svc.cluster.local", rtype::A, true, true),
            Transport::Udp,
        );
        assert_eq!(m.edns.unwrap().max_payload(), 1232);
    }

    #[test]
    fn truncates_over_udp_only() {
        let q = query("big.default.svc.cluster.local", rtype::A, false, true);
        let m = answer(&q, Transport::Udp);
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let m = answer(&q, Transport::Tcp);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
        // 100 A records take 1,600 bytes (16 each): over EDNS's 1,232 too.
        let m = answer(
            &query("big.default.svc.cluster.local", rtype::A, true, true),
            Transport::Udp,
        );
        assert!(m.metadata.truncation && m.edns.is_some());
        // 50 take 800: over 512 without EDNS, within 1,232 with it.
        let m = answer(
            &query("mid.default.svc.cluster.local", rtype::A, false, true),
            Transport::Udp,
        );
        assert!(m.metadata.truncation);
        let m = answer(
            &query("mid.default.svc.cluster.local", rtype::A, true, true),
            Transport::Udp,
        );
        assert_eq!((m.metadata.truncation, m.answers.len()), (false, 50));
    }

    #[test]
    fn mangled_queries_never_panic_and_every_reply_parses() {
        let zone = zone();
        let seeds = [
            query("web.default.svc.cluster.local", rtype::A, true, true),
            query(
                "_http._tcp.many.default.svc.cluster.local",
                rtype::SRV,
                false,
                true,
            ),
            query("big.default.svc.cluster.local", rtype::A, true, false),
        ];
        let mut out = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut replies = 0;
        for round in 0..30_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut p = seeds[round % seeds.len()].clone();
            for k in 0..1 + (x % 3) as usize {
                let i = (x >> (8 * k)) as usize % p.len();
                p[i] = (x >> (8 * k + 24)) as u8;
            }
            if x.is_multiple_of(5) {
                p.truncate((x >> 40) as usize % p.len());
            }
            let t = if x.is_multiple_of(2) {
                Transport::Udp
            } else {
                Transport::Tcp
            };
            if let Outcome::Reply = respond(&zone, &p, t, &mut out) {
                replies += 1;
                let m = Message::from_vec(&out);
                assert!(m.is_ok(), "{p:?} -> {out:?}: {m:?}");
                assert_eq!(out[..2], p[..2], "the reply keeps the ID");
                if t == Transport::Udp {
                    assert!(out.len() <= 1232);
                }
            }
        }
        assert!(replies > 10_000, "{replies}");
    }

    #[test]
    fn additionals_go_before_truncation() {
        let name = "_http._tcp.many.default.svc.cluster.local";
        // Over TCP, the 8 targets' addresses come along.
        let m = answer(&query(name, rtype::SRV, false, true), Transport::Tcp);
        assert_eq!((m.answers.len(), m.additionals.len()), (8, 8));
        // In 512 bytes the SRV records fit but not their addresses: dropped, no TC.
        let m = answer(&query(name, rtype::SRV, false, true), Transport::Udp);
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.additionals.len()), (8, 0));
        let m = answer(&query(name, rtype::SRV, true, true), Transport::Udp);
        assert_eq!((m.answers.len(), m.additionals.len()), (8, 8));
    }

    #[test]
    fn negative_answers_and_refusals() {
        let m = answer(
            &query("nope.default.svc.cluster.local", rtype::A, false, true),
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        let m = answer(
            &query("web.default.svc.cluster.local", rtype::AAAA, false, true),
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = answer(&query("cluster.local", 252, false, true), Transport::Tcp);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let m = answer(
            &query("example.com", rtype::A, false, false),
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let mut out = Vec::new();
        let fwd = respond(
            &zone(),
            &query("example.com", rtype::A, true, true),
            Transport::Udp,
            &mut out,
        );
        let Outcome::Forward(f) = fwd else {
            panic!("not forwarded: {fwd:?}")
        };
        assert_eq!(f.question.display(), "example.com.");
        assert_eq!(f.edns.map(|e| e.udp_size), Some(1232));
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        let mut out = Vec::new();
        assert!(matches!(
            respond(&zone(), &[1, 2, 3], Transport::Udp, &mut out),
            Outcome::Drop
        ));
        let mut resp = query("web.default.svc.cluster.local", rtype::A, false, true);
        resp[2] |= 0x80;
        assert!(matches!(
            respond(&zone(), &resp, Transport::Udp, &mut out),
            Outcome::Drop
        ));
        let mut two = query("web.default.svc.cluster.local", rtype::A, false, true);
        two[5] = 2;
        assert!(matches!(
            respond(&zone(), &two, Transport::Udp, &mut out),
            Outcome::Reply
        ));
        assert_eq!(out[3] & 0x0f, rcode::FORMERR);
        let mut notify = query("web.default.svc.cluster.local", rtype::A, false, true);
        notify[2] |= 4 << 3;
        respond(&zone(), &notify, Transport::Udp, &mut out);
        assert_eq!(out[3] & 0x0f, rcode::NOTIMP);
        let q = query("web.default.svc.cluster.local", rtype::A, false, true);
        respond(&zone(), &q[..q.len() - 2], Transport::Udp, &mut out);
        assert_eq!(out[3] & 0x0f, rcode::FORMERR);
    }
}
