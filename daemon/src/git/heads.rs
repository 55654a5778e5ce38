//! New heads of the desired-state branch: what changed since the adopted head, whether it
//! is a fast-forward, and whether it may be adopted.
//!
//! Detection reads the mirror (blocking gix); the decision ([`decide`]) is pure. The rewrite
//! permission is taken from the *currently adopted* `kommit.yaml`, so a force push cannot
//! authorise itself.

use gix::ObjectId;

/// Most commits listed between two heads (the audit list is truncated beyond this).
pub const MAX_COMMITS_BETWEEN: usize = 1000;

/// Errors of head detection.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    /// Walking history failed.
    #[error("walking history from {head}: {source}")]
    Walk {
        /// The new head.
        head: ObjectId,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A head that differs from the previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHead {
    /// The previously known (adopted) head, `None` on first sight.
    pub previous: Option<ObjectId>,
    /// The new head.
    pub head: ObjectId,
    /// Commits reachable from `head` and not from `previous`, newest first (for audit).
    pub commits: Vec<ObjectId>,
    /// Whether `commits` was cut at [`MAX_COMMITS_BETWEEN`].
    pub truncated: bool,
    /// Whether `previous` is an ancestor of `head` (true on first sight).
    pub fast_forward: bool,
}

/// What to do with a new head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Load, validate and propose it.
    Consider,
    /// Refuse it without loading: a history rewrite that the adopted config does not allow.
    Refuse {
        /// Why, for the note.
        reason: String,
    },
}

/// Compares `head` with `previous`. Returns `None` when they are equal.
pub fn detect(
    repo: &gix::Repository,
    previous: Option<ObjectId>,
    head: ObjectId,
) -> Result<Option<NewHead>, HeadsError> {
    if previous == Some(head) {
        return Ok(None);
    }
    let err = |e: Box<dyn std::error::Error + Send + Sync>| HeadsError::Walk { head, source: e };
    let fast_forward = match previous {
        None => true,
        Some(prev) => {
            repo.merge_base(prev, head)
                .map_err(|e| err(Box::new(e)))?
                .map(|b| b.detach())
                == Some(prev)
        }
    };
    let walk = repo
        .rev_walk([head])
        .with_hidden(previous)
        .all()
        .map_err(|e| err(Box::new(e)))?;
    let mut commits = Vec::new();
    let mut truncated = false;
    for info in walk {
        let info = info.map_err(|e| err(Box::new(e)))?;
        if commits.len() == MAX_COMMITS_BETWEEN {
            truncated = true;
            break;
        }
        commits.push(info.id);
    }
    Ok(Some(NewHead {
        previous,
        head,
        commits,
        truncated,
        fast_forward,
    }))
}

/// Decides whether a new head may be considered, given the adopted config's
/// `allowHistoryRewrite`.
pub fn decide(head: &NewHead, allow_history_rewrite: bool) -> Decision {
    match (head.fast_forward, head.previous) {
        (true, _) | (false, None) => Decision::Consider,
        (false, Some(_)) if allow_history_rewrite => Decision::Consider,
        (false, Some(prev)) => Decision::Refuse {
            reason: format!(
                "history rewrite: {} is not a fast-forward of adopted {}; kommit.yaml does not allow history rewrites",
                head.head, prev
            ),
        },
    }
}

/// What the leader should do with the branch head it just fetched.
#[derive(Debug)]
pub enum Verdict {
    /// The head is the adopted commit: nothing to do.
    Unchanged,
    /// Valid and allowed: propose it for adoption.
    Adopt {
        /// The new head and the commits since the adopted one.
        head: NewHead,
        /// The commit read and validated.
        loaded: Box<super::read::Loaded>,
    },
    /// Not adoptable: write this `refused` note on the head and keep the adopted commit.
    Refuse {
        /// The new head and the commits since the adopted one.
        head: NewHead,
        /// The note to write (reason or diagnostics).
        note: Box<super::note::StatusNote>,
    },
}

/// Errors of [`evaluate`].
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// History could not be walked.
    #[error(transparent)]
    Heads(#[from] HeadsError),
    /// Git objects could not be read.
    #[error(transparent)]
    Read(#[from] super::read::ReadError),
    /// The head's commit object could not be read for its signature.
    #[error("reading commit {head} for its signature: {message}")]
    Signature {
        /// The head.
        head: ObjectId,
        /// Cause.
        message: String,
    },
}

/// [`evaluate`], first requiring a head signed by one of `trusted`, the adopted commit's
/// `trustedSigningKeys` ([`super::signing`]); none: no signature needed.
pub fn evaluate_signed(
    repo: &gix::Repository,
    adopted: Option<(ObjectId, bool)>,
    trusted: &[String],
    head: ObjectId,
    limits: &super::loader::Limits,
    at: super::time::Timestamp,
) -> Result<Verdict, EvaluateError> {
    use super::note::{CommitState, StatusNote};
    if !trusted.is_empty() && adopted.map(|(c, _)| c) != Some(head) {
        let object = repo
            .find_object(head)
            .map_err(|e| EvaluateError::Signature {
                head,
                message: e.to_string(),
            })?;
        if let Err(reason) = super::signing::verify(&object.data, trusted) {
            let Some(new) = detect(repo, adopted.map(|(c, _)| c), head)? else {
                return Ok(Verdict::Unchanged);
            };
            let mut note = StatusNote::new(head, CommitState::Refused, at);
            note.reason = Some(reason);
            return Ok(Verdict::Refuse {
                head: new,
                note: Box::new(note),
            });
        }
    }
    evaluate(repo, adopted, head, limits, at)
}

/// Compares the fetched `head` with the adopted commit (and its `allowHistoryRewrite`),
/// then loads and validates it. `at` dates a refusal note (leader time).
pub fn evaluate(
    repo: &gix::Repository,
    adopted: Option<(ObjectId, bool)>,
    head: ObjectId,
    limits: &super::loader::Limits,
    at: super::time::Timestamp,
) -> Result<Verdict, EvaluateError> {
    use super::note::{CommitState, StatusNote};
    use super::read::LoadError;
    let Some(new) = detect(repo, adopted.map(|(c, _)| c), head)? else {
        return Ok(Verdict::Unchanged);
    };
    if let Decision::Refuse { reason } = decide(&new, adopted.is_some_and(|(_, allow)| allow)) {
        let mut note = StatusNote::new(head, CommitState::Refused, at);
        note.reason = Some(reason);
        return Ok(Verdict::Refuse {
            head: new,
            note: Box::new(note),
        });
    }
    match super::read::load_commit(repo, head, limits) {
        Ok(loaded) => Ok(Verdict::Adopt {
            head: new,
            loaded: Box::new(loaded),
        }),
        Err(LoadError::Invalid(diags)) => Ok(Verdict::Refuse {
            head: new,
            note: Box::new(StatusNote::refused(head, at, &diags)),
        }),
        Err(LoadError::Read(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    #[test]
    fn decision_table() {
        let h = |prev: Option<u8>, ff: bool| NewHead {
            previous: prev.map(id),
            head: id(9),
            commits: vec![id(9)],
            truncated: false,
            fast_forward: ff,
        };
        for (head, allow, consider) in [
            (h(None, true), false, true),
            (h(Some(1), true), false, true),
            (h(Some(1), false), false, false),
            (h(Some(1), false), true, true),
        ] {
            let d = decide(&head, allow);
            assert_eq!(
                d == Decision::Consider,
                consider,
                "{head:?} allow={allow}: {d:?}"
            );
        }
    }
}
