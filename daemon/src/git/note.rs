//! The note kommit attaches to every commit it has seen, under `refs/notes/kommit`, as YAML.
//!
//! A note says whether the commit was adopted, refused (with its diagnostics as
//! `file:line:col: message`) or superseded (and by which commit), when, which nodes have
//! acknowledged it, and the health of each object. The daemon fills these plain types from
//! the replicated state; this module only formats, parses, merges and stores them.
//!
//! Merging is a union per commit: two writers' notes on the same commit combine into one
//! whose state is the later one (then the more recently `updated`, which decides object
//! health) and whose acks and object health are the union. The merge is commutative, so
//! concurrent writers converge; a merge that changes nothing but `updated` is not written.

use std::collections::BTreeMap;

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use super::loader::Diagnostic;
use super::time::Timestamp;

/// Largest note read back from Git.
pub const MAX_NOTE_BYTES: u64 = 1 << 20;
/// Format version written into every note.
pub const NOTE_VERSION: u32 = 1;

/// The state of a commit as kommit sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitState {
    /// In force (or was, until superseded).
    Adopted,
    /// Never adopted: invalid, or a refused history rewrite.
    Refused,
    /// Was adopted, then replaced by a newer adopted commit.
    Superseded,
}

impl CommitState {
    /// Progress order used to break ties when merging: adopted < refused < superseded.
    fn rank(self) -> u8 {
        match self {
            CommitState::Adopted => 0,
            CommitState::Refused => 1,
            CommitState::Superseded => 2,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Adopted => "adopted",
            CommitState::Refused => "refused",
            CommitState::Superseded => "superseded",
        }
    }
}

/// Health of one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Converged and ready.
    Healthy,
    /// Converging.
    Progressing,
    /// Running below the desired level.
    Degraded,
    /// Failed (crash loop, failed job, unschedulable...).
    Failed,
    /// Not known yet.
    Unknown,
}

/// Health of one object, with an optional human message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectHealth {
    /// Health.
    pub health: Health,
    /// Why, when not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Desired replicas, for replicated kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Ready replicas, for replicated kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<u32>,
}

/// The note on one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusNote {
    /// Format version, [`NOTE_VERSION`].
    pub version: u32,
    /// The annotated commit (40 hex).
    pub commit: String,
    /// Adopted, refused or superseded.
    pub state: CommitState,
    /// When the state was reached (leader time).
    pub at: Timestamp,
    /// The node (leader) that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// For `superseded`: the commit that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// For `refused` without diagnostics (e.g. a history rewrite): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Digest of the adopted desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Validation errors as `file:line:col: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
    /// Per-node acknowledgements: node -> when it converged on this commit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acks: BTreeMap<String, Timestamp>,
    /// Per-object health, keyed `namespace/kind/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, ObjectHealth>,
    /// When the acks and object health were last brought up to date (leader time). Orders
    /// two versions of the same state in a merge, so fresher health wins; ignored when
    /// deciding whether a note changed ([`StatusNote::same_content`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Timestamp>,
}

/// Errors of note formatting, parsing and storage.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// Not a kommit note.
    #[error("note on {commit} is not a kommit status note: {message}")]
    Parse {
        /// The annotated commit.
        commit: String,
        /// Parser message.
        message: String,
    },
    /// The note's commit field is not a full hex object id.
    #[error("note names invalid commit {0:?}")]
    BadCommit(String),
    /// A note blob over [`MAX_NOTE_BYTES`].
    #[error("note on {commit} is {size} bytes, over the {MAX_NOTE_BYTES} byte limit")]
    TooLarge {
        /// The annotated commit.
        commit: ObjectId,
        /// Its size.
        size: u64,
    },
    /// Serialising failed.
    #[error("formatting note on {commit}: {message}")]
    Format {
        /// The annotated commit.
        commit: String,
        /// Serializer message.
        message: String,
    },
    /// Git object access failed.
    #[error("notes tree {what}: {source}")]
    Git {
        /// What was being done.
        what: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn git_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> NoteError {
    let what = what.into();
    move |e| NoteError::Git {
        what,
        source: Box::new(e),
    }
}

impl StatusNote {
    /// A note with no acks, objects or diagnostics.
    pub fn new(commit: ObjectId, state: CommitState, at: Timestamp) -> Self {
        StatusNote {
            version: NOTE_VERSION,
            commit: commit.to_string(),
            state,
            at,
            by: None,
            superseded_by: None,
            reason: None,
            digest: None,
            diagnostics: Vec::new(),
            acks: BTreeMap::new(),
            objects: BTreeMap::new(),
            updated: None,
        }
    }

    /// A `refused` note carrying the loader's diagnostics as `file:line:col: message`.
    pub fn refused(commit: ObjectId, at: Timestamp, diagnostics: &[Diagnostic]) -> Self {
        let mut n = StatusNote::new(commit, CommitState::Refused, at);
        n.diagnostics = diagnostics.iter().map(diagnostic_line).collect();
        n
    }

    /// A `superseded` note pointing at the commit that replaced this one.
    pub fn superseded(commit: ObjectId, at: Timestamp, by: ObjectId) -> Self {
        let mut n = StatusNote::new(commit, CommitState::Superseded, at);
        n.superseded_by = Some(by.to_string());
        n
    }

    /// The annotated commit id.
    pub fn commit_id(&self) -> Result<ObjectId, NoteError> {
        if self.commit.len() != 40 {
            return Err(NoteError::BadCommit(self.commit.clone()));
        }
        ObjectId::from_hex(self.commit.as_bytes())
            .map_err(|_| NoteError::BadCommit(self.commit.clone()))
    }

    /// The YAML text stored in Git.
    pub fn to_yaml(&self) -> Result<String, NoteError> {
        serde_saphyr::to_string(self).map_err(|e| NoteError::Format {
            commit: self.commit.clone(),
            message: e.to_string(),
        })
    }

    /// Parses a note's YAML.
    pub fn from_yaml(commit: &str, text: &str) -> Result<Self, NoteError> {
        let note: StatusNote = serde_saphyr::from_str(text).map_err(|e| NoteError::Parse {
            commit: commit.to_owned(),
            message: e.to_string().lines().next().unwrap_or_default().to_owned(),
        })?;
        if note.commit != commit {
            return Err(NoteError::Parse {
                commit: commit.to_owned(),
                message: format!("note names commit {} instead", note.commit),
            });
        }
        Ok(note)
    }

    /// Whether two notes say the same thing, apart from when they were brought up to date.
    pub fn same_content(&self, other: &StatusNote) -> bool {
        StatusNote {
            updated: other.updated,
            ..self.clone()
        } == *other
    }

    /// Union of two notes on the same commit. Commutative: the later (then further
    /// progressed, then more recently updated, then greater) note decides the state and the
    /// health of its objects; acks and object health are unioned, keeping each node's later
    /// ack.
    pub fn merge(self, other: StatusNote) -> StatusNote {
        let key = |n: &StatusNote| (n.at, n.state.rank(), n.updated);
        let (mut win, lose) = match key(&self).cmp(&key(&other)) {
            std::cmp::Ordering::Greater => (self, other),
            std::cmp::Ordering::Less => (other, self),
            std::cmp::Ordering::Equal => {
                let a = self.to_yaml().unwrap_or_default();
                let b = other.to_yaml().unwrap_or_default();
                if a >= b {
                    (self, other)
                } else {
                    (other, self)
                }
            }
        };
        for (node, at) in lose.acks {
            let e = win.acks.entry(node).or_insert(at);
            *e = (*e).max(at);
        }
        for (key, health) in lose.objects {
            win.objects.entry(key).or_insert(health);
        }
        win
    }
}

/// A diagnostic as written in notes: `file:line:col: message`.
pub fn diagnostic_line(d: &Diagnostic) -> String {
    format!("{}:{}:{}: {}", d.path, d.line, d.col, d.message)
}

/// The tree of a notes commit, or the empty tree.
fn notes_tree(
    repo: &gix::Repository,
    notes_commit: Option<ObjectId>,
) -> Result<ObjectId, NoteError> {
    match notes_commit {
        None => Ok(ObjectId::empty_tree(repo.object_hash())),
        Some(c) => Ok(repo
            .find_commit(c)
            .map_err(git_err(format!("reading notes commit {c}")))?
            .tree_id()
            .map_err(git_err(format!("reading notes commit {c}")))?
            .detach()),
    }
}

/// The raw note blob on `commit` in the notes commit `notes_commit`, bounded in size.
pub fn read_raw(
    repo: &gix::Repository,
    notes_commit: Option<ObjectId>,
    commit: ObjectId,
) -> Result<Option<Vec<u8>>, NoteError> {
    let tree = notes_tree(repo, notes_commit)?;
    let mut state = gix::note::plumbing::State::new(tree, repo).map_err(git_err("loading"))?;
    let Some(blob) = state
        .get(&commit, repo)
        .map_err(git_err(format!("looking up {commit}")))?
    else {
        return Ok(None);
    };
    let size = repo
        .find_header(blob)
        .map_err(git_err(format!("reading note {blob}")))?
        .size();
    if size > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge { commit, size });
    }
    let mut b = repo
        .find_blob(blob)
        .map_err(git_err(format!("reading note {blob}")))?;
    Ok(Some(b.take_data()))
}

/// The parsed note on `commit`, if any.
pub fn read(
    repo: &gix::Repository,
    notes_commit: Option<ObjectId>,
    commit: ObjectId,
) -> Result<Option<StatusNote>, NoteError> {
    match read_raw(repo, notes_commit, commit)? {
        None => Ok(None),
        Some(bytes) => {
            let hex = commit.to_string();
            StatusNote::from_yaml(&hex, &String::from_utf8_lossy(&bytes)).map(Some)
        }
    }
}

/// Writes `notes` on top of the notes commit `base`, merging each with the note already there
/// (union per commit; a foreign, unparseable note is replaced). Returns the new notes commit,
/// or `base` unchanged when nothing changed. The commit is dated `at`.
pub fn write_on(
    repo: &gix::Repository,
    base: Option<ObjectId>,
    notes: &[StatusNote],
    identity: &super::status::Identity,
    at: Timestamp,
) -> Result<Option<ObjectId>, NoteError> {
    let tree = notes_tree(repo, base)?;
    let mut state = gix::note::plumbing::State::new(tree, repo).map_err(git_err("loading"))?;
    let mut changed = Vec::new();
    for note in notes {
        let commit = note.commit_id()?;
        let existing = match state
            .get(&commit, repo)
            .map_err(git_err(format!("looking up {commit}")))?
        {
            None => None,
            Some(blob) => {
                let size = repo
                    .find_header(blob)
                    .map_err(git_err(format!("reading note {blob}")))?
                    .size();
                if size > MAX_NOTE_BYTES {
                    None
                } else {
                    let b = repo
                        .find_blob(blob)
                        .map_err(git_err(format!("reading note {blob}")))?;
                    match StatusNote::from_yaml(&note.commit, &String::from_utf8_lossy(&b.data)) {
                        Ok(n) => Some((blob, n)),
                        Err(e) => {
                            tracing::warn!(error = %e, "replacing a foreign note");
                            None
                        }
                    }
                }
            }
        };
        let merged = match &existing {
            Some((_, n)) => n.clone().merge(note.clone()),
            None => note.clone(),
        };
        // Nothing new (at most a later `updated`): the note already there stands, so the
        // same note written twice, by one leader or by two, lands once.
        if existing
            .as_ref()
            .is_some_and(|(_, n)| n.same_content(&merged))
        {
            continue;
        }
        let blob = repo
            .write_blob(merged.to_yaml()?.as_bytes())
            .map_err(git_err("writing note blob"))?
            .detach();
        if existing.as_ref().map(|(b, _)| *b) == Some(blob) {
            continue;
        }
        state
            .edit(commit, Some(blob), repo)
            .map_err(git_err(format!("editing note on {commit}")))?;
        changed.push(commit);
    }
    if changed.is_empty() {
        return Ok(base);
    }
    let new_tree = state.write(repo).map_err(git_err("writing tree"))?;
    let message = if changed.len() == 1 {
        format!("kommit: note on {}\n", changed[0])
    } else {
        let mut m = format!("kommit: notes on {} commits\n\n", changed.len());
        for c in &changed {
            m.push_str(&format!("{c}\n"));
        }
        m
    };
    let id = super::status::write_commit(repo, new_tree, base, &message, identity, at)
        .map_err(git_err("writing notes commit"))?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(at: i64, state: CommitState, acks: &[(&str, i64)]) -> StatusNote {
        let mut n = StatusNote::new(
            ObjectId::from_bytes_or_panic(&[7; 20]),
            state,
            Timestamp(at),
        );
        n.acks = acks
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Timestamp(*v)))
            .collect();
        n
    }

    #[test]
    fn yaml_round_trip() {
        let mut n = note(1_795_303_800, CommitState::Refused, &[("n1", 5)]);
        n.diagnostics = vec!["apps/web.yaml:3:7: unknown field \"replica\"".into()];
        n.objects.insert(
            "default/Deployment/web".into(),
            ObjectHealth {
                health: Health::Degraded,
                message: Some("1 of 3 replicas ready".into()),
                replicas: Some(3),
                ready_replicas: Some(1),
            },
        );
        let text = n.to_yaml().expect("serialises");
        assert!(text.contains("state: refused"), "{text}");
        assert!(text.contains("at: \"2026-11-21T23:30:00Z\""), "{text}");
        assert_eq!(StatusNote::from_yaml(&n.commit, &text).expect("parses"), n);
    }

    #[test]
    fn merge_is_a_commutative_union() {
        let cases = [
            (
                note(10, CommitState::Adopted, &[("a", 11)]),
                note(20, CommitState::Superseded, &[("b", 12)]),
                CommitState::Superseded,
                vec![("a", 11), ("b", 12)],
            ),
            (
                note(10, CommitState::Adopted, &[("a", 11)]),
                note(10, CommitState::Adopted, &[("a", 15)]),
                CommitState::Adopted,
                vec![("a", 15)],
            ),
            (
                note(10, CommitState::Adopted, &[]),
                note(10, CommitState::Refused, &[]),
                CommitState::Refused,
                vec![],
            ),
        ];
        for (a, b, state, acks) in cases {
            let ab = a.clone().merge(b.clone());
            let ba = b.merge(a);
            assert_eq!(ab, ba);
            assert_eq!(ab.state, state);
            let want: BTreeMap<String, Timestamp> = acks
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Timestamp(v)))
                .collect();
            assert_eq!(ab.acks, want);
        }
    }

    #[test]
    fn the_fresher_update_decides_object_health_and_same_content_ignores_it() {
        let health = |h: Health| ObjectHealth {
            health: h,
            message: None,
            replicas: Some(2),
            ready_replicas: Some(u32::from(h == Health::Healthy) * 2),
        };
        let mut old = note(10, CommitState::Adopted, &[("a", 11)]);
        old.updated = Some(Timestamp(12));
        old.objects
            .insert("default/Deployment/web".into(), health(Health::Progressing));
        let mut new = note(10, CommitState::Adopted, &[("b", 13)]);
        new.updated = Some(Timestamp(20));
        new.objects
            .insert("default/Deployment/web".into(), health(Health::Healthy));
        let ab = old.clone().merge(new.clone());
        assert_eq!(ab, new.clone().merge(old.clone()));
        assert_eq!(ab.objects["default/Deployment/web"].health, Health::Healthy);
        assert_eq!(ab.updated, Some(Timestamp(20)));
        assert_eq!(ab.acks.len(), 2);

        let mut later = old.clone();
        later.updated = Some(Timestamp(99));
        assert!(old.same_content(&later) && later.same_content(&old));
        assert!(!old.same_content(&new));
        // A superseded note wins over any update of the adopted one, keeping its health.
        let sup = StatusNote::superseded(
            old.commit_id().expect("id"),
            Timestamp(30),
            ObjectId::null(gix::hash::Kind::Sha1),
        );
        let m = ab.merge(sup);
        assert_eq!(m.state, CommitState::Superseded);
        assert_eq!(m.objects["default/Deployment/web"].health, Health::Healthy);
    }

    #[test]
    fn rejects_a_note_for_another_commit() {
        let n = note(1, CommitState::Adopted, &[]);
        let text = n.to_yaml().expect("serialises");
        assert!(StatusNote::from_yaml(&"0".repeat(40), &text).is_err());
    }
}
