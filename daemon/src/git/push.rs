//! One synchronisation round of status write-back.
//!
//! 1. Fetch the remote's `refs/notes/kommit` and `kommit/status` with gix; their remote values
//!    are the lease.
//! 2. Merge the pending writes on top, locally with gix: notes by union per commit, status
//!    changes re-applied on the remote tip, skipping writes whose `Kommit-Write:` trailer is
//!    already there.
//! 3. `git push --atomic --force-with-lease=<ref>:<lease>` both refs (gix cannot push).
//!
//! A rejection (someone else wrote in between) is reported as [`Round::Rejected`]; the caller
//! simply runs another round, which fetches again and re-merges. Writes leave the outbox only
//! after a successful push.

use std::collections::BTreeMap;
use std::process::Command;

use gix::ObjectId;

use super::mirror::{Mirror, MirrorError};
use super::note::{self, NoteError, StatusNote};
use super::queue::{Outbox, QueueError, Write};
use super::status::{self, Identity, StatusError};
use super::{NOTES_REF, STATUS_REF};

/// How many status commits are scanned for already-applied write ids.
pub const WRITE_ID_SCAN: usize = 2000;

/// Errors of a round that are not a lease rejection.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Fetching the remote state failed (remote unreachable...).
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// Notes could not be merged.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// Status changes could not be applied.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The outbox failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// `git push` failed for a reason other than a rejected lease.
    #[error("git push to {url} failed: {message}")]
    Push {
        /// Remote url.
        url: String,
        /// git's stderr (last lines).
        message: String,
    },
    /// Updating the mirror's own refs after a push failed.
    #[error("updating {name} in the mirror: {source}")]
    LocalRef {
        /// Ref.
        name: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What a round did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Round {
    /// Nothing was pending.
    Idle,
    /// The writes with these sequence numbers are now on the remote.
    Pushed {
        /// Outbox sequence numbers delivered.
        seqs: Vec<u64>,
        /// The remote notes commit afterwards.
        notes: Option<ObjectId>,
        /// The remote status commit afterwards.
        status: Option<ObjectId>,
    },
    /// The remote moved between fetch and push; run another round.
    Rejected {
        /// git's explanation.
        detail: String,
    },
}

/// Runs one round for at most `max_batch` pending writes.
pub fn round(
    mirror: &Mirror,
    outbox: &Outbox,
    identity: &Identity,
    max_batch: usize,
) -> Result<Round, PushError> {
    let pending = outbox.pending(max_batch)?;
    if pending.is_empty() {
        return Ok(Round::Idle);
    }
    let remote = mirror.fetch_refspecs(&[
        format!("+{NOTES_REF}:{NOTES_REF}"),
        format!("+{STATUS_REF}:{STATUS_REF}"),
    ])?;
    let base_notes = remote.get(NOTES_REF).copied();
    let base_status = remote.get(STATUS_REF).copied();
    let repo = mirror.repo()?;

    let notes: Vec<StatusNote> = pending
        .iter()
        .filter_map(|(_, w)| match w {
            Write::Note(n) => Some(n.clone()),
            Write::Status(_) => None,
        })
        .collect();
    let notes_at = notes.iter().map(|n| n.at).max().unwrap_or_default();
    let new_notes = if notes.is_empty() {
        base_notes
    } else {
        note::write_on(&repo, base_notes, &notes, identity, notes_at)?
    };

    let applied = status::recent_write_ids(&repo, base_status, WRITE_ID_SCAN)?;
    let mut new_status = base_status;
    for (seq, w) in &pending {
        if let Write::Status(change) = w {
            let id = outbox.write_id(*seq);
            if applied.contains(&id) {
                tracing::info!(write = %id, "status write already on the remote; not applying it again");
                continue;
            }
            new_status = status::apply_on(&repo, new_status, change, &id, identity)?;
        }
    }

    let mut updates = BTreeMap::new();
    if new_notes != base_notes {
        updates.insert(NOTES_REF, (base_notes, new_notes));
    }
    if new_status != base_status {
        updates.insert(STATUS_REF, (base_status, new_status));
    }
    if !updates.is_empty() {
        if let Some(detail) = git_push(mirror, &updates)? {
            return Ok(Round::Rejected { detail });
        }
        for (name, (_, new)) in &updates {
            if let Some(new) = new {
                repo.reference(
                    *name,
                    *new,
                    gix::refs::transaction::PreviousValue::Any,
                    "kommit: pushed",
                )
                .map_err(|e| PushError::LocalRef {
                    name: (*name).to_owned(),
                    source: Box::new(e),
                })?;
            }
        }
    }
    let seqs: Vec<u64> = pending.iter().map(|(s, _)| *s).collect();
    outbox.remove(&seqs)?;
    Ok(Round::Pushed {
        seqs,
        notes: new_notes,
        status: new_status,
    })
}

/// A `git` command isolated from host config, with the remote's credentials in its
/// environment (never on its command line).
pub fn git_command(mirror: &Mirror) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(mirror.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env_remove("GIT_SSL_NO_VERIFY")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    let creds = &mirror.remote().credentials;
    let mut config: Vec<(&str, String)> = Vec::new();
    if let Some((user, password)) = creds.basic() {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        config.push(("http.extraHeader", format!("Authorization: Basic {token}")));
    }
    if let Some(ca) = &mirror.remote().ca_file {
        // The environment variable wins over config in git, so set both.
        cmd.env("GIT_SSL_CAINFO", ca);
        config.push(("http.sslCAInfo", ca.display().to_string()));
    }
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (k, v)) in config.into_iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
            .env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    if let Some(ssh) = creds.ssh_command() {
        cmd.env("GIT_SSH_COMMAND", ssh);
    }
    cmd
}

/// Pushes `updates` (ref -> (lease, new)) atomically. Returns `Some(detail)` when the remote
/// rejected the lease, `None` on success.
fn git_push(
    mirror: &Mirror,
    updates: &BTreeMap<&str, (Option<ObjectId>, Option<ObjectId>)>,
) -> Result<Option<String>, PushError> {
    let url = mirror.remote().url.clone();
    let mut cmd = git_command(mirror);
    cmd.args(["push", "--atomic", "--porcelain", "--no-verify"]);
    for (name, (lease, _)) in updates {
        let lease = lease.map(|l| l.to_string()).unwrap_or_default();
        cmd.arg(format!("--force-with-lease={name}:{lease}"));
    }
    cmd.arg("--").arg(&url);
    for (name, (_, new)) in updates {
        match new {
            Some(new) => cmd.arg(format!("{new}:{name}")),
            None => cmd.arg(format!(":{name}")),
        };
    }
    let out = cmd.output().map_err(|e| PushError::Push {
        url: url.clone(),
        message: format!("running git: {e}"),
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Ok(None);
    }
    let rejected: Vec<&str> = stdout.lines().filter(|l| l.starts_with('!')).collect();
    if !rejected.is_empty() {
        return Ok(Some(rejected.join("; ").replace('\t', " ")));
    }
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    Err(PushError::Push {
        url,
        message: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
    })
}
