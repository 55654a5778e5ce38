//! The kommit daemon and CLI as a library, so the tests crate can drive every part in process.
//!
//! See `ARCHITECTURE.md` for the code map. This crate holds glue (CLI, Git, Raft, the node
//! agent loop); business rules live in `kommit-reconcilers`, formats in `kommit-schemas`, and
//! every syscall in `kommit-runtime`.

pub mod cli;
pub mod cluster_key;
pub mod consensus;
pub mod door;
pub mod fence;
pub mod fstree;
pub mod git;
pub mod metrics;
pub mod node_agent;
pub mod node_services;
pub mod static_pods;
pub mod sync;
#[cfg(test)]
mod testutil;
pub mod web;
