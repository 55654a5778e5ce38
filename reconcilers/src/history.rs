//! What happened to the commits the cluster decided on: each adoption (with the commit it
//! replaced, its digest, who proposed it and which nodes acknowledged it) and each refusal
//! (with its reason or diagnostics). The daemon turns this into the notes under
//! `refs/notes/kommit`, so whichever node leads can write them: status in Git is a function
//! of the replicated state.
//!
//! The history is bounded ([`HISTORY_LEN`] commits; older ones are already in Git) and
//! ordered by application, oldest first. A commit appears at most once: a new decision on a
//! commit (a refused rewrite back to an old commit, a commit adopted again) replaces its
//! record and moves it to the end. Time is always an entry's `at`.

use crate::types::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most commits the history keeps.
pub const HISTORY_LEN: usize = 256;

/// One decision on one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The commit SHA.
    pub commit: String,
    /// When it was decided (the entry's timestamp).
    pub at: Millis,
    /// The node that proposed the decision, when the entry names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Adopted or refused, with the detail the note needs.
    pub outcome: CommitOutcome,
}

/// What the cluster decided about a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitOutcome {
    /// It was adopted.
    Adopted {
        /// The commit it replaced (None for the first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
        /// The digest of its desired state.
        digest: String,
        /// Node -> when it first acknowledged this commit.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        acks: BTreeMap<String, Millis>,
    },
    /// It was refused; the adopted commit stayed in force.
    Refused {
        /// Why, when there are no diagnostics (e.g. a history rewrite).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Validation errors as `file:line:col: message`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        diagnostics: Vec<String>,
    },
}

/// The bounded, ordered history of decisions, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct History(Vec<CommitRecord>);

impl History {
    /// Whether nothing was recorded (the state then serializes as it did before histories).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The records, oldest first.
    pub fn records(&self) -> &[CommitRecord] {
        &self.0
    }

    /// The record of `commit`, if it is still in the history.
    pub fn get(&self, commit: &str) -> Option<&CommitRecord> {
        self.0.iter().find(|r| r.commit == commit)
    }

    /// Whether the latest decision on `commit` was a refusal.
    pub fn is_refused(&self, commit: &str) -> bool {
        self.get(commit)
            .is_some_and(|r| matches!(r.outcome, CommitOutcome::Refused { .. }))
    }

    /// The adoption that replaced `commit`: the first adoption recorded after its own.
    pub fn superseded_by(&self, commit: &str) -> Option<&CommitRecord> {
        let i = self.0.iter().position(|r| r.commit == commit)?;
        self.0[i + 1..]
            .iter()
            .find(|r| matches!(r.outcome, CommitOutcome::Adopted { .. }))
    }

    /// Records a decision, replacing any earlier one on the same commit, and drops the
    /// oldest records beyond [`HISTORY_LEN`].
    pub(crate) fn record(&mut self, rec: CommitRecord) {
        self.0.retain(|r| r.commit != rec.commit);
        self.0.push(rec);
        let over = self.0.len().saturating_sub(HISTORY_LEN);
        self.0.drain(..over);
    }

    /// Notes that `node` acknowledged `commit` at `at`; the first acknowledgement counts.
    pub(crate) fn ack(&mut self, node: &str, commit: &str, at: Millis) {
        if let Some(CommitRecord {
            outcome: CommitOutcome::Adopted { acks, .. },
            ..
        }) = self.0.iter_mut().find(|r| r.commit == commit)
        {
            acks.entry(node.to_string()).or_insert(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adopted(c: &str, at: Millis) -> CommitRecord {
        CommitRecord {
            commit: c.into(),
            at,
            by: None,
            outcome: CommitOutcome::Adopted {
                previous: None,
                digest: "d".into(),
                acks: BTreeMap::new(),
            },
        }
    }

    fn refused(c: &str, at: Millis) -> CommitRecord {
        CommitRecord {
            commit: c.into(),
            at,
            by: None,
            outcome: CommitOutcome::Refused {
                reason: Some("no".into()),
                diagnostics: vec![],
            },
        }
    }

    #[test]
    fn bounded_deduplicated_and_ordered() {
        let mut h = History::default();
        for i in 0..(HISTORY_LEN as u64 + 10) {
            h.record(adopted(&format!("c{i}"), i));
        }
        assert_eq!(h.records().len(), HISTORY_LEN);
        assert_eq!(h.records()[0].commit, "c10");
        assert!(h.get("c9").is_none());
        // A new decision on a known commit replaces it and moves it to the end.
        h.record(refused("c10", 1000));
        assert_eq!(h.records().len(), HISTORY_LEN);
        assert_eq!(h.records()[0].commit, "c11");
        assert!(h.is_refused("c10"));
        assert_eq!(h.records().last().map(|r| r.at), Some(1000));
    }

    #[test]
    fn superseded_by_skips_refusals_and_acks_keep_the_first_time() {
        let mut h = History::default();
        h.record(adopted("a", 1));
        h.record(refused("x", 2));
        h.record(adopted("b", 3));
        assert_eq!(h.superseded_by("a").map(|r| r.commit.as_str()), Some("b"));
        assert!(h.superseded_by("b").is_none());
        h.ack("n1", "a", 5);
        h.ack("n1", "a", 9);
        h.ack("n1", "x", 9);
        h.ack("n1", "nope", 9);
        match &h.get("a").map(|r| &r.outcome) {
            Some(CommitOutcome::Adopted { acks, .. }) => {
                assert_eq!(acks.get("n1"), Some(&5));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.get("x"), Some(&refused("x", 2)));
    }
}
