//! kommit test support.

pub mod runtime_support;
