//! The DNS wire format where the server needs speed: reading a query's header, its one
//! question and its EDNS OPT record without allocating, and writing names and resource
//! records for the zone's pre-encoded answers. Everything else (the forwarder's messages)
//! goes through hickory-proto.
//!
//! Every read is bounds-checked: a malformed packet is an `Err`, never a panic.

/// Longest name on the wire, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;
/// Longest label.
pub const MAX_LABEL: usize = 63;
/// Most labels a name of [`MAX_NAME`] bytes can have.
pub const MAX_LABELS: usize = 128;
/// The header's length.
pub const HEADER_LEN: usize = 12;

/// Record types the server knows by number.
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Canonical name.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Pointer (reverse).
    pub const PTR: u16 = 12;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Service location.
    pub const SRV: u16 = 33;
    /// EDNS OPT pseudo-record.
    pub const OPT: u16 = 41;
    /// Any type.
    pub const ANY: u16 = 255;
}

/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response codes the server sends.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The query could not be read.
    pub const FORMERR: u8 = 1;
    /// The server failed (no upstream answered).
    pub const SERVFAIL: u8 = 2;
    /// The name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// The operation is not implemented.
    pub const NOTIMP: u8 = 4;
    /// The server will not answer.
    pub const REFUSED: u8 = 5;
}

/// Why a packet could not be read as a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header.
    #[error("packet of {0} bytes is shorter than a DNS header")]
    Short(usize),
    /// A response, not a query: never answered (no reflection).
    #[error("packet is a response")]
    NotQuery,
    /// Something after the header is malformed.
    #[error("malformed query: {0}")]
    Malformed(&'static str),
}

/// A query's header fields the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Transaction ID.
    pub id: u16,
    /// The opcode (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired.
    pub rd: bool,
    /// Checking disabled (copied back).
    pub cd: bool,
    /// Question count.
    pub qdcount: u16,
    /// Answer count.
    pub ancount: u16,
    /// Authority count.
    pub nscount: u16,
    /// Additional count.
    pub arcount: u16,
}

/// Reads the header of a query.
pub fn read_header(p: &[u8]) -> Result<Header, WireError> {
    if p.len() < HEADER_LEN {
        return Err(WireError::Short(p.len()));
    }
    if p[2] & 0x80 != 0 {
        return Err(WireError::NotQuery);
    }
    let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    Ok(Header {
        id: u16_at(0),
        opcode: (p[2] >> 3) & 0x0f,
        rd: p[2] & 0x01 != 0,
        cd: p[3] & 0x10 != 0,
        qdcount: u16_at(4),
        ancount: u16_at(6),
        nscount: u16_at(8),
        arcount: u16_at(10),
    })
}

/// A parsed question: the name lowercased into a fixed buffer, with its label offsets, so
/// no query allocates.
#[derive(Clone)]
pub struct Question {
    name: [u8; MAX_NAME],
    name_len: usize,
    labels: [u8; MAX_LABELS],
    label_count: usize,
    /// The query type.
    pub qtype: u16,
    /// The query class.
    pub qclass: u16,
    /// Where the question ends in the packet (the question is `packet[12..end]`).
    pub end: usize,
}

impl std::fmt::Debug for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} type {} class {}",
            self.display(),
            self.qtype,
            self.qclass
        )
    }
}

impl Question {
    /// The lowercased name in wire form (length-prefixed labels, ending with the root's 0).
    pub fn wire_name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    /// The name's labels, first (leftmost) first.
    pub fn labels(&self) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator + '_ {
        self.labels[..self.label_count].iter().map(move |&at| {
            let at = at as usize;
            &self.name[at + 1..at + 1 + self.name[at] as usize]
        })
    }

    /// The wire form of the suffix starting at label `i` (0 = the whole name).
    pub fn suffix(&self, i: usize) -> &[u8] {
        match self.labels[..self.label_count].get(i) {
            Some(&at) => &self.name[at as usize..self.name_len],
            None => &self.name[self.name_len - 1..self.name_len],
        }
    }

    /// How many labels the name has (the root has none).
    pub fn label_count(&self) -> usize {
        self.label_count
    }

    /// The name as text, for logs.
    pub fn display(&self) -> String {
        display_name(self.wire_name())
    }
}

/// The query's EDNS OPT record, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size.
    pub udp_size: u16,
}

/// Reads the one question at offset 12, lowercasing its name. Compression pointers are
/// refused: a query's first name has nothing to point back to.
pub fn read_question(p: &[u8]) -> Result<Question, WireError> {
    let mut q = Question {
        name: [0; MAX_NAME],
        name_len: 0,
        labels: [0; MAX_LABELS],
        label_count: 0,
        qtype: 0,
        qclass: 0,
        end: 0,
    };
    let mut at = HEADER_LEN;
    loop {
        let len = *p
            .get(at)
            .ok_or(WireError::Malformed("name runs past the packet"))? as usize;
        if len & 0xc0 != 0 {
            return Err(WireError::Malformed(
                "compressed or extended label in question",
            ));
        }
        if q.name_len + 1 + len > MAX_NAME {
            return Err(WireError::Malformed("name longer than 255 bytes"));
        }
        if len == 0 {
            q.name[q.name_len] = 0;
            q.name_len += 1;
            at += 1;
            break;
        }
        let label = p
            .get(at + 1..at + 1 + len)
            .ok_or(WireError::Malformed("label runs past the packet"))?;
        // name_len < 255 here, and a label takes at least 2 bytes, so fewer than 128 labels.
        q.labels[q.label_count] = q.name_len as u8;
        q.label_count += 1;
        q.name[q.name_len] = len as u8;
        for (d, s) in q.name[q.name_len + 1..q.name_len + 1 + len]
            .iter_mut()
            .zip(label)
        {
            *d = s.to_ascii_lowercase();
        }
        q.name_len += 1 + len;
        at += 1 + len;
    }
    let tail = p
        .get(at..at + 4)
        .ok_or(WireError::Malformed("question type and class missing"))?;
    q.qtype = u16::from_be_bytes([tail[0], tail[1]]);
    q.qclass = u16::from_be_bytes([tail[2], tail[3]]);
    q.end = at + 4;
    Ok(q)
}

/// Skips a (possibly compressed) name in a record, returning the offset after it.
fn skip_name(p: &[u8], mut at: usize) -> Result<usize, WireError> {
    for _ in 0..MAX_LABELS {
        let len = *p
            .get(at)
            .ok_or(WireError::Malformed("record name runs past the packet"))?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(at + 1),
            0x00 => at += 1 + len as usize,
            0xc0 => return Ok(at + 2),
            _ => return Err(WireError::Malformed("extended label type")),
        }
    }
    Err(WireError::Malformed("record name has too many labels"))
}

/// Reads the additional section after the question for an OPT record. The answer and
/// authority sections must be empty (they are in every query).
pub fn read_edns(p: &[u8], h: &Header, question_end: usize) -> Result<Option<Edns>, WireError> {
    if h.ancount != 0 || h.nscount != 0 {
        return Err(WireError::Malformed(
            "query carries answer or authority records",
        ));
    }
    let mut at = question_end;
    let mut edns = None;
    for _ in 0..h.arcount {
        let name_end = skip_name(p, at)?;
        let fixed = p.get(name_end..name_end + 10).ok_or(WireError::Malformed(
            "additional record runs past the packet",
        ))?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let end = name_end + 10 + rdlen;
        if end > p.len() {
            return Err(WireError::Malformed(
                "additional record data runs past the packet",
            ));
        }
        if rtype == rtype::OPT {
            if edns.is_some() {
                return Err(WireError::Malformed("more than one OPT record"));
            }
            edns = Some(Edns { udp_size: class });
        }
        at = end;
    }
    Ok(edns)
}

/// Encodes a dotted name (`a.b.c`, a trailing dot optional) in lowercase wire form. `None`
/// for an empty label, a label over 63 bytes or a name over 255.
pub fn encode_name(dotted: &str) -> Option<Vec<u8>> {
    let trimmed = dotted.strip_suffix('.').unwrap_or(dotted);
    let mut out = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL {
                return None;
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    (out.len() <= MAX_NAME).then_some(out)
}

/// Joins a wire-form label list: `label` in front of the wire name `rest`.
pub fn prepend_label(label: &str, rest: &[u8]) -> Option<Vec<u8>> {
    if label.is_empty() || label.len() > MAX_LABEL || 1 + label.len() + rest.len() > MAX_NAME {
        return None;
    }
    let mut out = Vec::with_capacity(1 + label.len() + rest.len());
    out.push(label.len() as u8);
    out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    out.extend_from_slice(rest);
    Some(out)
}

/// A wire name as dotted text (`a.b.c.`), non-printable bytes escaped.
pub fn display_name(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        let end = (at + 1 + len as usize).min(wire.len());
        for &b in &wire[at + 1..end] {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
        out.push('.');
        at = end;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Appends one resource record: owner (wire bytes, possibly a compression pointer), type,
/// class IN, TTL and the RDATA.
pub fn push_record(out: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// A pointer to the question's name at offset 12, the owner of every answer record.
pub const QNAME_POINTER: [u8; 2] = [0xc0, 0x0c];

/// Writes a response header: QR and RA set, AA as asked, the query's RD and CD copied.
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    out: &mut Vec<u8>,
    h: &Header,
    aa: bool,
    tc: bool,
    rcode: u8,
    qd: u16,
    an: u16,
    ns: u16,
    ar: u16,
) {
    let b2 = 0x80 | (h.opcode << 3) | (u8::from(aa) << 2) | (u8::from(tc) << 1) | u8::from(h.rd);
    let b3 = 0x80 | if h.cd { 0x10 } else { 0 } | (rcode & 0x0f);
    out.extend_from_slice(&h.id.to_be_bytes());
    out.push(b2);
    out.push(b3);
    for n in [qd, an, ns, ar] {
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The UDP payload size the server offers in its OPT record.
pub const SERVER_UDP_SIZE: u16 = 1232;

/// Appends the server's OPT record (no options).
pub fn push_opt(out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&SERVER_UDP_SIZE.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
}

/// The largest UDP response a requester takes: 512 without EDNS, else its size within
/// 512..=1232 (the DNS flag day's safe size, so no answer is fragmented).
pub fn udp_limit(edns: Option<Edns>) -> usize {
    match edns {
        None => 512,
        Some(e) => e.udp_size.clamp(512, SERVER_UDP_SIZE) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, arcount: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, arcount as u8];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn reads_a_question_lowercased() {
        let p = query("Web.Default.SVC.cluster.local", rtype::A, 0);
        let h = read_header(&p).unwrap();
        assert_eq!((h.id, h.opcode, h.rd, h.qdcount), (0x1234, 0, true, 1));
        let q = read_question(&p).unwrap();
        assert_eq!(q.display(), "web.default.svc.cluster.local.");
        assert_eq!(q.label_count(), 5);
        assert_eq!(q.labels().next().unwrap(), b"web");
        assert_eq!(
            q.suffix(3),
            encode_name("cluster.local").unwrap().as_slice()
        );
        assert_eq!(q.suffix(5), &[0]);
        assert_eq!((q.qtype, q.qclass, q.end), (rtype::A, 1, p.len()));
        assert_eq!(read_edns(&p, &h, q.end).unwrap(), None);
    }

    #[test]
    fn reads_edns() {
        let mut p = query("a.b", rtype::SRV, 1);
        let q = read_question(&p).unwrap();
        push_opt(&mut p);
        let h = read_header(&p).unwrap();
        assert_eq!(
            read_edns(&p, &h, q.end).unwrap(),
            Some(Edns { udp_size: 1232 })
        );
        assert_eq!(udp_limit(Some(Edns { udp_size: 4096 })), 1232);
        assert_eq!(udp_limit(Some(Edns { udp_size: 100 })), 512);
        assert_eq!(udp_limit(None), 512);
    }

    #[test]
    fn refuses_malformed_packets() {
        assert_eq!(read_header(&[0; 5]), Err(WireError::Short(5)));
        let mut resp = query("a", 1, 0);
        resp[2] |= 0x80;
        assert_eq!(read_header(&resp), Err(WireError::NotQuery));
        let mut ptr = query("", 1, 0);
        ptr[12] = 0xc0;
        assert!(read_question(&ptr).is_err());
        let cut = query("abc.def", 1, 0);
        for n in 12..cut.len() {
            assert!(read_question(&cut[..n]).is_err(), "{n}");
        }
        let long = format!("{}.x", "a".repeat(64));
        assert!(read_question(&query(&long, 1, 0)).is_err());
        let mut two_opts = query("a", 1, 2);
        let q = read_question(&two_opts).unwrap();
        push_opt(&mut two_opts);
        push_opt(&mut two_opts);
        let h = read_header(&two_opts).unwrap();
        assert!(read_edns(&two_opts, &h, q.end).is_err());
        // An additional record whose data runs past the end.
        let mut bad = query("a", 1, 1);
        bad.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 9]);
        let h = read_header(&bad).unwrap();
        assert!(read_edns(&bad, &h, q.end).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic generator: every prefix and many bit flips of a real query.
        let base = query("x-1.default.svc.cluster.local", rtype::SRV, 1);
        let mut with_opt = base.clone();
        push_opt(&mut with_opt);
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = with_opt.clone();
            let i = (seed as usize) % p.len();
            p[i] = (seed >> 32) as u8;
            p.truncate(12 + (seed >> 40) as usize % (p.len() - 11));
            if let Ok(h) = read_header(&p) {
                if let Ok(q) = read_question(&p) {
                    let _ = read_edns(&p, &h, q.end);
                    let _ = q.display();
                }
            }
        }
    }

    #[test]
    fn encodes_names() {
        assert_eq!(encode_name("A.b.").unwrap(), b"\x01a\x01b\x00");
        assert_eq!(encode_name("").unwrap(), b"\x00");
        assert!(encode_name("a..b").is_none());
        assert!(encode_name(&"a".repeat(64)).is_none());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(encode_name(&long).is_none());
        assert_eq!(prepend_label("X", b"\x01b\x00").unwrap(), b"\x01x\x01b\x00");
        assert_eq!(display_name(b"\x03a.b\x01c\x00"), "a\\046b.c.");
    }
}
