//! The loader boundary: the types `read` produces and `kommit_schemas::validate` consumes.
//!
//! TEMPORARY SHIM: `kommit_schemas::validate` has not landed on main yet. This file mirrors its
//! announced API so the Git module compiles; it is replaced by a plain
//! `pub use kommit_schemas::{...}` as soon as main has the loader.

use std::collections::BTreeMap;
use std::fmt;

/// A tree of files read from Git, paths `/`-separated and relative.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceTree {
    /// Every non-directory entry, in tree order.
    pub files: Vec<SourceFile>,
}

/// One entry of a [`SourceTree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative `/`-separated path.
    pub path: String,
    /// What the entry holds.
    pub content: SourceContent,
}

/// The content of a tree entry as seen by the loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceContent {
    /// A regular file's bytes.
    Bytes(Vec<u8>),
    /// A symbolic link.
    Symlink {
        /// The link target.
        target: String,
    },
    /// A gitlink (submodule).
    Submodule,
    /// A blob over the size limit, not read.
    TooLarge {
        /// Its size from the object header.
        size: u64,
    },
}

/// Loader limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file.
    pub max_file_bytes: u64,
    /// Largest sum of file sizes.
    pub max_total_bytes: u64,
    /// Most files.
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 20,
            max_total_bytes: 64 << 20,
            max_files: 10_000,
        }
    }
}

/// A located error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File path.
    pub path: String,
    /// 1-based line, 0 when not applicable.
    pub line: u32,
    /// 1-based column, 0 when not applicable.
    pub col: u32,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.path, self.line, self.col, self.message
        )
    }
}

/// `kommit.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The desired-state branch.
    pub branch: String,
    /// Whether non-fast-forward heads may be adopted.
    pub allow_history_rewrite: bool,
}

/// The validated desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredState {
    /// Cluster configuration.
    pub config: ClusterConfig,
    files: BTreeMap<String, Vec<u8>>,
}

impl DesiredState {
    /// A content digest.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for (p, c) in &self.files {
            h.update(p.as_bytes());
            h.update([0]);
            h.update(c);
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// Shim of the loader: turns the non-file entries into diagnostics and reads `kommit.yaml`.
pub fn validate(tree: &SourceTree, limits: &Limits) -> Result<DesiredState, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut files = BTreeMap::new();
    let diag = |path: &str, message: String| Diagnostic {
        path: path.to_owned(),
        line: 0,
        col: 0,
        message,
    };
    if tree.files.len() > limits.max_files {
        diags.push(diag("", format!("more than {} files", limits.max_files)));
    }
    for f in &tree.files {
        match &f.content {
            SourceContent::Bytes(b) => {
                files.insert(f.path.clone(), b.clone());
            }
            SourceContent::Symlink { target } => diags.push(diag(
                &f.path,
                format!("symlinks are not allowed (-> {target})"),
            )),
            SourceContent::Submodule => {
                diags.push(diag(&f.path, "submodules are not allowed".into()))
            }
            SourceContent::TooLarge { size } => diags.push(diag(
                &f.path,
                format!(
                    "file is {size} bytes, over the {} byte limit",
                    limits.max_file_bytes
                ),
            )),
        }
    }
    let mut config = None;
    match files.get("kommit.yaml") {
        None => diags.push(diag("kommit.yaml", "missing".into())),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let mut branch = None;
            let mut allow = false;
            for (i, line) in text.lines().enumerate() {
                if let Some(v) = line.strip_prefix("branch:") {
                    branch = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("allowHistoryRewrite:") {
                    allow = v.trim() == "true";
                } else if !line.trim().is_empty()
                    && !line.starts_with('#')
                    && !line.starts_with("apiVersion")
                    && !line.starts_with("kind")
                {
                    diags.push(Diagnostic {
                        path: "kommit.yaml".into(),
                        line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                        col: 1,
                        message: format!(
                            "unknown field {:?}",
                            line.split(':').next().unwrap_or("")
                        ),
                    });
                }
            }
            config = Some(ClusterConfig {
                branch: branch.unwrap_or_else(|| "main".into()),
                allow_history_rewrite: allow,
            });
        }
    }
    match config {
        Some(config) if diags.is_empty() => Ok(DesiredState { config, files }),
        _ => Err(diags),
    }
}
