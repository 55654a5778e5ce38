//! Read the desired state at a commit straight from the object database (no worktree).
//!
//! Every blob's size is taken from its object header before its content is read, so an
//! oversized file costs one header lookup. Symlinks and gitlinks become loader entries that
//! the loader reports as diagnostics with their paths. Tree depth, entry count and total size
//! are bounded because anything in Git is untrusted. The tree has the same shape `fstree`
//! gives a directory, so `kommit validate` and the daemon judge the same input.

use gix::ObjectId;

use super::loader::{
    self, is_manifest_path, DesiredState, Diagnostic, Limits, SourceContent, SourceFile, SourceTree,
};
pub use crate::fstree::{MAX_DEPTH, MAX_ENTRIES};

/// Longest symlink target read.
const MAX_LINK_TARGET: u64 = 4096;

/// Errors reading a commit (not validation errors: those are [`LoadError::Invalid`]).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// An object is missing or corrupt.
    #[error("reading {what} {id}: {source}")]
    Object {
        /// What was being read.
        what: &'static str,
        /// Its id.
        id: ObjectId,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The outcome of loading a commit that is not a valid desired state.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Git objects could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The commit was read but is not a valid desired state.
    #[error("{} validation error(s), first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<Diagnostic>),
}

/// A commit read and validated.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The commit.
    pub commit: ObjectId,
    /// Its root tree.
    pub tree: ObjectId,
    /// The validated desired state.
    pub desired: DesiredState,
}

fn obj_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
    id: ObjectId,
) -> impl FnOnce(E) -> ReadError {
    move |e| ReadError::Object {
        what,
        id,
        source: Box::new(e),
    }
}

/// Reads and validates the desired state at `commit`.
pub fn load_commit(
    repo: &gix::Repository,
    commit: ObjectId,
    limits: &Limits,
) -> Result<Loaded, LoadError> {
    let tree = commit_tree(repo, commit)?;
    let (source, mut diags) = read_tree(repo, tree, limits)?;
    match loader::validate(&source, limits) {
        Ok(desired) if diags.is_empty() => Ok(Loaded {
            commit,
            tree,
            desired,
        }),
        Ok(_) => Err(LoadError::Invalid(diags)),
        Err(mut more) => {
            diags.append(&mut more);
            Err(LoadError::Invalid(diags))
        }
    }
}

/// The root tree of `commit`.
pub fn commit_tree(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, ReadError> {
    let c = repo
        .find_commit(commit)
        .map_err(obj_err("commit", commit))?;
    Ok(c.tree_id().map_err(obj_err("commit", commit))?.detach())
}

/// Builds the loader input from `tree`, with the same shape as `fstree` builds from a
/// directory: dot-directories are skipped, only manifests (`*.yaml`, `*.yml`) are read,
/// other files are listed with empty content. Returns the tree and diagnostics for what
/// cannot be represented (non-UTF-8 names, nesting or entry bounds).
///
/// Reading stops one manifest past `limits.max_files` and one file past
/// `limits.max_total_bytes`, so the loader sees (and reports) the excess while memory stays
/// bounded by `max_total_bytes + max_file_bytes`.
pub fn read_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    limits: &Limits,
) -> Result<(SourceTree, Vec<Diagnostic>), ReadError> {
    use gix::objs::tree::EntryKind;
    let mut out = SourceTree::default();
    let mut diags = Vec::new();
    let mut total: u64 = 0;
    let mut manifests = 0usize;
    let mut entries = 0usize;
    // Explicit stack: (tree id, path prefix, depth).
    let mut stack = vec![(tree, String::new(), 0usize)];
    while let Some((id, prefix, depth)) = stack.pop() {
        let t = repo.find_tree(id).map_err(obj_err("tree", id))?;
        let decoded = t.decode().map_err(obj_err("tree", id))?;
        // Subtrees pushed in reverse so the walk keeps tree order.
        let mut subtrees = Vec::new();
        for entry in &decoded.entries {
            entries += 1;
            if entries > MAX_ENTRIES {
                diags.push(Diagnostic::file(
                    prefix.trim_end_matches('/'),
                    format!("tree has more than {MAX_ENTRIES} entries; the rest was not read"),
                ));
                return Ok((out, diags));
            }
            let Ok(name) = std::str::from_utf8(entry.filename) else {
                diags.push(Diagnostic::file(
                    format!("{prefix}{}", String::from_utf8_lossy(entry.filename)),
                    "file name is not valid UTF-8",
                ));
                continue;
            };
            let path = format!("{prefix}{name}");
            let oid = entry.oid.to_owned();
            let content = match entry.mode.kind() {
                EntryKind::Tree => {
                    if name.starts_with('.') {
                        continue;
                    }
                    if depth + 1 > MAX_DEPTH {
                        diags.push(Diagnostic::file(
                            &path,
                            format!("directories nested deeper than {MAX_DEPTH}"),
                        ));
                    } else {
                        subtrees.push((oid, format!("{path}/"), depth + 1));
                    }
                    continue;
                }
                EntryKind::Commit => SourceContent::Submodule,
                EntryKind::Link => {
                    let size = repo.find_header(oid).map_err(obj_err("blob", oid))?.size();
                    let target = if size > MAX_LINK_TARGET {
                        format!("<{size} byte target>")
                    } else {
                        let blob = repo.find_blob(oid).map_err(obj_err("blob", oid))?;
                        String::from_utf8_lossy(&blob.data).into_owned()
                    };
                    SourceContent::Symlink { target }
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    if !is_manifest_path(&path) {
                        // Listed, never read: the loader ignores non-manifests.
                        SourceContent::Bytes(Vec::new())
                    } else {
                        // The size comes from the object header; content is read only if
                        // it fits.
                        let size = repo.find_header(oid).map_err(obj_err("blob", oid))?.size();
                        if size > limits.max_file_bytes {
                            SourceContent::TooLarge { size }
                        } else if manifests > limits.max_files || total > limits.max_total_bytes {
                            // Past the bounds: the loader has already seen the excess.
                            continue;
                        } else {
                            manifests += 1;
                            total += size;
                            let mut blob = repo.find_blob(oid).map_err(obj_err("blob", oid))?;
                            SourceContent::Bytes(blob.take_data())
                        }
                    }
                }
            };
            out.files.push(SourceFile { path, content });
        }
        stack.extend(subtrees.into_iter().rev());
    }
    Ok((out, diags))
}
