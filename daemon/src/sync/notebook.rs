//! The leader's side of the notes: queue exactly the notes Git lacks.
//!
//! The notes Git should hold are a pure function of the replicated state
//! ([`super::notes::notes`]). Whichever node leads, after `ensure_linearizable`, compares
//! them with what Git holds and queues the notes that would change something. How "exactly
//! once" holds across leader changes:
//!
//! 1. Content is a function of the state: two leaders derive the same note for a commit
//!    from the same state (same `at`, `by`, digest, acks, health); only `updated` differs,
//!    and it is ignored by every comparison ([`StatusNote::same_content`]).
//! 2. A new leader knows nothing it wrote itself, so on its first pass it reads the notes of
//!    every recorded commit from its mirror's `refs/notes/kommit` (fetched with the branch;
//!    the writer also moves it after each push). Afterwards it remembers what it queued. A
//!    note is queued only when merging it into that known note would change its content, so
//!    an unchanged state queues nothing, and a changed one (a new ack, new health) queues
//!    one update of the same note.
//! 3. The mirror may lag the remote (the old leader pushed after our last fetch), so a note
//!    may be queued that the remote already has. The push merges each queued note into the
//!    remote's note, and a merge that changes nothing but `updated` writes nothing
//!    ([`crate::git::note::write_on`]): the note still lands once. Notes a deposed leader
//!    still has in its outbox merge the same way; the fresher `updated` decides object
//!    health.
//!
//! What remains is at-least-once delivery (the outbox) of a write that is idempotent on the
//! remote, which is exactly once in Git.

use super::notes;
use crate::consensus::node::Shared;
use crate::git::mirror::Mirror;
use crate::git::note::{self, StatusNote};
use crate::git::writer::StatusWriter;
use crate::git::NOTES_REF;
use gix::ObjectId;
use kommit_reconcilers::ClusterState;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this leader knows Git holds, per recorded commit. Empty until its first pass.
#[derive(Debug, Default)]
pub struct NoteBook {
    known: Option<BTreeMap<String, StatusNote>>,
}

impl NoteBook {
    /// Forgets everything: called when this node stops leading, so the next term starts
    /// from what Git holds.
    pub fn forget(&mut self) {
        self.known = None;
    }

    /// Queues the notes that differ from what Git holds; returns how many. Leader only.
    pub async fn sync(
        &mut self,
        shared: &Arc<Shared<ClusterState>>,
        mirror: &Mirror,
        writer: &StatusWriter,
    ) -> Result<usize, String> {
        shared
            .raft
            .ensure_linearizable()
            .await
            .map_err(|e| format!("not a confirmed leader: {e}"))?;
        let want = shared.sm.read(notes::notes);
        if self.known.is_none() {
            let (m, commits) = (mirror.clone(), want.keys().cloned().collect::<Vec<_>>());
            let in_git = tokio::task::spawn_blocking(move || read_notes(&m, &commits))
                .await
                .map_err(|e| format!("reading notes task failed: {e}"))??;
            self.known = Some(in_git);
        }
        let known = self.known.get_or_insert_with(BTreeMap::new);
        let mut queued = 0;
        for (commit, note) in changed(known, &want) {
            writer
                .note(note.clone())
                .map_err(|e| format!("queueing the note on {commit}: {e}"))?;
            let merged = match known.remove(&commit) {
                Some(k) => k.merge(note),
                None => note,
            };
            known.insert(commit, merged);
            queued += 1;
        }
        known.retain(|k, _| want.contains_key(k));
        Ok(queued)
    }
}

/// The notes of `want` that would change what `known` holds for their commit. Pure.
pub fn changed(
    known: &BTreeMap<String, StatusNote>,
    want: &BTreeMap<String, StatusNote>,
) -> Vec<(String, StatusNote)> {
    want.iter()
        .filter(|(commit, note)| match known.get(*commit) {
            None => true,
            Some(k) => !k.same_content(note) && !k.same_content(&k.clone().merge((*note).clone())),
        })
        .map(|(c, n)| (c.clone(), n.clone()))
        .collect()
}

/// The notes on `commits` in the mirror's `refs/notes/kommit`. A note that cannot be read
/// or parsed counts as absent (ours will replace it). Blocking.
fn read_notes(mirror: &Mirror, commits: &[String]) -> Result<BTreeMap<String, StatusNote>, String> {
    let Some(tip) = mirror
        .local_ref(NOTES_REF)
        .map_err(|e| format!("reading {NOTES_REF}: {e}"))?
    else {
        return Ok(BTreeMap::new());
    };
    let repo = mirror.repo().map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for c in commits {
        let Ok(id) = ObjectId::from_hex(c.as_bytes()) else {
            continue;
        };
        match note::read(&repo, Some(tip), id) {
            Ok(Some(n)) => {
                out.insert(c.clone(), n);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(commit = %c, "ignoring the note in Git: {e}"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::note::{CommitState, Health, ObjectHealth};
    use crate::git::time::Timestamp;

    fn note(c: u8, state: CommitState, updated: i64, acks: &[&str]) -> StatusNote {
        let mut n = StatusNote::new(
            ObjectId::from_bytes_or_panic(&[c; 20]),
            state,
            Timestamp(10),
        );
        n.updated = Some(Timestamp(updated));
        n.acks = acks
            .iter()
            .map(|a| ((*a).to_string(), Timestamp(11)))
            .collect();
        n
    }

    fn map(notes: &[StatusNote]) -> BTreeMap<String, StatusNote> {
        notes
            .iter()
            .map(|n| (n.commit.clone(), n.clone()))
            .collect()
    }

    #[test]
    fn only_notes_that_change_git_are_queued() {
        let adopted = note(1, CommitState::Adopted, 20, &["n1"]);
        let refused = note(2, CommitState::Refused, 20, &[]);
        let known = map(&[adopted.clone(), refused.clone()]);

        // The same notes, derived later (only `updated` moved): nothing to write.
        let later = map(&[
            note(1, CommitState::Adopted, 90, &["n1"]),
            note(2, CommitState::Refused, 90, &[]),
        ]);
        assert!(changed(&known, &later).is_empty());

        // A new ack and a new commit: exactly those two.
        let mut acked = note(1, CommitState::Adopted, 90, &["n1", "n2"]);
        let fresh = note(3, CommitState::Adopted, 90, &[]);
        let got = changed(
            &known,
            &map(&[acked.clone(), refused.clone(), fresh.clone()]),
        );
        let commits: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(commits, [acked.commit.as_str(), fresh.commit.as_str()]);

        // Health changed: an update. Git holding more (an ack the state no longer has): none.
        acked.acks.clear();
        acked.objects.insert(
            "default/Deployment/web".into(),
            ObjectHealth {
                health: Health::Healthy,
                message: None,
                replicas: Some(1),
                ready_replicas: Some(1),
            },
        );
        assert_eq!(changed(&known, &map(&[acked])).len(), 1);
        let fewer = note(1, CommitState::Adopted, 90, &[]);
        assert!(changed(&known, &map(&[fewer])).is_empty());
    }
}
