//! The forwarder's answer cache: bounded in entries, honouring TTLs, caching negative answers
//! (RFC 2308) for their SOA's time. Pure: the clock is an argument.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A cache key: the lowercased wire name, type and class.
pub type Key = (Box<[u8]>, u16, u16);

/// How long answers may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Most entries held; the oldest inserted goes first when full. 0 disables the cache.
    pub max_entries: usize,
    /// Longest time a positive answer is kept, whatever its TTL.
    pub max_ttl: Duration,
    /// Longest time a negative answer (NXDOMAIN, NODATA) is kept.
    pub max_negative_ttl: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_ttl: Duration::from_secs(3600),
            max_negative_ttl: Duration::from_secs(300),
        }
    }
}

struct Entry {
    message: Message,
    stored: Instant,
    expires: Instant,
    generation: u64,
}

/// Upstream answers by question.
pub struct Cache {
    policy: CachePolicy,
    map: HashMap<Key, Entry>,
    /// Insertion order (key, generation); stale pairs are skipped.
    order: VecDeque<(Key, u64)>,
    generation: u64,
}

impl Cache {
    /// An empty cache.
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            map: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
        }
    }

    /// Entries held (some may have expired but not been looked at since).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The answer for `key` at `now`, its TTLs lowered by the time it has been held.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Message> {
        let entry = self.map.get(key)?;
        if now >= entry.expires {
            self.map.remove(key);
            return None;
        }
        let age = now.saturating_duration_since(entry.stored).as_secs() as u32;
        let mut m = entry.message.clone();
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(m)
    }

    /// Stores an upstream answer for as long as it may be kept (nothing if not at all).
    pub fn insert(&mut self, key: Key, message: &Message, now: Instant) {
        if self.policy.max_entries == 0 {
            return;
        }
        let Some(ttl) = cache_ttl(message, &self.policy) else {
            return;
        };
        while self.map.len() >= self.policy.max_entries && !self.map.contains_key(&key) {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .map
                .get(&old)
                .is_some_and(|e| e.generation == generation)
            {
                self.map.remove(&old);
            }
        }
        self.generation += 1;
        let generation = self.generation;
        self.order.push_back((key.clone(), generation));
        self.map.insert(
            key,
            Entry {
                message: message.clone(),
                stored: now,
                expires: now + ttl,
                generation,
            },
        );
        if self.order.len() > 2 * self.policy.max_entries {
            let map = &self.map;
            self.order
                .retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

/// How long an answer may be cached: a positive answer for its smallest answer TTL; NXDOMAIN
/// or NODATA for its SOA's `min(TTL, minimum)`; nothing without a SOA, for other response
/// codes, or when the time is 0.
pub fn cache_ttl(m: &Message, policy: &CachePolicy) -> Option<Duration> {
    let rc = m.metadata.response_code;
    let negative =
        rc == ResponseCode::NXDomain || (rc == ResponseCode::NoError && m.answers.is_empty());
    let secs = if negative {
        let soa = m.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })?;
        Duration::from_secs(soa.into()).min(policy.max_negative_ttl)
    } else if rc == ResponseCode::NoError {
        let min = m.answers.iter().map(|r| r.ttl).min()?;
        Duration::from_secs(min.into()).min(policy.max_ttl)
    } else {
        return None;
    };
    (!secs.is_zero()).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record};

    fn key(n: &str) -> Key {
        (n.as_bytes().into(), 1, 1)
    }

    fn positive(ttls: &[u32]) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        for (i, t) in ttls.iter().enumerate() {
            let name = Name::from_ascii("a.example.").unwrap();
            m.add_answer(Record::from_rdata(
                name,
                *t,
                RData::A(A::new(1, 1, 1, i as u8)),
            ));
        }
        m
    }

    fn negative(rc: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rc;
        let apex = Name::from_ascii("example.").unwrap();
        let soa = SOA::new(apex.clone(), apex.clone(), 1, 2, 3, 4, minimum);
        m.add_authority(Record::from_rdata(apex, soa_ttl, RData::SOA(soa)));
        m
    }

    #[test]
    fn ttl_rules() {
        let p = CachePolicy::default();
        let s = Duration::from_secs;
        let cases: Vec<(&str, Message, Option<Duration>)> = vec![
            ("smallest answer ttl", positive(&[30, 10, 20]), Some(s(10))),
            ("capped", positive(&[100_000]), Some(s(3600))),
            ("zero ttl is not cached", positive(&[0]), None),
            (
                "nxdomain: soa minimum",
                negative(ResponseCode::NXDomain, 900, 60),
                Some(s(60)),
            ),
            (
                "nodata: soa ttl",
                negative(ResponseCode::NoError, 30, 600),
                Some(s(30)),
            ),
            (
                "negative capped",
                negative(ResponseCode::NXDomain, 9000, 9000),
                Some(s(300)),
            ),
            ("servfail", negative(ResponseCode::ServFail, 60, 60), None),
            (
                "negative without soa",
                Message::new(1, MessageType::Response, OpCode::Query),
                None,
            ),
        ];
        for (what, m, want) in cases {
            assert_eq!(cache_ttl(&m, &p), want, "{what}");
        }
    }

    #[test]
    fn expires_and_ages() {
        let mut c = Cache::new(CachePolicy::default());
        let t0 = Instant::now();
        c.insert(key("a"), &positive(&[10]), t0);
        let m = c.get(&key("a"), t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(m.answers[0].ttl, 6);
        assert!(c.get(&key("a"), t0 + Duration::from_secs(10)).is_none());
        assert!(c.is_empty());
        c.insert(key("n"), &negative(ResponseCode::NXDomain, 5, 5), t0);
        assert_eq!(
            c.get(&key("n"), t0).unwrap().metadata.response_code,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn bounded_oldest_first() {
        let mut c = Cache::new(CachePolicy {
            max_entries: 3,
            ..CachePolicy::default()
        });
        let t = Instant::now();
        for n in ["a", "b", "c", "a", "d", "e"] {
            c.insert(key(n), &positive(&[60]), t);
            assert!(c.len() <= 3);
        }
        // "a" was re-inserted after "b" and "c", so "b" and "c" went first.
        assert!(c.get(&key("b"), t).is_none());
        assert!(c.get(&key("c"), t).is_none());
        for n in ["a", "d", "e"] {
            assert!(c.get(&key(n), t).is_some(), "{n}");
        }
        for i in 0..100 {
            c.insert(key("a"), &positive(&[60 + i]), t);
        }
        assert!(c.order.len() <= 6);
        let mut off = Cache::new(CachePolicy {
            max_entries: 0,
            ..CachePolicy::default()
        });
        off.insert(key("a"), &positive(&[60]), t);
        assert!(off.is_empty());
    }
}
