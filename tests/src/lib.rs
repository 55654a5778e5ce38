//! kommit test support.

pub mod bench;
