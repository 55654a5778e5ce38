//! kommit's test support: corpus generators, cluster simulations, and the benchmarks the
//! `kommit-bench` binary runs.

pub mod agent_support;
pub mod bench;
pub mod browser;
pub mod cluster;
pub mod fixtures;
pub mod gen;
pub mod git_daemon;
pub mod proxy_support;
pub mod runtime_support;
pub mod sim;
pub mod vm;
