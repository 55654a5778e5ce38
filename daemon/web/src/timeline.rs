//! Rollout samples: ready, updated and unavailable replicas of every Deployment and
//! StatefulSet over time, recorded from the replicated state as it changes.
//!
//! Git keeps no such series, and the state keeps only the present, so the page records it:
//! in memory, one bounded ring per workload ([`MAX_SAMPLES`]), for at most
//! [`MAX_WORKLOADS`] workloads; a restarted daemon starts a new series. A sample is taken
//! only when a value (or the commit in force) changed, stamped with the state's leader
//! time, so two nodes fed the same entries record the same series.

use kommit_reconcilers::{ClusterState, Millis, Owner};
use std::collections::{BTreeMap, VecDeque};

/// Most samples kept per workload (oldest dropped first).
pub const MAX_SAMPLES: usize = 512;
/// Most workloads followed.
pub const MAX_WORKLOADS: usize = 4096;

/// One observation of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Leader time, ms since the epoch.
    pub at: Millis,
    /// The commit in force.
    pub commit: String,
    /// Desired replicas.
    pub desired: u32,
    /// Ready pods.
    pub ready: u32,
    /// Pods of the current template (revision).
    pub updated: u32,
    /// Desired minus available.
    pub unavailable: u32,
}

impl Sample {
    fn same_values(&self, o: &Sample) -> bool {
        (
            &self.commit,
            self.desired,
            self.ready,
            self.updated,
            self.unavailable,
        ) == (&o.commit, o.desired, o.ready, o.updated, o.unavailable)
    }
}

/// The samples of every followed workload, keyed `namespace/Kind/name`.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    rings: BTreeMap<String, VecDeque<Sample>>,
}

/// `namespace/Kind/name` of a `namespace/name` key.
pub fn workload_key(kind: &str, key: &str) -> String {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    format!("{ns}/{kind}/{name}")
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The samples of `namespace/Kind/name`, oldest first.
    pub fn samples(&self, key: &str) -> Option<&VecDeque<Sample>> {
        self.rings.get(key)
    }

    /// Records what `state` shows now; true when a sample was added. Workloads gone from
    /// the commit in force are forgotten.
    pub fn record(&mut self, state: &ClusterState) -> bool {
        let Some(commit) = state.commit.clone() else {
            return false;
        };
        let now = current(state);
        self.rings.retain(|k, _| now.contains_key(k));
        let mut added = false;
        for (key, mut s) in now {
            if !self.rings.contains_key(&key) && self.rings.len() >= MAX_WORKLOADS {
                continue;
            }
            s.commit.clone_from(&commit);
            s.at = state.now;
            let ring = self.rings.entry(key).or_default();
            if ring.back().is_some_and(|last| last.same_values(&s)) {
                continue;
            }
            if ring.len() >= MAX_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(s);
            added = true;
        }
        added
    }
}

/// Each Deployment's and StatefulSet's values now (commit and time left empty), in one pass
/// over the pods.
fn current(state: &ClusterState) -> BTreeMap<String, Sample> {
    let mut ready_by_owner: BTreeMap<String, u32> = BTreeMap::new();
    for p in state.pods.values() {
        if !p.ready {
            continue;
        }
        let owner = match &p.owner {
            Owner::ReplicaSet(rs) => match state.replica_sets.get(rs) {
                Some(r) if !r.standalone => workload_key("Deployment", &r.deployment),
                _ => continue,
            },
            Owner::StatefulSet(k) => workload_key("StatefulSet", k),
            _ => continue,
        };
        *ready_by_owner.entry(owner).or_default() += 1;
    }
    let mut out = BTreeMap::new();
    let blank = |desired: u32| Sample {
        at: 0,
        commit: String::new(),
        desired,
        ready: 0,
        updated: 0,
        unavailable: 0,
    };
    for (key, d) in &state.desired.deployments {
        let wk = workload_key("Deployment", key);
        let mut s = blank(d.spec.replicas.unwrap_or(1));
        s.ready = ready_by_owner.get(&wk).copied().unwrap_or(0);
        if let Some(st) = state.deployments.get(key) {
            s.updated = st.updated;
            s.unavailable = s.desired.saturating_sub(st.available);
        } else {
            s.unavailable = s.desired;
        }
        out.insert(wk, s);
    }
    for (key, ss) in &state.desired.stateful_sets {
        let wk = workload_key("StatefulSet", key);
        let mut s = blank(ss.spec.replicas.unwrap_or(1));
        s.ready = ready_by_owner.get(&wk).copied().unwrap_or(0);
        if let Some(r) = state.stateful_sets.get(key) {
            s.updated = r.updated;
            s.unavailable = s.desired.saturating_sub(r.available);
        } else {
            s.unavailable = s.desired;
        }
        out.insert(wk, s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_kind_between_namespace_and_name() {
        assert_eq!(workload_key("Deployment", "web/api"), "web/Deployment/api");
        assert_eq!(workload_key("StatefulSet", "db"), "default/StatefulSet/db");
    }

    #[test]
    fn no_commit_records_nothing() {
        let mut t = Timeline::new();
        assert!(!t.record(&ClusterState::new()));
        assert!(t.rings.is_empty());
    }

    #[test]
    fn samples_follow_changes_and_a_ring_is_bounded() {
        let mut s = crate::synthetic::state(1, 2, 2);
        let mut t = Timeline::new();
        assert!(t.record(&s));
        let key = "ns0/Deployment/app0";
        let first = t
            .samples(key)
            .expect("followed")
            .back()
            .cloned()
            .expect("a sample");
        assert_eq!((first.desired, first.ready, first.unavailable), (2, 2, 0));
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            s.commit = Some(format!("{i:040x}"));
            s.now += 1;
            assert!(t.record(&s), "a new commit is a new sample");
        }
        let ring = t.samples(key).expect("followed");
        assert_eq!(ring.len(), MAX_SAMPLES);
        assert_eq!(
            ring.front().map(|x| x.commit.clone()),
            Some(format!("{:040x}", 10))
        );
        s.desired
            .deployments
            .remove(key.replace("/Deployment", "").as_str());
        t.record(&s);
        assert!(
            t.samples(key).is_none(),
            "a workload gone from the commit is forgotten"
        );
        assert!(t.samples("ns1/Deployment/app1").is_some());
    }
}
