//! kommit's desired-state model: the typed manifests teams push, the JSON Schema files CI
//! checks them with, and the loader that turns a tree of files into a validated
//! [`DesiredState`] or a list of `file:line:col` diagnostics.
//!
//! Why this shape: the typed model is the single source of truth. The schema files are
//! generated from it and embedded in the binary, so a manifest that passes
//! `check-jsonschema` in CI passes the same structural rules inside the cluster. Everything a
//! schema cannot say (references between objects, selectors, policy from `kommit.yaml`) is in
//! `checks`. This crate does no IO: callers hand it bytes in a [`SourceTree`], which keeps it
//! usable from the CLI, from the Git reader and from tests alike.

pub mod checks;
pub mod cron;
pub mod diagnostic;
mod hints;
pub mod load;
pub mod model;
pub mod schema;
pub mod sops;
pub mod source;
pub mod tree;
pub mod yaml;

pub use diagnostic::Diagnostic;
pub use load::validate;
pub use model::{DesiredState, Kind, Object};
pub use source::{Limits, SourceContent, SourceFile, SourceTree};
