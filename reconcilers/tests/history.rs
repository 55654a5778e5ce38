//! The commit history in the replicated state: adoptions, acknowledgements and refusals are
//! recorded from log entries alone, bounded, and absent from the bytes while empty.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, CommitOutcome, Entry, HISTORY_LEN};
use std::collections::BTreeMap;

fn cluster() -> ClusterState {
    let mut s = ClusterState::new();
    for n in ["n0", "n1"] {
        s.apply(
            &Entry::NodeUp {
                info: node(n, 4000, 8 * GI, 110),
            },
            1,
        );
    }
    s
}

fn refuse(commit: &str, reason: &str) -> Entry {
    Entry::Refuse {
        commit: commit.into(),
        reason: Some(reason.into()),
        diagnostics: vec![],
        by: Some("n0".into()),
    }
}

#[test]
fn adoptions_acks_and_refusals_are_recorded_from_entries() {
    let mut s = cluster();
    let d = desired(&[("web.yaml", &deployment_yaml("web", 1, "nginx:1", ""))]);
    let mut first = adopt_entry("c1", None, &d);
    if let Entry::Adopt { by, .. } = &mut first {
        *by = Some("n0".into());
    }
    s.apply(&first, 10);
    s.apply(&refuse("bad", "invalid"), 20);
    s.apply(
        &Entry::Ack {
            node: "n1".into(),
            commit: "c1".into(),
        },
        25,
    );
    // An ack from a node the state does not know is not recorded.
    s.apply(
        &Entry::Ack {
            node: "ghost".into(),
            commit: "c1".into(),
        },
        26,
    );
    s.apply(&adopt_entry("c2", Some("c1"), &d), 30);
    // A refusal of the adopted commit changes nothing; a rejected Adopt records nothing.
    s.apply(&refuse("c2", "late"), 40);
    s.apply(&adopt_entry("c3", Some("elsewhere"), &d), 50);

    let h = &s.history;
    let commits: Vec<&str> = h.records().iter().map(|r| r.commit.as_str()).collect();
    assert_eq!(commits, ["c1", "bad", "c2"]);
    let c1 = h.get("c1").unwrap();
    assert_eq!((c1.at, c1.by.as_deref()), (10, Some("n0")));
    assert_eq!(
        c1.outcome,
        CommitOutcome::Adopted {
            previous: None,
            digest: d.digest(),
            acks: BTreeMap::from([("n1".to_string(), 25)]),
        }
    );
    assert!(h.is_refused("bad"));
    assert!(!h.is_refused("c2"));
    match &h.get("c2").unwrap().outcome {
        CommitOutcome::Adopted { previous, .. } => assert_eq!(previous.as_deref(), Some("c1")),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.superseded_by("c1").map(|r| r.commit.as_str()), Some("c2"));

    // The history is part of the snapshot and survives a round trip.
    let back = ClusterState::from_canonical_bytes(&s.canonical_bytes()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn an_empty_history_leaves_the_snapshot_bytes_as_they_were() {
    let s = cluster();
    let bytes = String::from_utf8(s.canonical_bytes()).unwrap();
    assert!(!bytes.contains("\"history\":"), "{bytes}");
    // And an Adopt entry without a proposer serializes without the field.
    let d = desired(&[("web.yaml", &deployment_yaml("web", 1, "nginx:1", ""))]);
    let json = serde_json::to_string(&adopt_entry("c1", None, &d)).unwrap();
    assert!(!json.contains("\"by\""), "{json}");
}

#[test]
fn the_history_is_bounded() {
    let mut s = cluster();
    for i in 0..HISTORY_LEN + 5 {
        s.apply(&refuse(&format!("r{i}"), "invalid"), 10 + i as u64);
    }
    assert_eq!(s.history.records().len(), HISTORY_LEN);
    assert_eq!(s.history.records()[0].commit, "r5");
}
