//! Membership: the leader keeps `small` voters (3), or `large` (5) once the cluster has at
//! least `large_from` nodes, promotes live learners to replace lost voters, and keeps every
//! other node a learner. Joining adds a learner once; a restarted node is already in the
//! membership log and needs nothing.

use super::NodeId;
use std::collections::BTreeSet;

/// How many voters to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterPolicy {
    /// Voters in a small cluster.
    pub small: usize,
    /// Voters once the cluster is large.
    pub large: usize,
    /// Node count from which the cluster is large.
    pub large_from: usize,
}

impl Default for VoterPolicy {
    fn default() -> Self {
        Self {
            small: 3,
            large: 5,
            large_from: 5,
        }
    }
}

impl VoterPolicy {
    /// The voter count wanted for `nodes` members.
    pub fn target(&self, nodes: usize) -> usize {
        let t = if nodes >= self.large_from {
            self.large
        } else {
            self.small
        };
        t.min(nodes).max(1)
    }
}

/// The voter set the leader should move to, or `None` to leave the membership alone.
///
/// Live voters stay; live learners (lowest id first) fill up to the target; lost voters are
/// kept only while there is nobody to replace them (never shrink below the target by
/// dropping a voter without a replacement).
pub fn plan_voters(
    policy: &VoterPolicy,
    voters: &BTreeSet<NodeId>,
    all: &BTreeSet<NodeId>,
    alive: impl Fn(NodeId) -> bool,
) -> Option<BTreeSet<NodeId>> {
    let target = policy.target(all.len());
    let mut new: BTreeSet<NodeId> = voters.iter().copied().filter(|v| alive(*v)).collect();
    for l in all.iter().filter(|n| !voters.contains(n)) {
        if new.len() >= target {
            break;
        }
        if alive(*l) {
            new.insert(*l);
        }
    }
    for v in voters {
        if new.len() >= target {
            break;
        }
        new.insert(*v);
    }
    // Too many live voters (for example after nodes left): demote the highest ids.
    while new.len() > target {
        let last = *new.iter().next_back().expect("len > target >= 1");
        new.remove(&last);
    }
    (new != *voters && !new.is_empty()).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn plans_voters() {
        let p = VoterPolicy::default();
        // (voters, all, dead, expected)
        type Case<'a> = (&'a [u64], &'a [u64], &'a [u64], Option<&'a [u64]>);
        let cases: &[Case] = &[
            (&[1], &[1], &[], None),
            (&[1], &[1, 2], &[], Some(&[1, 2])),
            (&[1], &[1, 2, 3], &[], Some(&[1, 2, 3])),
            (&[1, 2, 3], &[1, 2, 3, 4], &[], None),
            (&[1, 2, 3], &[1, 2, 3, 4, 5], &[], Some(&[1, 2, 3, 4, 5])),
            (&[1, 2, 3], &[1, 2, 3, 4], &[2], Some(&[1, 3, 4])),
            (&[1, 2, 3], &[1, 2, 3], &[2], None),
            (&[1, 2, 3], &[1, 2, 3, 4], &[2, 4], None),
        ];
        for (voters, all, dead, want) in cases {
            let got = plan_voters(&p, &set(voters), &set(all), |n| !dead.contains(&n));
            assert_eq!(
                got,
                want.map(set),
                "voters {voters:?} all {all:?} dead {dead:?}"
            );
        }
    }

    #[test]
    fn target_follows_policy() {
        let p = VoterPolicy::default();
        let got: Vec<usize> = (1..=7).map(|n| p.target(n)).collect();
        assert_eq!(got, vec![1, 2, 3, 3, 5, 5, 5]);
    }
}
