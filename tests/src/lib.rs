//! kommit test support.

pub mod bench;
pub mod runtime_support;
