//! Read the desired state at a commit straight from the object database (no worktree).
//!
//! Every blob's size is taken from its object header before its content is read, so an
//! oversized file costs one header lookup. Symlinks and gitlinks become loader entries that
//! the loader reports as diagnostics with their paths. Tree depth, entry count and total size
//! are bounded because anything in Git is untrusted.

use gix::ObjectId;

use super::loader::{
    self, DesiredState, Diagnostic, Limits, SourceContent, SourceFile, SourceTree,
};

/// Deepest directory nesting followed.
pub const MAX_DEPTH: usize = 64;
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

fn diag(path: &str, message: String) -> Diagnostic {
    Diagnostic {
        path: path.to_owned(),
        line: 0,
        col: 0,
        message,
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

/// Builds the loader input from `tree`. Returns the tree and diagnostics for entries that
/// cannot be represented at all (non-UTF-8 names, limits exceeded while walking).
pub fn read_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    limits: &Limits,
) -> Result<(SourceTree, Vec<Diagnostic>), ReadError> {
    let mut out = SourceTree::default();
    let mut diags = Vec::new();
    let mut total: u64 = 0;
    // Explicit stack: (tree id, path prefix, depth).
    let mut stack = vec![(tree, String::new(), 0usize)];
    while let Some((id, prefix, depth)) = stack.pop() {
        let t = repo.find_tree(id).map_err(obj_err("tree", id))?;
        let decoded = t.decode().map_err(obj_err("tree", id))?;
        // Children pushed in reverse so the output keeps tree order.
        let mut subtrees = Vec::new();
        for entry in &decoded.entries {
            let Ok(name) = std::str::from_utf8(entry.filename) else {
                diags.push(diag(
                    &format!("{prefix}{}", String::from_utf8_lossy(entry.filename)),
                    "file name is not valid UTF-8".into(),
                ));
                continue;
            };
            let path = format!("{prefix}{name}");
            let oid = entry.oid.to_owned();
            use gix::objs::tree::EntryKind;
            let content = match entry.mode.kind() {
                EntryKind::Tree => {
                    if depth + 1 >= MAX_DEPTH {
                        diags.push(diag(
                            &path,
                            format!("directory nesting deeper than {MAX_DEPTH}"),
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
                    let size = repo.find_header(oid).map_err(obj_err("blob", oid))?.size();
                    if size > limits.max_file_bytes {
                        SourceContent::TooLarge { size }
                    } else if total.saturating_add(size) > limits.max_total_bytes {
                        diags.push(diag(
                            &path,
                            format!(
                                "repository content exceeds {} bytes in total",
                                limits.max_total_bytes
                            ),
                        ));
                        return Ok((out, diags));
                    } else {
                        total += size;
                        let mut blob = repo.find_blob(oid).map_err(obj_err("blob", oid))?;
                        SourceContent::Bytes(blob.take_data())
                    }
                }
            };
            if out.files.len() >= limits.max_files {
                diags.push(diag(
                    &path,
                    format!("repository has more than {} files", limits.max_files),
                ));
                return Ok((out, diags));
            }
            out.files.push(SourceFile { path, content });
        }
        stack.extend(subtrees.into_iter().rev());
    }
    Ok((out, diags))
}
