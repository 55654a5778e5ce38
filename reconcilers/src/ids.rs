//! Names, UIDs and tie-breaks derived by hashing, never by randomness: every node computes
//! the same ones from the same log.

use sha2::{Digest, Sha256};

/// Kubernetes' "safe" alphabet for generated name suffixes (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// SHA-256 over length-prefixed parts, so ("ab","c") and ("a","bc") differ.
pub fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// `n` characters of the safe alphabet drawn from a hash of `parts`.
pub fn safe_suffix(parts: &[&[u8]], n: usize) -> String {
    let d = sha(parts);
    d.iter()
        .cycle()
        .take(n)
        .map(|b| char::from(SAFE[usize::from(*b) % SAFE.len()]))
        .collect()
}

/// A UID shaped like Kubernetes' (8-4-4-4-12 hex) from a hash of `parts`.
pub fn uid(parts: &[&[u8]]) -> String {
    let h = hex::encode(&sha(parts)[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The pod-template hash of any serializable template (10 safe characters).
pub fn template_hash<T: serde::Serialize>(template: &T) -> String {
    let bytes = serde_json::to_vec(template).expect("templates hold only JSON-representable data");
    safe_suffix(&[&bytes], 10)
}

/// A 64-bit FNV-1a hash, for hot paths (rendezvous tie-breaks).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Mixes two 64-bit hashes into one well-spread value (splitmix64 finalizer).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_shaped() {
        assert_eq!(safe_suffix(&[b"a"], 5), safe_suffix(&[b"a"], 5));
        assert_ne!(
            safe_suffix(&[b"ab", b"c"], 8),
            safe_suffix(&[b"a", b"bc"], 8)
        );
        let s = safe_suffix(&[b"x"], 5);
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|c| SAFE.contains(&c)));
        let u = uid(&[b"pod"]);
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert_ne!(mix(1, 2), mix(2, 1));
    }
}
