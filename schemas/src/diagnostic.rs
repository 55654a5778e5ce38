//! Diagnostics: one problem, where it is, and what is wrong.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem in the desired-state tree, compiler style.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The file, relative to the tree root, '/'-separated.
    pub path: String,
    /// 1-based line (1 when the problem concerns the whole file).
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// What is wrong, one line.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at a position.
    pub fn new(path: impl Into<String>, line: u32, col: u32, message: impl Into<String>) -> Self {
        let message: String = message.into();
        // Keep every diagnostic on one line whatever the source text held.
        let message = message.replace(['\n', '\r'], " ");
        Self {
            path: path.into(),
            line: line.max(1),
            col: col.max(1),
            message,
        }
    }

    /// The compiler-style line for a warning: `path:line:col: warning: message`.
    pub fn warning_line(&self) -> String {
        format!(
            "{}:{}:{}: warning: {}",
            self.path, self.line, self.col, self.message
        )
    }

    /// A diagnostic about a whole file.
    pub fn file(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(path, 1, 1, message)
    }
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
