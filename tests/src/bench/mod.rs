//! Benchmarks run by the `kommit-bench` binary, one module per subcommand.

pub mod cluster;
pub mod dns;
pub mod node_loss;
pub mod push;
pub mod runtime;
pub mod schedule;
pub mod services;
pub mod validate;
pub mod web;
