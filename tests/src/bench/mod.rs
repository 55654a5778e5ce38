//! Benchmarks run by the `kommit-bench` binary.

pub mod validate;
