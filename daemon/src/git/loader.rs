//! The loader boundary: what `read` builds and `kommit_schemas::validate` judges.
//!
//! Re-exported here so the Git module names its input and output types in one place; the
//! formats themselves belong to `kommit-schemas`.

pub use kommit_schemas::source::is_manifest_path;
pub use kommit_schemas::{
    validate, DesiredState, Diagnostic, Limits, SourceContent, SourceFile, SourceTree,
};
