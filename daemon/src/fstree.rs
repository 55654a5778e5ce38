//! Builds a [`SourceTree`] from a directory on disk, the way the Git reader builds one from a
//! commit: sizes are checked before reading, symlinks are recorded and not followed, and
//! dot-directories (`.git`, `.github`, ...) are skipped.

use kommit_schemas::{Limits, SourceContent, SourceFile, SourceTree};
use std::path::Path;

/// Deepest directory nesting walked.
pub const MAX_DEPTH: usize = 32;
/// Most directory entries walked.
pub const MAX_ENTRIES: usize = 100_000;

/// Errors walking a directory.
#[derive(Debug, thiserror::Error)]
pub enum FsTreeError {
    /// An IO error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The tree is deeper or larger than the walker allows.
    #[error("{path}: {what}")]
    TooBig {
        /// Where the walk stopped.
        path: String,
        /// Which bound.
        what: String,
    },
}

fn io(path: &Path, source: std::io::Error) -> FsTreeError {
    FsTreeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads every file under `root`.
pub fn read_dir_tree(root: &Path, limits: &Limits) -> Result<SourceTree, FsTreeError> {
    let mut tree = SourceTree::default();
    let mut entries = 0usize;
    walk(root, "", 0, limits, &mut entries, &mut tree)?;
    Ok(tree)
}

/// Reads one file as a tree holding just it, named by its file name.
pub fn read_single_file(path: &Path, limits: &Limits) -> Result<SourceTree, FsTreeError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut tree = SourceTree::default();
    tree.files.push(SourceFile {
        path: name,
        content: read_file(path, limits)?,
    });
    Ok(tree)
}

fn read_file(path: &Path, limits: &Limits) -> Result<SourceContent, FsTreeError> {
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if meta.len() > limits.max_file_bytes {
        return Ok(SourceContent::TooLarge { size: meta.len() });
    }
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    // Read at most one byte past the limit, in case the file grew since the stat.
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(limits.max_file_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io(path, e))?;
    if buf.len() as u64 > limits.max_file_bytes {
        return Ok(SourceContent::TooLarge {
            size: buf.len() as u64,
        });
    }
    Ok(SourceContent::Bytes(buf))
}

fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    limits: &Limits,
    entries: &mut usize,
    tree: &mut SourceTree,
) -> Result<(), FsTreeError> {
    if depth > MAX_DEPTH {
        return Err(FsTreeError::TooBig {
            path: dir.display().to_string(),
            what: format!("directories nested deeper than {MAX_DEPTH}"),
        });
    }
    let mut list: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(dir, e))?;
    list.sort_by_key(|e| e.file_name());
    for entry in list {
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return Err(FsTreeError::TooBig {
                path: dir.display().to_string(),
                what: format!("more than {MAX_ENTRIES} entries"),
            });
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel_path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| io(&path, e))?;
        if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
            tree.files.push(SourceFile {
                path: rel_path,
                content: SourceContent::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
            });
        } else if ft.is_dir() {
            if name.starts_with('.') {
                continue;
            }
            walk(&path, &rel_path, depth + 1, limits, entries, tree)?;
        } else if ft.is_file() {
            // Only manifests are read; other files are listed by name so the loader sees
            // the whole tree, but their bytes are never loaded.
            let content = if kommit_schemas::source::is_manifest_path(&rel_path) {
                read_file(&path, limits)?
            } else {
                SourceContent::Bytes(Vec::new())
            };
            tree.files.push(SourceFile {
                path: rel_path,
                content,
            });
        }
    }
    Ok(())
}
