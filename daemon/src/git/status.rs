//! The `kommit/status` branch: one commit per status change, of readable YAML files.
//!
//! Layout: `nodes/<node>.yaml` and `objects/<namespace>/<kind>/<name>.yaml`. A
//! [`StatusChange`] upserts or removes some of those files; it is applied on top of whatever
//! the branch holds, which is what makes re-applying it after a rejected push a merge rather
//! than an overwrite. Every commit's message names the source commit and carries a
//! `Kommit-Write:` trailer so a write that was pushed before a crash is never applied twice.

use std::collections::BTreeMap;

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use super::note::Health;
use super::time::Timestamp;

/// Format version written into every status file.
pub const STATUS_VERSION: u32 = 1;
/// Longest name component accepted in a status path.
pub const MAX_NAME: usize = 253;

/// Who writes commits (the node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Committer name.
    pub name: String,
    /// Committer email.
    pub email: String,
}

impl Identity {
    /// The identity of node `node`: `kommit/<node> <kommit@<node>>`.
    pub fn node(node: &str) -> Self {
        Identity {
            name: format!("kommit/{node}"),
            email: format!("kommit@{node}"),
        }
    }
}

/// `nodes/<node>.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// Format version.
    pub version: u32,
    /// Node name.
    pub node: String,
    /// When this status was observed (leader time).
    pub at: Timestamp,
    /// Whether the node is up and ready.
    pub ready: bool,
    /// The commit the node has converged on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Pods running on the node.
    pub pods: u32,
    /// A human message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `objects/<namespace>/<kind>/<name>.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectStatus {
    /// Format version.
    pub version: u32,
    /// Namespace.
    pub namespace: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// When this status was observed (leader time).
    pub at: Timestamp,
    /// Health.
    pub health: Health,
    /// Desired replicas, for replicated kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Ready replicas, for replicated kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<u32>,
    /// A human message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One status change: one commit on `kommit/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusChange {
    /// The desired-state commit this status is about.
    pub source_commit: String,
    /// When (leader time); also the commit date.
    pub at: Timestamp,
    /// Node files to write (`Some`) or delete (`None`).
    #[serde(default)]
    pub nodes: BTreeMap<String, Option<NodeStatus>>,
    /// Object files to write (`Some`) or delete (`None`), keyed `namespace/kind/name`.
    #[serde(default)]
    pub objects: BTreeMap<String, Option<ObjectStatus>>,
}

/// Errors of the status branch.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A node or object name that cannot be a path component.
    #[error("invalid status path component {0:?}")]
    BadName(String),
    /// An object key that is not `namespace/kind/name`.
    #[error("invalid object key {0:?}: expected namespace/kind/name")]
    BadKey(String),
    /// Serialising failed.
    #[error("formatting {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// Serializer message.
        message: String,
    },
    /// Git object access failed.
    #[error("status branch {what}: {source}")]
    Git {
        /// What was being done.
        what: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn git_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> StatusError {
    let what = what.into();
    move |e| StatusError::Git {
        what,
        source: Box::new(e),
    }
}

/// Whether `s` is safe as one path component of a status file.
pub fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn component(s: &str) -> Result<&str, StatusError> {
    if valid_component(s) {
        Ok(s)
    } else {
        Err(StatusError::BadName(s.to_owned()))
    }
}

impl StatusChange {
    /// The files this change writes (`Some(yaml)`) or removes (`None`), by path.
    pub fn files(&self) -> Result<BTreeMap<String, Option<String>>, StatusError> {
        let mut out = BTreeMap::new();
        let fmt = |path: &str, r: Result<String, serde_saphyr::ser_error::Error>| {
            r.map_err(|e| StatusError::Format {
                path: path.to_owned(),
                message: e.to_string(),
            })
        };
        for (node, status) in &self.nodes {
            let path = format!("nodes/{}.yaml", component(node)?);
            let text = match status {
                None => None,
                Some(s) => Some(fmt(&path, serde_saphyr::to_string(s))?),
            };
            out.insert(path, text);
        }
        for (key, status) in &self.objects {
            let parts: Vec<&str> = key.split('/').collect();
            let [ns, kind, name] = parts[..] else {
                return Err(StatusError::BadKey(key.clone()));
            };
            let path = format!(
                "objects/{}/{}/{}.yaml",
                component(ns)?,
                component(kind)?,
                component(name)?
            );
            let text = match status {
                None => None,
                Some(s) => Some(fmt(&path, serde_saphyr::to_string(s))?),
            };
            out.insert(path, text);
        }
        Ok(out)
    }

    /// The commit message: names the source commit; trailers identify the write.
    pub fn message(&self, write_id: &str) -> String {
        let mut m = format!("kommit status for {}\n\n", self.source_commit);
        let up = |v: bool| if v { "" } else { " (removed)" };
        for (node, s) in &self.nodes {
            m.push_str(&format!("node {node}{}\n", up(s.is_some())));
        }
        for (key, s) in &self.objects {
            m.push_str(&format!("object {key}{}\n", up(s.is_some())));
        }
        m.push_str(&format!(
            "\nKommit-Source: {}\nKommit-Write: {write_id}\n",
            self.source_commit
        ));
        m
    }
}

/// Writes a commit object (no ref update) dated `at` by `identity`.
pub fn write_commit(
    repo: &gix::Repository,
    tree: ObjectId,
    parent: Option<ObjectId>,
    message: &str,
    identity: &Identity,
    at: Timestamp,
) -> Result<ObjectId, gix::Error> {
    let sig = gix::actor::Signature {
        name: identity.name.as_str().into(),
        email: identity.email.as_str().into(),
        time: gix::date::Time {
            seconds: at.0,
            offset: 0,
        },
    };
    let commit = gix::objs::Commit {
        tree,
        parents: parent.into_iter().collect(),
        author: sig.clone(),
        committer: sig,
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    };
    Ok(repo.write_object(&commit)?.detach())
}

/// Applies `change` on top of the status commit `base`, as one new commit. Returns the new
/// commit (or `base` if the change alters no file).
pub fn apply_on(
    repo: &gix::Repository,
    base: Option<ObjectId>,
    change: &StatusChange,
    write_id: &str,
    identity: &Identity,
) -> Result<Option<ObjectId>, StatusError> {
    let base_tree = match base {
        None => ObjectId::empty_tree(repo.object_hash()),
        Some(c) => super::read::commit_tree(repo, c).map_err(git_err(format!("reading {c}")))?,
    };
    let mut editor = repo
        .edit_tree(base_tree)
        .map_err(git_err("opening tree editor"))?;
    for (path, text) in change.files()? {
        match text {
            Some(text) => {
                let blob = repo
                    .write_blob(text.as_bytes())
                    .map_err(git_err("writing blob"))?;
                editor
                    .upsert(
                        path.as_str(),
                        gix::objs::tree::EntryKind::Blob,
                        blob.detach(),
                    )
                    .map_err(git_err(format!("writing {path}")))?;
            }
            None => {
                editor
                    .remove(path.as_str())
                    .map_err(git_err(format!("removing {path}")))?;
            }
        }
    }
    let tree = editor.write().map_err(git_err("writing tree"))?.detach();
    if base.is_some() && tree == base_tree {
        return Ok(base);
    }
    let commit = write_commit(
        repo,
        tree,
        base,
        &change.message(write_id),
        identity,
        change.at,
    )
    .map_err(git_err("writing commit"))?;
    Ok(Some(commit))
}

/// The `Kommit-Write:` ids in the newest `limit` commits of the status branch at `head`.
pub fn recent_write_ids(
    repo: &gix::Repository,
    head: Option<ObjectId>,
    limit: usize,
) -> Result<std::collections::BTreeSet<String>, StatusError> {
    let mut out = std::collections::BTreeSet::new();
    let Some(head) = head else { return Ok(out) };
    let walk = repo
        .rev_walk([head])
        .all()
        .map_err(git_err(format!("walking {head}")))?;
    for info in walk.take(limit) {
        let info = info.map_err(git_err(format!("walking {head}")))?;
        let commit = repo
            .find_commit(info.id)
            .map_err(git_err(format!("reading {}", info.id)))?;
        let msg = commit.message_raw_sloppy().to_string();
        for line in msg.lines() {
            if let Some(id) = line.strip_prefix("Kommit-Write: ") {
                out.insert(id.trim().to_owned());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        let ok = StatusChange {
            source_commit: "a".repeat(40),
            at: Timestamp(5),
            nodes: [("n1".to_owned(), None)].into(),
            objects: [("default/Deployment/web".to_owned(), None)].into(),
        };
        let files = ok.files().expect("valid");
        assert_eq!(
            files.keys().cloned().collect::<Vec<_>>(),
            vec!["nodes/n1.yaml", "objects/default/Deployment/web.yaml"]
        );
        for bad_node in ["", "..", "a/b", ".hidden", "x y"] {
            let mut c = ok.clone();
            c.nodes = [(bad_node.to_owned(), None)].into();
            assert!(c.files().is_err(), "{bad_node:?}");
        }
        for bad_key in ["a/b", "a/b/c/d", "a/../c", "/b/c"] {
            let mut c = ok.clone();
            c.objects = [(bad_key.to_owned(), None)].into();
            assert!(c.files().is_err(), "{bad_key:?}");
        }
    }
}
