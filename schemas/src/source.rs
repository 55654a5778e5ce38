//! The loader's input: a tree of files as bytes, from a directory or a Git commit.
//!
//! This crate never touches the file system or Git itself. The caller (the CLI walking a
//! directory, or the Git reader walking a commit's tree) builds a [`SourceTree`], checking
//! sizes before reading so an oversized blob is never loaded, and the loader judges it.

/// Bounds on what one tree may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of all manifest files, in bytes.
    pub max_total_bytes: u64,
    /// Most manifest files.
    pub max_files: usize,
    /// Most objects across all files.
    pub max_objects: usize,
    /// YAML parsing budgets per file.
    pub yaml: crate::yaml::YamlBudget,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_files: 10_000,
            max_objects: 50_000,
            yaml: crate::yaml::YamlBudget::default(),
        }
    }
}

/// Every file of a tree. Paths are relative, '/'-separated, without `.` or `..` segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceTree {
    /// The files, in any order.
    pub files: Vec<SourceFile>,
}

/// One entry of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative path.
    pub path: String,
    /// What is there.
    pub content: SourceContent,
}

/// What a tree entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceContent {
    /// A regular file's bytes.
    Bytes(Vec<u8>),
    /// A symbolic link, not followed.
    Symlink {
        /// The link's target as stored.
        target: String,
    },
    /// A Git submodule (gitlink).
    Submodule,
    /// A file too large to read; only its size is known.
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
}

impl SourceTree {
    /// Adds a regular file.
    pub fn add(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.files.push(SourceFile {
            path: path.into(),
            content: SourceContent::Bytes(bytes.into()),
        });
        self
    }
}

/// Whether a path names a manifest file (`*.yaml` or `*.yml`).
pub fn is_manifest_path(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Whether a symlink at `path` with `target` resolves outside the tree root.
pub fn symlink_escapes(path: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    // Start from the link's directory and walk the target's segments.
    let mut depth: i64 = path.split('/').count() as i64 - 1;
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let table = [
            ("a.yaml", "b.yaml", false),
            ("a.yaml", "../b.yaml", true),
            ("d/a.yaml", "../b.yaml", false),
            ("d/a.yaml", "../../b.yaml", true),
            ("d/a.yaml", "/etc/passwd", true),
            ("d/a.yaml", "x/../../y", false),
            ("d/a.yaml", "x/../../../y", true),
        ];
        for (p, t, want) in table {
            assert_eq!(symlink_escapes(p, t), want, "{p} -> {t}");
        }
    }
}
