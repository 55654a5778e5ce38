//! The notes Git should hold, as a pure function of the replicated state: state in, notes
//! out, no clock and no IO.
//!
//! Every commit in the state's history (`ClusterState::history`, the last
//! [`kommit_reconcilers::HISTORY_LEN`] decisions) gets one note:
//!
//! - an adopted commit still in force: `adopted`, with its digest, the node that proposed
//!   it, each node's first acknowledgement, and the health of every object (from the same
//!   rules as the status branch, [`super::report`]) stamped `updated` with the state's time;
//! - an adopted commit that a later adoption replaced: `superseded`, by that commit, at its
//!   time and by its proposer, keeping the digest and acks (object health stays whatever
//!   was last written while it was in force: the merge keeps it);
//! - a refused commit: `refused`, with the reason or the `file:line:col` diagnostics.
//!
//! Every field except `updated` depends only on entries (their `at` and contents), so two
//! leaders derive byte-identical notes from the same state, and a note changes only when the
//! state does (a new ack, an object's health).

use super::report;
use crate::git::note::{CommitState, ObjectHealth, StatusNote};
use crate::git::time::Timestamp;
use gix::ObjectId;
use kommit_reconcilers::{ClusterState, CommitOutcome, CommitRecord, Millis};
use std::collections::BTreeMap;

/// Leader time in notes: whole seconds.
fn seconds(ms: Millis) -> Timestamp {
    Timestamp(i64::try_from(ms / 1000).unwrap_or(i64::MAX))
}

/// The note each recorded commit should have, by commit. Records whose commit is not a SHA
/// (only possible in hand-written states) are skipped.
pub fn notes(state: &ClusterState) -> BTreeMap<String, StatusNote> {
    let history = &state.history;
    let mut objects: Option<BTreeMap<String, ObjectHealth>> = None;
    let mut out = BTreeMap::new();
    for rec in history.records() {
        let Ok(id) = ObjectId::from_hex(rec.commit.as_bytes()) else {
            continue;
        };
        let note = match &rec.outcome {
            CommitOutcome::Refused {
                reason,
                diagnostics,
            } => {
                let mut n = decided(id, CommitState::Refused, rec);
                n.reason = reason.clone();
                n.diagnostics = diagnostics.clone();
                n
            }
            CommitOutcome::Adopted { digest, acks, .. } => {
                let in_force = state.commit.as_deref() == Some(rec.commit.as_str());
                let mut n = match history.superseded_by(&rec.commit) {
                    Some(next) if !in_force => {
                        let mut n = decided(id, CommitState::Superseded, next);
                        n.superseded_by = Some(next.commit.clone());
                        n
                    }
                    _ => decided(id, CommitState::Adopted, rec),
                };
                n.digest = Some(digest.clone());
                n.acks = acks
                    .iter()
                    .map(|(node, at)| (node.clone(), seconds(*at)))
                    .collect();
                if in_force {
                    n.objects = objects.get_or_insert_with(|| health(state)).clone();
                    n.updated = Some(seconds(state.now));
                }
                n
            }
        };
        out.insert(rec.commit.clone(), note);
    }
    out
}

/// A note in `state`, dated and signed by the decision `by`.
fn decided(id: ObjectId, state: CommitState, by: &CommitRecord) -> StatusNote {
    let mut n = StatusNote::new(id, state, seconds(by.at));
    n.by = by.by.clone();
    n
}

/// The health of every object of the adopted commit, keyed `namespace/Kind/name`.
fn health(state: &ClusterState) -> BTreeMap<String, ObjectHealth> {
    report::report(state, seconds(state.now))
        .objects
        .into_iter()
        .map(|(key, o)| {
            (
                key,
                ObjectHealth {
                    health: o.health,
                    message: o.message,
                    replicas: o.replicas,
                    ready_replicas: o.ready_replicas,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::note::Health;
    use crate::testutil::{node, repo_template, template_state};
    use kommit_reconcilers::{Entry, PodPhase, PodStatusChange};

    fn sha(c: char) -> String {
        c.to_string().repeat(40)
    }

    fn adopt(s: &mut ClusterState, c: char, parent: char, by: &str, at: Millis) {
        let desired = repo_template();
        s.apply(
            &Entry::Adopt {
                commit: sha(c),
                parent: Some(sha(parent)),
                digest: desired.digest(),
                desired,
                by: Some(by.into()),
            },
            at,
        );
        assert_eq!(s.commit, Some(sha(c)), "adopted");
    }

    fn ack(s: &mut ClusterState, node: &str, c: char, at: Millis) {
        s.apply(
            &Entry::Ack {
                node: node.into(),
                commit: sha(c),
            },
            at,
        );
    }

    fn ready_all(s: &mut ClusterState, at: Millis) {
        let mut by_node: BTreeMap<String, Vec<PodStatusChange>> = BTreeMap::new();
        for (k, p) in &s.pods {
            if let Some(n) = &p.node {
                by_node.entry(n.clone()).or_default().push(PodStatusChange {
                    pod: k.clone(),
                    uid: p.uid.clone(),
                    phase: PodPhase::Running,
                    ready: true,
                    containers: vec![],
                    pod_ip: p.pod_ip,
                    ..Default::default()
                });
            }
        }
        for (node, changes) in by_node {
            s.apply(&Entry::PodStatus { node, changes }, at);
        }
    }

    fn state() -> ClusterState {
        // `template_state` adopts commit `a` at t=2 ms without a proposer.
        template_state(&[node("n1", 4000, 8 << 30), node("n2", 4000, 8 << 30)], 'a')
    }

    #[test]
    fn adopted_superseded_and_refused_notes_follow_the_history() {
        let mut s = state();
        ack(&mut s, "n1", 'a', 3_000);
        s.apply(
            &Entry::Refuse {
                commit: sha('b'),
                reason: None,
                diagnostics: vec!["apps/x.yaml:3:7: unknown field \"replica\"".into()],
                by: Some("n1".into()),
            },
            5_000,
        );
        s.apply(
            &Entry::Refuse {
                commit: sha('e'),
                reason: Some("history rewrite".into()),
                diagnostics: vec![],
                by: Some("n2".into()),
            },
            6_000,
        );
        adopt(&mut s, 'c', 'a', "n2", 10_000);
        ack(&mut s, "n2", 'c', 11_000);
        ack(&mut s, "n1", 'c', 12_500);
        let digest = repo_template().digest();

        let notes = notes(&s);
        assert_eq!(
            notes.keys().cloned().collect::<Vec<_>>(),
            [sha('a'), sha('b'), sha('c'), sha('e')]
        );

        let a = &notes[&sha('a')];
        assert_eq!(a.state, CommitState::Superseded);
        assert_eq!(a.superseded_by, Some(sha('c')));
        assert_eq!((a.at, a.by.as_deref()), (Timestamp(10), Some("n2")));
        assert_eq!(a.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(a.acks, BTreeMap::from([("n1".to_string(), Timestamp(3))]));
        assert!(a.objects.is_empty() && a.updated.is_none(), "{a:?}");

        let b = &notes[&sha('b')];
        assert_eq!((b.state, b.at), (CommitState::Refused, Timestamp(5)));
        assert_eq!(b.by.as_deref(), Some("n1"));
        assert_eq!(
            b.diagnostics,
            ["apps/x.yaml:3:7: unknown field \"replica\""]
        );
        assert!(b.reason.is_none() && b.digest.is_none() && b.acks.is_empty());

        let e = &notes[&sha('e')];
        assert_eq!(e.state, CommitState::Refused);
        assert_eq!(e.reason.as_deref(), Some("history rewrite"));
        assert!(e.diagnostics.is_empty());

        let c = &notes[&sha('c')];
        assert_eq!(c.state, CommitState::Adopted);
        assert_eq!((c.at, c.by.as_deref()), (Timestamp(10), Some("n2")));
        assert_eq!(c.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(
            c.acks,
            BTreeMap::from([
                ("n1".to_string(), Timestamp(12)),
                ("n2".to_string(), Timestamp(11))
            ])
        );
        assert!(c.superseded_by.is_none());
        assert_eq!(c.updated, Some(Timestamp(12)));
        let hello = &c.objects["default/Deployment/hello"];
        assert_eq!(hello.health, Health::Progressing);
        assert_eq!((hello.replicas, hello.ready_replicas), (Some(2), Some(0)));
    }

    #[test]
    fn object_health_follows_the_pods_and_only_the_commit_in_force_carries_it() {
        let mut s = state();
        let before = notes(&s);
        let hello = &before[&sha('a')].objects["default/Deployment/hello"];
        assert_eq!(hello.health, Health::Progressing);

        ready_all(&mut s, 3_000);
        s.apply(&Entry::Tick, 400_000);
        let after = notes(&s);
        let a = &after[&sha('a')];
        let hello = &a.objects["default/Deployment/hello"];
        assert_eq!(hello.health, Health::Healthy, "{hello:?}");
        assert_eq!((hello.replicas, hello.ready_replicas), (Some(2), Some(2)));
        assert_eq!(a.updated, Some(Timestamp(400)));
        // Same decision, fresher health: the merge keeps the new health.
        let merged = before[&sha('a')].clone().merge(a.clone());
        assert_eq!(merged, *a);
        assert!(!before[&sha('a')].same_content(a));
    }

    #[test]
    fn the_same_state_gives_the_same_notes_and_time_alone_changes_nothing() {
        let mut s = state();
        ack(&mut s, "n1", 'a', 3_000);
        let one = notes(&s);
        assert_eq!(one, notes(&s.clone()));
        // A later state that changed nothing the notes show: the same content.
        s.apply(&Entry::Tick, 9_000);
        let two = notes(&s);
        for (k, n) in &one {
            assert!(n.same_content(&two[k]), "{k}");
        }
        assert_ne!(one, two, "only `updated` moved");
        // A second ack from the same node keeps the first time.
        ack(&mut s, "n1", 'a', 9_500);
        assert_eq!(notes(&s)[&sha('a')].acks["n1"], Timestamp(3));
    }

    #[test]
    fn a_history_without_sha_commits_gives_no_notes() {
        let mut s = ClusterState::new();
        s.apply(
            &Entry::Refuse {
                commit: "not-a-sha".into(),
                reason: Some("x".into()),
                diagnostics: vec![],
                by: None,
            },
            1,
        );
        assert!(notes(&s).is_empty());
    }
}
