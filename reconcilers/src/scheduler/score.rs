//! Scoring: among the nodes that pass every filter, the pod goes to the one with the fewest
//! pods of its owner (spread), then the least allocated after adding its requests, then the
//! highest rendezvous hash of (pod uid, node name).
//!
//! This is the hot loop (pods x candidate nodes), so it reads flat per-node arrays, takes the
//! least-allocated score from a per-group cache (only the node a pod lands on changes, so one
//! entry is refreshed per placement), and compares one packed integer per node.

use super::{Res, Scheduler};
use crate::ids::{fnv64, mix};

/// Least-allocated score (0..=100, higher is emptier) of a node after adding `cpu` and
/// `mem`: the mean of the free cpu and free memory percentages, rounded down.
pub(super) fn least_allocated(r: &Res, cpu: u64, mem: u64) -> u64 {
    let part = |used: u64, req: u64, cap: u64| {
        cap.saturating_sub(used.saturating_add(req))
            .saturating_mul(100)
            .checked_div(cap)
            .unwrap_or(0)
    };
    (part(r.cpu_used, cpu, r.cpu_cap) + part(r.mem_used, mem, r.mem_cap)) / 2
}

const NONE: usize = usize::MAX;

fn percent(score: u64) -> u32 {
    u32::try_from(score).expect("least-allocated scores are percentages")
}

impl Scheduler<'_> {
    /// Makes the least-allocated cache hold group `g`'s scores on its candidates.
    pub(super) fn cache_scores(&mut self, g: usize) {
        if self.score_group == g {
            return;
        }
        let grp = &self.groups[g];
        let cands = &self.candidate_lists[grp
            .candidates
            .expect("candidates are computed before scores")];
        for &n in cands {
            let n = n as usize;
            self.score[n] = percent(least_allocated(&self.res[n], grp.cpu, grp.mem));
        }
        self.score_group = g;
    }

    /// Refreshes the cached score of node `n` after a placement changed its usage.
    pub(super) fn refresh_score(&mut self, n: usize) {
        if let Some(grp) = self.groups.get(self.score_group) {
            self.score[n] = percent(least_allocated(&self.res[n], grp.cpu, grp.mem));
        }
    }

    /// The best candidate node for a pod of group `g` with `uid`, if any fits. The group's
    /// candidates and cached scores must be current.
    ///
    /// Each fitting node gets one 128-bit key, (inverted spread, score, rendezvous hash) from
    /// the high bits down, so the lexicographic comparison is one integer comparison and the
    /// loop has no data-dependent branch but the filters. Equal keys keep the earlier node.
    pub(super) fn best_node(&self, g: usize, uid: &str) -> Option<usize> {
        debug_assert_eq!(self.score_group, g);
        let grp = &self.groups[g];
        let cands = &self.candidate_lists[grp
            .candidates
            .expect("candidates are computed before scoring")];
        let spread = &self.owner_counts[grp.owner];
        let (cpu, mem) = (grp.cpu, grp.mem);
        let slow = !grp.ports.is_empty() || !grp.carries.is_empty() || !grp.matches.is_empty();
        let uid_hash = fnv64(uid.as_bytes());
        let (mut best, mut best_key) = (NONE, 0u128);
        for &n in cands {
            let n = n as usize;
            let r = &self.res[n];
            if r.pods >= r.max_pods
                || r.cpu_used.saturating_add(cpu) > r.cpu_cap
                || r.mem_used.saturating_add(mem) > r.mem_cap
                || (slow && !self.fits_slow(g, n))
            {
                continue;
            }
            let key = (u128::from(u32::MAX - spread[n]) << 96)
                | (u128::from(self.score[n]) << 64)
                | u128::from(mix(uid_hash, self.name_hash[n]));
            if best == NONE || key > best_key {
                (best, best_key) = (n, key);
            }
        }
        (best != NONE).then_some(best)
    }
}
